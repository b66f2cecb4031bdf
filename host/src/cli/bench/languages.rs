//! `eddy bench languages`: the same word count written in several languages, in one
//! run: events/s through the full task path relative to the Rust component and to the
//! native Rust baseline, component size, and start-up cost (compile + instantiate +
//! init from scratch, and from the compile cache).

use super::common::{batches, native_wordcount, wordcount};
use super::host::run_task;
use crate::runtime::{Runtime, RuntimeConfig};
use crate::state::{Db, DbOptions, OperatorState, StateScope};
use crate::task::{NativeOperator, OperatorTemplate};
use anyhow::{Context as _, bail};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

#[derive(clap::Args)]
pub struct LanguagesArgs {
    /// A word-count component per language, as LANG=PATH (repeat; `eddy build
    /// examples/wordcount-python` etc. build them). The first is the reference.
    #[arg(long = "component", value_name = "LANG=PATH", required = true)]
    components: Vec<String>,
    /// Events per measurement, one word each.
    #[arg(long, default_value_t = 100_000)]
    events: usize,
    /// Distinct words, drawn Zipf-like.
    #[arg(long, default_value_t = 10_000)]
    vocabulary: usize,
    #[arg(long, default_value_t = 512)]
    batch_size: usize,
    /// Rounds per language; each reports its best.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
}

struct Row {
    lang: String,
    size: u64,
    cold_ms: f64,
    cached_ms: f64,
    secs: f64,
}

const CONFIG: &[(&str, &str)] = &[("lowercase", "false")];

fn state(db: &Arc<Db>) -> anyhow::Result<OperatorState> {
    let scope = StateScope {
        pipeline: "bench".into(),
        operator: "wordcount".into(),
        partition: 0,
    };
    Ok(OperatorState::new(Arc::clone(db), scope, 64 << 20)?)
}

fn config() -> Vec<(String, String)> {
    CONFIG
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Load (compile or read the cache) + instantiate + init, in ms, and how to start it.
fn start_up(
    runtime: &Runtime,
    path: &Path,
    db: &Arc<Db>,
) -> anyhow::Result<(f64, OperatorTemplate)> {
    let started = Instant::now();
    let template = wordcount(runtime, path, config())?;
    let op = template
        .start(db, 0, 1)
        .with_context(|| path.display().to_string())?;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    drop(op);
    Ok((ms, template))
}

pub fn run(args: LanguagesArgs) -> anyhow::Result<()> {
    let mut inputs: Vec<(String, PathBuf)> = Vec::new();
    for c in &args.components {
        let Some((lang, path)) = c.split_once('=') else {
            bail!(
                "--component {c:?}: expected LANG=PATH, e.g. python=examples/wordcount-python/wordcount-python.wasm"
            );
        };
        inputs.push((lang.to_string(), PathBuf::from(path)));
    }
    let dir = tempfile::tempdir()?;
    let words = super::common::zipf_words(args.events, args.vocabulary)?;
    let batches = batches(&words, args.batch_size);

    let mut rows = Vec::new();
    for (lang, path) in &inputs {
        let size = std::fs::metadata(path)
            .with_context(|| path.display().to_string())?
            .len();
        let cache = dir.path().join(format!("cache-{lang}"));
        let db = Arc::new(Db::open(
            &dir.path().join(format!("start-{lang}")),
            &DbOptions::default(),
        )?);
        // Cold: an empty compile cache. Cached: a second runtime finds the compiled form.
        let cold = Runtime::new(RuntimeConfig {
            cache_dir: Some(cache.clone()),
            ..RuntimeConfig::default()
        })?;
        let (cold_ms, _) = start_up(&cold, path, &db)?;
        let cached = Runtime::new(RuntimeConfig {
            cache_dir: Some(cache),
            ..RuntimeConfig::default()
        })?;
        let (cached_ms, template) = start_up(&cached, path, &db)?;
        eprintln!("{lang}: {size} bytes, start-up {cold_ms:.0} ms cold, {cached_ms:.1} ms cached");

        let mut best = f64::INFINITY;
        for round in 1..=args.rounds {
            let db_dir = dir.path().join(format!("run-{lang}-{round}"));
            let db = Arc::new(Db::open(&db_dir, &DbOptions::default())?);
            let op = template.start(&db, 0, 1).context(lang.clone())?;
            let (secs, emitted) = run_task(vec![Box::new(op)], db, &batches, 100)?;
            anyhow::ensure!(
                emitted as usize == args.events,
                "{lang} emitted {emitted} events for {} words",
                args.events
            );
            eprintln!(
                "round {round}: {lang}: {:.0} events/s",
                args.events as f64 / secs
            );
            best = best.min(secs);
            let _ = std::fs::remove_dir_all(&db_dir);
        }
        rows.push(Row {
            lang: lang.clone(),
            size,
            cold_ms,
            cached_ms,
            secs: best,
        });
    }

    let mut native = f64::INFINITY;
    for round in 1..=args.rounds {
        let db = Arc::new(Db::open(
            &dir.path().join(format!("native-{round}")),
            &DbOptions::default(),
        )?);
        let op = NativeOperator::new("wordcount-native", state(&db)?, native_wordcount());
        let (secs, _) = run_task(vec![Box::new(op)], db, &batches, 100)?;
        eprintln!(
            "round {round}: native: {:.0} events/s",
            args.events as f64 / secs
        );
        native = native.min(secs);
    }

    let reference = rows[0].secs;
    println!(
        "word count per language, {} events, {} words (Zipf), batch {}, best of {} rounds",
        args.events, args.vocabulary, args.batch_size, args.rounds
    );
    println!(
        "{:<10} {:>12} {:>9} {:>11} {:>11} {:>13} {:>14}",
        "language",
        "events/s",
        "vs first",
        "vs native",
        "size KiB",
        "cold start ms",
        "cached start ms"
    );
    for r in &rows {
        println!(
            "{:<10} {:>12.0} {:>9.3} {:>11.3} {:>11.0} {:>13.0} {:>14.1}",
            r.lang,
            args.events as f64 / r.secs,
            reference / r.secs,
            native / r.secs,
            r.size as f64 / 1024.0,
            r.cold_ms,
            r.cached_ms
        );
    }
    println!(
        "{:<10} {:>12.0} {:>9.3} {:>11.3}",
        "native",
        args.events as f64 / native,
        reference / native,
        1.0
    );
    Ok(())
}
