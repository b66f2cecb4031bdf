//! A task as a worker thread runs it: read a batch from the source, process it, report.

use super::handle::{Command, TaskHandle, TaskState};
use super::{Sink, SourceBatch, Task, TaskError};
use crate::metrics::TaskMetrics;
use std::sync::Arc;
use std::time::Instant;

/// Where a task reads its partition.
pub trait TaskSource: Send {
    /// Up to `max` records from offset `from` (none when there are none yet).
    fn poll(&mut self, from: u64, max: usize) -> Result<SourceBatch, TaskError>;
    /// The partition's current end offset.
    fn end_offset(&self) -> u64;
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Processed a batch: there may be more.
    Worked,
    /// Nothing to read.
    Idle,
    /// The task has ended (stopped or failed); drop it.
    Finished,
}

pub struct TaskRunner {
    task: Task,
    source: Box<dyn TaskSource>,
    sink: Box<dyn Sink + Send>,
    batch_size: usize,
    handle: Arc<TaskHandle>,
    metrics: Option<TaskMetrics>,
    reported: (u64, u64, u64),
    paused: bool,
}

impl TaskRunner {
    pub fn new(
        task: Task,
        source: Box<dyn TaskSource>,
        sink: Box<dyn Sink + Send>,
        batch_size: usize,
        handle: Arc<TaskHandle>,
        metrics: Option<TaskMetrics>,
    ) -> Self {
        TaskRunner {
            task,
            source,
            sink,
            batch_size,
            handle,
            metrics,
            reported: (0, 0, 0),
            paused: false,
        }
    }

    pub fn handle(&self) -> &Arc<TaskHandle> {
        &self.handle
    }

    /// Does one unit of work. Never panics on operator or input errors: they end the
    /// task as failed, with the reason in its status.
    pub fn step(&mut self) -> Step {
        for command in self.handle.take_commands() {
            match command {
                Command::Pause(ack) => {
                    let flushed = self.task.flush(self.sink.as_mut());
                    let _ = ack.send(flushed.as_ref().map(|_| ()).map_err(|e| e.to_string()));
                    if let Err(e) = flushed {
                        return self.end(Some(e));
                    }
                    self.paused = true;
                }
                Command::Resume => self.paused = false,
                Command::Run(job) => {
                    if let Err(e) = job(&mut self.task, self.sink.as_mut()) {
                        return self.end(Some(e));
                    }
                }
            }
            self.report();
        }
        if self.handle.stop_requested() {
            let result = self.task.flush(self.sink.as_mut());
            return self.end(result.err());
        }
        if self.paused || self.task.halted() {
            return Step::Idle;
        }
        let from = self.task.position().offset;
        let batch = match self.source.poll(from, self.batch_size) {
            Ok(b) => b,
            Err(e) => return self.end(Some(e)),
        };
        let result = if batch.offsets.is_empty() {
            self.task
                .maybe_commit(self.sink.as_mut())
                .map(|_| Step::Idle)
        } else {
            let started = Instant::now();
            let r = self
                .task
                .process(&batch, self.sink.as_mut())
                .map(|_| Step::Worked);
            if let Some(m) = &self.metrics {
                m.batch_seconds.observe(started.elapsed().as_secs_f64());
            }
            r
        };
        match result {
            Ok(step) => {
                self.report();
                step
            }
            Err(e) => self.end(Some(e)),
        }
    }

    fn report(&mut self) {
        let stats = self.task.stats().clone();
        let committed = self.task.committed_position().offset;
        let end = self.source.end_offset().max(committed);
        if let Some(m) = &self.metrics {
            m.events_in.inc_by(stats.events_in - self.reported.0);
            m.events_out.inc_by(stats.events_out - self.reported.1);
            m.errors.inc_by(stats.errors - self.reported.2);
            m.lag.set((end - committed) as i64);
        }
        self.reported = (stats.events_in, stats.events_out, stats.errors);
        let paused = self.paused;
        let probation = self.task.probation().cloned();
        self.handle.update(|s| {
            if s.state == TaskState::Running || s.state == TaskState::Paused {
                s.state = if paused {
                    TaskState::Paused
                } else {
                    TaskState::Running
                };
            }
            s.probation = probation;
            s.committed_offset = committed;
            s.end_offset = end;
            s.lag = end - committed;
            s.events_in = stats.events_in;
            s.events_out = stats.events_out;
            s.errors = stats.errors;
            s.last_error = stats.last_error;
        });
    }

    fn end(&mut self, error: Option<TaskError>) -> Step {
        self.report();
        self.handle.update(|s| match &error {
            None => s.state = TaskState::Stopped,
            Some(e) => {
                s.state = TaskState::Failed;
                s.failure = Some(e.to_string());
            }
        });
        if let Some(e) = &error {
            tracing::error!(task = %self.handle.id, "task failed: {e}");
        }
        self.handle.finish();
        Step::Finished
    }
}
