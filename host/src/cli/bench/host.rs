//! `eddy bench host`: word count over generated events, three ways in one run: the Wasm
//! operator through the full task path (RocksDB state, atomic commits), the same logic as
//! a native Rust operator through the same path, and a raw RocksDB read-modify-write
//! loop. Prints events/s and the ratios between them.

use super::common::{BenchPath, Best, WorkloadArgs, batches, native_wordcount, wordcount};
use crate::io::{AfterCommit, Outputs, SourceBatch};
use crate::runtime::{Runtime, RuntimeConfig};
use crate::state::{Cf, Db, DbOptions, OperatorState, StateScope, TaskId};
use crate::task::{NativeOperator, Operator, Task, TaskConfig};
use rocksdb::WriteBatch;
use std::sync::Arc;
use std::time::Instant;

#[derive(clap::Args)]
pub struct HostArgs {
    #[command(flatten)]
    w: WorkloadArgs,
    /// Measure only these paths (for profiling one of them).
    #[arg(long, value_delimiter = ',', default_value = "wasm,native,raw")]
    only: Vec<BenchPath>,
}

pub(super) fn run_task(
    ops: Vec<Box<dyn Operator>>,
    db: Arc<Db>,
    batches: &[SourceBatch],
    commit_interval_ms: u64,
) -> anyhow::Result<(f64, u64)> {
    let config = TaskConfig {
        commit_interval: std::time::Duration::from_millis(commit_interval_ms),
        ..TaskConfig::default()
    };
    let mut task = Task::new(TaskId::new("bench", 0), ops, config, db)?;
    // The outputs are counted and dropped: the sink is not what is measured.
    let mut emitted = 0u64;
    let started = Instant::now();
    {
        let mut sink = AfterCommit(|outputs: Vec<Outputs>| {
            emitted += outputs
                .iter()
                .map(|o| o.main.events.len() as u64)
                .sum::<u64>();
            Ok(())
        });
        for b in batches {
            task.process(b, &mut sink)?;
        }
        task.flush(&mut sink)?;
    }
    Ok((started.elapsed().as_secs_f64(), emitted))
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

/// One measured run of one path over the workload, in a fresh database under `dir`.
/// Returns the seconds taken and the events emitted (checked equal across paths).
fn measure(
    path: BenchPath,
    args: &HostArgs,
    runtime: &Runtime,
    batches: &[SourceBatch],
    dir: &std::path::Path,
) -> anyhow::Result<(f64, u64)> {
    let cache_bytes = 64 << 20;
    let scope = StateScope {
        pipeline: "bench".into(),
        operator: "wordcount".into(),
        partition: 0,
    };
    let _ = std::fs::remove_dir_all(dir);
    let db = Arc::new(Db::open(dir, &DbOptions::default())?);
    match path {
        BenchPath::Wasm => {
            let wasm = wordcount(runtime, &args.w.wasm, vec![])?.start(&db, 0, 1)?;
            run_task(vec![Box::new(wasm)], db, batches, args.w.commit_interval_ms)
        }
        BenchPath::Native => {
            let state = OperatorState::new(Arc::clone(&db), scope, cache_bytes)?;
            let native = NativeOperator::new("wordcount-native", state, native_wordcount());
            run_task(
                vec![Box::new(native)],
                db,
                batches,
                args.w.commit_interval_ms,
            )
        }
        BenchPath::Raw => Ok((raw_rocksdb(&db, batches)?, 0)),
    }
}

pub fn run(args: HostArgs) -> anyhow::Result<()> {
    let w = &args.w;
    let (dir, _temp) = w.work_dir()?;
    eprintln!(
        "generating {} events over {} words...",
        w.events, w.vocabulary
    );
    let batches = batches(&w.words()?, w.batch_size);
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let names = [
        (BenchPath::Wasm, "wasm operator, full host path"),
        (BenchPath::Native, "native operator, same host path"),
        (BenchPath::Raw, "raw RocksDB get+put per event"),
    ];
    // Rounds alternate the paths so a slow spell of the machine hits all of them; each
    // path reports its best round.
    let mut best = Best::default();
    for round in 1..=w.rounds {
        for (path, name) in names.iter().filter(|(p, _)| args.only.contains(p)) {
            let (secs, emitted) = measure(
                *path,
                &args,
                &runtime,
                &batches,
                &dir.join(format!("{path:?}")),
            )?;
            if *path != BenchPath::Raw {
                anyhow::ensure!(
                    emitted as usize == w.events,
                    "{name} emitted {emitted} events for {} words",
                    w.events
                );
            }
            eprintln!(
                "round {round}: {name}: {:.0} events/s",
                w.events as f64 / secs
            );
            best.record(*path, secs);
        }
    }

    let rate = |secs: f64| w.events as f64 / secs;
    println!(
        "word count, {} events, {} words (Zipf), batch {}, commit every {} ms, best of {} rounds",
        w.events, w.vocabulary, w.batch_size, w.commit_interval_ms, w.rounds
    );
    println!("{:<44} {:>12} {:>10}", "path", "events/s", "ns/event");
    for (path, secs) in best.iter() {
        let name = names.iter().find(|(p, _)| p == path).map_or("", |(_, n)| n);
        println!(
            "{name:<44} {:>12.0} {:>10.0}",
            rate(*secs),
            secs * 1e9 / w.events as f64
        );
    }
    if let (Some(wasm), Some(native)) = (best.secs(BenchPath::Wasm), best.secs(BenchPath::Native)) {
        println!("wasm / native: {:.2}", native / wasm);
    }
    if let (Some(wasm), Some(raw)) = (best.secs(BenchPath::Wasm), best.secs(BenchPath::Raw)) {
        println!("wasm / raw RocksDB: {:.2}", raw / wasm);
    }
    Ok(())
}
