//! Records as users see them, and the JSON-lines format they are read and written in.

pub mod batch;
mod json;

pub use json::{JsonError, parse_array, parse_line, to_json, to_json_line};

/// One event outside an operator: an optional key, a value, event time and headers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    /// Event time, milliseconds since the Unix epoch.
    pub timestamp: i64,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
