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

use super::controller::Controller;
use super::error::ControlError;
use super::pause::resume;
use crate::model::{
    PinnedOperator, PipelineRecord, PipelineState, Settings, UpgradeRecord, UpgradeResult,
    VersionRef,
};
use crate::record::now_ms;
use crate::task::{
    Command, ProbationTotals, SWAP_TIMEOUT, SwapPlan, TaskHandle, TaskState, ask_all,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What an upgrade claims a pipeline for.
const UPGRADE: &str = "an upgrade";

/// A checked upgrade request: the pipeline, its tasks, and how to swap the operator.
pub(super) struct UpgradeRequest {
    pub(super) record: PipelineRecord,
    pub(super) tasks: Vec<Arc<TaskHandle>>,
    pub(super) plan: Arc<SwapPlan>,
}

/// The thread that decides an upgrade's probation; it returns the upgrade as recorded.
pub(super) type Verdict = std::thread::JoinHandle<UpgradeRecord>;

/// An upgrade on probation on this server: what the watcher needs.
struct OnProbation {
    plan: Arc<SwapPlan>,
    tasks: Vec<Arc<TaskHandle>>,
    settings: Settings,
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
        self.claim(name, UPGRADE)?;
        let begun = if self.is_shared(name) {
            self.begin_shared_upgrade(name, operator, version)
        } else {
            self.begin_local_upgrade(name, operator, version)
        };
        let (upgrade, verdict) = match begun {
            Ok(b) => b,
            Err(e) => {
                self.release(name);
                return Err(e);
            }
        };
        match verdict {
            Some(verdict) if wait => verdict
                .join()
                .map_err(|_| ControlError::Panicked("the probation watcher")),
            Some(_) => Ok(upgrade),
            None => {
                self.release(name);
                Ok(upgrade)
            }
        }
    }

    /// A single server's upgrade up to its probation; the thread that watches the
    /// probation (and ends the claim), unless the swap failed and was undone.
    fn begin_local_upgrade(
        self: &Arc<Self>,
        name: &str,
        operator: &str,
        version: Option<VersionRef>,
    ) -> Result<(UpgradeRecord, Option<Verdict>), ControlError> {
        let (upgrade, probation) = self.begin_upgrade(name, operator, version)?;
        let watcher = probation.map(|probation| {
            let this = Arc::clone(self);
            let pipeline = name.to_string();
            std::thread::spawn(move || this.watch_probation(&pipeline, probation))
        });
        Ok((upgrade, watcher))
    }

    /// Whether a pipeline is shared across the cluster.
    fn is_shared(&self, name: &str) -> bool {
        self.table()
            .get(name)
            .is_some_and(|e| self.distributed(&e.record.spec))
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
            return Err(ControlError::NotRunning(name.to_string()));
        }
        let index = record
            .spec
            .operators
            .iter()
            .position(|o| o.id() == operator)
            .ok_or_else(|| ControlError::NoSuchOperator {
                pipeline: name.to_string(),
                operator: operator.to_string(),
                ids: record
                    .spec
                    .operators
                    .iter()
                    .map(|o| o.id().to_string())
                    .collect(),
            })?;
        let old = record.operators[index].clone();
        let target = self.registry().resolve(&old.name, version)?;
        if target.version == old.version {
            return Err(ControlError::AlreadyRuns {
                operator: operator.to_string(),
                name: target.name,
                version: target.version,
            });
        }
        let plan = self
            .factory
            .swap_plan(&record, index, &old, &target)
            .map_err(ControlError::stage)?;
        Ok(UpgradeRequest {
            record,
            tasks,
            plan: Arc::new(plan),
        })
    }

    /// Everything up to the probation: checks, pause, savepoint, swap, migration, resume.
    /// Returns the upgrade as recorded, and what its probation needs (none when the
    /// swap failed and was undone).
    fn begin_upgrade(
        &self,
        name: &str,
        operator: &str,
        version: Option<VersionRef>,
    ) -> Result<(UpgradeRecord, Option<OnProbation>), ControlError> {
        let UpgradeRequest {
            record,
            tasks,
            plan,
        } = self.upgrade_request(name, operator, version)?;
        let stage_tasks: Vec<Arc<TaskHandle>> = tasks
            .iter()
            .filter(|t| t.id.stage == plan.stage)
            .cloned()
            .collect();
        let started = Instant::now();
        let started_ms = now_ms();
        self.pause_pipeline(&record, &tasks)?;
        let export = match self.start_export(name, &record) {
            Ok(e) => e,
            Err(e) => {
                resume(&tasks);
                return Err(e);
            }
        };
        let replies = ask_all(
            &stage_tasks,
            |reply| Command::Upgrade(Arc::clone(&plan), reply),
            SWAP_TIMEOUT,
        );
        let failure = replies.iter().find_map(|r| r.as_ref().err().cloned());
        if failure.is_some() {
            // Undo the swap where it happened; nothing was processed in between.
            let swapped: Vec<Arc<TaskHandle>> = stage_tasks
                .iter()
                .zip(&replies)
                .filter(|(_, r)| r.is_ok())
                .map(|(t, _)| Arc::clone(t))
                .collect();
            self.roll_back(name, &plan, &swapped, "could not undo an upgrade's swap");
        }
        let pause_ms = started.elapsed().as_secs_f64() * 1e3;
        resume(&tasks);
        let manifest = self.finish_export(export)?;
        let swaps: Vec<_> = replies.iter().filter_map(|r| r.as_ref().ok()).collect();
        let mut new = plan.new.pinned.clone();
        if let Some(v) = swaps.iter().find_map(|s| s.state_version) {
            new.state_version = v;
        }
        let upgrade = UpgradeRecord {
            operator: operator.to_string(),
            from_version: plan.old.pinned.version,
            to_version: new.version,
            savepoint: manifest.id,
            pause_ms,
            migrated_keys: swaps.iter().map(|s| s.migrated_keys).sum(),
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
        let probation = failure.is_none().then(|| OnProbation {
            plan: Arc::new(SwapPlan {
                new: crate::task::Version {
                    pinned: new,
                    ..plan.new.clone()
                },
                ..(*plan).clone()
            }),
            tasks: stage_tasks,
            settings: record.spec.settings.clone(),
        });
        Ok((upgrade, probation))
    }

    /// Sends the tasks back to the plan's old version, dropping what they hold.
    fn roll_back(&self, name: &str, plan: &Arc<SwapPlan>, tasks: &[Arc<TaskHandle>], what: &str) {
        let replies = ask_all(
            tasks,
            |reply| Command::RollBack(Arc::clone(plan), reply),
            SWAP_TIMEOUT,
        );
        for e in replies.iter().filter_map(|r| r.as_ref().err()) {
            tracing::error!(pipeline = %name, "{what}: {e}");
        }
    }

    /// Adds or updates (the last) upgrade in the pipeline's record; with `pin`, the
    /// operator now runs that version for good.
    pub(super) fn record_upgrade(
        &self,
        name: &str,
        upgrade: &UpgradeRecord,
        pin: Option<&PinnedOperator>,
    ) -> Result<(), ControlError> {
        self.with_entry(name, |entry| {
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
            self.store.touch(&mut entry.record)?;
            // A shared pipeline's servers follow its upgrades through the catalog.
            self.share(&entry.record);
            Ok(())
        })
    }

    /// Writes an upgrade's verdict into the pipeline's record: succeeded (with the
    /// operator's new version pinned) or rolled back with the reason.
    pub(super) fn conclude_upgrade(
        &self,
        name: &str,
        mut upgrade: UpgradeRecord,
        verdict: Result<Option<PinnedOperator>, String>,
    ) -> UpgradeRecord {
        upgrade.finished_ms = Some(now_ms());
        let pin = match verdict {
            Ok(pin) => {
                upgrade.result = UpgradeResult::Succeeded;
                pin
            }
            Err(reason) => {
                tracing::warn!(pipeline = %name, "upgrade rolled back: {reason}");
                upgrade.result = UpgradeResult::RolledBack;
                upgrade.reason = Some(reason);
                None
            }
        };
        if let Err(e) = self.record_upgrade(name, &upgrade, pin.as_ref()) {
            tracing::error!(pipeline = %name, "cannot record the upgrade's result: {e}");
        }
        upgrade
    }

    /// Waits out a probation, then commits the new version or rolls back.
    fn watch_probation(&self, name: &str, probation: OnProbation) -> UpgradeRecord {
        let OnProbation {
            plan,
            tasks,
            settings,
        } = probation;
        let started = Instant::now();
        let window = Duration::from_millis(settings.probation_ms);
        let verdict = loop {
            let statuses: Vec<_> = tasks.iter().map(|t| t.status()).collect();
            if let Some(s) = statuses.iter().find(|s| s.state == TaskState::Failed) {
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
            let mut totals = ProbationTotals::default();
            for p in statuses.iter().filter_map(|s| s.probation.as_ref()) {
                totals.add(p);
            }
            let passed =
                totals.processed >= settings.probation_records || started.elapsed() >= window;
            let max_rate = settings.probation_max_error_rate.map(|r| r.0);
            if let Some(reason) = totals.rejected(max_rate, passed) {
                break Err(reason);
            }
            if passed {
                break Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let upgrade = self
            .table()
            .get(name)
            .and_then(|e| e.record.upgrades.last().cloned())
            .expect("the upgrade was recorded");
        let verdict = match verdict {
            Ok(()) => {
                let replies = ask_all(
                    &tasks,
                    |reply| Command::Accept(Arc::clone(&plan), reply),
                    SWAP_TIMEOUT,
                );
                for e in replies.iter().filter_map(|r| r.as_ref().err()) {
                    tracing::error!(pipeline = %name, "ending a probation: {e}");
                }
                Ok(Some(plan.new.pinned.clone()))
            }
            Err(reason) => {
                let live: Vec<Arc<TaskHandle>> =
                    tasks.iter().filter(|t| !t.is_finished()).cloned().collect();
                self.roll_back(name, &plan, &live, "rolling back");
                Err(reason)
            }
        };
        let upgrade = self.conclude_upgrade(name, upgrade, verdict);
        self.release(name);
        upgrade
    }
}
