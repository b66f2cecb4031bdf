//! Shadow runs: another version of one operator runs beside the live one in the same
//! tasks, on a copy of its state, its outputs going to `<pipeline>.shadow`, and the
//! tasks compare the two versions' outputs record by record (see `task::shadow`). The
//! run ends when it compared what it was asked to, or when it fails on its own; its
//! report stays until it is promoted (a normal hot upgrade to the shadowed version, from
//! the live state, with probation) or discarded.

use super::controller::Controller;
use super::error::ControlError;
use crate::model::topology::stage_of;
use crate::model::{
    PipelineRecord, PipelineState, ShadowLimits, ShadowRun, ShadowState, UpgradeRecord, UpgradeTo,
    VersionRef,
};
use crate::record::now_ms;
use crate::state::{StateError, StateScope, TaskId, load_shadow_report};
use crate::task::shadow::{Difference, ShadowCounts, ShadowPlan, TaskReport, delete_task_shadow};
use crate::task::{Command, SWAP_TIMEOUT, TaskHandle, ask_all};
use serde::Serialize;
use std::sync::Arc;

/// What a shadow's start claims a pipeline for.
const SHADOW: &str = "the start of a shadow run";
/// Longest a shadow may be asked to run for.
const LONGEST_MS: u64 = 30 * 24 * 3600 * 1000;
/// Differences a report shows at most (each task keeps up to 10).
const SAMPLE_SHOWN: usize = 50;
/// Longest a task may take to end its lane (it commits first); the supervision tries
/// again later.
const END_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// One partition's share of a shadow's report.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PartitionShadow {
    pub partition: u32,
    pub counts: ShadowCounts,
    /// Why the shadow stopped in this partition on its own, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// A shadow run and what it found so far (as committed by the tasks).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ShadowReport {
    pub pipeline: String,
    pub shadow: ShadowRun,
    /// Where the shadow's records go.
    pub topic: String,
    /// Over every partition.
    pub counts: ShadowCounts,
    pub partitions: Vec<PartitionShadow>,
    /// Inputs the versions disagreed or failed on, with what each emitted (a bounded
    /// sample: up to 10 per partition, the first ones).
    pub sample: Vec<Difference>,
}

impl Controller {
    /// Starts a shadow run of `to` (its version and config) beside the live operator of
    /// a running pipeline on this server; returns its (empty) report.
    pub fn start_shadow(
        &self,
        name: &str,
        to: &UpgradeTo,
        limits: ShadowLimits,
    ) -> Result<ShadowReport, ControlError> {
        check_limits(&limits)?;
        let _claim = self.claim_guard(name, SHADOW)?;
        let req = self.upgrade_request(name, to, None)?;
        if self.distributed(&req.record.spec) {
            return Err(ControlError::SharedShadow(name.to_string()));
        }
        if req.record.spec.inputs.len() > 1 {
            return Err(ControlError::BadShadow(
                "shadow runs compare pipelines with one input in this version; try the new version with a canary (--partitions) instead".into(),
            ));
        }
        if to.partitions.is_some() {
            return Err(ControlError::BadShadow(
                "a shadow runs in every partition: leave out the partitions".into(),
            ));
        }
        let started_ms = now_ms();
        let plan = Arc::new(ShadowPlan {
            stage: req.plan.stage,
            local: req.plan.local,
            template: req.plan.new.template.clone(),
            partitions: req.plan.partitions,
            db: Arc::clone(self.db()),
            run: started_ms,
        });
        let run = ShadowRun {
            operator: req.plan.new.pinned.clone(),
            live_version: req.plan.old.pinned.version,
            config: req.config.new.clone(),
            state: ShadowState::Running,
            records: limits.records,
            until_ms: limits.for_ms.map(|ms| started_ms + ms as i64),
            started_ms,
            finished_ms: None,
            reason: None,
        };
        if let Some(before) = &req.record.shadow {
            // A run that ended keeps its report until it is promoted or discarded.
            return Err(ControlError::ShadowKept {
                pipeline: name.to_string(),
                operator: format!("{}@{}", before.operator.id, before.operator.version),
            });
        }
        // The record first: a crash after the tasks started leaves a shadow that the
        // next start resumes, never one nobody knows of.
        self.set_shadow(name, Some(run.clone()))?;
        let tasks = stage_tasks(&req.tasks, plan.stage);
        let replies = ask_all(
            &tasks,
            |reply| Command::Shadow(Arc::clone(&plan), reply),
            SWAP_TIMEOUT,
        );
        if let Some(reason) = replies.iter().find_map(|r| r.as_ref().err().cloned()) {
            // Nothing of it may stay: the tasks that started it end it, and every
            // task's copy and report go.
            ask_all(&tasks, Command::EndShadow, END_TIMEOUT);
            let refused = PipelineRecord {
                shadow: Some(run),
                ..req.record.clone()
            };
            self.delete_shadow_data(&refused)?;
            self.set_shadow(name, None)?;
            return Err(ControlError::ShadowTask(format!(
                "the shadow could not start: {reason}"
            )));
        }
        self.shadow_report(name)
    }

    /// The pipeline's shadow run and what it found, as committed.
    pub fn shadow_report(&self, name: &str) -> Result<ShadowReport, ControlError> {
        let (record, _) = self.record_and_tasks(name)?;
        let run = record
            .shadow
            .clone()
            .ok_or_else(|| ControlError::NoShadow(name.to_string()))?;
        let (stage, partitions) = self.shadow_stage(&record)?;
        let mut report = ShadowReport {
            pipeline: name.to_string(),
            shadow: run,
            topic: format!("{name}.shadow"),
            counts: ShadowCounts::default(),
            partitions: Vec::new(),
            sample: Vec::new(),
        };
        for partition in 0..partitions {
            let id = TaskId {
                pipeline: name.to_string(),
                stage,
                partition,
            };
            let Some(bytes) = load_shadow_report(self.db(), &id)? else {
                continue;
            };
            let task: TaskReport =
                serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
                    what: "shadow report",
                    detail: format!("partition {partition}: {e}"),
                })?;
            report.counts.add(&task.counts);
            report.sample.extend(task.sample);
            report.partitions.push(PartitionShadow {
                partition,
                counts: task.counts,
                failure: task.failure,
            });
        }
        report.sample.sort_by_key(|d| (d.partition, d.offset));
        report.sample.truncate(SAMPLE_SHOWN);
        Ok(report)
    }

    /// Drops the pipeline's shadow run: its tasks end it, its state copies and its
    /// report go. Returns the report as it was.
    pub fn discard_shadow(&self, name: &str) -> Result<ShadowReport, ControlError> {
        let _claim = self.claim_guard(name, "the discard of a shadow run")?;
        let report = self.shadow_report(name)?;
        let (record, tasks) = self.record_and_tasks(name)?;
        let (stage, _) = self.shadow_stage(&record)?;
        end_lanes(&tasks, stage)?;
        self.delete_shadow_data(&record)?;
        self.set_shadow(name, None)?;
        Ok(report)
    }

    /// Upgrades the live operator to the shadowed version and config (a normal hot
    /// upgrade from the live state, with probation); the shadow is discarded first.
    pub fn promote_shadow(
        self: &Arc<Self>,
        name: &str,
        wait: bool,
    ) -> Result<UpgradeRecord, ControlError> {
        let (record, _) = self.record_and_tasks(name)?;
        let run = record
            .shadow
            .clone()
            .ok_or_else(|| ControlError::NoShadow(name.to_string()))?;
        if record.state != PipelineState::Running {
            return Err(ControlError::NotRunning(name.to_string()));
        }
        // What the upgrade would refuse, refused before the shadow goes.
        let i = record
            .operators
            .iter()
            .position(|o| o.id == run.operator.id)
            .ok_or_else(|| ControlError::NoShadow(name.to_string()))?;
        let live = &record.operators[i];
        let live_config = &record.spec.operators[i].config;
        if live.version == run.operator.version
            && run.config.as_ref().is_none_or(|c| c == live_config)
        {
            return Err(ControlError::AlreadyRuns {
                operator: live.id.clone(),
                name: live.name.clone(),
                version: live.version,
            });
        }
        if let Some(c) = &record.canary {
            return Err(ControlError::CanaryRuns {
                pipeline: name.to_string(),
                operator: format!("{}@{}", c.operator.id, c.operator.version),
                partitions: c.partitions.clone(),
            });
        }
        let to = UpgradeTo {
            operator: run.operator.id.clone(),
            version: Some(VersionRef::Number(run.operator.version)),
            config: run.config.clone(),
            partitions: None,
        };
        self.discard_shadow(name)?;
        self.upgrade(name, &to, wait)
    }

    /// Ends running shadows that compared what they were asked to, ran their time, or
    /// stopped on their own in a task. Call periodically.
    pub(super) fn supervise_shadows(&self) {
        let due: Vec<(String, ShadowState, Option<String>)> = self
            .table()
            .values()
            .filter(|e| e.record.state == PipelineState::Running && e.busy.is_none())
            .filter_map(|e| {
                let run = e.record.shadow.as_ref()?;
                if run.state != ShadowState::Running {
                    return None;
                }
                let statuses: Vec<_> = e.tasks.iter().map(|t| t.status()).collect();
                if let Some(reason) = statuses.iter().find_map(|s| s.shadow_failure.clone()) {
                    return Some((e.name().to_string(), ShadowState::Dropped, Some(reason)));
                }
                let compared: u64 = statuses
                    .iter()
                    .filter_map(|s| s.shadow.as_ref())
                    .map(|c| c.compared)
                    .sum();
                let done = run.records.is_some_and(|n| compared >= n)
                    || run.until_ms.is_some_and(|t| now_ms() >= t);
                done.then(|| (e.name().to_string(), ShadowState::Finished, None))
            })
            .collect();
        for (name, state, reason) in due {
            if let Err(e) = self.end_shadow_run(&name, state, reason) {
                tracing::error!(pipeline = %name, "cannot end the shadow run: {e}");
            }
        }
    }

    /// Ends a running shadow in its tasks, keeping its report, and records how it ended.
    fn end_shadow_run(
        &self,
        name: &str,
        state: ShadowState,
        reason: Option<String>,
    ) -> Result<(), ControlError> {
        let _claim = self.claim_guard(name, "the end of a shadow run")?;
        let (record, tasks) = self.record_and_tasks(name)?;
        let Some(mut run) = record.shadow.clone() else {
            return Ok(());
        };
        let (stage, _) = self.shadow_stage(&record)?;
        end_lanes(&tasks, stage)?;
        if let Some(reason) = &reason {
            tracing::warn!(pipeline = %name, "shadow run dropped: {reason}");
        }
        run.state = state;
        run.reason = reason;
        run.finished_ms = Some(now_ms());
        self.set_shadow(name, Some(run))
    }

    /// The stage of the shadowed operator, and how many partitions it has.
    fn shadow_stage(&self, record: &PipelineRecord) -> Result<(u32, u32), ControlError> {
        let Some(run) = &record.shadow else {
            return Ok((0, 0));
        };
        let Some(i) = record
            .operators
            .iter()
            .position(|o| o.id == run.operator.id)
        else {
            return Ok((0, 0));
        };
        let (stage, _) = stage_of(&record.spec, i).expect("every operator is in a stage");
        Ok((stage.index, self.stage_partitions(&record.spec, &stage)?))
    }

    /// Deletes every task's shadow state and report (no task runs a lane any more).
    fn delete_shadow_data(&self, record: &PipelineRecord) -> Result<(), ControlError> {
        let Some(run) = &record.shadow else {
            return Ok(());
        };
        let (stage, partitions) = self.shadow_stage(record)?;
        for partition in 0..partitions {
            let id = TaskId {
                pipeline: record.spec.name.clone(),
                stage,
                partition,
            };
            let live = StateScope {
                pipeline: record.spec.name.clone(),
                operator: run.operator.id.clone(),
                partition,
            };
            delete_task_shadow(self.db(), &id, &live)?;
        }
        Ok(())
    }

    /// Writes the pipeline's shadow run into its record.
    fn set_shadow(&self, name: &str, run: Option<ShadowRun>) -> Result<(), ControlError> {
        self.with_entry(name, |entry| {
            entry.record.shadow = run;
            self.store.touch(&mut entry.record)?;
            Ok(())
        })
    }
}

/// The tasks of one stage.
fn stage_tasks(tasks: &[Arc<TaskHandle>], stage: u32) -> Vec<Arc<TaskHandle>> {
    tasks
        .iter()
        .filter(|t| t.id.stage == stage)
        .cloned()
        .collect()
}

/// Ends the shadow's lanes in the running tasks of its stage (each commits first).
fn end_lanes(tasks: &[Arc<TaskHandle>], stage: u32) -> Result<(), ControlError> {
    for r in ask_all(&stage_tasks(tasks, stage), Command::EndShadow, END_TIMEOUT) {
        r.map_err(|e| ControlError::ShadowTask(format!("the shadow could not end: {e}")))?;
    }
    Ok(())
}

fn check_limits(limits: &ShadowLimits) -> Result<(), ControlError> {
    if limits.records == Some(0) {
        return Err(ControlError::BadShadow(
            "records: a shadow compares at least 1 record".into(),
        ));
    }
    if let Some(ms) = limits.for_ms
        && !(1000..=LONGEST_MS).contains(&ms)
    {
        return Err(ControlError::BadShadow(
            "for_ms: a shadow runs at least 1000 ms (1 s) and at most 30 days".into(),
        ));
    }
    Ok(())
}
