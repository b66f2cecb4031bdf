//! The wasmtime engine, the linker, and the thread that drives epoch deadlines.

use super::host::HostState;
use super::output::LogBudgets;
use super::{EPOCH_TICK, RuntimeConfig, RuntimeError, bindings};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine};

pub(crate) struct EngineParts {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<HostState>,
    pub(crate) config: RuntimeConfig,
    /// The log budget of each operator of each pipeline, shared by its instances.
    pub(crate) log_budgets: LogBudgets,
    stop: Arc<AtomicBool>,
}

impl EngineParts {
    pub(crate) fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        let mut wasm = Config::new();
        // The host never uses component-model async; without it every call costs half.
        wasm.concurrency_support(false);
        wasm.epoch_interruption(true);
        wasm.wasm_component_model(true);
        // `EDDY_WASM_PROFILER=perfmap` names JIT code for `perf report`.
        if std::env::var("EDDY_WASM_PROFILER").is_ok_and(|v| v == "perfmap") {
            wasm.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&wasm).map_err(|e| RuntimeError::Engine(e.to_string()))?;

        let mut linker = Linker::new(&engine);
        // Locked-down WASI for std-heavy guests: the context grants nothing (see host.rs).
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| RuntimeError::Engine(e.to_string()))?;
        bindings::Operator::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| RuntimeError::Engine(e.to_string()))?;

        let stop = Arc::new(AtomicBool::new(false));
        let ticker_engine = engine.clone();
        let ticker_stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("eddy-epoch".into())
            .spawn(move || {
                while !ticker_stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticker_engine.increment_epoch();
                }
            })
            .map_err(|e| RuntimeError::Engine(format!("cannot start the epoch thread: {e}")))?;
        Ok(EngineParts {
            engine,
            linker,
            config,
            log_budgets: LogBudgets::default(),
            stop,
        })
    }
}

/// Epoch ticks a call may run before it is interrupted.
pub(crate) fn deadline_ticks(deadline: std::time::Duration) -> u64 {
    (deadline.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64 + 1
}

impl Drop for EngineParts {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
