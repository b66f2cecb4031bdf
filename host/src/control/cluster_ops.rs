//! The controller in a cluster (`eddy serve --cluster NAME`): pipelines whose source and
//! sink are Kafka topics are shared, and each server runs the partitions the pipeline's
//! assignment group gives it; operators and pipeline records travel through the cluster
//! catalog.

use super::PipelineSpec;
use super::controller::{ControlError, Controller, Entry};
use crate::cluster::{
    AssignmentHandler, Catalog, CatalogApplier, CatalogEvent, Membership, assignment_group,
};
use crate::kafka;
use crate::model::{PipelineRecord, PipelineState};
use crate::registry::{OperatorVersion, RegistryError};
use crate::task::{StageClock, TaskClock};
use crate::task::{TaskState, TaskStatus};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How long a revocation waits for a task to commit and stop.
const REVOKE_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) struct ClusterLink {
    pub(super) catalog: Arc<Catalog>,
    cluster: String,
    me: Weak<Controller>,
}

/// This server's part in a shared pipeline. The membership lasts as long as the pipeline
/// exists here (or the server runs), stopped or not: a stop and start then need no
/// rebalance, and the group never empties and refills (which leaves some brokers, Tansu
/// among them, electing a departed member as the group's leader, so no assignment ever
/// comes).
pub(crate) struct Member {
    membership: Membership,
    /// Cleared when this server leaves the group: assignments arriving late are ignored.
    active: Arc<AtomicBool>,
    /// The source's partition count when the membership began.
    partitions: u32,
    /// The partitions the group gives this server now, whether the pipeline runs or not.
    assigned: Arc<Mutex<Vec<u32>>>,
}

impl Member {
    pub(super) fn leave(&self) {
        self.active.store(false, Ordering::Release);
        self.membership.leave();
    }
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
        self.assigned
            .lock()
            .expect("assignment lock")
            .clone_from(&partitions);
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

/// Shares the stage clocks until the controller or its catalog goes away.
fn share_clocks(controller: Weak<Controller>) {
    let mut sent: HashMap<(String, u32), (Vec<TaskClock>, Instant)> = HashMap::new();
    loop {
        std::thread::sleep(CLOCK_EVERY);
        let Some(c) = controller.upgrade() else {
            return;
        };
        let Some(link) = c.cluster.get() else {
            return;
        };
        if link.catalog.is_shut_down() {
            return;
        }
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
    }
}

impl Controller {
    /// Makes this server part of `cluster` (call before [`Controller::boot`]); the
    /// catalog is followed from [`Controller::follow_cluster`] on.
    pub fn join_cluster(self: &Arc<Self>, cluster: &str, catalog: Catalog) {
        let _ = self.cluster.set(ClusterLink {
            catalog: Arc::new(catalog),
            cluster: cluster.to_string(),
            me: Arc::downgrade(self),
        });
    }

    /// Starts applying the cluster catalog (after boot: local pipelines are loaded).
    pub fn follow_cluster(self: &Arc<Self>) -> Result<(), ControlError> {
        let Some(link) = self.cluster.get() else {
            return Ok(());
        };
        link.catalog
            .follow(Arc::new(Applier(Arc::downgrade(self))))
            .map_err(|e| ControlError::Conflict(e.to_string()))?;
        let me = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("eddy-clocks".into())
            .spawn(move || share_clocks(me))
            .map_err(|e| ControlError::Conflict(format!("cannot start a thread: {e}")))?;
        Ok(())
    }

    /// This server's tasks of each shared pipeline stage with an idle timeout, for the
    /// stage clocks of the other servers: `(pipeline, stage)` and the tasks.
    fn local_clocks(&self) -> Vec<((String, u32), Vec<TaskClock>)> {
        let clocks: Vec<((String, u32), Arc<StageClock>)> = self
            .clocks
            .lock()
            .expect("clocks lock")
            .iter()
            .filter_map(|(k, c)| Some((k.clone(), c.upgrade()?)))
            .collect();
        let pipelines = self.pipelines.lock().expect("pipelines lock");
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

    /// Stops following the catalog (server shutdown).
    pub fn leave_cluster(&self) {
        if let Some(link) = self.cluster.get() {
            link.catalog.shutdown();
        }
    }

    /// This server's name in its cluster, if it is in one.
    pub fn server_name(&self) -> Option<&str> {
        self.cluster.get().map(|l| l.catalog.server())
    }

    /// Whether a pipeline is shared across the cluster: this server is in one and the
    /// pipeline's source and sink are Kafka topics.
    pub(super) fn distributed(&self, spec: &PipelineSpec) -> bool {
        self.cluster.get().is_some()
            && spec.source.as_ref().is_some_and(|t| t.kafka.is_some())
            && spec.sink.as_ref().is_some_and(|t| t.kafka.is_some())
    }

    /// Waits until this server has seen every catalog change made so far.
    pub(super) fn sync_cluster(&self) -> Result<(), ControlError> {
        match self.cluster.get() {
            Some(link) => link
                .catalog
                .sync()
                .map_err(|e| ControlError::Conflict(e.to_string())),
            None => Ok(()),
        }
    }

    /// Runs a pipeline here: all its tasks, or for a shared pipeline, the partitions its
    /// assignment group gives this server.
    pub(super) fn run_entry(&self, entry: &mut Entry) -> Result<(), String> {
        // A restore that did not finish is finished before anything runs on its state.
        self.finish_restore(
            &entry.record.spec.name,
            &entry.record.spec,
            &entry.record.operators,
        )?;
        let Some(link) = self
            .cluster
            .get()
            .filter(|_| self.distributed(&entry.record.spec))
        else {
            entry.tasks = self.start_tasks(&mut entry.record)?;
            return Ok(());
        };
        if let Some(member) = &entry.member {
            // Still in the group: run what it gives this server now (later assignments
            // start their tasks as they come).
            let assigned = member.assigned.lock().expect("assignment lock").clone();
            entry.tasks = self.start_tasks_on(&mut entry.record, Some(&assigned))?;
            let mine: Vec<u32> = entry.tasks.iter().map(|t| t.id.partition).collect();
            self.announce_tasks(&entry.record.spec.name, &mine);
            return Ok(());
        }
        let spec = &entry.record.spec;
        let source = spec
            .source
            .as_ref()
            .expect("a shared pipeline has a source");
        let conn = self
            .kafka(source)
            .map_err(|e| e.to_string())?
            .expect("a shared pipeline reads Kafka");
        let partitions =
            kafka::partition_count(&conn, &source.topic).map_err(|e| format!("source: {e}"))?;
        for op in &entry.record.operators {
            self.registry
                .version(&op.name, op.version)
                .map_err(|e| format!("operator {}: {e}", op.id))?;
        }
        let active = Arc::new(AtomicBool::new(true));
        let assigned = Arc::new(Mutex::new(Vec::new()));
        let handler = Arc::new(PipelineMember {
            controller: link.me.clone(),
            pipeline: spec.name.clone(),
            active: Arc::clone(&active),
            assigned: Arc::clone(&assigned),
        });
        let membership = Membership::join(
            &conn,
            &assignment_group(&link.cluster, &spec.name),
            &source.topic,
            handler,
        )
        .map_err(|e| e.to_string())?;
        entry.tasks.clear();
        entry.member = Some(Member {
            membership,
            active,
            partitions,
            assigned,
        });
        Ok(())
    }

    /// Stops a pipeline's tasks here; a shared pipeline stays in its assignment group
    /// (see [`Member`]).
    pub(super) fn halt_entry(&self, entry: &mut Entry) {
        self.stop_tasks(entry);
        if entry.member.is_some() {
            entry.tasks.clear();
            self.announce_tasks(&entry.record.spec.name, &[]);
        }
    }

    /// Leaves a shared pipeline's assignment group (the pipeline is going away here).
    pub(super) fn leave_group(&self, entry: &mut Entry) {
        if let Some(m) = entry.member.take() {
            m.leave();
        }
    }

    /// The group gave this server `partitions` of `pipeline`: start their tasks (each
    /// restores its state from its changelogs and its position from Kafka).
    /// Starts, for a recovering shared pipeline still in its group, the partitions the
    /// group gave this server (a rejoin would leave the old membership holding them).
    pub(super) fn resume_assigned(&self, pipeline: &str) {
        let (active, assigned) = {
            let pipelines = self.pipelines.lock().expect("pipelines lock");
            let Some(m) = pipelines.get(pipeline).and_then(|e| e.member.as_ref()) else {
                return;
            };
            let assigned = m.assigned.lock().expect("assignment lock").clone();
            (Arc::clone(&m.active), assigned)
        };
        if self.on_assigned(pipeline, &active, &assigned) {
            let mut pipelines = self.pipelines.lock().expect("pipelines lock");
            if let Some(entry) = pipelines.get_mut(pipeline)
                && entry.record.state == PipelineState::Recovering
            {
                tracing::info!(%pipeline, "Kafka is back: the pipeline runs again");
                entry.retry = None;
                if let Err(e) = self.set_state(&mut entry.record, PipelineState::Running, None) {
                    tracing::error!("cannot record a pipeline's state: {e}");
                }
            }
        }
    }

    /// Starts the tasks of `partitions`; `false` when they could not start (the pipeline
    /// then recovers or fails).
    fn on_assigned(&self, pipeline: &str, active: &AtomicBool, partitions: &[u32]) -> bool {
        // A server back from an absence hears of restores (whose local state it must drop)
        // and stops made meanwhile before it runs any partition.
        if let Some(link) = self.cluster.get() {
            let deadline = Instant::now() + crate::kafka::REQUEST_TIMEOUT;
            while !link.catalog.caught_up() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let mut pipelines = self.pipelines.lock().expect("pipelines lock");
        let Some(entry) = pipelines.get_mut(pipeline) else {
            return false;
        };
        let wanted = matches!(
            entry.record.state,
            PipelineState::Running | PipelineState::Recovering
        );
        if !active.load(Ordering::Acquire) || !wanted {
            return false;
        }
        entry
            .tasks
            .retain(|t| !partitions.contains(&t.id.partition) || !t.is_finished());
        // A start between the assignment and this call may have started some already.
        let fresh: Vec<u32> = partitions
            .iter()
            .copied()
            .filter(|p| !entry.tasks.iter().any(|t| t.id.partition == *p))
            .collect();
        tracing::info!(%pipeline, ?partitions, "partitions assigned to this server");
        match self.start_tasks_on(&mut entry.record, Some(&fresh)) {
            Ok(tasks) => {
                if let Some(hold) = self.hold_here(pipeline) {
                    // Held for a savepoint: the new tasks pause before their first batch.
                    for t in &tasks {
                        let (ack, _) = std::sync::mpsc::channel();
                        t.send(crate::task::Command::Pause(ack));
                    }
                    self.pool.wake();
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
                        super::Held {
                            id: hold.id,
                            partitions,
                        },
                    );
                }
                entry.tasks.extend(tasks);
                let mine: Vec<u32> = entry.tasks.iter().map(|t| t.id.partition).collect();
                self.announce_tasks(pipeline, &mine);
                true
            }
            Err(reason) => {
                tracing::error!(%pipeline, "cannot start assigned partitions: {reason}");
                self.halt_entry(entry);
                self.fail_or_recover(entry, reason);
                false
            }
        }
    }

    /// The group takes `partitions` of `pipeline` away: their tasks commit and stop
    /// before the next owner gets them.
    fn on_revoked(&self, pipeline: &str, partitions: &[u32]) {
        let (gone, mine) = {
            let mut pipelines = self.pipelines.lock().expect("pipelines lock");
            let Some(entry) = pipelines.get_mut(pipeline) else {
                return;
            };
            let (gone, keep): (Vec<_>, Vec<_>) = entry
                .tasks
                .drain(..)
                .partition(|t| partitions.contains(&t.id.partition));
            entry.tasks = keep;
            let mine: Vec<u32> = entry.tasks.iter().map(|t| t.id.partition).collect();
            (gone, mine)
        };
        tracing::info!(%pipeline, ?partitions, "partitions revoked from this server");
        for t in &gone {
            t.request_stop();
        }
        self.pool.wake();
        for t in &gone {
            if !t.wait(REVOKE_TIMEOUT) {
                tracing::warn!(task = %t.id, "task did not stop within {REVOKE_TIMEOUT:?}");
            }
        }
        self.announce_tasks(pipeline, &mine);
    }

    fn announce_tasks(&self, pipeline: &str, partitions: &[u32]) {
        if let Some(link) = self.cluster.get()
            && let Err(e) = link.catalog.publish_tasks(pipeline, partitions)
        {
            tracing::warn!(%pipeline, "cannot tell the cluster which tasks run here: {e}");
        }
    }

    /// Tells the cluster about a shared pipeline's new record.
    pub(super) fn share(&self, record: &PipelineRecord) {
        if let Some(link) = self
            .cluster
            .get()
            .filter(|_| self.distributed(&record.spec))
            && let Err(e) = link
                .catalog
                .publish_pipeline(&record.spec.name, Some(record))
        {
            tracing::error!(pipeline = %record.spec.name, "cannot share the pipeline with the cluster: {e}");
        }
    }

    pub(super) fn share_deleted(&self, name: &str) {
        if let Some(link) = self.cluster.get()
            && let Err(e) = link.catalog.publish_pipeline(name, None)
        {
            tracing::error!(pipeline = %name, "cannot share the deletion with the cluster: {e}");
        }
    }

    /// Stores an uploaded operator and, in a cluster, shares it with every server.
    pub fn push_operator(
        &self,
        name: &str,
        bytes: &[u8],
    ) -> Result<(OperatorVersion, bool), ControlError> {
        let (v, created) = self.registry.put(name, bytes)?;
        if let Some(link) = self.cluster.get() {
            // Shared even when this server had it: another may not.
            link.catalog.publish_operator(&v, bytes).map_err(|e| {
                ControlError::Conflict(format!(
                    "operator stored here but not shared with the cluster: {e}"
                ))
            })?;
        }
        Ok((v, created))
    }

    /// Shares a new savepoint of a shared pipeline with every server, so any of them can
    /// restore it. (The savepoint stays here when that fails: the error is logged.)
    pub(super) fn share_savepoint(&self, m: &crate::control::Manifest) {
        let Some(link) = self.cluster.get().filter(|_| self.distributed(&m.spec)) else {
            return;
        };
        let shared = self
            .savepoints
            .archive_bytes(&m.id)
            .map_err(|e| e.to_string())
            .and_then(|a| {
                link.catalog
                    .publish_savepoint(&m.id, &a)
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = shared {
            tracing::error!(savepoint = %m.id, "cannot share the savepoint with the cluster: {e}");
        }
    }

    /// Another server restored `pipeline` into Kafka: this server's local state of it (and
    /// its positions) describe the time before, so they go, once per restore; its tasks
    /// then rebuild from Kafka when they start. (The pipeline is stopped everywhere
    /// during a restore, and the catalog delivers this before any later start.)
    fn drop_restored_state(&self, pipeline: &str, tag: &str) -> Result<(), ControlError> {
        let key = format!("restored/{pipeline}").into_bytes();
        let cf = self.db.cf(crate::state::Cf::Meta);
        if self.db.rocks().get_cf(cf, &key).ok().flatten().as_deref() == Some(tag.as_bytes()) {
            return Ok(());
        }
        if let Some(e) = self.pipelines.lock().expect("pipelines lock").get(pipeline)
            && e.tasks.iter().any(|t| !t.is_finished())
        {
            return Err(ControlError::Conflict(format!(
                "pipeline {pipeline:?} still runs tasks here"
            )));
        }
        self.db.delete_pipeline_state(pipeline)?;
        let mut wb = rocksdb::WriteBatch::default();
        wb.put_cf(cf, key, tag.as_bytes());
        self.db.write(wb)?;
        tracing::info!(%pipeline, "dropped local state replaced by a restore on another server");
        Ok(())
    }

    /// Tells the other servers that a shared pipeline was restored here.
    pub(super) fn share_restore(
        &self,
        pipeline: &str,
        savepoint: &str,
    ) -> Result<(), ControlError> {
        let Some(link) = self.cluster.get() else {
            return Ok(());
        };
        let tag = format!("{savepoint}@{}", crate::record::now_ms());
        link.catalog.publish_restored(pipeline, &tag).map_err(|e| {
            ControlError::Conflict(format!(
                "restored, but the other servers were not told ({e}); restore again before starting the pipeline"
            ))
        })
    }

    /// Deletes a savepoint here and, in a cluster, on every server.
    pub fn delete_savepoint(&self, id: &str) -> Result<(), ControlError> {
        for pipeline in self.journaled_restores()? {
            if self.unfinished_restore(&pipeline).as_deref() == Some(id) {
                return Err(ControlError::Conflict(format!(
                    "savepoint {id:?} is being restored into pipeline {pipeline:?} (the restore did not finish); restore that pipeline first"
                )));
            }
        }
        self.savepoints.delete(id)?;
        if let Some(link) = self.cluster.get() {
            link.catalog.publish_savepoint_deleted(id).map_err(|e| {
                ControlError::Conflict(format!("deleted here, but not on the other servers: {e}"))
            })?;
        }
        Ok(())
    }

    /// Deletes one version or all versions of an operator (refused while in use), on
    /// every server of a cluster.
    pub fn delete_operator(&self, name: &str, version: Option<u32>) -> Result<(), ControlError> {
        let doomed = self
            .registry
            .delete(name, version, |n, v| self.operator_in_use(n, v))?;
        if let Some(link) = self.cluster.get() {
            for v in doomed {
                link.catalog
                    .publish_operator_deleted(&v.name, v.version)
                    .map_err(|e| ControlError::Conflict(e.to_string()))?;
            }
        }
        Ok(())
    }

    /// The tasks of a shared pipeline: this server's, and the others' as the catalog
    /// last heard.
    pub(super) fn cluster_tasks(&self, entry: &Entry) -> Vec<TaskStatus> {
        let (Some(link), Some(member)) = (self.cluster.get(), &entry.member) else {
            return Vec::new();
        };
        let me = link.catalog.server().to_string();
        let owners = link.catalog.owners(&entry.record.spec.name);
        let mut tasks: Vec<TaskStatus> = entry
            .tasks
            .iter()
            .map(|t| TaskStatus {
                server: Some(me.clone()),
                ..t.status()
            })
            .collect();
        for p in 0..member.partitions {
            if tasks.iter().any(|t| t.partition == p) {
                continue;
            }
            let owner = owners.get(&p).filter(|s| **s != me).cloned();
            tasks.push(TaskStatus {
                server: owner,
                ..TaskStatus::at(0, p, TaskState::Remote, 0, 0)
            });
        }
        tasks.sort_by_key(|t| t.partition);
        tasks
    }

    /// Applies a change another server made.
    fn apply_catalog(self: &Arc<Self>, event: CatalogEvent) {
        match event {
            CatalogEvent::Operator { version, bytes } => {
                match self.registry.adopt(&version.name, version.version, &bytes) {
                    Ok((_, true)) => {
                        tracing::info!(operator = %version.name, version = version.version, "operator from the cluster");
                    }
                    Ok((_, false)) => {}
                    Err(e) => {
                        tracing::error!(operator = %version.name, "cannot take the cluster's operator: {e}")
                    }
                }
            }
            CatalogEvent::OperatorDeleted { name, version } => {
                match self
                    .registry
                    .delete(&name, Some(version), |n, v| self.operator_in_use(n, v))
                {
                    Ok(_)
                    | Err(RegistryError::NotFound(_) | RegistryError::NoSuchVersion { .. }) => {}
                    Err(e) => {
                        tracing::warn!(operator = %name, "keeping a version the cluster deleted: {e}")
                    }
                }
            }
            CatalogEvent::Pipeline { name, record: None } => match self.delete_here(&name) {
                Ok(_) | Err(ControlError::NotFound(_)) => {}
                Err(e) => {
                    tracing::error!(pipeline = %name, "cannot delete as the cluster did: {e}")
                }
            },
            CatalogEvent::Savepoint { id, archive } => {
                if self.savepoints.get(&id).is_ok() {
                    return;
                }
                match self.savepoints.import(&archive) {
                    Ok(m) => {
                        tracing::info!(savepoint = %m.id, pipeline = %m.pipeline, "savepoint from the cluster")
                    }
                    Err(e) => {
                        tracing::error!(savepoint = %id, "cannot take the cluster's savepoint: {e}")
                    }
                }
            }
            CatalogEvent::Restored { pipeline, tag } => {
                if let Err(e) = self.drop_restored_state(&pipeline, &tag) {
                    tracing::error!(%pipeline, "cannot drop the local state a restore replaced: {e}");
                }
            }
            CatalogEvent::StageClock {
                pipeline,
                stage,
                server,
                at_ms,
                tasks,
            } => {
                let clock = self
                    .clocks
                    .lock()
                    .expect("clocks lock")
                    .get(&(pipeline, stage))
                    .and_then(Weak::upgrade);
                if let Some(clock) = clock {
                    clock.report_remote(&server, at_ms, tasks);
                }
            }
            CatalogEvent::SavepointDeleted { id } => match self.savepoints.delete(&id) {
                Ok(()) | Err(crate::control::SavepointError::NotFound(_)) => {}
                Err(e) => {
                    tracing::error!(savepoint = %id, "cannot delete as the cluster did: {e}")
                }
            },
            CatalogEvent::Pipeline {
                name,
                record: Some(record),
            } => {
                let upgrade = record.upgrades.last().cloned();
                if let Err(e) = self.adopt_pipeline(*record) {
                    tracing::error!(pipeline = %name, "cannot take the cluster's pipeline: {e}");
                }
                // This server's tasks follow the pipeline's upgrades.
                if upgrade.is_some_and(|u| {
                    u.result == crate::model::UpgradeResult::Probation
                        || u.finished_ms
                            .is_some_and(|f| crate::record::now_ms() - f < 600_000)
                }) {
                    self.reconcile_upgrade(&name);
                }
            }
            CatalogEvent::Probation {
                pipeline,
                server,
                report,
            } => self.take_probation_report(&pipeline, &server, report),
            CatalogEvent::Hold { pipeline, hold } => self.apply_hold(&pipeline, hold),
            CatalogEvent::Held {
                pipeline,
                server,
                held,
            } => self.take_held(&pipeline, &server, held),
        }
    }

    /// Takes a shared pipeline's record: a new pipeline joins its group here, a started
    /// or stopped one starts or stops here too.
    fn adopt_pipeline(&self, mut record: PipelineRecord) -> Result<(), ControlError> {
        let name = record.spec.name.clone();
        let mut pipelines = self.pipelines.lock().expect("pipelines lock");
        let wanted = record.state;
        let entry = match pipelines.entry(name.clone()) {
            std::collections::btree_map::Entry::Vacant(v) => {
                // New here: start as stopped, then follow the wanted state below.
                record.state = PipelineState::Stopped;
                record.reason = None;
                tracing::info!(pipeline = %name, "pipeline from the cluster");
                v.insert(Entry::idle(record))
            }
            std::collections::btree_map::Entry::Occupied(o) => {
                let entry = o.into_mut();
                entry.record.operators = record.operators;
                entry.record.upgrades = record.upgrades;
                entry
            }
        };
        let running = entry.record.state == PipelineState::Running;
        match wanted {
            PipelineState::Running if !running => match self.run_entry(entry) {
                Ok(()) => self.set_state(&mut entry.record, PipelineState::Running, None)?,
                Err(reason) => self.fail_or_recover(entry, reason),
            },
            PipelineState::Stopped if running => {
                self.halt_entry(entry);
                self.set_state(&mut entry.record, PipelineState::Stopped, None)?;
            }
            _ => {
                let state = entry.record.state;
                let reason = entry.record.reason.clone();
                self.set_state(&mut entry.record, state, reason)?;
            }
        }
        drop(pipelines);
        self.refresh_gauges();
        Ok(())
    }
}
