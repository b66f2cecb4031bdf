//! Flat batches: many records in one byte buffer plus fixed-size descriptions that point
//! into it. This is the shape in which the host reads topics, runs operators and writes
//! outputs; the runtime hands it to a Wasm operator as the WIT `event-batch` of the same
//! shape (and converts there), so nothing below the runtime depends on its bindings.

use super::Record;
use std::ops::Range;

/// A byte range inside a batch's `data`; `len == Span::ABSENT` marks an absent value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub offset: u32,
    pub len: u32,
}

impl Span {
    /// The `len` of an absent value (a missing key, the main output's port).
    pub const ABSENT: u32 = u32::MAX;
    /// An absent value.
    pub const NONE: Span = Span {
        offset: 0,
        len: Span::ABSENT,
    };

    /// Appends `bytes` to `data` and returns where they landed.
    pub fn push(data: &mut Vec<u8>, bytes: &[u8]) -> Span {
        let offset = data.len() as u32;
        data.extend_from_slice(bytes);
        Span {
            offset,
            len: bytes.len() as u32,
        }
    }

    pub fn is_absent(&self) -> bool {
        self.len == Span::ABSENT
    }

    /// The bytes of the span in `data` (`None` when absent). The span must lie inside
    /// `data`: batches built here or checked on their way in always do.
    pub fn get(self, data: &[u8]) -> Option<&[u8]> {
        (!self.is_absent()).then(|| &data[self.offset as usize..][..self.len as usize])
    }
}

/// One header: a UTF-8 name and a byte value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderMeta {
    pub name: Span,
    pub value: Span,
}

/// One event of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventMeta {
    pub key: Span,
    pub value: Span,
    /// Event time, milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The event's headers: `headers[headers_start..][..headers_len]`.
    pub headers_start: u32,
    pub headers_len: u32,
}

/// Events, flat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventBatch {
    pub data: Vec<u8>,
    pub events: Vec<EventMeta>,
    pub headers: Vec<HeaderMeta>,
}

/// One event an operator emitted, and the side-output port it goes to (absent: the
/// main output).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputMeta {
    pub event: EventMeta,
    pub port: Span,
}

/// What an operator emitted, flat like [`EventBatch`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputBatch {
    pub data: Vec<u8>,
    pub outputs: Vec<OutputMeta>,
    pub headers: Vec<HeaderMeta>,
}

/// An empty batch.
pub fn empty() -> EventBatch {
    EventBatch::default()
}

/// Appends one event to a batch.
pub fn push(
    batch: &mut EventBatch,
    key: Option<&[u8]>,
    value: &[u8],
    timestamp: i64,
    headers: &[(String, Vec<u8>)],
) {
    let key = match key {
        Some(k) => Span::push(&mut batch.data, k),
        None => Span::NONE,
    };
    let value = Span::push(&mut batch.data, value);
    let headers_start = batch.headers.len() as u32;
    for (name, v) in headers {
        let name = Span::push(&mut batch.data, name.as_bytes());
        let value = Span::push(&mut batch.data, v);
        batch.headers.push(HeaderMeta { name, value });
    }
    batch.events.push(EventMeta {
        key,
        value,
        timestamp,
        headers_start,
        headers_len: headers.len() as u32,
    });
}

/// Appends a record to a batch.
pub fn push_record(batch: &mut EventBatch, r: &Record) {
    push(batch, r.key.as_deref(), &r.value, r.timestamp, &r.headers);
}

/// A batch of records.
pub fn from_records<'a>(records: impl IntoIterator<Item = &'a Record>) -> EventBatch {
    let mut batch = empty();
    for r in records {
        push_record(&mut batch, r);
    }
    batch
}

/// One event of a flat buffer as a record.
pub fn decode(data: &[u8], headers: &[HeaderMeta], meta: &EventMeta) -> Record {
    let hs = &headers[meta.headers_start as usize..][..meta.headers_len as usize];
    Record {
        key: meta.key.get(data).map(<[u8]>::to_vec),
        value: meta.value.get(data).unwrap_or_default().to_vec(),
        timestamp: meta.timestamp,
        headers: hs
            .iter()
            .map(|h| {
                let name = String::from_utf8_lossy(h.name.get(data).unwrap_or_default());
                (
                    name.into_owned(),
                    h.value.get(data).unwrap_or_default().to_vec(),
                )
            })
            .collect(),
    }
}

/// Event `i` of a batch as a record.
pub fn record(batch: &EventBatch, i: usize) -> Record {
    decode(&batch.data, &batch.headers, &batch.events[i])
}

/// The borrowed parts of one event: key, value, timestamp, headers.
pub type Parts<'a> = (Option<&'a [u8]>, &'a [u8], i64, Vec<(&'a [u8], &'a [u8])>);

/// Event `i` of a batch as borrowed parts.
pub fn parts(batch: &EventBatch, i: usize) -> Parts<'_> {
    let meta = &batch.events[i];
    let data = &batch.data;
    let headers = batch.headers[meta.headers_start as usize..][..meta.headers_len as usize]
        .iter()
        .map(|h| {
            (
                h.name.get(data).unwrap_or_default(),
                h.value.get(data).unwrap_or_default(),
            )
        })
        .collect();
    (
        meta.key.get(data),
        meta.value.get(data).unwrap_or_default(),
        meta.timestamp,
        headers,
    )
}

/// Every event of a batch as records.
pub fn records(batch: &EventBatch) -> impl Iterator<Item = Record> + '_ {
    (0..batch.events.len()).map(|i| record(batch, i))
}

/// Events `range` of a batch as a batch of their own.
pub fn slice(batch: &EventBatch, range: Range<usize>) -> EventBatch {
    let mut out = empty();
    for i in range {
        push_record(&mut out, &record(batch, i));
    }
    out
}

/// Appends every event of `other` to `batch`.
pub fn extend(batch: &mut EventBatch, other: &EventBatch) {
    for r in records(other) {
        push_record(batch, &r);
    }
}

/// The largest event time in a batch.
pub fn max_timestamp(batch: &EventBatch) -> Option<i64> {
    batch.events.iter().map(|e| e.timestamp).max()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A record with one header, for tests.
    pub(crate) fn rec(k: Option<&str>, v: &str, ts: i64) -> Record {
        Record {
            key: k.map(|k| k.as_bytes().to_vec()),
            value: v.as_bytes().to_vec(),
            timestamp: ts,
            headers: vec![("h".into(), v.as_bytes().to_vec())],
        }
    }

    #[test]
    fn records_round_trip_and_slice() {
        let rs = vec![
            rec(Some("a"), "1", 1),
            rec(None, "2", 2),
            rec(Some(""), "", 3),
        ];
        let b = from_records(&rs);
        assert_eq!(records(&b).collect::<Vec<_>>(), rs);
        assert_eq!(
            records(&slice(&b, 1..3)).collect::<Vec<_>>(),
            rs[1..].to_vec()
        );
        assert_eq!(max_timestamp(&b), Some(3));
        let mut joined = slice(&b, 0..1);
        extend(&mut joined, &slice(&b, 1..3));
        assert_eq!(records(&joined).collect::<Vec<_>>(), rs);
    }
}
