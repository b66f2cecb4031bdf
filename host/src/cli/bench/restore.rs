//! `eddy bench restore`: a task's state rebuilt from its changelog topic in Kafka (what a
//! server does when it takes a partition over), against the broker's limit in the same
//! run: a plain `read_committed` consumer reading the same partitions to their end.

use super::kafka::{conn, send_waiting};
use crate::kafka::{
    Connection, EndIsExpected, KafkaNames, POSITION_HEADER, RestoreProgress, ensure_topic,
    position_key, restore_task,
};
use crate::state::changelog::load_marker;
use crate::state::{Cf, Db, DbOptions, StateScope, TaskId};
use crate::task::{side_by_side, startup_width};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError as RdError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct RestoreArgs {
    /// Bootstrap servers of the broker to measure against.
    #[arg(long, env = "EDDY_KAFKA_BROKERS")]
    brokers: String,
    /// Keys of state (one changelog record each).
    #[arg(long, default_value_t = 1_000_000)]
    keys: usize,
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    partitions: u32,
    /// A librdkafka property for every client of the run (`KEY=VALUE`; repeatable), as a
    /// pipeline's `properties` would give it.
    #[arg(long = "property", value_parser = parse_property)]
    properties: Vec<(String, String)>,
    /// Rounds of both reads; the best of each counts.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    rounds: u64,
}

fn parse_property(text: &str) -> Result<(String, String), String> {
    let (k, v) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))?;
    Ok((k.to_string(), v.to_string()))
}

const OPERATOR: &str = "wordcount";
const STORE: &str = "counts";

pub fn run(args: RestoreArgs) -> anyhow::Result<()> {
    let c = Connection {
        properties: args.properties.clone(),
        ..conn(&args.brokers)
    };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let pipeline = format!("bench-restore-{}", nanos.as_millis());
    let topic = KafkaNames::new(None, &pipeline).changelog(OPERATOR, STORE);
    ensure_topic(&c, &topic, args.partitions, true)?;
    let loaded = load(&c, &pipeline, &topic, args.keys, args.partitions)?;
    eprintln!(
        "loaded {} changelog records in {loaded:.1} s ({:.0}/s)",
        args.keys,
        args.keys as f64 / loaded
    );
    // As a server starting a stage's tasks: that many partitions at once.
    let width = startup_width();
    let rate = |secs: f64| args.keys as f64 / secs;
    println!(
        "changelog of {} keys on {} partitions, best of {} rounds",
        args.keys, args.partitions, args.rounds
    );
    println!(
        "| partitions | plain read_committed consumer (baseline) | restore into RocksDB | ratio |"
    );
    for at_once in [1, width] {
        let (mut plain, mut restore) = (f64::MAX, f64::MAX);
        for round in 1..=args.rounds {
            let p = read_plain(&c, &topic, args.partitions, at_once, args.keys)?;
            let r = restore_all(&c, &pipeline, args.partitions, at_once, args.keys)?;
            eprintln!("{at_once} at once, round {round}: plain read {p:.2} s, restore {r:.2} s");
            plain = plain.min(p);
            restore = restore.min(r);
        }
        println!(
            "| {at_once} at once | {:.0} records/s | {:.0} records/s | {:.2} |",
            rate(plain),
            rate(restore),
            plain / restore
        );
    }
    Ok(())
}

/// Runs `f` on every partition, `at_once` of them at a time (as a server starts them).
fn by_partition<T: Send>(
    partitions: u32,
    at_once: usize,
    f: impl Fn(u32) -> anyhow::Result<T> + Sync,
) -> anyhow::Result<Vec<T>> {
    let all: Vec<u32> = (0..partitions).collect();
    side_by_side(&all, at_once, |&p| f(p))
}

/// One `put` per key, spread over the partitions, as a task's transactions write them: each
/// names the position of its transaction (one per 1,000 changes of a partition), and
/// the positions topic records the last; returns seconds.
fn load(
    c: &Connection,
    pipeline: &str,
    topic: &str,
    keys: usize,
    partitions: u32,
) -> anyhow::Result<f64> {
    let producer: BaseProducer = c
        .config(&[("linger.ms", "5"), ("enable.idempotence", "true")])
        .create()?;
    let started = Instant::now();
    let mut last = vec![0u64; partitions as usize];
    for i in 0..keys {
        let p = i as u32 % partitions;
        let position = (i as u64 / partitions as u64 / 1_000 + 1) * 1_000;
        last[p as usize] = position;
        let position = position.to_string();
        let key = format!("w{i}");
        let value = (i as u64).to_be_bytes();
        let headers = OwnedHeaders::new().insert(Header {
            key: POSITION_HEADER,
            value: Some(position.as_str()),
        });
        let record: BaseRecord<'_, str, [u8]> = BaseRecord::to(topic)
            .key(key.as_str())
            .payload(&value[..])
            .headers(headers)
            .partition(p as i32);
        send_waiting(&producer, record);
    }
    let positions = KafkaNames::new(None, pipeline).positions();
    ensure_topic(c, &positions, partitions, true)?;
    for (p, last) in last.iter().enumerate() {
        let key = position_key(0, p as u32);
        let value = format!("{last},0");
        let record: BaseRecord<'_, str, str> = BaseRecord::to(&positions)
            .key(key.as_str())
            .payload(value.as_str())
            .partition(p as i32);
        send_waiting(&producer, record);
    }
    producer.flush(Duration::from_secs(300))?;
    Ok(started.elapsed().as_secs_f64())
}

/// Reads every partition to its end with a plain consumer tuned as the restore's is;
/// returns seconds (closing the consumers, which takes librdkafka ~100 ms, not counted).
fn read_plain(
    c: &Connection,
    topic: &str,
    partitions: u32,
    at_once: usize,
    keys: usize,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let read = by_partition(partitions, at_once, |p| {
        let consumer: BaseConsumer<EndIsExpected> = c
            .config(&[
                ("group.id", "eddy-bench-restore"),
                ("enable.auto.commit", "false"),
                ("isolation.level", "read_committed"),
                ("enable.partition.eof", "true"),
                ("fetch.wait.max.ms", "10"),
                ("fetch.queue.backoff.ms", "10"),
            ])
            .create_with_context(EndIsExpected)?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, p as i32, Offset::Offset(0))?;
        consumer.assign(&tpl)?;
        let mut seen = 0usize;
        loop {
            match consumer.poll(Duration::from_secs(10)) {
                Some(Ok(_)) => seen += 1,
                Some(Err(RdError::PartitionEOF(_))) => break,
                Some(Err(e)) => return Err(e.into()),
                None => anyhow::bail!("{topic}/{p}: no record for 10 s"),
            }
        }
        Ok((seen, consumer))
    })?;
    let secs = started.elapsed().as_secs_f64();
    let seen: usize = read.iter().map(|(n, _)| n).sum();
    anyhow::ensure!(seen == keys, "the plain read saw {seen} records of {keys}");
    Ok(secs)
}

/// Restores every partition into an empty database, as a server that takes them over;
/// checks that every key arrived; returns seconds.
fn restore_all(
    c: &Connection,
    pipeline: &str,
    partitions: u32,
    at_once: usize,
    keys: usize,
) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let db = Db::open(dir.path(), &DbOptions::default())?;
    let started = Instant::now();
    let reports = by_partition(partitions, at_once, |p| {
        let progress = RestoreProgress::default();
        let (task, names) = (TaskId::new(pipeline, p), KafkaNames::new(None, pipeline));
        let report = restore_task(&db, c, (&task, &names), &[OPERATOR], &progress)?;
        let (restored, to_restore) = progress.get();
        anyhow::ensure!(
            restored == to_restore && restored >= report.records,
            "partition {p}: the progress says {restored} of {to_restore} after {} records",
            report.records
        );
        // The store's marker says the whole changelog is in (written last, once the
        // restored changes are durable).
        let scope = StateScope {
            pipeline: pipeline.to_string(),
            operator: OPERATOR.to_string(),
            partition: p,
        };
        let marker = load_marker(&db, &scope, STORE)?;
        anyhow::ensure!(
            marker == Some(to_restore),
            "partition {p}: the marker is {marker:?} after a restore of {to_restore} offsets"
        );
        Ok(report)
    })?;
    let secs = started.elapsed().as_secs_f64();
    let records: u64 = reports.iter().map(|r| r.records).sum();
    anyhow::ensure!(
        records == keys as u64,
        "the restore applied {records} records of {keys}"
    );
    let mut it = db.rocks().raw_iterator_cf(db.cf(Cf::State));
    it.seek_to_first();
    let mut stored = 0;
    while it.valid() {
        stored += 1;
        it.next();
    }
    anyhow::ensure!(
        stored == keys,
        "the restored state holds {stored} keys of {keys}"
    );
    Ok(secs)
}
