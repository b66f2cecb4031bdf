//! What is stored about a pipeline: its record (spec, pinned operators, state, upgrade
//! history).

use super::spec::{PipelineSpec, SpecError, VersionRef};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    /// Partitions the cluster moved to this server are starting here (their tasks
    /// restore their state). Reported meanwhile, never stored.
    Rebalancing,
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
    /// The new version passed its probation on the canary partitions, and runs there
    /// until it is promoted to the others or rolled back.
    Canary,
    /// The new version runs for good without having handled `probation_records` records:
    /// its probation timed out under `on_probation_timeout = "accept"`, or it was
    /// promoted by request before.
    SucceededUnexercised,
}

/// What a user asked of an upgrade on probation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UpgradeDecision {
    /// End the probation now and go back to the old version.
    RollBack,
    /// End the probation now and keep the new version.
    Promote,
}

/// What an upgrade moves an operator to.
#[derive(Debug, Clone)]
pub struct UpgradeTo {
    /// The operator's id in the pipeline.
    pub operator: String,
    /// The registry version (the latest when `None`).
    pub version: Option<VersionRef>,
    /// The new instances' config (the operator's whole config), when it changes.
    pub config: Option<BTreeMap<String, String>>,
    /// Only these partitions (of the operator's stage) switch: a canary.
    pub partitions: Option<Vec<u32>>,
}

/// Most keys, and longest key or value, of an operator's config given at an upgrade.
const CONFIG_KEYS_MAX: usize = 1000;
const CONFIG_TEXT_MAX: usize = 64 << 10;

impl UpgradeTo {
    /// Checks a config given at an upgrade, before anything moves.
    pub fn check_config(config: &BTreeMap<String, String>) -> Result<(), SpecError> {
        if config.len() > CONFIG_KEYS_MAX {
            return Err(SpecError::Invalid(format!(
                "config has {} keys, more than {CONFIG_KEYS_MAX}",
                config.len()
            )));
        }
        let too_long = |t: &String| t.len() > CONFIG_TEXT_MAX;
        if let Some((k, _)) = config
            .iter()
            .find(|(k, v)| k.is_empty() || too_long(k) || too_long(v))
        {
            let shown: String = k.chars().take(40).collect();
            return Err(SpecError::Invalid(format!(
                "config key {shown:?}: a key must not be empty, and a key or value must be at most {CONFIG_TEXT_MAX} bytes"
            )));
        }
        Ok(())
    }
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
    /// Why the upgrade was rolled back (or succeeded unexercised).
    pub reason: Option<String>,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    /// The server that judges a shared pipeline's probation (its followers roll back on
    /// their own when it goes quiet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<String>,
    /// A canary upgrade's partitions (of the operator's stage), or a promotion's: the
    /// others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<Vec<u32>>,
    /// The operator's config before and after, when the upgrade changed it (the new one
    /// is handed to the new instances' `init`, and becomes the pipeline's on success).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_config: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_config: Option<BTreeMap<String, String>>,
    /// What a user asked of the probation (`eddy pipeline upgrade --rollback|--promote`),
    /// for the server that judges it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<UpgradeDecision>,
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
    /// A canary upgrade that passed its probation: some partitions run another version
    /// of one operator until it is promoted or rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
    /// The pipeline's shadow run, while it runs and after (until promoted or discarded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<super::ShadowRun>,
    /// What the pipeline's internal names in Kafka start with (its changelog and
    /// positions topics, consumer group and transactional ids): the cluster's name for a
    /// pipeline created in a cluster, so two clusters on one broker share none of them.
    /// Absent outside a cluster, and in records made before names carried it: those keep
    /// the names they started with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl PipelineRecord {
    /// Whether the pipeline's repartition topics live in Kafka: a pipeline created in a
    /// cluster that reads and writes Kafka (one the cluster shares) puts them there, so
    /// a later stage's task can run on another server than the tasks that feed it.
    /// Others keep them in the embedded log, in the same RocksDB write as the rest of a
    /// task's commit.
    pub fn repartitions_in_kafka(&self) -> bool {
        self.namespace.is_some()
            && self
                .spec
                .primary_source()
                .is_some_and(|t| t.kafka.is_some())
            && self.spec.sink.as_ref().is_some_and(|t| t.kafka.is_some())
    }
}

/// Partitions that run another version (or config) of one operator than the others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Canary {
    /// The version the canary partitions run (its `id` is the operator's).
    pub operator: PinnedOperator,
    /// Its config, when the canary changed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<BTreeMap<String, String>>,
    /// The partitions of the operator's stage that run it.
    pub partitions: Vec<u32>,
    /// Which upgrade made it (its `started_ms`).
    pub started_ms: i64,
}

impl Canary {
    /// Whether the task of `partition` in the operator's stage runs the canary.
    pub fn covers(&self, partition: u32) -> bool {
        self.partitions.contains(&partition)
    }
}
