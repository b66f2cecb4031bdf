//! Standby replicas (`num_standby_replicas`): a server of a cluster keeps a warm copy of
//! the state of partitions of a shared pipeline it does not run, tailing their changelog
//! topics into its RocksDB every couple of seconds, so that when a partition moves here
//! its restore covers only the tail. A restore that starts from the local changelog
//! marker is exactly such a tail, so a refresh is the takeover's own restore, run early.
//!
//! Which servers keep a partition warm: the live servers of the pipeline (those that
//! reported within `SILENT_AFTER_MS`) other than its owner, in name order rotated by the
//! partition, the first N. The group's cooperative-sticky assignor does not know of
//! standbys, so the partitions of a dead server go to whichever survivors it picks: with
//! N = servers - 1 every survivor holds a warm copy. (Kafka Streams steers its own
//! assignor instead; Eddy keeps librdkafka's and sizes N to the cluster.)

use super::controller::Controller;
use super::status::SILENT_AFTER_MS;
use crate::kafka::{self, KafkaNames};
use crate::model::{PipelineRecord, PipelineState};
use crate::record::now_ms;
use crate::state::TaskId;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

/// How often a standby catches up with its changelogs.
const REFRESH_EVERY: Duration = Duration::from_secs(2);

/// The servers (other than `owner`) that keep partition `p` warm.
pub(super) fn standby_servers(owner: &str, live: &[String], n: u32, p: u32) -> Vec<String> {
    let mut others: Vec<&String> = live.iter().filter(|s| *s != owner).collect();
    others.sort();
    others.dedup();
    if others.is_empty() {
        return Vec::new();
    }
    let k = p as usize % others.len();
    others.rotate_left(k);
    others.into_iter().take(n as usize).cloned().collect()
}

/// Refreshes the standbys of this server until the controller or its catalog goes away.
pub(super) fn keep_standbys(controller: Weak<Controller>) {
    loop {
        std::thread::sleep(REFRESH_EVERY);
        let Some(c) = super::cluster_members::linked(&controller) else {
            return;
        };
        let link = c.cluster.get().expect("linked");
        let work = c.standby_work();
        // A partition no longer kept warm here (it runs here now, or moved) is forgotten.
        link.standbys
            .lock()
            .expect("standbys lock")
            .retain(|(name, p), _| {
                work.iter()
                    .any(|(r, ps)| r.spec.name == *name && ps.contains(p))
            });
        for (record, partitions) in work {
            for p in partitions {
                c.refresh_standby(&record, p);
            }
        }
    }
}

impl Controller {
    /// The shared pipelines with standbys, settled and running here, and the partitions
    /// of each this server keeps warm.
    fn standby_work(&self) -> Vec<(PipelineRecord, Vec<u32>)> {
        let Some(link) = self.cluster.get() else {
            return Vec::new();
        };
        let me = link.me().to_string();
        let pipelines = self.table();
        pipelines
            .values()
            .filter(|e| e.record.spec.settings.num_standby_replicas > 0)
            .filter(|e| e.record.state == PipelineState::Running)
            .filter(|e| {
                e.busy.is_none() && e.arriving.is_empty() && self.distributed(&e.record.spec)
            })
            .filter_map(|e| {
                let member = e.member.as_ref()?;
                let now = now_ms();
                let mut live: Vec<String> = link
                    .catalog
                    .reports(e.name())
                    .into_iter()
                    .filter(|(_, (heard, _))| now - heard <= SILENT_AFTER_MS as i64)
                    .map(|(s, _)| s)
                    .collect();
                live.push(me.clone());
                let owners = link.catalog.owners(e.name());
                let n = e.record.spec.settings.num_standby_replicas;
                let warm: Vec<u32> = (0..member.partitions)
                    .filter(|p| !e.tasks.iter().any(|t| t.id.partition == *p))
                    .filter(|p| {
                        owners.get(p).is_some_and(|owner| {
                            *owner != me && standby_servers(owner, &live, n, *p).contains(&me)
                        })
                    })
                    .collect();
                Some((e.record.clone(), warm))
            })
            .collect()
    }

    /// Whether a task of `name`'s partition `p` runs, or starts, here (or the pipeline
    /// is not running, or gone). Asked while holding the partition's restore lock, which a
    /// start may wait for under the table's lock: a busy table counts as yes.
    fn runs_here(&self, name: &str, p: u32) -> bool {
        let Ok(pipelines) = self.pipelines.try_lock() else {
            return true;
        };
        pipelines.get(name).is_none_or(|e| {
            e.record.state != PipelineState::Running
                || e.busy.is_some()
                || e.arriving.contains(&p)
                || e.leaving.iter().any(|t| t.id.partition == p)
                || e.tasks.iter().any(|t| t.id.partition == p)
        })
    }

    /// The gate of `pipeline`'s standby refreshes (see `ClusterLink::standby_gates`).
    pub(super) fn standby_gate(&self, pipeline: &str) -> Option<Arc<RwLock<()>>> {
        let link = self.cluster.get()?;
        let mut gates = link.standby_gates.lock().expect("standby gates lock");
        Some(Arc::clone(gates.entry(pipeline.to_string()).or_default()))
    }

    /// Brings the local state of partition `p` up to its changelogs in Kafka. Skipped
    /// while another restore of it runs (a takeover's), once its task runs here, and
    /// while the pipeline's local state is dropped or replaced.
    fn refresh_standby(&self, record: &PipelineRecord, p: u32) {
        let spec = &record.spec;
        let Some(gate) = self.standby_gate(&spec.name) else {
            return;
        };
        let Ok(_open) = gate.try_read() else {
            return;
        };
        // Every stage's task of the partition (they move together).
        for stage in kafka::stages_of(record) {
            let id = TaskId {
                pipeline: spec.name.clone(),
                stage: stage.index,
                partition: p,
            };
            let lock = self.factory.restore_lock(&id);
            let Ok(_held) = lock.try_lock() else {
                return;
            };
            if self.runs_here(&spec.name, p) {
                return;
            }
            let Ok(Some(conn)) = self.factory.stage_sink(record, &stage) else {
                return;
            };
            let ops: Vec<&str> = stage.ops.iter().map(|&i| spec.operators[i].id()).collect();
            let progress = kafka::RestoreProgress::default();
            let names = KafkaNames::of(record);
            if let Err(e) =
                kafka::catch_up_standby(self.db(), &conn, (&id, &names), &ops, &progress)
            {
                tracing::debug!(pipeline = %spec.name, partition = p, "standby refresh: {e}");
                return;
            }
        }
        if let Some(link) = self.cluster.get() {
            let mut standbys = link.standbys.lock().expect("standbys lock");
            standbys.insert((spec.name.clone(), p), now_ms());
        }
    }

    /// The partitions of `pipeline` this server keeps warm, with when each last caught
    /// up with its changelogs.
    pub(super) fn standbys_of(&self, pipeline: &str) -> BTreeMap<u32, i64> {
        let Some(link) = self.cluster.get() else {
            return BTreeMap::new();
        };
        let standbys = link.standbys.lock().expect("standbys lock");
        standbys
            .iter()
            .filter(|((name, _), _)| name == pipeline)
            .map(|((_, p), at)| (*p, *at))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn standbys_are_other_live_servers_spread_over_the_partitions() {
        let live = names(&["c", "a", "b"]);
        assert_eq!(standby_servers("a", &live, 1, 0), names(&["b"]));
        assert_eq!(standby_servers("a", &live, 1, 1), names(&["c"]));
        assert_eq!(standby_servers("a", &live, 2, 1), names(&["c", "b"]));
        // Never the owner, never more than there are others.
        assert_eq!(standby_servers("b", &live, 5, 0), names(&["a", "c"]));
        assert!(standby_servers("a", &names(&["a"]), 1, 0).is_empty());
        // With two servers each keeps the other's partitions warm.
        assert_eq!(
            standby_servers("a", &names(&["a", "b"]), 1, 3),
            names(&["b"])
        );
    }
}
