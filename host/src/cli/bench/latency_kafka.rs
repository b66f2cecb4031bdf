//! `eddy bench latency --kafka BROKERS`: the same measurement as on the embedded log, with
//! the source and sink topics in Kafka and exactly-once on: the producer is a plain
//! rdkafka producer, the reader a `read_committed` consumer of the sink, so an output
//! counts when its transaction committed.

use super::kafka::{committed_reader, conn, send_waiting};
use super::latency::{LatencyArgs, Measured, now_us};
use crate::control::PipelineSpec;
use crate::kafka::ensure_topic;
use crate::server::{App, ServerConfig};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn produce(producer: &BaseProducer, topic: &str, i: u64, partitions: u64, ts_ms: i64) {
    let value = format!("w{}", i % 1000);
    let record: BaseRecord<'_, (), str> = BaseRecord::to(topic)
        .payload(value.as_str())
        .partition((i % partitions) as i32)
        .timestamp(ts_ms);
    send_waiting(producer, record);
}

/// The broker's floor for an exactly-once output: a transactional producer's
/// produce-and-commit of one record, timed `rounds` times (microseconds, sorted).
pub fn transaction_cost(brokers: &str, partitions: u32, rounds: usize) -> anyhow::Result<Vec<u64>> {
    let c = conn(brokers);
    let topic = format!("latency-txn-{}", std::process::id());
    ensure_topic(&c, &topic, partitions, false)?;
    let producer: BaseProducer = c
        .config(&[("transactional.id", topic.as_str()), ("linger.ms", "0")])
        .create()?;
    producer.init_transactions(Duration::from_secs(30))?;
    let mut times = Vec::with_capacity(rounds);
    for i in 0..rounds as u64 {
        let started = Instant::now();
        producer.begin_transaction()?;
        produce(
            &producer,
            &topic,
            i,
            partitions as u64,
            (now_us() / 1000) as i64,
        );
        producer.commit_transaction(Duration::from_secs(30))?;
        times.push(started.elapsed().as_micros() as u64);
    }
    times.sort_unstable();
    Ok(times)
}

pub fn measure(
    args: &LatencyArgs,
    brokers: &str,
    wasm: &[u8],
    caught_up: bool,
) -> anyhow::Result<Measured> {
    let c = conn(brokers);
    let run = format!(
        "{}-{}",
        std::process::id(),
        if caught_up { "caught-up" } else { "interval" }
    );
    // Names of their own per run: a pipeline's internal topics (positions, changelogs)
    // are named after it.
    let (source, sink) = (format!("latency-in-{run}"), format!("latency-out-{run}"));
    for t in [&source, &sink] {
        ensure_topic(&c, t, args.partitions, false)?;
    }
    let temp = tempfile::tempdir()?;
    let config = ServerConfig {
        data_dir: temp.path().to_path_buf(),
        workers: 2,
        kafka_brokers: Some(brokers.to_string()),
        ..ServerConfig::default()
    };
    let app = App::open(&config)?;
    let controller = Arc::clone(&app.controller);
    controller.registry().put("wordcount", wasm)?;
    let spec = PipelineSpec::from_toml(&format!(
        "name = \"wc-{run}\"\n[source]\nkafka = {{ topic = \"{source}\" }}\n[sink]\nkafka = {{ topic = \"{sink}\" }}\n[[operators]]\nname = \"wordcount\"\nversion = 1\n[settings]\nexactly_once = true\ncommit_when_caught_up = {caught_up}\n"
    ))?;
    let name = format!("wc-{run}");
    controller.create(spec)?;
    // A broker that holds an empty fetch for its whole wait would add it to every latency.
    let consumer = committed_reader(
        &c,
        "eddy-bench-latency",
        &sink,
        args.partitions,
        &[("fetch.wait.max.ms", "10")],
    )?;
    let partitions = args.partitions as u64;

    // A producer at a fixed rate, in 1 ms ticks, each event stamped with its wall-clock
    // time (one word: one output, which keeps the timestamp).
    let total = args.rate * args.seconds;
    let producer = {
        let (c, source, rate) = (c.clone(), source.clone(), args.rate);
        std::thread::spawn(move || -> anyhow::Result<()> {
            // A tick's events go out together (as on the embedded log, one produce per
            // tick): one request per event would measure the broker's request rate.
            let producer: BaseProducer = c.config(&[("linger.ms", "1")]).create()?;
            let start = Instant::now();
            let mut sent = 0u64;
            while sent < total {
                let due = (start.elapsed().as_micros() as u64 * rate / 1_000_000).min(total);
                let ts = (now_us() / 1000) as i64;
                for i in sent..due {
                    produce(&producer, &source, i, partitions, ts);
                }
                sent = due;
                producer.poll(Duration::ZERO);
                std::thread::sleep(Duration::from_micros(200));
            }
            producer.flush(Duration::from_secs(60))?;
            Ok(())
        })
    };
    let mut latencies = Vec::with_capacity(total as usize);
    let deadline = Instant::now() + Duration::from_secs(args.seconds + 120);
    while (latencies.len() as u64) < total {
        if Instant::now() >= deadline {
            let tasks = controller.status(&name)?.tasks;
            anyhow::bail!(
                "only {} of {total} outputs came; the tasks: {tasks:?}",
                latencies.len()
            );
        }
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let ts = m?.timestamp().to_millis().unwrap_or(0).max(0) as u64;
            latencies.push(now_us().saturating_sub(ts * 1000));
        }
    }
    producer
        .join()
        .map_err(|_| anyhow::anyhow!("the producer panicked"))??;
    latencies.sort_unstable();

    // Saturation: a backlog produced while the pipeline is stopped, then drained; timed
    // until every task committed its partition's end (the bench kafka's measure).
    controller.stop(&name)?;
    let producer: BaseProducer = c
        .config(&[("linger.ms", "5"), ("enable.idempotence", "true")])
        .create()?;
    for i in 0..args.backlog as u64 {
        produce(&producer, &source, i, partitions, 0);
    }
    producer.flush(Duration::from_secs(300))?;
    // Records per partition: the latency run's and the backlog's, each spread i % P.
    let end = |p: u64| {
        [total, args.backlog as u64]
            .map(|n| n / partitions + u64::from(p < n % partitions))
            .iter()
            .sum::<u64>()
    };
    controller.start(&name)?;
    // Timed from the first committed progress to the end, so the tasks' start (restores,
    // transactional producers) is not counted as throughput.
    let before = total;
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut first: Option<(Instant, u64)> = None;
    let finished = loop {
        let tasks = controller.status(&name)?.tasks;
        let committed: u64 = tasks.iter().map(|t| t.committed_offset).sum();
        if first.is_none() && committed > before {
            first = Some((Instant::now(), committed));
        }
        if !tasks.is_empty()
            && tasks
                .iter()
                .all(|t| t.committed_offset >= end(t.partition as u64))
        {
            break Instant::now();
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the backlog was not drained: {tasks:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let (t1, done) = first.unwrap_or((finished, before));
    let all = total + args.backlog as u64;
    let saturation = (all - done) as f64 / finished.duration_since(t1).as_secs_f64().max(1e-6);
    app.shutdown();
    Ok(Measured {
        latencies,
        saturation,
    })
}
