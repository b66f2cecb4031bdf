//! `eddy bench`: word count over generated events, three ways in one run: the Wasm
//! operator through the full task path (RocksDB state, atomic commits), the same logic as
//! a native Rust operator through the same path, and a raw RocksDB read-modify-write
//! loop. Prints events/s and the ratios between them.

use crate::runtime::bindings::{EventBatch, EventMeta, OutputBatch, OutputMeta, Span};
use crate::runtime::{CallError, Runtime, RuntimeConfig, TaskInfo};
use crate::state::{Cf, Db, DbOptions, OperatorState, StateScope};
use crate::task::{NativeOperator, Operator, Outputs, Sink, SourceBatch, Task, TaskError, WasmOperator, batch};
use crate::control::OnError;
use anyhow::Context as _;
use rand::SeedableRng;
use rand::distr::Distribution;
use rocksdb::WriteBatch;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// The word-count component (examples/wordcount built for wasm32-wasip2).
    #[arg(long)]
    wasm: PathBuf,
    /// Events to process per measurement (one word each).
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Distinct words, drawn Zipf-like.
    #[arg(long, default_value_t = 100_000)]
    vocabulary: usize,
    #[arg(long, default_value_t = 512)]
    batch_size: usize,
    /// Where the benchmark databases go (default: a temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Counts outputs and drops them: the sink is not what is measured.
struct CountingSink(u64);

impl Sink for CountingSink {
    fn stage(&mut self, _: &Outputs, _: &mut WriteBatch) -> Result<(), TaskError> {
        Ok(())
    }
    fn committed(&mut self, outputs: Outputs) -> Result<(), TaskError> {
        self.0 += outputs.main.events.len() as u64;
        Ok(())
    }
}

/// Batches of one-word events, words drawn from a Zipf distribution (s = 1.0).
fn workload(events: usize, vocabulary: usize, batch_size: usize) -> anyhow::Result<Vec<SourceBatch>> {
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
fn native_wordcount() -> Box<crate::task::NativeProcess> {
    Box::new(|input: &EventBatch, state: &mut OperatorState| {
        let store = state.open_store("counts").expect("a valid store name");
        let mut out = OutputBatch { data: Vec::new(), outputs: Vec::new(), headers: Vec::new() };
        for e in &input.events {
            let value = &input.data[e.value.offset as usize..][..e.value.len as usize];
            let text = std::str::from_utf8(value).map_err(|err| CallError::Rejected {
                index: 0,
                error: crate::runtime::bindings::GuestError::BadInput(err.to_string()),
            })?;
            for word in text.split_ascii_whitespace().map(|w| w.trim_matches(|c: char| c.is_ascii_punctuation())).filter(|w| !w.is_empty()) {
                let n = state.increment(store, word.as_bytes().to_vec(), 1)?.map_err(|err| CallError::Rejected {
                    index: 0,
                    error: crate::runtime::bindings::GuestError::BadInput(err.to_string()),
                })?;
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

fn run_task(ops: Vec<Box<dyn Operator>>, db: Arc<Db>, batches: &[SourceBatch]) -> anyhow::Result<(f64, u64)> {
    let mut task = Task::new("bench", 0, ops, OnError::Fail, 0, db)?;
    let mut sink = CountingSink(0);
    let started = Instant::now();
    for b in batches {
        task.process(b, &mut sink)?;
    }
    Ok((started.elapsed().as_secs_f64(), sink.0))
}

/// The raw limit: a RocksDB get + put per event, a write batch per batch.
fn raw_rocksdb(db: &Db, batches: &[SourceBatch]) -> anyhow::Result<f64> {
    let cf = db.cf(Cf::State);
    let started = Instant::now();
    for b in batches {
        let mut wb = WriteBatch::default();
        // Within a batch, a repeated word must see its own pending increment.
        let mut pending: rustc_hash::FxHashMap<&[u8], i64> = rustc_hash::FxHashMap::default();
        for e in &b.events.events {
            let word = &b.events.data[e.value.offset as usize..][..e.value.len as usize];
            let current = match pending.get(word) {
                Some(n) => *n,
                None => match db.rocks().get_pinned_cf(cf, word)? {
                    Some(v) => i64::from_le_bytes(v.as_ref().try_into().unwrap_or([0; 8])),
                    None => 0,
                },
            };
            pending.insert(word, current + 1);
            wb.put_cf(cf, word, (current + 1).to_le_bytes());
        }
        db.write(wb)?;
    }
    Ok(started.elapsed().as_secs_f64())
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let _temp;
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => {
            _temp = tempfile::tempdir()?;
            _temp.path().to_path_buf()
        }
    };
    eprintln!("generating {} events over {} words...", args.events, args.vocabulary);
    let batches = workload(args.events, args.vocabulary, args.batch_size)?;
    let cache_bytes = 64 << 20;

    let runtime = Runtime::new(RuntimeConfig::default())?;
    let component = runtime.load_file(&args.wasm).with_context(|| args.wasm.display().to_string())?;

    let wasm_db = Arc::new(Db::open(&dir.join("wasm"), &DbOptions::default())?);
    let scope = StateScope { pipeline: "bench".into(), operator: "wordcount".into(), partition: 0 };
    let info = TaskInfo { pipeline: "bench".into(), operator: "wordcount".into(), version: 1, partition: 0, partition_count: 1 };
    let state = OperatorState::new(Arc::clone(&wasm_db), scope.clone(), cache_bytes);
    let wasm = WasmOperator::start(component, info, vec![], state).map_err(|(e, _)| anyhow::anyhow!("init: {e}"))?;
    let (wasm_secs, wasm_out) = run_task(vec![Box::new(wasm)], wasm_db, &batches)?;

    let native_db = Arc::new(Db::open(&dir.join("native"), &DbOptions::default())?);
    let state = OperatorState::new(Arc::clone(&native_db), scope, cache_bytes);
    let native = NativeOperator::new("wordcount-native", state, native_wordcount());
    let (native_secs, native_out) = run_task(vec![Box::new(native)], native_db, &batches)?;
    anyhow::ensure!(wasm_out == native_out, "wasm emitted {wasm_out} events, native {native_out}");

    let raw_db = Db::open(&dir.join("raw"), &DbOptions::default())?;
    let raw_secs = raw_rocksdb(&raw_db, &batches)?;

    let rate = |secs: f64| args.events as f64 / secs;
    println!("word count, {} events, {} words (Zipf), batch {}", args.events, args.vocabulary, args.batch_size);
    println!("{:<44} {:>12} {:>10}", "path", "events/s", "ns/event");
    for (name, secs) in [
        ("wasm operator, full host path", wasm_secs),
        ("native operator, same host path", native_secs),
        ("raw RocksDB get+put per event", raw_secs),
    ] {
        println!("{name:<44} {:>12.0} {:>10.0}", rate(secs), secs * 1e9 / args.events as f64);
    }
    println!("wasm / native: {:.2}", rate(wasm_secs) / rate(native_secs));
    println!("wasm / raw RocksDB: {:.2}", rate(wasm_secs) / rate(raw_secs));
    Ok(())
}
