//! Maintenance: compacting the embedded changelog topics of pipelines, below the offset
//! their local state reflects, once they grew enough since their last compaction.

use crate::log::{Log, LogError, changelog_topics};
use crate::model::PipelineSpec;
use crate::state::changelog::load_marker;
use crate::state::{Db, StateError, StateScope};
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum CompactionError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Log(#[from] LogError),
}

/// Remembers, per changelog partition, its end offset at its last compaction.
#[derive(Default)]
pub(super) struct Compactor {
    compacted: Mutex<HashMap<(u32, u32), u64>>,
}

impl Compactor {
    /// Compacts the changelog partitions of `specs` that grew by at least `min_growth`
    /// records since their last compaction. Returns how many records went.
    pub(super) fn compact(
        &self,
        db: &Db,
        log: &Log,
        specs: &[PipelineSpec],
        min_growth: u64,
    ) -> Result<u64, CompactionError> {
        let mut removed = 0;
        for spec in specs {
            let ids: Vec<&str> = spec.operators.iter().map(|o| o.id()).collect();
            for (operator, store, topic) in changelog_topics(log, &spec.name, &ids) {
                for p in 0..topic.partition_count() {
                    let end = topic.end_offset(p);
                    let key = (topic.meta.id, p);
                    let last = self.last(key);
                    if end < last + min_growth {
                        continue;
                    }
                    let scope = StateScope {
                        pipeline: spec.name.clone(),
                        operator: operator.clone(),
                        partition: p,
                    };
                    let below = load_marker(db, &scope, &store)?.unwrap_or(end);
                    removed += log.compact_partition(&topic, p, below)?;
                    self.compacted
                        .lock()
                        .expect("compaction lock")
                        .insert(key, end);
                }
            }
        }
        Ok(removed)
    }

    fn last(&self, key: (u32, u32)) -> u64 {
        let compacted = self.compacted.lock().expect("compaction lock");
        compacted.get(&key).copied().unwrap_or(0)
    }
}
