//! The processing of one task: batches through the operator chain, failure isolation
//! with the pipeline's error policy, event-time timers, and the atomic commit.

use super::batch::{checked, split_output};
use super::config::{Probation, TaskConfig, TaskStats};
use super::shadow::ShadowLane;
use super::upstream::UpstreamWatermarks;
use super::{Operator, TaskError};
use crate::io::{Outputs, Sink, SourceBatch, read_watermark};
use crate::model::OnError;
use crate::record::batch::{self, EventBatch};
use crate::runtime::{CallError, Interrupt, TrapKind};
use crate::state::changelog::OperatorChanges;
use crate::state::{
    Commit, Db, SourcePosition, TaskId, TaskPosition, load_position, load_source_positions,
    load_upstream_watermarks,
};
use sources::Sources;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

mod policy;
mod shadowing;
mod skips;
pub(crate) mod sources;
mod timers;

/// The side output late events go to under `late_events = "side-output"`.
pub const LATE_PORT: &str = "late";

/// A failed attempt: which operator, and how.
struct Failure {
    op: usize,
    error: CallError,
}

/// One source partition's processing.
///
/// Batches that succeed are committed together every `commit_interval` (or when
/// [`Task::flush`] is called): state, timers, outputs and the source position of all of
/// them in one RocksDB write. A crash loses only uncommitted batches, which are then
/// read again from the committed position: nothing is lost or duplicated.
pub struct Task {
    id: TaskId,
    ops: Vec<Box<dyn Operator>>,
    config: TaskConfig,
    db: Arc<Db>,
    /// Where processing stands (ahead of `committed` between commits).
    position: TaskPosition,
    /// What RocksDB holds.
    committed: TaskPosition,
    /// After a repartition: the upstream tasks' watermarks, as processed and as committed.
    upstream: Option<UpstreamWatermarks>,
    committed_upstream: Option<UpstreamWatermarks>,
    /// With several sources: where the task stands in each, as processed and as
    /// committed.
    sources: Option<Sources>,
    committed_sources: Vec<SourcePosition>,
    /// Outputs of the batches since the last commit.
    pending: Vec<Outputs>,
    /// Events (and late events) handled since the last commit: they join the counters
    /// when the commit does, and go with a rollback, like the outputs.
    uncommitted_in: u64,
    uncommitted_late: u64,
    /// Records rejected since the last commit, and committed ones: with the committed
    /// events, the running version's error rate, which a new version on probation may
    /// not pass.
    uncommitted_errors: u64,
    committed_errors: u64,
    /// Committed rejected records and events when the running version took over (the
    /// task's start, or the last accepted upgrade), and when the probation began.
    version_from: (u64, u64),
    probation_from: Option<(u64, u64)>,
    last_commit: Instant,
    stats: TaskStats,
    probation: Option<Probation>,
    /// Interrupts a running call when the task is stopping (every operator gets it).
    interrupt: Option<Interrupt>,
    /// Timers due at the committed watermark have fired since the task started.
    timers_caught_up: bool,
    /// Another version of one operator running beside it, compared record by record.
    shadow: Option<ShadowLane>,
}

impl Task {
    /// A task over `ops`, resuming from the position committed in `db`.
    pub fn new(
        id: TaskId,
        ops: Vec<Box<dyn Operator>>,
        config: TaskConfig,
        db: Arc<Db>,
    ) -> Result<Self, TaskError> {
        let position = load_position(&db, &id)?;
        let upstream = match config.upstream_partitions {
            Some(n) => Some(UpstreamWatermarks::from_saved(
                load_upstream_watermarks(&db, &id)?,
                n,
            )),
            None => None,
        };
        let sources = match config.sources.len() {
            0 | 1 => None,
            _ => Some(Sources::new(
                &config.sources,
                load_source_positions(&db, &id)?,
                position,
            )),
        };
        Ok(Task {
            id,
            ops,
            config,
            db,
            position,
            committed: position,
            committed_upstream: upstream.clone(),
            upstream,
            committed_sources: sources
                .as_ref()
                .map(|s| s.positions.clone())
                .unwrap_or_default(),
            sources,
            pending: Vec::new(),
            last_commit: Instant::now(),
            uncommitted_in: 0,
            uncommitted_late: 0,
            uncommitted_errors: 0,
            committed_errors: 0,
            version_from: (0, 0),
            probation_from: None,
            stats: TaskStats::default(),
            probation: None,
            interrupt: None,
            timers_caught_up: false,
            shadow: None,
        })
    }

    pub fn id(&self) -> &TaskId {
        &self.id
    }

    pub fn config(&self) -> &TaskConfig {
        &self.config
    }

    /// Where processing stands: the next offset to read and the watermark.
    pub fn position(&self) -> TaskPosition {
        self.position
    }

    /// What the last commit made durable.
    pub fn committed_position(&self) -> TaskPosition {
        self.committed
    }

    pub fn stats(&self) -> &TaskStats {
        &self.stats
    }

    /// The operators, in chain order.
    pub fn operators_mut(&mut self) -> &mut [Box<dyn Operator>] {
        &mut self.ops
    }

    /// Lets `flag` interrupt the operators' calls (set when the task is stopping).
    pub fn set_interrupt(&mut self, flag: Interrupt) {
        for op in &mut self.ops {
            op.set_interrupt(Arc::clone(&flag));
        }
        if let Some(lane) = &mut self.shadow {
            lane.set_interrupt(Arc::clone(&flag));
        }
        self.interrupt = Some(flag);
    }

    /// Whether the task is stopping.
    fn interrupted(&self) -> bool {
        self.interrupt
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Acquire))
    }

    /// Starts a probation: commits are held until [`Task::accept_probation`]; a trap or an
    /// error the policy would fail on stops processing and is reported instead.
    pub fn begin_probation(&mut self) {
        let now = (self.committed_errors, self.stats.events_in);
        self.probation = Some(Probation {
            baseline_errors: now.0 - self.version_from.0,
            baseline_records: now.1 - self.version_from.1,
            ..Probation::default()
        });
        self.probation_from = Some(now);
    }

    /// The new version passed: the probation ends (the held work commits at the next
    /// flush) and the version's error rate counts from where it took over.
    pub fn accept_probation(&mut self) {
        let now = (self.committed_errors, self.stats.events_in);
        self.version_from = self.probation_from.take().unwrap_or(now);
        self.probation = None;
    }

    /// A record (or a timer: `timer`) the pipeline rejected by its error policy.
    fn count_rejected(&mut self, err: &TaskError, timer: bool) {
        if !timer {
            self.uncommitted_errors += 1;
        }
        if let Some(p) = &mut self.probation {
            if timer {
                p.processed += 1; // a timer is an input too: the rate stays a share
            }
            p.errors += 1;
            if p.first_error.is_none() {
                p.first_error = Some(err.to_string());
            }
        }
    }

    pub fn probation(&self) -> Option<&Probation> {
        self.probation.as_ref()
    }

    /// Ends a probation that failed (the old version goes on).
    pub fn end_probation(&mut self) {
        self.probation = None;
        self.probation_from = None;
    }

    /// Whether the task must not process input now (its probation failed).
    pub fn halted(&self) -> bool {
        self.probation.as_ref().is_some_and(|p| p.failure.is_some())
    }

    /// Drops everything not committed: state changes, outputs, position. The task goes
    /// back to its last commit.
    pub fn discard_uncommitted(&mut self) {
        for op in &mut self.ops {
            op.state().reset();
        }
        self.pending.clear();
        if let Some(lane) = &mut self.shadow {
            lane.reset();
        }
        self.uncommitted_in = 0;
        self.uncommitted_late = 0;
        self.uncommitted_errors = 0;
        self.position = self.committed;
        self.upstream = self.committed_upstream.clone();
        self.discard_sources();
    }

    /// Replaces operator `j`: `swap` gets the current one (to take its state) and returns
    /// the new one, or on failure an operator to put back and the reason.
    pub fn swap_operator(
        &mut self,
        j: usize,
        swap: impl FnOnce(Box<dyn Operator>) -> Result<Box<dyn Operator>, (Box<dyn Operator>, String)>,
    ) -> Result<(), String> {
        let old = self.ops.remove(j);
        match swap(old) {
            Ok(mut new) => {
                if let Some(flag) = &self.interrupt {
                    new.set_interrupt(Arc::clone(flag));
                }
                self.ops.insert(j, new);
                // The last error was the old version's.
                self.stats.last_error = None;
                Ok(())
            }
            Err((back, reason)) => {
                self.ops.insert(j, back);
                Err(reason)
            }
        }
    }

    /// Records a probation failure and tells whether the caller must stop.
    fn fail_probation(&mut self, reason: String) -> bool {
        match &mut self.probation {
            Some(p) => {
                p.failure.get_or_insert(reason);
                true
            }
            None => false,
        }
    }

    /// Processes a batch from the source, committing as it goes, then fires due timers.
    /// Late events (below the watermark) go by the `late_events` policy first.
    pub fn process(&mut self, source: &SourceBatch, sink: &mut dyn Sink) -> Result<(), TaskError> {
        if self.halted() {
            return Ok(());
        }
        self.count_timers()?;
        if !self.timers_caught_up {
            // Timers left due by a firing a stop (or a crash) cut short fire before any
            // input, as they would have without the stop.
            self.fire_timers_on_probation(sink)?;
            self.timers_caught_up = true;
        }
        if self.upstream.is_none() {
            return self.process_events(source, sink);
        }
        // After a repartition: the events between two watermark records are processed
        // as one batch; each watermark record then moves the watermark and fires timers,
        // at the same place in the stream whatever the batch boundaries.
        let mut start = 0;
        for i in 0..source.offsets.len() {
            let Some((from, watermark)) = read_watermark(&source.events, i) else {
                continue;
            };
            if i > start {
                self.process_events(&source.slice(start..i), sink)?;
                if self.halted() || self.position.offset <= source.offsets[i - 1] {
                    return Ok(());
                }
            }
            self.take_upstream_watermark(from, watermark, source.offsets[i] + 1, sink)?;
            if self.halted() {
                return Ok(());
            }
            start = i + 1;
        }
        let n = source.offsets.len();
        if start == 0 {
            return self.process_events(source, sink);
        }
        if start < n {
            self.process_events(&source.slice(start..n), sink)?;
        }
        self.maybe_commit(sink)
    }

    /// A watermark record from upstream task `from`, at the offset before `next`.
    fn take_upstream_watermark(
        &mut self,
        from: u32,
        watermark: i64,
        next: u64,
        sink: &mut dyn Sink,
    ) -> Result<(), TaskError> {
        let upstream = self.upstream.as_mut().expect("a task after a repartition");
        upstream.update(from, watermark);
        let low = upstream.low();
        self.position.offset = next;
        if low > self.position.watermark {
            self.position.watermark = low;
            self.fire_timers_on_probation(sink)?;
        }
        Ok(())
    }

    /// The watermark after an event at `timestamp` arrived (after a repartition, events
    /// do not move it: watermark records do).
    fn watermark_after(&self, watermark: i64, timestamp: i64) -> i64 {
        if self.upstream.is_some() {
            return watermark;
        }
        watermark.max(timestamp.saturating_sub(self.config.watermark_delay))
    }

    /// Moves the watermark up to `to` without input (an idle partition following its
    /// stage), fires the timers now due and commits. `false` when it was already there.
    pub fn advance_watermark(&mut self, to: i64, sink: &mut dyn Sink) -> Result<bool, TaskError> {
        if self.halted() || to <= self.position.watermark {
            return Ok(false);
        }
        self.position.watermark = to;
        self.fire_timers_on_probation(sink)?;
        self.flush(sink)?;
        Ok(true)
    }

    /// Counts each operator's timers once (after a start or a reset), before any call
    /// that may set one checks `max_pending_timers`: the key scan never runs inside a
    /// call, against its deadline.
    fn count_timers(&mut self) -> Result<(), TaskError> {
        for op in &mut self.ops {
            op.state().count_timers()?;
        }
        Ok(())
    }

    /// Committed timers of all the task's operators (uncommitted ones not counted).
    pub fn timer_count(&mut self) -> Result<u64, TaskError> {
        let mut n = 0;
        for op in &mut self.ops {
            n += op.state().timer_count()?;
        }
        Ok(n)
    }

    fn process_on_time(
        &mut self,
        source: &SourceBatch,
        sink: &mut dyn Sink,
    ) -> Result<(), TaskError> {
        let n = source.events.events.len();
        let input = self.input_name(source.source);
        for op in &mut self.ops {
            op.state().input = input.clone();
        }
        let mut todo: Vec<Range<usize>> = vec![0..n];
        while let Some(range) = todo.pop() {
            if range.is_empty() {
                continue;
            }
            let whole = range == (0..n);
            let sliced;
            let events = if whole {
                &source.events
            } else {
                sliced = batch::slice(&source.events, range.clone());
                &sliced
            };
            match self.attempt(events) {
                Ok(outputs) => self.complete(source, range, outputs),
                Err(Failure {
                    op: 0,
                    error: CallError::Rejected { index, .. },
                }) if range.len() > 1 && (index as usize) < range.len() => {
                    // The operator named the failing record (fatal or not): commit those
                    // before it as one batch, then the failing one alone, then the rest.
                    let k = range.start + index as usize;
                    todo.push(k + 1..range.end);
                    todo.push(k..k + 1);
                    todo.push(range.start..k);
                }
                Err(Failure {
                    error: CallError::Host(e),
                    ..
                }) => return Err(e.into()),
                // The task is stopping: drop the batch's attempt; it is read again.
                Err(f) if stopped(&f.error) => return Err(TaskError::Interrupted),
                Err(f) if range.len() == 1 && f.error.is_fatal() => {
                    let err = self.record_error(f.op, source.offsets[range.start], &f.error);
                    if self.fail_probation(err.to_string()) {
                        return Ok(());
                    }
                    // What succeeded before the failing record is kept.
                    self.flush(sink)?;
                    return Err(err);
                }
                Err(f) if range.len() == 1 => {
                    let trapped = matches!(f.error, CallError::Trap { .. });
                    if self.probation.is_some() && (trapped || self.config.policy == OnError::Fail)
                    {
                        let err = self.record_error(f.op, source.offsets[range.start], &f.error);
                        self.fail_probation(err.to_string());
                        return Ok(());
                    }
                    let timed_out = matches!(
                        f.error,
                        CallError::Trap {
                            kind: TrapKind::Deadline,
                            ..
                        }
                    );
                    self.apply_policy(source, range.start, f, sink)?;
                    if timed_out {
                        self.stats.timeouts += 1;
                    }
                    if trapped {
                        // A record that trapped (or ran to its deadline) cost a worker
                        // dearly: the rest of the batch waits for the task's next turn,
                        // which the runner delays when it happens again.
                        break;
                    }
                }
                Err(_) => {
                    // Unknown culprit (a trap, or a later operator): one record at a time, so
                    // the ones before it commit and the error names the right record.
                    todo.extend(range.rev().map(|i| i..i + 1));
                }
            }
        }
        self.fire_timers_on_probation(sink)?;
        self.maybe_commit(sink)
    }

    /// The input has ended: moves the watermark to the end of time, fires every timer,
    /// and commits.
    pub fn finish_input(&mut self, sink: &mut dyn Sink) -> Result<(), TaskError> {
        self.position.watermark = i64::MAX;
        self.fire_timers(sink)?;
        self.flush(sink)
    }

    /// Commits once the interval has passed, enough state waits, or the server's memory
    /// budget is short (never on probation).
    pub fn maybe_commit(&mut self, sink: &mut dyn Sink) -> Result<(), TaskError> {
        let pending_bytes: usize = self.ops.iter_mut().map(|op| op.state().dirty_bytes()).sum();
        if self.last_commit.elapsed() >= self.config.commit_interval
            || pending_bytes >= self.config.max_pending_bytes
            || self.memory_short()
        {
            self.flush(sink)?;
        }
        Ok(())
    }

    /// Whether the server's memory budget is short.
    pub fn memory_short(&self) -> bool {
        self.db.budget().short()
    }

    pub(super) fn count_memory_wait(&mut self) {
        self.stats.memory_waits += 1;
    }

    /// Commits everything processed so far: every operator's state changes, the outputs
    /// and the position, in one RocksDB write.
    pub fn flush(&mut self, sink: &mut dyn Sink) -> Result<(), TaskError> {
        self.last_commit = Instant::now();
        if self.probation.is_some() {
            // Held until the probation ends; a stop or crash before that drops it.
            return Ok(());
        }
        self.fire_shadow_timers(false)?;
        if self.position == self.committed
            && !self.sources_moved()
            && self.pending.is_empty()
            && !self.ops.iter_mut().any(|op| op.state().has_pending())
            && !self.shadow.as_mut().is_some_and(|l| l.has_pending())
        {
            return Ok(());
        }
        let mut commit = Commit::new(Arc::clone(&self.db));
        let mut changes = Vec::new();
        for op in &mut self.ops {
            if self.config.changelog {
                let mut c = OperatorChanges::default();
                op.state().stage(&mut commit, Some(&mut c));
                if !c.stores.is_empty() {
                    changes.push(c);
                }
            } else {
                op.state().stage(&mut commit, None);
            }
        }
        if let Some(lane) = &mut self.shadow {
            lane.stage(&mut commit, &self.id, self.position.offset);
        }
        commit.put_position(&self.id, self.position);
        if let Some(s) = self.sources.as_ref().filter(|_| self.sources_moved()) {
            commit.put_source_positions(&self.id, &s.positions);
        }
        if let Some(up) = &self.upstream
            && self.committed_upstream.as_ref() != Some(up)
        {
            commit.put_upstream_watermarks(&self.id, up.as_slice());
        }
        let outputs = std::mem::take(&mut self.pending);
        // Outputs are main and side outputs (dead letters count as errors, a shadow's
        // records are not the pipeline's).
        let emitted: u64 = outputs
            .iter()
            .map(|o| (o.main.events.len() + o.side.len()) as u64)
            .sum();
        let bytes = commit.size() as u64;
        sink.position(self.position);
        if let Some(s) = &self.sources {
            sink.sources(&s.positions);
        }
        if let Some(up) = &self.upstream {
            sink.upstream(up.as_slice());
        }
        sink.commit(commit, outputs, changes)?;
        self.stats.bytes_committed += bytes;
        // The interval runs from the end of a commit: a sink whose commit takes long (a
        // Kafka transaction) still gets `commit_interval` of processing between commits.
        self.last_commit = Instant::now();
        for op in &mut self.ops {
            op.state().committed();
        }
        if let Some(lane) = &mut self.shadow {
            lane.committed();
        }
        self.committed = self.position;
        self.committed_upstream = self.upstream.clone();
        if let Some(s) = &self.sources {
            self.committed_sources = s.positions.clone();
        }
        self.stats.events_out += emitted;
        self.stats.events_in += std::mem::take(&mut self.uncommitted_in);
        self.stats.late += std::mem::take(&mut self.uncommitted_late);
        self.committed_errors += std::mem::take(&mut self.uncommitted_errors);
        Ok(())
    }

    /// Runs the chain over `events` once. On failure every operator's writes are dropped.
    fn attempt(&mut self, events: &EventBatch) -> Result<Outputs, Failure> {
        let watermark = self.position.watermark;
        let mut side = Vec::new();
        let mut carried: Option<EventBatch> = None;
        for j in 0..self.ops.len() {
            let input = carried.as_ref().unwrap_or(events);
            if input.events.is_empty() {
                break;
            }
            self.ops[j].state().watermark = watermark;
            let result = self.ops[j].process(input).and_then(checked);
            let result = match &mut self.shadow {
                Some(lane) if lane.local() == j => {
                    lane.on_process(self.ops[j].as_mut(), input, result)
                }
                _ => result,
            };
            match result {
                Ok(out) => {
                    let (main, s) = split_output(out);
                    side.extend(s);
                    carried = Some(main);
                }
                Err(error) => {
                    self.discard();
                    return Err(Failure { op: j, error });
                }
            }
        }
        // A stage without operators (only a repartition) passes records on as they are.
        Ok(Outputs {
            main: carried.unwrap_or_else(|| events.clone()),
            side,
            ..Outputs::empty()
        })
    }

    fn discard(&mut self) {
        for op in &mut self.ops {
            op.state().discard_batch();
        }
        if let Some(lane) = &mut self.shadow {
            lane.on_discard();
        }
    }

    /// An attempt succeeded: its writes and outputs join what the next commit writes.
    fn accept(&mut self, mut outputs: Outputs, position: TaskPosition) {
        for op in &mut self.ops {
            op.state().end_batch();
        }
        if let Some(lane) = &mut self.shadow {
            lane.on_accept(&mut outputs.shadow);
        }
        self.position = position;
        if !outputs.is_empty() {
            self.pending.push(outputs);
        }
    }

    /// The position after `range` of `source` was handled.
    fn position_after(&self, source: &SourceBatch, range: &Range<usize>) -> TaskPosition {
        let max_ts = source.events.events[range.clone()]
            .iter()
            .map(|e| e.timestamp)
            .max();
        let watermark = match max_ts {
            Some(ts) => self.watermark_after(self.position.watermark, ts),
            None => self.position.watermark,
        };
        TaskPosition {
            offset: source.offsets[range.end - 1] + 1,
            watermark,
        }
    }

    fn complete(&mut self, source: &SourceBatch, range: Range<usize>, outputs: Outputs) {
        self.advance(source, &range);
        let position = self.position;
        self.uncommitted_in += range.len() as u64;
        if let Some(p) = &mut self.probation {
            p.processed += range.len() as u64;
        }
        if let Some(lane) = &mut self.shadow {
            lane.set_offsets(&source.offsets[range]);
        }
        self.accept(outputs, position);
    }
}

/// Whether a call was interrupted because the task is stopping.
fn stopped(e: &CallError) -> bool {
    matches!(
        e,
        CallError::Trap {
            kind: TrapKind::Stopped,
            ..
        }
    )
}
