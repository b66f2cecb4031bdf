//! Splits each record's value into words (as `wordcount` defines them) and emits one
//! record per word, keyed by the word, with the word as its value. Put a `repartition`
//! after it and every occurrence of a word reaches the same task: a global word count.

use eddy_guest::prelude::*;
use std::borrow::Cow;

#[derive(Default)]
pub struct SplitWords {
    lowercase: bool,
}

impl Operator for SplitWords {
    fn init(&mut self, config: &Config) -> Result<(), Error> {
        self.lowercase = config.parse_or("lowercase", false)?;
        Ok(())
    }

    fn process(&mut self, event: Event, ctx: &mut Context) -> Result<(), Error> {
        let words = event
            .value_str()?
            .split_ascii_whitespace()
            .map(|w| w.trim_matches(|c: char| c.is_ascii_punctuation()))
            .filter(|w| !w.is_empty());
        for word in words {
            let word: Cow<str> = if self.lowercase {
                word.to_ascii_lowercase().into()
            } else {
                word.into()
            };
            ctx.emit(Event::new(word.as_bytes(), word.as_bytes()));
        }
        Ok(())
    }
}

eddy_guest::export!(SplitWords);

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_guest::testing::Harness;

    #[test]
    fn one_keyed_record_per_word() {
        let mut h = Harness::with_config(SplitWords::default(), &[("lowercase", "true")]).unwrap();
        let out = h
            .process(Event::keyless("The cat, the hat.").at(3))
            .unwrap();
        let got: Vec<(&str, &str, i64)> = out
            .iter()
            .map(|o| {
                (
                    o.event.key_str().unwrap().unwrap(),
                    o.event.value_str().unwrap(),
                    o.event.timestamp,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("the", "the", 3),
                ("cat", "cat", 3),
                ("the", "the", 3),
                ("hat", "hat", 3)
            ]
        );
    }
}
