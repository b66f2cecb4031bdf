//! The controller: what the control plane holds (the pipeline table, the record store,
//! the task factory, savepoints, the cluster link) and the few helpers every operation
//! shares. The operations themselves live one concern per file (`lifecycle`, `run`,
//! `status`, `recovery`, `upgrade`, `savepoint_ops`, `restore`, `cluster_*`); they use
//! this file and the parts below it, never each other's files. Tasks are reached only
//! through the factory and their handles.

use super::cluster_link::ClusterLink;
use super::compaction::{CompactionError, Compactor};
use super::entry::Entry;
use super::error::ControlError;
use super::history::History;
use super::records::PipelineStore;
use super::savepoints::Savepoints;
use crate::kafka::{Connection, KafkaError};
use crate::log::Log;
use crate::metrics::Metrics;
use crate::model::{PipelineRecord, PipelineSpec, PipelineState, Stage, TopicRef};
use crate::registry::Registry;
use crate::state::Db;
use crate::task::{TaskFactory, TaskHandle};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

pub struct Controller {
    /// Every pipeline of this server, by name.
    pub(super) pipelines: Mutex<BTreeMap<String, Entry>>,
    pub(super) store: PipelineStore,
    /// Builds and runs tasks; holds the database, the log, the registry and the metrics.
    pub(super) factory: TaskFactory,
    pub(super) savepoints: Savepoints,
    pub(super) compactor: Compactor,
    /// Set once the server joined a cluster.
    pub(super) cluster: OnceLock<ClusterLink>,
    /// This controller, for the callbacks of group memberships and the catalog.
    pub(super) me: OnceLock<Weak<Controller>>,
    /// Each pipeline's counters over the last minutes.
    pub(super) history: History,
}

/// Releases a pipeline's claim when dropped, however the work ends.
pub(super) struct Claim<'a> {
    controller: &'a Controller,
    name: &'a str,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.controller.release(self.name);
    }
}

impl Controller {
    /// A controller running its pipelines' tasks through `factory`.
    pub fn new(factory: TaskFactory, savepoints: Savepoints) -> Self {
        Controller {
            pipelines: Mutex::new(BTreeMap::new()),
            store: PipelineStore::new(Arc::clone(factory.db())),
            factory,
            savepoints,
            compactor: Compactor::default(),
            cluster: OnceLock::new(),
            me: OnceLock::new(),
            history: History::default(),
        }
    }

    pub fn savepoints(&self) -> &Savepoints {
        &self.savepoints
    }

    pub fn db(&self) -> &Arc<Db> {
        self.factory.db()
    }

    pub fn log(&self) -> &Arc<Log> {
        self.factory.log()
    }

    pub fn registry(&self) -> &Arc<Registry> {
        self.factory.registry()
    }

    pub(super) fn metrics(&self) -> &Arc<Metrics> {
        self.factory.metrics()
    }

    pub(super) fn table(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        self.pipelines.lock().expect("pipelines lock")
    }

    /// Runs `f` on a pipeline's entry (under the table's lock).
    pub(super) fn with_entry<T>(
        &self,
        name: &str,
        f: impl FnOnce(&mut Entry) -> Result<T, ControlError>,
    ) -> Result<T, ControlError> {
        let mut pipelines = self.table();
        let entry = pipelines
            .get_mut(name)
            .ok_or_else(|| ControlError::NotFound(name.to_string()))?;
        f(entry)
    }

    /// Like [`Controller::with_entry`], once no partitions are arriving (their tasks
    /// restore outside the lock): a change waits for them rather than being refused.
    pub(super) fn with_settled_entry<T>(
        &self,
        name: &str,
        f: impl FnOnce(&mut Entry) -> Result<T, ControlError>,
    ) -> Result<T, ControlError> {
        loop {
            let mut pipelines = self.table();
            let entry = pipelines
                .get_mut(name)
                .ok_or_else(|| ControlError::NotFound(name.to_string()))?;
            if entry.arriving.is_empty() {
                return f(entry);
            }
            drop(pipelines);
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// A pipeline's record, and its tasks when it runs.
    pub(super) fn record_and_tasks(
        &self,
        name: &str,
    ) -> Result<(PipelineRecord, Vec<Arc<TaskHandle>>), ControlError> {
        self.with_entry(name, |e| {
            let tasks = match e.record.state {
                PipelineState::Running => e.tasks.clone(),
                _ => Vec::new(),
            };
            Ok((e.record.clone(), tasks))
        })
    }

    /// Marks a pipeline busy with `what`, or says what it is busy with.
    pub(super) fn claim(&self, name: &str, what: &'static str) -> Result<(), ControlError> {
        self.with_settled_entry(name, |entry| {
            entry.check_idle()?;
            entry.busy = Some(what);
            Ok(())
        })
    }

    pub(super) fn release(&self, name: &str) {
        if let Some(e) = self.table().get_mut(name) {
            e.busy = None;
        }
    }

    /// Claims a pipeline for `what` until the returned guard drops.
    pub(super) fn claim_guard<'a>(
        &'a self,
        name: &'a str,
        what: &'static str,
    ) -> Result<Claim<'a>, ControlError> {
        self.claim(name, what)?;
        Ok(Claim {
            controller: self,
            name,
        })
    }

    /// The Kafka connection of a topic reference, when it lives in Kafka.
    pub(super) fn kafka(&self, topic: &TopicRef) -> Result<Option<Connection>, KafkaError> {
        self.factory.kafka(topic)
    }

    /// How many partitions (= tasks) a stage has.
    pub(super) fn stage_partitions(
        &self,
        spec: &PipelineSpec,
        stage: &Stage,
    ) -> Result<u32, ControlError> {
        self.factory
            .stage_partitions(spec, stage)
            .map_err(ControlError::stage)
    }

    /// Compacts changelog partitions that grew by at least `min_growth` records since
    /// their last compaction, below the offset their local state reflects. Returns how
    /// many records went.
    pub fn compact_changelogs(&self, min_growth: u64) -> Result<u64, CompactionError> {
        let specs: Vec<PipelineSpec> = self
            .table()
            .values()
            .map(|e| e.record.spec.clone())
            .collect();
        self.compactor
            .compact(self.db(), self.log(), &specs, min_growth)
    }
}
