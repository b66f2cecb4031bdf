//! The pipeline control plane: specs, their validation, and the controller that runs
//! pipelines.

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
pub mod spec;
mod upgrade;

pub use changelogs::{ChangeApplier, ReplayError, Replayed, catch_up, changelog_topics};
pub use cluster_hold::{Held, Hold};
pub use cluster_upgrade::ProbationReport;
pub use controller::{ControlError, Controller};
pub use pipeline::{
    PinnedOperator, PipelineRecord, PipelineState, PipelineStatus, UpgradeRecord, UpgradeResult,
};
pub use restore::Restored;
pub use savepoint_archive::ArchiveLimits;
pub use savepoints::{Manifest, SavepointError, Savepoints};
pub use spec::{LateEvents, OnError, OperatorSpec, PipelineSpec, Settings, SpecError, VersionRef};
