//! The real host: thin calls into the generated import bindings.

use crate::bindings::eddy::operator::{context, log as wit_log, state, timers, types};
use crate::{Error, LogLevel, TaskInfo};

pub(crate) type ScanPage = state::ScanPage;

/// An open store: the host's `store` resource.
pub(crate) struct StoreHandle(state::Store);

pub(crate) fn state_error(e: state::StateError) -> Error {
    match e {
        state::StateError::NotACounter(m) => Error::BadInput(m),
        state::StateError::InvalidArgument(m) => Error::Fatal(m),
    }
}

impl StoreHandle {
    pub(crate) fn open(name: &str) -> Result<Self, Error> {
        state::Store::open(name)
            .map(StoreHandle)
            .map_err(state_error)
    }
    pub(crate) fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.get(key)
    }
    pub(crate) fn get_many(&self, keys: &types::ByteList) -> types::ByteList {
        self.0.get_many(keys)
    }
    pub(crate) fn write_packed(&self, writes: types::PackedWrites) {
        self.0.write_packed(&writes)
    }
    pub(crate) fn delete_range(&self, start: &[u8], end: Option<&[u8]>) {
        self.0.delete_range(start, end)
    }
    pub(crate) fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: u32,
        continuation: Option<&[u8]>,
    ) -> ScanPage {
        self.0.scan(start, end, limit, continuation)
    }
    pub(crate) fn increment(&self, key: &[u8], delta: i64) -> Result<i64, Error> {
        self.0.increment(key, delta).map_err(state_error)
    }
}

pub(crate) fn watermark() -> i64 {
    timers::watermark()
}

pub(crate) fn set_timer(key: &[u8], at: i64) {
    timers::set_event_timer(key, at)
}

pub(crate) fn delete_timer(key: &[u8], at: i64) {
    timers::delete_event_timer(key, at)
}

pub(crate) fn log(level: LogLevel, message: &str) {
    let level = match level {
        LogLevel::Trace => wit_log::Level::Trace,
        LogLevel::Debug => wit_log::Level::Debug,
        LogLevel::Info => wit_log::Level::Info,
        LogLevel::Warn => wit_log::Level::Warn,
        LogLevel::Error => wit_log::Level::Error,
    };
    wit_log::log(level, message)
}

pub(crate) fn current_input() -> Option<String> {
    context::current_input()
}

pub(crate) fn info() -> TaskInfo {
    let i = context::info();
    TaskInfo {
        pipeline: i.pipeline,
        operator: i.operator,
        version: i.version,
        partition: i.partition,
        partition_count: i.partition_count,
    }
}
