//! A task's side of a shadow run: starting and ending the lane, and firing its timers
//! where the live version's end.

use super::Task;
use crate::io::Outputs;
use crate::task::TaskError;
use crate::task::shadow::{ShadowLane, ShadowPlan, TaskReport};
use std::sync::Arc;

impl Task {
    /// Starts the plan's shadow (see [`ShadowLane::start`]); the task must have
    /// committed everything first, so the copy is of the state at its position.
    pub fn start_shadow(&mut self, plan: &ShadowPlan, fresh: bool) -> Result<(), String> {
        if self.position != self.committed || !self.pending.is_empty() {
            return Err("the task has uncommitted work".into());
        }
        let offset = self.committed.offset;
        let mut lane =
            ShadowLane::start(&self.id, self.ops[plan.local].as_mut(), plan, fresh, offset)?;
        if let Some(flag) = &self.interrupt {
            lane.set_interrupt(Arc::clone(flag));
        }
        self.shadow = Some(lane);
        Ok(())
    }

    /// Ends the shadow, deleting its state (its committed report stays); the task
    /// must have committed everything first.
    pub fn end_shadow(&mut self) -> Result<(), String> {
        match self.shadow.take() {
            Some(lane) => lane.end().map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    /// The shadow's report as of the last commit, while one runs.
    pub fn shadow_report(&self) -> Option<&TaskReport> {
        self.shadow.as_ref().map(ShadowLane::committed_report)
    }

    /// The shadow fires its timers: all that are due when the live version's round
    /// ended (`round_end`), else (before a commit) those up to the live version's last.
    pub(super) fn fire_shadow_timers(&mut self, round_end: bool) -> Result<(), TaskError> {
        let Some(lane) = &mut self.shadow else {
            return Ok(());
        };
        let mut outputs = Outputs::empty();
        lane.fire_timers(self.position.watermark, round_end, &mut outputs.shadow)?;
        if !outputs.is_empty() {
            self.pending.push(outputs);
        }
        Ok(())
    }
}
