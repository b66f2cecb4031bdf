use crate::event::INHERIT_TIMESTAMP;
use crate::flat::OutputBuilder;
use crate::{Error, Event, Store, backend};

/// Log levels for [`Context::log`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Where an operator instance runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    /// Name of the pipeline.
    pub pipeline: String,
    /// Name of the operator in the pipeline.
    pub operator: String,
    /// Version of the operator.
    pub version: u32,
    /// The source partition this instance serves.
    pub partition: u32,
    /// Number of source partitions.
    pub partition_count: u32,
}

/// What an operator can do while it handles a record or a timer: emit events, use its
/// stores, set timers, log.
pub struct Context {
    pub(crate) out: OutputBuilder,
    stores: Vec<Store>,
    /// Timestamp of the record or timer being handled; inherited by emitted events.
    pub(crate) current_timestamp: i64,
    /// The host's state epoch the stores' caches belong to; `None`: they hold nothing
    /// that may outlive the current call.
    epoch: Option<u64>,
}

impl Context {
    pub(crate) fn new() -> Self {
        Context {
            out: OutputBuilder::default(),
            stores: Vec::new(),
            current_timestamp: 0,
            epoch: None,
        }
    }

    /// Starts a call. The stores keep their cached values only when the host's state
    /// `epoch` is the one they were cached under; a call without one starts empty.
    pub(crate) fn begin(&mut self, epoch: Option<u64>) {
        if epoch.is_none() || epoch != self.epoch {
            self.stores.iter().for_each(Store::forget);
        }
        self.epoch = epoch;
    }

    /// Ends a call that succeeded: the stores' writes go to the host. With `keep`, their
    /// cached values may serve the next call under the same epoch.
    pub(crate) fn finish(&mut self, keep: bool) {
        self.stores.iter().for_each(Store::write_out);
        if !keep {
            self.stores.iter().for_each(Store::forget);
            self.epoch = None;
        }
    }

    /// Ends a call that failed: the host forgets its writes, so the stores forget them too.
    pub(crate) fn discard(&mut self) {
        self.stores.iter().for_each(Store::forget);
        self.epoch = None;
    }

    /// The store called `name` (opened once, then cached).
    pub fn store(&mut self, name: &str) -> Result<Store, Error> {
        if let Some(store) = self.stores.iter().find(|s| s.name() == name) {
            return Ok(store.clone());
        }
        let store = Store::open(name)?;
        self.stores.push(store.clone());
        Ok(store)
    }

    /// Emits `event` on the main output: to the next operator, or the pipeline's sink.
    pub fn emit(&mut self, event: Event<'_>) {
        self.emit_on(None, event)
    }

    /// Emits `event` on the side output `port` (topic `<pipeline>.<port>`).
    pub fn emit_to(&mut self, port: &str, event: Event<'_>) {
        self.emit_on(Some(port), event)
    }

    fn emit_on(&mut self, port: Option<&str>, event: Event<'_>) {
        let ts = if event.timestamp == INHERIT_TIMESTAMP {
            self.current_timestamp
        } else {
            event.timestamp
        };
        self.out.push(port, &event, ts)
    }

    /// The task's watermark: no event older than this is expected any more.
    pub fn watermark(&self) -> i64 {
        backend::watermark()
    }

    /// Asks for [`crate::Operator::on_timer`] with `key` once the watermark reaches `at`.
    pub fn set_timer(&mut self, key: impl AsRef<[u8]>, at: i64) {
        backend::set_timer(key.as_ref(), at)
    }

    /// Cancels a timer.
    pub fn delete_timer(&mut self, key: impl AsRef<[u8]>, at: i64) {
        backend::delete_timer(key.as_ref(), at)
    }

    /// The pipeline, operator and partition this instance serves.
    pub fn info(&self) -> TaskInfo {
        backend::info()
    }

    /// Writes to the host's log.
    pub fn log(&self, level: LogLevel, message: impl AsRef<str>) {
        backend::log(level, message.as_ref())
    }
}
