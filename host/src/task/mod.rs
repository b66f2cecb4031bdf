//! Tasks: one per source partition, running the pipeline's operators in order over
//! batches, isolating failing records, firing timers, and committing each batch's state,
//! position and outputs atomically.

pub mod batch;
mod clock;
mod error;
mod handle;
mod native;
mod operator;
mod pool;
mod processor;
mod runner;
mod upstream;

pub use clock::{REMOTE_REPORT_TTL_MS, StageClock, TaskClock};
pub use error::TaskError;
pub use handle::{Command, TaskHandle, TaskJob, TaskState, TaskStatus};
pub use native::{NativeOperator, NativeProcess};
pub use operator::{Operator, Unavailable, WasmOperator};
pub use pool::WorkerPool;
pub use processor::{
    LATE_PORT, Outputs, Probation, Sink, SourceBatch, Task, TaskConfig, TaskStats,
};
pub use runner::{Step, TaskRunner, TaskSource};
pub use upstream::{UpstreamWatermarks, WATERMARK_HEADER, read_watermark, watermark_record};
