//! Following the cluster catalog: the records other servers wrote become events for
//! this server's controller; at start only the newest state of each pipeline counts.

use super::entries::{
    ClockEntry, SERVER_HEADER, SavepointChunks, SavepointEntry, TasksEntry, VersionEntry,
};
use super::keys::CatalogKey;
use crate::model::{Held, Hold, PipelineRecord, ProbationReport, TaskClock};
use crate::registry::OperatorVersion;
use rdkafka::message::{Headers, Message};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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

/// A catalog record read before the start marker: key, value, written by this server.
type Backlogged = (String, Option<Vec<u8>>, bool);

/// The history to apply at start: every operator record, but of each pipeline (and each
/// server's task list) only its newest record, all in the catalog's order.
fn newest_states(backlog: Vec<Backlogged>) -> Vec<Backlogged> {
    let stateful = |k: &str| k.parse::<CatalogKey>().is_ok_and(|k| k.is_state());
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
pub(super) struct Follower {
    /// Until the start marker (its nonce) arrives: the records read so far.
    pub(super) backlog: Option<(u64, Vec<Backlogged>)>,
    pub(super) server: String,
    pub(super) synced: Arc<AtomicU64>,
    pub(super) owners: Arc<Mutex<BTreeMap<String, BTreeMap<String, TasksEntry>>>>,
    /// Chunks waiting for their operator version record (by digest) or savepoint record
    /// (by `savepoint.<id>`).
    pub(super) chunks: HashMap<String, BTreeMap<u32, Vec<u8>>>,
    pub(super) savepoints: SavepointChunks,
    pub(super) applier: Arc<dyn CatalogApplier>,
}

impl Follower {
    pub(super) fn take(&mut self, m: &rdkafka::message::BorrowedMessage<'_>) {
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
                && key
                    == CatalogKey::Sync {
                        server: self.server.clone(),
                    }
                    .to_string()
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
        // A key this server does not know (a newer server's) is not for it.
        let Ok(key) = key.parse::<CatalogKey>() else {
            return Ok(());
        };
        let event = match (key, value) {
            (CatalogKey::Sync { .. }, Some(nonce)) if mine => {
                let nonce: [u8; 8] = nonce.try_into().map_err(|_| "bad sync marker")?;
                self.synced
                    .store(u64::from_be_bytes(nonce), Ordering::Release);
                return Ok(());
            }
            (CatalogKey::Chunk { owner, index }, Some(bytes)) => {
                if !mine {
                    self.chunks
                        .entry(owner)
                        .or_default()
                        .insert(index, bytes.to_vec());
                }
                return Ok(());
            }
            (CatalogKey::Operator { .. }, Some(bytes)) => {
                let entry: VersionEntry = json(bytes)?;
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
            (CatalogKey::Savepoint { id }, Some(bytes)) => {
                let entry: SavepointEntry = json(bytes)?;
                let chunks = self
                    .chunks
                    .remove(&CatalogKey::savepoint_owner(&id))
                    .unwrap_or_default();
                self.savepoints
                    .lock()
                    .expect("savepoints lock")
                    .insert(id.clone(), entry.chunks);
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
                    id,
                    archive: chunks.into_values().flatten().collect(),
                }
            }
            (CatalogKey::Restored { pipeline }, Some(tag)) if !mine => CatalogEvent::Restored {
                pipeline,
                tag: String::from_utf8_lossy(tag).into_owned(),
            },
            (CatalogKey::Savepoint { id }, None) => {
                self.savepoints.lock().expect("savepoints lock").remove(&id);
                if mine {
                    return Ok(());
                }
                CatalogEvent::SavepointDeleted { id }
            }
            (CatalogKey::Operator { name, version }, None) if !mine => {
                CatalogEvent::OperatorDeleted { name, version }
            }
            (CatalogKey::Pipeline { name }, value) if !mine => {
                let record = value.map(|v| json(v).map(Box::new)).transpose()?;
                CatalogEvent::Pipeline { name, record }
            }
            (CatalogKey::Hold { pipeline }, Some(v)) if !mine => CatalogEvent::Hold {
                pipeline,
                hold: json(v)?,
            },
            (CatalogKey::Held { pipeline, server }, Some(v)) if !mine => CatalogEvent::Held {
                pipeline,
                server,
                held: json(v)?,
            },
            (CatalogKey::Upgrade { pipeline, server }, Some(v)) if !mine => {
                CatalogEvent::Probation {
                    pipeline,
                    server,
                    report: json(v)?,
                }
            }
            (
                CatalogKey::Clock {
                    pipeline,
                    stage,
                    server,
                },
                Some(v),
            ) if !mine => {
                let entry: ClockEntry = json(v)?;
                CatalogEvent::StageClock {
                    pipeline,
                    stage,
                    server,
                    at_ms: entry.at_ms,
                    tasks: entry.tasks,
                }
            }
            (CatalogKey::Tasks { pipeline, server }, value) => {
                let mut owners = self.owners.lock().expect("owners lock");
                let servers = owners.entry(pipeline).or_default();
                match value {
                    Some(v) => {
                        servers.insert(server, json(v)?);
                    }
                    None => {
                        servers.remove(&server);
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

/// A record's JSON value.
fn json<T: serde::de::DeserializeOwned>(v: &[u8]) -> Result<T, String> {
    serde_json::from_slice(v).map_err(|e| e.to_string())
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
