//! Taking savepoints of pipelines (restoring them is in `restore`).

use super::controller::Controller;
use super::error::ControlError;
use super::pause::{pause, resume};
use super::savepoints::{FORMAT_VERSION, Manifest, SavedTask};
use crate::model::{PipelineRecord, stages};
use crate::record::now_ms;
use crate::state::savepoint::export_pipeline;
use crate::state::{TaskId, load_position, load_source_positions, load_upstream_watermarks};
use crate::task::TaskHandle;
use std::sync::{Arc, mpsc};

/// A savepoint being written.
pub(super) struct Export {
    thread: std::thread::JoinHandle<Result<Vec<crate::state::savepoint::StoreFile>, String>>,
    manifest: Manifest,
}

impl Controller {
    /// Takes a savepoint of a pipeline; a running pipeline pauses at one batch boundary
    /// only while a RocksDB snapshot is taken, and goes on while the files are written.
    pub fn savepoint(self: &Arc<Self>, name: &str) -> Result<Manifest, ControlError> {
        let _claim = self.claim_guard(name, "a savepoint")?;
        self.refuse_stages_in_kafka(name, "a savepoint")?;
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
        resume(&tasks);
        Ok((self.finish_export(export?)?, paused_ms))
    }

    /// Pauses every task of a running pipeline at one batch boundary (no-op when none).
    pub(super) fn pause_pipeline(
        &self,
        record: &PipelineRecord,
        tasks: &[Arc<TaskHandle>],
    ) -> Result<(), ControlError> {
        if tasks.is_empty() {
            return Ok(());
        }
        // Stages that meet in Kafka are not drained (their pause needs no drain: an
        // upgrade's; savepoints of them are refused).
        let sources: Vec<Option<String>> = stages(&record.spec)
            .into_iter()
            .map(|s| (!record.repartitions_in_kafka()).then_some(s.source))
            .collect();
        pause(self.log(), tasks, &sources).map_err(ControlError::Pause)
    }

    /// Takes the snapshot of a savepoint (the pipeline must be paused or stopped) and
    /// starts writing its files; returns once the snapshot exists.
    pub(super) fn start_export(
        &self,
        name: &str,
        record: &PipelineRecord,
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
                let pos = load_position(self.db(), &id)?;
                tasks.push(SavedTask {
                    stage: stage.index,
                    partition: p,
                    offset: pos.offset,
                    watermark: pos.watermark,
                    upstream_watermarks: load_upstream_watermarks(self.db(), &id)?,
                    sources: load_source_positions(self.db(), &id)?,
                });
            }
        }
        // The snapshot is taken on the export thread (it borrows the database there).
        let (snapped_tx, snapped_rx) = mpsc::channel::<()>();
        let db = Arc::clone(self.db());
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
            .map_err(|_| ControlError::Panicked("the savepoint export"))?
            .map_err(|e| {
                let _ = std::fs::remove_dir_all(&dir);
                ControlError::Export(e)
            })?;
        manifest.keys = stores.iter().map(|s| s.keys).sum();
        manifest.stores = stores;
        self.savepoints.write_manifest(&manifest)?;
        Ok(manifest)
    }
}
