//! The pipeline control plane: the controller that creates, runs, stops, savepoints,
//! restores and upgrades pipelines. The spec and the pipeline record are in `model`
//! (re-exported here for the API and CLI).

mod changelogs;
mod cluster_hold;
mod cluster_ops;
mod cluster_savepoints;
mod cluster_upgrade;
mod controller;
mod manifest_check;
mod pause;
mod pipeline;
mod recovery;
mod restore;
mod savepoint_archive;
mod savepoint_ops;
pub mod savepoints;
mod upgrade;

pub use crate::model::spec;
pub use crate::model::{
    Held, Hold, PinnedOperator, PipelineRecord, PipelineState, ProbationReport, UpgradeRecord,
    UpgradeResult,
};
pub use changelogs::{ReplayError, Replayed, catch_up, changelog_topics};
pub use controller::{ControlError, Controller};
pub use pipeline::PipelineStatus;
pub use restore::Restored;
pub use savepoint_archive::ArchiveLimits;
pub use savepoints::{Manifest, SavepointError, Savepoints};
pub use spec::{LateEvents, OnError, OperatorSpec, PipelineSpec, Settings, SpecError, VersionRef};
