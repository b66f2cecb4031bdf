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

use super::entries::{
    ClockEntry, SERVER_HEADER, SavepointChunks, SavepointEntry, TasksEntry, VersionEntry,
};
use super::follower::{CatalogApplier, Follower};
use super::keys::CatalogKey;
use crate::kafka::{Connection, KafkaError, Quiet, REQUEST_TIMEOUT, ensure_topic_with};
use crate::model::{Held, Hold, PipelineRecord, ProbationReport, TaskClock, TaskProgress};
use crate::record::now_ms;
use crate::registry::OperatorVersion;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Operator binaries travel in pieces below Kafka's default 1 MB message limit.
const CHUNK: usize = 512 << 10;

fn savepoint_chunk_key(id: &str, index: usize) -> String {
    CatalogKey::Chunk {
        owner: CatalogKey::savepoint_owner(id),
        index: index as u32,
    }
    .to_string()
}

pub struct Catalog {
    conn: Connection,
    topic: String,
    server: String,
    producer: FutureProducer<Quiet>,
    stop: Arc<AtomicBool>,
    follower: Mutex<Option<JoinHandle<()>>>,
    /// The last sync marker of this server the follower reached.
    synced: Arc<AtomicU64>,
    /// Per pipeline, per server: the partitions it last said it runs, and when.
    owners: Arc<Mutex<BTreeMap<String, BTreeMap<String, TasksEntry>>>>,
    /// Per pipeline: the partitions this server last said it runs (progress reports
    /// repeat them).
    announced: Mutex<HashMap<String, TasksEntry>>,
    savepoints: SavepointChunks,
    /// Where this server's HTTP API answers, told with its tasks so that other servers
    /// can forward state queries to it.
    url: Option<String>,
}

impl Catalog {
    /// Connects to the cluster's catalog topic, creating it when missing.
    pub fn open(
        conn: &Connection,
        cluster: &str,
        server: &str,
        url: Option<String>,
    ) -> Result<Self, KafkaError> {
        let topic = super::catalog_topic(cluster);
        // Servers repeat some records (tasks every second, clocks): a segment rolls
        // every 10 minutes so that compaction keeps the topic near its live keys.
        let configs = [("cleanup.policy", "compact"), ("segment.ms", "600000")];
        ensure_topic_with(conn, &topic, 1, &configs)?;
        let producer: FutureProducer<Quiet> = conn
            .config(&[
                ("enable.idempotence", "true"),
                ("linger.ms", "0"),
                ("message.max.bytes", "2000000"),
            ])
            .create_with_context(Quiet)
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
            announced: Mutex::default(),
            savepoints: Arc::default(),
            url,
        })
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    /// Starts following the catalog from its beginning on a thread of its own; every
    /// change another server wrote goes to `applier`.
    pub fn follow(&self, applier: Arc<dyn CatalogApplier>) -> Result<(), KafkaError> {
        let consumer: BaseConsumer<Quiet> = self
            .conn
            .config(&[
                ("group.id", &format!("{}.follower", self.topic)),
                ("enable.auto.commit", "false"),
                ("enable.partition.eof", "false"),
                ("fetch.message.max.bytes", "2000000"),
                ("fetch.wait.max.ms", "50"),
            ])
            .create_with_context(Quiet)
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
            CatalogKey::Sync {
                server: self.server.clone(),
            }
            .to_string(),
            Some(nonce.to_be_bytes().to_vec()),
        )])?;
        Ok(nonce)
    }

    /// Shares an operator version (its binary in chunks, then its metadata).
    pub fn publish_operator(&self, v: &OperatorVersion, bytes: &[u8]) -> Result<(), KafkaError> {
        let mut records = Vec::new();
        for (i, chunk) in bytes.chunks(CHUNK).enumerate() {
            records.push((
                CatalogKey::Chunk {
                    owner: v.digest.clone(),
                    index: i as u32,
                }
                .to_string(),
                Some(chunk.to_vec()),
            ));
        }
        let entry = VersionEntry {
            version: v.clone(),
            chunks: bytes.len().div_ceil(CHUNK) as u32,
        };
        records.push((
            CatalogKey::Operator {
                name: v.name.clone(),
                version: v.version,
            }
            .to_string(),
            Some(serde_json::to_vec(&entry).expect("serializes")),
        ));
        self.send(records)
    }

    pub fn publish_operator_deleted(&self, name: &str, version: u32) -> Result<(), KafkaError> {
        self.send(vec![(
            CatalogKey::Operator {
                name: name.to_string(),
                version,
            }
            .to_string(),
            None,
        )])
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
            CatalogKey::Savepoint { id: id.to_string() }.to_string(),
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
            CatalogKey::Restored {
                pipeline: pipeline.to_string(),
            }
            .to_string(),
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
        records.push((
            CatalogKey::Savepoint { id: id.to_string() }.to_string(),
            None,
        ));
        self.send(records)
    }

    /// Shares a pipeline's record (`None`: deleted).
    pub fn publish_pipeline(
        &self,
        name: &str,
        record: Option<&PipelineRecord>,
    ) -> Result<(), KafkaError> {
        let value = record.map(|r| serde_json::to_vec(r).expect("serializes"));
        self.send(vec![(
            CatalogKey::Pipeline {
                name: name.to_string(),
            }
            .to_string(),
            value,
        )])
    }

    /// Tells the cluster which partitions of `pipeline` this server runs now.
    pub fn publish_tasks(&self, pipeline: &str, partitions: &[u32]) -> Result<(), KafkaError> {
        let now = now_ms();
        let entry = TasksEntry {
            partitions: partitions.to_vec(),
            at_ms: now,
            url: self.url.clone(),
            progress: Vec::new(),
            reported_ms: now,
        };
        // Held while sending: a progress report never overtakes a change of partitions.
        // Kept even when the send fails: the next report repeats the newest change.
        let mut announced = self.announced.lock().expect("announced lock");
        announced.insert(pipeline.to_string(), entry.clone());
        self.send_tasks(pipeline, &entry)
    }

    /// Tells the cluster again which partitions of `pipeline` this server runs, with
    /// where their tasks stand (nothing when it announced none).
    pub fn publish_progress(
        &self,
        pipeline: &str,
        progress: &[TaskProgress],
    ) -> Result<(), KafkaError> {
        let announced = self.announced.lock().expect("announced lock");
        let Some(last) = announced.get(pipeline).filter(|e| !e.partitions.is_empty()) else {
            return Ok(());
        };
        let entry = TasksEntry {
            progress: progress.to_vec(),
            reported_ms: now_ms(),
            ..last.clone()
        };
        self.send_tasks(pipeline, &entry)
    }

    fn send_tasks(&self, pipeline: &str, entry: &TasksEntry) -> Result<(), KafkaError> {
        self.send(vec![(
            CatalogKey::Tasks {
                pipeline: pipeline.to_string(),
                server: self.server.clone(),
            }
            .to_string(),
            Some(serde_json::to_vec(entry).expect("serializes")),
        )])
    }

    /// What each server last reported of its tasks of `pipeline`: when it last said
    /// anything of them, and where they stood.
    pub fn reports(&self, pipeline: &str) -> BTreeMap<String, (i64, Vec<TaskProgress>)> {
        let owners = self.owners.lock().expect("owners lock");
        owners
            .get(pipeline)
            .into_iter()
            .flatten()
            .map(|(server, e)| (server.clone(), (e.heard_ms(), e.progress.clone())))
            .collect()
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
            CatalogKey::Clock {
                pipeline: pipeline.to_string(),
                stage,
                server: self.server.clone(),
            }
            .to_string(),
            Some(serde_json::to_vec(&entry).expect("serializes")),
        )])
    }

    /// Holds (or releases) a shared pipeline on every server.
    pub fn publish_hold(&self, pipeline: &str, hold: &Hold) -> Result<(), KafkaError> {
        self.send(vec![(
            CatalogKey::Hold {
                pipeline: pipeline.to_string(),
            }
            .to_string(),
            Some(serde_json::to_vec(hold).expect("serializes")),
        )])
    }

    /// Tells the cluster which partitions of a held pipeline this server holds.
    pub fn publish_held(&self, pipeline: &str, held: &Held) -> Result<(), KafkaError> {
        self.send(vec![(
            CatalogKey::Held {
                pipeline: pipeline.to_string(),
                server: self.server.clone(),
            }
            .to_string(),
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
            CatalogKey::Upgrade {
                pipeline: pipeline.to_string(),
                server: self.server.clone(),
            }
            .to_string(),
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

    /// Where `server`'s HTTP API answers, as it last told with its tasks of `pipeline`.
    pub fn server_url(&self, pipeline: &str, server: &str) -> Option<String> {
        let owners = self.owners.lock().expect("owners lock");
        owners.get(pipeline)?.get(server)?.url.clone()
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
