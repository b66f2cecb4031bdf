//! The pipeline control plane: specs and their validation.

pub mod spec;

pub use spec::{OnError, OperatorSpec, PipelineSpec, Settings, SpecError, VersionRef};
