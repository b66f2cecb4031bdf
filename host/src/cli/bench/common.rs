//! What the benchmarks share: the workload, the native word count, filling a topic and
//! a pipeline record.

use crate::io::SourceBatch;
use crate::record::batch::{self, EventBatch, EventMeta, OutputBatch, OutputMeta, Span};
use crate::runtime::CallError;
use crate::runtime::bindings::GuestError;
use crate::state::OperatorState;
use crate::task::OperatorTemplate;
use anyhow::Context as _;
use rand::SeedableRng;
use rand::distr::Distribution;
use std::path::PathBuf;

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

/// What both benchmarks take.
#[derive(clap::Args)]
pub struct WorkloadArgs {
    /// The word-count component (examples/wordcount built for wasm32-wasip2).
    #[arg(long)]
    pub wasm: PathBuf,
    /// Events to process per measurement (one word each).
    #[arg(long, default_value_t = 1_000_000)]
    pub events: usize,
    /// Distinct words, drawn Zipf-like.
    #[arg(long, default_value_t = 100_000)]
    pub vocabulary: usize,
    #[arg(long, default_value_t = 512)]
    pub batch_size: usize,
    /// Longest time between commits (the pipeline setting `commit_interval_ms`).
    #[arg(long, default_value_t = 100)]
    pub commit_interval_ms: u64,
    /// Rounds per path; each reports its best (the machine may be shared).
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Where the benchmark databases go (default: a temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

impl WorkloadArgs {
    /// The directory to work in; the guard keeps a temporary one alive.
    pub fn work_dir(&self) -> anyhow::Result<(PathBuf, Option<tempfile::TempDir>)> {
        match &self.dir {
            Some(d) => Ok((d.clone(), None)),
            None => {
                let t = tempfile::tempdir()?;
                Ok((t.path().to_path_buf(), Some(t)))
            }
        }
    }

    /// The words of the workload: `events` draws from a Zipf distribution (s = 1.0).
    pub fn words(&self) -> anyhow::Result<Vec<String>> {
        zipf_words(self.events, self.vocabulary)
    }
}

/// `events` words drawn from `vocabulary` with a Zipf distribution (s = 1.0), seeded.
pub fn zipf_words(events: usize, vocabulary: usize) -> anyhow::Result<Vec<String>> {
    let zipf = rand_distr::Zipf::new(vocabulary as f64, 1.0).context("zipf distribution")?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    Ok((0..events)
        .map(|_| format!("w{}", zipf.sample(&mut rng) as u64))
        .collect())
}

/// Keeps the best (shortest) time of each path over rounds.
#[derive(Default)]
pub struct Best(Vec<(BenchPath, f64)>);

impl Best {
    pub fn record(&mut self, path: BenchPath, secs: f64) {
        match self.0.iter_mut().find(|(p, _)| *p == path) {
            Some((_, b)) => *b = b.min(secs),
            None => self.0.push((path, secs)),
        }
    }

    pub fn secs(&self, path: BenchPath) -> Option<f64> {
        self.0.iter().find(|(p, _)| *p == path).map(|(_, s)| *s)
    }

    pub fn iter(&self) -> impl Iterator<Item = &(BenchPath, f64)> {
        self.0.iter()
    }
}

/// The workload's words as source batches of `batch_size` one-word events.
pub fn batches(words: &[String], batch_size: usize) -> Vec<SourceBatch> {
    words
        .chunks(batch_size)
        .enumerate()
        .map(|(i, chunk)| {
            let first = (i * batch_size) as u64;
            let mut b = batch::empty();
            for (j, w) in chunk.iter().enumerate() {
                batch::push(&mut b, None, w.as_bytes(), first as i64 + j as i64, &[]);
            }
            SourceBatch {
                events: b,
                offsets: (first..first + chunk.len() as u64).collect(),
                source: 0,
            }
        })
        .collect()
}

/// How to start the word-count component at `path` in the benchmark's pipeline ("bench",
/// operator "wordcount", a 64 MiB state cache).
pub fn wordcount(
    runtime: &crate::runtime::Runtime,
    path: &std::path::Path,
    config: Vec<(String, String)>,
) -> anyhow::Result<OperatorTemplate> {
    let component = runtime
        .load_file(path)
        .with_context(|| path.display().to_string())?;
    Ok(OperatorTemplate::new(
        component,
        "bench",
        "wordcount",
        1,
        config,
        runtime.default_limits(),
        64 << 20,
    ))
}

/// Word count written natively against the same flat batches and state API.
pub fn native_wordcount() -> Box<crate::task::NativeProcess> {
    Box::new(|input: &EventBatch, state: &mut OperatorState| {
        let store = state.open_store("counts")?.expect("a valid store name");
        let mut out = OutputBatch::default();
        for e in &input.events {
            let value = &input.data[e.value.offset as usize..][..e.value.len as usize];
            let text = std::str::from_utf8(value).map_err(|err| CallError::Rejected {
                index: 0,
                error: GuestError::BadInput(err.to_string()),
            })?;
            for word in text
                .split_ascii_whitespace()
                .map(|w| w.trim_matches(|c: char| c.is_ascii_punctuation()))
                .filter(|w| !w.is_empty())
            {
                let n = state
                    .increment(store, word.as_bytes().to_vec(), 1)?
                    .map_err(|err| CallError::Rejected {
                        index: 0,
                        error: GuestError::BadInput(err.to_string()),
                    })?;
                push_output(
                    &mut out,
                    word.as_bytes(),
                    n.to_string().as_bytes(),
                    e.timestamp,
                );
            }
        }
        Ok(out)
    })
}

/// Starts the benchmark pipeline `record` (its one operator `operator`) as the server
/// builds its tasks: with the component at `wasm` (compiled before the clock starts), or
/// with `native` as the operator. Returns when the clock started and the handles.
pub fn start_pipeline(
    path: BenchPath,
    factory: &crate::task::TaskFactory,
    record: &mut crate::model::PipelineRecord,
    wasm: &std::path::Path,
    native: &dyn Fn() -> Box<crate::task::NativeProcess>,
) -> anyhow::Result<(
    std::time::Instant,
    Vec<std::sync::Arc<crate::task::TaskHandle>>,
)> {
    use crate::task::{NativeOperator, Operator};
    use std::time::Instant;
    let operator = record.operators[0].name.clone();
    match path {
        BenchPath::Wasm => {
            let bytes = std::fs::read(wasm).with_context(|| wasm.display().to_string())?;
            let registry = factory.registry();
            let (v, _) = registry.put(&operator, &bytes)?;
            registry.component(&v)?;
            record.operators[0].version = v.version;
            record.operators[0].digest = v.digest;
            let started = Instant::now();
            Ok((started, factory.start(record, None)?))
        }
        BenchPath::Native => {
            let started = Instant::now();
            let db = std::sync::Arc::clone(factory.db());
            let handles = factory.start_with(record, None, &mut |_, p, _| {
                let scope = crate::state::StateScope {
                    pipeline: record.spec.name.clone(),
                    operator: operator.clone(),
                    partition: p,
                };
                let state = OperatorState::new(std::sync::Arc::clone(&db), scope, 64 << 20)
                    .map_err(crate::task::TaskError::from)?;
                let op: Box<dyn Operator> = Box::new(NativeOperator::new(
                    format!("{operator}-native"),
                    state,
                    native(),
                ));
                Ok(vec![op])
            })?;
            Ok((started, handles))
        }
        BenchPath::Raw => anyhow::bail!("this benchmark measures wasm and native only"),
    }
}

/// Waits until `done` says the tasks committed everything (failing when a task fails),
/// stops them, and returns the seconds since `started`.
pub fn run_to_end(
    started: std::time::Instant,
    handles: &[std::sync::Arc<crate::task::TaskHandle>],
    done: &dyn Fn(&[std::sync::Arc<crate::task::TaskHandle>]) -> bool,
) -> anyhow::Result<f64> {
    use std::time::Duration;
    while !done(handles) {
        if let Some(failed) = handles.iter().find_map(|h| h.status().failure) {
            anyhow::bail!("a task failed: {failed}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let secs = started.elapsed().as_secs_f64();
    for h in handles {
        h.request_stop();
    }
    for h in handles {
        h.wait(Duration::from_secs(30));
    }
    Ok(secs)
}

/// Appends a main output (key, value, time, no headers) to `out`.
pub fn push_output(out: &mut OutputBatch, key: &[u8], value: &[u8], timestamp: i64) {
    let key = Span::push(&mut out.data, key);
    let value = Span::push(&mut out.data, value);
    out.outputs.push(OutputMeta {
        event: EventMeta {
            key,
            value,
            timestamp,
            headers_start: 0,
            headers_len: 0,
        },
        port: Span::NONE,
    });
}

/// Prints each path's best as `unit`/s and ns per one (`count` of them per run), then
/// the Wasm / native ratio.
pub fn print_best(best: &Best, count: usize, unit: &str, wasm: &str) {
    println!(
        "{:<44} {:>12} {:>10}",
        "path",
        format!("{unit}s/s"),
        format!("ns/{unit}")
    );
    for (path, secs) in best.iter() {
        let name = if *path == BenchPath::Wasm {
            wasm
        } else {
            "native operator, same path"
        };
        println!(
            "{name:<44} {:>12.0} {:>10.0}",
            count as f64 / secs,
            secs * 1e9 / count as f64
        );
    }
    if let (Some(w), Some(n)) = (best.secs(BenchPath::Wasm), best.secs(BenchPath::Native)) {
        println!("wasm / native: {:.2}", n / w);
    }
}

/// Appends one record per value to `topic`, keyless, in chunks of 10,000.
pub fn produce_values(
    log: &crate::log::Log,
    topic: &std::sync::Arc<crate::log::Topic>,
    values: &[String],
) -> anyhow::Result<()> {
    for chunk in values.chunks(10_000) {
        let records: Vec<(crate::record::Record, Option<u32>)> = chunk
            .iter()
            .map(|v| {
                (
                    crate::record::Record {
                        value: v.as_bytes().to_vec(),
                        ..crate::record::Record::default()
                    },
                    None,
                )
            })
            .collect();
        log.produce(topic, &records)?;
    }
    Ok(())
}

/// A running pipeline's record: `spec` with its one operator pinned at `version`.
pub fn pipeline_record(
    spec: crate::model::PipelineSpec,
    operator: &str,
    version: u32,
    digest: String,
) -> crate::model::PipelineRecord {
    crate::model::PipelineRecord {
        spec,
        operators: vec![crate::model::PinnedOperator {
            id: operator.into(),
            name: operator.into(),
            version,
            digest,
            state_version: 1,
        }],
        state: crate::model::PipelineState::Running,
        reason: None,
        created_ms: 0,
        updated_ms: 0,
        upgrades: Vec::new(),
        canary: None,
        shadow: None,
        namespace: None,
    }
}

/// A fresh database in `dir` (anything there before is removed) with an embedded log
/// holding `topics`, each with `partitions`.
pub fn fresh_log(
    dir: &std::path::Path,
    partitions: u32,
    topics: &[&str],
) -> anyhow::Result<(
    std::sync::Arc<crate::state::Db>,
    std::sync::Arc<crate::log::Log>,
)> {
    use std::sync::Arc;
    let _ = std::fs::remove_dir_all(dir);
    let db = Arc::new(crate::state::Db::open(
        &dir.join("db"),
        &crate::state::DbOptions::default(),
    )?);
    let log = Arc::new(crate::log::Log::open(Arc::clone(&db))?);
    let config = crate::log::TopicConfig::kept(partitions);
    for topic in topics {
        log.create_topic(topic, &config)?;
    }
    Ok((db, log))
}

/// Starts a server pipeline whose backlog waits in its source and returns how long its
/// tasks took to commit all of it (every task's lag at 0).
pub fn start_and_drain(
    c: &crate::control::Controller,
    pipeline: &str,
) -> anyhow::Result<std::time::Duration> {
    use std::time::{Duration, Instant};
    let started = Instant::now();
    c.start(pipeline)?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let s = c.status(pipeline)?;
        if s.tasks.iter().all(|t| t.lag == 0) {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(Instant::now() < deadline, "the backlog was not drained");
        std::thread::sleep(Duration::from_millis(5));
    }
}
