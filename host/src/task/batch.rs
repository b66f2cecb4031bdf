//! Flat batches on the host side: built from records, sliced for retries, checked and
//! split when they come back from an operator.

use crate::record::Record;
use crate::runtime::bindings::{EventBatch, EventMeta, HeaderMeta, OutputBatch, Span};
use std::ops::Range;

const ABSENT: u32 = u32::MAX;

/// An empty batch.
pub fn empty() -> EventBatch {
    EventBatch {
        data: Vec::new(),
        events: Vec::new(),
        headers: Vec::new(),
    }
}

fn push_bytes(data: &mut Vec<u8>, bytes: &[u8]) -> Span {
    let offset = data.len() as u32;
    data.extend_from_slice(bytes);
    Span {
        offset,
        len: bytes.len() as u32,
    }
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
        Some(k) => push_bytes(&mut batch.data, k),
        None => Span {
            offset: 0,
            len: ABSENT,
        },
    };
    let value = push_bytes(&mut batch.data, value);
    let headers_start = batch.headers.len() as u32;
    for (name, v) in headers {
        let name = push_bytes(&mut batch.data, name.as_bytes());
        let value = push_bytes(&mut batch.data, v);
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

fn bytes(data: &[u8], span: Span) -> Option<&[u8]> {
    if span.len == ABSENT {
        None
    } else {
        Some(&data[span.offset as usize..][..span.len as usize])
    }
}

fn decode(data: &[u8], headers: &[HeaderMeta], meta: &EventMeta) -> Record {
    let hs = &headers[meta.headers_start as usize..][..meta.headers_len as usize];
    Record {
        key: bytes(data, meta.key).map(<[u8]>::to_vec),
        value: bytes(data, meta.value).unwrap_or_default().to_vec(),
        timestamp: meta.timestamp,
        headers: hs
            .iter()
            .map(|h| {
                let name =
                    String::from_utf8_lossy(bytes(data, h.name).unwrap_or_default()).into_owned();
                (name, bytes(data, h.value).unwrap_or_default().to_vec())
            })
            .collect(),
    }
}

/// Event `i` of a batch as a record. Batches built here or checked with
/// [`check_output`] always decode.
pub fn record(batch: &EventBatch, i: usize) -> Record {
    decode(&batch.data, &batch.headers, &batch.events[i])
}

/// Event `i` of a batch as borrowed parts: key, value, timestamp, headers.
pub fn parts(batch: &EventBatch, i: usize) -> (Option<&[u8]>, &[u8], i64, Vec<(&[u8], &[u8])>) {
    let meta = &batch.events[i];
    let data = &batch.data;
    let headers = batch.headers[meta.headers_start as usize..][..meta.headers_len as usize]
        .iter()
        .map(|h| {
            (
                bytes(data, h.name).unwrap_or_default(),
                bytes(data, h.value).unwrap_or_default(),
            )
        })
        .collect();
    (
        bytes(data, meta.key),
        bytes(data, meta.value).unwrap_or_default(),
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

/// The largest event time in a batch.
pub fn max_timestamp(batch: &EventBatch) -> Option<i64> {
    batch.events.iter().map(|e| e.timestamp).max()
}

/// Checks that every span of an operator's output lies inside its buffers and that
/// names are UTF-8, so a buggy guest cannot make the host index out of bounds.
pub fn check_output(out: &OutputBatch) -> Result<(), String> {
    let len = out.data.len() as u64;
    let span_ok = |s: &Span, optional: bool| {
        (optional && s.len == ABSENT) || (s.len != ABSENT && s.offset as u64 + s.len as u64 <= len)
    };
    for h in &out.headers {
        if !span_ok(&h.name, false) || !span_ok(&h.value, false) {
            return Err("a header span points outside the batch data".into());
        }
        if std::str::from_utf8(bytes(&out.data, h.name).unwrap_or_default()).is_err() {
            return Err("a header name is not UTF-8".into());
        }
    }
    for (i, o) in out.outputs.iter().enumerate() {
        let e = &o.event;
        if !span_ok(&e.key, true) || !span_ok(&e.value, false) || !span_ok(&o.port, true) {
            return Err(format!(
                "output {i} has a span outside the batch data of {} bytes (key {:?}, value {:?}, port {:?})",
                out.data.len(),
                e.key,
                e.value,
                o.port
            ));
        }
        if e.headers_start as u64 + e.headers_len as u64 > out.headers.len() as u64 {
            return Err(format!("output {i} names headers beyond the header list"));
        }
        if let Some(port) = bytes(&out.data, o.port) {
            let port = std::str::from_utf8(port)
                .map_err(|_| format!("output {i} has a port name that is not UTF-8"))?;
            crate::model::spec::check_name("port", port).map_err(|e| format!("output {i}: {e}"))?;
        }
    }
    Ok(())
}

/// Splits a checked output batch into the main output (a batch for the next operator or
/// the sink; the buffers are reused, not copied) and side outputs by port.
pub fn split_output(out: OutputBatch) -> (EventBatch, Vec<(String, Record)>) {
    if out.outputs.iter().all(|o| o.port.len == ABSENT) {
        let events = out.outputs.into_iter().map(|o| o.event).collect();
        return (
            EventBatch {
                data: out.data,
                events,
                headers: out.headers,
            },
            Vec::new(),
        );
    }
    let mut main = empty();
    let mut side = Vec::new();
    for o in &out.outputs {
        let r = decode(&out.data, &out.headers, &o.event);
        match bytes(&out.data, o.port) {
            None => push_record(&mut main, &r),
            Some(port) => side.push((String::from_utf8_lossy(port).into_owned(), r)),
        }
    }
    (main, side)
}

/// Appends every event of `other` to `batch`.
pub fn extend(batch: &mut EventBatch, other: &EventBatch) {
    for r in records(other) {
        push_record(batch, &r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::bindings::OutputMeta;

    fn rec(k: Option<&str>, v: &str, ts: i64) -> Record {
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
    }

    fn as_output(b: EventBatch, port_of: impl Fn(usize) -> Option<&'static str>) -> OutputBatch {
        let mut data = b.data;
        let outputs = b
            .events
            .into_iter()
            .enumerate()
            .map(|(i, event)| {
                let port = match port_of(i) {
                    Some(p) => push_bytes(&mut data, p.as_bytes()),
                    None => Span {
                        offset: 0,
                        len: ABSENT,
                    },
                };
                OutputMeta { event, port }
            })
            .collect();
        OutputBatch {
            data,
            outputs,
            headers: b.headers,
        }
    }

    #[test]
    fn splits_main_and_side_outputs() {
        let rs = vec![
            rec(Some("a"), "1", 1),
            rec(None, "2", 2),
            rec(Some("c"), "3", 3),
        ];
        let out = as_output(from_records(&rs), |i| (i == 1).then_some("late"));
        check_output(&out).unwrap();
        let (main, side) = split_output(out);
        assert_eq!(
            records(&main).collect::<Vec<_>>(),
            vec![rs[0].clone(), rs[2].clone()]
        );
        assert_eq!(side, vec![("late".to_string(), rs[1].clone())]);
    }

    #[test]
    fn rejects_spans_outside_the_buffer() {
        let mut out = as_output(from_records(&[rec(Some("a"), "1", 1)]), |_| None);
        out.outputs[0].event.value.len = 1000;
        assert!(check_output(&out).is_err());
        let mut out = as_output(from_records(&[rec(Some("a"), "1", 1)]), |_| None);
        out.outputs[0].event.headers_len = 5;
        assert!(check_output(&out).is_err());
        let mut out = as_output(from_records(&[rec(Some("a"), "1", 1)]), |_| {
            Some("bad port!")
        });
        out.outputs[0].event.key.offset = u32::MAX - 1;
        assert!(check_output(&out).is_err());
    }
}
