//! The JSON event format shared by `eddy run` files, topic produce/consume and the API:
//!
//! ```json
//! {"key": "k", "value": "v", "timestamp": 1700000000000, "headers": {"name": "value"}}
//! ```
//! `key` is optional; `key_b64` / `value_b64` / `headers_b64` carry binary data. A `value`
//! that is not a string is stored as its compact JSON text. Written records use the plain
//! fields when the bytes are UTF-8 and the `_b64` fields otherwise.

use super::Record;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A JSON event that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    #[error("invalid JSON event: {0}")]
    Syntax(#[from] serde_json::Error),
    #[error("invalid JSON event: {0}")]
    Invalid(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventIn {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    key_b64: Option<String>,
    #[serde(default)]
    value: Option<serde_json::Value>,
    #[serde(default)]
    value_b64: Option<String>,
    #[serde(default)]
    timestamp: Option<i64>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    headers_b64: BTreeMap<String, String>,
    /// Only meaningful when producing to a topic; accepted and ignored elsewhere.
    #[serde(default)]
    partition: Option<u32>,
}

fn b64(field: &str, text: &str) -> Result<Vec<u8>, JsonError> {
    B64.decode(text)
        .map_err(|e| JsonError::Invalid(format!("`{field}` is not valid base64: {e}")))
}

/// Reads one event; `default_timestamp` fills a missing `timestamp`. Returns the record
/// and the explicit partition, if the event names one.
pub fn parse_line(line: &str, default_timestamp: i64) -> Result<(Record, Option<u32>), JsonError> {
    let e: EventIn = serde_json::from_str(line).map_err(|e| explain(line, e))?;
    parse_event(e, default_timestamp)
}

/// The fields of a JSON event.
const FIELDS: &[&str] = &[
    "key",
    "key_b64",
    "value",
    "value_b64",
    "timestamp",
    "headers",
    "headers_b64",
    "partition",
];

/// A clearer message for JSON that parses but is not an event (a bare object of the
/// user's own fields, a number, a string): say how to wrap it as the event's value.
fn explain(text: &str, e: serde_json::Error) -> JsonError {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return JsonError::Syntax(e);
    };
    let wrap = "to send it as the event's value, wrap it: {\"value\": …}";
    match &v {
        serde_json::Value::Object(fields) => {
            match fields.keys().find(|k| !FIELDS.contains(&k.as_str())) {
                Some(unknown) => JsonError::Invalid(format!(
                    "unknown field {unknown:?}: an event's fields are {}; {wrap}",
                    FIELDS.join(", ")
                )),
                None => JsonError::Syntax(e),
            }
        }
        serde_json::Value::Array(_) => JsonError::Invalid(format!(
            "a JSON array is not an event (send arrays of events with Content-Type application/json); {wrap}"
        )),
        _ => JsonError::Invalid(format!(
            "an event is a JSON object such as {{\"key\": \"k\", \"value\": \"v\"}}, not {}; {wrap}",
            kind(&v)
        )),
    }
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn parse_event(e: EventIn, default_timestamp: i64) -> Result<(Record, Option<u32>), JsonError> {
    let key = match (e.key, e.key_b64) {
        (Some(_), Some(_)) => {
            return Err(JsonError::Invalid(
                "give either `key` or `key_b64`, not both".into(),
            ));
        }
        (Some(k), None) => Some(k.into_bytes()),
        (None, Some(k)) => Some(b64("key_b64", &k)?),
        (None, None) => None,
    };
    let value = match (e.value, e.value_b64) {
        (Some(_), Some(_)) => {
            return Err(JsonError::Invalid(
                "give either `value` or `value_b64`, not both".into(),
            ));
        }
        (Some(serde_json::Value::String(s)), None) => s.into_bytes(),
        (Some(other), None) => other.to_string().into_bytes(),
        (None, Some(v)) => b64("value_b64", &v)?,
        (None, None) => {
            return Err(JsonError::Invalid(
                "missing `value` (or `value_b64`)".into(),
            ));
        }
    };
    let mut headers: Vec<(String, Vec<u8>)> = e
        .headers
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    for (k, v) in e.headers_b64 {
        let bytes = b64(&format!("headers_b64.{k}"), &v)?;
        headers.push((k, bytes));
    }
    let record = Record {
        key,
        value,
        timestamp: e.timestamp.unwrap_or(default_timestamp),
        headers,
    };
    Ok((record, e.partition))
}

/// Reads a JSON array of events (the alternative to JSON lines for produce calls).
pub fn parse_array(
    text: &str,
    default_timestamp: i64,
) -> Result<Vec<(Record, Option<u32>)>, JsonError> {
    let events: Vec<serde_json::Value> = serde_json::from_str(text)?;
    events
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let e: EventIn = serde_json::from_value(v.clone()).map_err(|err| {
                let why = match explain(&v.to_string(), err) {
                    JsonError::Invalid(m) => m,
                    JsonError::Syntax(s) => s.to_string(),
                };
                JsonError::Invalid(format!("event {}: {why}", i + 1))
            })?;
            parse_event(e, default_timestamp)
        })
        .collect()
}

#[derive(Serialize)]
struct EventOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_b64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_b64: Option<String>,
    timestamp: i64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    headers: BTreeMap<&'a str, &'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    headers_b64: BTreeMap<&'a str, String>,
}

/// A record as a JSON object.
pub fn to_json(r: &Record) -> serde_json::Value {
    serde_json::to_value(event_out(r)).expect("records always serialize")
}

fn event_out(r: &Record) -> EventOut<'_> {
    let (key, key_b64) = match r.key.as_deref() {
        None => (None, None),
        Some(k) => match std::str::from_utf8(k) {
            Ok(s) => (Some(s), None),
            Err(_) => (None, Some(B64.encode(k))),
        },
    };
    let (value, value_b64) = match std::str::from_utf8(&r.value) {
        Ok(s) => (Some(s), None),
        Err(_) => (None, Some(B64.encode(&r.value))),
    };
    let mut headers = BTreeMap::new();
    let mut headers_b64 = BTreeMap::new();
    for (k, v) in &r.headers {
        match std::str::from_utf8(v) {
            Ok(s) => {
                headers.insert(k.as_str(), s);
            }
            Err(_) => {
                headers_b64.insert(k.as_str(), B64.encode(v));
            }
        }
    }
    EventOut {
        key,
        key_b64,
        value,
        value_b64,
        timestamp: r.timestamp,
        headers,
        headers_b64,
    }
}

/// A record as one line of JSON (no trailing newline).
pub fn to_json_line(r: &Record) -> String {
    serde_json::to_string(&event_out(r)).expect("records always serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_documented_format() {
        let (r, p) = parse_line(
            r#"{"key":"k","value":"v","timestamp":5,"headers":{"h":"x"}}"#,
            0,
        )
        .unwrap();
        assert_eq!(
            r,
            Record {
                key: Some(b"k".to_vec()),
                value: b"v".to_vec(),
                timestamp: 5,
                headers: vec![("h".into(), b"x".to_vec())]
            }
        );
        assert_eq!(p, None);
        let (r, _) = parse_line(r#"{"value":"v"}"#, 42).unwrap();
        assert_eq!((r.key, r.timestamp), (None, 42));
    }

    #[test]
    fn binary_round_trips_through_b64() {
        let r = Record {
            key: Some(vec![0xff, 0]),
            value: vec![0xfe],
            timestamp: -1,
            headers: vec![("h".into(), vec![0x80])],
        };
        let line = to_json_line(&r);
        assert!(
            line.contains("key_b64") && line.contains("value_b64") && line.contains("headers_b64")
        );
        assert_eq!(parse_line(&line, 0).unwrap().0, r);
    }

    #[test]
    fn json_values_are_kept_as_json_text() {
        let (r, _) = parse_line(r#"{"value":{"a":[1,2]}}"#, 0).unwrap();
        assert_eq!(r.value, br#"{"a":[1,2]}"#);
    }

    #[test]
    fn bad_events_say_what_is_wrong() {
        let unknown = parse_line(r#"{"value":"v","colour":"red"}"#, 0)
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("unknown field \"colour\""), "{unknown}");
        // A bare object of the user's own fields says how to send it as the value, once.
        let bare = parse_line(r#"{"card":"4111","amount":12}"#, 0)
            .unwrap_err()
            .to_string();
        assert!(bare.contains("wrap it: {\"value\": …}"), "{bare}");
        assert_eq!(bare.matches("unknown field").count(), 1, "{bare}");
        let number = parse_line("42", 0).unwrap_err().to_string();
        assert!(
            number.contains("not a number") && number.contains("wrap it"),
            "{number}"
        );
        let array = parse_array(r#"[{"value":"a"},{"card":"x"}]"#, 0)
            .unwrap_err()
            .to_string();
        assert!(array.contains("event 2: unknown field \"card\""), "{array}");
        let missing = parse_line(r#"{"key":"k"}"#, 0).unwrap_err().to_string();
        assert!(missing.contains("missing `value`"), "{missing}");
        let both = parse_line(r#"{"value":"v","value_b64":"AA=="}"#, 0)
            .unwrap_err()
            .to_string();
        assert!(both.contains("either"), "{both}");
        assert!(
            parse_line(r#"{"value_b64":"!!"}"#, 0)
                .unwrap_err()
                .to_string()
                .contains("base64")
        );
        assert!(parse_line("{nope", 0).is_err());
    }

    #[test]
    fn plain_output_is_compact_and_ordered() {
        let r = Record {
            key: Some(b"the".to_vec()),
            value: b"3".to_vec(),
            timestamp: 7,
            headers: vec![],
        };
        assert_eq!(
            to_json_line(&r),
            r#"{"key":"the","value":"3","timestamp":7}"#
        );
    }
}
