//! Per-instance resource limits, reported as typed errors so a memory bomb is named as
//! such instead of surfacing as an allocator abort.

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

/// Table elements an instance may have; generous, but bounded.
const TABLE_ELEMENTS_MAX: usize = 1 << 20;

pub(crate) struct InstanceLimits {
    pub(crate) memory_limit: usize,
}

impl ResourceLimiter for InstanceLimits {
    fn memory_growing(
        &mut self,
        _current: usize,
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
        Ok(true)
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
