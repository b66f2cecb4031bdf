//! What a server of a cluster shares through the catalog (pipeline records, operators,
//! savepoints, restores, deletions) and how it applies what the others shared.

use super::controller::Controller;
use super::entry::Entry;
use super::error::ControlError;
use super::savepoints::{Manifest, SavepointError};
use crate::cluster::CatalogEvent;
use crate::model::{PipelineRecord, PipelineState, UpgradeResult};
use crate::record::now_ms;
use crate::registry::{OperatorVersion, RegistryError};
use std::collections::btree_map;
use std::sync::Arc;

impl Controller {
    /// Tells the cluster about a shared pipeline's new record.
    pub(super) fn share(&self, record: &PipelineRecord) {
        if let Some(link) = self
            .cluster
            .get()
            .filter(|_| self.distributed(&record.spec))
            && let Err(e) = link
                .catalog
                .publish_pipeline(&record.spec.name, Some(record))
        {
            tracing::error!(pipeline = %record.spec.name, "cannot share the pipeline with the cluster: {e}");
        }
    }

    pub(super) fn share_deleted(&self, name: &str) {
        if let Some(link) = self.cluster.get()
            && let Err(e) = link.catalog.publish_pipeline(name, None)
        {
            tracing::error!(pipeline = %name, "cannot share the deletion with the cluster: {e}");
        }
    }

    /// Stores an uploaded operator and, in a cluster, shares it with every server.
    pub fn push_operator(
        &self,
        name: &str,
        bytes: &[u8],
    ) -> Result<(OperatorVersion, bool), ControlError> {
        let (v, created) = self.registry().put(name, bytes)?;
        if let Some(link) = self.cluster.get() {
            // Shared even when this server had it: another may not.
            link.catalog
                .publish_operator(&v, bytes)
                .map_err(ControlError::OperatorNotShared)?;
        }
        Ok((v, created))
    }

    /// Shares a new savepoint of a shared pipeline with every server, so any of them can
    /// restore it. (The savepoint stays here when that fails: the error is logged.)
    pub(super) fn share_savepoint(&self, m: &Manifest) {
        let Some(link) = self.cluster.get().filter(|_| self.distributed(&m.spec)) else {
            return;
        };
        let shared = self
            .savepoints
            .archive_bytes(&m.id)
            .map_err(|e| e.to_string())
            .and_then(|a| {
                link.catalog
                    .publish_savepoint(&m.id, &a)
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = shared {
            tracing::error!(savepoint = %m.id, "cannot share the savepoint with the cluster: {e}");
        }
    }

    /// Another server restored `pipeline` into Kafka: this server's local state of it (and
    /// its positions) describe the time before, so they go, once per restore; its tasks
    /// then rebuild from Kafka when they start. (The pipeline is stopped everywhere
    /// during a restore, and the catalog delivers this before any later start.)
    fn drop_restored_state(&self, pipeline: &str, tag: &str) -> Result<(), ControlError> {
        if self.store.restored_tag(pipeline).as_deref() == Some(tag.as_bytes()) {
            return Ok(());
        }
        if let Some(e) = self.table().get(pipeline)
            && e.tasks.iter().any(|t| !t.is_finished())
        {
            return Err(ControlError::StillRunsHere(pipeline.to_string()));
        }
        let gate = self.standby_gate(pipeline);
        let _closed = gate.as_ref().map(|g| g.write().expect("standby gate"));
        self.db().delete_pipeline_state(pipeline)?;
        self.store.set_restored_tag(pipeline, tag)?;
        tracing::info!(%pipeline, "dropped local state replaced by a restore on another server");
        Ok(())
    }

    /// Tells the other servers that a shared pipeline was restored here.
    pub(super) fn share_restore(
        &self,
        pipeline: &str,
        savepoint: &str,
    ) -> Result<(), ControlError> {
        let Some(link) = self.cluster.get() else {
            return Ok(());
        };
        let tag = format!("{savepoint}@{}", now_ms());
        link.catalog
            .publish_restored(pipeline, &tag)
            .map_err(ControlError::RestoreNotShared)
    }

    /// Deletes a savepoint here and, in a cluster, on every server.
    pub fn delete_savepoint(&self, id: &str) -> Result<(), ControlError> {
        for pipeline in self.store.journaled_restores()? {
            if self.store.unfinished_restore(&pipeline).as_deref() == Some(id) {
                return Err(ControlError::SavepointInRestore {
                    id: id.to_string(),
                    pipeline,
                });
            }
        }
        self.savepoints.delete(id)?;
        if let Some(link) = self.cluster.get() {
            link.catalog
                .publish_savepoint_deleted(id)
                .map_err(ControlError::DeletionNotShared)?;
        }
        Ok(())
    }

    /// Deletes one version or all versions of an operator (refused while in use), on
    /// every server of a cluster.
    pub fn delete_operator(&self, name: &str, version: Option<u32>) -> Result<(), ControlError> {
        let doomed = self
            .registry()
            .delete(name, version, |n, v| self.operator_in_use(n, v))?;
        if let Some(link) = self.cluster.get() {
            for v in doomed {
                link.catalog
                    .publish_operator_deleted(&v.name, v.version)
                    .map_err(ControlError::Catalog)?;
            }
        }
        Ok(())
    }

    /// Applies a change another server made.
    pub(super) fn apply_catalog(self: &Arc<Self>, event: CatalogEvent) {
        match event {
            CatalogEvent::Operator { version, bytes } => {
                match self
                    .registry()
                    .adopt(&version.name, version.version, &bytes)
                {
                    Ok((_, true)) => {
                        tracing::info!(operator = %version.name, version = version.version, "operator from the cluster");
                    }
                    Ok((_, false)) => {}
                    Err(e) => {
                        tracing::error!(operator = %version.name, "cannot take the cluster's operator: {e}")
                    }
                }
            }
            CatalogEvent::OperatorDeleted { name, version } => {
                match self
                    .registry()
                    .delete(&name, Some(version), |n, v| self.operator_in_use(n, v))
                {
                    Ok(_)
                    | Err(RegistryError::NotFound(_) | RegistryError::NoSuchVersion { .. }) => {}
                    Err(e) => {
                        tracing::warn!(operator = %name, "keeping a version the cluster deleted: {e}")
                    }
                }
            }
            CatalogEvent::Pipeline { name, record: None } => match self.delete_here(&name) {
                Ok(_) | Err(ControlError::NotFound(_)) => {}
                Err(e) => {
                    tracing::error!(pipeline = %name, "cannot delete as the cluster did: {e}")
                }
            },
            CatalogEvent::Savepoint { id, archive } => {
                if self.savepoints.get(&id).is_ok() {
                    return;
                }
                match self.savepoints.import(&archive) {
                    Ok(m) => {
                        tracing::info!(savepoint = %m.id, pipeline = %m.pipeline, "savepoint from the cluster")
                    }
                    Err(e) => {
                        tracing::error!(savepoint = %id, "cannot take the cluster's savepoint: {e}")
                    }
                }
            }
            CatalogEvent::Restored { pipeline, tag } => {
                if let Err(e) = self.drop_restored_state(&pipeline, &tag) {
                    tracing::error!(%pipeline, "cannot drop the local state a restore replaced: {e}");
                }
            }
            CatalogEvent::StageClock {
                pipeline,
                stage,
                server,
                at_ms,
                tasks,
            } => {
                if let Some(clock) = self.factory.clock(&pipeline, stage) {
                    clock.report_remote(&server, at_ms, tasks);
                }
            }
            CatalogEvent::SavepointDeleted { id } => match self.savepoints.delete(&id) {
                Ok(()) | Err(SavepointError::NotFound(_)) => {}
                Err(e) => {
                    tracing::error!(savepoint = %id, "cannot delete as the cluster did: {e}")
                }
            },
            CatalogEvent::Pipeline {
                name,
                record: Some(record),
            } => {
                let upgrade = record.upgrades.last().cloned();
                if let Err(e) = self.adopt_pipeline(*record) {
                    tracing::error!(pipeline = %name, "cannot take the cluster's pipeline: {e}");
                }
                // This server's tasks follow the pipeline's upgrades.
                if upgrade.is_some_and(|u| {
                    u.result == UpgradeResult::Probation
                        || u.finished_ms.is_some_and(|f| now_ms() - f < 600_000)
                }) {
                    self.reconcile_upgrade(&name);
                }
            }
            CatalogEvent::Probation {
                pipeline,
                server,
                report,
            } => {
                if let Some(link) = self.cluster.get() {
                    link.probation.put(&pipeline, &server, report);
                }
            }
            CatalogEvent::Hold { pipeline, hold } => self.apply_hold(&pipeline, hold),
            CatalogEvent::Held {
                pipeline,
                server,
                held,
            } => {
                if let Some(link) = self.cluster.get() {
                    link.held.put(&pipeline, &server, held);
                }
            }
        }
    }

    /// Takes a shared pipeline's record: a new pipeline joins its group here, a started
    /// or stopped one starts or stops here too.
    fn adopt_pipeline(&self, mut record: PipelineRecord) -> Result<(), ControlError> {
        let name = record.spec.name.clone();
        let mut pipelines = self.table();
        let wanted = record.state;
        let entry = match pipelines.entry(name.clone()) {
            btree_map::Entry::Vacant(v) => {
                // New here: start as stopped, then follow the wanted state below.
                record.state = PipelineState::Stopped;
                record.reason = None;
                tracing::info!(pipeline = %name, "pipeline from the cluster");
                v.insert(Entry::idle(record))
            }
            btree_map::Entry::Occupied(o) => {
                let entry = o.into_mut();
                entry.record.operators = record.operators;
                entry.record.upgrades = record.upgrades;
                entry.record.canary = record.canary;
                // A restore elsewhere may have moved the pipeline's Kafka names into the
                // cluster's (never back).
                if record.namespace.is_some() {
                    entry.record.namespace = record.namespace;
                }
                // An upgrade may have changed an operator's config.
                for (mine, theirs) in entry
                    .record
                    .spec
                    .operators
                    .iter_mut()
                    .zip(&record.spec.operators)
                {
                    mine.config = theirs.config.clone();
                }
                entry
            }
        };
        let running = entry.record.state == PipelineState::Running;
        match wanted {
            PipelineState::Running if !running => match self.run_entry(entry) {
                Ok(()) => self
                    .store
                    .set_state(&mut entry.record, PipelineState::Running, None)?,
                Err(reason) => self.fail_or_recover(entry, reason.to_string()),
            },
            PipelineState::Stopped if running => {
                self.halt_entry(entry);
                self.store
                    .set_state(&mut entry.record, PipelineState::Stopped, None)?;
            }
            _ => {
                let state = entry.record.state;
                let reason = entry.record.reason.clone();
                self.store.set_state(&mut entry.record, state, reason)?;
            }
        }
        drop(pipelines);
        self.refresh_gauges();
        Ok(())
    }
}
