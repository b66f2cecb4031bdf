//! Hot upgrade, task side: swap an operator of a running task for another version at a
//! batch boundary, migrate its state when the state format changes, and hold the new
//! version's work on probation until a verdict commits it or rolls it back.

use super::operator::{OperatorTemplate, Unavailable};
use super::{Operator, Task};
use crate::model::{PinnedOperator, UpgradeResult};
use crate::state::{Db, TIMERS};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// Entries handed to `migrate` per call, and about how many bytes of them at most.
const MIGRATE_PAGE: usize = 1000;
const MIGRATE_PAGE_BYTES: usize = 16 << 20;
/// Longest a task may take to answer a swap (with its migration) before the upgrade is
/// abandoned.
pub const SWAP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// The operator's config before and after an upgrade that changes it (`None`: as the
/// pipeline's spec says).
#[derive(Debug, Clone, Default)]
pub struct ConfigChange {
    pub old: Option<BTreeMap<String, String>>,
    pub new: Option<BTreeMap<String, String>>,
}

/// One version of the operator being swapped: how to start it, and what the pipeline
/// record pins.
#[derive(Clone)]
pub struct Version {
    pub template: OperatorTemplate,
    pub pinned: PinnedOperator,
}

/// Everything a task needs to move one operator between two versions.
#[derive(Clone)]
pub struct SwapPlan {
    /// The stage the operator runs in.
    pub stage: u32,
    /// Its index within the stage's chain.
    pub local: usize,
    pub old: Version,
    pub new: Version,
    /// Partitions of the stage (what the operator's `context` reports).
    pub partitions: u32,
    pub db: Arc<Db>,
}

/// What one task did in a step towards an upgrade's verdict, and how its probation goes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SwapReport {
    /// The task runs the new version now.
    pub on_new: bool,
    /// Records processed on probation so far.
    pub processed: u64,
    /// Why the new version failed in this task, if it did.
    pub failure: Option<String>,
    /// The probation's records, rejected records and the old version's error rate.
    pub probation: Option<super::Probation>,
    /// How long the swap (and migration) held the task, when it swapped now.
    pub pause_ms: f64,
    /// Keys `migrate` converted, when it swapped now.
    pub migrated_keys: u64,
    /// The new version's state format, when it swapped now.
    pub state_version: Option<u32>,
}

impl Version {
    /// Whether `op` runs this version (and config).
    fn runs_in(&self, op: &dyn Operator) -> bool {
        op.version() == Some(self.pinned.version) && op.config() == self.template.config
    }
}

impl SwapPlan {
    /// Replaces the running version `from` with `to` in a task; on failure puts `from`
    /// back. Returns the state versions `(from, to)`.
    fn swap(&self, task: &mut Task, from: &Version, to: &Version) -> Result<(u32, u32), String> {
        let mut versions = (0, 0);
        task.swap_operator(self.local, |old| {
            versions.0 = old.state_version();
            match to.template.start_on(old.into_state(), self.partitions) {
                Ok(new) => {
                    versions.1 = new.state_version();
                    Ok(Box::new(new) as Box<dyn Operator>)
                }
                Err((reason, state)) => {
                    let back: Box<dyn Operator> =
                        match from.template.start_on(state, self.partitions) {
                            Ok(op) => Box::new(op),
                            Err((again, state)) => Box::new(Unavailable::new(
                                format!("{}@{}", from.pinned.id, from.pinned.version),
                                again.to_string(),
                                state,
                            )),
                        };
                    Err((back, reason.to_string()))
                }
            }
        })?;
        Ok(versions)
    }
}

/// Brings a task to what `target` asks of the plan's operator (idempotent):
/// - `Probation`: on the old version, swap to the new one (running its `migrate` when
///   the state format changes) and hold its commits on probation;
/// - `Succeeded`: end the probation, so the held work commits (a task still on the old
///   version swaps first);
/// - `RolledBack`: on the new version, drop the held work and go back to the old one,
///   from the last commit.
pub fn converge(
    task: &mut Task,
    plan: &SwapPlan,
    target: UpgradeResult,
) -> Result<SwapReport, String> {
    let on_old = plan.old.runs_in(task.operators_mut()[plan.local].as_ref());
    let on_new = plan.new.runs_in(task.operators_mut()[plan.local].as_ref());
    let mut report = SwapReport::default();
    let started = Instant::now();
    match target {
        UpgradeResult::Probation | UpgradeResult::Succeeded if on_old => {
            let (from, to) = plan.swap(task, &plan.old, &plan.new)?;
            if from != to {
                match migrate(task.operators_mut()[plan.local].as_mut(), &plan.db, from) {
                    Ok(n) => report.migrated_keys = n,
                    Err(reason) => {
                        task.discard_uncommitted();
                        plan.swap(task, &plan.new, &plan.old)?;
                        return Err(reason);
                    }
                }
            }
            report.state_version = Some(to);
            if target == UpgradeResult::Probation {
                task.begin_probation();
            }
            report.pause_ms = started.elapsed().as_secs_f64() * 1e3;
        }
        UpgradeResult::RolledBack if on_new => {
            task.end_probation();
            task.discard_uncommitted();
            plan.swap(task, &plan.new, &plan.old)?;
        }
        _ => {}
    }
    if target == UpgradeResult::Succeeded {
        task.accept_probation();
    }
    report.on_new = plan.new.runs_in(task.operators_mut()[plan.local].as_ref());
    if let Some(p) = task.probation() {
        report.processed = p.processed;
        report.failure = p.failure.clone();
        report.probation = Some(p.clone());
    }
    Ok(report)
}

/// Runs the operator's `migrate` over every store it has in its task's partition, from
/// the state format `from_version`; returns how many keys it converted. The converted
/// state is pending, for the task's next commit.
pub fn migrate(op: &mut dyn Operator, db: &Db, from_version: u32) -> Result<u64, String> {
    let scope = op.state().scope().clone();
    let names: Vec<String> = db
        .stores(&scope.pipeline, Some(&scope.operator))
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
                .scan(
                    id,
                    (b"", None),
                    MIGRATE_PAGE,
                    MIGRATE_PAGE_BYTES,
                    continuation.as_deref(),
                )
                .map_err(|e| e.to_string())?;
            if page.entries.is_empty() {
                break;
            }
            let out = op
                .migrate(&name, from_version, &page.entries)
                .map_err(|e| format!("migrating store {name:?} of {scope}: {}", e.message()))?;
            if out.len() != page.entries.len() {
                return Err(format!(
                    "migrate returned {} values for {} entries of store {name:?}",
                    out.len(),
                    page.entries.len()
                ));
            }
            for ((k, _), value) in page.entries.iter().zip(out) {
                match value {
                    None => op.state().delete(id, k.clone()),
                    Some(v) => op.state().set(id, k.clone(), v),
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
