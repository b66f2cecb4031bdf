//! One task commit being assembled: state changes, timers, the position and (for an
//! embedded sink) the outputs, written to RocksDB in one atomic write.

use super::changelog::marker_key;
use super::meta::{
    SourcePosition, TaskId, TaskPosition, put_position, put_source_positions,
    put_upstream_watermarks,
};
use super::{Cf, Db, StateError, StateScope};
use rocksdb::WriteBatch;
use std::sync::Arc;

/// What the next atomic write of a task holds. Sinks add to it and write it; nothing
/// outside `state` and the embedded log (which lives in the same database) sees the
/// RocksDB batch inside.
pub struct Commit {
    db: Arc<Db>,
    batch: WriteBatch,
}

impl Commit {
    pub fn new(db: Arc<Db>) -> Self {
        Commit {
            db,
            batch: WriteBatch::default(),
        }
    }

    pub fn db(&self) -> &Arc<Db> {
        &self.db
    }

    /// Bytes the write holds so far.
    pub fn size(&self) -> usize {
        self.batch.size_in_bytes()
    }

    /// The task's new position.
    pub fn put_position(&mut self, task: &TaskId, position: TaskPosition) {
        put_position(&self.db, &mut self.batch, task, position);
    }

    /// The watermarks of a later-stage task's upstream tasks (beside its position, so a
    /// pipeline's deletion takes them too).
    pub fn put_upstream_watermarks(&mut self, task: &TaskId, watermarks: &[i64]) {
        put_upstream_watermarks(&self.db, &mut self.batch, task, watermarks);
    }

    /// Where a task with several sources stands in each.
    pub fn put_source_positions(&mut self, task: &TaskId, sources: &[SourcePosition]) {
        put_source_positions(&self.db, &mut self.batch, task, sources);
    }

    /// The changelog offset a store's local state reflects once this commit lands.
    pub fn put_changelog_marker(&mut self, scope: &StateScope, store: &str, offset: u64) {
        self.batch.put_cf(
            self.db.cf(Cf::Meta),
            marker_key(scope, store),
            offset.to_be_bytes(),
        );
    }

    /// The state format the operator's state is in once this commit lands.
    pub fn put_state_version(&mut self, pipeline: &str, operator: &str, version: u32) {
        self.batch.put_cf(
            self.db.cf(Cf::Meta),
            super::keys::state_version_key(pipeline, operator),
            version.to_be_bytes(),
        );
    }

    /// The RocksDB batch, for the state stores and the embedded log.
    pub(crate) fn batch(&mut self) -> &mut WriteBatch {
        &mut self.batch
    }

    pub(crate) fn into_batch(self) -> WriteBatch {
        self.batch
    }

    /// Writes everything at once.
    pub fn write(self) -> Result<(), StateError> {
        self.db.write(self.batch)
    }
}
