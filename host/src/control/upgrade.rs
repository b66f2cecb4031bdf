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
use super::probation::{self, Outcome, Progress};
use crate::model::topology::stage_of;
use crate::model::{
    Canary, PinnedOperator, PipelineRecord, PipelineState, Settings, UpgradeDecision,
    UpgradeRecord, UpgradeResult, UpgradeTo,
};
use crate::record::now_ms;
use crate::task::{
    Command, ConfigChange, ProbationTotals, SWAP_TIMEOUT, SwapPlan, TaskHandle, TaskState, ask_all,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What an upgrade claims a pipeline for.
const UPGRADE: &str = "an upgrade (a probation waits for its records: `eddy pipeline upgrade <name> --promote` or `--rollback` ends it now)";
/// Longest a request to end a probation waits for the judge to act on it.
const DECISION_WAIT: Duration = Duration::from_secs(30);

/// A checked upgrade request: the pipeline, its tasks, and how to swap the operator.
pub(super) struct UpgradeRequest {
    pub(super) record: PipelineRecord,
    pub(super) tasks: Vec<Arc<TaskHandle>>,
    pub(super) plan: Arc<SwapPlan>,
    pub(super) config: ConfigChange,
}

/// Checks a canary's partitions against the `count` of its stage.
fn check_canary(partitions: &[u32], count: u32) -> Result<(), ControlError> {
    let mut seen = std::collections::BTreeSet::new();
    let why = if partitions.is_empty() {
        Some("name at least one".to_string())
    } else if let Some(p) = partitions.iter().find(|p| **p >= count) {
        Some(format!(
            "partition {p} is not one of the operator's stage (0 to {})",
            count.saturating_sub(1)
        ))
    } else if let Some(p) = partitions.iter().find(|p| !seen.insert(**p)) {
        Some(format!("partition {p} is named twice"))
    } else if seen.len() as u32 == count {
        Some("they are every partition: upgrade without --partitions".to_string())
    } else {
        None
    };
    match why {
        // The list itself is not repeated: it may be long.
        Some(why) => Err(ControlError::BadCanary(format!("canary partitions: {why}"))),
        None => Ok(()),
    }
}

/// The thread that decides an upgrade's probation; it returns the upgrade as recorded.
pub(super) type Verdict = std::thread::JoinHandle<UpgradeRecord>;

/// An upgrade on probation on this server: what the watcher needs.
struct OnProbation {
    plan: Arc<SwapPlan>,
    tasks: Vec<Arc<TaskHandle>>,
    settings: Settings,
    /// Which upgrade (its `started_ms`).
    started_ms: i64,
    /// Its tasks are a canary's: on success they go on as one.
    canary: bool,
}

impl Controller {
    /// Upgrades operator `operator` (its id in the pipeline) of a running pipeline to
    /// `version` (the latest when `None`). Returns once the new version runs on probation
    /// (or the swap failed and was undone); with `wait`, once the probation ended.
    pub fn upgrade(
        self: &Arc<Self>,
        name: &str,
        to: &UpgradeTo,
        wait: bool,
    ) -> Result<UpgradeRecord, ControlError> {
        self.upgrade_as(name, to, wait, None)
    }

    /// An upgrade, or with `promoting` the promotion of the canary that started then to
    /// the other partitions.
    pub(super) fn upgrade_as(
        self: &Arc<Self>,
        name: &str,
        to: &UpgradeTo,
        wait: bool,
        promoting: Option<i64>,
    ) -> Result<UpgradeRecord, ControlError> {
        self.claim(name, UPGRADE)?;
        let begun = if self.is_shared(name) {
            self.begin_shared_upgrade(name, to, promoting)
        } else {
            self.begin_local_upgrade(name, to, promoting)
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
        to: &UpgradeTo,
        promoting: Option<i64>,
    ) -> Result<(UpgradeRecord, Option<Verdict>), ControlError> {
        let (upgrade, probation) = self.begin_upgrade(name, to, promoting)?;
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

    /// Checks an upgrade request against a pipeline: it runs, has the operator, runs no
    /// canary (unless `promoting` it), the version or the config asked is another one,
    /// and a canary's partitions are some of the operator's stage. Both versions are
    /// compiled before anything moves.
    pub(super) fn upgrade_request(
        &self,
        name: &str,
        to: &UpgradeTo,
        promoting: Option<i64>,
    ) -> Result<UpgradeRequest, ControlError> {
        let operator = to.operator.as_str();
        let (record, tasks) = self.record_and_tasks(name)?;
        if record.state != PipelineState::Running {
            return Err(ControlError::NotRunning(name.to_string()));
        }
        // A promotion is of the canary it was asked for (a rollback may have come first).
        if promoting.is_some() && record.canary.as_ref().map(|c| c.started_ms) != promoting {
            return Err(ControlError::NoProbation(name.to_string()));
        }
        if let Some(c) = record.canary.as_ref().filter(|_| promoting.is_none()) {
            return Err(ControlError::CanaryRuns {
                pipeline: name.to_string(),
                operator: format!("{}@{}", c.operator.id, c.operator.version),
                partitions: c.partitions.clone(),
            });
        }
        if let Some(s) = record
            .shadow
            .as_ref()
            .filter(|s| s.state == crate::model::ShadowState::Running)
        {
            return Err(ControlError::ShadowRuns {
                pipeline: name.to_string(),
                operator: format!("{}@{}", s.operator.id, s.operator.version),
            });
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
        let target = self.registry().resolve(&old.name, to.version)?;
        let old_config = &record.spec.operators[index].config;
        let config = match &to.config {
            Some(c) if c != old_config => {
                UpgradeTo::check_config(c)?;
                ConfigChange {
                    old: Some(old_config.clone()),
                    new: Some(c.clone()),
                }
            }
            _ => ConfigChange::default(),
        };
        if target.version == old.version && config.new.is_none() {
            return Err(ControlError::AlreadyRuns {
                operator: operator.to_string(),
                name: target.name,
                version: target.version,
            });
        }
        let plan = self
            .factory
            .swap_plan(&record, index, &old, &target, &config)
            .map_err(ControlError::stage)?;
        if let Some(partitions) = to.partitions.as_ref().filter(|_| promoting.is_none()) {
            // Every partition of the stage (in a cluster, not only this server's).
            let (stage, _) = stage_of(&record.spec, index).expect("every operator is in a stage");
            check_canary(partitions, self.stage_partitions(&record.spec, &stage)?)?;
        }
        Ok(UpgradeRequest {
            record,
            tasks,
            plan: Arc::new(plan),
            config,
        })
    }

    /// Everything up to the probation: checks, pause, savepoint, swap, migration, resume.
    /// Returns the upgrade as recorded, and what its probation needs (none when the
    /// swap failed and was undone).
    fn begin_upgrade(
        &self,
        name: &str,
        to: &UpgradeTo,
        promoting: Option<i64>,
    ) -> Result<(UpgradeRecord, Option<OnProbation>), ControlError> {
        let UpgradeRequest {
            record,
            tasks,
            plan,
            config,
        } = self.upgrade_request(name, to, promoting)?;
        let stage_tasks: Vec<Arc<TaskHandle>> = tasks
            .iter()
            .filter(|t| t.id.stage == plan.stage)
            .filter(|t| {
                to.partitions
                    .as_ref()
                    .is_none_or(|p| p.contains(&t.id.partition))
            })
            .cloned()
            .collect();
        let canary = to.partitions.is_some() && promoting.is_none();
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
        let mut failure = replies.iter().find_map(|r| r.as_ref().err().cloned());
        let old_format = plan.old.pinned.state_version;
        if let Some(v) = replies
            .iter()
            .filter_map(|r| r.as_ref().ok()?.state_version)
            .find(|v| canary && *v != old_format)
        {
            failure = failure.or(Some(format!(
                "a canary cannot change the state format (state-version {old_format} → {v}): its partitions could not go back; upgrade every partition"
            )));
        }
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
            operator: to.operator.clone(),
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
            judge: None,
            decision: None,
            partitions: to.partitions.clone(),
            old_config: config.old,
            new_config: config.new,
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
            started_ms,
            canary,
        });
        Ok((upgrade, probation))
    }

    /// Sends the tasks back to the plan's old version, dropping what they hold.
    pub(super) fn roll_back(
        &self,
        name: &str,
        plan: &Arc<SwapPlan>,
        tasks: &[Arc<TaskHandle>],
        what: &str,
    ) {
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
    /// operator now runs that version for good (or, for a canary, on its partitions).
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
            if let Some(pin) = pin.filter(|_| upgrade.result == UpgradeResult::Canary) {
                entry.record.canary = Some(Canary {
                    operator: pin.clone(),
                    config: upgrade.new_config.clone(),
                    partitions: upgrade.partitions.clone().unwrap_or_default(),
                    started_ms: upgrade.started_ms,
                });
            } else if let Some(pin) = pin
                && let Some(o) = entry.record.operators.iter_mut().find(|o| o.id == pin.id)
            {
                // Every partition runs it now (a promoted canary is no more).
                entry.record.canary = None;
                *o = pin.clone();
                if let Some(config) = &upgrade.new_config
                    && let Some(o) = entry
                        .record
                        .spec
                        .operators
                        .iter_mut()
                        .find(|o| o.id() == pin.id)
                {
                    o.config = config.clone();
                }
            }
            self.store.touch(&mut entry.record)?;
            // A shared pipeline's servers follow its upgrades through the catalog.
            self.share(&entry.record);
            Ok(())
        })
    }

    /// Writes an upgrade's outcome into the pipeline's record: succeeded (with the
    /// operator's new version pinned) or rolled back with the reason.
    pub(super) fn conclude_upgrade(
        &self,
        name: &str,
        mut upgrade: UpgradeRecord,
        outcome: Outcome,
        pin: Option<PinnedOperator>,
    ) -> UpgradeRecord {
        upgrade.finished_ms = Some(now_ms());
        let pin = match outcome {
            Outcome::Accept { result, note } => {
                upgrade.result = result;
                upgrade.reason = note;
                pin
            }
            Outcome::RollBack(reason) => {
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

    /// Why a task of the pipeline on this server failed, if one did.
    pub(super) fn failed_task(&self, name: &str) -> Option<String> {
        let (_, tasks) = self.record_and_tasks(name).ok()?;
        tasks.iter().map(|t| t.status()).find_map(|s| {
            (s.state == TaskState::Failed).then(|| {
                format!(
                    "the task of partition {} failed: {}",
                    s.partition,
                    s.failure.unwrap_or_default()
                )
            })
        })
    }

    /// The pipeline's upgrade that started at `started_ms`, as recorded now.
    pub(super) fn recorded_upgrade(&self, name: &str, started_ms: i64) -> Option<UpgradeRecord> {
        self.table().get(name).and_then(|e| {
            e.record
                .upgrades
                .iter()
                .rev()
                .find(|u| u.started_ms == started_ms)
                .cloned()
        })
    }

    /// Ends the pipeline's upgrade on probation now, as the user asks: the server that
    /// judges it (this one, or in a cluster the one that started it) reads the decision
    /// in the record. Returns the upgrade once it ended (or, when the judge has not
    /// acted within [`DECISION_WAIT`], as it stands).
    pub fn decide_upgrade(
        &self,
        name: &str,
        decision: UpgradeDecision,
    ) -> Result<UpgradeRecord, ControlError> {
        let started_ms = self.with_entry(name, |entry| {
            let Some(last) = entry
                .record
                .upgrades
                .last_mut()
                .filter(|u| u.result == UpgradeResult::Probation)
            else {
                return Err(ControlError::NoProbation(name.to_string()));
            };
            // A follower would publish its copy of the record over the judge's verdict.
            let me = self.cluster.get().map(|l| l.me().to_string());
            if let Some(judge) = last.judge.clone().filter(|j| Some(j) != me.as_ref()) {
                return Err(ControlError::NotTheJudge {
                    pipeline: name.to_string(),
                    judge,
                });
            }
            last.decision = Some(decision);
            let started_ms = last.started_ms;
            self.store.touch(&mut entry.record)?;
            self.share(&entry.record);
            Ok(started_ms)
        })?;
        let asked = Instant::now();
        loop {
            let upgrade = self
                .recorded_upgrade(name, started_ms)
                .ok_or_else(|| ControlError::NotFound(name.to_string()))?;
            // Done once the judge also let go of the pipeline.
            let released = self.table().get(name).is_some_and(|e| e.busy.is_none());
            let ended = upgrade.result != UpgradeResult::Probation && released;
            if ended || asked.elapsed() >= DECISION_WAIT {
                return Ok(upgrade);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Watches a probation until it has an outcome (see `probation`), then commits the
    /// new version or rolls back.
    fn watch_probation(&self, name: &str, probation: OnProbation) -> UpgradeRecord {
        let OnProbation {
            plan,
            tasks,
            settings,
            started_ms,
            canary,
        } = probation;
        let started = Instant::now();
        let outcome = loop {
            let statuses: Vec<_> = tasks.iter().map(|t| t.status()).collect();
            // Any task of the pipeline: one that fed the probation may have failed.
            if let Some(failure) = self.failed_task(name) {
                break Outcome::RollBack(failure);
            }
            if let Some(f) = statuses
                .iter()
                .find_map(|s| s.probation.as_ref().and_then(|p| p.failure.clone()))
            {
                break Outcome::RollBack(f);
            }
            let mut totals = ProbationTotals::default();
            for p in statuses.iter().filter_map(|s| s.probation.as_ref()) {
                totals.add(p);
            }
            let progress = Progress {
                totals: &totals,
                elapsed: started.elapsed(),
                reports_in: true,
                decision: self
                    .recorded_upgrade(name, started_ms)
                    .and_then(|u| u.decision),
            };
            if let Some(outcome) = probation::outcome(&settings, &progress) {
                break outcome;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let upgrade = self
            .recorded_upgrade(name, started_ms)
            .expect("the upgrade was recorded");
        let outcome = match outcome {
            Outcome::Accept { note, .. } if canary => Outcome::Accept {
                result: UpgradeResult::Canary,
                note,
            },
            o => o,
        };
        let pin = match &outcome {
            Outcome::Accept { .. } => {
                let replies = ask_all(
                    &tasks,
                    |reply| Command::Accept(Arc::clone(&plan), reply),
                    SWAP_TIMEOUT,
                );
                for e in replies.iter().filter_map(|r| r.as_ref().err()) {
                    tracing::error!(pipeline = %name, "ending a probation: {e}");
                }
                Some(plan.new.pinned.clone())
            }
            Outcome::RollBack(_) => {
                let live: Vec<Arc<TaskHandle>> =
                    tasks.iter().filter(|t| !t.is_finished()).cloned().collect();
                self.roll_back(name, &plan, &live, "rolling back");
                None
            }
        };
        let upgrade = self.conclude_upgrade(name, upgrade, outcome, pin);
        self.release(name);
        upgrade
    }
}
