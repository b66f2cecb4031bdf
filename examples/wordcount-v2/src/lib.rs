//! Word count, version 2: the same state as `wordcount` (store `counts`, 8-byte
//! little-endian counters) but emits JSON values: `{"word":"the","count":3}`.
//! Used to show a hot upgrade of a running pipeline.

use eddy_guest::prelude::*;
use std::borrow::Cow;

#[derive(Default)]
pub struct WordCountV2 {
    lowercase: bool,
}

fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split_ascii_whitespace()
        .map(|w| w.trim_matches(|c: char| c.is_ascii_punctuation()))
        .filter(|w| !w.is_empty())
}

impl Operator for WordCountV2 {
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
            let value = format!(
                r#"{{"word":{},"count":{n}}}"#,
                serde_json::to_string(&word)?
            );
            ctx.emit(Event::new(word, value));
        }
        Ok(())
    }
}

eddy_guest::export!(WordCountV2);

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_guest::testing::Harness;

    #[test]
    fn emits_json_counts() {
        let mut h = Harness::new(WordCountV2::default()).unwrap();
        h.put("counts", "a", 41i64.to_le_bytes());
        let out = h.process(Event::keyless("a \"b\"")).unwrap();
        assert_eq!(out[0].event.value, &br#"{"word":"a","count":42}"#[..]);
        assert_eq!(out[1].event.key_str().unwrap(), Some("b"));
    }
}
