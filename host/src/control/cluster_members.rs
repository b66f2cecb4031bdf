//! The controller in a cluster (`eddy serve --cluster NAME`): pipelines whose source and
//! sink are Kafka topics are shared, and each server runs the partitions the pipeline's
//! assignment group gives it. This file holds the membership side: joining the cluster
//! and each pipeline's group, starting and stopping tasks as partitions come and go, and
//! sharing stage clocks; what travels through the catalog is in `cluster_sharing`.

use super::cluster_link::ClusterLink;
use super::controller::Controller;
use super::entry::{Entry, Member, STARTING};
use super::error::{ControlError, RunError};
use super::run::stop_handles;
use crate::cluster::{
    AssignmentHandler, Catalog, CatalogApplier, CatalogEvent, Membership, assignment_group,
};
use crate::kafka;
use crate::model::{Held, PipelineRecord, PipelineSpec, PipelineState, TaskClock, TaskProgress};
use crate::task::Command;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// How long a revocation waits for a task to commit and stop.
const REVOKE_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether tasks started from `before` run what `now` says: the same spec, operator
/// versions, canary and shadow.
fn same_plan(now: &PipelineRecord, before: &PipelineRecord) -> bool {
    let versions = |r: &PipelineRecord| {
        r.operators
            .iter()
            .map(|o| (o.id.clone(), o.name.clone(), o.version))
            .collect::<Vec<_>>()
    };
    let json = |r: &PipelineRecord| {
        serde_json::to_value((&r.spec, &r.canary, &r.shadow, &r.namespace)).unwrap_or_default()
    };
    versions(now) == versions(before) && json(now) == json(before)
}

/// Turns a group's assignments into started and stopped tasks.
struct PipelineMember {
    controller: Weak<Controller>,
    pipeline: String,
    active: Arc<AtomicBool>,
    assigned: Arc<Mutex<Vec<u32>>>,
}

impl AssignmentHandler for PipelineMember {
    fn assigned(&self, partitions: Vec<u32>) {
        {
            // Added to what the group gave before (rebalances are incremental).
            let mut assigned = self.assigned.lock().expect("assignment lock");
            assigned.extend(&partitions);
            assigned.sort_unstable();
            assigned.dedup();
        }
        if let Some(c) = self.controller.upgrade() {
            c.on_assigned(&self.pipeline, &self.active, &partitions);
        }
    }

    fn revoked(&self, partitions: Vec<u32>) {
        self.assigned
            .lock()
            .expect("assignment lock")
            .retain(|p| !partitions.contains(p));
        if let Some(c) = self.controller.upgrade() {
            c.on_revoked(&self.pipeline, &partitions);
        }
    }
}

/// Applies what other servers wrote to the catalog.
struct Applier(Weak<Controller>);

impl CatalogApplier for Applier {
    fn apply(&self, event: CatalogEvent) {
        if let Some(c) = self.0.upgrade() {
            c.apply_catalog(event);
        }
    }
}

/// How often this server shares its stage clocks; unchanged ones at least every
/// [`CLOCK_HEARTBEAT`], well within how long the other servers trust a report
/// ([`crate::task::REMOTE_REPORT_TTL_MS`]).
const CLOCK_EVERY: Duration = Duration::from_millis(500);
const CLOCK_HEARTBEAT: Duration = Duration::from_secs(3);
/// How often this server tells where its tasks of each shared pipeline stand (also
/// what tells the others it is alive: see `status::SILENT_AFTER_MS`).
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// The controller, while it lives and follows its cluster's catalog (the background
/// threads of a cluster server end when it does not).
pub(super) fn linked(controller: &Weak<Controller>) -> Option<Arc<Controller>> {
    let c = controller.upgrade()?;
    let following = c.cluster.get().is_some_and(|l| !l.catalog.is_shut_down());
    following.then_some(c)
}

/// Shares the stage clocks and the tasks' progress until the controller or its catalog
/// goes away.
fn share_clocks(controller: Weak<Controller>) {
    let mut sent: HashMap<(String, u32), (Vec<TaskClock>, Instant)> = HashMap::new();
    let mut progress_sent = Instant::now();
    loop {
        std::thread::sleep(CLOCK_EVERY);
        let Some(c) = linked(&controller) else {
            return;
        };
        let link = c.cluster.get().expect("linked");
        for (key, tasks) in c.local_clocks() {
            let due = sent
                .get(&key)
                .is_none_or(|(last, at)| *last != tasks || at.elapsed() >= CLOCK_HEARTBEAT);
            if !due {
                continue;
            }
            match link.catalog.publish_clock(&key.0, key.1, &tasks) {
                Ok(()) => {
                    sent.insert(key, (tasks, Instant::now()));
                }
                Err(e) => {
                    tracing::warn!(pipeline = %key.0, "cannot share the stage's watermarks: {e}")
                }
            }
        }
        if progress_sent.elapsed() >= PROGRESS_EVERY {
            progress_sent = Instant::now();
            for (pipeline, tasks) in c.local_progress() {
                if let Err(e) = link.catalog.publish_progress(&pipeline, &tasks) {
                    tracing::warn!(%pipeline, "cannot tell the cluster where the tasks stand: {e}");
                }
            }
        }
    }
}

impl Controller {
    /// Makes this server part of `cluster` (call before [`Controller::boot`]); the
    /// catalog is followed from [`Controller::follow_cluster`] on.
    pub fn join_cluster(self: &Arc<Self>, cluster: &str, catalog: Catalog) {
        let _ = self.me.set(Arc::downgrade(self));
        let _ = self.cluster.set(ClusterLink::new(cluster, catalog));
    }

    /// Starts applying the cluster catalog (after boot: local pipelines are loaded).
    pub fn follow_cluster(self: &Arc<Self>) -> Result<(), ControlError> {
        let Some(link) = self.cluster.get() else {
            return Ok(());
        };
        link.catalog
            .follow(Arc::new(Applier(Arc::downgrade(self))))
            .map_err(ControlError::Catalog)?;
        let me = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("eddy-clocks".into())
            .spawn(move || share_clocks(me))
            .map_err(ControlError::Thread)?;
        let me = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("eddy-standbys".into())
            .spawn(move || super::standbys::keep_standbys(me))
            .map_err(ControlError::Thread)?;
        Ok(())
    }

    /// This server's tasks of each shared pipeline stage with an idle timeout, for the
    /// stage clocks of the other servers: `(pipeline, stage)` and the tasks.
    fn local_clocks(&self) -> Vec<((String, u32), Vec<TaskClock>)> {
        let clocks = self.factory.clocks();
        let pipelines = self.table();
        clocks
            .into_iter()
            .filter(|((name, _), _)| {
                pipelines.get(name).is_some_and(|e| {
                    e.record.spec.settings.idle_timeout.is_some()
                        && self.distributed(&e.record.spec)
                })
            })
            .map(|(k, c)| (k, c.local()))
            .filter(|(_, tasks)| !tasks.is_empty())
            .collect()
    }

    /// Where this server's tasks of each shared pipeline stand.
    fn local_progress(&self) -> Vec<(String, Vec<TaskProgress>)> {
        let pipelines = self.table();
        pipelines
            .values()
            .filter(|e| e.member.is_some() && self.distributed(&e.record.spec))
            .map(|e| {
                let tasks = e
                    .tasks
                    .iter()
                    .filter(|t| !t.is_finished())
                    .map(|t| {
                        let s = t.status();
                        TaskProgress {
                            stage: s.stage,
                            partition: s.partition,
                            committed_offset: s.committed_offset,
                            end_offset: s.end_offset,
                        }
                    })
                    .collect();
                (e.name().to_string(), tasks)
            })
            .collect()
    }

    /// Stops following the catalog (server shutdown).
    pub fn leave_cluster(&self) {
        if let Some(link) = self.cluster.get() {
            link.catalog.shutdown();
        }
    }

    /// This server's name in its cluster, if it is in one.
    pub fn server_name(&self) -> Option<&str> {
        self.cluster.get().map(ClusterLink::me)
    }

    /// Whether a pipeline is shared across the cluster: this server is in one and the
    /// pipeline's source and sink are Kafka topics.
    pub(super) fn distributed(&self, spec: &PipelineSpec) -> bool {
        self.cluster.get().is_some()
            && spec.primary_source().is_some_and(|t| t.kafka.is_some())
            && spec.sink.as_ref().is_some_and(|t| t.kafka.is_some())
    }

    /// Waits until this server has seen every catalog change made so far.
    pub(super) fn sync_cluster(&self) -> Result<(), ControlError> {
        match self.cluster.get() {
            Some(link) => link.catalog.sync().map_err(ControlError::Catalog),
            None => Ok(()),
        }
    }

    /// Joins a shared pipeline's assignment group; the group's assignments start and
    /// stop this server's tasks of it from then on.
    pub(super) fn join_group(&self, entry: &mut Entry) -> Result<(), RunError> {
        let (Some(link), Some(me)) = (self.cluster.get(), self.me.get()) else {
            return Ok(());
        };
        let spec = &entry.record.spec;
        // The input whose partitions number the tasks (the others are co-partitioned).
        let source = spec
            .primary_source()
            .expect("a shared pipeline has a source");
        let conn = self.kafka(source)?.expect("a shared pipeline reads Kafka");
        let partitions = kafka::partition_count(&conn, &source.topic).map_err(RunError::Source)?;
        for op in &entry.record.operators {
            self.registry()
                .version(&op.name, op.version)
                .map_err(|error| RunError::Operator {
                    id: op.id.clone(),
                    error,
                })?;
        }
        let active = Arc::new(AtomicBool::new(true));
        let assigned = Arc::new(Mutex::new(Vec::new()));
        let handler = Arc::new(PipelineMember {
            controller: me.clone(),
            pipeline: spec.name.clone(),
            active: Arc::clone(&active),
            assigned: Arc::clone(&assigned),
        });
        let membership = Membership::join(
            &conn,
            &assignment_group(&link.cluster, &spec.name),
            &source.topic,
            handler,
        )?;
        entry.tasks.clear();
        entry.member = Some(Member {
            membership,
            active,
            partitions,
            assigned,
        });
        Ok(())
    }

    /// Starts, for a recovering shared pipeline still in its group, the partitions the
    /// group gave this server (a rejoin would leave the old membership holding them).
    pub(super) fn resume_assigned(&self, pipeline: &str) {
        let (active, assigned) = {
            let pipelines = self.table();
            let Some(m) = pipelines.get(pipeline).and_then(|e| e.member.as_ref()) else {
                return;
            };
            (Arc::clone(&m.active), m.assigned())
        };
        if self.on_assigned(pipeline, &active, &assigned) {
            let mut pipelines = self.table();
            if let Some(entry) = pipelines.get_mut(pipeline)
                && entry.record.state == PipelineState::Recovering
            {
                tracing::info!(%pipeline, "Kafka is back: the pipeline runs again");
                entry.retry = None;
                if let Err(e) =
                    self.store
                        .set_state(&mut entry.record, PipelineState::Running, None)
                {
                    tracing::error!("cannot record a pipeline's state: {e}");
                }
            }
        }
    }

    /// The group gave this server `partitions` of `pipeline`: starts their tasks (each
    /// restores its state from its changelogs and its position from Kafka); `false`
    /// when they could not start (the pipeline then recovers or fails). The tasks start
    /// outside the table's lock, the partitions marked as arriving meanwhile, so status
    /// calls answer during the restore.
    fn on_assigned(&self, pipeline: &str, active: &AtomicBool, partitions: &[u32]) -> bool {
        // A server back from an absence hears of restores (whose local state it must drop)
        // and stops made meanwhile before it runs any partition.
        if let Some(link) = self.cluster.get() {
            let deadline = Instant::now() + crate::kafka::REQUEST_TIMEOUT;
            while !link.catalog.caught_up() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let wanted = |entry: &Entry| {
            active.load(Ordering::Acquire)
                && matches!(
                    entry.record.state,
                    PipelineState::Running | PipelineState::Recovering
                )
        };
        // What the tasks run changed while they started (an upgrade or a canary ended):
        // they stop and start again from the record as it is now.
        loop {
            let (before, fresh) = {
                let mut pipelines = self.table_once_started(pipeline);
                let Some(entry) = pipelines.get_mut(pipeline) else {
                    return false;
                };
                if !wanted(entry) {
                    return false;
                }
                entry
                    .tasks
                    .retain(|t| !partitions.contains(&t.id.partition) || !t.is_finished());
                // A start between the assignment and this call may have started some
                // already, a recovery may be starting others, and a revocation since
                // (`partitions` may be a recovery's older view) took some away.
                let assigned = entry.member.as_ref().map(Member::assigned);
                let fresh: Vec<u32> = partitions
                    .iter()
                    .copied()
                    .filter(|p| !entry.tasks.iter().any(|t| t.id.partition == *p))
                    .filter(|p| !entry.arriving.contains(p))
                    .filter(|p| assigned.as_ref().is_some_and(|a| a.contains(p)))
                    .collect();
                entry.arriving.extend(&fresh);
                (entry.record.clone(), fresh)
            };
            tracing::info!(%pipeline, ?partitions, "partitions assigned to this server");
            let mut record = before.clone();
            let started = self.factory.start(&mut record, Some(&fresh));
            let mut pipelines = self.table();
            let Some(entry) = pipelines.get_mut(pipeline) else {
                drop(pipelines);
                stop_handles(&started.unwrap_or_default());
                return false;
            };
            let tasks = match started {
                Ok(tasks) => tasks,
                Err(reason) => {
                    entry.arriving.retain(|p| !fresh.contains(p));
                    tracing::error!(%pipeline, "cannot start assigned partitions: {reason}");
                    if wanted(entry) {
                        self.halt_entry(entry);
                        self.fail_or_recover(entry, reason.to_string());
                    }
                    return false;
                }
            };
            if !wanted(entry) || !same_plan(&entry.record, &before) {
                // The partitions stay arriving until their tasks have stopped: nothing
                // else starts them meanwhile, and a revocation waits.
                drop(pipelines);
                stop_handles(&tasks);
                let mut pipelines = self.table();
                let Some(entry) = pipelines.get_mut(pipeline) else {
                    return false;
                };
                entry.arriving.retain(|p| !fresh.contains(p));
                if wanted(entry) {
                    continue;
                }
                return false;
            }
            entry.arriving.retain(|p| !fresh.contains(p));
            // Only what starting these tasks changed (a migrated state format); the
            // record may have learnt other versions from the cluster meanwhile.
            for ((pinned, old), new) in entry
                .record
                .operators
                .iter_mut()
                .zip(&before.operators)
                .zip(&record.operators)
            {
                if new.state_version != old.state_version {
                    pinned.state_version = new.state_version;
                }
            }
            if let Some(hold) = self.hold_here(pipeline) {
                // Held for a savepoint: the new tasks pause before their first batch.
                for t in &tasks {
                    let _ = t.request(Command::Pause);
                }
                let mut partitions: Vec<u32> = entry
                    .tasks
                    .iter()
                    .chain(&tasks)
                    .filter(|t| !t.is_finished())
                    .map(|t| t.id.partition)
                    .collect();
                partitions.sort_unstable();
                self.report_held(
                    pipeline,
                    Held {
                        id: hold.id,
                        partitions,
                    },
                );
            }
            entry.tasks.extend(tasks);
            self.announce_tasks(pipeline, &entry.partitions());
            return true;
        }
    }

    /// The group takes `partitions` of `pipeline` away: their tasks commit and stop
    /// before the next owner gets them.
    fn on_revoked(&self, pipeline: &str, partitions: &[u32]) {
        let (gone, mine) = {
            let mut pipelines = self.table_once_arrived(pipeline, partitions);
            let Some(entry) = pipelines.get_mut(pipeline) else {
                return;
            };
            let (gone, keep): (Vec<_>, Vec<_>) = entry
                .tasks
                .drain(..)
                .partition(|t| partitions.contains(&t.id.partition));
            entry.tasks = keep;
            entry.leaving.extend(gone.iter().cloned());
            (gone, entry.partitions())
        };
        tracing::info!(%pipeline, ?partitions, "partitions revoked from this server");
        for t in &gone {
            t.request_stop();
        }
        for t in &gone {
            if !t.wait(REVOKE_TIMEOUT) {
                tracing::warn!(task = %t.id, "task did not stop within {REVOKE_TIMEOUT:?}");
            }
        }
        if let Some(entry) = self.table().get_mut(pipeline) {
            entry
                .leaving
                .retain(|t| !gone.iter().any(|g| Arc::ptr_eq(g, t)));
        }
        self.announce_tasks(pipeline, &mine);
    }

    /// The table, once `pipeline` is not starting: a start in progress holds the tasks it
    /// starts outside the table, so an assignment or a revocation waits for them to come
    /// back rather than start a partition twice or miss a task it must stop.
    fn table_once_started(&self, pipeline: &str) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        self.table_once_arrived(pipeline, &[])
    }

    /// The table, once `pipeline` is not starting and none of `partitions` is arriving
    /// (a revocation must find the task it stops).
    fn table_once_arrived(
        &self,
        pipeline: &str,
        partitions: &[u32],
    ) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        loop {
            let pipelines = self.table();
            if pipelines.get(pipeline).is_none_or(|e| {
                e.busy != Some(STARTING) && !e.arriving.iter().any(|p| partitions.contains(p))
            }) {
                return pipelines;
            }
            drop(pipelines);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Tells the cluster which partitions of `pipeline` this server runs now.
    pub(super) fn announce_tasks(&self, pipeline: &str, partitions: &[u32]) {
        if let Some(link) = self.cluster.get()
            && let Err(e) = link.catalog.publish_tasks(pipeline, partitions)
        {
            tracing::warn!(%pipeline, "cannot tell the cluster which tasks run here: {e}");
        }
    }
}
