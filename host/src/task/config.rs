//! How a task runs (from a pipeline's settings) and what it counts about itself.

use crate::model::{LateEvents, OnError};
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
    /// Commit early once this much state awaits a commit.
    pub max_pending_bytes: usize,
    /// Hand every state change to the sink for the changelogs.
    pub changelog: bool,
    /// A stage after a repartition: its watermark is the lowest of these many upstream
    /// tasks' watermarks, read from the watermark records in its source, not its events'
    /// timestamps.
    pub upstream_partitions: Option<u32>,
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
            max_pending_bytes: 64 << 20,
            changelog: false,
            upstream_partitions: None,
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
}
