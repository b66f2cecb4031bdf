//! The packed form of batches (`packed-handler`, WIT 0.1.1): the same flat batches with
//! their fixed-size descriptions as little-endian bytes, which an interpreted guest
//! decodes with one native call instead of building an object per field.

use super::bindings::{PackedBatch, PackedOutput};
use crate::record::batch::{EventBatch, EventMeta, HeaderMeta, OutputBatch, OutputMeta, Span};

/// Bytes per packed event: key and value spans, timestamp, headers start and length.
pub const EVENT: usize = 32;
/// Bytes per packed header: name and value spans.
pub const HEADER: usize = 16;
/// Bytes per packed output: an event and the port's span.
pub const OUTPUT: usize = EVENT + 8;
/// Bytes per packed write: key and value spans.
pub const WRITE: usize = 16;

pub(super) fn empty_batch() -> PackedBatch {
    PackedBatch {
        data: Vec::new(),
        events: Vec::new(),
        headers: Vec::new(),
        state_epoch: 0,
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

/// Fills `into` (kept between calls, so its buffers are reused) with `batch`.
pub(super) fn batch_in(batch: &EventBatch, state_epoch: u64, into: &mut PackedBatch) {
    into.state_epoch = state_epoch;
    into.data.clear();
    into.data.extend_from_slice(&batch.data);
    into.events.clear();
    into.events.reserve(batch.events.len() * EVENT);
    for e in &batch.events {
        put_event(&mut into.events, e);
    }
    into.headers.clear();
    into.headers.reserve(batch.headers.len() * HEADER);
    for h in &batch.headers {
        put_span(&mut into.headers, h.name);
        put_span(&mut into.headers, h.value);
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

pub(super) fn span_at(b: &[u8], at: usize) -> Span {
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

/// An operator's packed output as a host batch; `Err` when a description list is not a
/// whole number of descriptions. Spans are checked later, as for `handler.process`.
pub(super) fn output_out(out: PackedOutput) -> Result<OutputBatch, String> {
    if !out.outputs.len().is_multiple_of(OUTPUT) || !out.headers.len().is_multiple_of(HEADER) {
        return Err(format!(
            "process returned {} bytes of outputs and {} of headers: not whole descriptions of {OUTPUT} and {HEADER} bytes",
            out.outputs.len(),
            out.headers.len()
        ));
    }
    Ok(OutputBatch {
        data: out.data,
        outputs: out
            .outputs
            .chunks_exact(OUTPUT)
            .map(|b| OutputMeta {
                event: event_at(b),
                port: span_at(b, EVENT),
            })
            .collect(),
        headers: out
            .headers
            .chunks_exact(HEADER)
            .map(|b| HeaderMeta {
                name: span_at(b, 0),
                value: span_at(b, 8),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::batch;

    #[test]
    fn a_packed_batch_comes_back_as_the_same_outputs() {
        let mut b = batch::empty();
        batch::push(&mut b, Some(b"k"), b"v", -5, &[("h".into(), b"x".to_vec())]);
        batch::push(&mut b, None, b"w", i64::MAX, &[]);
        let mut packed = empty_batch();
        batch_in(&b, 7, &mut packed);
        assert_eq!(packed.state_epoch, 7);
        assert_eq!(packed.events.len(), 2 * EVENT);
        assert_eq!(packed.headers.len(), HEADER);
        // Outputs are events plus a port: append an absent port to each.
        let mut outputs = Vec::new();
        for e in packed.events.chunks_exact(EVENT) {
            outputs.extend_from_slice(e);
            put_span(&mut outputs, Span::NONE);
        }
        let out = output_out(PackedOutput {
            data: packed.data.clone(),
            outputs,
            headers: packed.headers.clone(),
        })
        .unwrap();
        assert_eq!(out.data, b.data);
        assert_eq!(out.headers, b.headers);
        let events: Vec<EventMeta> = out.outputs.iter().map(|o| o.event).collect();
        assert_eq!(events, b.events);
        assert!(out.outputs.iter().all(|o| o.port.is_absent()));
    }

    #[test]
    fn a_torn_description_is_refused() {
        let out = PackedOutput {
            data: Vec::new(),
            outputs: vec![0; OUTPUT + 1],
            headers: Vec::new(),
        };
        assert!(
            output_out(out)
                .unwrap_err()
                .contains("not whole descriptions")
        );
    }
}
