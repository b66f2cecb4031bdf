//! A task's event-time timers: the due ones fire in order, through the rest of the
//! operator chain, in attempts of up to [`TIMERS_PER_ATTEMPT`] per operator; a failing
//! attempt is retried timer by timer so the error policy meets the right timer.

use super::{Failure, Task, stopped};
use crate::io::{Outputs, Sink};
use crate::model::OnError;
use crate::record::Record;
use crate::record::batch;
use crate::runtime::CallError;
use crate::task::TaskError;
use crate::task::batch::{absorb, checked};

/// Timers fired per operator in one attempt.
const TIMERS_PER_ATTEMPT: usize = 1024;
/// Attempts between commits while many timers fire.
const ATTEMPTS_PER_COMMIT: usize = 16;

impl Task {
    /// Fires every timer due at the current watermark, earliest first, committing every
    /// [`ATTEMPTS_PER_COMMIT`] attempts: the outputs and deletions of a million timers do
    /// not wait in memory for one commit, and a stop ends the firing between attempts
    /// (the rest fire before the task's next input, see [`Task::process`]).
    pub(super) fn fire_timers(&mut self, sink: &mut dyn Sink) -> Result<(), TaskError> {
        self.count_timers()?;
        let mut attempts = 0usize;
        loop {
            if self.interrupted() {
                return Err(TaskError::Interrupted);
            }
            match self.attempt_timers(None) {
                Ok(None) => return self.fire_shadow_timers(true),
                Ok(Some(outputs)) => self.accept(outputs, self.position),
                Err((f, _)) if stopped(&f.error) => return Err(TaskError::Interrupted),
                Err(_) => self.isolate_first_timer()?,
            }
            attempts += 1;
            if attempts.is_multiple_of(ATTEMPTS_PER_COMMIT) {
                self.flush(sink)?;
            }
        }
    }

    /// Fires every timer due; on probation a timer's failure fails the probation instead
    /// of the task.
    pub(super) fn fire_timers_on_probation(
        &mut self,
        sink: &mut dyn Sink,
    ) -> Result<(), TaskError> {
        match self.fire_timers(sink) {
            Err(e)
                if !matches!(e, TaskError::Interrupted) && self.fail_probation(e.to_string()) =>
            {
                Ok(())
            }
            other => other,
        }
    }

    /// Fires due timers (or only `only`) and runs their outputs down the chain.
    /// `Ok(None)`: nothing was due.
    fn attempt_timers(
        &mut self,
        only: Option<(usize, i64, Vec<u8>)>,
    ) -> Result<Option<Outputs>, (Failure, i64)> {
        let watermark = self.position.watermark;
        let mut fired_any = false;
        let mut side = Vec::new();
        let mut carried = batch::empty();
        for j in 0..self.ops.len() {
            self.ops[j].state().watermark = watermark;
            // A timer's outputs come from no input.
            self.ops[j].state().input = None;
            let mut main = batch::empty();
            if !carried.events.is_empty() {
                let result = self.ops[j].process(&carried).and_then(checked);
                let result = match &mut self.shadow {
                    Some(lane) if lane.local() == j => {
                        lane.on_process(self.ops[j].as_mut(), &carried, result)
                    }
                    _ => result,
                };
                match result {
                    Ok(out) => absorb(out, &mut main, &mut side),
                    Err(error) => {
                        self.discard();
                        return Err((Failure { op: j, error }, i64::MIN));
                    }
                }
            }
            let due = match &only {
                Some((op, at, key)) if *op == j => vec![(*at, key.clone())],
                Some(_) => Vec::new(),
                None => match self.ops[j]
                    .state()
                    .due_timers(watermark, TIMERS_PER_ATTEMPT)
                {
                    Ok(d) => d,
                    Err(e) => {
                        self.discard();
                        return Err((
                            Failure {
                                op: j,
                                error: CallError::Host(e),
                            },
                            i64::MIN,
                        ));
                    }
                },
            };
            for (at, key) in due {
                if !self.ops[j].state().fired_timer(key.clone(), at) {
                    continue; // an earlier timer's on_timer deleted it
                }
                fired_any = true;
                match self.ops[j].on_timer(&key, at).and_then(checked) {
                    Ok(out) => {
                        if let Some(lane) = self.shadow.as_mut().filter(|l| l.local() == j) {
                            lane.on_live_timer(&key, at, &out);
                        }
                        absorb(out, &mut main, &mut side)
                    }
                    Err(error) => {
                        self.discard();
                        return Err((Failure { op: j, error }, at));
                    }
                }
            }
            carried = main;
        }
        Ok(fired_any.then_some(Outputs {
            main: carried,
            side,
            ..Outputs::empty()
        }))
    }

    /// A timer attempt failed: fire the earliest due timer alone and apply the policy
    /// if it fails on its own.
    fn isolate_first_timer(&mut self) -> Result<(), TaskError> {
        let watermark = self.position.watermark;
        let mut first = None;
        for j in 0..self.ops.len() {
            if let Some((at, key)) = self.ops[j]
                .state()
                .due_timers(watermark, 1)?
                .into_iter()
                .next()
            {
                first = Some((j, at, key));
                break;
            }
        }
        let Some((j, at, key)) = first else {
            return Ok(());
        };
        match self.attempt_timers(Some((j, at, key.clone()))) {
            Ok(outputs) => {
                self.accept(outputs.unwrap_or_else(Outputs::empty), self.position);
                Ok(())
            }
            Err((f, _)) if stopped(&f.error) => Err(TaskError::Interrupted),
            Err((f, _)) => {
                let err = TaskError::Timer {
                    operator: self.ops[f.op].label().to_string(),
                    partition: self.id.partition,
                    at,
                    message: f.error.to_string(),
                };
                self.stats.errors += 1;
                self.stats.last_error = Some(err.to_string());
                if let Some(lane) = self.shadow.as_mut().filter(|l| l.local() == j) {
                    lane.on_live_timer_failed(&key, at, f.error.to_string());
                }
                if self.probation.is_some() && matches!(f.error, CallError::Trap { .. }) {
                    return Err(err);
                }
                self.count_rejected(&err, true);
                if f.error.is_fatal() || self.config.policy == OnError::Fail {
                    return Err(match f.error {
                        CallError::Host(e) => e.into(),
                        _ => err,
                    });
                }
                let mut outputs = Outputs::empty();
                if self.config.policy == OnError::DeadLetter {
                    let mut headers = self.error_headers(f.op, &f.error);
                    headers.push(("eddy.timer".into(), at.to_string().into_bytes()));
                    outputs.dead.push(Record {
                        key: Some(key.clone()),
                        value: Vec::new(),
                        timestamp: at,
                        headers,
                    });
                } else if self.stats.should_log_error() {
                    let n = self.stats.errors;
                    tracing::warn!(task = %self.id, "skipped a timer ({n} errors so far): {err}");
                }
                // The timer is consumed either way.
                self.ops[j].state().delete_timer(key, at)?;
                self.accept(outputs, self.position);
                Ok(())
            }
        }
    }
}
