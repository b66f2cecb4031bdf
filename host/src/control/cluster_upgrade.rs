//! Hot upgrades of shared pipelines. The server that takes the request decides; every
//! server (itself included) converges its own tasks on what the pipeline's record says:
//!
//! 1. The record's last upgrade says `probation`: each server swaps its tasks of the
//!    operator to the new version (running `migrate` when the state format changes) at
//!    their next batch boundary and puts them on probation: they process but hold their
//!    commits (with Kafka: no transaction is begun for them). Each server reports its
//!    tasks' probation through the catalog (`upgrade/<pipeline>/<server>`).
//! 2. The deciding server (the record's `judge`) waits until every server running the
//!    pipeline has reported and the probation has its records and its time (see
//!    `probation`), until any report names a failure, the probation times out, or a user
//!    asks (the record's `decision`, written by any server); it then writes the verdict
//!    into the record: `succeeded` with the new version pinned, or `rolled_back` with the
//!    reason. A server that hears nothing from the judge for a minute rolls back on its
//!    own (the judge went away).
//! 3. On `succeeded` the tasks end their probation (the held work commits) and any task
//!    still on the old version (one started during the probation) is swapped; on
//!    `rolled_back` the tasks drop the held work and go back to the old version, from
//!    their last commit.
//!
//! Each task moves at its own batch boundary: with Kafka each task's commit is its own
//! transaction, so nothing needs the whole pipeline paused, and no savepoint is taken (the
//! held probation work is the way back). A task that moves to another server during the
//! probation loses its held work and starts from its last commit on the old version.

use super::controller::Controller;
use super::error::ControlError;
use super::probation::{self, Outcome, Progress};
use crate::model::{
    PinnedOperator, PipelineRecord, PipelineState, ProbationReport, Settings, UpgradeRecord,
    UpgradeResult, UpgradeTo,
};
use crate::record::now_ms;
use crate::task::{
    Command, ConfigChange, Probation, ProbationTotals, SWAP_TIMEOUT, SwapPlan, ask_all,
};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A server that heard nothing from the deciding server this long rolls back on its own
/// (the deciding server went away). Every server reports at least once a second.
const VERDICT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the deciding server waits for a server's first report after the window.
const REPORT_GRACE: Duration = Duration::from_secs(10);
/// How often a server looks at its tasks during an upgrade.
const RECONCILE_EVERY: Duration = Duration::from_millis(50);

/// What the judge of a shared upgrade needs.
struct Judged {
    upgrade: UpgradeRecord,
    settings: Settings,
    /// Its partitions go on as a canary when it passes.
    canary: bool,
    /// The state format of the version the canary partitions leave.
    old_format: u32,
}

impl Controller {
    /// Starts a hot upgrade of a shared pipeline (the caller claimed it; see the module
    /// documentation): records it as on probation and returns the thread that judges it.
    pub(super) fn begin_shared_upgrade(
        self: &Arc<Self>,
        name: &str,
        to: &UpgradeTo,
        promoting: Option<i64>,
    ) -> Result<(UpgradeRecord, Option<JoinHandle<UpgradeRecord>>), ControlError> {
        // Validates and compiles both versions before any task moves.
        let request = self.upgrade_request(name, to, promoting)?;
        let upgrade_started = now_ms();
        let upgrade = UpgradeRecord {
            operator: to.operator.clone(),
            from_version: request.plan.old.pinned.version,
            to_version: request.plan.new.pinned.version,
            savepoint: String::new(),
            pause_ms: 0.0,
            migrated_keys: 0,
            result: UpgradeResult::Probation,
            reason: None,
            started_ms: upgrade_started,
            finished_ms: None,
            judge: self.cluster.get().map(|l| {
                // Judged here from now on, before any follower can look.
                l.set_judging(name, upgrade_started, true);
                l.me().to_string()
            }),
            decision: None,
            partitions: to.partitions.clone(),
            old_config: request.config.old.clone(),
            new_config: request.config.new.clone(),
        };
        if let Err(e) = self.record_upgrade(name, &upgrade, None) {
            if let Some(l) = self.cluster.get() {
                l.set_judging(name, upgrade_started, false);
            }
            return Err(e);
        }
        self.reconcile_upgrade(name);
        let this = Arc::clone(self);
        let pipeline = name.to_string();
        let judged = Judged {
            upgrade: upgrade.clone(),
            settings: request.record.spec.settings.clone(),
            canary: to.partitions.is_some() && promoting.is_none(),
            old_format: request.plan.old.pinned.state_version,
        };
        let judge = std::thread::spawn(move || this.judge_shared(&pipeline, judged));
        Ok((upgrade, Some(judge)))
    }

    /// Waits for every server's probation, then writes the verdict into the record.
    fn judge_shared(self: &Arc<Self>, name: &str, judged: Judged) -> UpgradeRecord {
        let started_ms = judged.upgrade.started_ms;
        let judged = self.judge_until_verdict(name, judged);
        if let Some(l) = self.cluster.get() {
            l.set_judging(name, started_ms, false);
        }
        judged
    }

    fn judge_until_verdict(self: &Arc<Self>, name: &str, judged: Judged) -> UpgradeRecord {
        let Judged {
            mut upgrade,
            settings,
            canary,
            old_format,
        } = judged;
        let started = Instant::now();
        let grace = Duration::from_millis(settings.probation_ms) + REPORT_GRACE;
        let (outcome, state_version) = loop {
            // A user's decision, or a follower that rolled back on its own, is in the record.
            let recorded = self.recorded_upgrade(name, upgrade.started_ms);
            if let Some(u) = recorded.filter(|u| u.result != UpgradeResult::Probation) {
                self.reconcile_upgrade(name);
                self.release(name);
                return u;
            }
            let recorded = self.recorded_upgrade(name, upgrade.started_ms);
            let reports: Vec<(String, ProbationReport)> = self
                .cluster
                .get()
                .map(|l| l.probation.of(name))
                .unwrap_or_default()
                .into_iter()
                .filter(|(_, r)| r.started_ms == upgrade.started_ms)
                .collect();
            if let Some((server, f)) = reports
                .iter()
                .find_map(|(s, r)| r.failure.as_ref().map(|f| (s, f)))
            {
                break (Outcome::RollBack(format!("on server {server}: {f}")), None);
            }
            // A canary's (or a promotion's) servers: those that run its partitions.
            let owners = self.owner_servers(name, upgrade.partitions.as_deref());
            if let Some(v) = reports
                .iter()
                .filter_map(|(_, r)| r.state_version)
                .find(|v| canary && *v != old_format)
            {
                break (
                    Outcome::RollBack(format!(
                        "a canary cannot change the state format (state-version {old_format} → {v}): its partitions could not go back; upgrade every partition"
                    )),
                    None,
                );
            }
            let all_in = owners
                .iter()
                .all(|s| reports.iter().any(|(r, rep)| r == s && rep.swapped > 0));
            let mut totals = ProbationTotals::default();
            for (_, r) in &reports {
                totals.add(&Probation {
                    processed: r.processed,
                    errors: r.errors,
                    first_error: r.first_error.clone(),
                    baseline_errors: r.baseline_errors,
                    baseline_records: r.baseline_records,
                    failure: None,
                });
            }
            // A rate is judged on every server's report (a rejected record where none
            // may be is judged at once).
            let progress = Progress {
                totals: &totals,
                elapsed: started.elapsed(),
                reports_in: all_in || started.elapsed() >= grace,
                decision: recorded.and_then(|u| u.decision),
            };
            if let Some(outcome) = probation::outcome(&settings, &progress) {
                upgrade.pause_ms = reports.iter().map(|(_, r)| r.pause_ms).fold(0.0, f64::max);
                upgrade.migrated_keys = reports.iter().map(|(_, r)| r.migrated_keys).sum();
                break (outcome, reports.iter().find_map(|(_, r)| r.state_version));
            }
            if !self.is_running(name) {
                break (
                    Outcome::RollBack("the pipeline stopped during the probation".into()),
                    None,
                );
            }
            if let Some(failure) = self.failed_task(name) {
                break (Outcome::RollBack(failure), None);
            }
            self.heartbeat(name, upgrade.started_ms);
            std::thread::sleep(Duration::from_millis(20));
        };
        let outcome = match outcome {
            Outcome::Accept { note, .. } if canary => Outcome::Accept {
                result: UpgradeResult::Canary,
                note,
            },
            o => o,
        };
        let pin = match outcome {
            Outcome::Accept { .. } => self.pinned_target(name, &upgrade, state_version),
            Outcome::RollBack(_) => None,
        };
        if let Some(u) = self.recorded_upgrade(name, upgrade.started_ms) {
            upgrade.decision = u.decision;
        }
        let upgrade = self.conclude_upgrade(name, upgrade, outcome, pin);
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
    ) -> Option<PinnedOperator> {
        let (record, _) = self.record_and_tasks(name).ok()?;
        let old = record.operators.iter().find(|o| o.id == upgrade.operator)?;
        let v = self
            .registry()
            .version(&old.name, upgrade.to_version)
            .ok()?;
        Some(PinnedOperator {
            id: old.id.clone(),
            name: v.name,
            version: v.version,
            digest: v.digest,
            state_version: state_version.unwrap_or(old.state_version),
        })
    }

    fn is_running(&self, name: &str) -> bool {
        self.table()
            .get(name)
            .is_some_and(|e| e.record.state == PipelineState::Running)
    }

    /// Makes sure this server's tasks follow the pipeline's last upgrade (a thread per
    /// pipeline while there is something to do).
    pub(super) fn reconcile_upgrade(self: &Arc<Self>, name: &str) {
        let Some(link) = self.cluster.get() else {
            return;
        };
        {
            let mut running = link.reconciling.lock().expect("reconciling lock");
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
                    let Some(link) = this.cluster.get() else {
                        return;
                    };
                    let mut running = link.reconciling.lock().expect("reconciling lock");
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
            link.reconciling
                .lock()
                .expect("reconciling lock")
                .remove(name);
        }
    }

    /// Moves this server's tasks towards the record's last upgrade until they are there
    /// (for a probation: until its verdict), reporting the probation on the way.
    fn converge_tasks(&self, name: &str) {
        let mut plan: Option<(i64, Arc<SwapPlan>)> = None;
        let mut sent: Option<(ProbationReport, Instant)> = None;
        let following = Instant::now();
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
                match self.plan_for(&record, &upgrade) {
                    Ok(p) => plan = Some((upgrade.started_ms, Arc::new(p))),
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
            let (_, p) = plan.as_ref().expect("built above");
            // A canary (or its promotion) moves only its partitions.
            let live: Vec<_> = tasks
                .into_iter()
                .filter(|t| t.id.stage == p.stage && !t.is_finished())
                .filter(|t| {
                    upgrade
                        .partitions
                        .as_ref()
                        .is_none_or(|ps| ps.contains(&t.id.partition))
                })
                .collect();
            let result = upgrade.result;
            let steps = ask_all(
                &live,
                |reply| Command::converge(Arc::clone(p), result)(reply),
                SWAP_TIMEOUT,
            );
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
                        if let Some(p) = &s.probation {
                            report.errors += p.errors;
                            report.baseline_errors += p.baseline_errors;
                            report.baseline_records += p.baseline_records;
                            report.first_error =
                                report.first_error.take().or(p.first_error.clone());
                        }
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
            if self.judge_went_away(name, &upgrade, following) {
                // The deciding server went away: roll back here and say so (unless its
                // verdict came in since this loop read the record).
                if let Err(e) = self.roll_back_unjudged(name, upgrade.started_ms) {
                    tracing::error!(pipeline = %name, "cannot record the rollback: {e}");
                }
                continue;
            }
            std::thread::sleep(RECONCILE_EVERY);
        }
    }

    /// Records the upgrade that started at `started_ms` as rolled back for want of a
    /// verdict, if it is still the last one and on probation.
    fn roll_back_unjudged(&self, name: &str, started_ms: i64) -> Result<(), ControlError> {
        self.with_entry(name, |entry| {
            let Some(last) = entry
                .record
                .upgrades
                .last_mut()
                .filter(|u| u.started_ms == started_ms && u.result == UpgradeResult::Probation)
            else {
                return Ok(());
            };
            last.result = UpgradeResult::RolledBack;
            last.reason = Some("no verdict from the server that started the upgrade".into());
            last.finished_ms = Some(now_ms());
            self.store.touch(&mut entry.record)?;
            self.share(&entry.record);
            Ok(())
        })
    }

    /// Whether the server judging an upgrade on probation went quiet: nothing heard from
    /// it for [`VERDICT_TIMEOUT`] since this server began following. (An upgrade
    /// recorded without a judge, by an older server, waits its probation window and the
    /// timeout.)
    fn judge_went_away(&self, name: &str, upgrade: &UpgradeRecord, following: Instant) -> bool {
        let Some(link) = self.cluster.get() else {
            return false;
        };
        match &upgrade.judge {
            // Judged here only while the judging thread runs (not after a restart).
            Some(judge) if judge == link.me() => !link.judges(name, upgrade.started_ms),
            Some(judge) => {
                let heard = link
                    .probation
                    .heard(name, judge)
                    .map_or(following, |at| at.max(following));
                heard.elapsed() >= VERDICT_TIMEOUT
            }
            None => {
                let waited = Duration::from_millis((now_ms() - upgrade.started_ms).max(0) as u64);
                let window = Duration::from_millis(
                    self.table()
                        .get(name)
                        .map_or(0, |e| e.record.spec.settings.probation_ms),
                );
                waited >= window + VERDICT_TIMEOUT
            }
        }
    }

    fn plan_for(
        &self,
        record: &PipelineRecord,
        upgrade: &UpgradeRecord,
    ) -> Result<SwapPlan, ControlError> {
        let i = record
            .operators
            .iter()
            .position(|o| o.id == upgrade.operator)
            .ok_or_else(|| ControlError::NotFound(upgrade.operator.clone()))?;
        let mut old = record.operators[i].clone();
        old.version = upgrade.from_version;
        let target = self.registry().version(&old.name, upgrade.to_version)?;
        old.digest = self.registry().version(&old.name, old.version)?.digest;
        let config = ConfigChange {
            old: upgrade.old_config.clone(),
            new: upgrade.new_config.clone(),
        };
        self.factory
            .swap_plan(record, i, &old, &target, &config)
            .map_err(ControlError::stage)
    }

    /// The judge says it is there: its server's last report goes out again once a
    /// second, whatever this server's tasks are busy with.
    fn heartbeat(&self, name: &str, started_ms: i64) {
        let Some(link) = self.cluster.get() else {
            return;
        };
        let quiet = link
            .probation
            .heard(name, link.me())
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(1));
        if !quiet {
            return;
        }
        let mine = link
            .probation
            .of(name)
            .into_iter()
            .find(|(s, r)| s == link.me() && r.started_ms == started_ms)
            .map(|(_, r)| r)
            .unwrap_or(ProbationReport {
                started_ms,
                ..ProbationReport::default()
            });
        self.send_probation_report(name, &mine);
    }

    /// Keeps a report here and shares it with the deciding server.
    fn send_probation_report(&self, name: &str, report: &ProbationReport) {
        let Some(link) = self.cluster.get() else {
            return;
        };
        link.probation.put(name, link.me(), report.clone());
        if let Err(e) = link.catalog.publish_probation(name, report) {
            tracing::warn!(pipeline = %name, "cannot report the probation: {e}");
        }
    }

    /// The servers that run a shared pipeline's partitions (or `only` these) now.
    fn owner_servers(&self, name: &str, only: Option<&[u32]>) -> BTreeSet<String> {
        let Some(link) = self.cluster.get() else {
            return BTreeSet::new();
        };
        link.catalog
            .owners(name)
            .into_iter()
            .filter(|(p, _)| only.is_none_or(|o| o.contains(p)))
            .map(|(_, server)| server)
            .collect()
    }
}
