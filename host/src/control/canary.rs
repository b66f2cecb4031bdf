//! Ending an upgrade by hand: a probation (see `upgrade`), or a canary that passed its
//! probation on some partitions: `promote` upgrades the other partitions to it (a hot
//! upgrade of those, with its own probation), `rollback` sends the canary partitions
//! back to the version the others run, from their last commit (in a cluster, this
//! server's at once and the others' as they follow the record).

use super::controller::Controller;
use super::error::ControlError;
use crate::model::topology::stage_of;
use crate::model::{
    Canary, PipelineRecord, UpgradeDecision, UpgradeRecord, UpgradeResult, UpgradeTo, VersionRef,
};
use crate::record::now_ms;
use crate::task::{ConfigChange, TaskHandle};
use std::sync::Arc;

/// A pipeline's record and tasks, its canary, and the canary operator's index.
type CanaryAt = (PipelineRecord, Vec<Arc<TaskHandle>>, Canary, usize);

impl Controller {
    /// Ends the pipeline's upgrade on probation, or its canary, as the user asks.
    pub fn end_upgrade(
        self: &Arc<Self>,
        name: &str,
        decision: UpgradeDecision,
    ) -> Result<UpgradeRecord, ControlError> {
        match self.decide_upgrade(name, decision) {
            Err(ControlError::NoProbation(_)) if self.has_canary(name) => match decision {
                UpgradeDecision::Promote => self.promote_canary(name),
                UpgradeDecision::RollBack => self.roll_back_canary(name),
            },
            r => r,
        }
    }

    /// The pipeline's record and tasks, its canary, and where the canary's operator is.
    fn canary_of(&self, name: &str) -> Result<CanaryAt, ControlError> {
        let (record, tasks) = self.record_and_tasks(name)?;
        let canary = record
            .canary
            .clone()
            .ok_or_else(|| ControlError::NoProbation(name.to_string()))?;
        let index = record
            .operators
            .iter()
            .position(|o| o.id == canary.operator.id)
            .ok_or_else(|| ControlError::NoSuchOperator {
                pipeline: name.to_string(),
                operator: canary.operator.id.clone(),
                ids: record.operators.iter().map(|o| o.id.clone()).collect(),
            })?;
        Ok((record, tasks, canary, index))
    }

    fn has_canary(&self, name: &str) -> bool {
        self.table()
            .get(name)
            .is_some_and(|e| e.record.canary.is_some())
    }

    /// Upgrades the partitions the canary does not cover to its version and config;
    /// returns the upgrade on probation.
    fn promote_canary(self: &Arc<Self>, name: &str) -> Result<UpgradeRecord, ControlError> {
        let (record, _, canary, index) = self.canary_of(name)?;
        // Every other partition of the stage (in a cluster, not only this server's).
        let (stage, _) = stage_of(&record.spec, index).expect("every operator is in a stage");
        let rest: Vec<u32> = (0..self.stage_partitions(&record.spec, &stage)?)
            .filter(|p| !canary.covers(*p))
            .collect();
        let to = UpgradeTo {
            operator: canary.operator.id.clone(),
            version: Some(VersionRef::Number(canary.operator.version)),
            config: canary.config.clone(),
            partitions: Some(rest),
        };
        self.upgrade_as(name, &to, false, Some(canary.started_ms))
    }

    /// Sends the canary partitions back to the version the others run.
    fn roll_back_canary(&self, name: &str) -> Result<UpgradeRecord, ControlError> {
        let _claim = self.claim_guard(name, "a canary's rollback")?;
        let (record, tasks, canary, index) = self.canary_of(name)?;
        let old = record.operators[index].clone();
        let target = self
            .registry()
            .version(&canary.operator.name, canary.operator.version)?;
        let config = ConfigChange {
            old: None,
            new: canary.config.clone(),
        };
        let plan = Arc::new(
            self.factory
                .swap_plan(&record, index, &old, &target, &config)
                .map_err(ControlError::stage)?,
        );
        let canaries: Vec<_> = tasks
            .into_iter()
            .filter(|t| t.id.stage == plan.stage && canary.covers(t.id.partition))
            .collect();
        self.roll_back(name, &plan, &canaries, "rolling a canary back");
        self.with_entry(name, |entry| {
            entry.record.canary = None;
            let upgrade = entry
                .record
                .upgrades
                .iter_mut()
                .rev()
                .find(|u| u.started_ms == canary.started_ms && u.result == UpgradeResult::Canary)
                .map(|u| {
                    u.result = UpgradeResult::RolledBack;
                    u.reason = Some("the canary was rolled back by request".into());
                    u.finished_ms = Some(now_ms());
                    u.clone()
                });
            self.store.touch(&mut entry.record)?;
            // A shared pipeline's other servers send their canary tasks back too.
            self.share(&entry.record);
            upgrade.ok_or_else(|| ControlError::NoProbation(name.to_string()))
        })
    }
}
