//! What both benchmarks share: the workload and the native word count.

use crate::runtime::CallError;
use crate::runtime::bindings::{EventBatch, EventMeta, GuestError, OutputBatch, OutputMeta, Span};
use crate::state::OperatorState;
use crate::task::{SourceBatch, batch};
use anyhow::Context as _;
use rand::SeedableRng;
use rand::distr::Distribution;

/// What a benchmark measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchPath {
    /// The Wasm operator.
    Wasm,
    /// The same logic compiled natively.
    Native,
    /// RocksDB alone (host benchmark only).
    Raw,
}

/// Batches of one-word events, words drawn from a Zipf distribution (s = 1.0).
pub fn workload(events: usize, vocabulary: usize, batch_size: usize) -> anyhow::Result<Vec<SourceBatch>> {
    let zipf = rand_distr::Zipf::new(vocabulary as f64, 1.0).context("zipf distribution")?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut batches = Vec::new();
    let mut offset = 0u64;
    while (offset as usize) < events {
        let n = batch_size.min(events - offset as usize);
        let mut b = batch::empty();
        for _ in 0..n {
            let rank = zipf.sample(&mut rng) as u64;
            batch::push(&mut b, None, format!("w{rank}").as_bytes(), offset as i64, &[]);
            offset += 1;
        }
        let first = offset - n as u64;
        batches.push(SourceBatch { events: b, offsets: (first..offset).collect() });
    }
    Ok(batches)
}

/// Word count written natively against the same flat batches and state API.
pub fn native_wordcount() -> Box<crate::task::NativeProcess> {
    Box::new(|input: &EventBatch, state: &mut OperatorState| {
        let store = state.open_store("counts")?.expect("a valid store name");
        let mut out = OutputBatch { data: Vec::new(), outputs: Vec::new(), headers: Vec::new() };
        for e in &input.events {
            let value = &input.data[e.value.offset as usize..][..e.value.len as usize];
            let text = std::str::from_utf8(value)
                .map_err(|err| CallError::Rejected { index: 0, error: GuestError::BadInput(err.to_string()) })?;
            for word in text.split_ascii_whitespace().map(|w| w.trim_matches(|c: char| c.is_ascii_punctuation())).filter(|w| !w.is_empty()) {
                let n = state
                    .increment(store, word.as_bytes().to_vec(), 1)?
                    .map_err(|err| CallError::Rejected { index: 0, error: GuestError::BadInput(err.to_string()) })?;
                let key = push_span(&mut out.data, word.as_bytes());
                let value = push_span(&mut out.data, n.to_string().as_bytes());
                out.outputs.push(OutputMeta {
                    event: EventMeta { key, value, timestamp: e.timestamp, headers_start: 0, headers_len: 0 },
                    port: Span { offset: 0, len: u32::MAX },
                });
            }
        }
        Ok(out)
    })
}

fn push_span(data: &mut Vec<u8>, bytes: &[u8]) -> Span {
    let offset = data.len() as u32;
    data.extend_from_slice(bytes);
    Span { offset, len: bytes.len() as u32 }
}

