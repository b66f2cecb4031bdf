use crate::Error;
use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;

thread_local! {
    /// The pipeline input of the batch being handled (one per batch: the host hands
    /// batches over one input at a time).
    static INPUT: RefCell<Option<Rc<str>>> = const { RefCell::new(None) };
}

/// Sets what [`Event::input`] answers until the next batch or timer.
pub(crate) fn set_current_input(input: Option<&str>) {
    INPUT.with(|i| {
        let mut i = i.borrow_mut();
        if i.as_deref() != input {
            *i = input.map(Rc::from);
        }
    });
}

/// Timestamp of an event built with [`Event::new`] before [`Event::at`] sets one: when
/// emitted it takes the timestamp of the record (or timer) being handled, as in Flink.
pub(crate) const INHERIT_TIMESTAMP: i64 = i64::MIN;

/// One record: an optional key, a value, an event time and headers.
///
/// Events handed to [`crate::Operator::process`] borrow the batch they came in (no copy
/// per record); events you build borrow or own their bytes as you give them. Call
/// [`Event::into_owned`] to keep one beyond the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    /// The key; `None` for keyless records.
    pub key: Option<Cow<'a, [u8]>>,
    /// The payload.
    pub value: Cow<'a, [u8]>,
    /// Event time, milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Headers in order; names are UTF-8, values are bytes.
    pub headers: Vec<(Cow<'a, str>, Cow<'a, [u8]>)>,
}

/// Anything usable as a key or value: `&str`, `String`, `&[u8]`, `Vec<u8>`, byte arrays.
/// Borrowed forms are not copied until the event is emitted.
pub trait IntoBytes<'a> {
    fn into_bytes(self) -> Cow<'a, [u8]>;
}

impl<'a> IntoBytes<'a> for &'a str {
    fn into_bytes(self) -> Cow<'a, [u8]> {
        Cow::Borrowed(self.as_bytes())
    }
}
impl<'a> IntoBytes<'a> for &'a String {
    fn into_bytes(self) -> Cow<'a, [u8]> {
        Cow::Borrowed(self.as_bytes())
    }
}
impl<'a> IntoBytes<'a> for String {
    fn into_bytes(self) -> Cow<'a, [u8]> {
        Cow::Owned(self.into_bytes())
    }
}
impl<'a> IntoBytes<'a> for &'a [u8] {
    fn into_bytes(self) -> Cow<'a, [u8]> {
        Cow::Borrowed(self)
    }
}
impl<'a, const N: usize> IntoBytes<'a> for &'a [u8; N] {
    fn into_bytes(self) -> Cow<'a, [u8]> {
        Cow::Borrowed(self)
    }
}
impl<'a> IntoBytes<'a> for &'a Vec<u8> {
    fn into_bytes(self) -> Cow<'a, [u8]> {
        Cow::Borrowed(self)
    }
}
impl<'a> IntoBytes<'a> for Vec<u8> {
    fn into_bytes(self) -> Cow<'a, [u8]> {
        Cow::Owned(self)
    }
}
impl<'a> IntoBytes<'a> for Cow<'a, [u8]> {
    fn into_bytes(self) -> Cow<'a, [u8]> {
        self
    }
}
impl<'a> IntoBytes<'a> for Cow<'a, str> {
    fn into_bytes(self) -> Cow<'a, [u8]> {
        match self {
            Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
            Cow::Owned(s) => Cow::Owned(s.into_bytes()),
        }
    }
}

impl<'a> Event<'a> {
    /// The name of the pipeline input the event being handled came from: its
    /// `[[inputs]]` name, or `"source"` for a pipeline with one `[source]`. `None` in
    /// `on_timer` and in a stage after a repartition. (It is the input of the batch
    /// being handled, so ask it inside `process`.)
    pub fn input(&self) -> Option<Rc<str>> {
        INPUT.with(|i| i.borrow().clone())
    }

    /// A keyed event. Its timestamp is the handled record's unless set with [`Event::at`].
    pub fn new(key: impl IntoBytes<'a>, value: impl IntoBytes<'a>) -> Self {
        Event {
            key: Some(key.into_bytes()),
            value: value.into_bytes(),
            timestamp: INHERIT_TIMESTAMP,
            headers: Vec::new(),
        }
    }

    /// A keyless event.
    pub fn keyless(value: impl IntoBytes<'a>) -> Self {
        Event {
            key: None,
            value: value.into_bytes(),
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
    pub fn with_header(mut self, name: impl Into<Cow<'a, str>>, value: impl IntoBytes<'a>) -> Self {
        self.headers.push((name.into(), value.into_bytes()));
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
            .map(|(_, v)| v.as_ref())
    }

    /// The same event, owning its bytes, to keep beyond the current call.
    pub fn into_owned(self) -> Event<'static> {
        Event {
            key: self.key.map(|k| Cow::Owned(k.into_owned())),
            value: Cow::Owned(self.value.into_owned()),
            timestamp: self.timestamp,
            headers: self
                .headers
                .into_iter()
                .map(|(n, v)| (Cow::Owned(n.into_owned()), Cow::Owned(v.into_owned())))
                .collect(),
        }
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
        let owned: Event<'static> = Event::new(&b"k"[..], String::from("v")).into_owned();
        assert_eq!(owned, Event::new("k", "v"));
    }

    #[test]
    fn borrowed_bytes_are_not_copied() {
        let text = String::from("payload");
        let e = Event::keyless(&text);
        assert!(matches!(e.value, Cow::Borrowed(_)));
    }

    #[test]
    fn non_utf8_is_bad_input() {
        let e = Event::new(vec![0xff], vec![0xfe]);
        assert!(matches!(e.key_str(), Err(Error::BadInput(_))));
        assert!(matches!(e.value_str(), Err(Error::BadInput(_))));
    }
}
