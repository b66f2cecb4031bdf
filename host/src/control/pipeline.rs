//! What is reported about a pipeline.

use super::{PinnedOperator, PipelineSpec, PipelineState, UpgradeRecord};
use crate::task::TaskStatus;
use serde::Serialize;

/// A pipeline as the API reports it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PipelineStatus {
    pub name: String,
    pub state: PipelineState,
    pub reason: Option<String>,
    pub source: String,
    pub sink: String,
    pub operators: Vec<PinnedOperator>,
    /// One per source partition, while the pipeline runs (or after it stopped or failed).
    pub tasks: Vec<TaskStatus>,
    /// The spec the pipeline was created with.
    #[schema(value_type = Object)]
    pub spec: PipelineSpec,
    /// Upgrades, oldest first.
    pub upgrades: Vec<UpgradeRecord>,
    pub created_ms: i64,
    pub updated_ms: i64,
}
