//! `eddy bench kafka`: Kafka → Wasm word count → Kafka with exactly-once, against the
//! broker's own limit in the same run: a plain rdkafka consumer piping the same records
//! into a plain producer (no processing, no transactions).

use crate::control::PipelineSpec;
use crate::kafka::{Connection, ensure_topic};
use crate::server::{App, ServerConfig};
use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct KafkaArgs {
    /// Bootstrap servers of the broker to measure against.
    #[arg(long, env = "EDDY_KAFKA_BROKERS")]
    brokers: String,
    /// examples/wordcount built for wasm32-wasip2.
    #[arg(long)]
    wasm: PathBuf,
    /// Events (one word each).
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Distinct words, drawn Zipf-like.
    #[arg(long, default_value_t = 10_000)]
    vocabulary: usize,
    /// The pipeline's `commit_interval_ms` (one transaction per task per interval).
    #[arg(long, default_value_t = 100)]
    commit_interval_ms: u64,
    /// Also measure the pipeline with `exactly_once = false`.
    #[arg(long)]
    at_least_once: bool,
}

/// A `read_committed` reader of every partition of `topic`, from the beginning, with
/// `extra` settings.
pub(super) fn committed_reader(
    c: &Connection,
    group: &str,
    topic: &str,
    partitions: u32,
    extra: &[(&str, &str)],
) -> anyhow::Result<BaseConsumer> {
    let mut settings = vec![
        ("group.id", group),
        ("enable.auto.commit", "false"),
        ("isolation.level", "read_committed"),
    ];
    settings.extend_from_slice(extra);
    let consumer: BaseConsumer = c.config(&settings).create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p as i32, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    Ok(consumer)
}

pub(super) fn conn(brokers: &str) -> Connection {
    Connection {
        brokers: brokers.to_string(),
        properties: Vec::new(),
    }
}

/// Produces the workload with a plain producer; returns seconds.
fn load(c: &Connection, topic: &str, words: &[String], partitions: u32) -> anyhow::Result<f64> {
    let producer: BaseProducer = c
        .config(&[("linger.ms", "5"), ("enable.idempotence", "true")])
        .create()?;
    let started = Instant::now();
    for (i, w) in words.iter().enumerate() {
        let record: BaseRecord<'_, (), str> = BaseRecord::to(topic)
            .payload(w.as_str())
            .partition((i as u32 % partitions) as i32);
        send_waiting(&producer, record);
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(started.elapsed().as_secs_f64())
}

/// The broker's limit: per partition, a thread with a plain consumer piping every record
/// of `from` into a plain producer to `to` (Eddy's layout: one task per partition).
fn pipe(
    c: &Connection,
    from: &str,
    to: &str,
    partitions: u32,
    events: usize,
) -> anyhow::Result<f64> {
    let per_partition = events / partitions as usize;
    let started = Instant::now();
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..partitions)
            .map(|p| scope.spawn(move || pipe_partition(c, from, to, p, per_partition)))
            .collect();
        threads
            .into_iter()
            .try_for_each(|t| t.join().expect("pipe thread"))
    })?;
    Ok(started.elapsed().as_secs_f64())
}

fn pipe_partition(
    c: &Connection,
    from: &str,
    to: &str,
    partition: u32,
    records: usize,
) -> anyhow::Result<()> {
    let consumer: BaseConsumer = c
        .config(&[
            ("group.id", "eddy-bench-pipe"),
            ("enable.auto.commit", "false"),
        ])
        .create()?;
    let producer: BaseProducer = c
        .config(&[("linger.ms", "5"), ("enable.idempotence", "true")])
        .create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(from, partition as i32, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let mut seen = 0;
    while seen < records {
        let Some(m) = consumer.poll(Duration::from_secs(10)) else {
            anyhow::bail!("the pipe of partition {partition} stalled after {seen} records");
        };
        let m = m?;
        let record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(to)
            .payload(m.payload().unwrap_or_default())
            .partition(m.partition());
        send_waiting(&producer, record);
        seen += 1;
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(())
}

/// Checks a pipeline's committed output (read with `read_committed`): one record per
/// input word, and for each word exactly the counts 1..=n of each source partition where
/// it occurs n times (the input is spread over partitions without keys, so every task
/// counts on its own). A run whose output is wrong reports no figure.
fn verify(c: &Connection, topic: &str, words: &[String], partitions: u32) -> anyhow::Result<()> {
    let mut per_partition: HashMap<(u32, &str), u64> = HashMap::new();
    for (i, w) in words.iter().enumerate() {
        *per_partition
            .entry((i as u32 % partitions, w.as_str()))
            .or_default() += 1;
    }
    let mut expected: HashMap<&str, Vec<u64>> = HashMap::new();
    for ((_, w), n) in per_partition {
        expected.entry(w).or_default().extend(1..=n);
    }
    let consumer = committed_reader(c, "eddy-bench-verify", topic, partitions, &[])?;
    let mut got: HashMap<String, Vec<u64>> = HashMap::new();
    let mut records = 0usize;
    // Up to the expected count, then a further second to catch any extra record.
    let mut extra_until: Option<Instant> = None;
    loop {
        let wait = match extra_until {
            Some(until) => match until.checked_duration_since(Instant::now()) {
                Some(left) => left,
                None => break,
            },
            None => Duration::from_secs(10),
        };
        match consumer.poll(wait) {
            None if extra_until.is_some() => break,
            None => anyhow::bail!("reading {topic} stalled after {records} records"),
            Some(m) => {
                let m = m?;
                records += 1;
                let word = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                let n: u64 = std::str::from_utf8(m.payload().unwrap_or_default())?.parse()?;
                got.entry(word).or_default().push(n);
            }
        }
        if records == words.len() && extra_until.is_none() {
            extra_until = Some(Instant::now() + Duration::from_secs(1));
        }
    }
    anyhow::ensure!(
        records == words.len(),
        "{topic} holds {records} committed records, expected {}",
        words.len()
    );
    for (w, mut want) in expected {
        want.sort_unstable();
        let mut counts = got.remove(w).unwrap_or_default();
        counts.sort_unstable();
        anyhow::ensure!(
            counts == want,
            "{topic}: word {w:?} has counts {counts:?}, expected {want:?}"
        );
    }
    Ok(())
}

/// Runs the word count pipeline over the loaded topic until every task committed it.
fn pipeline(args: &KafkaArgs, source: &str, sink: &str, exactly_once: bool) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let config = ServerConfig {
        data_dir: dir.path().to_path_buf(),
        workers: crate::server::default_workers(),
        kafka_brokers: Some(args.brokers.clone()),
        cluster: None,
        server_name: None,
        ..ServerConfig::default()
    };
    let app = App::open(&config)?;
    let c = &app.controller;
    c.registry().put(
        "wordcount",
        &std::fs::read(&args.wasm).with_context(|| args.wasm.display().to_string())?,
    )?;
    let name = if exactly_once { "wc-eos" } else { "wc-alo" };
    let commit = args.commit_interval_ms;
    let spec = PipelineSpec::from_toml(&format!(
        "name = \"{name}\"\n[source]\nkafka = {{ topic = \"{source}\" }}\n[sink]\nkafka = {{ topic = \"{sink}\" }}\n[[operators]]\nname = \"wordcount\"\nversion = 1\n[settings]\nexactly_once = {exactly_once}\ncommit_interval_ms = {commit}\n"
    ))?;
    let started = Instant::now();
    c.create(spec)?;
    // Creation (changelog and position checks, transactional producers) is start-up, not
    // throughput: the tasks start processing when it returns.
    eprintln!(
        "pipeline created in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let per_partition = args.events as u64 / args.partitions as u64;
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let s = c.status(name)?;
        if s.tasks.iter().all(|t| t.committed_offset >= per_partition) {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the pipeline did not finish: {:?}",
            s.tasks
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let secs = started.elapsed().as_secs_f64();
    app.shutdown();
    Ok(secs)
}

pub fn run(args: KafkaArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.events.is_multiple_of(args.partitions as usize),
        "--events must be a multiple of --partitions"
    );
    let c = conn(&args.brokers);
    let run = format!("{}", std::process::id());
    let (input, piped, out_eos, out_alo) = (
        format!("bench-in-{run}"),
        format!("bench-pipe-{run}"),
        format!("bench-out-{run}"),
        format!("bench-alo-{run}"),
    );
    for t in [&input, &piped, &out_eos, &out_alo] {
        ensure_topic(&c, t, args.partitions, false)?;
    }
    let words = super::common::zipf_words(args.events, args.vocabulary)?;
    let produce = load(&c, &input, &words, args.partitions)?;
    eprintln!(
        "loaded {} events: {:.0} events/s produced",
        args.events,
        args.events as f64 / produce
    );
    let pipe_secs = pipe(&c, &input, &piped, args.partitions, args.events)?;
    eprintln!(
        "plain consume + produce: {:.0} events/s",
        args.events as f64 / pipe_secs
    );
    let eos = pipeline(&args, &input, &out_eos, true)?;
    verify(&c, &out_eos, &words, args.partitions)?;
    eprintln!(
        "pipeline, exactly-once: {:.0} events/s",
        args.events as f64 / eos
    );
    let alo = if args.at_least_once {
        let secs = pipeline(&args, &input, &out_alo, false)?;
        // Nothing failed, so at-least-once delivered each record once too.
        verify(&c, &out_alo, &words, args.partitions)?;
        Some(secs)
    } else {
        None
    };

    let rate = |s: f64| args.events as f64 / s;
    println!(
        "Kafka word count, {} events over {} partitions, {} words (Zipf)",
        args.events, args.partitions, args.vocabulary
    );
    println!("{:<52} {:>12} {:>10}", "path", "events/s", "vs pipe");
    println!(
        "{:<52} {:>12.0} {:>10}",
        "plain producer (load only)",
        rate(produce),
        ""
    );
    println!(
        "{:<52} {:>12.0} {:>10.2}",
        "plain consumer -> producer pipe per partition (baseline)",
        rate(pipe_secs),
        1.0
    );
    println!(
        "{:<52} {:>12.0} {:>10.2}",
        "Eddy: Kafka -> Wasm word count -> Kafka, exactly-once",
        rate(eos),
        pipe_secs / eos
    );
    if let Some(a) = alo {
        println!(
            "{:<52} {:>12.0} {:>10.2}",
            "Eddy: same, at-least-once",
            rate(a),
            pipe_secs / a
        );
    }
    Ok(())
}

/// Sends a record, serving the producer while its queue is full.
pub(super) fn send_waiting<K, P>(producer: &BaseProducer, mut record: BaseRecord<'_, K, P>)
where
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => break,
            Err((_, r)) => {
                producer.poll(Duration::from_millis(5));
                record = r;
            }
        }
    }
    producer.poll(Duration::ZERO);
}
