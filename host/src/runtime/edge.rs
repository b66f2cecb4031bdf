//! The runtime's edge: the host's flat batches (`record::batch`) become the WIT types of
//! the bindings on the way into an operator and come back as host types, so nothing
//! outside the runtime depends on the bindings. The shapes match field for field; only
//! the small fixed-size descriptions are mapped, and output buffers are moved, not copied.

use super::bindings as wit;
use crate::record::batch::{EventBatch, EventMeta, HeaderMeta, OutputBatch, OutputMeta, Span};

fn span_in(s: Span) -> wit::Span {
    wit::Span {
        offset: s.offset,
        len: s.len,
    }
}

fn span_out(s: wit::Span) -> Span {
    Span {
        offset: s.offset,
        len: s.len,
    }
}

fn header_in(h: &HeaderMeta) -> wit::HeaderMeta {
    wit::HeaderMeta {
        name: span_in(h.name),
        value: span_in(h.value),
    }
}

fn header_out(h: wit::HeaderMeta) -> HeaderMeta {
    HeaderMeta {
        name: span_out(h.name),
        value: span_out(h.value),
    }
}

fn event_in(e: &EventMeta) -> wit::EventMeta {
    wit::EventMeta {
        key: span_in(e.key),
        value: span_in(e.value),
        timestamp: e.timestamp,
        headers_start: e.headers_start,
        headers_len: e.headers_len,
    }
}

fn event_out(e: wit::EventMeta) -> EventMeta {
    EventMeta {
        key: span_out(e.key),
        value: span_out(e.value),
        timestamp: e.timestamp,
        headers_start: e.headers_start,
        headers_len: e.headers_len,
    }
}

pub(super) fn empty_event_batch() -> wit::EventBatch {
    wit::EventBatch {
        data: Vec::new(),
        events: Vec::new(),
        headers: Vec::new(),
    }
}

/// Fills `into` (kept between calls, so its buffers are reused) with `batch`.
pub(super) fn event_batch_in(batch: &EventBatch, into: &mut wit::EventBatch) {
    into.data.clear();
    into.data.extend_from_slice(&batch.data);
    into.events.clear();
    into.events.extend(batch.events.iter().map(event_in));
    into.headers.clear();
    into.headers.extend(batch.headers.iter().map(header_in));
}

/// An operator's output as a host batch.
pub(super) fn output_batch_out(out: wit::OutputBatch) -> OutputBatch {
    OutputBatch {
        data: out.data,
        outputs: out
            .outputs
            .into_iter()
            .map(|o| OutputMeta {
                event: event_out(o.event),
                port: span_out(o.port),
            })
            .collect(),
        headers: out.headers.into_iter().map(header_out).collect(),
    }
}

/// Key-value pairs as a flat WIT batch.
pub(super) fn kv_batch_in(entries: &[(Vec<u8>, Vec<u8>)]) -> wit::KvBatch {
    let mut batch = wit::KvBatch {
        data: Vec::new(),
        entries: Vec::with_capacity(entries.len()),
    };
    for (k, v) in entries {
        let key = span_in(Span::push(&mut batch.data, k));
        let value = span_in(Span::push(&mut batch.data, v));
        batch.entries.push(wit::KvMeta { key, value });
    }
    batch
}

/// A flat list of optional byte strings (absent: `None`); `Err` when an item lies
/// outside the list's buffer.
pub(super) fn byte_list_out(list: &wit::ByteList) -> Result<Vec<Option<Vec<u8>>>, String> {
    list.items
        .iter()
        .map(|item| {
            if item.len == Span::ABSENT {
                return Ok(None);
            }
            let range = item.offset as usize..item.offset as usize + item.len as usize;
            list.data
                .get(range)
                .map(|v| Some(v.to_vec()))
                .ok_or_else(|| "a value lies outside its buffer".to_string())
        })
        .collect()
}
