//! What a savepoint holds (its manifest), why one cannot be used, and which ids are
//! valid: the vocabulary the savepoint store, its archives and its checks share.

use crate::model::{PinnedOperator, PipelineSpec};
use crate::state::SourcePosition;
use crate::state::savepoint::StoreFile;
use serde::{Deserialize, Serialize};

/// The manifest format this server writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Where one task stood.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SavedTask {
    pub stage: u32,
    pub partition: u32,
    /// The next source offset to read.
    pub offset: u64,
    pub watermark: i64,
    /// After a repartition: the last watermark of each upstream task, of which the
    /// task's watermark is the lowest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstream_watermarks: Vec<i64>,
    /// A task reading several sources (a pipeline's inputs): where it stood in each
    /// (topic, partition, next offset, the source's own watermark).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub sources: Vec<SourcePosition>,
}

/// What a savepoint holds.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Manifest {
    pub format_version: u32,
    pub id: String,
    pub pipeline: String,
    pub created_ms: i64,
    #[schema(value_type = Object)]
    pub spec: PipelineSpec,
    /// Each operator's id, name, version, digest and state format version.
    pub operators: Vec<PinnedOperator>,
    pub tasks: Vec<SavedTask>,
    pub stores: Vec<StoreFile>,
    /// Keys over every store file.
    pub keys: u64,
}

/// Why a savepoint cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SavepointError {
    #[error("savepoint {0:?} does not exist")]
    NotFound(String),
    #[error("savepoint {0:?} already exists")]
    Exists(String),
    /// The savepoint is damaged or not a savepoint at all.
    #[error("savepoint is unusable: {0}")]
    Corrupt(String),
    /// The savepoint is fine but does not fit the pipeline.
    #[error("savepoint {id} does not fit pipeline {pipeline:?}: {reason}")]
    Incompatible {
        id: String,
        pipeline: String,
        reason: String,
    },
    #[error("savepoint storage: {0}")]
    Io(String),
}

/// Savepoint ids are file and URL safe: letters, digits, `.`, `_`, `-`, not starting
/// with `.`.
pub(super) fn check_id(id: &str) -> Result<(), SavepointError> {
    let ok = !id.is_empty()
        && id.len() <= 200
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !id.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(SavepointError::NotFound(id.to_string()))
    }
}
