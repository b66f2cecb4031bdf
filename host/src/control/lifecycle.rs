//! A pipeline's life: boot (resume what was running), create, start, stop, delete,
//! rebuild its state, supervise its tasks, and the server's shutdown.

use super::controller::Controller;
use super::entry::{Entry, STARTING};
use super::error::ControlError;
use super::status::PipelineStatus;
use super::topics::internal_topics;
use crate::kafka;
use crate::log::Replayed;
use crate::log::{LogError, TopicConfig, catch_up};
use crate::model::{
    PinnedOperator, PipelineRecord, PipelineSpec, PipelineState, UpgradeDecision, UpgradeResult,
    stages,
};
use crate::record::now_ms;
use crate::registry::RegistryError;
use crate::task::{StartError, TaskState};
use std::collections::BTreeMap;

impl Controller {
    /// Loads every stored pipeline and starts those that were running (after finishing
    /// any restore a crash interrupted).
    pub fn boot(&self) -> Result<(), ControlError> {
        let records = self.store.load_all()?;
        // Restores a crash (or a failure) left half-done are finished first; one that
        // cannot be finished leaves its pipeline failed with the reason, never the boot.
        let mut unfinished = BTreeMap::new();
        let mut finished = Vec::new();
        for name in self.store.journaled_restores()? {
            match records.iter().find(|r| r.spec.name == name) {
                None => self.store.end_restore(&name)?,
                Some(r) => match self.finish_restore(r) {
                    Ok(_) => finished.push(name),
                    Err(reason) => {
                        tracing::error!(pipeline = %name, "{reason}");
                        unfinished.insert(name, reason);
                    }
                },
            }
        }
        let mut pipelines = self.table();
        for mut record in records {
            if let Some(reason) = unfinished.remove(&record.spec.name) {
                self.store
                    .set_state(&mut record, PipelineState::Failed, Some(reason))?;
            } else if finished.contains(&record.spec.name) && record.state == PipelineState::Failed
            {
                // An earlier boot could not finish the restore; this one did.
                self.store
                    .set_state(&mut record, PipelineState::Stopped, None)?;
            }
            // An upgrade still on probation when the server stopped never committed: the
            // old version resumes from the last commit.
            for u in record
                .upgrades
                .iter_mut()
                .filter(|u| u.result == UpgradeResult::Probation)
            {
                u.result = UpgradeResult::RolledBack;
                u.reason = Some("the server stopped during the probation; the old version resumed from the last commit".into());
                u.finished_ms = Some(now_ms());
            }
            let name = record.spec.name.clone();
            let mut entry = Entry::idle(record);
            if matches!(
                entry.record.state,
                PipelineState::Running | PipelineState::Recovering
            ) {
                match self.run_entry(&mut entry) {
                    Ok(()) => {
                        self.store
                            .set_state(&mut entry.record, PipelineState::Running, None)?;
                    }
                    Err(reason) => {
                        tracing::error!(pipeline = %name, "cannot resume: {reason}");
                        self.fail_or_recover(&mut entry, reason.to_string());
                    }
                }
            }
            pipelines.insert(name, entry);
        }
        drop(pipelines);
        self.refresh_gauges();
        Ok(())
    }

    /// Creates a pipeline and starts it. Nothing is kept if it cannot start.
    pub fn create(&self, spec: PipelineSpec) -> Result<PipelineStatus, ControlError> {
        spec.validate()?;
        let source = spec.primary_source().ok_or(ControlError::NoSource)?;
        let sink = spec.sink.as_ref().ok_or(ControlError::NoSink)?;
        // In a cluster, see every server's uploads and pipelines first.
        self.sync_cluster()?;
        if self.distributed(&spec) && stages(&spec).len() > 1 && spec.from_savepoint.is_some() {
            return Err(ControlError::SharedRepartition { what: "a restore" });
        }
        if self.distributed(&spec)
            && let Some(input) = spec.inputs.iter().find(|i| !i.topic.is_kafka())
        {
            return Err(ControlError::Start(StartError::Inputs(format!(
                "input {:?}: the inputs of a pipeline the cluster shares must be Kafka topics (an embedded topic lives on one server)",
                input.name
            ))));
        }
        if self.table().contains_key(&spec.name) {
            return Err(ControlError::Exists(spec.name.clone()));
        }
        let source_kafka = self.kafka(source).map_err(ControlError::KafkaEndpoint)?;
        let sink_kafka = self.kafka(sink).map_err(ControlError::KafkaEndpoint)?;
        let partitions = match &source_kafka {
            Some(conn) => kafka::partition_count(conn, &source.topic).map_err(|error| {
                ControlError::KafkaTopic {
                    end: "source",
                    error,
                }
            })?,
            None => self
                .log()
                .topic(&source.topic)
                .map_err(|_| ControlError::NoSourceTopic(source.topic.clone()))?
                .partition_count(),
        };
        for input in spec.input_specs().iter().skip(1) {
            if input.topic.is_kafka() {
                self.kafka(&input.topic)
                    .map_err(ControlError::KafkaEndpoint)?;
            } else if self.log().topic(&input.topic.topic).is_err() {
                return Err(ControlError::NoSourceTopic(input.topic.topic.clone()));
            }
        }
        let operators = self.pin_operators(&spec)?;
        let sink_is_input = spec
            .input_specs()
            .iter()
            .any(|i| i.topic.topic == sink.topic && i.topic.is_kafka() == sink.is_kafka());
        if sink_is_input {
            return Err(ControlError::SinkIsSource);
        }
        // The sink and any repartition topics get the source's partition count.
        let config = TopicConfig {
            partitions,
            ..TopicConfig::default()
        };
        // (A shared pipeline's repartition topics live in Kafka: its tasks create them.)
        if !self.distributed(&spec) {
            for stage in stages(&spec).iter().skip(1) {
                self.log().ensure_topic(&stage.source, &config)?;
            }
        }
        match &sink_kafka {
            Some(conn) => {
                kafka::ensure_topic(conn, &sink.topic, partitions, false)
                    .map_err(|error| ControlError::KafkaTopic { end: "sink", error })?;
            }
            None => {
                self.log().ensure_topic(&sink.topic, &config)?;
            }
        }
        let now = now_ms();
        let record = PipelineRecord {
            spec,
            operators,
            state: PipelineState::Created,
            reason: None,
            created_ms: now,
            updated_ms: now,
            upgrades: Vec::new(),
            canary: None,
            shadow: None,
            namespace: self.cluster.get().map(|link| link.cluster.clone()),
        };
        let name = record.spec.name.clone();
        // The name is claimed and the pipeline shows as starting while its state is
        // restored and its operators start, without the table's lock: status calls answer
        // meanwhile. (Its state says running: a group's assignments start its tasks.)
        {
            let mut pipelines = self.table();
            if pipelines.contains_key(&name) {
                return Err(ControlError::Exists(name));
            }
            let mut claim = Entry::idle(record.clone());
            claim.busy = Some(STARTING);
            claim.record.state = PipelineState::Running;
            pipelines.insert(name.clone(), claim);
        }
        let mut attempt = Entry::idle(record);
        let started = match attempt.record.spec.from_savepoint.clone() {
            Some(savepoint) => self.restore_new(&mut attempt.record, &savepoint),
            None => Ok(()),
        }
        .and_then(|()| {
            self.run_entry(&mut attempt)
                .map_err(|reason| ControlError::CannotStart {
                    pipeline: name.clone(),
                    reason: reason.to_string(),
                })
        });
        if let Err(e) = started {
            self.table().remove(&name);
            // Nothing ran; remove what the attempt may have left (store ids, positions).
            self.db().delete_pipeline_state(&name)?;
            return Err(e);
        }
        self.with_entry(&name, |entry| {
            entry.busy = None;
            entry.member = attempt.member.take();
            entry.tasks.extend(std::mem::take(&mut attempt.tasks));
            entry.record.operators = std::mem::take(&mut attempt.record.operators);
            self.store
                .set_state(&mut entry.record, PipelineState::Running, None)?;
            self.share(&entry.record);
            Ok(())
        })?;
        self.refresh_gauges();
        self.status(&name)
    }

    /// The registered version of each of a spec's operators.
    fn pin_operators(&self, spec: &PipelineSpec) -> Result<Vec<PinnedOperator>, ControlError> {
        spec.operators
            .iter()
            .map(|op| {
                let v = self
                    .registry()
                    .resolve(&op.name, op.version)
                    .map_err(|e| match e {
                        RegistryError::NotFound(_) => {
                            ControlError::UnknownOperator(op.name.clone())
                        }
                        RegistryError::NoSuchVersion { .. } => ControlError::UnknownVersion(e),
                        other => other.into(),
                    })?;
                Ok(PinnedOperator {
                    id: op.id().to_string(),
                    name: v.name,
                    version: v.version,
                    digest: v.digest,
                    state_version: 1,
                })
            })
            .collect()
    }

    /// Restores a pipeline being created from a savepoint (before anything runs); the
    /// operators' state versions come from their `init`.
    fn restore_new(
        &self,
        record: &mut PipelineRecord,
        savepoint: &str,
    ) -> Result<(), ControlError> {
        self.factory
            .probe_state_versions(record)
            .map_err(ControlError::start)?;
        self.restore_created(record, savepoint)
    }

    /// Starts a stopped, created or failed pipeline from its committed positions. When
    /// Kafka is out of reach it goes to `recovering` and tries again by itself.
    pub fn start(&self, name: &str) -> Result<PipelineStatus, ControlError> {
        // In a cluster, first hear of everything other servers did: a restore made on
        // another server just now must drop this server's local state of the pipeline
        // before its tasks run here.
        self.sync_cluster()?;
        // A restore that did not finish is finished here, outside the pipelines' lock
        // (it reads every file of the savepoint); the pipeline is claimed meanwhile.
        if self.store.unfinished_restore(name).is_some() {
            let _claim = self.claim_guard(name, "a restore")?;
            let record = self.record_and_tasks(name)?.0;
            self.finish_restore(&record)
                .map_err(|reason| ControlError::CannotStart {
                    pipeline: name.to_string(),
                    reason,
                })?;
        }
        self.run_unlocked(name, |entry| entry.record.state != PipelineState::Running)?;
        self.refresh_gauges();
        self.status(name)
    }

    /// Stops a running pipeline; its tasks commit first, so a start resumes exactly there.
    pub fn stop(&self, name: &str) -> Result<PipelineStatus, ControlError> {
        // A stop ends an upgrade's probation first, as a server stop does: the held work
        // is dropped and the old version commits from where it was.
        let on_probation = self.with_entry(name, |e| {
            Ok(e.record.upgrades.last().map(|u| u.result) == Some(UpgradeResult::Probation))
        })?;
        if on_probation {
            match self.decide_upgrade(name, UpgradeDecision::RollBack) {
                // It ended meanwhile.
                Ok(_) | Err(ControlError::NoProbation(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let running = self.with_settled_entry(name, |entry| {
            entry.check_idle()?;
            match entry.record.state {
                PipelineState::Running => return Ok(true),
                PipelineState::Recovering => {
                    // No more attempts.
                    entry.retry = None;
                    self.store
                        .set_state(&mut entry.record, PipelineState::Stopped, None)?;
                }
                _ => {}
            }
            Ok(false)
        })?;
        if running {
            self.halt_unlocked(name, |c, entry| {
                if let Err(e) = c
                    .store
                    .set_state(&mut entry.record, PipelineState::Stopped, None)
                {
                    tracing::error!(pipeline = %name, "cannot record a pipeline's state: {e}");
                }
                c.share(&entry.record);
            })?;
        }
        self.refresh_gauges();
        self.status(name)
    }

    /// Stops (if needed) and deletes a pipeline with all its state. Its topics stay.
    pub fn delete(&self, name: &str) -> Result<(), ControlError> {
        let shared = self.delete_here(name)?;
        if shared {
            self.share_deleted(name);
        }
        Ok(())
    }

    /// Deletes a pipeline on this server; `true` when it was shared with a cluster.
    pub(super) fn delete_here(&self, name: &str) -> Result<bool, ControlError> {
        let (shared, running) = self.with_settled_entry(name, |entry| {
            entry.check_idle()?;
            // Leaving the group first, so no assignment starts tasks behind our back.
            self.leave_group(entry);
            Ok((
                self.distributed(&entry.record.spec),
                entry.record.state == PipelineState::Running,
            ))
        })?;
        if running {
            // The tasks commit and stop without the table's lock held.
            self.halt_unlocked(name, |_, _| {})?;
        }
        // Before the table's lock: a standby refresh under way ends first.
        let gate = self.standby_gate(name);
        let _closed = gate.as_ref().map(|g| g.write().expect("standby gate"));
        let mut pipelines = self.table();
        let entry = pipelines
            .get_mut(name)
            .ok_or_else(|| ControlError::NotFound(name.to_string()))?;
        entry.check_idle()?;
        if entry.tasks.iter().any(|t| !t.is_finished()) {
            // Started again meanwhile.
            return Err(ControlError::Busy {
                pipeline: name.to_string(),
                with: "a start",
            });
        }
        self.db().delete_pipeline_state(name)?;
        self.store.delete(name)?;
        self.store.end_restore(name)?;
        // Repartition and changelog topics are the pipeline's own; its source, sink and
        // outputs stay.
        for topic in internal_topics(self.log(), &entry.record.spec) {
            match self.log().delete_topic(&topic) {
                Ok(()) | Err(LogError::NoSuchTopic(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let partitions = entry
            .tasks
            .iter()
            .map(|t| t.id.partition + 1)
            .max()
            .unwrap_or(0);
        pipelines.remove(name);
        drop(pipelines);
        self.metrics().remove_pipeline(name, partitions);
        self.refresh_gauges();
        Ok(shared)
    }

    /// Rebuilds a stopped pipeline's state from its changelogs: its stores and timers are
    /// wiped and replayed; positions stay.
    pub fn rebuild_state(&self, name: &str) -> Result<Replayed, ControlError> {
        let gate = self.standby_gate(name);
        let _closed = gate.as_ref().map(|g| g.write().expect("standby gate"));
        self.with_entry(name, |entry| {
            if entry.record.state == PipelineState::Running {
                return Err(ControlError::Running {
                    pipeline: name.to_string(),
                    before: "rebuilding its state",
                });
            }
            self.db().delete_pipeline_stores(name)?;
            // A shadow's copy of the state is not in any changelog: it ends here.
            let reason =
                "the pipeline's state was rebuilt from its changelogs, without the shadow's copy";
            if crate::model::ShadowRun::drop_running(
                &mut entry.record.shadow,
                reason.into(),
                now_ms(),
            ) {
                self.store.touch(&mut entry.record)?;
            }
            let ids: Vec<&str> = entry.record.spec.operators.iter().map(|o| o.id()).collect();
            catch_up(self.db(), self.log(), name, &ids).map_err(|error| ControlError::Rebuild {
                pipeline: name.to_string(),
                error,
            })
        })
    }

    /// Turns a failed task into a failed pipeline (its other tasks stop after committing).
    /// Call periodically.
    pub fn supervise(&self) {
        let failed: Vec<(String, String)> = self
            .table()
            .values()
            .filter(|e| e.record.state == PipelineState::Running && e.busy.is_none())
            .filter_map(|e| {
                e.tasks.iter().find_map(|t| {
                    let s = t.status();
                    (s.state == TaskState::Failed).then(|| {
                        let reason = format!("{}: {}", t.id, s.failure.unwrap_or_default());
                        (e.name().to_string(), reason)
                    })
                })
            })
            .collect();
        for (name, reason) in failed {
            let halted = self.halt_unlocked(&name, |c, entry| c.fail_or_recover(entry, reason));
            if let Err(e) = halted {
                tracing::error!(pipeline = %name, "cannot stop the failed pipeline: {e}");
            }
        }
        self.supervise_shadows();
        self.refresh_gauges();
        self.retry_recovering();
    }

    /// Stops every task after it commits, leaving pipelines marked as they are so the next
    /// boot resumes them (server shutdown).
    pub fn shutdown(&self) {
        let mut pipelines = self.table();
        for entry in pipelines.values_mut() {
            // Leaving the groups first, so no assignment starts tasks behind our back.
            self.leave_group(entry);
            for t in &entry.tasks {
                t.request_stop();
            }
        }
        for entry in pipelines.values() {
            self.stop_tasks(entry);
        }
    }
}
