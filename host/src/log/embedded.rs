//! The embedded log: topics with partitions in RocksDB's `log` column family, keyed by
//! `(topic id, partition, offset)`. An append (from a producer or a task's commit) takes
//! offsets under a per-partition lock, writes without any lock (concurrent commits share
//! RocksDB's group commit), and then publishes the partition's new end only up to the
//! first range still being written, so a reader never sees an offset before everything
//! below it is written.

use super::codec::{self, CodecError};
use super::partitioner::partition_for_key;
use super::signal::Signal;
use super::topic::{Topic, TopicConfig, TopicMeta};
use crate::io::SourceBatch;
use crate::record::batch;
use crate::record::{Record, now_ms};
use crate::state::{Cf, Commit, Db, StateError, keys};
use rocksdb::{IteratorMode, ReadOptions, WriteBatch};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

/// Most partitions a topic may have.
pub const PARTITIONS_MAX: u32 = 1024;

const TOPIC_META: &[u8] = b"topic/";
const NEXT_TOPIC_ID: &[u8] = b"topic-next-id";

/// Why a log operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("topic {0:?} does not exist")]
    NoSuchTopic(String),
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    #[error("topic {topic:?} has {partitions} partition(s); partition {partition} does not exist")]
    NoSuchPartition {
        topic: String,
        partition: u32,
        partitions: u32,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Codec(#[from] CodecError),
}

impl From<rocksdb::Error> for LogError {
    fn from(e: rocksdb::Error) -> Self {
        LogError::State(StateError::Rocks(e))
    }
}

pub(super) fn record_key(topic: u32, partition: u32, offset: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..4].copy_from_slice(&topic.to_be_bytes());
    k[4..8].copy_from_slice(&partition.to_be_bytes());
    k[8..].copy_from_slice(&offset.to_be_bytes());
    k
}

fn offset_of(key: &[u8]) -> Result<u64, CodecError> {
    key.get(8..16)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or(CodecError("log key"))
}

/// Records of one partition to append: encoded back to back in one buffer.
struct Group {
    topic: Arc<Topic>,
    data: Vec<u8>,
    /// End of each record in `data`, and its position among all appended records.
    records: Vec<(usize, usize)>,
}

/// Records to append in one commit, grouped by partition, each partition in order.
#[derive(Default)]
pub struct Appends {
    groups: BTreeMap<(u32, u32), Group>,
    count: usize,
    /// Meta keys to set, in the same write, to the end offset a partition reaches.
    markers: Vec<((u32, u32), Vec<u8>)>,
}

impl Appends {
    /// Appends a record to `partition` of `topic`; `encode` writes it into the buffer.
    pub fn push_with(
        &mut self,
        topic: &Arc<Topic>,
        partition: u32,
        encode: impl FnOnce(&mut Vec<u8>),
    ) {
        let group = self
            .groups
            .entry((topic.meta.id, partition))
            .or_insert_with(|| Group {
                topic: Arc::clone(topic),
                data: Vec::new(),
                records: Vec::new(),
            });
        encode(&mut group.data);
        group.records.push((group.data.len(), self.count));
        self.count += 1;
    }

    /// Appends an encoded record.
    pub fn push(&mut self, topic: &Arc<Topic>, partition: u32, encoded: &[u8]) {
        self.push_with(topic, partition, |buf| buf.extend_from_slice(encoded));
    }

    /// Also writes, in the same commit, the end offset `partition` of `topic` reaches to
    /// the meta key `key` (used to tie a changelog's offset to the state it describes).
    pub fn mark_end(&mut self, topic: &Topic, partition: u32, key: Vec<u8>) {
        self.markers.push(((topic.meta.id, partition), key));
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn len(&self) -> usize {
        self.count
    }
}

/// The embedded log of one server.
pub struct Log {
    db: Arc<Db>,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    signal: Arc<Signal>,
}

impl Log {
    /// Opens the log in `db`, loading every topic and its partition offsets.
    pub fn open(db: Arc<Db>) -> Result<Self, LogError> {
        let mut topics = BTreeMap::new();
        for item in db.rocks().prefix_iterator_cf(db.cf(Cf::Meta), TOPIC_META) {
            let (k, v) = item?;
            if !k.starts_with(TOPIC_META) {
                break;
            }
            let meta: TopicMeta = serde_json::from_slice(&v).map_err(|e| StateError::Corrupt {
                what: "topic metadata",
                detail: e.to_string(),
            })?;
            let topic = Topic::new(meta);
            for p in 0..topic.meta.partitions {
                load_offsets(&db, &topic, p)?;
            }
            topics.insert(topic.meta.name.clone(), Arc::new(topic));
        }
        Ok(Log {
            db,
            topics: RwLock::new(topics),
            signal: Arc::new(Signal::default()),
        })
    }

    pub fn db(&self) -> &Arc<Db> {
        &self.db
    }

    /// Wakes waiters when records are appended.
    pub fn signal(&self) -> &Arc<Signal> {
        &self.signal
    }

    /// Creates a topic.
    pub fn create_topic(&self, name: &str, config: &TopicConfig) -> Result<Arc<Topic>, LogError> {
        crate::model::spec::check_name("topic", name)
            .map_err(|e| LogError::Invalid(e.to_string()))?;
        if config.partitions == 0 || config.partitions > PARTITIONS_MAX {
            return Err(LogError::Invalid(format!(
                "partitions = {} must be 1 to {PARTITIONS_MAX}",
                config.partitions
            )));
        }
        let mut topics = self.topics.write().expect("topics lock");
        if topics.contains_key(name) {
            return Err(LogError::TopicExists(name.to_string()));
        }
        let id = match self.db.get(Cf::Meta, NEXT_TOPIC_ID)? {
            Some(v) => {
                u32::from_be_bytes(v.as_slice().try_into().map_err(|_| StateError::Corrupt {
                    what: "topic id counter",
                    detail: format!("{} bytes", v.len()),
                })?)
            }
            None => 1,
        };
        let meta = TopicMeta {
            name: name.to_string(),
            id,
            partitions: config.partitions,
            retention_ms: config.retention_ms,
            retention_bytes: config.retention_bytes,
            created_ms: now_ms(),
        };
        let mut wb = WriteBatch::default();
        let meta_cf = self.db.cf(Cf::Meta);
        wb.put_cf(
            meta_cf,
            meta_key(name),
            serde_json::to_vec(&meta).expect("topic metadata serializes"),
        );
        wb.put_cf(meta_cf, NEXT_TOPIC_ID, (id + 1).to_be_bytes());
        self.db.write(wb)?;
        let topic = Arc::new(Topic::new(meta));
        topics.insert(name.to_string(), Arc::clone(&topic));
        Ok(topic)
    }

    /// The topic `name`, created with `config` if it does not exist.
    pub fn ensure_topic(&self, name: &str, config: &TopicConfig) -> Result<Arc<Topic>, LogError> {
        match self.create_topic(name, config) {
            Err(LogError::TopicExists(_)) => self.topic(name),
            other => other,
        }
    }

    pub fn topic(&self, name: &str) -> Result<Arc<Topic>, LogError> {
        self.topics
            .read()
            .expect("topics lock")
            .get(name)
            .cloned()
            .ok_or_else(|| LogError::NoSuchTopic(name.to_string()))
    }

    /// Every topic, by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics
            .read()
            .expect("topics lock")
            .values()
            .cloned()
            .collect()
    }

    /// Deletes a topic and all its records.
    pub fn delete_topic(&self, name: &str) -> Result<(), LogError> {
        let mut topics = self.topics.write().expect("topics lock");
        let topic = topics
            .get(name)
            .cloned()
            .ok_or_else(|| LogError::NoSuchTopic(name.to_string()))?;
        let mut wb = WriteBatch::default();
        wb.delete_cf(self.db.cf(Cf::Meta), meta_key(name));
        wb.delete_range_cf(
            self.db.cf(Cf::Log),
            topic.meta.id.to_be_bytes(),
            (topic.meta.id + 1).to_be_bytes(),
        );
        self.db.write(wb)?;
        topics.remove(name);
        Ok(())
    }

    /// The partition of a produced record: explicit, by key (Kafka's partitioner), or
    /// round-robin for keyless records.
    pub fn partition_for(
        &self,
        topic: &Topic,
        key: Option<&[u8]>,
        explicit: Option<u32>,
    ) -> Result<u32, LogError> {
        let n = topic.partition_count();
        match (explicit, key) {
            (Some(p), _) if p >= n => Err(LogError::NoSuchPartition {
                topic: topic.meta.name.clone(),
                partition: p,
                partitions: n,
            }),
            (Some(p), _) => Ok(p),
            (None, Some(k)) => Ok(partition_for_key(k, n)),
            (None, None) => Ok(topic.next_keyless.fetch_add(1, Ordering::Relaxed) % n),
        }
    }

    /// Appends records from a producer; returns `(partition, offset)` of each.
    pub fn produce(
        &self,
        topic: &Arc<Topic>,
        records: &[(Record, Option<u32>)],
    ) -> Result<Vec<(u32, u64)>, LogError> {
        let now = now_ms();
        let mut appends = Appends::default();
        for (r, explicit) in records {
            let p = self.partition_for(topic, r.key.as_deref(), *explicit)?;
            appends.push(topic, p, &codec::encode_record(r, now));
        }
        self.commit_batch(WriteBatch::default(), appends)
    }

    /// Writes `batch` (a task's state, positions...) together with `appends`, atomically,
    /// then makes the appended records visible. Returns where each record went.
    pub fn commit(&self, commit: Commit, appends: Appends) -> Result<Vec<(u32, u64)>, LogError> {
        self.commit_batch(commit.into_batch(), appends)
    }

    fn commit_batch(
        &self,
        mut batch: WriteBatch,
        appends: Appends,
    ) -> Result<Vec<(u32, u64)>, LogError> {
        let mut ranges = Vec::with_capacity(appends.groups.len());
        let mut placed = vec![(0u32, 0u64); appends.count];
        let cf = self.db.cf(Cf::Log);
        for ((id, p), group) in &appends.groups {
            let start = {
                let mut a = group.topic.partitions[*p as usize]
                    .assigner
                    .lock()
                    .expect("assigner lock");
                let start = a.next;
                a.next += group.records.len() as u64;
                a.inflight.insert(start, group.records.len() as u64);
                start
            };
            // Sequential keys per partition: RocksDB's memtable inserts them cheaply.
            let mut from = 0;
            for (n, (end, i)) in group.records.iter().enumerate() {
                let offset = start + n as u64;
                batch.put_cf(cf, record_key(*id, *p, offset), &group.data[from..*end]);
                placed[*i] = (*p, offset);
                from = *end;
            }
            ranges.push((Arc::clone(&group.topic), *p, start, group.data.len() as u64));
            let end = start + group.records.len() as u64;
            for (_, key) in appends.markers.iter().filter(|(g, _)| *g == (*id, *p)) {
                batch.put_cf(self.db.cf(Cf::Meta), key, end.to_be_bytes());
            }
        }
        let written = self.db.write(batch);
        // Published either way: a failed write leaves a hole, which readers skip.
        for (topic, p, start, bytes) in &ranges {
            let part = &topic.partitions[*p as usize];
            let mut a = part.assigner.lock().expect("assigner lock");
            a.inflight.remove(start);
            let published = a.inflight.keys().next().copied().unwrap_or(a.next);
            part.end.fetch_max(published, Ordering::AcqRel);
            if written.is_ok() {
                part.bytes.fetch_add(*bytes, Ordering::Relaxed);
            }
        }
        written?;
        if !ranges.is_empty() {
            self.signal.notify();
        }
        Ok(placed)
    }

    fn iterate<'a>(
        &'a self,
        topic: &Topic,
        partition: u32,
        from: u64,
    ) -> Result<rocksdb::DBRawIteratorWithThreadMode<'a, rocksdb::DB>, LogError> {
        if partition >= topic.partition_count() {
            return Err(LogError::NoSuchPartition {
                topic: topic.meta.name.clone(),
                partition,
                partitions: topic.partition_count(),
            });
        }
        let end = topic.end_offset(partition);
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(record_key(topic.meta.id, partition, end).to_vec());
        let mut it = self.db.rocks().raw_iterator_cf_opt(self.db.cf(Cf::Log), ro);
        it.seek(record_key(topic.meta.id, partition, from));
        Ok(it)
    }

    /// Up to `max` records of a partition from offset `from` (gaps left by retention are
    /// skipped), with their offsets.
    pub fn read(
        &self,
        topic: &Topic,
        partition: u32,
        from: u64,
        max: usize,
    ) -> Result<Vec<(u64, Record, i64)>, LogError> {
        let mut it = self.iterate(topic, partition, from)?;
        let mut out = Vec::new();
        while out.len() < max {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            let d = codec::decode(v)?;
            out.push((offset_of(k)?, d.to_record(), d.append_ms));
            it.next();
        }
        it.status()?;
        Ok(out)
    }

    /// Up to `max` records of a partition from offset `from`, as a task's flat batch.
    pub fn read_batch(
        &self,
        topic: &Topic,
        partition: u32,
        from: u64,
        max: usize,
    ) -> Result<SourceBatch, LogError> {
        let mut it = self.iterate(topic, partition, from)?;
        let mut events = batch::empty();
        let mut offsets = Vec::new();
        while offsets.len() < max {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            codec::decode(v)?.push_to(&mut events);
            offsets.push(offset_of(k)?);
            it.next();
        }
        it.status()?;
        Ok(SourceBatch {
            events,
            offsets,
            source: 0,
        })
    }

    /// Deletes records past their topic's retention; returns how many went.
    pub fn apply_retention(&self, now: i64) -> Result<u64, LogError> {
        let mut deleted = 0;
        for topic in self.topics() {
            for p in 0..topic.partition_count() {
                deleted += self.retain_partition(&topic, p, now)?;
            }
        }
        Ok(deleted)
    }

    fn retain_partition(&self, topic: &Topic, p: u32, now: i64) -> Result<u64, LogError> {
        let part = &topic.partitions[p as usize];
        let start = part.start.load(Ordering::Acquire);
        let mut it = self.iterate(topic, p, start)?;
        let mut cutoff = start;
        let mut freed = 0u64;
        let mut bytes = part.bytes.load(Ordering::Relaxed);
        let mut count = 0u64;
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            let too_old = topic
                .meta
                .retention_ms
                .is_some_and(|ms| codec::decode(v).is_ok_and(|d| d.append_ms < now - ms as i64));
            let too_big = topic.meta.retention_bytes.is_some_and(|max| bytes > max);
            if !(too_old || too_big) {
                break;
            }
            cutoff = offset_of(k)? + 1;
            freed += v.len() as u64;
            bytes = bytes.saturating_sub(v.len() as u64);
            count += 1;
            it.next();
        }
        it.status()?;
        if cutoff > start {
            let mut wb = WriteBatch::default();
            wb.delete_range_cf(
                self.db.cf(Cf::Log),
                record_key(topic.meta.id, p, start),
                record_key(topic.meta.id, p, cutoff),
            );
            self.db.write(wb)?;
            part.start.store(cutoff, Ordering::Release);
            part.bytes.fetch_sub(
                freed.min(part.bytes.load(Ordering::Relaxed)),
                Ordering::Relaxed,
            );
        }
        Ok(count)
    }
}

fn meta_key(name: &str) -> Vec<u8> {
    [TOPIC_META, name.as_bytes()].concat()
}

/// Finds a partition's first and next offsets (and its size, when retention needs it).
fn load_offsets(db: &Db, topic: &Topic, p: u32) -> Result<(), LogError> {
    let id = topic.meta.id;
    let lower = record_key(id, p, 0);
    let upper = keys::prefix_end(&lower[..8]).expect("partition prefixes are not all 0xff");
    let cf = db.cf(Cf::Log);
    let mut ro = ReadOptions::default();
    ro.set_iterate_lower_bound(lower.to_vec());
    ro.set_iterate_upper_bound(upper.clone());
    let part = &topic.partitions[p as usize];
    let mut it = db.rocks().raw_iterator_cf_opt(cf, ro);
    it.seek_to_last();
    if let Some(k) = it.key() {
        let end = offset_of(k)? + 1;
        part.end.store(end, Ordering::Release);
        part.assigner.lock().expect("assigner lock").next = end;
        it.seek_to_first();
        if let Some(k) = it.key() {
            part.start.store(offset_of(k)?, Ordering::Release);
        }
        if topic.meta.retention_bytes.is_some() {
            let mut ro = ReadOptions::default();
            ro.set_iterate_upper_bound(upper);
            let bytes: u64 = db
                .rocks()
                .iterator_cf_opt(
                    cf,
                    ro,
                    IteratorMode::From(&lower, rocksdb::Direction::Forward),
                )
                .map(|item| item.map(|(_, v)| v.len() as u64))
                .sum::<Result<u64, _>>()?;
            part.bytes.store(bytes, Ordering::Relaxed);
        }
    }
    it.status()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::DbOptions;

    fn log() -> (tempfile::TempDir, Log) {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(dir.path(), &DbOptions::default()).unwrap());
        (dir, Log::open(db).unwrap())
    }

    fn rec(key: Option<&str>, value: &str) -> (Record, Option<u32>) {
        (
            Record {
                key: key.map(|k| k.as_bytes().to_vec()),
                value: value.as_bytes().to_vec(),
                timestamp: 1,
                headers: vec![],
            },
            None,
        )
    }

    #[test]
    fn produce_read_and_reopen() {
        let (dir, log) = log();
        let t = log
            .create_topic(
                "lines",
                &TopicConfig {
                    partitions: 3,
                    ..TopicConfig::default()
                },
            )
            .unwrap();
        let placed = log
            .produce(
                &t,
                &[
                    rec(Some("a"), "1"),
                    rec(Some("a"), "2"),
                    rec(None, "x"),
                    rec(None, "y"),
                ],
            )
            .unwrap();
        // Same key, same partition, consecutive offsets.
        assert_eq!(placed[0].0, placed[1].0);
        assert_eq!(placed[1].1, placed[0].1 + 1);
        // Keyless records go round-robin.
        assert_ne!(placed[2].0, placed[3].0);
        let p = placed[0].0;
        let got = log.read(&t, p, 0, 10).unwrap();
        assert!(
            got.iter()
                .any(|(o, r, _)| *o == placed[1].1 && r.value == b"2")
        );
        assert!(matches!(
            log.read(&t, 7, 0, 1),
            Err(LogError::NoSuchPartition { .. })
        ));
        let ends: Vec<u64> = (0..3).map(|p| t.end_offset(p)).collect();
        drop(t);
        let db = Arc::clone(log.db());
        drop(log);
        let reopened = Log::open(db).unwrap();
        let t = reopened.topic("lines").unwrap();
        assert_eq!((0..3).map(|p| t.end_offset(p)).collect::<Vec<_>>(), ends);
        drop(dir);
    }

    #[test]
    fn explicit_partitions_are_checked() {
        let (_dir, log) = log();
        let t = log
            .create_topic(
                "t",
                &TopicConfig {
                    partitions: 2,
                    ..TopicConfig::default()
                },
            )
            .unwrap();
        let err = log.produce(&t, &[(rec(None, "v").0, Some(5))]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "topic \"t\" has 2 partition(s); partition 5 does not exist"
        );
        assert_eq!(
            log.produce(&t, &[(rec(None, "v").0, Some(1))]).unwrap(),
            vec![(1, 0)]
        );
    }

    #[test]
    fn topics_are_created_checked_and_deleted() {
        let (_dir, log) = log();
        log.create_topic("a", &TopicConfig::default()).unwrap();
        assert!(matches!(
            log.create_topic("a", &TopicConfig::default()),
            Err(LogError::TopicExists(_))
        ));
        assert!(matches!(
            log.create_topic("bad name", &TopicConfig::default()),
            Err(LogError::Invalid(_))
        ));
        assert!(matches!(
            log.create_topic(
                "z",
                &TopicConfig {
                    partitions: 0,
                    ..TopicConfig::default()
                }
            ),
            Err(LogError::Invalid(_))
        ));
        let t = log.topic("a").unwrap();
        log.produce(&t, &[rec(None, "v")]).unwrap();
        log.delete_topic("a").unwrap();
        assert!(matches!(log.topic("a"), Err(LogError::NoSuchTopic(_))));
        // A new topic of the same name starts empty.
        let t = log.create_topic("a", &TopicConfig::default()).unwrap();
        assert_eq!(t.end_offset(0), 0);
        assert!(log.read(&t, 0, 0, 10).unwrap().is_empty());
    }

    #[test]
    fn retention_drops_old_and_excess_records() {
        let (_dir, log) = log();
        let t = log
            .create_topic(
                "r",
                &TopicConfig {
                    partitions: 1,
                    retention_ms: Some(1000),
                    retention_bytes: None,
                },
            )
            .unwrap();
        log.produce(&t, &[rec(None, "a"), rec(None, "b")]).unwrap();
        assert_eq!(log.apply_retention(now_ms()).unwrap(), 0);
        assert_eq!(log.apply_retention(now_ms() + 5000).unwrap(), 2);
        assert_eq!(t.start_offset(0), 2);
        assert!(log.read(&t, 0, 0, 10).unwrap().is_empty());
        // New records keep counting up.
        assert_eq!(log.produce(&t, &[rec(None, "c")]).unwrap(), vec![(0, 2)]);

        let s = log
            .create_topic(
                "s",
                &TopicConfig {
                    partitions: 1,
                    retention_ms: None,
                    retention_bytes: Some(100),
                },
            )
            .unwrap();
        let many: Vec<_> = (0..20).map(|i| rec(None, &format!("value-{i}"))).collect();
        log.produce(&s, &many).unwrap();
        assert!(log.apply_retention(now_ms()).unwrap() > 0);
        assert!(s.bytes(0) <= 100);
        let left = log.read(&s, 0, 0, 100).unwrap();
        assert_eq!(left.last().unwrap().1.value, b"value-19");
        assert!(left.len() < 20);
    }

    #[test]
    fn read_batch_gives_flat_events_with_offsets() {
        let (_dir, log) = log();
        let t = log.create_topic("b", &TopicConfig::default()).unwrap();
        log.produce(&t, &[rec(Some("k"), "1"), rec(None, "2"), rec(None, "3")])
            .unwrap();
        let b = log.read_batch(&t, 0, 1, 10).unwrap();
        assert_eq!(b.offsets, vec![1, 2]);
        assert_eq!(batch::record(&b.events, 0).value, b"2");
    }
}
