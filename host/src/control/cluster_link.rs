//! This server's link to its cluster: the catalog it shares records through, and what it
//! has heard from the other servers about shared pipelines (probation and hold reports),
//! with the holds on here and the upgrades its tasks are following.

use crate::cluster::Catalog;
use crate::model::{Held, Hold, ProbationReport};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

pub(super) struct ClusterLink {
    pub(super) catalog: Arc<Catalog>,
    /// The cluster's name (the assignment groups are named after it).
    pub(super) cluster: String,
    /// Per shared pipeline, per server: its tasks in the pipeline's current upgrade.
    pub(super) probation: ServerReports<ProbationReport>,
    /// Per shared pipeline, per server: the partitions it holds for a savepoint.
    pub(super) held: ServerReports<Held>,
    /// Shared pipelines held here for a savepoint.
    pub(super) holds: Mutex<HashMap<String, Hold>>,
    /// Pipelines whose upgrade this server's tasks are following, and whether the record
    /// changed since the follower last looked.
    pub(super) reconciling: Mutex<HashMap<String, bool>>,
    /// Upgrades this server judges now: pipeline and the upgrade's `started_ms`.
    pub(super) judging: Mutex<std::collections::HashSet<(String, i64)>>,
    /// Partitions this server keeps warm (standby replicas), by pipeline and partition:
    /// when each last caught up with its changelogs.
    pub(super) standbys: Mutex<HashMap<(String, u32), i64>>,
    /// Per pipeline: read while a standby refresh writes its local state, written while
    /// that state is dropped or replaced (a restore, a deletion).
    pub(super) standby_gates: Mutex<HashMap<String, Arc<RwLock<()>>>>,
}

impl ClusterLink {
    pub(super) fn new(cluster: &str, catalog: Catalog) -> Self {
        ClusterLink {
            catalog: Arc::new(catalog),
            cluster: cluster.to_string(),
            probation: ServerReports::default(),
            held: ServerReports::default(),
            holds: Mutex::default(),
            reconciling: Mutex::default(),
            judging: Mutex::default(),
            standbys: Mutex::default(),
            standby_gates: Mutex::default(),
        }
    }

    /// This server's name in the cluster.
    pub(super) fn me(&self) -> &str {
        self.catalog.server()
    }

    /// Marks an upgrade as judged here (`true`), or no more.
    pub(super) fn set_judging(&self, pipeline: &str, started_ms: i64, on: bool) {
        let mut judging = self.judging.lock().expect("judging lock");
        let key = (pipeline.to_string(), started_ms);
        if on {
            judging.insert(key);
        } else {
            judging.remove(&key);
        }
    }

    pub(super) fn judges(&self, pipeline: &str, started_ms: i64) -> bool {
        let judging = self.judging.lock().expect("judging lock");
        judging.contains(&(pipeline.to_string(), started_ms))
    }
}

/// What each server last reported about a pipeline, and when it arrived.
pub(super) struct ServerReports<T>(Mutex<HashMap<String, Heard<T>>>);

/// Per server: its last report and when it arrived.
type Heard<T> = BTreeMap<String, (T, Instant)>;

impl<T> Default for ServerReports<T> {
    fn default() -> Self {
        ServerReports(Mutex::default())
    }
}

impl<T: Clone> ServerReports<T> {
    pub(super) fn put(&self, pipeline: &str, server: &str, report: T) {
        self.0
            .lock()
            .expect("reports lock")
            .entry(pipeline.to_string())
            .or_default()
            .insert(server.to_string(), (report, Instant::now()));
    }

    /// When `server`'s last report about `pipeline` arrived.
    pub(super) fn heard(&self, pipeline: &str, server: &str) -> Option<Instant> {
        let reports = self.0.lock().expect("reports lock");
        reports.get(pipeline)?.get(server).map(|(_, at)| *at)
    }

    /// Every server's last report about `pipeline`, by server.
    pub(super) fn of(&self, pipeline: &str) -> Vec<(String, T)> {
        self.0
            .lock()
            .expect("reports lock")
            .get(pipeline)
            .into_iter()
            .flatten()
            .map(|(s, (r, _))| (s.clone(), r.clone()))
            .collect()
    }
}
