//! Per-instance resource limits, reported as typed errors so a memory bomb is named as
//! such instead of surfacing as an allocator abort.

use crate::memory::Charge;
use wasmtime::ResourceLimiter;

/// An instance tried to grow its memory past the limit.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "memory limit exceeded: the instance asked for {desired} bytes, the limit is {limit} bytes"
)]
pub struct MemoryLimitExceeded {
    pub desired: usize,
    pub limit: usize,
}

/// A call went past one of its pipeline's limits; the message names the limit, the
/// value and the setting that raises it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct LimitExceeded(pub String);

/// What one call into an operator (a batch, a timer, a migration page) may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    pub max_value_bytes: usize,
    pub max_state_bytes: usize,
    pub max_scan_page_bytes: usize,
    pub max_output_bytes: usize,
    pub max_stores: usize,
    pub max_timers: u64,
    pub max_pending_timers: u64,
}

impl CallLimits {
    pub fn from_settings(s: &crate::model::Settings) -> Self {
        let mib = |n: u64| {
            usize::try_from(n)
                .unwrap_or(usize::MAX)
                .saturating_mul(1 << 20)
        };
        CallLimits {
            max_value_bytes: mib(s.max_value_mb),
            max_state_bytes: mib(s.max_batch_state_mb),
            max_scan_page_bytes: mib(s.max_scan_page_mb),
            max_output_bytes: mib(s.max_output_mb),
            max_stores: usize::try_from(s.max_stores).unwrap_or(usize::MAX),
            max_timers: s.max_timers_per_call,
            max_pending_timers: s.max_pending_timers,
        }
    }
}

/// What the current call did so far, against its [`CallLimits`].
#[derive(Debug, Default)]
pub(crate) struct CallUsage {
    state_bytes: usize,
    timers: u64,
}

/// `n` bytes in MiB, for messages.
fn mib(n: usize) -> String {
    format!("{:.1} MiB", n as f64 / (1 << 20) as f64)
}

impl CallUsage {
    /// A write of `key` and `value` bytes (`value` is `None` for deletes and counters).
    pub(crate) fn write(
        &mut self,
        limits: &CallLimits,
        key: usize,
        value: usize,
    ) -> Result<(), LimitExceeded> {
        if value > limits.max_value_bytes {
            return Err(LimitExceeded(format!(
                "a state value of {} is over settings.max_value_mb = {} (raise it, up to 100)",
                mib(value),
                limits.max_value_bytes >> 20
            )));
        }
        self.state_bytes = self.state_bytes.saturating_add(key + value);
        if self.state_bytes > limits.max_state_bytes {
            return Err(LimitExceeded(format!(
                "one call wrote {} of state, over settings.max_batch_state_mb = {} (a batch is retried record by record; raise it for records that write more)",
                mib(self.state_bytes),
                limits.max_state_bytes >> 20
            )));
        }
        Ok(())
    }

    /// A timer set.
    pub(crate) fn timer(&mut self, limits: &CallLimits) -> Result<(), LimitExceeded> {
        self.timers += 1;
        if self.timers > limits.max_timers {
            return Err(LimitExceeded(format!(
                "one call set more than settings.max_timers_per_call = {} timers",
                limits.max_timers
            )));
        }
        Ok(())
    }
}

impl CallLimits {
    /// The error for a set that left `pending` timers waiting in the task, over the limit.
    pub(crate) fn pending_timers(&self, pending: u64) -> LimitExceeded {
        LimitExceeded(format!(
            "the operator would have {pending} timers waiting in this task, more than settings.max_pending_timers = {} (a timer leaves when it fires or is deleted; raise the setting, up to 1000000000)",
            self.max_pending_timers
        ))
    }

    /// Refuses to open store number `count` (counting from 1).
    pub(crate) fn store(&self, count: usize) -> Result<(), String> {
        if count > self.max_stores {
            return Err(format!(
                "an operator may open at most settings.max_stores = {} stores (each has a changelog topic)",
                self.max_stores
            ));
        }
        Ok(())
    }

    /// Refuses an output of `bytes`.
    pub(crate) fn output(&self, bytes: usize) -> Result<(), LimitExceeded> {
        if bytes > self.max_output_bytes {
            return Err(LimitExceeded(format!(
                "one call emitted {} of output, over settings.max_output_mb = {}",
                mib(bytes),
                self.max_output_bytes >> 20
            )));
        }
        Ok(())
    }
}

/// Set when the task is stopping: a call that runs stops at the next epoch tick.
pub type Interrupt = std::sync::Arc<std::sync::atomic::AtomicBool>;

/// A call was interrupted because its task is stopping.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the call was interrupted: its task is stopping")]
pub struct Interrupted;

/// Table elements an instance may have; generous, but bounded.
const TABLE_ELEMENTS_MAX: usize = 1 << 20;

pub(crate) struct InstanceLimits {
    pub(crate) memory_limit: usize,
    /// The instance's memories, charged to the server's memory budget as they grow.
    pub(crate) charge: Charge,
    /// What the last growth charged (given back if the growth then fails).
    pub(crate) last_growth: u64,
}

impl ResourceLimiter for InstanceLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            return Err(MemoryLimitExceeded {
                desired,
                limit: self.memory_limit,
            }
            .into());
        }
        let more = desired.saturating_sub(current) as u64;
        let held = self.charge.bytes();
        self.charge.grow_to(held + more)?;
        self.last_growth = more;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        let held = self.charge.bytes();
        self.charge.set(held.saturating_sub(self.last_growth));
        self.last_growth = 0;
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= TABLE_ELEMENTS_MAX)
    }
}
