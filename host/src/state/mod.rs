//! Durable state in RocksDB: operator stores with a per-batch overlay and a record cache,
//! event-time timers, task positions, and the atomic commit that writes them together.
//!
//! One database per server (or per `eddy run --state-dir`), with column families for
//! state, timers, metadata and the embedded log. State keys are prefixed so that one
//! task's store is one contiguous range (see [`keys`]).

mod catalog;
pub mod changelog;
mod commit;
mod db;
pub mod keys;
mod meta;
mod operator_state;
pub mod query;
pub mod records;
pub mod savepoint;
pub mod scan;
mod shadow;
mod store;
mod timers;

pub use catalog::{StoreName, TIMERS};
pub use commit::Commit;
pub use db::{Cf, Db, DbOptions};
pub use meta::{
    SourcePosition, TaskId, TaskPosition, load_position, load_source_positions, load_state_version,
    load_upstream_watermarks, put_position, put_source_positions, put_upstream_watermarks,
};
pub use operator_state::{OperatorState, StateScope, StoreId};
pub use scan::ScanPage;
pub use shadow::{SHADOW_SUFFIX, is_shadow_scope, load_shadow_report};
pub use store::{CounterError, STORE_NAME_MAX, check_store_name};

/// A failure of the storage engine itself (not of an operator's use of it).
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state database at {path}: {source}")]
    Open {
        path: String,
        source: rocksdb::Error,
    },
    #[error("state database: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("state database: corrupt {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
}
