//! The model every layer shares: the pipeline spec and its settings, the stored pipeline
//! record, and the messages servers exchange about shared pipelines. It imports nothing
//! else of the crate, so any layer may use it.

pub mod cluster;
pub mod inputs;
pub mod pipeline;
pub mod settings;
pub mod shadow;
pub mod spec;
pub mod topology;

pub use cluster::{Held, Hold, ProbationReport, TaskClock, TaskProgress};
pub use inputs::{InputKind, InputSpec, SOURCE_INPUT};
pub use pipeline::{
    Canary, PinnedOperator, PipelineRecord, PipelineState, UpgradeDecision, UpgradeRecord,
    UpgradeResult, UpgradeTo,
};
pub use shadow::{ShadowLimits, ShadowRun, ShadowState};
pub use spec::{
    DurationText, KafkaEndpoint, LateEvents, OnError, OnProbationTimeout, OperatorConfig,
    OperatorSpec, PipelineSpec, PortTopics, Settings, SpecError, TopicRef, VersionRef,
};
pub use topology::{Stage, repartition_topic, stages, stages_through};
