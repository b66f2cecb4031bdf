//! A task as a worker thread runs it: read a batch from the source, process it, report.

use super::clock::StageClock;
use super::handle::{Command, TaskHandle, TaskState};
use super::inputs::Inputs;
use super::swap::converge;
use super::{Task, TaskError};
use crate::io::Sink;
use crate::metrics::TaskMetrics;
use crate::model::UpgradeResult;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often, at most, the task's timers are counted for its status (a key scan).
const COUNT_TIMERS_EVERY: Duration = Duration::from_secs(2);
/// How long a task whose record ran to its call deadline waits before its next batch:
/// twice as long after each such batch, from the first to the last.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_LAST: Duration = Duration::from_secs(60);
/// How long a task waits before its next batch while the memory budget is short.
const MEMORY_WAIT: Duration = Duration::from_millis(50);

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
    inputs: Inputs,
    sink: Box<dyn Sink + Send>,
    handle: Arc<TaskHandle>,
    metrics: Option<TaskMetrics>,
    reported: (u64, u64, u64, u64),
    paused: bool,
    /// The stage's watermarks on this server, for an idle partition to follow.
    clock: Option<Arc<StageClock>>,
    last_input: Instant,
    /// Timers as last counted, and when to count again (`None`: at the next report).
    timers: (u64, Option<Instant>),
    /// After records ran to their deadline: how long the task waits, and until when.
    backoff: Duration,
    resume_at: Option<Instant>,
    /// The last batch had a record that trapped.
    trapped: bool,
}

impl TaskRunner {
    /// Runs `task` over `inputs` into `sink`, reporting through `handle`.
    pub fn new(
        task: Task,
        inputs: Inputs,
        sink: Box<dyn Sink + Send>,
        handle: Arc<TaskHandle>,
    ) -> Self {
        let mut task = task;
        // A stop request interrupts a call the task is in (a loop, a slow batch).
        task.set_interrupt(handle.stop_flag());
        // A table's bootstrap ends where its source ends as the task starts, not at its
        // first step on a worker: records written after the start merge by event time.
        // (A Kafka source's end may come later; the first step decides then.) A task
        // with one source has nothing to decide, and asks no source for its end here.
        if !task.bootstrap_decided() && inputs.ends_known() {
            task.bootstrap_targets(&|i| inputs.end_offset(i));
        }
        TaskRunner {
            task,
            inputs,
            sink,
            handle,
            metrics: None,
            reported: (0, 0, 0, 0),
            paused: false,
            clock: None,
            last_input: Instant::now(),
            timers: (0, None),
            backoff: Duration::ZERO,
            resume_at: None,
            trapped: false,
        }
    }

    /// Counts the task's work in `metrics`.
    pub fn with_metrics(mut self, metrics: TaskMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Shares the watermark with the stage's other tasks (see `idle_timeout`).
    pub fn with_clock(mut self, clock: Arc<StageClock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Whether the partition has had no input for the idle timeout.
    fn idle(&self) -> bool {
        self.task
            .config()
            .idle_timeout
            .is_some_and(|t| self.last_input.elapsed() >= t)
    }

    pub fn handle(&self) -> &Arc<TaskHandle> {
        &self.handle
    }

    /// Bytes of state the task's commits wrote so far.
    pub fn bytes_committed(&self) -> u64 {
        self.task.stats().bytes_committed
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
                Command::Upgrade(plan, reply) => {
                    let _ = reply.send(converge(&mut self.task, &plan, UpgradeResult::Probation));
                }
                Command::Accept(plan, reply) => {
                    let _ = reply.send(converge(&mut self.task, &plan, UpgradeResult::Succeeded));
                }
                Command::RollBack(plan, reply) => {
                    let _ = reply.send(converge(&mut self.task, &plan, UpgradeResult::RolledBack));
                }
                Command::Shadow(plan, reply) => {
                    if let Err(e) = self.task.flush(self.sink.as_mut()) {
                        let _ = reply.send(Err(e.to_string()));
                        return self.end(Some(e));
                    }
                    self.handle.update(|s| s.shadow_failure = None);
                    let _ = reply.send(self.task.start_shadow(&plan, true));
                }
                Command::EndShadow(reply) => {
                    if let Err(e) = self.task.flush(self.sink.as_mut()) {
                        let _ = reply.send(Err(e.to_string()));
                        return self.end(Some(e));
                    }
                    self.handle.update(|s| s.shadow_failure = None);
                    let _ = reply.send(self.task.end_shadow());
                }
            }
            self.report();
        }
        if self.handle.stop_requested() {
            let result = self.task.flush(self.sink.as_mut());
            return self.end(result.err());
        }
        if self.paused || self.task.halted() || self.resume_at.is_some_and(|at| Instant::now() < at)
        {
            return Step::Idle;
        }
        if let Err(e) = self.follow_idle_sources() {
            return self.end(Some(e));
        }
        // A bootstrap is decided on the sources' ends: wait until they are known.
        if !self.task.bootstrap_decided() && !self.inputs.ends_known() {
            return Step::Idle;
        }
        let offsets = self.task.source_offsets();
        let inputs = &self.inputs;
        let bootstrap = self.task.bootstrap_targets(&|i| inputs.end_offset(i));
        let batch_size = self.task.config().batch_size;
        let polled = match self.inputs.poll(&offsets, &bootstrap, batch_size) {
            Ok(p) => p,
            Err(e) => return self.end(Some(e.into())),
        };
        let batch = polled.batch;
        // A poll shorter than a batch means the task caught up with its input: with
        // `commit_when_caught_up` it commits now rather than at the interval, so the
        // outputs are visible at once (a commit with nothing in it writes nothing).
        let caught_up = self.task.config().commit_when_caught_up && polled.caught_up;
        let result = if batch.offsets.is_empty() {
            self.follow_stage()
                .and_then(|_| self.commit(caught_up))
                .map(|_| Step::Idle)
        } else {
            self.last_input = Instant::now();
            let started = Instant::now();
            let before = (self.task.stats().timeouts, self.task.stats().traps);
            let r = self
                .task
                .process(&batch, self.sink.as_mut())
                .and_then(|_| self.commit(caught_up))
                .map(|_| Step::Worked);
            self.pace(before);
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
            // Stopping: what committed-worthy work there is commits; the interrupted
            // batch is read again after the next start.
            Err(TaskError::Interrupted) if self.handle.stop_requested() => {
                let result = self.task.flush(self.sink.as_mut());
                self.end(result.err())
            }
            Err(e) => self.end(Some(e)),
        }
    }

    /// A task whose records ran to their call deadline in the last batch, or trapped in
    /// two batches in a row, waits before the next one (longer each time in a row), so it
    /// cannot keep a worker from the other tasks; a clean batch ends the wait.
    fn pace(&mut self, (timeouts_before, traps_before): (u64, u64)) {
        let stats = self.task.stats();
        let timed_out = stats.timeouts > timeouts_before;
        let trapped = stats.traps > traps_before;
        let trapping = trapped && self.trapped;
        self.trapped = trapped;
        if timed_out || trapping {
            self.backoff = (self.backoff * 2).clamp(BACKOFF_FIRST, BACKOFF_LAST);
            self.resume_at = Some(Instant::now() + self.backoff);
            let what = if timed_out {
                "records ran to their call deadline"
            } else {
                "records trapped in two batches in a row"
            };
            tracing::warn!(task = %self.handle.id, "{what}: the task waits {:?} before its next batch", self.backoff);
        } else {
            self.backoff = Duration::ZERO;
            self.resume_at = None;
            if self.task.memory_short() {
                // The server's memory budget is short: the task committed and dropped its
                // cached state; it gives other commits and RocksDB's flushes a moment
                // before it reads more.
                self.task.count_memory_wait();
                self.resume_at = Some(Instant::now() + MEMORY_WAIT);
            }
        }
    }

    /// Commits now (`now`: the input is caught up), or when the interval says.
    fn commit(&mut self, now: bool) -> Result<(), TaskError> {
        if now {
            self.task.flush(self.sink.as_mut())
        } else {
            self.task.maybe_commit(self.sink.as_mut())
        }
    }

    /// With several sources, those without input for the idle timeout stop holding the
    /// task's watermark back.
    fn follow_idle_sources(&mut self) -> Result<(), TaskError> {
        let Some(timeout) = self.task.config().idle_timeout else {
            return Ok(());
        };
        let idle = self.inputs.idle(timeout);
        if idle.len() > 1 && self.task.set_idle_sources(&idle, self.sink.as_mut())? {
            self.timers.1 = None; // fired timers: count again
        }
        Ok(())
    }

    /// An idle partition's watermark follows the slowest active task of its stage.
    fn follow_stage(&mut self) -> Result<(), TaskError> {
        let (Some(clock), true) = (&self.clock, self.idle()) else {
            return Ok(());
        };
        if let Some(to) = clock.active_low(self.handle.id.partition)
            && self.task.advance_watermark(to, self.sink.as_mut())?
        {
            self.timers.1 = None; // fired timers: count again
            self.report();
        }
        Ok(())
    }

    fn report(&mut self) {
        let watermark = self.task.position().watermark;
        let idle = self.idle();
        if let Some(clock) = &self.clock {
            clock.report(self.handle.id.partition, watermark, idle);
        }
        if self.timers.1.is_none_or(|next| Instant::now() >= next) {
            // A failed count keeps the last one: it only feeds the status. The next count
            // waits 20 times as long as this one took (at least COUNT_TIMERS_EVERY), so
            // the key scan stays a small share of the worker's time with many timers.
            let started = Instant::now();
            if let Ok(n) = self.task.timer_count() {
                self.timers.0 = n;
            }
            let wait = COUNT_TIMERS_EVERY.max(started.elapsed() * 20);
            self.timers.1 = Some(Instant::now() + wait);
        }
        let timers = self.timers.0;
        let stats = self.task.stats().clone();
        // With several sources, offsets and lag are their sums.
        let ends = self.inputs.end_offsets();
        let sources = self.task.source_statuses(&ends);
        let (committed, end) = self
            .task
            .committed_offsets()
            .into_iter()
            .zip(ends)
            .fold((0, 0), |(c, e), (committed, end)| {
                (c + committed, e + end.max(committed))
            });
        if let Some(m) = &self.metrics {
            m.events_in.inc_by(stats.events_in - self.reported.0);
            m.events_out.inc_by(stats.events_out - self.reported.1);
            m.errors.inc_by(stats.errors - self.reported.2);
            m.lag.set((end - committed) as i64);
            m.late.inc_by(stats.late - self.reported.3);
            m.timers.set(timers as i64);
            if watermark != i64::MIN {
                m.watermark.set(watermark);
            }
        }
        self.reported = (stats.events_in, stats.events_out, stats.errors, stats.late);
        let paused = self.paused;
        let probation = self.task.probation().cloned();
        let shadow = self.task.shadow_report().cloned();
        let backoff_ms = self
            .resume_at
            .map(|at| at.saturating_duration_since(Instant::now()).as_millis() as u64)
            .filter(|ms| *ms > 0);
        self.handle.update(|s| {
            if s.state == TaskState::Running || s.state == TaskState::Paused {
                s.state = if paused {
                    TaskState::Paused
                } else {
                    TaskState::Running
                };
            }
            s.probation = probation;
            if let Some(report) = shadow {
                s.shadow = Some(report.counts);
                s.shadow_failure = report.failure;
            } else {
                s.shadow = None;
            }
            s.committed_offset = committed;
            s.end_offset = end;
            s.lag = end - committed;
            s.events_in = stats.events_in;
            s.events_out = stats.events_out;
            s.errors = stats.errors;
            s.last_error = stats.last_error;
            s.watermark = (watermark != i64::MIN).then_some(watermark);
            s.timers = timers;
            s.late = stats.late;
            s.idle = idle;
            s.backoff_ms = backoff_ms;
            s.memory_waits = stats.memory_waits;
            s.sources = sources;
        });
    }

    /// The step panicked (a bug in the host): the task ends as failed, without touching
    /// its state again, so the pipeline fails with the reason instead of hanging.
    pub(super) fn end_on_panic(&mut self, message: String) -> Step {
        if let Some(clock) = &self.clock {
            clock.remove(self.handle.id.partition);
        }
        let error = TaskError::Panicked(message);
        tracing::error!(task = %self.handle.id, "task failed: {error}");
        self.handle.update(|s| {
            s.state = TaskState::Failed;
            s.failure = Some(error.to_string());
        });
        self.handle.finish();
        Step::Finished
    }

    fn end(&mut self, error: Option<TaskError>) -> Step {
        self.timers.1 = None;
        self.report();
        if let Some(clock) = &self.clock {
            clock.remove(self.handle.id.partition);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{AfterCommit, IoError, SourceBatch, TaskSource};
    use crate::model::InputKind;
    use crate::record::batch;
    use crate::state::{Db, DbOptions, TaskId};
    use std::sync::Mutex;

    /// A partition whose records the test adds to while the task runs.
    struct Growing(Arc<Mutex<u64>>);

    impl TaskSource for Growing {
        fn poll(&mut self, from: u64, max: usize) -> Result<SourceBatch, IoError> {
            let end = *self.0.lock().unwrap();
            let mut events = batch::empty();
            let offsets: Vec<u64> = (from..end).take(max).collect();
            for &o in &offsets {
                batch::push(&mut events, Some(b"k"), b"row", o as i64, &[]);
            }
            Ok(SourceBatch {
                events,
                offsets,
                source: 0,
            })
        }

        fn end_offset(&self) -> u64 {
            *self.0.lock().unwrap()
        }
    }

    #[test]
    fn a_table_is_read_first_up_to_its_end_when_the_task_starts_not_when_it_first_runs() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(&dir.path().join("db"), &DbOptions::default()).unwrap());
        let config = crate::task::processor::sources::tests::config();
        let id = TaskId::new("p", 0);
        let task = Task::new(id.clone(), Vec::new(), config, db).unwrap();
        let (orders, customers) = (Arc::new(Mutex::new(0)), Arc::new(Mutex::new(20)));
        let inputs = Inputs::new(vec![
            (Box::new(Growing(Arc::clone(&orders))), InputKind::Stream),
            (Box::new(Growing(Arc::clone(&customers))), InputKind::Table),
        ]);
        let handle = Arc::new(TaskHandle::new(id, 0, Arc::default()));
        let mut runner = TaskRunner::new(task, inputs, Box::new(AfterCommit(|_| Ok(()))), handle);
        // Written after the start, before the task's first step on a worker: the
        // table's updates then come after the orders (by event time), not before them.
        *orders.lock().unwrap() = 5;
        *customers.lock().unwrap() = 30;
        assert_eq!(
            runner.task.bootstrap_targets(&|_| 999),
            [None, Some(20)],
            "the table's end as the task started"
        );
    }
}
