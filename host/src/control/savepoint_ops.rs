//! Taking savepoints of pipelines and restoring pipelines from them.

use super::controller::{Controller, Entry, stages};
use super::pause::{pause, resume};
use super::savepoints::{FORMAT_VERSION, Manifest, SavedTask, SavepointError};
use super::{ControlError, PipelineState};
use crate::log::{Appends, LogError, TopicConfig};
use crate::record::now_ms;
use crate::state::changelog::{Change, TIMERS_STORE, changelog_topic, marker_key};
use crate::state::savepoint::{SstBuilder, export_pipeline, for_each_entry, ingest};
use crate::state::{
    Cf, StateScope, StoreName, TIMERS, TaskId, TaskPosition, keys, load_position,
    load_upstream_watermarks, put_position, put_upstream_watermarks,
};
use rocksdb::{Options, WriteBatch};
use std::sync::{Arc, mpsc};

/// Changelog records written per commit while restoring.
const CHANGELOG_CHUNK: usize = 50_000;

const JOURNAL: &[u8] = b"restore/";

/// What an upgrade claims a pipeline for.
pub(super) const UPGRADE: &str = "an upgrade";

/// A savepoint being written.
pub(super) struct Export {
    thread: std::thread::JoinHandle<Result<Vec<crate::state::savepoint::StoreFile>, String>>,
    manifest: Manifest,
}

/// What a restore did.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Restored {
    pub savepoint: String,
    pub keys: u64,
    pub millis: u64,
}

impl From<SavepointError> for ControlError {
    fn from(e: SavepointError) -> Self {
        match e {
            SavepointError::NotFound(_) => ControlError::NotFound(e.to_string()),
            SavepointError::Exists(_) => ControlError::Conflict(e.to_string()),
            SavepointError::Corrupt(_) | SavepointError::Incompatible { .. } => {
                ControlError::Invalid(e.to_string())
            }
            SavepointError::Io(_) => ControlError::State(crate::state::StateError::Corrupt {
                what: "savepoint storage",
                detail: e.to_string(),
            }),
        }
    }
}

impl Controller {
    /// Marks a pipeline busy with `what`, or says what it is busy with.
    pub(super) fn claim(&self, name: &str, what: &'static str) -> Result<(), ControlError> {
        let mut pipelines = self.pipelines.lock().expect("pipelines lock");
        let entry = pipelines
            .get_mut(name)
            .ok_or_else(|| ControlError::NotFound(name.to_string()))?;
        if let Some(other) = entry.busy {
            return Err(ControlError::Conflict(format!(
                "pipeline {name:?} is busy with {other}; try again when it is done"
            )));
        }
        entry.busy = Some(what);
        Ok(())
    }

    pub(super) fn release(&self, name: &str) {
        if let Some(e) = self.pipelines.lock().expect("pipelines lock").get_mut(name) {
            e.busy = None;
        }
    }

    /// Takes a savepoint of a pipeline; a running pipeline pauses at one batch boundary
    /// only while a RocksDB snapshot is taken, and goes on while the files are written.
    pub fn savepoint(self: &Arc<Self>, name: &str) -> Result<Manifest, ControlError> {
        self.claim(name, "a savepoint")?;
        // A running shared pipeline is held on every server for the moment.
        let result = self.hold_shared(name).and_then(|hold| {
            let taken = self
                .gather_shared(name)
                .and_then(|()| self.savepoint_claimed(name))
                .map(|(m, _)| m);
            if let Some(id) = hold {
                self.release_hold(name, id);
            }
            taken
        });
        if let Ok(m) = &result {
            self.share_savepoint(m);
        }
        self.release(name);
        result
    }

    /// Takes a savepoint of a pipeline already claimed; also returns how long its tasks
    /// were paused (ms).
    pub(super) fn savepoint_claimed(&self, name: &str) -> Result<(Manifest, f64), ControlError> {
        let (record, tasks) = self.record_and_tasks(name)?;
        let started = std::time::Instant::now();
        self.pause_pipeline(&record, &tasks)?;
        let export = self.start_export(name, &record);
        let paused_ms = started.elapsed().as_secs_f64() * 1e3;
        resume(&self.pool, &tasks);
        Ok((self.finish_export(export?)?, paused_ms))
    }

    /// A pipeline's record, and its tasks when it runs.
    pub(super) fn record_and_tasks(
        &self,
        name: &str,
    ) -> Result<(super::PipelineRecord, Vec<Arc<crate::task::TaskHandle>>), ControlError> {
        let pipelines = self.pipelines.lock().expect("pipelines lock");
        let e: &Entry = pipelines
            .get(name)
            .ok_or_else(|| ControlError::NotFound(name.to_string()))?;
        Ok((
            e.record.clone(),
            if e.record.state == PipelineState::Running {
                e.tasks.clone()
            } else {
                Vec::new()
            },
        ))
    }

    /// Pauses every task of a running pipeline at one batch boundary (no-op when none).
    pub(super) fn pause_pipeline(
        &self,
        record: &super::PipelineRecord,
        tasks: &[Arc<crate::task::TaskHandle>],
    ) -> Result<(), ControlError> {
        if tasks.is_empty() {
            return Ok(());
        }
        let sources: Vec<String> = stages(&record.spec)
            .iter()
            .map(|s| s.source.clone())
            .collect();
        pause(&self.pool, &self.log, tasks, &sources).map_err(ControlError::Conflict)
    }

    /// Takes the snapshot of a savepoint (the pipeline must be paused or stopped) and
    /// starts writing its files; returns once the snapshot exists.
    pub(super) fn start_export(
        &self,
        name: &str,
        record: &super::PipelineRecord,
    ) -> Result<Export, ControlError> {
        let id = self.savepoints.new_id(name, now_ms());
        let dir = self.savepoints.path(&id);
        let mut tasks = Vec::new();
        for stage in stages(&record.spec) {
            let partitions = self.stage_partitions(&record.spec, &stage)?;
            for p in 0..partitions {
                let id = TaskId {
                    pipeline: name.to_string(),
                    stage: stage.index,
                    partition: p,
                };
                let pos = load_position(&self.db, &id)?;
                tasks.push(SavedTask {
                    stage: stage.index,
                    partition: p,
                    offset: pos.offset,
                    watermark: pos.watermark,
                    upstream_watermarks: load_upstream_watermarks(&self.db, &id)?,
                });
            }
        }
        // The snapshot is taken on the export thread (it borrows the database there).
        let (snapped_tx, snapped_rx) = mpsc::channel::<()>();
        let db = Arc::clone(&self.db);
        let (pipeline, export_dir) = (name.to_string(), dir.clone());
        let thread = std::thread::spawn(move || {
            let snapshot = db.rocks().snapshot();
            let _ = snapped_tx.send(());
            std::fs::create_dir_all(&export_dir).map_err(|e| e.to_string())?;
            export_pipeline(&db, &snapshot, &pipeline, &export_dir).map_err(|e| e.to_string())
        });
        let _ = snapped_rx.recv();
        Ok(Export {
            thread,
            manifest: Manifest {
                format_version: FORMAT_VERSION,
                id,
                pipeline: name.to_string(),
                created_ms: now_ms(),
                spec: record.spec.clone(),
                operators: record.operators.clone(),
                tasks,
                stores: Vec::new(),
                keys: 0,
            },
        })
    }

    /// Waits for a savepoint's files and writes its manifest.
    pub(super) fn finish_export(&self, export: Export) -> Result<Manifest, ControlError> {
        let mut manifest = export.manifest;
        let dir = self.savepoints.path(&manifest.id);
        let stores = export
            .thread
            .join()
            .map_err(|_| ControlError::Conflict("the savepoint export panicked".into()))?
            .map_err(|e| {
                let _ = std::fs::remove_dir_all(&dir);
                ControlError::Conflict(format!("savepoint export failed: {e}"))
            })?;
        manifest.keys = stores.iter().map(|s| s.keys).sum();
        manifest.stores = stores;
        self.savepoints.write_manifest(&manifest)?;
        Ok(manifest)
    }

    /// Restores a pipeline that is not running from a savepoint: its state and source
    /// offsets become exactly the savepoint's. The savepoint is checked completely first;
    /// a crash half-way is finished at the next start (a journal records the restore).
    pub fn restore(&self, name: &str, savepoint: &str) -> Result<Restored, ControlError> {
        self.claim(name, "a restore")?;
        let result = self.fence_shared(name).and_then(|shared| {
            let restored = self.restore_claimed(name, savepoint)?;
            if shared {
                self.share_restore(name, &restored.savepoint)?;
            }
            Ok(restored)
        });
        self.release(name);
        result
    }

    fn restore_claimed(&self, name: &str, savepoint: &str) -> Result<Restored, ControlError> {
        let started = std::time::Instant::now();
        let record = {
            let pipelines = self.pipelines.lock().expect("pipelines lock");
            let e = pipelines
                .get(name)
                .ok_or_else(|| ControlError::NotFound(name.to_string()))?;
            if e.record.state == PipelineState::Running {
                return Err(ControlError::Conflict(format!(
                    "pipeline {name:?} is running; stop it before restoring a savepoint"
                )));
            }
            e.record.clone()
        };
        let m = self.savepoints.get(savepoint)?;
        self.check_fit(&m, &record.spec, &record.operators)?;
        self.savepoints.verify(&m)?;
        let mut wb = WriteBatch::default();
        wb.put_cf(self.db.cf(Cf::Meta), journal_key(name), m.id.as_bytes());
        self.db.write(wb)?;
        let keys = self.apply_restore(name, &m)?;
        let mut wb = WriteBatch::default();
        wb.delete_cf(self.db.cf(Cf::Meta), journal_key(name));
        self.db.write(wb)?;
        // The last run's task statuses no longer describe the pipeline.
        if let Some(e) = self.pipelines.lock().expect("pipelines lock").get_mut(name) {
            e.tasks.clear();
        }
        Ok(Restored {
            savepoint: m.id,
            keys,
            millis: started.elapsed().as_millis() as u64,
        })
    }

    /// Refuses a savepoint whose shape does not match the pipeline: other operators, other
    /// state formats, other partition counts.
    pub(super) fn check_fit(
        &self,
        m: &Manifest,
        spec: &super::PipelineSpec,
        operators: &[super::PinnedOperator],
    ) -> Result<(), ControlError> {
        let incompatible = |reason: String| SavepointError::Incompatible {
            id: m.id.clone(),
            pipeline: spec.name.clone(),
            reason,
        };
        let saved: Vec<&str> = m.operators.iter().map(|o| o.id.as_str()).collect();
        let ours: Vec<&str> = spec.operators.iter().map(|o| o.id()).collect();
        if saved != ours {
            return Err(incompatible(format!(
                "it holds operators {saved:?}, the pipeline has {ours:?}"
            ))
            .into());
        }
        for (s, o) in m.operators.iter().zip(operators) {
            if s.state_version != o.state_version {
                return Err(incompatible(format!(
                    "operator {} wrote state version {} in the savepoint, the pipeline's version {} uses {}; restore with the savepoint's operator version, then upgrade",
                    s.id, s.state_version, o.version, o.state_version
                ))
                .into());
            }
        }
        for stage in stages(spec) {
            let partitions = self.stage_partitions(spec, &stage).unwrap_or(0);
            let saved = m.tasks.iter().filter(|t| t.stage == stage.index).count() as u32;
            if saved != partitions {
                return Err(incompatible(format!(
                    "stage {} has {saved} partition(s) in the savepoint and {partitions} in topic {}",
                    stage.index, stage.source
                ))
                .into());
            }
        }
        if let Some(f) = m
            .stores
            .iter()
            .find(|f| !ours.contains(&f.operator.as_str()))
        {
            return Err(incompatible(format!(
                "it holds state of unknown operator {:?}",
                f.operator
            ))
            .into());
        }
        Ok(())
    }

    /// Replaces a pipeline's state, changelogs and positions with a savepoint's.
    /// Idempotent: a restore interrupted by a crash is simply done again.
    pub(super) fn apply_restore(&self, name: &str, m: &Manifest) -> Result<u64, ControlError> {
        self.db.delete_pipeline_state(name)?;
        let spec = &m.spec;
        let ids: Vec<&str> = spec.operators.iter().map(|o| o.id()).collect();
        for (_, _, topic) in super::changelog_topics(&self.log, name, &ids) {
            match self.log.delete_topic(topic.name()) {
                Ok(()) | Err(LogError::NoSuchTopic(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let dir = self.savepoints.path(&m.id);
        let scratch = tempfile::Builder::new()
            .prefix(".restore-")
            .tempdir_in(self.savepoints.path(""))
            .map_err(|e| SavepointError::Io(e.to_string()))?;
        let opts = Options::default();
        let mut keys = 0;
        // A stage with a Kafka sink keeps its changelogs in Kafka (rewritten below).
        let last_stage = stages(spec).len() as u32 - 1;
        let sink_kafka = match &spec.sink {
            Some(sink) => self
                .kafka(sink)
                .map_err(|e| ControlError::Invalid(e.to_string()))?,
            None => None,
        };
        for (i, f) in m.stores.iter().enumerate() {
            let in_kafka = sink_kafka.is_some() && stage_of(spec, &f.operator) == last_stage;
            let (cf, catalog) = if f.store == TIMERS_STORE {
                (Cf::Timers, TIMERS)
            } else {
                (Cf::State, f.store.as_str())
            };
            let id = self.db.store_id(&StoreName {
                pipeline: name.to_string(),
                operator: f.operator.clone(),
                store: catalog.to_string(),
            })?;
            let prefix = keys::task_prefix(id, f.partition);
            let stage_partitions = m
                .tasks
                .iter()
                .filter(|t| t.stage == stage_of(spec, &f.operator))
                .count() as u32;
            let topic = if in_kafka {
                None
            } else {
                Some(self.log.ensure_topic(
                    &changelog_topic(name, &f.operator, &f.store),
                    &TopicConfig {
                        partitions: stage_partitions.max(f.partition + 1),
                        retention_ms: None,
                        retention_bytes: None,
                    },
                )?)
            };
            let sst = scratch.path().join(format!("{i}.sst"));
            let mut builder = SstBuilder::create(&opts, &sst)?;
            let mut appends = Appends::default();
            let scope = StateScope {
                pipeline: name.to_string(),
                operator: f.operator.clone(),
                partition: f.partition,
            };
            // The restored state becomes the changelog's content, so a later rebuild from
            // the changelog gives it back.
            let flush = |appends: &mut Appends| -> Result<(), crate::state::StateError> {
                let mut a = std::mem::take(appends);
                let topic = topic.as_ref().expect("an embedded changelog");
                a.mark_end(topic, f.partition, marker_key(&scope, &f.store));
                self.log
                    .commit(WriteBatch::default(), a)
                    .map(|_| ())
                    .map_err(|e| match e {
                        LogError::State(s) => s,
                        other => crate::state::StateError::Corrupt {
                            what: "changelog",
                            detail: other.to_string(),
                        },
                    })
            };
            for_each_entry(&dir.join(&f.file), &scratch.path().join("read"), |k, v| {
                builder.put(&[prefix.as_slice(), k].concat(), v)?;
                keys += 1;
                let Some(topic) = &topic else {
                    return Ok(());
                };
                let change = Change::Put {
                    key: k.to_vec(),
                    value: v.to_vec(),
                };
                appends.push(
                    topic,
                    f.partition,
                    &crate::log::codec::encode_record(&change.to_record(), 0),
                );
                if appends.len() >= CHANGELOG_CHUNK {
                    flush(&mut appends)?;
                }
                Ok(())
            })?;
            if !appends.is_empty() {
                flush(&mut appends)?;
            }
            if builder.finish()? {
                ingest(&self.db, cf, &[sst])?;
            }
        }
        let mut wb = WriteBatch::default();
        for t in &m.tasks {
            let id = TaskId {
                pipeline: name.to_string(),
                stage: t.stage,
                partition: t.partition,
            };
            put_position(
                &self.db,
                &mut wb,
                &id,
                TaskPosition {
                    offset: t.offset,
                    watermark: t.watermark,
                },
            );
            // Always written, so watermarks from before the restore do not linger.
            put_upstream_watermarks(&self.db, &mut wb, &id, &t.upstream_watermarks);
        }
        self.db.write(wb)?;
        if let Some(conn) = &sink_kafka {
            let stage = stages(spec).pop().expect("at least one stage");
            let operators: Vec<&str> = stage.ops.iter().map(|&i| spec.operators[i].id()).collect();
            let tasks: Vec<(TaskId, TaskPosition)> = m
                .tasks
                .iter()
                .filter(|t| t.stage == stage.index)
                .map(|t| {
                    let id = TaskId {
                        pipeline: name.to_string(),
                        stage: t.stage,
                        partition: t.partition,
                    };
                    let pos = TaskPosition {
                        offset: t.offset,
                        watermark: t.watermark,
                    };
                    (id, pos)
                })
                .collect();
            let kafka_source = spec
                .source
                .as_ref()
                .filter(|s| s.kafka.is_some() && stage.index == 0)
                .map(|s| s.topic.as_str());
            let plan = crate::kafka::ResetPlan {
                pipeline: name,
                operators: &operators,
                tasks: &tasks,
                kafka_source,
            };
            crate::kafka::reset_to_savepoint(&self.db, conn, &plan).map_err(|e| {
                ControlError::Conflict(format!(
                    "the savepoint's state is restored here but Kafka could not be brought to it ({e}); restore again once the brokers answer"
                ))
            })?;
        }
        Ok(keys)
    }

    /// Finishes restores a crash interrupted (called at boot, before pipelines start).
    pub(super) fn finish_interrupted_restores(&self) -> Result<(), ControlError> {
        let mut journals = Vec::new();
        for item in self
            .db
            .rocks()
            .prefix_iterator_cf(self.db.cf(Cf::Meta), JOURNAL)
        {
            let (k, v) = item.map_err(crate::state::StateError::from)?;
            if !k.starts_with(JOURNAL) {
                break;
            }
            journals.push((
                String::from_utf8_lossy(&k[JOURNAL.len()..]).into_owned(),
                String::from_utf8_lossy(&v).into_owned(),
            ));
        }
        for (pipeline, savepoint) in journals {
            tracing::warn!(%pipeline, %savepoint, "finishing a restore a crash interrupted");
            let m = self.savepoints.get(&savepoint)?;
            self.apply_restore(&pipeline, &m)?;
            let mut wb = WriteBatch::default();
            wb.delete_cf(self.db.cf(Cf::Meta), journal_key(&pipeline));
            self.db.write(wb)?;
        }
        Ok(())
    }
}

fn journal_key(pipeline: &str) -> Vec<u8> {
    [JOURNAL, pipeline.as_bytes()].concat()
}

/// The stage an operator runs in.
fn stage_of(spec: &super::PipelineSpec, operator: &str) -> u32 {
    stages(spec)
        .iter()
        .find(|s| s.ops.iter().any(|i| spec.operators[*i].id() == operator))
        .map_or(0, |s| s.index)
}
