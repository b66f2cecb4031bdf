//! Word count: splits each record's value into words and emits `(word, count so far)`.
//!
//! Words are runs of non-whitespace (ASCII whitespace separates them) with ASCII
//! punctuation trimmed from both ends; `config.lowercase = "true"` lowercases ASCII
//! letters. Counts live in the store `counts` as 8-byte little-endian integers.

use eddy_guest::prelude::*;
use std::borrow::Cow;

#[derive(Default)]
pub struct WordCount {
    lowercase: bool,
}

/// The words of `text`, as every Eddy word-count example in every language defines them.
pub fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split_ascii_whitespace()
        .map(|w| w.trim_matches(|c: char| c.is_ascii_punctuation()))
        .filter(|w| !w.is_empty())
}

impl Operator for WordCount {
    fn init(&mut self, config: &Config) -> Result<(), Error> {
        self.lowercase = config.parse_or("lowercase", false)?;
        Ok(())
    }

    fn process(&mut self, event: Event, ctx: &mut Context) -> Result<(), Error> {
        let counts = ctx.store("counts")?;
        for word in words(event.value_str()?) {
            let word: Cow<str> = if self.lowercase {
                word.to_ascii_lowercase().into()
            } else {
                word.into()
            };
            let n = counts.increment(word.as_bytes(), 1)?;
            ctx.emit(Event::new(word, n.to_string()));
        }
        Ok(())
    }
}

eddy_guest::export!(WordCount);

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_guest::testing::Harness;

    #[test]
    fn counts_words_across_records() {
        let mut h = Harness::with_config(WordCount::default(), &[("lowercase", "true")]).unwrap();
        h.process(Event::keyless("The cat, the hat.").at(10))
            .unwrap();
        let out = h.process(Event::keyless("THE end").at(11)).unwrap();
        let pairs: Vec<(String, String)> = out
            .iter()
            .map(|o| {
                (
                    o.event.key_str().unwrap().unwrap().to_string(),
                    o.event.value_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            pairs,
            vec![("the".into(), "3".into()), ("end".into(), "1".into())]
        );
        assert_eq!(out[0].event.timestamp, 11);
        assert_eq!(h.store("counts")[&b"cat"[..].to_vec()], 1i64.to_le_bytes());
        assert_eq!(out[1].event, Event::new("end", "1").at(11));
    }

    #[test]
    fn keeps_case_by_default_and_rejects_non_utf8() {
        let mut h = Harness::new(WordCount::default()).unwrap();
        let out = h.process(Event::keyless("A a")).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].event.value, &b"1"[..]);
        assert!(matches!(
            h.process(Event::keyless(vec![0xff])),
            Err(Error::BadInput(_))
        ));
    }

    #[test]
    fn bad_config_is_an_init_error() {
        assert!(
            Harness::with_config(WordCount::default(), &[("lowercase", "yes please")]).is_err()
        );
    }
}
