//! Running a pipeline on this server and stopping it: its tasks come from the task
//! factory (a shared pipeline's, for the partitions its group gives this server), and
//! stop at a batch boundary after they commit.

use super::controller::Controller;
use super::entry::{Entry, STARTING, STOPPING};
use super::error::{ControlError, RunError};
use crate::model::{PipelineState, stages};
use crate::task::TaskHandle;
use std::sync::Arc;
use std::time::Duration;

/// How long a stop waits for tasks to commit and end.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

impl Controller {
    /// Runs a pipeline here: all its tasks, or for a shared pipeline, the partitions its
    /// assignment group gives this server.
    pub(super) fn run_entry(&self, entry: &mut Entry) -> Result<(), RunError> {
        // A restore that did not finish is finished before anything runs on its state.
        let record = &entry.record;
        self.finish_restore(record)
            .map_err(RunError::UnfinishedRestore)?;
        if !self.distributed(&entry.record.spec) {
            entry.tasks = self.factory.start(&mut entry.record, None)?;
            return Ok(());
        }
        if stages(&record.spec).len() > 1 && !record.repartitions_in_kafka() {
            return Err(RunError::LocalRepartition);
        }
        match &entry.member {
            Some(member) => {
                // Still in the group: run what it gives this server now (later
                // assignments start their tasks as they come). Partitions an assignment
                // is starting right now (arriving), or that run already, are theirs.
                entry.tasks.retain(|t| !t.is_finished());
                let assigned: Vec<u32> = member
                    .assigned()
                    .into_iter()
                    .filter(|p| !entry.arriving.contains(p))
                    .filter(|p| !entry.tasks.iter().any(|t| t.id.partition == *p))
                    .collect();
                let started = self.factory.start(&mut entry.record, Some(&assigned))?;
                entry.tasks.extend(started);
                self.announce_tasks(&entry.record.spec.name, &entry.partitions());
                Ok(())
            }
            None => self.join_group(entry),
        }
    }

    /// Stops a pipeline's tasks at a batch boundary, after they commit.
    pub(super) fn stop_tasks(&self, entry: &Entry) {
        stop_handles(&entry.tasks);
    }

    /// Runs a pipeline of the table that does not run, without holding the table's lock
    /// while its operators start: the entry is marked `starting` (so nothing else changes
    /// it and status calls answer), a detached copy runs, and what it started goes back
    /// into the entry. `wanted` says whether to go ahead (checked under the lock). A
    /// pipeline that cannot run because Kafka is out of reach goes to `recovering`.
    pub(super) fn run_unlocked(
        &self,
        name: &str,
        wanted: impl FnOnce(&Entry) -> bool,
    ) -> Result<(), ControlError> {
        let attempt = self.with_settled_entry(name, |entry| {
            entry.check_idle()?;
            if !wanted(entry) {
                return Ok(None);
            }
            entry.busy = Some(STARTING);
            // Tasks of the last run have ended; a shared pipeline's group may start new
            // ones (into this entry) while the attempt runs, so its state says running.
            entry.tasks.retain(|t| !t.is_finished());
            let mut attempt = Entry::idle(entry.record.clone());
            attempt.member = entry.member.take();
            entry.record.state = PipelineState::Running;
            Ok(Some(attempt))
        })?;
        let Some(mut attempt) = attempt else {
            return Ok(());
        };
        let ran = self.run_entry(&mut attempt);
        self.with_entry(name, |entry| {
            entry.busy = None;
            entry.member = attempt.member.take();
            match ran {
                Ok(()) => {
                    entry.tasks.extend(attempt.tasks);
                    entry.record.operators = attempt.record.operators;
                    entry.retry = None;
                    self.store
                        .set_state(&mut entry.record, PipelineState::Running, None)?;
                    self.share(&entry.record);
                    Ok(())
                }
                // Kafka out of reach (or a restore waiting for an undecided transaction):
                // the pipeline recovers by itself, as after a server start.
                Err(reason) if Self::recovers(&entry.record.spec, &reason.to_string()) => {
                    self.fail_or_recover(entry, reason.to_string());
                    Ok(())
                }
                Err(reason) => {
                    entry.record.state = attempt.record.state;
                    Err(ControlError::CannotStart {
                        pipeline: name.to_string(),
                        reason: reason.to_string(),
                    })
                }
            }
        })
    }

    /// Stops a running pipeline's tasks without holding the table's lock while they
    /// commit and end (the entry is marked `stopping`), then records `then` (stopped, or
    /// failed with a reason) as the pipeline's state.
    pub(super) fn halt_unlocked(
        &self,
        name: &str,
        then: impl FnOnce(&Controller, &mut Entry),
    ) -> Result<(), ControlError> {
        let tasks = self.with_settled_entry(name, |entry| {
            entry.check_idle()?;
            entry.busy = Some(STOPPING);
            // No assignment starts new tasks of a pipeline on its way out.
            entry.record.state = PipelineState::Stopped;
            Ok(entry.tasks.clone())
        })?;
        stop_handles(&tasks);
        self.with_entry(name, |entry| {
            entry.busy = None;
            if entry.member.is_some() {
                entry.tasks.clear();
                self.announce_tasks(&entry.record.spec.name, &[]);
            }
            then(self, entry);
            Ok(())
        })
    }

    /// Stops a pipeline's tasks here; a shared pipeline stays in its assignment group
    /// (see `entry::Member`).
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
}

/// Asks tasks to commit and stop at their next batch boundary, and waits until they did.
pub(super) fn stop_handles(tasks: &[Arc<TaskHandle>]) {
    for t in tasks {
        t.request_stop();
    }
    for t in tasks {
        if !t.wait(STOP_TIMEOUT) {
            tracing::warn!(task = %t.id, "task did not stop within {STOP_TIMEOUT:?}");
        }
    }
}
