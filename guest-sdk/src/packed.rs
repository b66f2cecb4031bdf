//! The packed form of batches (`packed-handler`, WIT 0.1.1): flat batches whose
//! fixed-size descriptions are little-endian bytes. The SDK takes its batches this way
//! because they carry the host's state epoch, which lets the stores' caches outlive a
//! batch; decoding the descriptions costs no more than the record form.

use crate::bindings::eddy::operator::types::{
    EventMeta, HeaderMeta, OutputBatch, OutputMeta, PackedBatch, PackedOutput, PackedWrites, Span,
};
use crate::event::Event;
use crate::flat::{self, ABSENT};

/// Bytes per packed event: key and value spans, timestamp, headers start and length.
const EVENT: usize = 32;
/// Bytes per packed header: name and value spans.
const HEADER: usize = 16;
/// Bytes per packed output: an event and the port's span.
const OUTPUT: usize = EVENT + 8;
/// Bytes per packed write: key and value spans.
const WRITE: usize = 16;

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn span_at(b: &[u8], at: usize) -> Span {
    Span {
        offset: u32_at(b, at),
        len: u32_at(b, at + 4),
    }
}

fn event_at(b: &[u8]) -> EventMeta {
    EventMeta {
        key: span_at(b, 0),
        value: span_at(b, 8),
        timestamp: i64::from_le_bytes(b[16..24].try_into().expect("8 bytes")),
        headers_start: u32_at(b, 24),
        headers_len: u32_at(b, 28),
    }
}

fn put_span(out: &mut Vec<u8>, s: Span) {
    out.extend_from_slice(&s.offset.to_le_bytes());
    out.extend_from_slice(&s.len.to_le_bytes());
}

fn put_event(out: &mut Vec<u8>, e: &EventMeta) {
    put_span(out, e.key);
    put_span(out, e.value);
    out.extend_from_slice(&e.timestamp.to_le_bytes());
    out.extend_from_slice(&e.headers_start.to_le_bytes());
    out.extend_from_slice(&e.headers_len.to_le_bytes());
}

/// The header descriptions of a packed list. A torn description is a host bug: trap.
fn headers(bytes: &[u8]) -> Vec<HeaderMeta> {
    assert!(
        bytes.len().is_multiple_of(HEADER),
        "eddy-guest: torn packed headers"
    );
    bytes
        .chunks_exact(HEADER)
        .map(|h| HeaderMeta {
            name: span_at(h, 0),
            value: span_at(h, 8),
        })
        .collect()
}

/// The events of a packed batch, decoded one by one, borrowing the batch's buffer.
pub(crate) fn events(batch: &PackedBatch) -> impl Iterator<Item = Event<'_>> + '_ {
    assert!(
        batch.events.len().is_multiple_of(EVENT),
        "eddy-guest: torn packed events"
    );
    let headers = headers(&batch.headers);
    batch
        .events
        .chunks_exact(EVENT)
        .map(move |e| flat::decode(&batch.data, &headers, &event_at(e)))
}

/// Builds a packed batch (the native test harness hands its batches over this way).
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn batch<'a, 'e: 'a>(
    events: impl IntoIterator<Item = &'a Event<'e>>,
    state_epoch: u64,
) -> PackedBatch {
    let flat = flat::event_batch(events);
    let mut packed = PackedBatch {
        data: flat.data,
        events: Vec::with_capacity(flat.events.len() * EVENT),
        headers: Vec::with_capacity(flat.headers.len() * HEADER),
        state_epoch,
    };
    for e in &flat.events {
        put_event(&mut packed.events, e);
    }
    for h in &flat.headers {
        put_span(&mut packed.headers, h.name);
        put_span(&mut packed.headers, h.value);
    }
    packed
}

/// Appends one output's description: its event and its port (absent: the main output).
pub(crate) fn put_output(outputs: &mut Vec<u8>, event: &EventMeta, port: Span) {
    put_event(outputs, event);
    put_span(outputs, port);
}

/// A packed output in the record form, for `handler.process`.
pub(crate) fn unpack_output(out: PackedOutput) -> OutputBatch {
    OutputBatch {
        outputs: out
            .outputs
            .chunks_exact(OUTPUT)
            .map(|o| OutputMeta {
                event: event_at(o),
                port: span_at(o, EVENT),
            })
            .collect(),
        headers: headers(&out.headers),
        data: out.data,
    }
}

/// The port and event of every output of a packed output (for the native harness).
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn outputs(out: &PackedOutput) -> impl Iterator<Item = (Option<String>, Event<'_>)> {
    let headers = headers(&out.headers);
    out.outputs.chunks_exact(OUTPUT).map(move |o| {
        let port = flat::get(&out.data, span_at(o, EVENT))
            .map(|p| String::from_utf8_lossy(p).into_owned());
        (port, flat::decode(&out.data, &headers, &event_at(o)))
    })
}

/// Sets and deletes for `store.write-packed`, in the order they are added.
#[derive(Default)]
pub(crate) struct Writes {
    data: Vec<u8>,
    entries: Vec<u8>,
}

impl Writes {
    /// Adds a write of `value` under `key`; `None` deletes the key.
    pub(crate) fn push(&mut self, key: &[u8], value: Option<&[u8]>) {
        let key = flat::push(&mut self.data, key);
        let value = match value {
            Some(v) => flat::push(&mut self.data, v),
            None => Span {
                offset: 0,
                len: ABSENT,
            },
        };
        put_span(&mut self.entries, key);
        put_span(&mut self.entries, value);
    }

    pub(crate) fn into_wit(self) -> PackedWrites {
        PackedWrites {
            data: self.data,
            entries: self.entries,
        }
    }

    /// The writes in order, as `(key, value)` (`None`: a delete).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(crate) fn decode(writes: &PackedWrites) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        assert!(
            writes.entries.len().is_multiple_of(WRITE),
            "eddy-guest: torn packed writes"
        );
        writes.entries.chunks_exact(WRITE).map(|w| {
            (
                flat::get(&writes.data, span_at(w, 0)).unwrap_or_default(),
                flat::get(&writes.data, span_at(w, 8)),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_batches_round_trip() {
        let events = crate::flat::tests::sample_events();
        let packed = batch(&events, 7);
        assert_eq!(packed.state_epoch, 7);
        assert_eq!(packed.events.len(), 3 * EVENT);
        let decoded: Vec<Event<'_>> = super::events(&packed).collect();
        assert_eq!(decoded, events);
    }

    #[test]
    fn writes_keep_order_and_deletes() {
        let mut w = Writes::default();
        w.push(b"a", Some(b"1"));
        w.push(b"b", None);
        w.push(b"", Some(b""));
        let wit = w.into_wit();
        let got: Vec<_> = Writes::decode(&wit).collect();
        assert_eq!(
            got,
            vec![
                (&b"a"[..], Some(&b"1"[..])),
                (&b"b"[..], None),
                (&b""[..], Some(&b""[..]))
            ]
        );
    }
}
