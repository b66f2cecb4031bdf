//! Run an operator natively, against an in-memory host with Eddy's semantics.
//!
//! ```
//! use eddy_guest::prelude::*;
//! use eddy_guest::testing::Harness;
//!
//! #[derive(Default)]
//! struct Upper;
//! impl Operator for Upper {
//!     fn process(&mut self, event: Event, ctx: &mut Context) -> Result<(), Error> {
//!         ctx.emit(Event::keyless(event.value_str()?.to_uppercase()));
//!         Ok(())
//!     }
//! }
//!
//! let mut h = Harness::new(Upper).unwrap();
//! let out = h.process(Event::keyless("hi").at(5)).unwrap();
//! assert_eq!(out[0].event.value, &b"HI"[..]);
//! assert_eq!(out[0].event.timestamp, 5);
//! ```

use crate::backend::native::{NativeHost, with_host};
use crate::bindings::eddy::operator::types::PackedOutput;
use crate::dispatch::{Dispatch, Runner};
use crate::{Error, Event, LogLevel, Operator, TaskInfo, flat, packed};
use std::collections::{BTreeMap, BTreeSet};

/// One emitted event and its side-output port (`None`: the main output).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub port: Option<String>,
    pub event: Event<'static>,
}

/// Drives one operator through the same packed-batch path as the Wasm host. State,
/// timers and logs live in memory on the calling thread; creating a harness resets them.
/// As on the host, a batch or timer that fails leaves no trace in stores or timers.
pub struct Harness<O> {
    runner: Runner<O>,
    state_version: u32,
    /// The state epoch handed with each batch: it changes whenever the in-memory host
    /// loses or gains writes the operator did not make (a failure, `put`, `migrate`),
    /// as the host's does, so the stores' caches are dropped exactly then.
    epoch: u64,
}

/// Stores and timers, to put back when a call fails.
type Snapshot = (
    BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>,
    BTreeSet<(i64, Vec<u8>)>,
);

fn snapshot() -> Snapshot {
    with_host(|h| (h.stores.clone(), h.timers.clone()))
}

fn restore((stores, timers): Snapshot) {
    with_host(|h| {
        h.stores = stores;
        h.timers = timers;
    })
}

impl<O: Operator> Harness<O> {
    /// Starts `op` with an empty config.
    pub fn new(op: O) -> Result<Self, Error> {
        Self::with_config(op, &[])
    }

    /// Starts `op` with `config`, as the pipeline spec's `config` table would.
    pub fn with_config(op: O, config: &[(&str, &str)]) -> Result<Self, Error> {
        with_host(|h| *h = NativeHost::default());
        let config = config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (runner, info) = Runner::start(op, config).map_err(Error::Fatal)?;
        Ok(Harness {
            runner,
            state_version: info.state_version,
            epoch: 0,
        })
    }

    /// The state version the operator declared.
    pub fn state_version(&self) -> u32 {
        self.state_version
    }

    /// Sets what [`crate::Context::info`] reports.
    pub fn set_info(&mut self, info: TaskInfo) {
        with_host(|h| h.info = info);
    }

    /// Sets the input the next records come from (what [`Event::input`] answers):
    /// `"source"` until set, as for a pipeline with one `[source]`.
    pub fn set_input(&mut self, input: &str) {
        with_host(|h| h.input = Some(input.to_string()));
    }

    /// Handles one record of input `input` and returns what it emitted.
    pub fn process_from(&mut self, input: &str, event: Event<'_>) -> Result<Vec<Output>, Error> {
        self.set_input(input);
        let out = self.process(event);
        self.set_input(crate::SOURCE_INPUT);
        out
    }

    /// Handles one record and returns what it emitted.
    pub fn process(&mut self, event: Event<'_>) -> Result<Vec<Output>, Error> {
        self.process_batch(std::slice::from_ref(&event))
            .map_err(|(_, e)| e)
    }

    /// Handles a batch; on failure returns the failing index and the error, and the
    /// batch leaves no trace (the host would then re-run the records before the index).
    pub fn process_batch(&mut self, events: &[Event<'_>]) -> Result<Vec<Output>, (usize, Error)> {
        let before = snapshot();
        match self
            .runner
            .process_packed(packed::batch(events, self.epoch))
        {
            Ok(out) => Ok(decode(&out)),
            Err(e) => {
                restore(before);
                self.epoch += 1;
                Err((e.index as usize, wit_error(e.error)))
            }
        }
    }

    /// Moves the watermark to `watermark` and fires every timer due, in time order.
    pub fn advance_watermark(&mut self, watermark: i64) -> Result<Vec<Output>, Error> {
        with_host(|h| h.watermark = h.watermark.max(watermark));
        let mut outputs = Vec::new();
        loop {
            // Taken before the due timer is: a failed timer stays set, as on the host.
            let before = snapshot();
            let due = with_host(|h| {
                let first = h.timers.iter().next().cloned();
                match first {
                    Some((at, key)) if at <= h.watermark => {
                        h.timers.remove(&(at, key.clone()));
                        Some((at, key))
                    }
                    _ => None,
                }
            });
            let Some((at, key)) = due else { break };
            match self.runner.on_timer(key, at) {
                Ok(out) => outputs.extend(flat_outputs(&out)),
                Err(e) => {
                    restore(before);
                    self.epoch += 1;
                    return Err(wit_error(e));
                }
            }
        }
        Ok(outputs)
    }

    /// Every entry of store `name`, in key order.
    pub fn store(&self, name: &str) -> BTreeMap<Vec<u8>, Vec<u8>> {
        with_host(|h| h.stores.get(name).cloned().unwrap_or_default())
    }

    /// Writes an entry directly into store `name` (to set up a test).
    pub fn put(&mut self, name: &str, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.epoch += 1;
        with_host(|h| {
            h.stores
                .entry(name.to_string())
                .or_default()
                .insert(key.as_ref().to_vec(), value.as_ref().to_vec())
        });
    }

    /// Pending timers, as `(at, key)` in firing order.
    pub fn timers(&self) -> Vec<(i64, Vec<u8>)> {
        with_host(|h| h.timers.iter().cloned().collect())
    }

    /// What the operator logged.
    pub fn logs(&self) -> Vec<(LogLevel, String)> {
        with_host(|h| h.logs.clone())
    }

    /// Runs the operator's migration over store `name`, as a host upgrade would.
    pub fn migrate(&mut self, name: &str, from_version: u32) -> Result<(), Error> {
        self.epoch += 1;
        let entries = self.store(name);
        let batch = flat::kv_batch(entries.iter().map(|(k, v)| (k.as_slice(), v.as_slice())));
        let values = self
            .runner
            .migrate(name.to_string(), from_version, batch)
            .map_err(Error::Fatal)?;
        let migrated: Vec<Option<Vec<u8>>> = flat::byte_list_items(&values)
            .map(|v| v.map(<[u8]>::to_vec))
            .collect();
        with_host(|h| {
            let store = h.stores.entry(name.to_string()).or_default();
            for ((key, _), value) in entries.into_iter().zip(migrated) {
                match value {
                    Some(v) => store.insert(key, v),
                    None => store.remove(&key),
                };
            }
        });
        Ok(())
    }
}

fn decode(out: &PackedOutput) -> Vec<Output> {
    packed::outputs(out)
        .map(|(port, event)| Output {
            port,
            event: event.into_owned(),
        })
        .collect()
}

/// A timer's outputs (timers return the record form).
fn flat_outputs(out: &crate::bindings::eddy::operator::types::OutputBatch) -> Vec<Output> {
    out.outputs
        .iter()
        .map(|o| Output {
            port: flat::get(&out.data, o.port).map(|p| String::from_utf8_lossy(p).into_owned()),
            event: flat::decode(&out.data, &out.headers, &o.event).into_owned(),
        })
        .collect()
}

fn wit_error(e: crate::bindings::eddy::operator::types::Error) -> Error {
    use crate::bindings::eddy::operator::types::Error as W;
    match e {
        W::BadInput(m) => Error::BadInput(m),
        W::Fatal(m) => Error::Fatal(m),
    }
}
