//! Eddy: a stream-processing host for WebAssembly operators.
//!
//! Operators are WebAssembly components of the `eddy:operator` world (see `wit/`). The
//! host runs one task per source partition; each task calls its operators with batches
//! of events and commits their state changes (RocksDB), the source position and the
//! outputs atomically.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use eddy_host::model::PipelineSpec;
//! let spec = PipelineSpec::from_toml(&std::fs::read_to_string("examples/wordcount/pipeline.toml")?)?;
//! assert_eq!(spec.operators[0].name, "wordcount");
//! # Ok(()) }
//! ```

pub mod api;
pub mod build;
pub mod cli;
pub mod cluster;
pub mod control;
pub mod dashboard;
pub mod io;
pub mod kafka;
pub mod log;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod record;
pub mod registry;
pub mod runtime;
pub mod scaffold;
pub mod server;
pub mod state;
pub mod task;
