//! What the servers of a cluster tell each other about shared pipelines through the
//! catalog, beside the pipeline records themselves.

use serde::{Deserialize, Serialize};

/// One task of a pipeline stage as a server shares it for idle partitions elsewhere to
/// follow: partition, watermark, idle.
pub type TaskClock = (u32, i64, bool);

/// Where one task stands, as the server that runs it tells the others (for their
/// status of the tasks it runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskProgress {
    pub stage: u32,
    pub partition: u32,
    pub committed_offset: u64,
    pub end_offset: u64,
}

/// A hold of a shared pipeline (`until_ms` in the past: released).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub id: i64,
    pub until_ms: i64,
}

/// The partitions a server holds for hold `id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub id: i64,
    pub partitions: Vec<u32>,
}

/// One server's tasks in a shared upgrade, as it reports them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbationReport {
    /// Which upgrade (its `started_ms`).
    pub started_ms: i64,
    /// Tasks running the new version.
    pub swapped: u32,
    /// Records they processed on probation.
    pub processed: u64,
    /// Why the new version failed here, if it did.
    pub failure: Option<String>,
    /// Records the new version rejected here on probation (skipped or dead-lettered),
    /// the first of them, and the old version's rejected and processed records in the
    /// same tasks before (absent from servers before these fields: zero).
    #[serde(default)]
    pub errors: u64,
    #[serde(default)]
    pub first_error: Option<String>,
    #[serde(default)]
    pub baseline_errors: u64,
    #[serde(default)]
    pub baseline_records: u64,
    /// The longest a task paused for its swap (and migration), in milliseconds.
    pub pause_ms: f64,
    pub migrated_keys: u64,
    /// The state format the new version declared.
    pub state_version: Option<u32>,
}
