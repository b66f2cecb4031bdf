//! `eddy bench server`: word count through the server path: a backlog in an embedded
//! topic, one task per partition on the worker pool, outputs committed to the sink topic
//! with state and offsets. The Wasm operator and the same logic compiled natively, in
//! one run.

use super::common::{BenchPath, Best, WorkloadArgs, native_wordcount};
use crate::log::{Log, TopicConfig, TopicSink, TopicSource};
use crate::record::Record;
use crate::runtime::{Runtime, RuntimeConfig, TaskInfo};
use crate::state::{Db, DbOptions, OperatorState, StateScope, TaskId};
use crate::task::{
    NativeOperator, Operator, Task, TaskConfig, TaskHandle, TaskRunner, WasmOperator, WorkerPool,
};
use anyhow::Context as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    let _ = std::fs::remove_dir_all(dir);
    let db = Arc::new(Db::open(dir, &DbOptions::default())?);
    let log = Arc::new(Log::open(Arc::clone(&db))?);
    let config = TopicConfig {
        partitions: args.partitions,
        retention_ms: None,
        retention_bytes: None,
    };
    let source = log.create_topic("lines", &config)?;
    let sink = log.create_topic("counts", &config)?;
    for chunk in words.chunks(10_000) {
        let records: Vec<(Record, Option<u32>)> = chunk
            .iter()
            .map(|w| {
                (
                    Record {
                        value: w.as_bytes().to_vec(),
                        ..Record::default()
                    },
                    None,
                )
            })
            .collect();
        log.produce(&source, &records)?;
    }
    // The backlog was written before the run: do not bill its flush to the run.
    db.flush()?;
    let settings = crate::control::Settings {
        batch_size: args.w.batch_size,
        commit_interval_ms: args.w.commit_interval_ms,
        ..Default::default()
    };
    let mut runners = Vec::new();
    for p in 0..args.partitions {
        let scope = StateScope {
            pipeline: "bench".into(),
            operator: "wordcount".into(),
            partition: p,
        };
        let state = OperatorState::new(Arc::clone(&db), scope, 64 << 20)?;
        let op: Box<dyn Operator> = match path {
            BenchPath::Wasm => {
                let component = runtime
                    .load_file(&args.w.wasm)
                    .with_context(|| args.w.wasm.display().to_string())?;
                let info = TaskInfo {
                    pipeline: "bench".into(),
                    operator: "wordcount".into(),
                    version: 1,
                    partition: p,
                    partition_count: args.partitions,
                };
                Box::new(
                    WasmOperator::start(component, info, vec![], state, runtime.default_limits())
                        .map_err(|(e, _)| anyhow::anyhow!("init: {e}"))?,
                )
            }
            BenchPath::Native => Box::new(NativeOperator::new(
                "wordcount-native",
                state,
                native_wordcount(),
            )),
            BenchPath::Raw => anyhow::bail!("the server benchmark measures wasm and native only"),
        };
        let id = TaskId::new("bench", p);
        // As the server runs tasks: with changelogs.
        let task = Task::new(
            id.clone(),
            vec![op],
            TaskConfig {
                changelog: true,
                ..TaskConfig::from_settings(&settings)
            },
            Arc::clone(&db),
        )?;
        let handle = Arc::new(TaskHandle::new(id, 0));
        runners.push(TaskRunner::new(
            task,
            Box::new(TopicSource::new(Arc::clone(&log), Arc::clone(&source), p)),
            Box::new(TopicSink::new(
                Arc::clone(&log),
                "bench",
                p,
                args.partitions,
                Arc::clone(&sink),
            )),
            args.w.batch_size,
            handle,
            None,
        ));
    }
    let handles: Vec<Arc<TaskHandle>> = runners.iter().map(|r| Arc::clone(r.handle())).collect();
    let pool = WorkerPool::new(workers(args), Arc::clone(log.signal()));
    let started = Instant::now();
    for r in runners {
        pool.spawn(r);
    }
    loop {
        if handles
            .iter()
            .all(|h| h.status().committed_offset == source.end_offset(h.id.partition))
        {
            break;
        }
        if let Some(failed) = handles.iter().find_map(|h| h.status().failure) {
            anyhow::bail!("a task failed: {failed}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let secs = started.elapsed().as_secs_f64();
    for h in &handles {
        h.request_stop();
    }
    pool.wake();
    for h in &handles {
        h.wait(Duration::from_secs(30));
    }
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
    println!("{:<44} {:>12} {:>10}", "path", "events/s", "ns/event");
    for (path, secs) in best.iter() {
        let name = if *path == BenchPath::Wasm {
            "wasm operator, embedded log → sink topic"
        } else {
            "native operator, same path"
        };
        println!(
            "{name:<44} {:>12.0} {:>10.0}",
            w.events as f64 / secs,
            secs * 1e9 / w.events as f64
        );
    }
    if let (Some(wasm), Some(native)) = (best.secs(BenchPath::Wasm), best.secs(BenchPath::Native)) {
        println!("wasm / native: {:.2}", native / wasm);
    }
    Ok(())
}

fn workers(args: &ServerArgs) -> usize {
    args.workers.unwrap_or_else(crate::server::default_workers)
}
