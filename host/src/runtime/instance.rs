use super::bindings::{self, GuestError, OperatorInfo};
use super::edge;
use super::engine::{EngineParts, deadline_ticks};
use super::host::{HostState, TaskInfo};
use super::{CallError, Limits, MemoryLimitExceeded, TrapKind};
use crate::record::batch::{EventBatch, OutputBatch};
use crate::state::{OperatorState, StateError};
use std::sync::Arc;
use wasmtime::Store;

/// One live instance of an operator component, with its own store and limits.
///
/// After any [`CallError::Trap`] the instance is poisoned: drop it (keeping its state with
/// [`OperatorInstance::into_state`]) and instantiate a new one.
pub struct OperatorInstance {
    store: Store<HostState>,
    bindings: bindings::Operator,
    deadline_ticks: u64,
    deadline_secs: f64,
    /// The last batch in WIT form, kept for its buffers.
    scratch: bindings::EventBatch,
}

impl OperatorInstance {
    pub(crate) fn new(
        parts: &Arc<EngineParts>,
        pre: &bindings::OperatorPre<HostState>,
        info: TaskInfo,
        state: OperatorState,
        limits: Limits,
    ) -> Result<Self, (CallError, OperatorState)> {
        let mut store = Store::new(&parts.engine, HostState::new(info, state, limits.memory));
        store.limiter(|s| &mut s.limits);
        let deadline_ticks = deadline_ticks(limits.call_deadline);
        store.set_epoch_deadline(deadline_ticks);
        let deadline_secs = limits.call_deadline.as_secs_f64();
        match pre.instantiate(&mut store) {
            Ok(bindings) => Ok(OperatorInstance {
                store,
                bindings,
                deadline_ticks,
                deadline_secs,
                scratch: edge::empty_event_batch(),
            }),
            Err(e) => {
                let err = classify(e, &store.data().stderr.recent(), deadline_secs);
                Err((err, store.into_data().into_state()))
            }
        }
    }

    fn call<R>(
        &mut self,
        f: impl FnOnce(&bindings::Operator, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        self.store.set_epoch_deadline(self.deadline_ticks);
        self.store.data().stderr.clear_recent();
        f(&self.bindings, &mut self.store)
            .map_err(|e| classify(e, &self.store.data().stderr.recent(), self.deadline_secs))
    }

    /// Starts the operator with its config; a refusal is `CallError::Failed(Fatal(..))`.
    pub fn init(&mut self, config: &[(String, String)]) -> Result<OperatorInfo, CallError> {
        self.call(|b, s| b.eddy_operator_handler().call_init(s, config))?
            .map_err(|msg| CallError::Failed(GuestError::Fatal(msg)))
    }

    /// Hands a batch to the operator.
    pub fn process(&mut self, batch: &EventBatch) -> Result<OutputBatch, CallError> {
        let mut scratch = std::mem::replace(&mut self.scratch, edge::empty_event_batch());
        edge::event_batch_in(batch, &mut scratch);
        let result = self.call(|b, s| b.eddy_operator_handler().call_process(s, &scratch));
        self.scratch = scratch;
        result?
            .map(edge::output_batch_out)
            .map_err(|e| CallError::Rejected {
                index: e.index,
                error: e.error,
            })
    }

    /// Fires one timer.
    pub fn on_timer(&mut self, key: &[u8], at: i64) -> Result<OutputBatch, CallError> {
        self.call(|b, s| b.eddy_operator_handler().call_on_timer(s, key, at))?
            .map(edge::output_batch_out)
            .map_err(CallError::Failed)
    }

    /// Migrates a page of a store's entries: one item per entry, the new value or `None`
    /// to delete it. A refusal (or a malformed answer) is `CallError::Failed(Fatal(..))`.
    pub fn migrate(
        &mut self,
        store: &str,
        from_version: u32,
        entries: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<Vec<Option<Vec<u8>>>, CallError> {
        let batch = edge::kv_batch_in(entries);
        let fatal = |msg| CallError::Failed(GuestError::Fatal(msg));
        let list = self
            .call(|b, s| {
                b.eddy_operator_handler()
                    .call_migrate(s, store, from_version, &batch)
            })?
            .map_err(fatal)?;
        edge::byte_list_out(&list).map_err(|m| fatal(format!("migrate returned {m}")))
    }

    /// The state the instance reads and writes.
    pub fn state(&mut self) -> &mut OperatorState {
        &mut self.store.data_mut().state
    }

    /// Ends the instance, keeping its state.
    pub fn into_state(self) -> OperatorState {
        self.store.into_data().into_state()
    }
}

/// Names what stopped a call: a storage failure, a limit, or a guest trap (with the last
/// line the guest wrote to stderr, where a Rust panic message lands).
fn classify(err: wasmtime::Error, last_stderr: &str, deadline_secs: f64) -> CallError {
    let err = match err.downcast::<StateError>() {
        Ok(e) => return CallError::Host(e),
        Err(e) => e,
    };
    if let Some(m) = err.downcast_ref::<MemoryLimitExceeded>() {
        return CallError::Trap {
            kind: TrapKind::MemoryLimit,
            message: m.to_string(),
        };
    }
    if let Some(wasmtime::Trap::Interrupt) = err.downcast_ref::<wasmtime::Trap>() {
        return CallError::Trap {
            kind: TrapKind::Deadline,
            message: format!(
                "call ran past its deadline of {deadline_secs}s (an endless loop, or too much work per batch)"
            ),
        };
    }
    let mut message = match err.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => format!("trap: {trap}"),
        None => format!("{err}"),
    };
    if !last_stderr.is_empty() {
        message.push_str(&format!(" (guest stderr: {last_stderr})"));
    }
    CallError::Trap {
        kind: TrapKind::Other,
        message,
    }
}
