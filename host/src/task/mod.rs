//! Tasks: one per source partition, running the pipeline's operators in order over
//! batches, isolating failing records, firing timers, and committing each batch's state,
//! position and outputs atomically.

pub mod batch;
mod error;
mod native;
mod operator;
mod processor;

pub use error::TaskError;
pub use native::{NativeOperator, NativeProcess};
pub use operator::{Operator, WasmOperator};
pub use processor::{Outputs, Sink, SourceBatch, Task, TaskConfig, TaskStats};
