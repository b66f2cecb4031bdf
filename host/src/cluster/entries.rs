//! The values of the cluster catalog's records (their keys are in `keys`).

use crate::model::{TaskClock, TaskProgress};
use crate::registry::OperatorVersion;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The header naming the server that wrote a record.
pub(super) const SERVER_HEADER: &str = "eddy.server";

/// An operator version, after its chunks.
#[derive(Serialize, Deserialize)]
pub(super) struct VersionEntry {
    pub(super) version: OperatorVersion,
    pub(super) chunks: u32,
}

/// A savepoint, after its chunks.
#[derive(Serialize, Deserialize)]
pub(super) struct SavepointEntry {
    pub(super) chunks: u32,
}

/// Chunk counts of the savepoints in the catalog, so a deletion can drop their chunks.
pub(super) type SavepointChunks = Arc<Mutex<HashMap<String, u32>>>;

/// A server's watermarks of a pipeline stage.
#[derive(Serialize, Deserialize)]
pub(super) struct ClockEntry {
    pub(super) at_ms: i64,
    pub(super) tasks: Vec<TaskClock>,
}

/// The partitions a server runs of a pipeline, when it said so, and where its HTTP API
/// answers (absent from servers older than state queries, which do not forward there).
/// The server says it again every second with where its tasks stand (`progress`, as of
/// `reported_ms`); `at_ms` moves only when the partitions change. Servers older than
/// these reports write neither.
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct TasksEntry {
    pub(super) partitions: Vec<u32>,
    pub(super) at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) url: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) progress: Vec<TaskProgress>,
    #[serde(default)]
    pub(super) reported_ms: i64,
}

impl TasksEntry {
    /// When the server last said anything of its tasks.
    pub(super) fn heard_ms(&self) -> i64 {
        self.reported_ms.max(self.at_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tasks_record_from_a_server_before_progress_reports_reads_as_heard_when_it_was_written() {
        let old: TasksEntry = serde_json::from_str(r#"{"partitions":[1,3],"at_ms":1000}"#).unwrap();
        assert!(old.progress.is_empty());
        assert_eq!(old.heard_ms(), 1000);
        let new = TasksEntry {
            progress: vec![TaskProgress {
                stage: 0,
                partition: 1,
                committed_offset: 5,
                end_offset: 9,
            }],
            reported_ms: 4000,
            ..old
        };
        assert_eq!(new.heard_ms(), 4000);
        // A server before progress reports reads what it knows and skips the rest.
        #[derive(Deserialize)]
        struct Before {
            partitions: Vec<u32>,
            at_ms: i64,
        }
        let read: Before = serde_json::from_slice(&serde_json::to_vec(&new).unwrap()).unwrap();
        assert_eq!((read.partitions, read.at_ms), (vec![1, 3], 1000));
    }
}
