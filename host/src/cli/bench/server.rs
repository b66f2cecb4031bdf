//! `eddy bench server`: word count through the server path: a backlog in an embedded
//! topic, one task per partition on the worker pool, outputs committed to the sink topic
//! with state and offsets. The Wasm operator and the same logic compiled natively, in
//! one run.

use super::common::{
    BenchPath, Best, WorkloadArgs, fresh_log, native_wordcount, pipeline_record, print_best,
    produce_values, run_to_end, start_pipeline,
};
use crate::metrics::Metrics;
use crate::model::{PipelineRecord, PipelineSpec};
use crate::registry::Registry;
use crate::runtime::{Runtime, RuntimeConfig};
use crate::task::TaskFactory;
use std::path::Path;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct ServerArgs {
    #[command(flatten)]
    w: WorkloadArgs,
    /// Partitions of the source topic (one task each).
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Worker threads (default: twice the number of cores, as `eddy serve`).
    #[arg(long)]
    workers: Option<usize>,
    /// Measure only these paths.
    #[arg(long, value_delimiter = ',', default_value = "wasm,native")]
    only: Vec<BenchPath>,
}

/// One run over a fresh data dir: seconds to drain the backlog.
fn measure(
    path: BenchPath,
    args: &ServerArgs,
    runtime: &Runtime,
    words: &[String],
    dir: &Path,
) -> anyhow::Result<f64> {
    let (db, log) = fresh_log(dir, args.partitions, &["lines", "counts"])?;
    let (source, sink) = (log.topic("lines")?, log.topic("counts")?);
    produce_values(&log, &source, words)?;
    // The backlog was written before the run: do not bill its flush to the run.
    db.flush()?;
    let registry = Arc::new(Registry::open(
        Arc::clone(&db),
        dir.join("operators"),
        runtime.clone(),
    )?);
    let mut record = bench_pipeline(&args.w)?;
    let factory = TaskFactory::new(
        Arc::clone(&db),
        Arc::clone(&log),
        Arc::clone(&registry),
        Arc::new(Metrics::new()),
        workers(args),
    );
    // The tasks are built as the server builds them; the clock runs from their start.
    let (started, handles) =
        start_pipeline(path, &factory, &mut record, &args.w.wasm, &native_wordcount)?;
    let secs = run_to_end(started, &handles, &|hs| {
        hs.iter()
            .all(|h| h.status().committed_offset == source.end_offset(h.id.partition))
    })?;
    let written: u64 = (0..args.partitions).map(|p| sink.end_offset(p)).sum();
    anyhow::ensure!(
        written as usize == words.len(),
        "{written} outputs for {} events",
        words.len()
    );
    Ok(secs)
}

pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    let w = &args.w;
    let (dir, _temp) = w.work_dir()?;
    let words = w.words()?;
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let mut best = Best::default();
    for round in 1..=w.rounds {
        for path in [BenchPath::Wasm, BenchPath::Native]
            .into_iter()
            .filter(|p| args.only.contains(p))
        {
            let secs = measure(
                path,
                &args,
                &runtime,
                &words,
                &dir.join(format!("{path:?}")),
            )?;
            eprintln!(
                "round {round}: {path:?}: {:.0} events/s",
                w.events as f64 / secs
            );
            best.record(path, secs);
        }
    }
    println!(
        "word count through the server path: {} events over {} words (Zipf), {} partitions, {} workers, best of {} rounds",
        w.events,
        w.vocabulary,
        args.partitions,
        workers(&args),
        w.rounds
    );
    print_best(
        &best,
        w.events,
        "event",
        "wasm operator, embedded log → sink topic",
    );
    Ok(())
}

/// The benchmark's pipeline: `lines` through word count into `counts`, with the
/// workload's batch size and commit interval (the operator version is set once pushed).
fn bench_pipeline(w: &WorkloadArgs) -> anyhow::Result<PipelineRecord> {
    let spec = PipelineSpec::from_toml(&format!(
        "name = \"bench\"\nsource = {{ topic = \"lines\" }}\nsink = {{ topic = \"counts\" }}\n\
         [[operators]]\nname = \"wordcount\"\n\
         [settings]\nbatch_size = {}\ncommit_interval_ms = {}\nstate_cache_mb = 64\n",
        w.batch_size, w.commit_interval_ms
    ))?;
    Ok(pipeline_record(spec, "wordcount", 0, String::new()))
}

fn workers(args: &ServerArgs) -> usize {
    args.workers.unwrap_or_else(crate::server::default_workers)
}
