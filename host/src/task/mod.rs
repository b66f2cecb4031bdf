//! Tasks: one per source partition, running the pipeline's operators in order over
//! batches, isolating failing records, firing timers, and committing each batch's state,
//! position and outputs atomically.

pub mod batch;
mod clock;
mod config;
mod error;
mod handle;
mod io;
mod native;
mod operator;
mod pool;
mod processor;
mod runner;
mod upstream;

pub use clock::{REMOTE_REPORT_TTL_MS, StageClock, TaskClock};
pub use config::{Probation, TaskConfig, TaskStats};
pub use error::TaskError;
pub use handle::{Command, TaskHandle, TaskJob, TaskState, TaskStatus};
pub use io::{Outputs, Sink, SourceBatch};
pub use native::{NativeOperator, NativeProcess};
pub use operator::{Operator, Unavailable, WasmOperator};
pub use pool::WorkerPool;
pub use processor::{LATE_PORT, Task};
pub use runner::{Step, TaskRunner, TaskSource};
pub use upstream::{UpstreamWatermarks, WATERMARK_HEADER, read_watermark, watermark_record};
