//! The pipeline control plane: the controller that creates, runs, stops, savepoints,
//! restores and upgrades pipelines. The spec and the pipeline record are in `model`
//! (re-exported here for the API and CLI).
//!
//! The files below `controller` hold parts the operations share (the pipeline entry,
//! the record store, the cluster link, pausing, compaction, savepoint storage); each
//! operation file adds one concern's methods to the controller and imports only
//! `controller` and those parts.

// The controller and the parts below it.
mod cluster_link;
mod compaction;
mod controller;
mod entry;
mod error;
mod history;
mod manifest;
mod manifest_check;
mod pause;
mod probation;
mod records;
mod savepoint_archive;
pub mod savepoints;
mod topics;

// The operations, one concern each.
mod canary;
mod cluster_hold;
mod cluster_members;
mod cluster_savepoints;
mod cluster_sharing;
mod cluster_upgrade;
mod lifecycle;
mod recovery;
mod restore;
mod run;
mod savepoint_ops;
mod shadow;
mod standbys;
mod state_query;
mod status;
mod upgrade;

pub use crate::log::{ReplayError, Replayed, catch_up, changelog_topics};
pub use crate::model::spec;
pub use crate::model::{
    Held, Hold, PinnedOperator, PipelineRecord, PipelineState, ProbationReport, UpgradeDecision,
    UpgradeRecord, UpgradeResult, UpgradeTo,
};
pub use crate::state::query::KeyRange;
pub use compaction::CompactionError;
pub use controller::Controller;
pub use error::{ControlError, RunError};
pub use history::{
    HISTORY_INTERVAL_MS, HISTORY_SAMPLES, HistorySample, PipelineHistory, TaskSample,
};
pub use restore::Restored;
pub use savepoint_archive::ArchiveLimits;
pub use savepoints::{Manifest, SavepointError, Savepoints};
pub use shadow::{PartitionShadow, ShadowReport};
pub use spec::{
    LateEvents, OnError, OperatorConfig, OperatorSpec, PipelineSpec, Settings, SpecError,
    VersionRef,
};
pub use state_query::{PartitionOwner, QueriedStore, QueryError, StateEntry, StatePage, StoreRef};
pub use status::{PipelineStatus, ServerStatus, StageInput, StageView};
