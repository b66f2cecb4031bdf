//! The flat batch encoding of the WIT world: byte strings back to back in one buffer,
//! fixed-size spans pointing into it.

use crate::bindings::eddy::operator::types::{
    ByteList, EventBatch, EventMeta, HeaderMeta, KvBatch, OutputBatch, PackedOutput, Span,
};
use crate::event::Event;
use std::borrow::Cow;

/// `Span::len` of an absent value.
pub(crate) const ABSENT: u32 = u32::MAX;

const NONE_SPAN: Span = Span {
    offset: 0,
    len: ABSENT,
};

/// Appends `bytes` to `data` and returns its span.
pub(crate) fn push(data: &mut Vec<u8>, bytes: &[u8]) -> Span {
    let offset = data.len() as u32;
    data.extend_from_slice(bytes);
    Span {
        offset,
        len: bytes.len() as u32,
    }
}

fn push_opt(data: &mut Vec<u8>, bytes: Option<&[u8]>) -> Span {
    bytes.map_or(NONE_SPAN, |b| push(data, b))
}

/// The bytes of `span`, `None` when absent. A span outside `data` is a host bug: trap.
pub(crate) fn get(data: &[u8], span: Span) -> Option<&[u8]> {
    if span.len == ABSENT {
        return None;
    }
    let start = span.offset as usize;
    Some(&data[start..start + span.len as usize])
}

fn get_str(data: &[u8], span: Span) -> Cow<'_, str> {
    String::from_utf8_lossy(get(data, span).unwrap_or_default())
}

pub(crate) fn decode<'a>(data: &'a [u8], headers: &[HeaderMeta], meta: &EventMeta) -> Event<'a> {
    let headers = headers[meta.headers_start as usize..][..meta.headers_len as usize]
        .iter()
        .map(|h| {
            (
                get_str(data, h.name),
                Cow::Borrowed(get(data, h.value).unwrap_or_default()),
            )
        })
        .collect();
    Event {
        key: get(data, meta.key).map(Cow::Borrowed),
        value: Cow::Borrowed(get(data, meta.value).unwrap_or_default()),
        timestamp: meta.timestamp,
        headers,
    }
}

/// The events of a batch, decoded one by one, borrowing the batch's buffer.
pub(crate) fn events(batch: &EventBatch) -> impl Iterator<Item = Event<'_>> + '_ {
    batch
        .events
        .iter()
        .map(move |meta| decode(&batch.data, &batch.headers, meta))
}

/// Builds an `event-batch` (used by the SDK's own tests and the native test harness).
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn event_batch<'a, 'e: 'a>(
    events: impl IntoIterator<Item = &'a Event<'e>>,
) -> EventBatch {
    let mut batch = EventBatch {
        data: Vec::new(),
        events: Vec::new(),
        headers: Vec::new(),
    };
    for event in events {
        let meta = push_event(&mut batch.data, &mut batch.headers, event, event.timestamp);
        batch.events.push(meta);
    }
    batch
}

fn push_event(
    data: &mut Vec<u8>,
    headers: &mut Vec<HeaderMeta>,
    event: &Event<'_>,
    timestamp: i64,
) -> EventMeta {
    let key = push_opt(data, event.key.as_deref());
    let value = push(data, &event.value);
    let headers_start = headers.len() as u32;
    for (name, value) in &event.headers {
        let (name, value): (&str, &[u8]) = (name, value);
        let name = push(data, name.as_bytes());
        let value = push(data, value);
        headers.push(HeaderMeta { name, value });
    }
    EventMeta {
        key,
        value,
        timestamp,
        headers_start,
        headers_len: event.headers.len() as u32,
    }
}

/// Accumulates emitted events into a `packed-output` (or, for `handler.process`, the
/// `output-batch` it unpacks to).
#[derive(Default)]
pub(crate) struct OutputBuilder {
    data: Vec<u8>,
    outputs: Vec<u8>,
    headers: Vec<HeaderMeta>,
}

impl OutputBuilder {
    /// Appends `event` (with `timestamp`) to the output, on `port` or the main output.
    pub(crate) fn push(&mut self, port: Option<&str>, event: &Event<'_>, timestamp: i64) {
        let meta = push_event(&mut self.data, &mut self.headers, event, timestamp);
        let port = push_opt(&mut self.data, port.map(str::as_bytes));
        crate::packed::put_output(&mut self.outputs, &meta, port);
    }

    /// What was emitted so far, packed; the builder starts over empty.
    pub(crate) fn take(&mut self) -> PackedOutput {
        let mut headers = Vec::with_capacity(self.headers.len() * 16);
        for h in self.headers.drain(..) {
            for n in [h.name.offset, h.name.len, h.value.offset, h.value.len] {
                headers.extend_from_slice(&n.to_le_bytes());
            }
        }
        PackedOutput {
            data: std::mem::take(&mut self.data),
            outputs: std::mem::take(&mut self.outputs),
            headers,
        }
    }

    /// What was emitted so far, as an `output-batch`; the builder starts over empty.
    pub(crate) fn take_flat(&mut self) -> OutputBatch {
        crate::packed::unpack_output(self.take())
    }

    /// Drops what was emitted so far.
    pub(crate) fn clear(&mut self) {
        self.data.clear();
        self.outputs.clear();
        self.headers.clear();
    }
}

/// A `byte-list` of `items` (absent items allowed).
pub(crate) fn byte_list<'a>(items: impl IntoIterator<Item = Option<&'a [u8]>>) -> ByteList {
    let mut list = ByteList {
        data: Vec::new(),
        items: Vec::new(),
    };
    for item in items {
        let span = push_opt(&mut list.data, item);
        list.items.push(span);
    }
    list
}

/// The items of a `byte-list`.
pub(crate) fn byte_list_items(list: &ByteList) -> impl Iterator<Item = Option<&[u8]>> {
    list.items.iter().map(|s| get(&list.data, *s))
}

/// The entries of a `kv-batch`.
pub(crate) fn kv_entries(batch: &KvBatch) -> impl Iterator<Item = (&[u8], &[u8])> {
    batch.entries.iter().map(|e| {
        (
            get(&batch.data, e.key).unwrap_or_default(),
            get(&batch.data, e.value).unwrap_or_default(),
        )
    })
}

/// A `kv-batch` of `entries`.
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn kv_batch<'a>(entries: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> KvBatch {
    let mut batch = KvBatch {
        data: Vec::new(),
        entries: Vec::new(),
    };
    for (k, v) in entries {
        let key = push(&mut batch.data, k);
        let value = push(&mut batch.data, v);
        batch
            .entries
            .push(crate::bindings::eddy::operator::types::KvMeta { key, value });
    }
    batch
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Events with and without keys and headers, empty and binary, for round trips.
    pub(crate) fn sample_events() -> Vec<Event<'static>> {
        vec![
            Event::new("k1", "v1")
                .at(1)
                .with_header("a", "x")
                .with_header("b", vec![0u8, 1]),
            Event::keyless(vec![0xffu8]).at(2),
            Event::new("", "").at(-3),
        ]
    }

    #[test]
    fn event_batch_round_trips() {
        let events = sample_events();
        let batch = event_batch(&events);
        assert_eq!(batch.events.len(), 3);
        assert_eq!(batch.headers.len(), 2);
        let decoded: Vec<Event<'_>> = super::events(&batch).collect();
        assert_eq!(decoded, events);
    }

    #[test]
    fn output_builder_keeps_ports_and_resets() {
        let mut out = OutputBuilder::default();
        out.push(None, &Event::new("a", "1"), 5);
        out.push(Some("late"), &Event::keyless("2").with_header("h", "v"), 6);
        let packed = out.take();
        let decoded: Vec<_> = crate::packed::outputs(&packed).collect();
        assert_eq!(decoded[0], (None, Event::new("a", "1").at(5)));
        let late = (
            Some("late".into()),
            Event::keyless("2").at(6).with_header("h", "v"),
        );
        assert_eq!(decoded[1], late);
        // The record form holds the same outputs.
        out.push(Some("late"), &Event::keyless("2").with_header("h", "v"), 6);
        let flat = out.take_flat();
        assert_eq!(flat.outputs.len(), 1);
        assert_eq!(flat.outputs[0].event.timestamp, 6);
        assert_eq!(get(&flat.data, flat.outputs[0].port), Some(&b"late"[..]));
        assert_eq!(flat.headers.len(), 1);
        assert!(out.take().outputs.is_empty());
        out.push(None, &Event::new("b", "2"), 1);
        out.clear();
        assert!(out.take().outputs.is_empty());
    }

    #[test]
    fn byte_lists_mark_absent_items() {
        let list = byte_list([Some(&b"x"[..]), None, Some(&b""[..])]);
        let items: Vec<_> = byte_list_items(&list).collect();
        assert_eq!(items, vec![Some(&b"x"[..]), None, Some(&b""[..])]);
    }

    #[test]
    fn kv_batches_round_trip() {
        let batch = kv_batch([(&b"k"[..], &b"v"[..]), (&b""[..], &b"w"[..])]);
        let entries: Vec<_> = kv_entries(&batch).collect();
        assert_eq!(entries, vec![(&b"k"[..], &b"v"[..]), (&b""[..], &b"w"[..])]);
    }
}
