//! Tasks: one per source partition, running the pipeline's operators in order over
//! batches, isolating failing records, firing timers, and committing each batch's state,
//! position and outputs atomically.

pub mod batch;
mod clock;
mod config;
mod error;
mod factory;
mod fair;
mod handle;
mod inputs;
mod native;
mod operator;
mod pool;
mod processor;
mod runner;
pub mod shadow;
mod startup;
mod swap;
mod upstream;

pub use clock::{REMOTE_REPORT_TTL_MS, StageClock};
pub use config::{Probation, ProbationTotals, TaskConfig, TaskSourceInfo, TaskStats};
pub use error::TaskError;
pub use factory::{MakeOperators, StartError, TaskFactory};
pub use handle::{
    Command, Reply, RestoreStatus, SourceStatus, StandbyStatus, TaskHandle, TaskState, TaskStatus,
    ask_all,
};
pub use inputs::{Inputs, Polled};
pub use native::{NativeOperator, NativeProcess};
pub use operator::{Operator, OperatorStartError, OperatorTemplate, Unavailable, WasmOperator};
pub use pool::WorkerPool;
pub use processor::{LATE_PORT, Task};
pub use runner::{Step, TaskRunner};
pub use startup::{side_by_side, startup_width};
pub use swap::{ConfigChange, SWAP_TIMEOUT, SwapPlan, SwapReport, Version, migrate};
pub use upstream::UpstreamWatermarks;
