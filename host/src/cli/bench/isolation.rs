//! `eddy bench isolation`: the word count's events/s through the server path alone, and
//! next to a hostile neighbour pipeline on the same workers and memory budget, in one
//! run. The neighbours are the probe fixture (`tests/fixtures/probe`) given one hostile
//! command on every record: a loop until the call deadline, a trap, writes, outputs or
//! timers past the limits, and big state writes within them.

use super::common::{WorkloadArgs, fresh_log, pipeline_record, produce_values};
use crate::log::Log;
use crate::metrics::Metrics;
use crate::model::{PipelineRecord, PipelineSpec};
use crate::registry::Registry;
use crate::runtime::{Runtime, RuntimeConfig};
use crate::task::{TaskFactory, TaskHandle};
use anyhow::Context as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct IsolationArgs {
    #[command(flatten)]
    w: WorkloadArgs,
    /// The probe component that plays the neighbours (`cargo build --release --target
    /// wasm32-wasip2 -p fixture-probe`).
    #[arg(
        long,
        default_value = "target/wasm32-wasip2/release/fixture_probe.wasm"
    )]
    probe: PathBuf,
    /// Partitions of the word count's topic and of the neighbour's (one task each).
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Worker threads (default: twice the number of cores, as `eddy serve`).
    #[arg(long)]
    workers: Option<usize>,
    /// The neighbours to measure next to.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "loop,trap,huge,emit,timers,big"
    )]
    neighbours: Vec<Neighbour>,
}

/// A hostile neighbour pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Neighbour {
    /// Every record loops until its call deadline (1 s), then is skipped.
    Loop,
    /// Every record traps, then is skipped.
    Trap,
    /// Every record writes 100 values of 10 MiB: past `max_batch_state_mb` (64), skipped.
    Huge,
    /// Every record emits 100 MiB: past `max_output_mb` (64), skipped.
    Emit,
    /// Every record sets a million timers: past `max_timers_per_call`, skipped.
    Timers,
    /// Every record writes 4 values of 4 MiB: within the limits, so work the neighbour
    /// is entitled to.
    Big,
}

impl Neighbour {
    fn command(self) -> &'static str {
        match self {
            Neighbour::Loop => "loop",
            Neighbour::Trap => "trap",
            Neighbour::Huge => "big s 100 10",
            Neighbour::Emit => "emitbig 100",
            Neighbour::Timers => "timers 1000000",
            Neighbour::Big => "big s 4 4",
        }
    }

    /// Records per partition: more than the word count's run can use up.
    fn backlog(self) -> usize {
        match self {
            Neighbour::Loop => 1_000,
            Neighbour::Trap => 50_000,
            Neighbour::Huge | Neighbour::Emit | Neighbour::Timers => 1_000,
            Neighbour::Big => 5_000,
        }
    }
}

fn produce(log: &Log, topic: &str, values: Vec<String>) -> anyhow::Result<()> {
    produce_values(log, &log.topic(topic)?, &values)
}

/// A pipeline record from `source` through `operator` into `sink`, with `settings`.
fn pipeline(
    registry: &Registry,
    name: &str,
    (source, sink): (&str, &str),
    (operator, wasm): (&str, &Path),
    settings: &str,
) -> anyhow::Result<PipelineRecord> {
    let bytes = std::fs::read(wasm).with_context(|| wasm.display().to_string())?;
    let (v, _) = registry.put(operator, &bytes)?;
    registry.component(&v)?; // compiled before the clock starts
    let spec = PipelineSpec::from_toml(&format!(
        "name = \"{name}\"\nsource = {{ topic = \"{source}\" }}\nsink = {{ topic = \"{sink}\" }}\n\
         [[operators]]\nname = \"{operator}\"\n[settings]\n{settings}"
    ))?;
    Ok(pipeline_record(spec, operator, v.version, v.digest))
}

fn stop(handles: &[Arc<TaskHandle>]) {
    for h in handles {
        h.request_stop();
    }
    for h in handles {
        h.wait(Duration::from_secs(60));
    }
}

/// One run over a fresh data dir: seconds for the word count to drain its backlog, with
/// `neighbour` running beside it.
fn measure(
    args: &IsolationArgs,
    runtime: &Runtime,
    words: &[String],
    neighbour: Option<Neighbour>,
    dir: &Path,
) -> anyhow::Result<f64> {
    let topics = ["lines", "counts", "noise", "noise-out"];
    let (db, log) = fresh_log(dir, args.partitions, &topics)?;
    produce(&log, "lines", words.to_vec())?;
    if let Some(n) = neighbour {
        let total = n.backlog() * args.partitions as usize;
        produce(&log, "noise", vec![n.command().to_string(); total])?;
    }
    db.flush()?;
    let registry = Arc::new(Registry::open(
        Arc::clone(&db),
        dir.join("operators"),
        runtime.clone(),
    )?);
    let factory = TaskFactory::new(
        Arc::clone(&db),
        Arc::clone(&log),
        Arc::clone(&registry),
        Arc::new(Metrics::new()),
        args.workers.unwrap_or_else(crate::server::default_workers),
    );
    let mut healthy = pipeline(
        &registry,
        "healthy",
        ("lines", "counts"),
        ("wordcount", &args.w.wasm),
        &format!(
            "batch_size = {}\ncommit_interval_ms = {}\nstate_cache_mb = 64\n",
            args.w.batch_size, args.w.commit_interval_ms
        ),
    )?;
    let neighbour = match neighbour {
        Some(_) => Some(pipeline(
            &registry,
            "noisy",
            ("noise", "noise-out"),
            ("probe", &args.probe),
            "on_error = \"skip\"\ncall_timeout_ms = 1000\nbatch_size = 64\n",
        )?),
        None => None,
    };
    // Both start together, the word count first.
    let started = Instant::now();
    let handles = factory.start(&mut healthy, None)?;
    let noisy = match neighbour {
        Some(mut record) => factory.start(&mut record, None)?,
        None => Vec::new(),
    };
    let source = log.topic("lines")?;
    while !handles
        .iter()
        .all(|h| h.status().committed_offset == source.end_offset(h.id.partition))
    {
        if let Some(failed) = handles.iter().find_map(|h| h.status().failure) {
            anyhow::bail!("a word count task failed: {failed}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let secs = started.elapsed().as_secs_f64();
    stop(&handles);
    stop(&noisy);
    Ok(secs)
}

pub fn run(args: IsolationArgs) -> anyhow::Result<()> {
    let w = &args.w;
    let (dir, _temp) = w.work_dir()?;
    let words = w.words()?;
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let cases: Vec<Option<Neighbour>> = std::iter::once(None)
        .chain(args.neighbours.iter().copied().map(Some))
        .collect();
    let mut best = vec![f64::INFINITY; cases.len()];
    for round in 1..=w.rounds {
        for (i, case) in cases.iter().enumerate() {
            let secs = measure(&args, &runtime, &words, *case, &dir.join("run"))?;
            eprintln!(
                "round {round}: next to {case:?}: {:.0} events/s",
                w.events as f64 / secs
            );
            best[i] = best[i].min(secs);
        }
    }
    println!(
        "word count next to a hostile pipeline: {} events, {} partitions each, {} workers, best of {} rounds",
        w.events,
        args.partitions,
        args.workers.unwrap_or_else(crate::server::default_workers),
        w.rounds
    );
    println!("{:<44} {:>12} {:>10}", "neighbour", "events/s", "of alone");
    let alone = best[0];
    for (case, secs) in cases.iter().zip(&best) {
        let name = match case {
            None => "none (alone)".to_string(),
            Some(n) => format!("{n:?}: {}", n.command()),
        };
        println!(
            "{name:<44} {:>12.0} {:>10.2}",
            w.events as f64 / secs,
            alone / secs
        );
    }
    Ok(())
}
