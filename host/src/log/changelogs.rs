//! Bringing local state up to its changelogs: after state was lost or wiped, each store is
//! rebuilt from its changelog topic; otherwise only a tail the state lacks is replayed.

use super::{Log, LogError, Topic};
use crate::state::changelog::{Change, ChangeApplier, changelog_store, load_marker, marker_key};
use crate::state::{Cf, Db, StateError, StateScope};
use rocksdb::WriteBatch;
use std::sync::Arc;

/// Changes written per RocksDB write while replaying.
const REPLAY_CHUNK: usize = 50_000;

/// What a replay did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Replayed {
    /// Changelog records applied.
    pub records: u64,
    /// Store partitions that were behind their changelog.
    pub stores: u64,
}

/// Why a replay failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Log(#[from] LogError),
}

/// The changelog topics of a pipeline's operators: `(operator, store, topic)`.
pub fn changelog_topics(
    log: &Log,
    pipeline: &str,
    operators: &[&str],
) -> Vec<(String, String, Arc<Topic>)> {
    log.topics()
        .into_iter()
        .filter_map(|t| {
            changelog_store(pipeline, operators, t.name())
                .map(|(op, store)| (op.to_string(), store, t))
        })
        .collect()
}

/// Replays into local state whatever its changelogs hold beyond what the state reflects.
pub fn catch_up(
    db: &Db,
    log: &Log,
    pipeline: &str,
    operators: &[&str],
) -> Result<Replayed, ReplayError> {
    let mut done = Replayed::default();
    for (operator, store, topic) in changelog_topics(log, pipeline, operators) {
        for p in 0..topic.partition_count() {
            let scope = StateScope {
                pipeline: pipeline.to_string(),
                operator: operator.clone(),
                partition: p,
            };
            let reflected = load_marker(db, &scope, &store)?.unwrap_or(0);
            let end = topic.end_offset(p);
            if reflected >= end {
                continue;
            }
            done.records += replay(db, log, &topic, &scope, &store, reflected, end)?;
            done.stores += 1;
        }
    }
    Ok(done)
}

/// Applies changelog records `[from, to)` of `topic` to the store of `scope`.
fn replay(
    db: &Db,
    log: &Log,
    topic: &Topic,
    scope: &StateScope,
    store: &str,
    from: u64,
    to: u64,
) -> Result<u64, ReplayError> {
    let applier = ChangeApplier::new(db, scope, store)?;
    let mut applied = 0u64;
    let mut at = from;
    while at < to {
        let records = log.read(topic, scope.partition, at, REPLAY_CHUNK)?;
        let Some((last, _, _)) = records.last() else {
            break;
        };
        let next = last + 1;
        let mut wb = WriteBatch::default();
        for (offset, r, _) in &records {
            if *offset >= to {
                break;
            }
            applier.apply(db, &mut wb, Change::from_record(r)?);
            applied += 1;
        }
        let reached = next.min(to);
        wb.put_cf(
            db.cf(Cf::Meta),
            marker_key(scope, store),
            reached.to_be_bytes(),
        );
        db.write(wb)?;
        at = reached;
    }
    Ok(applied)
}
