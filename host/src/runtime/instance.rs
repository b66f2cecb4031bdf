use super::bindings::{self, GuestError, OperatorInfo};
use super::edge;
use super::engine::{EngineParts, deadline_ticks};
use super::host::{HostState, TaskInfo};
use super::limits::{CallLimits, CallUsage, Interrupt, Interrupted, LimitExceeded};
use super::packed;
use super::{CallError, Limits, MemoryLimitExceeded, TrapKind};
use crate::memory::BudgetExhausted;
use crate::record::batch::{EventBatch, OutputBatch};
use crate::state::{OperatorState, StateError};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use wasmtime::{Store, UpdateDeadline};

/// One live instance of an operator component, with its own store and limits.
///
/// After any [`CallError::Trap`] the instance is poisoned: drop it (keeping its state with
/// [`OperatorInstance::into_state`]) and instantiate a new one.
pub struct OperatorInstance {
    store: Store<HostState>,
    guest: Guest,
    deadline_ticks: u64,
    deadline_secs: f64,
    /// The last batch in WIT form, kept for its buffers.
    scratch: bindings::EventBatch,
    /// The same in packed form, for a guest with `packed-handler`.
    packed_scratch: bindings::PackedBatch,
    /// What one call may emit.
    call_limits: CallLimits,
}

/// The exports of one instance.
struct Guest {
    operator: bindings::Operator,
    /// `packed-handler`, which takes `process` calls when the component has it.
    packed: Option<bindings::packed::PackedGuest>,
}

fn instantiate(
    store: &mut Store<HostState>,
    pre: &bindings::OperatorPre<HostState>,
    packed: Option<&bindings::packed::GuestIndices>,
) -> wasmtime::Result<Guest> {
    let instance = pre.instance_pre().instantiate(&mut *store)?;
    let operator = bindings::Operator::new(&mut *store, &instance)?;
    let packed = packed
        .map(|indices| indices.load(&mut *store, &instance))
        .transpose()?;
    Ok(Guest { operator, packed })
}

impl OperatorInstance {
    pub(crate) fn new(
        parts: &Arc<EngineParts>,
        pre: &bindings::OperatorPre<HostState>,
        packed: Option<&bindings::packed::GuestIndices>,
        info: TaskInfo,
        state: OperatorState,
        limits: Limits,
    ) -> Result<Self, (CallError, OperatorState)> {
        let budget = parts.log_budgets.of(&info.pipeline, &info.operator);
        let host = HostState::new(info, state, limits, budget);
        let mut store = Store::new(&parts.engine, host);
        store.limiter(|s| &mut s.limits);
        let deadline_ticks = deadline_ticks(limits.call_deadline);
        store.data_mut().ticks_left = deadline_ticks;
        // Every tick: a stopping task interrupts the call at once; otherwise the call
        // runs until its deadline.
        store.epoch_deadline_callback(|mut ctx| {
            let host = ctx.data_mut();
            if host
                .interrupt
                .as_ref()
                .is_some_and(|f| f.load(Ordering::Acquire))
            {
                return Err(Interrupted.into());
            }
            host.ticks_left = host.ticks_left.saturating_sub(1);
            if host.ticks_left == 0 {
                return Err(wasmtime::Trap::Interrupt.into());
            }
            Ok(UpdateDeadline::Continue(1))
        });
        store.set_epoch_deadline(1);
        let deadline_secs = limits.call_deadline.as_secs_f64();
        match instantiate(&mut store, pre, packed) {
            Ok(guest) => Ok(OperatorInstance {
                store,
                guest,
                deadline_ticks,
                deadline_secs,
                scratch: edge::empty_event_batch(),
                packed_scratch: packed::empty_batch(),
                call_limits: limits.call,
            }),
            Err(e) => {
                let err = classify(e, &store.data().stderr.recent(), deadline_secs);
                Err((err, store.into_data().into_state()))
            }
        }
    }

    fn call<R>(
        &mut self,
        f: impl FnOnce(&Guest, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        self.store.data_mut().ticks_left = self.deadline_ticks;
        self.store.set_epoch_deadline(1);
        self.store.data().stderr.clear_recent();
        self.store.data_mut().usage = CallUsage::default();
        f(&self.guest, &mut self.store)
            .map_err(|e| classify(e, &self.store.data().stderr.recent(), self.deadline_secs))
    }

    /// Lets `flag` interrupt this instance's calls (set when its task is stopping).
    pub fn set_interrupt(&mut self, flag: Interrupt) {
        self.store.data_mut().interrupt = Some(flag);
    }

    /// Starts the operator with its config; a refusal is `CallError::Failed(Fatal(..))`.
    pub fn init(&mut self, config: &[(String, String)]) -> Result<OperatorInfo, CallError> {
        self.call(|b, s| b.operator.eddy_operator_handler().call_init(s, config))?
            .map_err(|msg| CallError::Failed(GuestError::Fatal(msg)))
    }

    /// Hands a batch to the operator.
    pub fn process(&mut self, batch: &EventBatch) -> Result<OutputBatch, CallError> {
        if self.guest.packed.is_some() {
            return self.process_packed(batch);
        }
        let mut scratch = std::mem::replace(&mut self.scratch, edge::empty_event_batch());
        edge::event_batch_in(batch, &mut scratch);
        let result = self.call(|b, s| b.operator.eddy_operator_handler().call_process(s, &scratch));
        self.scratch = scratch;
        let out = result?.map_err(|e| CallError::Rejected {
            index: e.index,
            error: e.error,
        })?;
        self.checked(out)
    }

    /// `process` through `packed-handler`.
    fn process_packed(&mut self, batch: &EventBatch) -> Result<OutputBatch, CallError> {
        let mut scratch = std::mem::replace(&mut self.packed_scratch, packed::empty_batch());
        packed::batch_in(batch, self.store.data().state.epoch(), &mut scratch);
        let result = self.call(|g, s| match &g.packed {
            Some(p) => p.call_process(s, &scratch),
            None => Err(wasmtime::Error::msg("the component has no packed-handler")),
        });
        self.packed_scratch = scratch;
        let out = result?.map_err(|e| CallError::Rejected {
            index: e.index,
            error: e.error,
        })?;
        self.call_limits
            .output(out.data.len() + out.outputs.len() + out.headers.len())
            .map_err(|m| CallError::Trap {
                kind: TrapKind::Limit,
                message: m.to_string(),
            })?;
        packed::output_out(out).map_err(|message| CallError::Trap {
            kind: TrapKind::Other,
            message,
        })
    }

    /// Fires one timer.
    pub fn on_timer(&mut self, key: &[u8], at: i64) -> Result<OutputBatch, CallError> {
        let out = self
            .call(|b, s| b.operator.eddy_operator_handler().call_on_timer(s, key, at))?
            .map_err(CallError::Failed)?;
        self.checked(out)
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
                b.operator
                    .eddy_operator_handler()
                    .call_migrate(s, store, from_version, &batch)
            })?
            .map_err(fatal)?;
        edge::byte_list_out(&list).map_err(|m| fatal(format!("migrate returned {m}")))
    }

    /// An operator's output as a host batch, within the output limit.
    fn checked(&self, out: bindings::OutputBatch) -> Result<OutputBatch, CallError> {
        let bytes = out.data.len()
            + out.outputs.len() * std::mem::size_of::<bindings::OutputMeta>()
            + out.headers.len() * std::mem::size_of::<bindings::HeaderMeta>();
        self.call_limits
            .output(bytes)
            .map_err(|m| CallError::Trap {
                kind: TrapKind::Limit,
                message: m.to_string(),
            })?;
        Ok(edge::output_batch_out(out))
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

/// What wasmtime says when one host call copied more than its limit (128 MiB) from the
/// guest.
const HOSTCALL_FUEL: &str = "fuel allocated for hostcalls has been exhausted";

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
    if let Some(m) = err.downcast_ref::<BudgetExhausted>() {
        return CallError::Trap {
            kind: TrapKind::MemoryLimit,
            message: m.to_string(),
        };
    }
    if let Some(m) = err.downcast_ref::<Interrupted>() {
        return CallError::Trap {
            kind: TrapKind::Stopped,
            message: m.to_string(),
        };
    }
    if let Some(m) = err.downcast_ref::<LimitExceeded>() {
        return CallError::Trap {
            kind: TrapKind::Limit,
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
        // wasmtime's per-call copy limit: say what it means, not only where it struck.
        None if err.root_cause().to_string().contains(HOSTCALL_FUEL) => {
            "one host call tried to copy more than 128 MiB out of the operator (a value or a list that large): keep state values under settings.max_value_mb and write big data in pieces".to_string()
        }
        // The whole chain: a host call's error sits below the wasm backtrace.
        None => format!("{err:#}"),
    };
    if !last_stderr.is_empty() {
        message.push_str(&format!(" (guest stderr: {last_stderr})"));
    }
    CallError::Trap {
        kind: TrapKind::Other,
        message,
    }
}
