//! Interactive state queries: reads of an operator's committed store, by key (in the
//! partition the key belongs to, as Kafka Streams finds a key's task) or by range, on a
//! running or a stopped pipeline. They read RocksDB beside the tasks, never through them.

use super::controller::Controller;
use super::error::ControlError;
use crate::log::partitioner::partition_for_key;
use crate::model::topology::stage_of;
use crate::state::query::{KeyRange, committed_entries, committed_value};
use crate::state::{StateError, StoreName, TIMERS};

/// The store a query reads: an operator's store in a pipeline.
#[derive(Debug, Clone, Copy)]
pub struct StoreRef<'a> {
    pub pipeline: &'a str,
    pub operator: &'a str,
    pub store: &'a str,
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("pipeline {pipeline:?} has no operator {operator:?} (it has {ids:?})")]
    UnknownOperator {
        pipeline: String,
        operator: String,
        ids: Vec<String>,
    },
    #[error("operator {operator:?} has no store {store:?} (it has {stores:?})")]
    UnknownStore {
        operator: String,
        store: String,
        stores: Vec<String>,
    },
    #[error("partition {partition} is out of range: the operator runs in {partitions} partitions (0 to {})", .partitions.saturating_sub(1))]
    Partition { partition: u32, partitions: u32 },
    #[error(transparent)]
    State(#[from] StateError),
}

/// One committed entry of a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateEntry {
    pub partition: u32,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// A page of a scan, and where the next one goes on from (a partition and the last key
/// read there).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct StatePage {
    pub entries: Vec<StateEntry>,
    pub next: Option<(u32, Vec<u8>)>,
}

/// A store a query found: its key-prefix id and how many partitions its operator runs in.
#[derive(Debug, Clone, Copy)]
pub struct QueriedStore {
    id: u32,
    partitions: u32,
}

/// Another server of the cluster that runs a partition a query reads, and where its API
/// answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionOwner {
    pub server: String,
    pub url: String,
}

impl Controller {
    /// The committed value under `key` in the partition the key belongs to (or in
    /// `partition`), with that partition; `None` when there is none.
    pub fn state_get(
        &self,
        store: QueriedStore,
        key: &[u8],
        partition: Option<u32>,
    ) -> Result<(u32, Option<Vec<u8>>), QueryError> {
        let p = match partition {
            Some(p) => store.check(p)?,
            None => partition_for_key(key, store.partitions),
        };
        Ok((p, committed_value(self.db(), store.id, p, key)?))
    }

    /// Up to `limit` committed entries in `range`, of one partition or of every one (in
    /// partition order, each in key order), going on from `after` (a page's `next`).
    pub fn state_scan(
        &self,
        store: QueriedStore,
        range: &KeyRange,
        partition: Option<u32>,
        after: Option<(u32, Vec<u8>)>,
        limit: usize,
    ) -> Result<StatePage, QueryError> {
        let (first, end) = match partition {
            Some(p) => (store.check(p)?, p + 1),
            None => (0, store.partitions),
        };
        let from = match &after {
            Some((p, _)) => store.check(*p)?.max(first),
            None => first,
        };
        let mut page = StatePage::default();
        for p in from..end {
            let after_key = after
                .as_ref()
                .filter(|(ap, _)| *ap == p)
                .map(|(_, k)| k.as_slice());
            let room = limit - page.entries.len();
            let (entries, more) =
                committed_entries(self.db(), store.id, p, range, after_key, room)?;
            page.entries
                .extend(entries.into_iter().map(|(key, value)| StateEntry {
                    partition: p,
                    key,
                    value,
                }));
            let full = page.entries.len() == limit;
            if more || (full && p + 1 < end) {
                let last = page.entries.last().map(|e| e.key.clone());
                // A partition that filled the page goes on after its last key; an empty
                // one cannot fill it.
                page.next = last.map(|k| (p, k));
                break;
            }
        }
        Ok(page)
    }

    /// The partition a key read goes to: `partition` when given (checked), else the
    /// key's own.
    pub fn state_partition(
        &self,
        store: QueriedStore,
        key: &[u8],
        partition: Option<u32>,
    ) -> Result<u32, QueryError> {
        match partition {
            Some(p) => store.check(p),
            None => Ok(partition_for_key(key, store.partitions)),
        }
    }

    /// The partitions a scan reads: `partition` alone (checked), or every one.
    pub fn state_partitions(
        &self,
        store: QueriedStore,
        partition: Option<u32>,
    ) -> Result<std::ops::Range<u32>, QueryError> {
        match partition {
            Some(p) => Ok(store.check(p)?..p + 1),
            None => Ok(0..store.partitions),
        }
    }

    /// The other server that runs partition `p` of a shared pipeline, when one does and
    /// said where it answers; `None` when this server runs it or nobody is known to
    /// (then the state here is the one to read: a stopped pipeline's, or the last run's).
    pub fn state_owner(&self, pipeline: &str, p: u32) -> Option<PartitionOwner> {
        let link = self.cluster.get()?;
        let local = self
            .with_entry(pipeline, |e| {
                Ok(e.member.is_none() || e.tasks.iter().any(|t| t.id.partition == p))
            })
            .unwrap_or(true);
        if local {
            return None;
        }
        let server = link.catalog.owners(pipeline).remove(&p)?;
        if server == link.me() {
            return None;
        }
        let url = link.catalog.server_url(pipeline, &server)?;
        Some(PartitionOwner { server, url })
    }

    /// The stores a pipeline's operators have written, by operator (in the spec's order)
    /// and name.
    pub fn state_stores(&self, pipeline: &str) -> Result<Vec<(String, String)>, QueryError> {
        let spec = self.with_entry(pipeline, |e| Ok(e.record.spec.clone()))?;
        let mut found = Vec::new();
        for op in &spec.operators {
            let stores = self.db().stores(pipeline, Some(op.id()))?;
            found.extend(
                stores
                    .into_iter()
                    .filter(|(n, _)| n.store != TIMERS)
                    .map(|(n, _)| (n.operator, n.store)),
            );
        }
        Ok(found)
    }

    /// The store `at` names, if the pipeline, the operator and the store exist.
    pub fn state_store(&self, at: StoreRef<'_>) -> Result<QueriedStore, QueryError> {
        let spec = self.with_entry(at.pipeline, |e| Ok(e.record.spec.clone()))?;
        let Some(i) = spec.operators.iter().position(|o| o.id() == at.operator) else {
            return Err(QueryError::UnknownOperator {
                pipeline: at.pipeline.to_string(),
                operator: at.operator.to_string(),
                ids: spec.operators.iter().map(|o| o.id().to_string()).collect(),
            });
        };
        let name = StoreName {
            pipeline: at.pipeline.to_string(),
            operator: at.operator.to_string(),
            store: at.store.to_string(),
        };
        let id = match self.db().existing_store_id(&name)? {
            Some(id) if at.store != TIMERS => id,
            _ => {
                let stores = self.db().stores(at.pipeline, Some(at.operator))?;
                return Err(QueryError::UnknownStore {
                    operator: at.operator.to_string(),
                    store: at.store.to_string(),
                    stores: stores
                        .into_iter()
                        .map(|(n, _)| n.store)
                        .filter(|s| s != TIMERS)
                        .collect(),
                });
            }
        };
        let (stage, _) = stage_of(&spec, i).expect("every operator is in a stage");
        let partitions = self.stage_partitions(&spec, &stage)?;
        Ok(QueriedStore { id, partitions })
    }
}

impl QueriedStore {
    fn check(&self, partition: u32) -> Result<u32, QueryError> {
        if partition < self.partitions {
            Ok(partition)
        } else {
            Err(QueryError::Partition {
                partition,
                partitions: self.partitions,
            })
        }
    }
}
