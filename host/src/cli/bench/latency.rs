//! `eddy bench latency`: end-to-end latency of a word count on the embedded log (or with
//! `--kafka`, on Kafka topics with exactly-once) at a fixed input rate (p50, p99, max),
//! and its throughput at saturation, with commits when a task caught up (the default) and
//! with commits at the interval only (the baseline), in one run, so neither figure is
//! traded away silently.

use crate::control::PipelineSpec;
use crate::log::TopicConfig;
use crate::record::Record;
use crate::server::{App, ServerConfig};
use anyhow::Context as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(clap::Args)]
pub struct LatencyArgs {
    /// examples/wordcount built for wasm32-wasip2.
    #[arg(long)]
    wasm: PathBuf,
    /// Events per second produced while latency is measured.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub(super) rate: u64,
    /// How long latency is measured.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub(super) seconds: u64,
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub(super) partitions: u32,
    /// Events in the backlog that measures the throughput at saturation.
    #[arg(long, default_value_t = 1_000_000)]
    pub(super) backlog: usize,
    /// Measure on Kafka topics of these bootstrap servers (exactly-once, the outputs read
    /// `read_committed`) instead of the embedded log.
    #[arg(long, env = "EDDY_KAFKA_BROKERS")]
    kafka: Option<String>,
}

/// What one mode measured.
pub(super) struct Measured {
    /// End-to-end latencies, microseconds, sorted.
    pub(super) latencies: Vec<u64>,
    pub(super) saturation: f64,
}

pub(super) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

pub fn run(args: LatencyArgs) -> anyhow::Result<()> {
    let wasm = std::fs::read(&args.wasm).with_context(|| args.wasm.display().to_string())?;
    let mut rows = Vec::new();
    for caught_up in [true, false] {
        let m = match &args.kafka {
            Some(brokers) => super::latency_kafka::measure(&args, brokers, &wasm, caught_up)?,
            None => measure(&args, &wasm, caught_up)?,
        };
        rows.push((caught_up, m));
    }
    println!(
        "word count on {} partitions ({}), {} events/s for {} s (latency from the event's time, 1 ms resolution), saturation over {} events",
        args.partitions,
        match &args.kafka {
            Some(_) => "Kafka topics, exactly-once, read_committed",
            None => "embedded log",
        },
        args.rate,
        args.seconds,
        args.backlog
    );
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>14}",
        "commits", "p50", "p99", "max", "saturation/s"
    );
    for (caught_up, m) in &rows {
        let pct = |q: f64| {
            let i = ((m.latencies.len() as f64 * q) as usize).min(m.latencies.len() - 1);
            format!("{:.1} ms", m.latencies[i] as f64 / 1000.0)
        };
        println!(
            "{:<34} {:>9} {:>9} {:>9} {:>14.0}",
            if *caught_up {
                "when caught up (default)"
            } else {
                "at the interval only (100 ms)"
            },
            pct(0.5),
            pct(0.99),
            pct(1.0),
            m.saturation
        );
    }
    if let Some(brokers) = &args.kafka {
        let t = super::latency_kafka::transaction_cost(brokers, args.partitions, 50)?;
        println!(
            "{:<34} {:>9} {:>9} {:>9}",
            "a bare transaction (the floor)",
            format!("{:.1} ms", t[t.len() / 2] as f64 / 1000.0),
            format!("{:.1} ms", t[t.len() * 99 / 100] as f64 / 1000.0),
            format!("{:.1} ms", t[t.len() - 1] as f64 / 1000.0),
        );
    }
    println!(
        "saturation ratio (default / interval only): {:.2}",
        rows[0].1.saturation / rows[1].1.saturation
    );
    Ok(())
}

fn measure(args: &LatencyArgs, wasm: &[u8], caught_up: bool) -> anyhow::Result<Measured> {
    let temp = tempfile::tempdir()?;
    let config = ServerConfig {
        data_dir: temp.path().to_path_buf(),
        workers: 2,
        ..ServerConfig::default()
    };
    let app = App::open(&config)?;
    let c = Arc::clone(&app.controller);
    c.registry().put("wordcount", wasm)?;
    let topic = c
        .log()
        .create_topic("lines", &TopicConfig::kept(args.partitions))?;
    let spec = PipelineSpec::from_toml(&format!(
        "name = \"wc\"\n[source]\ntopic = \"lines\"\n[sink]\ntopic = \"counts\"\n[[operators]]\nname = \"wordcount\"\nversion = 1\n[settings]\ncommit_when_caught_up = {caught_up}\n"
    ))?;
    c.create(spec)?;
    let sink = c.log().topic("counts")?;
    let partitions = args.partitions as u64;
    let record = move |i: u64, ts: i64| {
        (
            Record {
                key: None,
                value: format!("w{}", i % 1000).into_bytes(),
                timestamp: ts,
                headers: Vec::new(),
            },
            Some((i % partitions) as u32),
        )
    };

    // A producer at a fixed rate, in 1 ms ticks; each event carries its wall-clock time
    // (one word: one output).
    let total = args.rate * args.seconds;
    let producer = {
        let (log, topic) = (Arc::clone(c.log()), Arc::clone(&topic));
        let rate = args.rate;
        std::thread::spawn(move || -> anyhow::Result<()> {
            let start = Instant::now();
            let mut sent = 0u64;
            while sent < total {
                let due = (start.elapsed().as_micros() as u64 * rate / 1_000_000).min(total);
                if due > sent {
                    let ts = (now_us() / 1000) as i64;
                    let batch: Vec<_> = (sent..due).map(|i| record(i, ts)).collect();
                    log.produce(&topic, &batch)?;
                    sent = due;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            Ok(())
        })
    };
    let mut latencies = Vec::with_capacity(total as usize);
    let mut next = vec![0u64; args.partitions as usize];
    let deadline = Instant::now() + Duration::from_secs(args.seconds + 60);
    while (latencies.len() as u64) < total {
        anyhow::ensure!(Instant::now() < deadline, "the outputs did not all come");
        let mut got = false;
        for (p, from) in next.iter_mut().enumerate() {
            for (offset, r, _) in c.log().read(&sink, p as u32, *from, 10_000)? {
                let now = now_us();
                latencies.push(now.saturating_sub(r.timestamp as u64 * 1000));
                *from = offset + 1;
                got = true;
            }
        }
        if !got {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    producer
        .join()
        .map_err(|_| anyhow::anyhow!("the producer panicked"))??;
    latencies.sort_unstable();

    // Saturation: a backlog produced while the pipeline is stopped, then drained.
    c.stop("wc")?;
    for chunk in (0..args.backlog as u64).collect::<Vec<_>>().chunks(20_000) {
        let batch: Vec<_> = chunk.iter().map(|i| record(*i, 0)).collect();
        c.log().produce(&topic, &batch)?;
    }
    let drained = super::common::start_and_drain(&c, "wc")?;
    let saturation = args.backlog as f64 / drained.as_secs_f64();
    app.shutdown();
    Ok(Measured {
        latencies,
        saturation,
    })
}
