//! Restoring a pipeline from a savepoint. Everything is checked before anything changes:
//! the manifest, the fit with the pipeline (operators, state versions, stages, partition
//! counts), every file's checksum, and every file's content (read into the SST files
//! that will be ingested). Only then a journal records the restore and the pipeline's
//! state, changelogs and positions are replaced; a crash or a failure after that point is
//! finished from the journal (at boot, or at the next start or restore), and a journal
//! that cannot be finished leaves the pipeline failed with the reason.

use super::controller::Controller;
use super::error::ControlError;
use super::manifest_check::Shape;
use super::savepoints::{Manifest, SavepointError};
use crate::kafka::RecordedPosition;
use crate::log::{Appends, LogError, TopicConfig, changelog_topics};
use crate::model::{
    InputKind, PinnedOperator, PipelineRecord, PipelineSpec, PipelineState, Stage, stages,
};
use crate::state::changelog::{Change, TIMERS_STORE, changelog_topic, marker_key};
use crate::state::savepoint::{SstBuilder, for_each_entry, ingest};
use crate::state::{
    Cf, Commit, StateError, StateScope, StoreName, TIMERS, TaskId, TaskPosition, keys,
    put_position, put_source_positions, put_upstream_watermarks,
};
use rocksdb::{Direction, IteratorMode, Options, WriteBatch};
use std::path::PathBuf;
use std::sync::Arc;

/// Changelog records written per commit while restoring.
const CHANGELOG_CHUNK: usize = 50_000;
/// How much a store file may expand when read (its blocks are compressed; 64 is far
/// beyond what real state compresses to), plus a constant for small files.
const EXPANSION: u64 = 64;
const EXPANSION_SLACK: u64 = 64 << 20;

/// What a restore did.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Restored {
    pub savepoint: String,
    pub keys: u64,
    pub millis: u64,
}

/// A savepoint's state, checked and turned into files ready to ingest.
struct Prepared {
    /// Holds the files until they are ingested (or dropped with it).
    _scratch: tempfile::TempDir,
    state: Vec<PathBuf>,
    timers: Vec<PathBuf>,
    /// Each store file's `(store id, partition)`, in manifest order.
    targets: Vec<(u32, u32)>,
    keys: u64,
    shape: Shape,
}

impl Controller {
    /// Restores a pipeline that is not running from a savepoint: its state and source
    /// offsets become exactly the savepoint's. A savepoint that does not fit, or any
    /// damage in it, is refused before anything changes.
    pub fn restore(&self, name: &str, savepoint: &str) -> Result<Restored, ControlError> {
        let _claim = self.claim_guard(name, "a restore")?;
        self.refuse_stages_in_kafka(name, "a restore")?;
        let shared = self.fence_shared(name)?;
        let restored = self.restore_claimed(name, savepoint, shared)?;
        if shared {
            self.share_restore(name, &restored.savepoint)?;
        }
        Ok(restored)
    }

    fn restore_claimed(
        &self,
        name: &str,
        savepoint: &str,
        shared: bool,
    ) -> Result<Restored, ControlError> {
        let started = std::time::Instant::now();
        let mut record = {
            let pipelines = self.table();
            let e = pipelines
                .get(name)
                .ok_or_else(|| ControlError::NotFound(name.to_string()))?;
            if e.record.state == PipelineState::Running {
                return Err(ControlError::Running {
                    pipeline: name.to_string(),
                    before: "restoring a savepoint",
                });
            }
            e.record.clone()
        };
        let m = self.savepoints.get(savepoint)?;
        let prepared = self.prepare_restore(name, &record.spec, &record.operators, &m)?;
        // Once nothing can refuse the restore any more: its journal finishes it under
        // the names it moved to.
        if shared && let Some(namespace) = self.adopt_cluster_names(name)? {
            record.namespace = Some(namespace);
        }
        self.store.begin_restore(name, &m.id)?;
        let keys = match self.apply_restore(&record, &m, prepared) {
            Ok(keys) => keys,
            Err(e) => {
                let reason = unfinished(&m.id, &e);
                self.fail_pipeline(name, reason.clone());
                return Err(ControlError::RestoreUnfinished(reason));
            }
        };
        self.store.end_restore(name)?;
        // The last run's task statuses no longer describe the pipeline.
        if let Some(e) = self.table().get_mut(name) {
            e.tasks.clear();
            // The shadow's copy of the state and its report went with the old state.
            let reason = format!("the pipeline was restored from savepoint {}", m.id);
            if crate::model::ShadowRun::drop_running(
                &mut e.record.shadow,
                reason,
                crate::record::now_ms(),
            ) {
                self.store.touch(&mut e.record)?;
            }
            if e.record.state == PipelineState::Failed
                && e.record
                    .reason
                    .as_deref()
                    .is_some_and(|r| r.starts_with(UNFINISHED))
            {
                self.store
                    .set_state(&mut e.record, PipelineState::Stopped, None)?;
            }
        }
        Ok(Restored {
            savepoint: m.id,
            keys,
            millis: started.elapsed().as_millis() as u64,
        })
    }

    /// Restores a pipeline being created from a savepoint (nothing of it exists yet, so
    /// no journal: a failure leaves nothing that `create` does not remove).
    pub(super) fn restore_created(
        &self,
        record: &PipelineRecord,
        savepoint: &str,
    ) -> Result<(), ControlError> {
        let (spec, operators) = (&record.spec, &record.operators);
        let m = self.savepoints.get(savepoint).map_err(|e| match e {
            SavepointError::NotFound(_) => ControlError::NoSuchSavepoint(savepoint.to_string()),
            other => other.into(),
        })?;
        let prepared = self.prepare_restore(&spec.name, spec, operators, &m)?;
        self.apply_restore(record, &m, prepared)?;
        Ok(())
    }

    /// Every check of a restore, and the files to ingest; changes nothing the pipeline
    /// has (it may intern the names of the savepoint's stores, which are the pipeline's).
    fn prepare_restore(
        &self,
        name: &str,
        spec: &PipelineSpec,
        operators: &[PinnedOperator],
        m: &Manifest,
    ) -> Result<Prepared, ControlError> {
        let shape = self.check_fit(m, spec, operators)?;
        // The brokers of a Kafka sink must answer before anything is replaced.
        if let Some(sink) = &spec.sink
            && let Some(conn) = self.kafka(sink).map_err(ControlError::KafkaEndpoint)?
        {
            crate::kafka::partition_count(&conn, &sink.topic).map_err(ControlError::SinkDown)?;
        }
        let scratch = tempfile::Builder::new()
            .prefix(".restore-")
            .tempdir_in(self.savepoints.path(""))
            .map_err(|e| SavepointError::Io(e.kind().to_string()))?;
        // Every file is copied and checked first: what is read below is what was checked,
        // whatever happens to the savepoint's folder meanwhile.
        let mut copies = Vec::with_capacity(m.stores.len());
        for (i, f) in m.stores.iter().enumerate() {
            let copy = scratch.path().join(format!("saved-{i}.sst"));
            self.savepoints.copy_checked(m, f, &copy)?;
            copies.push(copy);
        }
        let opts = Options::default();
        let (mut state, mut timers, mut targets) = (Vec::new(), Vec::new(), Vec::new());
        let mut total = 0u64;
        for ((i, f), copy) in m.stores.iter().enumerate().zip(&copies) {
            let (timer_file, catalog) = if f.store == TIMERS_STORE {
                (true, TIMERS)
            } else {
                (false, f.store.as_str())
            };
            let id = self.db().store_id(&StoreName {
                pipeline: name.to_string(),
                operator: f.operator.clone(),
                store: catalog.to_string(),
            })?;
            let prefix = keys::task_prefix(id, f.partition);
            let sst = scratch.path().join(format!("{i}.sst"));
            let mut builder = SstBuilder::create(&opts, &sst)?;
            let (mut keys, mut bytes) = (0u64, 0u64);
            // A store file's content expands on reading (its blocks are compressed): bound
            // it, and stop at the first key past the manifest's count.
            let most = EXPANSION * f.bytes + EXPANSION_SLACK;
            let mut over: Option<String> = None;
            let read = for_each_entry(copy, &scratch.path().join("read"), |k, v| {
                keys += 1;
                bytes += (k.len() + v.len()) as u64;
                if keys > f.keys {
                    over = Some(format!(
                        "it holds more than the {} keys the manifest says",
                        f.keys
                    ));
                } else if bytes > most {
                    over = Some(format!(
                        "it expands to over {most} bytes, more than a store file of {} bytes holds",
                        f.bytes
                    ));
                }
                if over.is_some() {
                    return Err(StateError::Corrupt {
                        what: "savepoint file",
                        detail: String::new(),
                    });
                }
                builder.put(&[prefix.as_slice(), k].concat(), v)
            });
            if let Err(e) = read {
                let why = over.unwrap_or_else(|| sst_reason(&e).to_string());
                return Err(SavepointError::Corrupt(format!(
                    "file {} cannot be read as a store file: {why}",
                    f.file
                ))
                .into());
            }
            if keys != f.keys {
                return Err(SavepointError::Corrupt(format!(
                    "file {} holds {keys} keys, the manifest says {}",
                    f.file, f.keys
                ))
                .into());
            }
            total += keys;
            if builder.finish()? {
                if timer_file { &mut timers } else { &mut state }.push(sst);
            }
            targets.push((id, f.partition));
        }
        Ok(Prepared {
            _scratch: scratch,
            state,
            timers,
            targets,
            keys: total,
            shape,
        })
    }

    /// Refuses a savepoint whose shape does not match the pipeline: other operators, other
    /// state formats, other stages, other partition counts.
    pub(super) fn check_fit(
        &self,
        m: &Manifest,
        spec: &PipelineSpec,
        operators: &[PinnedOperator],
    ) -> Result<Shape, ControlError> {
        let shape = super::manifest_check::check(m)?;
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
        let our_stages = stages(spec);
        let stage_ops = |s: &Stage, spec: &PipelineSpec| -> Vec<String> {
            s.ops
                .iter()
                .map(|&i| spec.operators[i].id().to_string())
                .collect()
        };
        let their_stages = stages(&m.spec);
        let ours_split: Vec<Vec<String>> = our_stages.iter().map(|s| stage_ops(s, spec)).collect();
        let theirs_split: Vec<Vec<String>> =
            their_stages.iter().map(|s| stage_ops(s, &m.spec)).collect();
        if ours_split != theirs_split {
            return Err(incompatible(format!(
                "its stages are {theirs_split:?}, the pipeline's {ours_split:?} (another `repartition`)"
            ))
            .into());
        }
        for stage in &our_stages {
            let partitions = self.stage_partitions(spec, stage)?;
            let saved = shape.partitions[stage.index as usize];
            if saved != partitions {
                return Err(incompatible(format!(
                    "stage {} has {saved} partition(s) in the savepoint and {partitions} in topic {}",
                    stage.index, stage.source
                ))
                .into());
            }
        }
        Ok(shape)
    }

    /// Replaces a pipeline's state, changelogs and positions with a prepared savepoint's.
    /// Idempotent: a restore interrupted by a crash is simply done again.
    fn apply_restore(
        &self,
        record: &PipelineRecord,
        m: &Manifest,
        prepared: Prepared,
    ) -> Result<u64, ControlError> {
        let (name, spec) = (record.spec.name.as_str(), &record.spec);
        let gate = self.standby_gate(name);
        let _closed = gate.as_ref().map(|g| g.write().expect("standby gate"));
        self.db().delete_pipeline_state(name)?;
        let ids: Vec<&str> = spec.operators.iter().map(|o| o.id()).collect();
        for (_, _, topic) in changelog_topics(self.log(), name, &ids) {
            match self.log().delete_topic(topic.name()) {
                Ok(()) | Err(LogError::NoSuchTopic(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        ingest(self.db(), Cf::State, &prepared.state)?;
        ingest(self.db(), Cf::Timers, &prepared.timers)?;
        // A stage with a Kafka sink keeps its changelogs in Kafka (rewritten below).
        let all = stages(spec);
        let last_stage = all.len() as u32 - 1;
        let sink_kafka = match &spec.sink {
            Some(sink) => self.kafka(sink).map_err(ControlError::KafkaEndpoint)?,
            None => None,
        };
        let shape = &prepared.shape;
        for (f, &(id, partition)) in m.stores.iter().zip(&prepared.targets) {
            let stage = shape.stage_of[&f.operator];
            if sink_kafka.is_some() && stage == last_stage {
                continue;
            }
            let cf = if f.store == TIMERS_STORE {
                Cf::Timers
            } else {
                Cf::State
            };
            let scope = StateScope {
                pipeline: name.to_string(),
                operator: f.operator.clone(),
                partition,
            };
            self.write_changelog(cf, id, &scope, &f.store, shape.partitions[stage as usize])?;
        }
        let mut wb = WriteBatch::default();
        for t in &m.tasks {
            let id = TaskId {
                pipeline: name.to_string(),
                stage: t.stage,
                partition: t.partition,
            };
            put_position(
                self.db(),
                &mut wb,
                &id,
                TaskPosition {
                    offset: t.offset,
                    watermark: t.watermark,
                },
            );
            // Always written, so watermarks from before the restore do not linger.
            put_upstream_watermarks(self.db(), &mut wb, &id, &t.upstream_watermarks);
            if !t.sources.is_empty() {
                put_source_positions(self.db(), &mut wb, &id, &t.sources);
            }
        }
        self.db().write(wb)?;
        if let Some(conn) = &sink_kafka {
            let stage = all.last().expect("at least one stage");
            let operators: Vec<&str> = stage.ops.iter().map(|&i| spec.operators[i].id()).collect();
            let tasks: Vec<(TaskId, RecordedPosition)> = m
                .tasks
                .iter()
                .filter(|t| t.stage == stage.index)
                .map(|t| {
                    let id = TaskId {
                        pipeline: name.to_string(),
                        stage: t.stage,
                        partition: t.partition,
                    };
                    let pos = RecordedPosition {
                        position: TaskPosition {
                            offset: t.offset,
                            watermark: t.watermark,
                        },
                        sources: t.sources.clone(),
                        // Kept locally (above): only a task reading a repartition topic
                        // in Kafka records them there, and such pipelines are not restored.
                        upstream: Vec::new(),
                    };
                    (id, pos)
                })
                .collect();
            let group_offsets = if stage.index == 0 {
                self.group_offsets(spec, conn, &tasks)?
            } else {
                Vec::new()
            };
            let plan = crate::kafka::ResetPlan {
                pipeline: name,
                names: &crate::kafka::KafkaNames::of(record),
                operators: &operators,
                tasks: &tasks,
                group_offsets: &group_offsets,
            };
            crate::kafka::reset_to_savepoint(self.db(), conn, &plan)
                .map_err(ControlError::KafkaReset)?;
        }
        Ok(prepared.keys)
    }

    /// The pipeline group's offsets of restored first-stage tasks: each Kafka source
    /// partition a task owns (not a broadcast's) on the sink's cluster `conn`, at its
    /// restored offset.
    fn group_offsets(
        &self,
        spec: &PipelineSpec,
        conn: &crate::kafka::Connection,
        tasks: &[(TaskId, RecordedPosition)],
    ) -> Result<Vec<(String, u32, u64)>, ControlError> {
        let mut owned = Vec::new();
        for input in spec.input_specs() {
            let same_cluster = self
                .kafka(&input.topic)
                .map_err(ControlError::KafkaEndpoint)?
                == Some(conn.clone());
            if same_cluster && input.kind != InputKind::Broadcast && !input.repartition {
                owned.push(input.topic.topic);
            }
        }
        let mut out = Vec::new();
        for (id, pos) in tasks {
            if pos.sources.is_empty() {
                if let Some(topic) = owned.first() {
                    out.push((topic.clone(), id.partition, pos.position.offset));
                }
                continue;
            }
            for s in pos.sources.iter().filter(|s| owned.contains(&s.topic)) {
                out.push((s.topic.clone(), s.partition, s.offset));
            }
        }
        Ok(out)
    }

    /// Makes a restored store partition the whole content of its embedded changelog, so
    /// a later rebuild from the changelog gives it back.
    fn write_changelog(
        &self,
        cf: Cf,
        id: u32,
        scope: &StateScope,
        store: &str,
        partitions: u32,
    ) -> Result<(), ControlError> {
        let topic = self.log().ensure_topic(
            &changelog_topic(&scope.pipeline, &scope.operator, store),
            &TopicConfig::kept(partitions),
        )?;
        let prefix = keys::task_prefix(id, scope.partition);
        let flush = |appends: &mut Appends| -> Result<(), ControlError> {
            let mut a = std::mem::take(appends);
            a.mark_end(&topic, scope.partition, marker_key(scope, store));
            self.log().commit(Commit::new(Arc::clone(self.db())), a)?;
            Ok(())
        };
        let mut appends = Appends::default();
        let it = self.db().rocks().iterator_cf(
            self.db().cf(cf),
            IteratorMode::From(&prefix, Direction::Forward),
        );
        for item in it {
            let (k, v) = item.map_err(StateError::from)?;
            if !k.starts_with(&prefix) {
                break;
            }
            let change = Change::Put {
                key: k[prefix.len()..].to_vec(),
                value: v.to_vec(),
            };
            appends.push(
                &topic,
                scope.partition,
                &crate::log::codec::encode_record(&change.to_record(), 0),
            );
            if appends.len() >= CHANGELOG_CHUNK {
                flush(&mut appends)?;
            }
        }
        if !appends.is_empty() {
            flush(&mut appends)?;
        }
        Ok(())
    }

    /// Finishes the restore a journal records for `pipeline` (`Ok(false)`: none).
    pub(super) fn finish_restore(&self, record: &PipelineRecord) -> Result<bool, String> {
        let (pipeline, spec, operators) = (&record.spec.name, &record.spec, &record.operators);
        let Some(savepoint) = self.store.unfinished_restore(pipeline) else {
            return Ok(false);
        };
        tracing::warn!(%pipeline, %savepoint, "finishing a restore that did not finish");
        let redo = || -> Result<(), ControlError> {
            let m = self.savepoints.get(&savepoint)?;
            let prepared = self.prepare_restore(pipeline, spec, operators, &m)?;
            self.apply_restore(record, &m, prepared)?;
            Ok(self.store.end_restore(pipeline)?)
        };
        redo()
            .map(|()| true)
            .map_err(|e| unfinished(&savepoint, &e))
    }

    /// Records a pipeline as failed (when it is known here).
    fn fail_pipeline(&self, name: &str, reason: String) {
        if let Some(e) = self.table().get_mut(name)
            && let Err(err) =
                self.store
                    .set_state(&mut e.record, PipelineState::Failed, Some(reason))
        {
            tracing::error!(pipeline = %name, "cannot record a pipeline's state: {err}");
        }
    }
}

/// How the reason of a failed pipeline whose restore did not finish begins.
const UNFINISHED: &str = "the restore from savepoint";

fn unfinished(savepoint: &str, e: &ControlError) -> String {
    // A storage error names the server's files: it goes to the log, not to the reason.
    let why = match e {
        ControlError::State(s) => {
            tracing::error!(%savepoint, "restore failed: {s}");
            "the storage engine failed; see the server's log".to_string()
        }
        other => other.to_string(),
    };
    format!(
        "{UNFINISHED} {savepoint} did not finish ({why}); restore it again (eddy pipeline restore PIPELINE {savepoint}) before starting the pipeline"
    )
}

/// Why RocksDB could not read a store file, without the server's paths.
fn sst_reason(e: &StateError) -> &'static str {
    match e {
        StateError::Rocks(r) if r.kind() == rocksdb::ErrorKind::Corruption => {
            "it is not a valid SST file"
        }
        StateError::Rocks(r) if r.kind() == rocksdb::ErrorKind::InvalidArgument => {
            "its keys are out of order or it is not an SST file"
        }
        _ => "the storage engine refused it",
    }
}
