//! The values of the cluster catalog's records (their keys are in `keys`).

use crate::model::TaskClock;
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
#[derive(Serialize, Deserialize)]
pub(super) struct TasksEntry {
    pub(super) partitions: Vec<u32>,
    pub(super) at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) url: Option<String>,
}
