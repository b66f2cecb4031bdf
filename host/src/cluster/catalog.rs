//! The cluster catalog: a compacted topic every server writes its changes to and follows
//! from the beginning, so an upload or a pipeline created on any server reaches all.
//!
//! Records (key → value; header `eddy.server` names the writer):
//! - `chunk/<digest>/<index>` → up to [`CHUNK`] bytes of an operator binary
//! - `operator/<name>/<version>` → the version's metadata and chunk count (after its
//!   chunks); a tombstone when deleted
//! - `pipeline/<name>` → the pipeline record; a tombstone when deleted
//! - `tasks/<pipeline>/<server>` → the partitions that server runs now
//! - `restored/<pipeline>` → a tag of the pipeline's last restore into Kafka: the other
//!   servers drop their local state of it, which no longer matches Kafka
//! - `chunk/savepoint.<id>/<index>` and `savepoint/<id>` → a shared pipeline's savepoint
//!   archive in chunks, then its chunk count; tombstones when deleted
//! - `sync/<server>` → a marker the server waits to read back (see [`Catalog::sync`])
//! - `hold/<pipeline>` → a hold of a running shared pipeline for a savepoint (or its
//!   release), and `held/<pipeline>/<server>` → the partitions that server holds
//! - `upgrade/<pipeline>/<server>` → that server's tasks in the pipeline's current hot
//!   upgrade (for the server deciding it)
//! - `clock/<pipeline>/<stage>/<server>` → the watermarks of that server's tasks of a
//!   stage, for idle partitions elsewhere to follow (pipelines with an `idle_timeout`)

use crate::kafka::{Connection, KafkaError, REQUEST_TIMEOUT, ensure_topic};
use crate::model::{Held, Hold, PipelineRecord, ProbationReport};
use crate::record::now_ms;
use crate::registry::OperatorVersion;
use crate::task::TaskClock;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Operator binaries travel in pieces below Kafka's default 1 MB message limit.
const CHUNK: usize = 512 << 10;
const SERVER_HEADER: &str = "eddy.server";

/// A change another server made, for this one to apply.
pub enum CatalogEvent {
    Operator {
        version: OperatorVersion,
        bytes: Vec<u8>,
    },
    OperatorDeleted {
        name: String,
        version: u32,
    },
    Pipeline {
        name: String,
        /// `None` when the pipeline was deleted.
        record: Option<Box<PipelineRecord>>,
    },
    /// A savepoint of a shared pipeline, as the archive `eddy savepoint download` gives.
    Savepoint {
        id: String,
        archive: Vec<u8>,
    },
    SavepointDeleted {
        id: String,
    },
    /// A shared pipeline was restored from a savepoint (`tag` names that restore).
    Restored {
        pipeline: String,
        tag: String,
    },
    /// A hold of a shared pipeline for a savepoint, or its release.
    Hold {
        pipeline: String,
        hold: Hold,
    },
    /// The partitions another server holds.
    Held {
        pipeline: String,
        server: String,
        held: Held,
    },
    /// Another server's tasks in a shared pipeline's hot upgrade.
    Probation {
        pipeline: String,
        server: String,
        report: ProbationReport,
    },
    /// Where another server's tasks of a pipeline stage stood at `at_ms`.
    StageClock {
        pipeline: String,
        stage: u32,
        server: String,
        at_ms: i64,
        tasks: Vec<TaskClock>,
    },
}

/// What applies catalog changes to this server (the controller).
pub trait CatalogApplier: Send + Sync {
    fn apply(&self, event: CatalogEvent);
}

#[derive(Serialize, Deserialize)]
struct VersionEntry {
    version: OperatorVersion,
    chunks: u32,
}

#[derive(Serialize, Deserialize)]
struct SavepointEntry {
    chunks: u32,
}

fn savepoint_chunk_key(id: &str, index: usize) -> String {
    format!("chunk/savepoint.{id}/{index}")
}

/// Chunk counts of the savepoints in the catalog, so a deletion can drop their chunks.
type SavepointChunks = Arc<Mutex<HashMap<String, u32>>>;

#[derive(Serialize, Deserialize)]
struct ClockEntry {
    at_ms: i64,
    tasks: Vec<TaskClock>,
}

#[derive(Serialize, Deserialize)]
struct TasksEntry {
    partitions: Vec<u32>,
    at_ms: i64,
}

pub struct Catalog {
    conn: Connection,
    topic: String,
    server: String,
    producer: FutureProducer,
    stop: Arc<AtomicBool>,
    follower: Mutex<Option<JoinHandle<()>>>,
    /// The last sync marker of this server the follower reached.
    synced: Arc<AtomicU64>,
    /// Per pipeline, per server: the partitions it last said it runs, and when.
    owners: Arc<Mutex<BTreeMap<String, BTreeMap<String, TasksEntry>>>>,
    savepoints: SavepointChunks,
}

impl Catalog {
    /// Connects to the cluster's catalog topic, creating it when missing.
    pub fn open(conn: &Connection, cluster: &str, server: &str) -> Result<Self, KafkaError> {
        let topic = super::catalog_topic(cluster);
        ensure_topic(conn, &topic, 1, true)?;
        let producer: FutureProducer = conn
            .config(&[
                ("enable.idempotence", "true"),
                ("linger.ms", "0"),
                ("message.max.bytes", "2000000"),
            ])
            .create()
            .map_err(|e| conn.error(e))?;
        Ok(Catalog {
            conn: conn.clone(),
            topic,
            server: server.to_string(),
            producer,
            stop: Arc::new(AtomicBool::new(false)),
            follower: Mutex::new(None),
            synced: Arc::default(),
            owners: Arc::default(),
            savepoints: Arc::default(),
        })
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    /// Starts following the catalog from its beginning on a thread of its own; every
    /// change another server wrote goes to `applier`.
    pub fn follow(&self, applier: Arc<dyn CatalogApplier>) -> Result<(), KafkaError> {
        let consumer: BaseConsumer = self
            .conn
            .config(&[
                ("group.id", &format!("{}.follower", self.topic)),
                ("enable.auto.commit", "false"),
                ("enable.partition.eof", "false"),
                ("fetch.message.max.bytes", "2000000"),
                ("fetch.wait.max.ms", "50"),
            ])
            .create()
            .map_err(|e| self.conn.error(e))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, 0, Offset::Beginning)
            .map_err(|e| self.conn.error(e))?;
        consumer.assign(&tpl).map_err(|e| self.conn.error(e))?;
        // The history up to this marker is applied at once, newest pipeline records
        // only: a restarted server does not replay old starts and stops.
        let nonce = self.marker()?;
        let mut follower = Follower {
            backlog: Some((nonce, Vec::new())),
            server: self.server.clone(),
            synced: Arc::clone(&self.synced),
            owners: Arc::clone(&self.owners),
            chunks: HashMap::new(),
            savepoints: Arc::clone(&self.savepoints),
            applier,
        };
        let stop = Arc::clone(&self.stop);
        let thread = std::thread::Builder::new()
            .name("eddy-catalog".into())
            .spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    match consumer.poll(Duration::from_millis(100)) {
                        Some(Ok(m)) => follower.take(&m),
                        Some(Err(e)) => tracing::warn!("cluster catalog: {e}"),
                        None => {}
                    }
                }
            })
            .map_err(|e| self.conn.error(format!("cannot start a thread: {e}")))?;
        *self.follower.lock().expect("follower lock") = Some(thread);
        Ok(())
    }

    /// Waits until this server applied everything in the catalog now: a call after it
    /// sees what any server wrote before. It writes a marker and waits for the follower
    /// to reach it (one partition, one order), which needs nothing of the broker's
    /// watermarks (Tansu reports a high watermark inside a multi-record batch).
    pub fn sync(&self) -> Result<(), KafkaError> {
        let nonce = self.marker()?;
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        while self.synced.load(Ordering::Acquire) != nonce {
            if Instant::now() > deadline {
                return Err(self.conn.error(format!(
                    "this server has not caught up with the cluster catalog within {REQUEST_TIMEOUT:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    }

    /// Writes a sync marker; returns its nonce.
    fn marker(&self) -> Result<u64, KafkaError> {
        let nonce = rand::random::<u64>() | 1;
        self.send(vec![(
            format!("sync/{}", self.server),
            Some(nonce.to_be_bytes().to_vec()),
        )])?;
        Ok(nonce)
    }

    /// Shares an operator version (its binary in chunks, then its metadata).
    pub fn publish_operator(&self, v: &OperatorVersion, bytes: &[u8]) -> Result<(), KafkaError> {
        let mut records = Vec::new();
        for (i, chunk) in bytes.chunks(CHUNK).enumerate() {
            records.push((format!("chunk/{}/{i}", v.digest), Some(chunk.to_vec())));
        }
        let entry = VersionEntry {
            version: v.clone(),
            chunks: bytes.len().div_ceil(CHUNK) as u32,
        };
        records.push((
            format!("operator/{}/{}", v.name, v.version),
            Some(serde_json::to_vec(&entry).expect("serializes")),
        ));
        self.send(records)
    }

    pub fn publish_operator_deleted(&self, name: &str, version: u32) -> Result<(), KafkaError> {
        self.send(vec![(format!("operator/{name}/{version}"), None)])
    }

    /// Shares a savepoint's archive (in chunks, then its record).
    pub fn publish_savepoint(&self, id: &str, archive: &[u8]) -> Result<(), KafkaError> {
        let mut records: Vec<(String, Option<Vec<u8>>)> = archive
            .chunks(CHUNK)
            .enumerate()
            .map(|(i, chunk)| (savepoint_chunk_key(id, i), Some(chunk.to_vec())))
            .collect();
        let chunks = archive.len().div_ceil(CHUNK) as u32;
        let entry = SavepointEntry { chunks };
        records.push((
            format!("savepoint/{id}"),
            Some(serde_json::to_vec(&entry).expect("serializes")),
        ));
        self.send(records)?;
        self.savepoints
            .lock()
            .expect("savepoints lock")
            .insert(id.to_string(), chunks);
        Ok(())
    }

    /// Tells the other servers that `pipeline` was restored into Kafka.
    pub fn publish_restored(&self, pipeline: &str, tag: &str) -> Result<(), KafkaError> {
        self.send(vec![(
            format!("restored/{pipeline}"),
            Some(tag.as_bytes().to_vec()),
        )])
    }

    /// Removes a savepoint from the catalog: its record and its chunks (tombstones, which
    /// compaction then drops).
    pub fn publish_savepoint_deleted(&self, id: &str) -> Result<(), KafkaError> {
        let chunks = self
            .savepoints
            .lock()
            .expect("savepoints lock")
            .remove(id)
            .unwrap_or(0);
        let mut records: Vec<(String, Option<Vec<u8>>)> = (0..chunks as usize)
            .map(|i| (savepoint_chunk_key(id, i), None))
            .collect();
        records.push((format!("savepoint/{id}"), None));
        self.send(records)
    }

    /// Shares a pipeline's record (`None`: deleted).
    pub fn publish_pipeline(
        &self,
        name: &str,
        record: Option<&PipelineRecord>,
    ) -> Result<(), KafkaError> {
        let value = record.map(|r| serde_json::to_vec(r).expect("serializes"));
        self.send(vec![(format!("pipeline/{name}"), value)])
    }

    /// Tells the cluster which partitions of `pipeline` this server runs now.
    pub fn publish_tasks(&self, pipeline: &str, partitions: &[u32]) -> Result<(), KafkaError> {
        let entry = TasksEntry {
            partitions: partitions.to_vec(),
            at_ms: now_ms(),
        };
        self.send(vec![(
            format!("tasks/{pipeline}/{}", self.server),
            Some(serde_json::to_vec(&entry).expect("serializes")),
        )])
    }

    /// Tells the cluster where this server's tasks of a pipeline stage stand.
    pub fn publish_clock(
        &self,
        pipeline: &str,
        stage: u32,
        tasks: &[TaskClock],
    ) -> Result<(), KafkaError> {
        let entry = ClockEntry {
            at_ms: now_ms(),
            tasks: tasks.to_vec(),
        };
        self.send(vec![(
            format!("clock/{pipeline}/{stage}/{}", self.server),
            Some(serde_json::to_vec(&entry).expect("serializes")),
        )])
    }

    /// Holds (or releases) a shared pipeline on every server.
    pub fn publish_hold(&self, pipeline: &str, hold: &Hold) -> Result<(), KafkaError> {
        self.send(vec![(
            format!("hold/{pipeline}"),
            Some(serde_json::to_vec(hold).expect("serializes")),
        )])
    }

    /// Tells the cluster which partitions of a held pipeline this server holds.
    pub fn publish_held(&self, pipeline: &str, held: &Held) -> Result<(), KafkaError> {
        self.send(vec![(
            format!("held/{pipeline}/{}", self.server),
            Some(serde_json::to_vec(held).expect("serializes")),
        )])
    }

    /// Tells the cluster how this server's tasks fare in a shared pipeline's upgrade.
    pub fn publish_probation(
        &self,
        pipeline: &str,
        report: &ProbationReport,
    ) -> Result<(), KafkaError> {
        self.send(vec![(
            format!("upgrade/{pipeline}/{}", self.server),
            Some(serde_json::to_vec(report).expect("serializes")),
        )])
    }

    /// Whether the follower has applied the catalog's history up to its start (the
    /// backlog): restores and stops made while this server was away included.
    pub fn caught_up(&self) -> bool {
        self.synced.load(Ordering::Acquire) != 0
    }

    /// Whether [`Catalog::shutdown`] was called.
    pub fn is_shut_down(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Which server runs each partition of `pipeline`, by the newest claims.
    pub fn owners(&self, pipeline: &str) -> BTreeMap<u32, String> {
        let owners = self.owners.lock().expect("owners lock");
        let mut newest: BTreeMap<u32, (i64, String)> = BTreeMap::new();
        for (server, entry) in owners.get(pipeline).into_iter().flatten() {
            for &p in &entry.partitions {
                if newest.get(&p).is_none_or(|(at, _)| *at <= entry.at_ms) {
                    newest.insert(p, (entry.at_ms, server.clone()));
                }
            }
        }
        newest.into_iter().map(|(p, (_, s))| (p, s)).collect()
    }

    /// Writes records in order and waits until the broker has every one.
    fn send(&self, records: Vec<(String, Option<Vec<u8>>)>) -> Result<(), KafkaError> {
        let mut pending = Vec::new();
        for (key, value) in &records {
            let headers = OwnedHeaders::new().insert(Header {
                key: SERVER_HEADER,
                value: Some(self.server.as_bytes()),
            });
            let mut record = FutureRecord::<String, Vec<u8>>::to(&self.topic)
                .key(key)
                .partition(0)
                .headers(headers);
            if let Some(v) = value {
                record = record.payload(v);
            }
            let delivery = self.producer.send_result(record).map_err(|(e, _)| {
                self.conn
                    .error(format!("cannot write the cluster catalog: {e}"))
            })?;
            pending.push(delivery);
        }
        for delivery in pending {
            match futures::executor::block_on(delivery) {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => {
                    return Err(self
                        .conn
                        .error(format!("cannot write the cluster catalog: {e}")));
                }
                Err(_) => return Err(self.conn.error("the catalog producer went away")),
            }
        }
        Ok(())
    }

    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.follower.lock().expect("follower lock").take() {
            let _ = t.join();
        }
    }
}

/// A catalog record read before the start marker: key, value, written by this server.
type Backlogged = (String, Option<Vec<u8>>, bool);

/// The history to apply at start: every operator record, but of each pipeline (and each
/// server's task list) only its newest record, all in the catalog's order.
fn newest_states(backlog: Vec<Backlogged>) -> Vec<Backlogged> {
    let stateful = |k: &str| {
        k.starts_with("pipeline/")
            || k.starts_with("tasks/")
            || k.starts_with("restored/")
            || k.starts_with("clock/")
            || k.starts_with("upgrade/")
            || k.starts_with("hold/")
            || k.starts_with("held/")
    };
    let mut last: HashMap<&str, usize> = HashMap::new();
    for (i, (k, ..)) in backlog.iter().enumerate() {
        if stateful(k) {
            last.insert(k.as_str(), i);
        }
    }
    let keep: Vec<bool> = backlog
        .iter()
        .enumerate()
        .map(|(i, (k, ..))| !stateful(k) || last.get(k.as_str()) == Some(&i))
        .collect();
    backlog
        .into_iter()
        .zip(keep)
        .filter_map(|(r, keep)| keep.then_some(r))
        .collect()
}

/// The follower thread's state.
struct Follower {
    /// Until the start marker (its nonce) arrives: the records read so far.
    backlog: Option<(u64, Vec<Backlogged>)>,
    server: String,
    synced: Arc<AtomicU64>,
    owners: Arc<Mutex<BTreeMap<String, BTreeMap<String, TasksEntry>>>>,
    /// Chunks waiting for their operator version record (by digest) or savepoint record
    /// (by `savepoint.<id>`).
    chunks: HashMap<String, BTreeMap<u32, Vec<u8>>>,
    savepoints: SavepointChunks,
    applier: Arc<dyn CatalogApplier>,
}

impl Follower {
    fn take(&mut self, m: &rdkafka::message::BorrowedMessage<'_>) {
        let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
        let origin = m
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == SERVER_HEADER))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        let mine = origin == self.server;
        let value = m.payload();
        if let Some((nonce, backlog)) = &mut self.backlog {
            let start = mine
                && key == format!("sync/{}", self.server)
                && value == Some(nonce.to_be_bytes().as_slice());
            if !start {
                backlog.push((key, value.map(<[u8]>::to_vec), mine));
                return;
            }
            let backlog = self.backlog.take().map(|(_, b)| b).unwrap_or_default();
            for (key, value, mine) in newest_states(backlog) {
                self.apply_logged(&key, value.as_deref(), mine);
            }
        }
        self.apply_logged(&key, value, mine);
    }

    fn apply_logged(&mut self, key: &str, value: Option<&[u8]>, mine: bool) {
        if let Err(e) = self.apply(key, value, mine) {
            tracing::error!(%key, "cannot apply a cluster catalog record: {e}");
        }
    }

    fn apply(&mut self, key: &str, value: Option<&[u8]>, mine: bool) -> Result<(), String> {
        let mut parts = key.splitn(3, '/');
        let (kind, a, b) = (parts.next(), parts.next(), parts.next());
        let event = match (kind, a, b, value) {
            (Some("sync"), _, _, Some(nonce)) if mine => {
                let nonce: [u8; 8] = nonce.try_into().map_err(|_| "bad sync marker")?;
                self.synced
                    .store(u64::from_be_bytes(nonce), Ordering::Release);
                return Ok(());
            }
            (Some("chunk"), Some(digest), Some(index), Some(bytes)) => {
                if !mine {
                    let index: u32 = index.parse().map_err(|_| "bad chunk index")?;
                    self.chunks
                        .entry(digest.to_string())
                        .or_default()
                        .insert(index, bytes.to_vec());
                }
                return Ok(());
            }
            (Some("operator"), Some(_), Some(_), Some(bytes)) => {
                let entry: VersionEntry =
                    serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
                let chunks = self
                    .chunks
                    .remove(&entry.version.digest)
                    .unwrap_or_default();
                if mine {
                    return Ok(());
                }
                if chunks.len() as u32 != entry.chunks {
                    return Err(format!(
                        "operator {}@{}: {} of {} chunks in the catalog",
                        entry.version.name,
                        entry.version.version,
                        chunks.len(),
                        entry.chunks
                    ));
                }
                CatalogEvent::Operator {
                    version: entry.version,
                    bytes: chunks.into_values().flatten().collect(),
                }
            }
            (Some("savepoint"), Some(id), None, Some(bytes)) => {
                let entry: SavepointEntry =
                    serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
                let chunks = self
                    .chunks
                    .remove(&format!("savepoint.{id}"))
                    .unwrap_or_default();
                self.savepoints
                    .lock()
                    .expect("savepoints lock")
                    .insert(id.to_string(), entry.chunks);
                if mine {
                    return Ok(());
                }
                if chunks.len() as u32 != entry.chunks {
                    return Err(format!(
                        "savepoint {id}: {} of {} chunks in the catalog",
                        chunks.len(),
                        entry.chunks
                    ));
                }
                CatalogEvent::Savepoint {
                    id: id.to_string(),
                    archive: chunks.into_values().flatten().collect(),
                }
            }
            (Some("restored"), Some(pipeline), None, Some(tag)) if !mine => {
                CatalogEvent::Restored {
                    pipeline: pipeline.to_string(),
                    tag: String::from_utf8_lossy(tag).into_owned(),
                }
            }
            (Some("savepoint"), Some(id), None, None) => {
                self.savepoints.lock().expect("savepoints lock").remove(id);
                if mine {
                    return Ok(());
                }
                CatalogEvent::SavepointDeleted { id: id.to_string() }
            }
            (Some("operator"), Some(name), Some(version), None) if !mine => {
                CatalogEvent::OperatorDeleted {
                    name: name.to_string(),
                    version: version.parse().map_err(|_| "bad version")?,
                }
            }
            (Some("pipeline"), Some(name), None, value) if !mine => {
                let record = value
                    .map(|v| serde_json::from_slice::<PipelineRecord>(v).map(Box::new))
                    .transpose()
                    .map_err(|e| e.to_string())?;
                CatalogEvent::Pipeline {
                    name: name.to_string(),
                    record,
                }
            }
            (Some("hold"), Some(pipeline), None, Some(v)) if !mine => CatalogEvent::Hold {
                pipeline: pipeline.to_string(),
                hold: serde_json::from_slice(v).map_err(|e| e.to_string())?,
            },
            (Some("held"), Some(pipeline), Some(server), Some(v)) if !mine => CatalogEvent::Held {
                pipeline: pipeline.to_string(),
                server: server.to_string(),
                held: serde_json::from_slice(v).map_err(|e| e.to_string())?,
            },
            (Some("upgrade"), Some(pipeline), Some(server), Some(v)) if !mine => {
                CatalogEvent::Probation {
                    pipeline: pipeline.to_string(),
                    server: server.to_string(),
                    report: serde_json::from_slice(v).map_err(|e| e.to_string())?,
                }
            }
            (Some("clock"), Some(pipeline), Some(rest), Some(v)) if !mine => {
                let (stage, server) = rest.split_once('/').ok_or("bad clock key")?;
                let entry: ClockEntry = serde_json::from_slice(v).map_err(|e| e.to_string())?;
                CatalogEvent::StageClock {
                    pipeline: pipeline.to_string(),
                    stage: stage.parse().map_err(|_| "bad stage")?,
                    server: server.to_string(),
                    at_ms: entry.at_ms,
                    tasks: entry.tasks,
                }
            }
            (Some("tasks"), Some(pipeline), Some(server), value) => {
                let mut owners = self.owners.lock().expect("owners lock");
                let servers = owners.entry(pipeline.to_string()).or_default();
                match value {
                    Some(v) => {
                        let entry: TasksEntry =
                            serde_json::from_slice(v).map_err(|e| e.to_string())?;
                        servers.insert(server.to_string(), entry);
                    }
                    None => {
                        servers.remove(server);
                    }
                }
                return Ok(());
            }
            _ => return Ok(()),
        };
        self.applier.apply(event);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, value: &str) -> Backlogged {
        (key.to_string(), Some(value.as_bytes().to_vec()), false)
    }

    #[test]
    fn the_start_history_keeps_every_operator_record_and_each_pipelines_newest() {
        let backlog = vec![
            rec("chunk/d1/0", "bytes"),
            rec("operator/wc/1", "v1"),
            rec("pipeline/p", "running"),
            rec("tasks/p/a", "[0]"),
            rec("pipeline/p", "stopped"),
            rec("operator/wc/2", "v2"),
            rec("pipeline/q", "running"),
        ];
        let kept: Vec<(String, String)> = newest_states(backlog)
            .into_iter()
            .map(|(k, v, _)| (k, String::from_utf8(v.unwrap()).unwrap()))
            .collect();
        let want = [
            ("chunk/d1/0", "bytes"),
            ("operator/wc/1", "v1"),
            ("tasks/p/a", "[0]"),
            ("pipeline/p", "stopped"),
            ("operator/wc/2", "v2"),
            ("pipeline/q", "running"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(kept, want);
    }

    /// Records what a follower hands to the controller.
    #[derive(Default)]
    struct Seen(Mutex<Vec<String>>);

    impl CatalogApplier for Seen {
        fn apply(&self, event: CatalogEvent) {
            let line = match event {
                CatalogEvent::Savepoint { id, archive } => {
                    format!("savepoint {id} {}", String::from_utf8(archive).unwrap())
                }
                CatalogEvent::SavepointDeleted { id } => format!("deleted {id}"),
                _ => "other".to_string(),
            };
            self.0.lock().unwrap().push(line);
        }
    }

    fn follower(seen: &Arc<Seen>) -> Follower {
        Follower {
            backlog: None,
            server: "me".into(),
            synced: Arc::default(),
            owners: Arc::default(),
            chunks: HashMap::new(),
            savepoints: Arc::default(),
            applier: Arc::clone(seen) as Arc<dyn CatalogApplier>,
        }
    }

    #[test]
    fn a_savepoint_is_assembled_from_its_chunks_and_its_deletion_follows() {
        let seen = Arc::new(Seen::default());
        let mut f = follower(&seen);
        let entry = |n: u32| serde_json::to_vec(&SavepointEntry { chunks: n }).unwrap();
        // Chunks arrive before their record, in order; other savepoints' chunks interleave.
        f.apply("chunk/savepoint.sp-1/0", Some(b"ab"), false)
            .unwrap();
        f.apply("chunk/savepoint.sp-2/0", Some(b"zz"), false)
            .unwrap();
        f.apply("chunk/savepoint.sp-1/1", Some(b"cd"), false)
            .unwrap();
        f.apply("savepoint/sp-1", Some(&entry(2)), false).unwrap();
        assert_eq!(f.savepoints.lock().unwrap().get("sp-1"), Some(&2));
        // A record whose chunks are missing is refused, not applied half.
        assert!(f.apply("savepoint/sp-3", Some(&entry(1)), false).is_err());
        // This server's own savepoint is already here; its record only counts its chunks.
        f.apply("savepoint/sp-4", Some(&entry(3)), true).unwrap();
        assert_eq!(f.savepoints.lock().unwrap().get("sp-4"), Some(&3));
        f.apply("chunk/savepoint.sp-1/0", None, false).unwrap();
        f.apply("savepoint/sp-1", None, false).unwrap();
        assert_eq!(f.savepoints.lock().unwrap().get("sp-1"), None);
        assert_eq!(
            *seen.0.lock().unwrap(),
            [
                "savepoint sp-1 abcd".to_string(),
                "deleted sp-1".to_string()
            ]
        );
    }
}
