//! `eddy bench queries`: a word count drains a backlog on the embedded log alone, and
//! again while clients read counts through the state query API as fast as they can (the
//! router in process, as a request reaches it from the socket): the pipeline's events/s
//! both ways, their ratio, and the point reads' latency.

use super::common::{start_and_drain, zipf_words};
use crate::api::{self, ApiConfig};
use crate::control::PipelineSpec;
use crate::log::TopicConfig;
use crate::record::Record;
use crate::server::{App, ServerConfig};
use anyhow::Context as _;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tower::ServiceExt as _;

#[derive(clap::Args)]
pub struct QueriesArgs {
    /// examples/wordcount built for wasm32-wasip2.
    #[arg(long)]
    wasm: PathBuf,
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    partitions: u32,
    /// Events in the backlog (one word each, keyed by the word).
    #[arg(long, default_value_t = 1_000_000)]
    backlog: usize,
    #[arg(long, default_value_t = 10_000)]
    vocabulary: usize,
    /// Clients reading at once, each one request after the other.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    clients: u64,
    /// Reads per second of each client (0: as fast as it can).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Longest the clients read.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    seconds: u64,
    /// Worker threads running the pipeline's tasks.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    workers: u64,
    /// Added to the nice value of the server's query threads (as `eddy serve --query-nice`).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(i32).range(0..=19))]
    query_nice: i32,
    /// Rounds of both runs; the best of each counts.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    rounds: u64,
}

/// One run: the pipeline's events/s, and the point reads' latencies (µs, sorted).
struct Run {
    rate: f64,
    latencies: Vec<u64>,
}

pub fn run(args: QueriesArgs) -> anyhow::Result<()> {
    let wasm = std::fs::read(&args.wasm).with_context(|| args.wasm.display().to_string())?;
    let words = zipf_words(args.backlog, args.vocabulary)?;
    let (mut alone, mut queried): (f64, Option<Run>) = (0.0, None);
    let mut ratios = Vec::new();
    for round in 1..=args.rounds {
        let a = measure(&args, &wasm, &words, false)?;
        let q = measure(&args, &wasm, &words, true)?;
        eprintln!(
            "round {round}: {:.0} events/s alone, {:.0} with {} reads ({:.2})",
            a.rate,
            q.rate,
            q.latencies.len(),
            q.rate / a.rate
        );
        ratios.push(q.rate / a.rate);
        alone = alone.max(a.rate);
        if queried.as_ref().is_none_or(|best| q.rate > best.rate) {
            queried = Some(q);
        }
    }
    let q = queried.expect("at least one round");
    anyhow::ensure!(!q.latencies.is_empty(), "no query was answered");
    let pct = |p: f64| {
        let i = ((q.latencies.len() as f64 * p) as usize).min(q.latencies.len() - 1);
        q.latencies[i] as f64 / 1000.0
    };
    let secs = args.backlog as f64 / q.rate;
    println!(
        "word count on {} partitions (embedded log, {} workers), {} events over {} words (Zipf), best of {} rounds; {} client(s) reading counts by key meanwhile, {}; query threads at nice +{}",
        args.partitions,
        args.workers,
        args.backlog,
        args.vocabulary,
        args.rounds,
        args.clients,
        match args.rate {
            0 => "as fast as they can".to_string(),
            r => format!("{r} reads/s each"),
        },
        args.query_nice
    );
    println!("pipeline alone:          {alone:>10.0} events/s");
    println!("pipeline while queried:  {:>10.0} events/s", q.rate);
    println!("ratio (queried / alone): {:>10.2}", q.rate / alone);
    // Each round's two runs are next to each other in time: their ratio is less moved by
    // a machine whose speed drifts than the ratio of the bests.
    ratios.sort_by(f64::total_cmp);
    println!(
        "ratio per round, median:  {:>10.2}",
        ratios[ratios.len() / 2]
    );
    println!(
        "point reads: {} in {secs:.1} s ({:.0}/s), p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        q.latencies.len(),
        q.latencies.len() as f64 / secs,
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    Ok(())
}

fn measure(args: &QueriesArgs, wasm: &[u8], words: &[String], query: bool) -> anyhow::Result<Run> {
    let temp = tempfile::tempdir()?;
    let config = ServerConfig {
        data_dir: temp.path().to_path_buf(),
        workers: args.workers as usize,
        ..ServerConfig::default()
    };
    let app = App::open(&config)?;
    let c = Arc::clone(&app.controller);
    c.registry().put("wordcount", wasm)?;
    let topic = c
        .log()
        .create_topic("lines", &TopicConfig::kept(args.partitions))?;
    let spec = PipelineSpec::from_toml(
        "name = \"wc\"\n[source]\ntopic = \"lines\"\n[sink]\ntopic = \"counts\"\n\
         [[operators]]\nname = \"wordcount\"\nversion = 1\n",
    )?;
    c.create(spec)?;
    c.stop("wc")?;
    for chunk in words.chunks(20_000) {
        let batch: Vec<_> = chunk
            .iter()
            .map(|w| {
                let r = Record {
                    key: Some(w.clone().into_bytes()),
                    value: w.clone().into_bytes(),
                    timestamp: 0,
                    headers: Vec::new(),
                };
                (r, None)
            })
            .collect();
        c.log().produce(&topic, &batch)?;
    }
    c.db().flush()?;
    let router = api::router(app.state(ApiConfig {
        query_nice: args.query_nice,
        ..ApiConfig::default()
    }));
    let done = Arc::new(AtomicBool::new(false));
    let clients = query.then(|| {
        let load = Load {
            clients: args.clients,
            rate: args.rate,
            vocabulary: args.vocabulary,
            seconds: args.seconds,
        };
        let done = Arc::clone(&done);
        std::thread::spawn(move || read_counts(router, load, done))
    });
    let drained = start_and_drain(&c, "wc")?;
    let rate = words.len() as f64 / drained.as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let mut latencies = match clients {
        Some(h) => h
            .join()
            .map_err(|_| anyhow::anyhow!("a query client panicked"))??,
        None => Vec::new(),
    };
    latencies.sort_unstable();
    app.shutdown();
    Ok(Run { rate, latencies })
}

/// What the query clients do.
#[derive(Clone, Copy)]
struct Load {
    clients: u64,
    /// Reads per second of each (0: no pause).
    rate: u64,
    vocabulary: usize,
    seconds: u64,
}

/// `clients` loops of point reads of random words until `done` (or `seconds`); each
/// answer's latency in µs. A word not counted yet answers 404, which is a read too.
fn read_counts(
    router: axum::Router,
    load: Load,
    done: Arc<AtomicBool>,
) -> anyhow::Result<Vec<u64>> {
    let Load {
        clients,
        rate,
        vocabulary,
        seconds,
    } = load;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let stop_at = Instant::now() + Duration::from_secs(seconds);
        let tasks: Vec<_> = (0..clients)
            .map(|client| {
                let (router, done) = (router.clone(), Arc::clone(&done));
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ client;
                    let mut interval = (rate > 0)
                        .then(|| tokio::time::interval(Duration::from_micros(1_000_000 / rate)));
                    while !done.load(Ordering::Relaxed) && Instant::now() < stop_at {
                        if let Some(i) = &mut interval {
                            i.tick().await;
                        }
                        // xorshift: a word of the vocabulary, uniformly.
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let word = x % vocabulary as u64 + 1;
                        let req = Request::get(format!(
                            "/v1/pipelines/wc/state/wordcount/counts?key=w{word}"
                        ))
                        .body(Body::empty())?;
                        let t = Instant::now();
                        let resp = router.clone().oneshot(req).await?;
                        let status = resp.status();
                        axum::body::to_bytes(resp.into_body(), 1 << 20).await?;
                        anyhow::ensure!(
                            status == StatusCode::OK || status == StatusCode::NOT_FOUND,
                            "a query answered {status}"
                        );
                        latencies.push(t.elapsed().as_micros() as u64);
                    }
                    Ok::<_, anyhow::Error>(latencies)
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await??);
        }
        Ok(all)
    })
}
