//! What is stored about a pipeline: its record (spec, pinned operators, state, upgrade
//! history).

use super::spec::PipelineSpec;
use serde::{Deserialize, Serialize};

/// The lifecycle of a pipeline: created → running → stopped | failed | recovering (and back
/// to running with start, or by itself from recovering); `starting` and `stopping` show
/// while a start or a stop waits for the operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PipelineState {
    Created,
    Running,
    Stopped,
    Failed,
    /// Kafka was out of reach (brokers down, a topic missing): the pipeline tries again
    /// by itself until it runs, or until it is stopped.
    Recovering,
    /// Its operators are starting (`init` runs). Reported meanwhile, never stored.
    Starting,
    /// Its tasks are committing and stopping. Reported meanwhile, never stored.
    Stopping,
}

/// An operator of a pipeline, pinned to the registry version it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PinnedOperator {
    /// Position in the chain (the spec's `id`, or `name`).
    pub id: String,
    pub name: String,
    pub version: u32,
    pub digest: String,
    /// The format version of its state, as its `init` declared it (once it ran).
    #[serde(default = "one")]
    pub state_version: u32,
}

fn one() -> u32 {
    1
}

/// How an upgrade went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UpgradeResult {
    /// The new version runs; its work is held until the probation ends.
    Probation,
    /// The new version passed its probation and runs for good.
    Succeeded,
    /// The new version failed; the old one runs again from the savepoint's state.
    RolledBack,
}

/// One upgrade of one operator of a pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UpgradeRecord {
    /// The operator's id in the pipeline.
    pub operator: String,
    pub from_version: u32,
    pub to_version: u32,
    /// The savepoint taken before the swap.
    pub savepoint: String,
    /// How long the pipeline's tasks were paused for the savepoint and the swap.
    pub pause_ms: f64,
    /// Keys converted by the new version's `migrate` (0 when the state format is the same).
    pub migrated_keys: u64,
    pub result: UpgradeResult,
    /// Why the upgrade was rolled back.
    pub reason: Option<String>,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
}

/// The stored record of a pipeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineRecord {
    pub spec: PipelineSpec,
    pub operators: Vec<PinnedOperator>,
    pub state: PipelineState,
    /// Why the pipeline failed, when it did.
    pub reason: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// Upgrades, oldest first.
    #[serde(default)]
    pub upgrades: Vec<UpgradeRecord>,
}
