//! How a task runs (from a pipeline's settings) and what it counts about itself.

use crate::model::{InputKind, LateEvents, OnError};
use std::sync::Arc;
use std::time::Duration;

/// How a task runs.
#[derive(Debug, Clone)]
pub struct TaskConfig {
    /// Most records read from the source at once.
    pub batch_size: usize,
    pub policy: OnError,
    /// The watermark trails the largest event time seen by this much.
    pub watermark_delay: i64,
    /// What happens to events below the watermark.
    pub late_events: LateEvents,
    /// After this long without input the task's watermark may follow its stage's.
    pub idle_timeout: Option<Duration>,
    /// Longest time between commits while records flow.
    pub commit_interval: Duration,
    /// Commit at once when the input is caught up (a short or empty poll).
    pub commit_when_caught_up: bool,
    /// Commit early once this much state awaits a commit.
    pub max_pending_bytes: usize,
    /// Hand every state change to the sink for the changelogs.
    pub changelog: bool,
    /// A stage after a repartition: its watermark is the lowest of these many upstream
    /// tasks' watermarks, read from the watermark records in its source, not its events'
    /// timestamps.
    pub upstream_partitions: Option<u32>,
    /// What the task reads, one entry per source (input partition), the one that numbers
    /// the task first. Empty: one unnamed source (a stage after a repartition).
    pub sources: Vec<TaskSourceInfo>,
}

/// One source of a task: which input, which topic partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSourceInfo {
    /// The input's name, as operators see it.
    pub input: Arc<str>,
    pub kind: InputKind,
    pub topic: String,
    pub partition: u32,
    /// `Some(n)`: a repartitioned input, read whole by each of the `n` tasks; the task
    /// keeps the records whose key belongs to its partition (`sources::keeps`).
    pub repartition: Option<u32>,
}

impl TaskConfig {
    /// The task settings of a pipeline spec.
    pub fn from_settings(s: &crate::model::Settings) -> Self {
        TaskConfig {
            batch_size: s.batch_size,
            policy: s.on_error,
            watermark_delay: s.out_of_orderness_ms(),
            late_events: s.late_events,
            idle_timeout: s.idle_timeout.map(|d| d.0),
            commit_interval: Duration::from_millis(s.commit_interval_ms),
            commit_when_caught_up: s.commit_when_caught_up,
            max_pending_bytes: 64 << 20,
            changelog: false,
            upstream_partitions: None,
            sources: Vec::new(),
        }
    }
}

impl Default for TaskConfig {
    fn default() -> Self {
        TaskConfig::from_settings(&crate::model::Settings::default())
    }
}

/// Counters a task keeps about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskStats {
    pub events_in: u64,
    pub events_out: u64,
    pub errors: u64,
    pub last_error: Option<String>,
    /// Events that arrived below the watermark (dropped or set aside by the policy).
    pub late: u64,
    /// Records whose call ran to its deadline.
    pub timeouts: u64,
    /// Records whose call trapped (the deadline and stops aside).
    pub traps: u64,
    /// Bytes of state (and positions) the task's commits wrote.
    pub bytes_committed: u64,
    /// Times the task waited before a batch because the server's memory budget was short.
    pub memory_waits: u64,
}

impl TaskStats {
    /// Whether the error just counted goes to the log: the first ten, then one in a
    /// thousand (the count and the last error are in the task status), so a pipeline
    /// that skips every record cannot flood the server's log.
    pub fn should_log_error(&self) -> bool {
        self.errors <= 10 || self.errors.is_multiple_of(1000)
    }
}

/// A task on probation after an upgrade: it processes but holds its commits, so a
/// rollback can drop everything the new version did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Probation {
    /// Records processed since the probation began.
    pub processed: u64,
    /// Why the new version failed, if it did (the task then stops processing).
    pub failure: Option<String>,
    /// Records the new version rejected (skipped or dead-lettered) on probation.
    pub errors: u64,
    /// The first of them: partition, offset and error.
    pub first_error: Option<String>,
    /// Records the old version rejected in this task before the probation, and the
    /// records it processed: its error rate, to compare the new version's with.
    pub baseline_errors: u64,
    pub baseline_records: u64,
}

/// The probation of every task of an upgrade, added up.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbationTotals {
    pub processed: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub baseline_errors: u64,
    pub baseline_records: u64,
}

impl ProbationTotals {
    pub fn add(&mut self, p: &Probation) {
        self.processed += p.processed;
        self.errors += p.errors;
        self.baseline_errors += p.baseline_errors;
        self.baseline_records += p.baseline_records;
        if self.first_error.is_none() {
            self.first_error = p.first_error.clone();
        }
    }

    /// Why the new version is rolled back for the records it rejects, if it is:
    /// `max_rate` (`probation_max_error_rate`) or else the old version's rate is the
    /// most it may reject. A rejected record where none may be fails it at once; a rate
    /// is judged when the probation has its records (`done`).
    pub fn rejected(&self, max_rate: Option<f64>, done: bool) -> Option<String> {
        if self.errors == 0 {
            return None;
        }
        let old_rate = if self.baseline_records == 0 {
            0.0
        } else {
            self.baseline_errors as f64 / self.baseline_records as f64
        };
        let allowed = max_rate.unwrap_or(old_rate);
        let rate = self.errors as f64 / self.processed.max(1) as f64;
        if allowed > 0.0 && !(done && rate > allowed) {
            return None;
        }
        let bound = match max_rate {
            Some(r) => format!("more than settings.probation_max_error_rate = {r}"),
            None if self.baseline_records == 0 => "and the old version has no records in these tasks to compare with (set settings.probation_max_error_rate to allow some)".to_string(),
            None => format!(
                "more than the old version ({} of {} records)",
                self.baseline_errors, self.baseline_records
            ),
        };
        Some(format!(
            "the new version rejected {} of {} records on probation, {bound}; the first: {}",
            self.errors,
            self.processed,
            self.first_error.as_deref().unwrap_or("?")
        ))
    }
}
