//! The WebAssembly runtime: wasmtime configured for operators, component validation, a
//! compile cache, per-instance limits, and the host side of every import.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use eddy_host::runtime::{Runtime, RuntimeConfig};
//! let runtime = Runtime::new(RuntimeConfig::default())?;
//! let component = runtime.load(&std::fs::read("wordcount.wasm")?)?;
//! println!("{} imports {:?}", component.digest(), component.imports());
//! # Ok(()) }
//! ```

pub mod bindings;
mod cache;
mod component;
mod edge;
mod engine;
mod error;
pub(crate) mod host;
mod instance;
mod limits;
mod output;
mod packed;
mod validate;

pub use component::{OperatorComponent, digest_of};
pub use error::{CallError, ComponentError, RuntimeError, TrapKind};
pub use host::TaskInfo;
pub use instance::OperatorInstance;
pub use limits::{CallLimits, Interrupt, Interrupted, LimitExceeded, MemoryLimitExceeded};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How the runtime compiles and limits operators.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where serialized compiled components are kept; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// Default for the most linear memory one instance may use.
    pub memory_limit: usize,
    /// Default for the longest one call into an operator may run (a batch, a timer, a
    /// migration page).
    pub call_deadline: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cache_dir: None,
            memory_limit: 256 << 20,
            call_deadline: Duration::from_secs(10),
        }
    }
}

/// Per-instance limits (a pipeline's `memory_limit_mb`, `call_timeout_ms` and `max_*`
/// settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most linear memory the instance may use.
    pub memory: usize,
    /// Longest one call may run.
    pub call_deadline: Duration,
    /// What one call may do with state, timers and outputs.
    pub call: CallLimits,
}

impl Limits {
    /// The limits a pipeline's settings ask for.
    pub fn from_settings(s: &crate::model::Settings) -> Self {
        Limits {
            memory: (s.memory_limit_mb as usize) << 20,
            call_deadline: Duration::from_millis(s.call_timeout_ms),
            call: CallLimits::from_settings(s),
        }
    }
}

/// A configured engine plus linker; cheap to share between tasks.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<engine::EngineParts>,
}

impl Runtime {
    /// Builds the engine, the linker with every granted import, and the epoch ticker.
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        Ok(Runtime {
            inner: Arc::new(engine::EngineParts::new(config)?),
        })
    }

    /// Validates and compiles a component (or loads its compiled form from the cache).
    pub fn load(&self, bytes: &[u8]) -> Result<OperatorComponent, ComponentError> {
        component::load(&self.inner, bytes)
    }

    /// Reads a component from a file and loads it.
    pub fn load_file(&self, path: &std::path::Path) -> Result<OperatorComponent, ComponentError> {
        let bytes = std::fs::read(path).map_err(|e| ComponentError::Read {
            path: path.display().to_string(),
            error: e,
        })?;
        self.load(&bytes)
    }

    /// The configuration in force.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// The limits instances get unless told otherwise.
    pub fn default_limits(&self) -> Limits {
        Limits {
            memory: self.inner.config.memory_limit,
            call_deadline: self.inner.config.call_deadline,
            call: CallLimits::from_settings(&crate::model::Settings::default()),
        }
    }
}

/// Time between epoch ticks: the granularity of call deadlines.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);
