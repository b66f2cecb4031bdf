//! The host side of the world's imports: state, timers, log and context, plus the
//! locked-down WASI context. One `HostState` per instance.

use super::Limits;
use super::bindings::eddy::operator::{context, log, state, timers, types};
use super::bindings::{ByteList, KvBatch, PackedWrites, Span};
use super::limits::{CallLimits, CallUsage, InstanceLimits};
use super::output::{GuestOutput, SharedBudget};
use super::packed;
use crate::memory::{Charge, Holder};
use crate::state::{OperatorState, StoreId};
use std::sync::Arc;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// The `store` resource: an index into the instance's [`OperatorState`].
pub struct StoreHandle(StoreId);

/// Where an instance runs, as `context.info` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    pub pipeline: String,
    pub operator: String,
    pub version: u32,
    pub partition: u32,
    pub partition_count: u32,
}

impl TaskInfo {
    /// `pipeline/operator@version#partition`, for logs and errors.
    pub fn tag(&self) -> String {
        format!(
            "{}/{}@{}#{}",
            self.pipeline, self.operator, self.version, self.partition
        )
    }
}

/// Everything an instance's host calls can reach.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limits: InstanceLimits,
    /// What one call may do, and what the current call did.
    call_limits: CallLimits,
    pub(crate) usage: CallUsage,
    /// Epoch ticks the current call may still run, and the flag that stops it early.
    pub(crate) ticks_left: u64,
    pub(crate) interrupt: Option<super::Interrupt>,
    pub(crate) state: OperatorState,
    info: TaskInfo,
    tag: String,
    log_budget: SharedBudget,
    pub(crate) stderr: GuestOutput,
}

impl HostState {
    pub(crate) fn new(
        info: TaskInfo,
        mut state: OperatorState,
        limits: Limits,
        log_budget: SharedBudget,
    ) -> Self {
        state.limit_timers(limits.call.max_pending_timers);
        let tag = info.tag();
        let stdout = GuestOutput::new(tag.clone(), "stdout", Arc::clone(&log_budget));
        let stderr = GuestOutput::new(tag.clone(), "stderr", Arc::clone(&log_budget));
        // No preopened directories, no environment, no arguments, stdin closed, every
        // socket address denied, no name lookups. Clocks and randomness stay: language
        // runtimes need them to start.
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout)
            .stderr(stderr.clone())
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .build();
        HostState {
            wasi,
            table: ResourceTable::new(),
            limits: InstanceLimits {
                memory_limit: limits.memory,
                charge: Charge::new(Arc::clone(state.db().budget()), Holder::Wasm),
                last_growth: 0,
            },
            call_limits: limits.call,
            usage: CallUsage::default(),
            ticks_left: u64::MAX,
            interrupt: None,
            state,
            info,
            tag,
            log_budget,
            stderr,
        }
    }

    pub(crate) fn into_state(self) -> OperatorState {
        self.state
    }

    fn store_id(&self, handle: &Resource<StoreHandle>) -> wasmtime::Result<StoreId> {
        Ok(self.table.get(handle)?.0)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

const ABSENT: u32 = u32::MAX;

fn span_bytes<'a>(data: &'a [u8], span: &Span) -> wasmtime::Result<Option<&'a [u8]>> {
    if span.len == ABSENT {
        return Ok(None);
    }
    let start = span.offset as usize;
    let end = start.saturating_add(span.len as usize);
    data.get(start..end).map(Some).ok_or_else(|| {
        wasmtime::format_err!(
            "span {}+{} outside a {}-byte buffer",
            span.offset,
            span.len,
            data.len()
        )
    })
}

fn push_span(data: &mut Vec<u8>, bytes: Option<&[u8]>) -> Span {
    match bytes {
        None => Span {
            offset: 0,
            len: ABSENT,
        },
        Some(b) => {
            let offset = data.len() as u32;
            data.extend_from_slice(b);
            Span {
                offset,
                len: b.len() as u32,
            }
        }
    }
}

fn byte_list_keys(list: &ByteList) -> wasmtime::Result<Vec<&[u8]>> {
    list.items
        .iter()
        .map(|s| span_bytes(&list.data, s).map(Option::unwrap_or_default))
        .collect()
}

impl types::Host for HostState {}

impl state::Host for HostState {}

impl state::HostStore for HostState {
    fn open(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<StoreHandle>, state::StateError>> {
        if !self.state.has_store(&name)
            && let Err(msg) = self.call_limits.store(self.state.store_count() + 1)
        {
            return Ok(Err(state::StateError::InvalidArgument(msg)));
        }
        match self.state.open_store(&name)? {
            Ok(id) => Ok(Ok(self.table.push(StoreHandle(id))?)),
            Err(msg) => Ok(Err(state::StateError::InvalidArgument(msg))),
        }
    }

    fn get(
        &mut self,
        store: Resource<StoreHandle>,
        key: Vec<u8>,
    ) -> wasmtime::Result<Option<Vec<u8>>> {
        let id = self.store_id(&store)?;
        Ok(self.state.get(id, &key)?)
    }

    fn get_many(
        &mut self,
        store: Resource<StoreHandle>,
        keys: ByteList,
    ) -> wasmtime::Result<ByteList> {
        let id = self.store_id(&store)?;
        let mut out = ByteList {
            data: Vec::new(),
            items: Vec::with_capacity(keys.items.len()),
        };
        for key in byte_list_keys(&keys)? {
            let value = self.state.get(id, key)?;
            let span = push_span(&mut out.data, value.as_deref());
            out.items.push(span);
        }
        Ok(out)
    }

    fn set(
        &mut self,
        store: Resource<StoreHandle>,
        key: Vec<u8>,
        value: Vec<u8>,
    ) -> wasmtime::Result<()> {
        let id = self.store_id(&store)?;
        self.usage
            .write(&self.call_limits, key.len(), value.len())?;
        self.state.set(id, key, value);
        Ok(())
    }

    fn set_many(&mut self, store: Resource<StoreHandle>, entries: KvBatch) -> wasmtime::Result<()> {
        let id = self.store_id(&store)?;
        for e in &entries.entries {
            let key = span_bytes(&entries.data, &e.key)?
                .unwrap_or_default()
                .to_vec();
            let value = span_bytes(&entries.data, &e.value)?
                .unwrap_or_default()
                .to_vec();
            self.usage
                .write(&self.call_limits, key.len(), value.len())?;
            self.state.set(id, key, value);
        }
        Ok(())
    }

    fn write_packed(
        &mut self,
        store: Resource<StoreHandle>,
        writes: PackedWrites,
    ) -> wasmtime::Result<()> {
        let id = self.store_id(&store)?;
        if !writes.entries.len().is_multiple_of(packed::WRITE) {
            wasmtime::bail!(
                "write-packed got {} bytes of entries: not whole {}-byte entries",
                writes.entries.len(),
                packed::WRITE
            );
        }
        for entry in writes.entries.chunks_exact(packed::WRITE) {
            let to_span = |at| {
                let s = packed::span_at(entry, at);
                Span {
                    offset: s.offset,
                    len: s.len,
                }
            };
            let key = span_bytes(&writes.data, &to_span(0))?.unwrap_or_default();
            let value = span_bytes(&writes.data, &to_span(8))?;
            self.usage
                .write(&self.call_limits, key.len(), value.map_or(0, <[u8]>::len))?;
            self.state.put(id, key, value);
        }
        Ok(())
    }

    fn delete(&mut self, store: Resource<StoreHandle>, key: Vec<u8>) -> wasmtime::Result<()> {
        let id = self.store_id(&store)?;
        self.usage.write(&self.call_limits, key.len(), 0)?;
        self.state.delete(id, key);
        Ok(())
    }

    fn delete_range(
        &mut self,
        store: Resource<StoreHandle>,
        start: Vec<u8>,
        end: Option<Vec<u8>>,
    ) -> wasmtime::Result<()> {
        let id = self.store_id(&store)?;
        self.state.delete_range(id, start, end);
        Ok(())
    }

    fn scan(
        &mut self,
        store: Resource<StoreHandle>,
        start: Vec<u8>,
        end: Option<Vec<u8>>,
        limit: u32,
        continuation: Option<Vec<u8>>,
    ) -> wasmtime::Result<state::ScanPage> {
        let id = self.store_id(&store)?;
        let page = self.state.scan(
            id,
            (&start, end.as_deref()),
            limit as usize,
            self.call_limits.max_scan_page_bytes,
            continuation.as_deref(),
        )?;
        let mut entries = KvBatch {
            data: Vec::new(),
            entries: Vec::with_capacity(page.entries.len()),
        };
        for (k, v) in &page.entries {
            let key = push_span(&mut entries.data, Some(k));
            let value = push_span(&mut entries.data, Some(v));
            entries.entries.push(types::KvMeta { key, value });
        }
        Ok(state::ScanPage {
            entries,
            continuation: page.continuation,
        })
    }

    fn increment(
        &mut self,
        store: Resource<StoreHandle>,
        key: Vec<u8>,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, state::StateError>> {
        let id = self.store_id(&store)?;
        self.usage.write(&self.call_limits, key.len(), 8)?;
        Ok(self
            .state
            .increment(id, key, delta)?
            .map_err(|e| state::StateError::NotACounter(e.to_string())))
    }

    fn increment_many(
        &mut self,
        store: Resource<StoreHandle>,
        keys: ByteList,
        deltas: Vec<i64>,
    ) -> wasmtime::Result<Result<Vec<i64>, state::StateError>> {
        let id = self.store_id(&store)?;
        let keys = byte_list_keys(&keys)?;
        if keys.len() != deltas.len() {
            return Ok(Err(state::StateError::InvalidArgument(format!(
                "increment-many got {} keys and {} deltas",
                keys.len(),
                deltas.len()
            ))));
        }
        let mut out = Vec::with_capacity(keys.len());
        for (key, delta) in keys.into_iter().zip(deltas) {
            self.usage.write(&self.call_limits, key.len(), 8)?;
            match self.state.increment(id, key.to_vec(), delta)? {
                Ok(n) => out.push(n),
                Err(e) => return Ok(Err(state::StateError::NotACounter(e.to_string()))),
            }
        }
        Ok(Ok(out))
    }

    fn drop(&mut self, store: Resource<StoreHandle>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        Ok(())
    }
}

impl timers::Host for HostState {
    fn watermark(&mut self) -> wasmtime::Result<i64> {
        Ok(self.state.watermark)
    }

    fn set_event_timer(&mut self, key: Vec<u8>, at: i64) -> wasmtime::Result<()> {
        self.usage.timer(&self.call_limits)?;
        self.usage.write(&self.call_limits, key.len(), 8)?;
        self.state.set_timer(key, at)?;
        if let Some(n) = self.state.timers_over()? {
            return Err(self.call_limits.pending_timers(n).into());
        }
        Ok(())
    }

    fn delete_event_timer(&mut self, key: Vec<u8>, at: i64) -> wasmtime::Result<()> {
        self.state.delete_timer(key, at)?;
        Ok(())
    }
}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        if !self
            .log_budget
            .lock()
            .expect("log budget lock")
            .admit(&self.tag)
        {
            return Ok(());
        }
        let tag = self.tag.as_str();
        match level {
            log::Level::Trace => tracing::trace!(operator = tag, "{message}"),
            log::Level::Debug => tracing::debug!(operator = tag, "{message}"),
            log::Level::Info => tracing::info!(operator = tag, "{message}"),
            log::Level::Warn => tracing::warn!(operator = tag, "{message}"),
            log::Level::Error => tracing::error!(operator = tag, "{message}"),
        }
        Ok(())
    }
}

impl context::Host for HostState {
    fn info(&mut self) -> wasmtime::Result<context::TaskInfo> {
        let i = &self.info;
        Ok(context::TaskInfo {
            pipeline: i.pipeline.clone(),
            operator: i.operator.clone(),
            version: i.version,
            partition: i.partition,
            partition_count: i.partition_count,
        })
    }

    fn current_input(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(self.state.input.as_deref().map(str::to_string))
    }
}
