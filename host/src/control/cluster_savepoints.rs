//! Savepoints and restores of pipelines shared across a cluster. Each server holds only
//! the state of the partitions it ran, but Kafka holds all of it (changelogs, positions),
//! so the server asked does the work alone once the pipeline is stopped (or, for a
//! savepoint, held: see `cluster_hold`) everywhere: a savepoint first brings its local
//! state of every partition it does not run up to Kafka, then exports as usual; a restore fences every task's transactional producer, then rewrites Kafka as a
//! single server does, and tells the other servers through the catalog, which drop
//! their local state of the pipeline (it describes the time before the restore).

use super::controller::Controller;
use super::error::ControlError;
use crate::kafka;
use crate::model::{PipelineRecord, PipelineSpec, PipelineState, stages};
use crate::state::TaskId;
use std::time::{Duration, Instant};

/// How long a savepoint or restore waits for other servers to report their tasks stopped.
const STOPPED_WAIT: Duration = Duration::from_secs(10);

impl Controller {
    /// For a pipeline shared across the cluster, checks it is stopped and returns its
    /// record (`None` for other pipelines).
    fn stopped_shared(
        &self,
        name: &str,
        what: &'static str,
    ) -> Result<Option<PipelineRecord>, ControlError> {
        // Our view of the pipeline's state includes every stop made so far.
        self.sync_cluster()?;
        let (record, _) = self.record_and_tasks(name)?;
        if !self.distributed(&record.spec) {
            return Ok(None);
        }
        // A savepoint may also be taken while the pipeline is held everywhere.
        let held = what == "a savepoint" && self.hold_here(name).is_some();
        if record.state != PipelineState::Stopped && !held {
            return Err(ControlError::StopSharedFirst {
                pipeline: name.to_string(),
                what,
            });
        }
        Ok(Some(record))
    }

    /// Refuses a savepoint or restore of a pipeline whose stages meet in Kafka (or, in a
    /// cluster, of one that would share stages through one server's embedded log),
    /// before anything is held or fenced.
    pub(super) fn refuse_stages_in_kafka(
        &self,
        name: &str,
        what: &'static str,
    ) -> Result<(), ControlError> {
        let (record, _) = self.record_and_tasks(name)?;
        let kafka = record.repartitions_in_kafka() || self.distributed(&record.spec);
        if kafka && stages(&record.spec).len() > 1 {
            return Err(ControlError::SharedRepartition { what });
        }
        Ok(())
    }

    /// Waits until no server reports tasks of `name`; returns those still reporting.
    fn wait_for_stopped_servers(&self, name: &str) -> Vec<String> {
        let Some(link) = self.cluster.get() else {
            return Vec::new();
        };
        let deadline = Instant::now() + STOPPED_WAIT;
        loop {
            let servers: Vec<String> = link
                .catalog
                .owners(name)
                .into_values()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            if servers.is_empty() || Instant::now() >= deadline {
                return servers;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Before a savepoint of a stopped (or held) shared pipeline: the local state and
    /// position of every partition this server does not run become what Kafka committed. (A server that stopped late, or died
    /// without saying so, cannot make this inconsistent: a partition's changes newer
    /// than its recorded position are left out.)
    pub(super) fn gather_shared(&self, name: &str) -> Result<(), ControlError> {
        let Some(record) = self.stopped_shared(name, "a savepoint")? else {
            return Ok(());
        };
        // Held (running): this server's own tasks committed and paused; their local state
        // is what Kafka has, and it stays theirs.
        let (_, tasks) = self.record_and_tasks(name)?;
        let running_here: Vec<(u32, u32)> = tasks
            .iter()
            .filter(|t| !t.is_finished())
            .map(|t| (t.id.stage, t.id.partition))
            .collect();
        if running_here.is_empty() {
            let late = self.wait_for_stopped_servers(name);
            if !late.is_empty() {
                tracing::warn!(pipeline = %name, ?late, "servers still report tasks; the savepoint holds what they committed");
            }
        }
        let spec = &record.spec;
        let conn = self.shared_sink(spec)?;
        let names = kafka::KafkaNames::of(&record);
        for stage in stages(spec) {
            let op_ids: Vec<&str> = stage.ops.iter().map(|&i| spec.operators[i].id()).collect();
            for partition in 0..self.stage_partitions(spec, &stage)? {
                if running_here.contains(&(stage.index, partition)) {
                    continue;
                }
                let task = TaskId {
                    pipeline: name.to_string(),
                    stage: stage.index,
                    partition,
                };
                let progress = kafka::RestoreProgress::default();
                let lock = self.factory.restore_lock(&task);
                let _held = lock.lock().expect("restore lock");
                kafka::restore_task(self.db(), &conn, (&task, &names), &op_ids, &progress)
                    .map_err(|error| ControlError::KafkaState { partition, error })?;
            }
        }
        Ok(())
    }

    /// Before a restore of a stopped shared pipeline: no task anywhere can commit any
    /// more (exactly-once: their producers are fenced; at-least-once: every server has
    /// reported its tasks stopped).
    pub(super) fn fence_shared(&self, name: &str) -> Result<bool, ControlError> {
        let Some(record) = self.stopped_shared(name, "a restore")? else {
            return Ok(false);
        };
        let spec = &record.spec;
        if !spec.settings.exactly_once {
            let late = self.wait_for_stopped_servers(name);
            if !late.is_empty() {
                return Err(ControlError::ServersStillRunning {
                    servers: late,
                    pipeline: name.to_string(),
                });
            }
            return Ok(true);
        }
        let conn = self.shared_sink(spec)?;
        let names = kafka::KafkaNames::of(&record);
        for stage in stages(spec) {
            let partitions = self.stage_partitions(spec, &stage)?;
            kafka::fence(&conn, &names, stage.index, partitions).map_err(ControlError::Fence)?;
        }
        Ok(true)
    }

    /// Before a restore of a shared pipeline whose Kafka names predate namespaces (once
    /// its checks passed): its record takes the cluster's name, so the restore writes
    /// its changelogs, positions and group offsets under the cluster's names, and every
    /// server runs it there from then on. (The restore rewrites all of them anyway; the
    /// old topics stay as they are, unused.) Stored and shared before the restore writes
    /// anything: a restore that fails is finished under the same names. Returns the
    /// namespace taken, if any.
    pub(super) fn adopt_cluster_names(&self, name: &str) -> Result<Option<String>, ControlError> {
        let Some(link) = self.cluster.get() else {
            return Ok(None);
        };
        let record = self.with_settled_entry(name, |e| {
            if e.record.namespace.is_some() {
                return Ok(None);
            }
            e.record.namespace = Some(link.cluster.clone());
            self.store.touch(&mut e.record)?;
            Ok(Some(e.record.clone()))
        })?;
        let Some(record) = record else {
            return Ok(None);
        };
        tracing::info!(pipeline = %name, cluster = %link.cluster, "the restore moves the pipeline's Kafka names into the cluster's namespace");
        self.share(&record);
        Ok(record.namespace)
    }

    pub(super) fn shared_sink(
        &self,
        spec: &PipelineSpec,
    ) -> Result<kafka::Connection, ControlError> {
        let sink = spec.sink.as_ref().ok_or(ControlError::NoSink)?;
        self.kafka(sink)
            .map_err(ControlError::KafkaEndpoint)?
            .ok_or(ControlError::NoSink)
    }
}
