//! Interactive state queries: reads of an operator's committed store, by key (in the
//! partition the key belongs to, as Kafka Streams finds a key's task) or by range, on a
//! running or a stopped pipeline. They read RocksDB beside the tasks, never through them.

use super::controller::Controller;
use super::error::ControlError;
use crate::log::partitioner::partition_for_key;
use crate::model::PipelineState;
use crate::model::topology::stage_of;
use crate::state::query::{KeyRange, committed_entries, committed_value};
use crate::state::{StateError, StoreName, TIMERS};
use std::collections::{BTreeMap, BTreeSet};

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
    /// A shared pipeline's partition that runs on no server this one can ask.
    #[error("partition {partition} cannot be read now: {reason}; try again")]
    NoOwner { partition: u32, reason: String },
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
/// In a shared pipeline the store may be unknown here (`id` none: this server never ran
/// a partition that wrote it) and known to the servers that run its partitions.
#[derive(Debug, Clone, Copy)]
pub struct QueriedStore {
    id: Option<u32>,
    partitions: u32,
}

impl QueriedStore {
    /// Whether this server holds the store (else only other servers can be asked).
    pub fn is_here(&self) -> bool {
        self.id.is_some()
    }
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
        let p = self.state_partition(store, key, partition)?;
        let Some(id) = store.id else {
            return Ok((p, None));
        };
        Ok((p, committed_value(self.db(), id, p, key)?))
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
        let Some(id) = store.id else {
            return Ok(page);
        };
        for p in from..end {
            let after_key = after
                .as_ref()
                .filter(|(ap, _)| *ap == p)
                .map(|(_, k)| k.as_slice());
            let room = limit - page.entries.len();
            let (entries, more) = committed_entries(self.db(), id, p, range, after_key, room)?;
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

    /// The other servers to ask for partitions `parts` of a shared pipeline that runs,
    /// by partition; a partition missing from the answer is read here (a pipeline this
    /// server alone runs, a partition it runs, or a stopped pipeline: its stored state
    /// here). An error when a partition runs elsewhere on no server this one can ask.
    pub fn state_owners(
        &self,
        pipeline: &str,
        parts: std::ops::Range<u32>,
    ) -> Result<BTreeMap<u32, PartitionOwner>, QueryError> {
        let mut found = BTreeMap::new();
        let Some(link) = self.cluster.get() else {
            return Ok(found);
        };
        let (shared, running, here) = self.with_entry(pipeline, |e| {
            let here: BTreeSet<u32> = e.tasks.iter().map(|t| t.id.partition).collect();
            let running = matches!(
                e.record.state,
                PipelineState::Running | PipelineState::Recovering
            );
            Ok((e.member.is_some(), running, here))
        })?;
        if !shared || !running {
            return Ok(found);
        }
        let mut owners = link.catalog.owners(pipeline);
        for p in parts.filter(|p| !here.contains(p)) {
            let unavailable = |reason: String| QueryError::NoOwner {
                partition: p,
                reason,
            };
            let Some(server) = owners.remove(&p) else {
                return Err(unavailable(
                    "no server has said it runs it yet (its partitions are moving)".into(),
                ));
            };
            if server == link.me() {
                return Err(unavailable(
                    "it is being assigned to this server, whose task has not started yet".into(),
                ));
            }
            let Some(url) = link.catalog.server_url(pipeline, &server) else {
                return Err(unavailable(format!(
                    "server {server} runs it but has not said where its API answers (an older Eddy, or one listening on every interface without --advertise-url)"
                )));
            };
            found.insert(p, PartitionOwner { server, url });
        }
        Ok(found)
    }

    /// The error for a store this server does not know.
    pub fn state_missing_store(&self, at: StoreRef<'_>) -> QueryError {
        let stores = self
            .state_stores(at.pipeline)
            .map(|all| {
                all.into_iter()
                    .filter(|(op, _)| op == at.operator)
                    .map(|(_, store)| store)
                    .collect()
            })
            .unwrap_or_default();
        QueryError::UnknownStore {
            operator: at.operator.to_string(),
            store: at.store.to_string(),
            stores,
        }
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
        let id = self
            .db()
            .existing_store_id(&name)?
            .filter(|_| at.store != TIMERS);
        if id.is_none() && !self.with_entry(at.pipeline, |e| Ok(e.member.is_some()))? {
            return Err(self.state_missing_store(at));
        }
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
