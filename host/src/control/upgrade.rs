//! Hot upgrade: swap one operator of a running pipeline for another version in
//! milliseconds, state intact, with automatic rollback.
//!
//! The protocol: precompile the new version → pause every task at one batch boundary →
//! take a savepoint (a snapshot; its files are written while the pipeline runs again) →
//! in each task, start the new version on the operator's state and, when it declares
//! another state format, run its `migrate` over the operator's stores → resume. The new
//! version is then on probation: its tasks process but hold their commits. If it traps
//! (or errors under `on_error = "fail"`) within the probation window, the held work is
//! dropped, the old version is started again on the state as it was at the savepoint
//! (the last commit), and processing resumes from the same offsets. Otherwise the held
//! work commits and the new version stays. Either way no record is lost or duplicated.

use super::controller::{Controller, stages};
use super::pause::resume;
use super::{ControlError, PipelineState, VersionRef};
use crate::model::{PinnedOperator, UpgradeRecord, UpgradeResult};
use crate::record::now_ms;
use crate::runtime::bindings::{KvBatch, KvMeta, Span};
use crate::runtime::{Limits, OperatorComponent, TaskInfo};
use crate::state::{Db, StateScope, TIMERS};
use crate::task::{Command, Operator, Task, TaskError, TaskHandle, Unavailable, WasmOperator};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Entries handed to `migrate` per call.
const MIGRATE_PAGE: usize = 1000;
/// Longest a task may take to swap (and migrate) before the upgrade is abandoned.
const SWAP_TIMEOUT: Duration = Duration::from_secs(600);

/// What is needed to start one version of the operator in a task.
#[derive(Clone)]
pub(super) struct Version {
    component: OperatorComponent,
    pub(super) pinned: PinnedOperator,
}

/// A checked upgrade request: the pipeline, its tasks, and how to swap the operator.
pub(super) struct UpgradeRequest {
    pub(super) record: super::PipelineRecord,
    pub(super) tasks: Vec<Arc<TaskHandle>>,
    pub(super) plan: SwapPlan,
    /// The stage the operator runs in.
    pub(super) stage: u32,
}

/// Everything a task job needs to start either version of the operator.
#[derive(Clone)]
pub(super) struct SwapPlan {
    /// Index of the operator within its stage's chain.
    pub(super) local: usize,
    pub(super) old: Version,
    pub(super) new: Version,
    config: Vec<(String, String)>,
    limits: Limits,
    pub(super) pipeline: String,
    partitions: u32,
    pub(super) db: Arc<Db>,
}

impl SwapPlan {
    fn start(
        &self,
        v: &Version,
        partition: u32,
        state: crate::state::OperatorState,
    ) -> Result<Box<dyn Operator>, (String, crate::state::OperatorState)> {
        let info = TaskInfo {
            pipeline: self.pipeline.clone(),
            operator: v.pinned.id.clone(),
            version: v.pinned.version,
            partition,
            partition_count: self.partitions,
        };
        WasmOperator::start(
            v.component.clone(),
            info,
            self.config.clone(),
            state,
            self.limits,
        )
        .map(|op| Box::new(op) as Box<dyn Operator>)
        .map_err(|(e, state)| {
            (
                format!(
                    "operator {}@{}: init failed: {}",
                    v.pinned.id,
                    v.pinned.version,
                    e.message()
                ),
                state,
            )
        })
    }

    /// Replaces the running version `from` with `to` in a task; on failure puts `from`
    /// back. Returns the state versions `(from, to)`.
    pub(super) fn swap(
        &self,
        task: &mut Task,
        from: &Version,
        to: &Version,
    ) -> Result<(u32, u32), String> {
        let partition = task.id().partition;
        let mut versions = (0, 0);
        task.swap_operator(self.local, |old| {
            versions.0 = old.state_version();
            let state = old.into_state();
            match self.start(to, partition, state) {
                Ok(new) => {
                    versions.1 = new.state_version();
                    Ok(new)
                }
                Err((reason, state)) => {
                    let back =
                        self.start(from, partition, state)
                            .unwrap_or_else(|(again, state)| {
                                Box::new(Unavailable::new(
                                    format!("{}@{}", from.pinned.id, from.pinned.version),
                                    again,
                                    state,
                                ))
                            });
                    Err((back, reason))
                }
            }
        })?;
        Ok(versions)
    }
}

/// Runs `migrate` of the operator at `local` over every store it has in the task's
/// partition; returns how many keys it converted.
pub(super) fn migrate(
    task: &mut Task,
    local: usize,
    db: &Db,
    pipeline: &str,
    from_version: u32,
) -> Result<u64, String> {
    let partition = task.id().partition;
    let op = &mut task.operators_mut()[local];
    let operator = op.state().scope().operator.clone();
    let scope = StateScope {
        pipeline: pipeline.to_string(),
        operator: operator.clone(),
        partition,
    };
    let names: Vec<String> = db
        .stores(pipeline, Some(&operator))
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|(n, _)| n.store)
        .filter(|s| s != TIMERS)
        .collect();
    let mut migrated = 0u64;
    for name in names {
        let id = op.state().open_store(&name).map_err(|e| e.to_string())??;
        let mut continuation: Option<Vec<u8>> = None;
        loop {
            let page = op
                .state()
                .scan(id, b"", None, MIGRATE_PAGE, continuation.as_deref())
                .map_err(|e| e.to_string())?;
            if page.entries.is_empty() {
                break;
            }
            let mut batch = KvBatch {
                data: Vec::new(),
                entries: Vec::with_capacity(page.entries.len()),
            };
            for (k, v) in &page.entries {
                let key = span(&mut batch.data, k);
                let value = span(&mut batch.data, v);
                batch.entries.push(KvMeta { key, value });
            }
            let out = op
                .migrate(&name, from_version, &batch)
                .map_err(|e| format!("migrating store {name:?} of {scope}: {}", e.message()))?;
            if out.items.len() != page.entries.len() {
                return Err(format!(
                    "migrate returned {} values for {} entries of store {name:?}",
                    out.items.len(),
                    page.entries.len()
                ));
            }
            for ((k, _), item) in page.entries.iter().zip(&out.items) {
                if item.len == u32::MAX {
                    op.state().delete(id, k.clone());
                } else {
                    let value = out
                        .data
                        .get(item.offset as usize..item.offset as usize + item.len as usize)
                        .ok_or_else(|| "migrate returned a value outside its buffer".to_string())?;
                    op.state().set(id, k.clone(), value.to_vec());
                }
            }
            op.state().end_batch();
            migrated += page.entries.len() as u64;
            match page.continuation {
                Some(c) => continuation = Some(c),
                None => break,
            }
        }
    }
    Ok(migrated)
}

fn span(data: &mut Vec<u8>, bytes: &[u8]) -> Span {
    let offset = data.len() as u32;
    data.extend_from_slice(bytes);
    Span {
        offset,
        len: bytes.len() as u32,
    }
}

/// Runs `job` on every task (with a reply each) and collects the replies.
pub(super) fn run_on<T: Send + 'static>(
    controller: &Controller,
    tasks: &[Arc<TaskHandle>],
    job: impl Fn(&mut Task) -> Result<T, String> + Send + Sync + Clone + 'static,
) -> Vec<Result<T, String>> {
    let mut replies = Vec::new();
    for t in tasks {
        let (tx, rx) = mpsc::channel();
        let job = job.clone();
        t.send(Command::Run(Box::new(move |task, _sink| {
            let _ = tx.send(job(task));
            Ok(())
        })));
        replies.push(rx);
    }
    controller.pool.wake();
    replies
        .into_iter()
        .map(|rx| {
            rx.recv_timeout(SWAP_TIMEOUT)
                .unwrap_or_else(|_| Err("the task did not answer".into()))
        })
        .collect()
}

impl Controller {
    /// Upgrades operator `operator` (its id in the pipeline) of a running pipeline to
    /// `version` (the latest when `None`). Returns once the new version runs on probation
    /// (or the swap failed and was undone); with `wait`, once the probation ended.
    pub fn upgrade(
        self: &Arc<Self>,
        name: &str,
        operator: &str,
        version: Option<VersionRef>,
        wait: bool,
    ) -> Result<UpgradeRecord, ControlError> {
        self.claim(name, super::savepoint_ops::UPGRADE)?;
        if self.is_shared(name) {
            return self.upgrade_shared(name, operator, version, wait);
        }
        match self.begin_upgrade(name, operator, version) {
            Ok((record, plan, stage_tasks, settings))
                if record.result == UpgradeResult::Probation =>
            {
                let this = Arc::clone(self);
                let pipeline = name.to_string();
                let watcher = std::thread::spawn(move || {
                    this.watch_probation(&pipeline, plan, stage_tasks, settings)
                });
                if wait {
                    return watcher.join().map_err(|_| {
                        ControlError::Conflict("the probation watcher panicked".into())
                    });
                }
                Ok(record)
            }
            Ok((record, ..)) => {
                self.release(name);
                Ok(record)
            }
            Err(e) => {
                self.release(name);
                Err(e)
            }
        }
    }

    /// Whether a pipeline is shared across the cluster.
    fn is_shared(&self, name: &str) -> bool {
        self.pipelines
            .lock()
            .expect("pipelines lock")
            .get(name)
            .is_some_and(|e| self.distributed(&e.record.spec))
    }

    /// How to swap operator `i` of a pipeline from `old` to `target` in its tasks (both
    /// versions compiled), and the stage it runs in.
    pub(super) fn swap_plan(
        &self,
        record: &super::PipelineRecord,
        i: usize,
        old: &PinnedOperator,
        target: &crate::registry::OperatorVersion,
    ) -> Result<(SwapPlan, u32), ControlError> {
        let new_component = self.registry.component(target)?;
        let old_component = self
            .registry
            .component(&self.registry.version(&old.name, old.version)?)?;
        let stages = stages(&record.spec);
        let stage = stages
            .iter()
            .find(|s| s.ops.contains(&i))
            .expect("every operator is in a stage");
        let local = stage
            .ops
            .iter()
            .position(|x| *x == i)
            .expect("the operator is in its stage");
        let partitions = self.stage_partitions(&record.spec, stage)?;
        let new_pinned = PinnedOperator {
            id: old.id.clone(),
            name: target.name.clone(),
            version: target.version,
            digest: target.digest.clone(),
            state_version: old.state_version,
        };
        let plan = SwapPlan {
            local,
            old: Version {
                component: old_component,
                pinned: old.clone(),
            },
            new: Version {
                component: new_component,
                pinned: new_pinned,
            },
            config: record.spec.operators[i].config_pairs(),
            limits: Limits::from_settings(&record.spec.settings),
            pipeline: record.spec.name.clone(),
            partitions,
            db: Arc::clone(&self.db),
        };
        Ok((plan, stage.index))
    }

    /// Checks an upgrade request against a pipeline: it runs, has the operator, and the
    /// version asked is another one. Both versions are compiled before anything moves.
    pub(super) fn upgrade_request(
        &self,
        name: &str,
        operator: &str,
        version: Option<VersionRef>,
    ) -> Result<UpgradeRequest, ControlError> {
        let (record, tasks) = self.record_and_tasks(name)?;
        if record.state != PipelineState::Running {
            return Err(ControlError::Conflict(format!(
                "pipeline {name:?} is not running; start it, then upgrade"
            )));
        }
        let index = record
            .spec
            .operators
            .iter()
            .position(|o| o.id() == operator)
            .ok_or_else(|| {
                let ids: Vec<&str> = record.spec.operators.iter().map(|o| o.id()).collect();
                ControlError::Invalid(format!(
                    "pipeline {name:?} has no operator {operator:?} (it has {ids:?})"
                ))
            })?;
        let old = record.operators[index].clone();
        let target = self.registry.resolve(&old.name, version)?;
        if target.version == old.version {
            return Err(ControlError::Conflict(format!(
                "operator {operator} already runs {}@{}",
                target.name, target.version
            )));
        }
        let (plan, stage) = self.swap_plan(&record, index, &old, &target)?;
        Ok(UpgradeRequest {
            record,
            tasks,
            plan,
            stage,
        })
    }

    /// Everything up to the probation: checks, pause, savepoint, swap, migration, resume.
    fn begin_upgrade(
        &self,
        name: &str,
        operator: &str,
        version: Option<VersionRef>,
    ) -> Result<
        (
            UpgradeRecord,
            SwapPlan,
            Vec<Arc<TaskHandle>>,
            super::Settings,
        ),
        ControlError,
    > {
        let UpgradeRequest {
            record,
            tasks,
            plan,
            stage,
        } = self.upgrade_request(name, operator, version)?;
        let old_pinned = plan.old.pinned.clone();
        let stage_tasks: Vec<Arc<TaskHandle>> = tasks
            .iter()
            .filter(|t| t.id.stage == stage)
            .cloned()
            .collect();

        let started = Instant::now();
        let started_ms = now_ms();
        self.pause_pipeline(&record, &tasks)?;
        let export = match self.start_export(name, &record) {
            Ok(e) => e,
            Err(e) => {
                resume(&self.pool, &tasks);
                return Err(e);
            }
        };
        let swap_plan = plan.clone();
        let replies = run_on(self, &stage_tasks, move |task| {
            let (from, to) = swap_plan.swap(task, &swap_plan.old, &swap_plan.new)?;
            let migrated = if from != to {
                match migrate(
                    task,
                    swap_plan.local,
                    &swap_plan.db,
                    &swap_plan.pipeline,
                    from,
                ) {
                    Ok(n) => n,
                    Err(reason) => {
                        task.discard_uncommitted();
                        swap_plan.swap(task, &swap_plan.new, &swap_plan.old)?;
                        return Err(reason);
                    }
                }
            } else {
                0
            };
            task.begin_probation();
            Ok((to, migrated))
        });
        let failure = replies.iter().find_map(|r| r.as_ref().err().cloned());
        if failure.is_some() {
            // Undo the swap where it happened; nothing was processed in between.
            let undo = plan.clone();
            let swapped: Vec<Arc<TaskHandle>> = stage_tasks
                .iter()
                .zip(&replies)
                .filter(|(_, r)| r.is_ok())
                .map(|(t, _)| Arc::clone(t))
                .collect();
            for r in run_on(self, &swapped, move |task| {
                task.end_probation();
                task.discard_uncommitted();
                undo.swap(task, &undo.new, &undo.old).map(|_| ())
            }) {
                if let Err(e) = r {
                    tracing::error!(pipeline = %name, "could not undo an upgrade's swap: {e}");
                }
            }
        }
        let pause_ms = started.elapsed().as_secs_f64() * 1e3;
        resume(&self.pool, &tasks);
        let manifest = self.finish_export(export)?;
        let migrated_keys = replies
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|(_, n)| n)
            .sum();
        let new_state_version = replies
            .iter()
            .find_map(|r| r.as_ref().ok())
            .map(|(v, _)| *v);
        let mut plan = plan;
        if let Some(v) = new_state_version {
            plan.new.pinned.state_version = v;
        }
        let upgrade = UpgradeRecord {
            operator: operator.to_string(),
            from_version: old_pinned.version,
            to_version: plan.new.pinned.version,
            savepoint: manifest.id,
            pause_ms,
            migrated_keys,
            result: if failure.is_some() {
                UpgradeResult::RolledBack
            } else {
                UpgradeResult::Probation
            },
            reason: failure.clone(),
            started_ms,
            finished_ms: failure.as_ref().map(|_| now_ms()),
        };
        self.record_upgrade(name, &upgrade, None)?;
        Ok((upgrade, plan, stage_tasks, record.spec.settings.clone()))
    }

    /// Adds or updates (the last) upgrade in the pipeline's record; with `pin`, the
    /// operator now runs that version for good.
    pub(super) fn record_upgrade(
        &self,
        name: &str,
        upgrade: &UpgradeRecord,
        pin: Option<&PinnedOperator>,
    ) -> Result<(), ControlError> {
        let mut pipelines = self.pipelines.lock().expect("pipelines lock");
        let entry = pipelines
            .get_mut(name)
            .ok_or_else(|| ControlError::NotFound(name.to_string()))?;
        let history = &mut entry.record.upgrades;
        match history.last_mut() {
            Some(last)
                if last.result == UpgradeResult::Probation
                    && last.started_ms == upgrade.started_ms =>
            {
                *last = upgrade.clone()
            }
            _ => history.push(upgrade.clone()),
        }
        if let Some(pin) = pin
            && let Some(o) = entry.record.operators.iter_mut().find(|o| o.id == pin.id)
        {
            *o = pin.clone();
        }
        let state = entry.record.state;
        let reason = entry.record.reason.clone();
        self.set_state(&mut entry.record, state, reason)?;
        // A shared pipeline's servers follow its upgrades through the catalog.
        self.share(&entry.record);
        Ok(())
    }

    /// Waits out a probation, then commits the new version or rolls back.
    fn watch_probation(
        &self,
        name: &str,
        plan: SwapPlan,
        tasks: Vec<Arc<TaskHandle>>,
        settings: super::Settings,
    ) -> UpgradeRecord {
        let started = Instant::now();
        let window = Duration::from_millis(settings.probation_ms);
        let verdict = loop {
            let statuses: Vec<_> = tasks.iter().map(|t| t.status()).collect();
            if let Some(s) = statuses
                .iter()
                .find(|s| s.state == crate::task::TaskState::Failed)
            {
                break Err(format!(
                    "a task failed: {}",
                    s.failure.clone().unwrap_or_default()
                ));
            }
            if let Some(f) = statuses
                .iter()
                .find_map(|s| s.probation.as_ref().and_then(|p| p.failure.clone()))
            {
                break Err(f);
            }
            let processed: u64 = statuses
                .iter()
                .filter_map(|s| s.probation.as_ref())
                .map(|p| p.processed)
                .sum();
            if processed >= settings.probation_records || started.elapsed() >= window {
                break Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let mut upgrade = {
            let pipelines = self.pipelines.lock().expect("pipelines lock");
            pipelines
                .get(name)
                .and_then(|e| e.record.upgrades.last().cloned())
                .expect("the upgrade was recorded")
        };
        upgrade.finished_ms = Some(now_ms());
        let pin = match verdict {
            Ok(()) => {
                for r in run_on(self, &tasks, |task| {
                    task.end_probation();
                    Ok(())
                }) {
                    if let Err(e) = r {
                        tracing::error!(pipeline = %name, "ending a probation: {e}");
                    }
                }
                upgrade.result = UpgradeResult::Succeeded;
                Some(plan.new.pinned.clone())
            }
            Err(reason) => {
                tracing::warn!(pipeline = %name, "upgrade rolled back: {reason}");
                let undo = plan.clone();
                let live: Vec<Arc<TaskHandle>> =
                    tasks.iter().filter(|t| !t.is_finished()).cloned().collect();
                for r in run_on(self, &live, move |task| {
                    task.end_probation();
                    task.discard_uncommitted();
                    undo.swap(task, &undo.new, &undo.old).map(|_| ())
                }) {
                    if let Err(e) = r {
                        tracing::error!(pipeline = %name, "rolling back: {e}");
                    }
                }
                upgrade.result = UpgradeResult::RolledBack;
                upgrade.reason = Some(reason);
                None
            }
        };
        if let Err(e) = self.record_upgrade(name, &upgrade, pin.as_ref()) {
            tracing::error!(pipeline = %name, "cannot record the upgrade's result: {e}");
        }
        self.release(name);
        upgrade
    }
}

impl From<TaskError> for ControlError {
    fn from(e: TaskError) -> Self {
        ControlError::Conflict(e.to_string())
    }
}
