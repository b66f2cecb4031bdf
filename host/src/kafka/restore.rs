//! Bringing a task's local state up to its changelog topics in Kafka before it runs:
//! after a crash between a transaction's commit and the RocksDB write, or on a server
//! whose data dir is empty. Replaying any suffix of a changelog from at or before what
//! the state reflects ends in the right state (every change overwrites), so the marker
//! of the last RocksDB write is a safe start.

use super::position::RecordedPosition;
use super::{Connection, EndIsExpected, KafkaError, KafkaNames, REQUEST_TIMEOUT};
use crate::state::changelog::{Change, ChangeApplier, load_marker, marker_key};
use crate::state::{
    Cf, Db, StateScope, TaskId, load_position, load_source_positions, put_position,
    put_source_positions, put_upstream_watermarks,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError as RdError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use rocksdb::WriteBatch;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Changes per RocksDB write while restoring.
const CHUNK: usize = 10_000;
/// From how many changelog offsets a restore writes without the write-ahead log.
const UNLOGGED_FROM: u64 = 50_000;
/// How many offsets an unlogged restore goes between two flushes (and markers).
const DURABLE_EVERY: u64 = 500_000;
/// How long a restore waits for a partition's open transactions to be decided before
/// it gives up for now (the pipeline then shows what it waits for and retries).
const STABLE_WAIT: Duration = Duration::from_secs(5);
/// How long a read may see no record before the restore gives up for now.
const NO_PROGRESS: Duration = Duration::from_secs(10);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RestoreReport {
    /// Changelog records applied.
    pub records: u64,
    /// Store partitions that were behind.
    pub stores: u64,
    /// The source offset moved forward to the position Kafka recorded.
    pub advanced_to: Option<u64>,
}

/// How far a restore is, in changelog offsets (records, counting those compaction has
/// removed): covered so far, and to cover (known once every changelog's end is).
#[derive(Debug, Default)]
pub struct RestoreProgress {
    restored: AtomicU64,
    to_restore: AtomicU64,
}

impl RestoreProgress {
    /// (restored, to restore).
    pub fn get(&self) -> (u64, u64) {
        let restored = self.restored.load(Ordering::Relaxed);
        // Reading past an end the broker misreported is counted when the read ends.
        (
            restored,
            self.to_restore.load(Ordering::Relaxed).max(restored),
        )
    }
}

/// Restores the state of task `task` (operators `operators`) from the pipeline's
/// changelog topics (named by `names`) on `conn`, then moves the task's position to the
/// one its last committed transaction recorded, when local state was behind it.
/// `progress` says how far it is meanwhile. For a task whose previous owner is fenced or
/// gone: changes beyond the recorded position belong to transactions that never
/// committed, and are passed over.
pub fn restore_task(
    db: &Db,
    conn: &Connection,
    task: (&TaskId, &KafkaNames),
    operators: &[&str],
    progress: &RestoreProgress,
) -> Result<RestoreReport, KafkaError> {
    restore(db, conn, task, operators, progress, false)
}

/// Brings a warm copy (standby) of task `task` up to its changelogs while its owner
/// still commits: each changelog is applied up to the first change beyond the position
/// read first (a transaction that committed since), which the next catch-up takes.
pub fn catch_up_standby(
    db: &Db,
    conn: &Connection,
    task: (&TaskId, &KafkaNames),
    operators: &[&str],
    progress: &RestoreProgress,
) -> Result<RestoreReport, KafkaError> {
    restore(db, conn, task, operators, progress, true)
}

fn restore(
    db: &Db,
    conn: &Connection,
    (task, names): (&TaskId, &KafkaNames),
    operators: &[&str],
    progress: &RestoreProgress,
    live: bool,
) -> Result<RestoreReport, KafkaError> {
    let consumer: BaseConsumer<EndIsExpected> = conn
        .config(&[
            ("group.id", "eddy.restore"),
            ("enable.auto.commit", "false"),
            ("isolation.level", "read_committed"),
            ("enable.partition.eof", "true"),
            ("auto.offset.reset", "earliest"),
            // A restore reads what is already there: a broker that holds a fetch for the
            // whole wait although records are there (Tansu does) is not waited on.
            ("fetch.wait.max.ms", "10"),
            // When the records fetched ahead reach librdkafka's queue limit, the next
            // fetch waits `fetch.queue.backoff.ms` (1 s by default): a restore, which
            // applies as fast as it reads, would stall a second each time.
            ("fetch.queue.backoff.ms", "10"),
        ])
        .create_with_context(EndIsExpected)
        .map_err(|e| conn.error(e))?;
    // Sees every record, decided or not: its end is what a committed reader must reach.
    let uncommitted: BaseConsumer<EndIsExpected> = conn
        .config(&[
            ("group.id", "eddy.restore"),
            ("enable.auto.commit", "false"),
            ("isolation.level", "read_uncommitted"),
        ])
        .create_with_context(EndIsExpected)
        .map_err(|e| conn.error(e))?;
    let readers = Readers {
        committed: &consumer,
        uncommitted: &uncommitted,
        names,
        live,
    };
    let report = restore_with(db, conn, task, operators, &readers, progress);
    // Closing a librdkafka client waits ~100 ms for its threads to end: a restore that
    // has its result does not wait for that.
    let _ = std::thread::Builder::new()
        .name("eddy-restore-close".into())
        .spawn(move || drop((consumer, uncommitted)));
    report
}

fn restore_with(
    db: &Db,
    conn: &Connection,
    task: &TaskId,
    operators: &[&str],
    readers: &Readers<'_>,
    progress: &RestoreProgress,
) -> Result<RestoreReport, KafkaError> {
    let mut report = RestoreReport::default();
    let consumer = readers.committed;
    let metadata = consumer
        .fetch_metadata(None, REQUEST_TIMEOUT)
        .map_err(|e| conn.error(e))?;
    let positions = readers.names.positions();
    let has_positions = metadata
        .topics()
        .iter()
        .any(|t| t.name() == positions && t.partitions().len() > task.partition as usize);
    let recorded = has_positions
        .then(|| recorded_position(conn, readers, task))
        .transpose()?
        .flatten();
    if let Some(recorded) = &recorded {
        let mut position = load_position(db, task).map_err(|e| conn.error(e))?;
        let sources = load_source_positions(db, task).map_err(|e| conn.error(e))?;
        // Forward only: local state is written after its transaction committed, so Kafka
        // is never behind it, except when the broker hides a committed record for a while
        // (Tansu does, under load). A restore elsewhere that rewinds Kafka makes every
        // other server drop its local state first (the catalog's `restored/` record).
        if recorded.progress() > super::position::progress(position, &sources) {
            position.offset = recorded.position.offset;
            position.watermark = position.watermark.max(recorded.position.watermark);
            let mut wb = WriteBatch::default();
            put_position(db, &mut wb, task, position);
            if !recorded.sources.is_empty() {
                put_source_positions(db, &mut wb, task, &recorded.sources);
            }
            if !recorded.upstream.is_empty() {
                put_upstream_watermarks(db, &mut wb, task, &recorded.upstream);
            }
            db.write(wb).map_err(|e| conn.error(e))?;
            report.advanced_to = Some(recorded.position.offset);
        }
    }
    // Changes beyond the recorded position belong to transactions that never committed.
    let recorded_offset = recorded.as_ref().map_or(0, RecordedPosition::progress);
    // Every changelog's range first, so the progress knows what there is to do.
    let mut todo = Vec::new();
    for t in metadata.topics() {
        let Some((operator, store)) = readers.names.changelog_store(operators, t.name()) else {
            continue;
        };
        if (task.partition as usize) >= t.partitions().len() {
            continue;
        }
        let scope = StateScope {
            pipeline: task.pipeline.clone(),
            operator: operator.to_string(),
            partition: task.partition,
        };
        let from = load_marker(db, &scope, &store)
            .map_err(|e| conn.error(e))?
            .unwrap_or(0);
        let end = stable_end(conn, readers, t.name(), task.partition)?;
        todo.push((t.name(), scope, store, from..end));
    }
    let total = todo
        .iter()
        .map(|(.., r)| r.end.saturating_sub(r.start))
        .sum();
    progress.to_restore.fetch_add(total, Ordering::Relaxed);
    for (topic, scope, store, range) in todo {
        let changelog = Changelog {
            topic,
            scope: &scope,
            store: &store,
        };
        let applied = replay(
            db,
            conn,
            readers,
            &changelog,
            range,
            recorded_offset,
            progress,
        )?;
        if applied > 0 {
            report.records += applied;
            report.stores += 1;
        }
    }
    Ok(report)
}

/// One store partition's changelog.
struct Changelog<'a> {
    topic: &'a str,
    scope: &'a StateScope,
    store: &'a str,
}

/// The two views of a partition a restore needs, and the names it reads.
struct Readers<'a> {
    names: &'a KafkaNames,
    /// The task's owner may still commit (see [`catch_up_standby`]).
    live: bool,
    /// Reads committed records only (`read_committed`).
    committed: &'a BaseConsumer<EndIsExpected>,
    /// Asks for the end of everything written, decided or not.
    uncommitted: &'a BaseConsumer<EndIsExpected>,
}

/// The position the task's last committed transaction recorded, if any.
fn recorded_position(
    conn: &Connection,
    readers: &Readers<'_>,
    task: &TaskId,
) -> Result<Option<RecordedPosition>, KafkaError> {
    let topic = readers.names.positions();
    let key = super::position_key(task.stage, task.partition);
    let mut last = None;
    read_to_end(conn, readers, &topic, task.partition, 0, |m| {
        if m.key() == Some(key.as_bytes()) {
            let text = String::from_utf8_lossy(m.payload().unwrap_or_default());
            last = Some(
                RecordedPosition::decode(&text)
                    .ok_or_else(|| conn.error(format!("{topic}: bad position record {text:?}")))?,
            );
        }
        Ok(true)
    })?;
    Ok(last)
}

/// The end a committed reader of a partition must reach: its high watermark, once every
/// transaction with records below it is decided (its last stable offset caught up).
/// A restore that stopped at a lower stable offset could miss a committed transaction
/// the broker has not settled yet (and resume on an older position); so it waits, and
/// after [`STABLE_WAIT`] says what for.
fn stable_end(
    conn: &Connection,
    readers: &Readers<'_>,
    topic: &str,
    partition: u32,
) -> Result<u64, KafkaError> {
    let p = partition as i32;
    let (_, high) = readers
        .uncommitted
        .fetch_watermarks(topic, p, REQUEST_TIMEOUT)
        .map_err(|e| conn.error(format!("{topic}/{partition}: {e}")))?;
    let started = Instant::now();
    let mut pause = Duration::from_millis(50);
    loop {
        let (_, stable) = readers
            .committed
            .fetch_watermarks(topic, p, REQUEST_TIMEOUT)
            .map_err(|e| conn.error(format!("{topic}/{partition}: {e}")))?;
        if stable >= high {
            return Ok(high.max(0) as u64);
        }
        if started.elapsed() >= STABLE_WAIT {
            return Err(conn.error(format!(
                "waiting for {topic}/{partition} to reach offset {high}: its last stable offset is {stable}, an open transaction holds the rest (the broker decides it when its producer comes back or at transaction.timeout.ms)"
            )));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

/// Calls `visit` on every committed record of a partition from `from` to its end (see
/// [`stable_end`]), until it says to stop (`false`).
fn read_to_end(
    conn: &Connection,
    readers: &Readers<'_>,
    topic: &str,
    partition: u32,
    from: u64,
    visit: impl FnMut(&rdkafka::message::BorrowedMessage<'_>) -> Result<bool, KafkaError>,
) -> Result<(), KafkaError> {
    let end = stable_end(conn, readers, topic, partition)?;
    read_range(conn, readers, topic, partition, from..end, visit)
}

/// Calls `visit` on every committed record of a partition in `range` (whose end is a
/// stable end), until it says to stop (`false`).
fn read_range(
    conn: &Connection,
    readers: &Readers<'_>,
    topic: &str,
    partition: u32,
    range: std::ops::Range<u64>,
    mut visit: impl FnMut(&rdkafka::message::BorrowedMessage<'_>) -> Result<bool, KafkaError>,
) -> Result<(), KafkaError> {
    let (from, end) = (range.start, range.end);
    if end <= from {
        return Ok(());
    }
    let consumer = readers.committed;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition as i32, Offset::Offset(from as i64))
        .map_err(|e| conn.error(e))?;
    consumer.assign(&tpl).map_err(|e| conn.error(e))?;
    // The clock is read when a poll comes back empty, not once per record.
    let (mut last_progress, mut moved) = (Instant::now(), false);
    loop {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                if !visit(&m)? {
                    return Ok(());
                }
                moved = true;
            }
            Some(Err(RdError::PartitionEOF(_))) => return Ok(()),
            Some(Err(e)) => return Err(conn.error(format!("reading {topic}/{partition}: {e}"))),
            None if moved => (last_progress, moved) = (Instant::now(), false),
            None if last_progress.elapsed() > NO_PROGRESS => {
                return Err(conn.error(format!(
                    "waiting for {topic}/{partition} to reach offset {end}: no record for {} s",
                    NO_PROGRESS.as_secs()
                )));
            }
            None => {}
        }
    }
}

/// Applies the changelog partition in `range` (committed records only).
fn replay(
    db: &Db,
    conn: &Connection,
    readers: &Readers<'_>,
    changelog: &Changelog<'_>,
    range: std::ops::Range<u64>,
    recorded: u64,
    progress: &RestoreProgress,
) -> Result<u64, KafkaError> {
    let Changelog {
        topic,
        scope,
        store,
    } = *changelog;
    let from = range.start;
    let applier = ChangeApplier::new(db, scope, store).map_err(|e| conn.error(e))?;
    let mut applied = 0u64;
    let mut wb = WriteBatch::default();
    let mut in_batch = 0usize;
    let (mut reached, mut reported) = (from, from);
    // A long range goes in without the write-ahead log: every `DURABLE_EVERY` offsets and
    // at its end (or where a failed read stopped) the store is flushed, and only then is
    // the marker that accounts for it written, with the log. A crash meanwhile loses the
    // changes since the last such marker, and the next restore does them again. A short
    // range (a standby's refresh, a restart's tail) is written with the log, its marker in
    // each chunk, as commits are.
    let unlogged = !readers.live && range.end.saturating_sub(from) >= UNLOGGED_FROM;
    let marker = |wb: &mut WriteBatch, reached: u64| {
        wb.put_cf(
            db.cf(Cf::Meta),
            marker_key(scope, store),
            reached.to_be_bytes(),
        );
    };
    let settle = |reached: u64| -> Result<(), KafkaError> {
        db.flush_cfs(&[Cf::State, Cf::Timers])
            .map_err(|e| conn.error(e))?;
        let mut wb = WriteBatch::default();
        marker(&mut wb, reached);
        db.write(wb).map_err(|e| conn.error(e))
    };
    let mut durable = from;
    // A write that failed lost its chunk: nothing past the last good one may be marked.
    let lost = std::cell::Cell::new(false);
    let mut flush = |wb: &mut WriteBatch, reached: u64| -> Result<(), KafkaError> {
        if lost.get() {
            return Ok(());
        }
        if unlogged {
            db.write_unlogged(std::mem::take(wb)).map_err(|e| {
                lost.set(true);
                conn.error(e)
            })?;
            if reached - durable >= DURABLE_EVERY {
                settle(reached)?;
                durable = reached;
            }
        } else {
            marker(wb, reached);
            db.write(std::mem::take(wb)).map_err(|e| {
                lost.set(true);
                conn.error(e)
            })?;
        }
        progress
            .restored
            .fetch_add(reached - reported, Ordering::Relaxed);
        reported = reached;
        Ok(())
    };
    let read = read_range(conn, readers, topic, scope.partition, range.clone(), |m| {
        let headers = m.headers();
        let header = |name: &str| {
            let h = headers?.iter().find(|h| h.key == name)?;
            Some(h.value.unwrap_or_default())
        };
        let position = header(super::POSITION_HEADER)
            .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok());
        let beyond = position.is_some_and(|p| p > recorded);
        if beyond && readers.live {
            // Committed after the position was read: left for the next catch-up.
            return Ok(false);
        }
        // Only a broker that shows aborted records to read_committed consumers (Tansu)
        // lets a change beyond the position through: it is passed over.
        if !beyond {
            let change = Change::from_parts(m.key(), m.payload().unwrap_or_default(), header)
                .map_err(|e| conn.error(format!("{topic}: {e}")))?;
            applier.apply(db, &mut wb, change);
            applied += 1;
            in_batch += 1;
        }
        reached = m.offset() as u64 + 1;
        if in_batch >= CHUNK {
            flush(&mut wb, reached)?;
            in_batch = 0;
        }
        Ok(true)
    });
    // What was read goes in, also when the read failed on the way (not a write): the next
    // attempt goes on from there.
    if reached > from && !lost.get() {
        flush(&mut wb, reached)?;
        if unlogged {
            settle(reached)?;
        }
    }
    read?;
    // The range's last offsets may hold no record (transaction markers): covered too.
    // A read past the end asked for (a broker that misreported it) adds what it read.
    let planned = range.end.max(from);
    let end = planned.max(reached);
    progress
        .to_restore
        .fetch_add(end - planned, Ordering::Relaxed);
    progress
        .restored
        .fetch_add(end - reported, Ordering::Relaxed);
    Ok(applied)
}
