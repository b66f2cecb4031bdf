use crate::Error;

/// Timestamp of an event built with [`Event::new`] before [`Event::at`] sets one: when
/// emitted it takes the timestamp of the record (or timer) being handled, as in Flink.
pub(crate) const INHERIT_TIMESTAMP: i64 = i64::MIN;

/// One record: an optional key, a value, an event time and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The key; `None` for keyless records.
    pub key: Option<Vec<u8>>,
    /// The payload.
    pub value: Vec<u8>,
    /// Event time, milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Headers in order; names are UTF-8, values are bytes.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Event {
    /// A keyed event. Its timestamp is the handled record's unless set with [`Event::at`].
    pub fn new(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Event {
            key: Some(key.into()),
            value: value.into(),
            timestamp: INHERIT_TIMESTAMP,
            headers: Vec::new(),
        }
    }

    /// A keyless event.
    pub fn keyless(value: impl Into<Vec<u8>>) -> Self {
        Event {
            key: None,
            value: value.into(),
            timestamp: INHERIT_TIMESTAMP,
            headers: Vec::new(),
        }
    }

    /// Sets the event time (ms since the Unix epoch).
    pub fn at(mut self, timestamp: i64) -> Self {
        self.timestamp = timestamp;
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The key as UTF-8; `Ok(None)` for keyless events, bad input when not UTF-8.
    pub fn key_str(&self) -> Result<Option<&str>, Error> {
        match &self.key {
            None => Ok(None),
            Some(k) => Ok(Some(std::str::from_utf8(k)?)),
        }
    }

    /// The value as UTF-8, bad input when it is not.
    pub fn value_str(&self) -> Result<&str, Error> {
        Ok(std::str::from_utf8(&self.value)?)
    }

    /// The value parsed as JSON into `T`, bad input when it does not parse.
    #[cfg(feature = "json")]
    pub fn value_json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        Ok(serde_json::from_slice(&self.value)?)
    }

    /// The first header called `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_and_accessors() {
        let e = Event::new("k", "v").at(7).with_header("h", "x");
        assert_eq!(e.key_str().unwrap(), Some("k"));
        assert_eq!(e.value_str().unwrap(), "v");
        assert_eq!(e.timestamp, 7);
        assert_eq!(e.header("h"), Some(&b"x"[..]));
        assert_eq!(e.header("nope"), None);
        assert_eq!(Event::keyless("v").key, None);
        assert_eq!(Event::keyless("v").timestamp, INHERIT_TIMESTAMP);
    }

    #[test]
    fn non_utf8_is_bad_input() {
        let e = Event::new(vec![0xff], vec![0xfe]);
        assert!(matches!(e.key_str(), Err(Error::BadInput(_))));
        assert!(matches!(e.value_str(), Err(Error::BadInput(_))));
    }
}
