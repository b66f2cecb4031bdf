//! Persistence of the control plane's records: pipeline records, restore journals and
//! the tags of restores made elsewhere in a cluster (keys in `state::records`).

use crate::model::{PipelineRecord, PipelineState};
use crate::record::now_ms;
use crate::state::records::{RecordKind, delete_record, get_record, list_records, put_record};
use crate::state::{Db, StateError};
use std::sync::Arc;

pub(super) struct PipelineStore {
    db: Arc<Db>,
}

impl PipelineStore {
    pub(super) fn new(db: Arc<Db>) -> Self {
        PipelineStore { db }
    }

    /// Every stored pipeline record, by name.
    pub(super) fn load_all(&self) -> Result<Vec<PipelineRecord>, StateError> {
        list_records(&self.db, RecordKind::Pipeline)?
            .into_iter()
            .map(|(_, v)| {
                serde_json::from_slice(&v).map_err(|e| StateError::Corrupt {
                    what: "pipeline record",
                    detail: e.to_string(),
                })
            })
            .collect()
    }

    pub(super) fn save(&self, record: &PipelineRecord) -> Result<(), StateError> {
        let value = serde_json::to_vec(record).expect("records serialize");
        put_record(&self.db, RecordKind::Pipeline, &record.spec.name, &value)
    }

    /// Moves a record to `state` (with the reason) and stores it.
    pub(super) fn set_state(
        &self,
        record: &mut PipelineRecord,
        state: PipelineState,
        reason: Option<String>,
    ) -> Result<(), StateError> {
        record.state = state;
        record.reason = reason;
        record.updated_ms = now_ms();
        self.save(record)
    }

    /// Stores a record as it is (its `updated_ms` moves).
    pub(super) fn touch(&self, record: &mut PipelineRecord) -> Result<(), StateError> {
        let (state, reason) = (record.state, record.reason.clone());
        self.set_state(record, state, reason)
    }

    pub(super) fn delete(&self, name: &str) -> Result<(), StateError> {
        delete_record(&self.db, RecordKind::Pipeline, name)
    }

    /// Notes that a restore of `pipeline` from `savepoint` begins to replace its state.
    pub(super) fn begin_restore(&self, pipeline: &str, savepoint: &str) -> Result<(), StateError> {
        put_record(
            &self.db,
            RecordKind::RestoreJournal,
            pipeline,
            savepoint.as_bytes(),
        )
    }

    /// The savepoint of a restore of `pipeline` that began but did not finish, if any.
    pub(super) fn unfinished_restore(&self, pipeline: &str) -> Option<String> {
        get_record(&self.db, RecordKind::RestoreJournal, pipeline)
            .ok()
            .flatten()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    /// Forgets a finished restore (or the journal of a deleted pipeline).
    pub(super) fn end_restore(&self, pipeline: &str) -> Result<(), StateError> {
        delete_record(&self.db, RecordKind::RestoreJournal, pipeline)
    }

    /// Every pipeline with a restore journal.
    pub(super) fn journaled_restores(&self) -> Result<Vec<String>, StateError> {
        Ok(list_records(&self.db, RecordKind::RestoreJournal)?
            .into_iter()
            .map(|(name, _)| name)
            .collect())
    }

    /// The tag of the last restore of `pipeline` made on another server that this
    /// server followed.
    pub(super) fn restored_tag(&self, pipeline: &str) -> Option<Vec<u8>> {
        get_record(&self.db, RecordKind::RestoredTag, pipeline)
            .ok()
            .flatten()
    }

    pub(super) fn set_restored_tag(&self, pipeline: &str, tag: &str) -> Result<(), StateError> {
        put_record(&self.db, RecordKind::RestoredTag, pipeline, tag.as_bytes())
    }
}
