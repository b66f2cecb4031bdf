use crate::Error;
use std::str::FromStr;

/// The operator's `config` table from the pipeline spec, handed to [`crate::Operator::init`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    entries: Vec<(String, String)>,
}

impl Config {
    /// A config from name-value pairs.
    pub fn new(entries: Vec<(String, String)>) -> Self {
        Config { entries }
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `name` parsed as `T`, `default` when unset, and an error naming the
    /// setting when it does not parse.
    pub fn parse_or<T: FromStr>(&self, name: &str, default: T) -> Result<T, Error>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|e| Error::fatal(format!("config `{name}` = {raw:?} is invalid: {e}"))),
        }
    }

    /// Every name-value pair, in spec order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// `name` as a whole number (`threshold = 5`), `default` when unset.
    pub fn int(&self, name: &str, default: i64) -> Result<i64, Error> {
        self.typed(name, default, "a whole number, such as 5", |v| {
            v.parse().ok()
        })
    }

    /// `name` as a number (`ratio = 0.5`), `default` when unset.
    pub fn float(&self, name: &str, default: f64) -> Result<f64, Error> {
        self.typed(name, default, "a number, such as 0.5", |v| {
            v.parse().ok().filter(|f: &f64| f.is_finite())
        })
    }

    /// `name` as a boolean (`true` or `false`), `default` when unset.
    pub fn bool(&self, name: &str, default: bool) -> Result<bool, Error> {
        self.typed(name, default, "true or false", |v| match v {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        })
    }

    /// `name` as text, `default` when unset.
    pub fn string(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or(default).to_string()
    }

    /// `name` as a duration (`window = "1m"`: a whole number with `ms`, `s`, `m`, `h`
    /// or `d`), `default` (written the same way) when unset.
    pub fn duration(&self, name: &str, default: &str) -> Result<std::time::Duration, Error> {
        let how = "a duration such as \"250ms\", \"5s\", \"1m\", \"2h\" or \"1d\"";
        let raw = self.get(name).unwrap_or(default);
        parse_duration(raw.trim()).ok_or_else(|| invalid(name, raw, how))
    }

    /// `name` as a list (`pages = ["home", "cart"]`, which the host hands over as JSON
    /// text): each item as text (numbers and booleans too); empty when unset.
    #[cfg(feature = "json")]
    pub fn list(&self, name: &str) -> Result<Vec<String>, Error> {
        let how = "a list of strings, numbers or booleans, such as [\"a\", \"b\"]";
        let Some(raw) = self.get(name) else {
            return Ok(Vec::new());
        };
        let items: Vec<serde_json::Value> =
            serde_json::from_str(raw).map_err(|_| invalid(name, raw, how))?;
        items
            .into_iter()
            .map(|item| match item {
                serde_json::Value::String(s) => Ok(s),
                serde_json::Value::Number(n) => Ok(n.to_string()),
                serde_json::Value::Bool(b) => Ok(b.to_string()),
                _ => Err(invalid(name, raw, how)),
            })
            .collect()
    }

    fn typed<T>(
        &self,
        name: &str,
        default: T,
        expected: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<T, Error> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => parse(raw.trim()).ok_or_else(|| invalid(name, raw, expected)),
        }
    }
}

/// The error of a config value that is not what the operator expects: the key, the
/// value and what was expected, for `init` to fail with.
fn invalid(name: &str, raw: &str, expected: &str) -> Error {
    Error::fatal(format!("config `{name}` = {raw:?}: expected {expected}"))
}

/// `250ms`, `5s`, `1m`, `2h`, `1d`.
fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let digits = text.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = text.split_at(digits);
    let n: u64 = n.parse().ok()?;
    let ms = match unit.trim() {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    Some(std::time::Duration::from_millis(n.checked_mul(ms)?))
}

#[cfg(test)]
mod typed_tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Config {
        Config::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn typed_values_parse_or_name_the_key_the_value_and_what_was_expected() {
        let c = config(&[
            ("threshold", "5"),
            ("ratio", "0.5"),
            ("on", "true"),
            ("window", "2m"),
            ("pages", r#"["home", 7, true]"#),
            ("bad", "five"),
        ]);
        assert_eq!(c.int("threshold", 1).unwrap(), 5);
        assert_eq!(c.int("missing", 1).unwrap(), 1);
        assert_eq!(c.float("ratio", 0.0).unwrap(), 0.5);
        assert!(c.bool("on", false).unwrap());
        assert_eq!(
            c.duration("window", "1s").unwrap(),
            std::time::Duration::from_secs(120)
        );
        assert_eq!(
            c.duration("missing", "250ms").unwrap(),
            std::time::Duration::from_millis(250)
        );
        assert_eq!(c.list("pages").unwrap(), ["home", "7", "true"]);
        assert!(c.list("missing").unwrap().is_empty());
        assert_eq!(c.string("missing", "x"), "x");
        for (e, says) in [
            (c.int("bad", 0).unwrap_err(), "a whole number"),
            (c.float("bad", 0.0).unwrap_err(), "a number"),
            (c.bool("bad", false).unwrap_err(), "true or false"),
            (c.duration("bad", "1s").unwrap_err(), "a duration"),
            (c.list("bad").unwrap_err(), "a list"),
        ] {
            let text = e.to_string();
            assert!(
                text.contains("`bad`") && text.contains("\"five\"") && text.contains(says),
                "{text}"
            );
        }
        assert!(c.duration("window", "x").is_ok());
        assert!(config(&[("d", "5 parsecs")]).duration("d", "1s").is_err());
        assert!(
            config(&[("d", "99999999999999999d")])
                .duration("d", "1s")
                .is_err()
        );
    }
}
