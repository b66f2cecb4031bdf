//! Hot upgrades of shared pipelines. The server that takes the request decides; every
//! server (itself included) converges its own tasks on what the pipeline's record says:
//!
//! 1. The record's last upgrade says `probation`: each server swaps its tasks of the
//!    operator to the new version (running `migrate` when the state format changes) at
//!    their next batch boundary and puts them on probation: they process but hold their
//!    commits (with Kafka: no transaction is begun for them). Each server reports its
//!    tasks' probation through the catalog (`upgrade/<pipeline>/<server>`).
//! 2. The deciding server waits until every server running the pipeline has reported and
//!    the probation window (records or time) has passed, or until any report names a
//!    failure; it then writes the verdict into the record: `succeeded` with the new
//!    version pinned, or `rolled_back` with the reason.
//! 3. On `succeeded` the tasks end their probation (the held work commits) and any task
//!    still on the old version (one started during the probation) is swapped; on
//!    `rolled_back` the tasks drop the held work and go back to the old version, from
//!    their last commit.
//!
//! Each task moves at its own batch boundary: with Kafka each task's commit is its own
//! transaction, so nothing needs the whole pipeline paused, and no savepoint is taken (the
//! held probation work is the way back). A task that moves to another server during the
//! probation loses its held work and starts from its last commit on the old version.

use super::controller::{ControlError, Controller};
use super::upgrade::{SwapPlan, migrate, run_on};
use super::{PipelineState, VersionRef};
use crate::model::{ProbationReport, UpgradeRecord, UpgradeResult};
use crate::record::now_ms;
use crate::task::Task;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A server without a verdict this long after the probation window rolls back on its
/// own (the deciding server went away).
const VERDICT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the deciding server waits for a server's first report after the window.
const REPORT_GRACE: Duration = Duration::from_secs(10);
/// How often a server looks at its tasks during an upgrade.
const RECONCILE_EVERY: Duration = Duration::from_millis(50);

/// What one task did in a step towards the record's state.
#[derive(Default)]
struct TaskStep {
    on_new: bool,
    processed: u64,
    failure: Option<String>,
    pause_ms: f64,
    migrated_keys: u64,
    state_version: Option<u32>,
}

/// Brings one task to what `result` asks of it (idempotent).
fn converge(task: &mut Task, plan: &SwapPlan, result: UpgradeResult) -> Result<TaskStep, String> {
    let (old, new) = (plan.old.pinned.version, plan.new.pinned.version);
    let running = task.operators_mut()[plan.local].version();
    let mut step = TaskStep::default();
    let started = Instant::now();
    match result {
        UpgradeResult::Probation | UpgradeResult::Succeeded if running == Some(old) => {
            let (from, to) = plan.swap(task, &plan.old, &plan.new)?;
            if from != to {
                match migrate(task, plan.local, &plan.db, &plan.pipeline, from) {
                    Ok(n) => step.migrated_keys = n,
                    Err(reason) => {
                        task.discard_uncommitted();
                        plan.swap(task, &plan.new, &plan.old)?;
                        return Err(reason);
                    }
                }
            }
            step.state_version = Some(to);
            if result == UpgradeResult::Probation {
                task.begin_probation();
            }
            step.pause_ms = started.elapsed().as_secs_f64() * 1e3;
        }
        UpgradeResult::RolledBack if running == Some(new) => {
            task.end_probation();
            task.discard_uncommitted();
            plan.swap(task, &plan.new, &plan.old)?;
        }
        _ => {}
    }
    if result == UpgradeResult::Succeeded {
        task.end_probation();
    }
    step.on_new = task.operators_mut()[plan.local].version() == Some(new);
    if let Some(p) = task.probation() {
        step.processed = p.processed;
        step.failure = p.failure.clone();
    }
    Ok(step)
}

impl Controller {
    /// Starts a hot upgrade of a shared pipeline (the caller claimed it); see the module
    /// documentation. With `wait`, returns once the verdict is in.
    pub(super) fn upgrade_shared(
        self: &Arc<Self>,
        name: &str,
        operator: &str,
        version: Option<VersionRef>,
        wait: bool,
    ) -> Result<UpgradeRecord, ControlError> {
        let begun = (|| {
            // Validates and compiles both versions before any task moves.
            let request = self.upgrade_request(name, operator, version)?;
            let upgrade = UpgradeRecord {
                operator: operator.to_string(),
                from_version: request.plan.old.pinned.version,
                to_version: request.plan.new.pinned.version,
                savepoint: String::new(),
                pause_ms: 0.0,
                migrated_keys: 0,
                result: UpgradeResult::Probation,
                reason: None,
                started_ms: now_ms(),
                finished_ms: None,
            };
            self.record_upgrade(name, &upgrade, None)?;
            Ok((upgrade, request.record.spec.settings.clone()))
        })();
        let (upgrade, settings) = match begun {
            Ok(b) => b,
            Err(e) => {
                self.release(name);
                return Err(e);
            }
        };
        self.reconcile_upgrade(name);
        let this = Arc::clone(self);
        let pipeline = name.to_string();
        let first = upgrade.clone();
        let judge = std::thread::spawn(move || this.judge_shared(&pipeline, upgrade, settings));
        if wait {
            return judge
                .join()
                .map_err(|_| ControlError::Conflict("the probation judge panicked".into()));
        }
        Ok(first)
    }

    /// Waits for every server's probation, then writes the verdict into the record.
    fn judge_shared(
        self: &Arc<Self>,
        name: &str,
        mut upgrade: UpgradeRecord,
        settings: super::Settings,
    ) -> UpgradeRecord {
        let started = Instant::now();
        let window = Duration::from_millis(settings.probation_ms);
        let verdict = loop {
            let reports: Vec<(String, ProbationReport)> = self
                .probation_reports
                .lock()
                .expect("reports lock")
                .get(name)
                .into_iter()
                .flatten()
                .filter(|(_, r)| r.started_ms == upgrade.started_ms)
                .map(|(s, r)| (s.clone(), r.clone()))
                .collect();
            if let Some((server, f)) = reports
                .iter()
                .find_map(|(s, r)| r.failure.as_ref().map(|f| (s, f)))
            {
                break Err(format!("on server {server}: {f}"));
            }
            let owners = self.owner_servers(name);
            let all_in = owners
                .iter()
                .all(|s| reports.iter().any(|(r, rep)| r == s && rep.swapped > 0));
            let processed: u64 = reports.iter().map(|(_, r)| r.processed).sum();
            let passed = processed >= settings.probation_records || started.elapsed() >= window;
            if passed && (all_in || started.elapsed() >= window + REPORT_GRACE) {
                upgrade.pause_ms = reports.iter().map(|(_, r)| r.pause_ms).fold(0.0, f64::max);
                upgrade.migrated_keys = reports.iter().map(|(_, r)| r.migrated_keys).sum();
                break Ok(reports.iter().find_map(|(_, r)| r.state_version));
            }
            if !self.is_running(name) {
                break Err("the pipeline stopped during the probation".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        upgrade.finished_ms = Some(now_ms());
        let pin = match verdict {
            Ok(state_version) => {
                upgrade.result = UpgradeResult::Succeeded;
                self.pinned_target(name, &upgrade, state_version)
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
        self.reconcile_upgrade(name);
        self.release(name);
        upgrade
    }

    /// The pinned operator an upgrade moves to.
    fn pinned_target(
        &self,
        name: &str,
        upgrade: &UpgradeRecord,
        state_version: Option<u32>,
    ) -> Option<super::PinnedOperator> {
        let (record, _) = self.record_and_tasks(name).ok()?;
        let old = record.operators.iter().find(|o| o.id == upgrade.operator)?;
        let v = self.registry.version(&old.name, upgrade.to_version).ok()?;
        Some(super::PinnedOperator {
            id: old.id.clone(),
            name: v.name,
            version: v.version,
            digest: v.digest,
            state_version: state_version.unwrap_or(old.state_version),
        })
    }

    fn is_running(&self, name: &str) -> bool {
        self.pipelines
            .lock()
            .expect("pipelines lock")
            .get(name)
            .is_some_and(|e| e.record.state == PipelineState::Running)
    }

    /// Another server's report of its tasks in a shared upgrade.
    pub(super) fn take_probation_report(&self, pipeline: &str, server: &str, r: ProbationReport) {
        self.probation_reports
            .lock()
            .expect("reports lock")
            .entry(pipeline.to_string())
            .or_default()
            .insert(server.to_string(), r);
    }

    /// Makes sure this server's tasks follow the pipeline's last upgrade (a thread per
    /// pipeline while there is something to do).
    pub(super) fn reconcile_upgrade(self: &Arc<Self>, name: &str) {
        {
            let mut running = self.reconciling.lock().expect("reconciling lock");
            if let Some(again) = running.get_mut(name) {
                *again = true;
                return;
            }
            running.insert(name.to_string(), false);
        }
        let this = Arc::clone(self);
        let pipeline = name.to_string();
        let spawned = std::thread::Builder::new()
            .name("eddy-upgrade".into())
            .spawn(move || {
                loop {
                    this.converge_tasks(&pipeline);
                    let mut running = this.reconciling.lock().expect("reconciling lock");
                    match running.get_mut(&pipeline) {
                        Some(again) if *again => *again = false,
                        _ => {
                            running.remove(&pipeline);
                            return;
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(pipeline = %name, "cannot follow the upgrade: {e}");
            self.reconciling
                .lock()
                .expect("reconciling lock")
                .remove(name);
        }
    }

    /// Moves this server's tasks towards the record's last upgrade until they are there
    /// (for a probation: until its verdict), reporting the probation on the way.
    fn converge_tasks(&self, name: &str) {
        let mut plan: Option<(i64, SwapPlan, u32)> = None;
        let mut sent: Option<(ProbationReport, Instant)> = None;
        loop {
            let Ok((record, tasks)) = self.record_and_tasks(name) else {
                return;
            };
            let Some(upgrade) = record.upgrades.last().cloned() else {
                return;
            };
            if plan
                .as_ref()
                .is_none_or(|(id, ..)| *id != upgrade.started_ms)
            {
                let built = self.plan_for(&record, &upgrade);
                match built {
                    Ok((p, stage)) => plan = Some((upgrade.started_ms, p, stage)),
                    Err(e) => {
                        // This server cannot run the new version: that fails the probation.
                        if upgrade.result == UpgradeResult::Probation {
                            let report = ProbationReport {
                                started_ms: upgrade.started_ms,
                                failure: Some(e.to_string()),
                                ..ProbationReport::default()
                            };
                            self.send_probation_report(name, &report);
                        } else {
                            tracing::error!(pipeline = %name, "cannot follow the upgrade: {e}");
                        }
                        return;
                    }
                }
            }
            let (_, p, stage) = plan.as_ref().expect("built above");
            let live: Vec<_> = tasks
                .into_iter()
                .filter(|t| t.id.stage == *stage && !t.is_finished())
                .collect();
            let job_plan = p.clone();
            let result = upgrade.result;
            let steps = run_on(self, &live, move |task| converge(task, &job_plan, result));
            if result != UpgradeResult::Probation {
                for s in steps.iter().filter_map(|s| s.as_ref().err()) {
                    tracing::error!(pipeline = %name, "following the upgrade: {s}");
                }
                return;
            }
            let mut report = ProbationReport {
                started_ms: upgrade.started_ms,
                ..ProbationReport::default()
            };
            for s in &steps {
                match s {
                    Ok(s) => {
                        report.swapped += u32::from(s.on_new);
                        report.processed += s.processed;
                        report.failure = report.failure.take().or(s.failure.clone());
                        report.pause_ms = report.pause_ms.max(s.pause_ms);
                        report.migrated_keys += s.migrated_keys;
                        report.state_version = report.state_version.or(s.state_version);
                    }
                    Err(e) => report.failure = report.failure.take().or(Some(e.clone())),
                }
            }
            // Pause and migration figures come from the step that swapped: keep them.
            if let Some((last, _)) = &sent
                && last.started_ms == report.started_ms
            {
                report.pause_ms = report.pause_ms.max(last.pause_ms);
                report.migrated_keys = report.migrated_keys.max(last.migrated_keys);
                report.state_version = report.state_version.or(last.state_version);
            }
            let due = sent
                .as_ref()
                .is_none_or(|(last, at)| *last != report || at.elapsed() >= Duration::from_secs(1));
            if due {
                self.send_probation_report(name, &report);
                sent = Some((report, Instant::now()));
            }
            let waited = Duration::from_millis((now_ms() - upgrade.started_ms).max(0) as u64);
            if waited >= Duration::from_millis(record.spec.settings.probation_ms) + VERDICT_TIMEOUT
            {
                // The deciding server went away: roll back here and say so.
                let mut rolled = upgrade.clone();
                rolled.result = UpgradeResult::RolledBack;
                rolled.reason = Some("no verdict from the server that started the upgrade".into());
                rolled.finished_ms = Some(now_ms());
                if let Err(e) = self.record_upgrade(name, &rolled, None) {
                    tracing::error!(pipeline = %name, "cannot record the rollback: {e}");
                }
                continue;
            }
            std::thread::sleep(RECONCILE_EVERY);
        }
    }

    fn plan_for(
        &self,
        record: &super::PipelineRecord,
        upgrade: &UpgradeRecord,
    ) -> Result<(SwapPlan, u32), ControlError> {
        let i = record
            .operators
            .iter()
            .position(|o| o.id == upgrade.operator)
            .ok_or_else(|| ControlError::NotFound(upgrade.operator.clone()))?;
        let mut old = record.operators[i].clone();
        old.version = upgrade.from_version;
        let target = self.registry.version(&old.name, upgrade.to_version)?;
        old.digest = self.registry.version(&old.name, old.version)?.digest;
        self.swap_plan(record, i, &old, &target)
    }

    /// Keeps a report here and shares it with the deciding server.
    fn send_probation_report(&self, name: &str, report: &ProbationReport) {
        let Some(link) = self.cluster.get() else {
            return;
        };
        let me = link.catalog.server().to_string();
        self.take_probation_report(name, &me, report.clone());
        if let Err(e) = link.catalog.publish_probation(name, report) {
            tracing::warn!(pipeline = %name, "cannot report the probation: {e}");
        }
    }

    /// The servers that run a shared pipeline's partitions now.
    fn owner_servers(&self, name: &str) -> std::collections::BTreeSet<String> {
        self.cluster
            .get()
            .map(|l| l.catalog.owners(name).into_values().collect())
            .unwrap_or_default()
    }
}
