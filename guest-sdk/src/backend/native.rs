//! An in-memory host with the same semantics as Eddy's, for native unit tests.

use crate::bindings::eddy::operator::state::ScanPage as WitScanPage;
use crate::bindings::eddy::operator::types::{ByteList, PackedWrites};
use crate::flat;
use crate::packed::Writes;
use crate::{Error, LogLevel, TaskInfo};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

pub(crate) type ScanPage = WitScanPage;

/// Everything the in-memory host holds for the current thread.
pub(crate) struct NativeHost {
    pub(crate) stores: BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>,
    pub(crate) timers: BTreeSet<(i64, Vec<u8>)>,
    pub(crate) watermark: i64,
    pub(crate) info: TaskInfo,
    pub(crate) logs: Vec<(LogLevel, String)>,
    /// The input of the batch being handled, as the harness sets it.
    pub(crate) input: Option<String>,
}

impl Default for NativeHost {
    fn default() -> Self {
        NativeHost {
            stores: BTreeMap::new(),
            timers: BTreeSet::new(),
            watermark: i64::MIN,
            info: TaskInfo {
                pipeline: "test".into(),
                operator: "test".into(),
                version: 1,
                partition: 0,
                partition_count: 1,
            },
            logs: Vec::new(),
            input: Some(crate::SOURCE_INPUT.to_string()),
        }
    }
}

thread_local! {
    static HOST: RefCell<NativeHost> = RefCell::new(NativeHost::default());
}

/// Runs `f` with the in-memory host of this thread.
pub(crate) fn with_host<R>(f: impl FnOnce(&mut NativeHost) -> R) -> R {
    HOST.with(|h| f(&mut h.borrow_mut()))
}

/// An open store: its name in the in-memory host.
pub(crate) struct StoreHandle(String);

fn with_store<R>(name: &str, f: impl FnOnce(&mut BTreeMap<Vec<u8>, Vec<u8>>) -> R) -> R {
    with_host(|h| f(h.stores.entry(name.to_string()).or_default()))
}

fn counter(key: &[u8], value: Option<&Vec<u8>>) -> Result<i64, Error> {
    match value {
        None => Ok(0),
        Some(v) => match <[u8; 8]>::try_from(v.as_slice()) {
            Ok(b) => Ok(i64::from_le_bytes(b)),
            Err(_) => Err(Error::BadInput(format!(
                "value under key {:?} is {} bytes, not an 8-byte little-endian counter",
                String::from_utf8_lossy(key),
                v.len()
            ))),
        },
    }
}

impl StoreHandle {
    pub(crate) fn open(name: &str) -> Result<Self, Error> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && !name.starts_with("__")
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !ok {
            return Err(Error::Fatal(format!(
                "store name {name:?} is invalid: use 1 to 64 characters from A-Z a-z 0-9 . _ - (not starting with __)"
            )));
        }
        Ok(StoreHandle(name.to_string()))
    }
    pub(crate) fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        with_store(&self.0, |s| s.get(key).cloned())
    }
    pub(crate) fn get_many(&self, keys: &ByteList) -> ByteList {
        let values: Vec<Option<Vec<u8>>> = flat::byte_list_items(keys)
            .map(|k| k.and_then(|k| self.get(k)))
            .collect();
        flat::byte_list(values.iter().map(|v| v.as_deref()))
    }
    pub(crate) fn write_packed(&self, writes: PackedWrites) {
        with_store(&self.0, |s| {
            for (key, value) in Writes::decode(&writes) {
                match value {
                    Some(v) => s.insert(key.to_vec(), v.to_vec()),
                    None => s.remove(key),
                };
            }
        });
    }
    pub(crate) fn delete_range(&self, start: &[u8], end: Option<&[u8]>) {
        with_store(&self.0, |s| {
            let doomed: Vec<Vec<u8>> = s
                .range::<[u8], _>((
                    Bound::Included(start),
                    end.map_or(Bound::Unbounded, Bound::Excluded),
                ))
                .map(|(k, _)| k.clone())
                .collect();
            for k in doomed {
                s.remove(&k);
            }
        });
    }
    pub(crate) fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: u32,
        continuation: Option<&[u8]>,
    ) -> ScanPage {
        let from = continuation.unwrap_or(start);
        with_store(&self.0, |s| {
            let mut range = s.range::<[u8], _>((
                Bound::Included(from),
                end.map_or(Bound::Unbounded, Bound::Excluded),
            ));
            let page: Vec<(Vec<u8>, Vec<u8>)> = range
                .by_ref()
                .take(limit.max(1) as usize)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let continuation = range.next().map(|(k, _)| k.clone());
            ScanPage {
                entries: flat::kv_batch(page.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))),
                continuation,
            }
        })
    }
    pub(crate) fn increment(&self, key: &[u8], delta: i64) -> Result<i64, Error> {
        with_store(&self.0, |s| {
            let next = counter(key, s.get(key))?.wrapping_add(delta);
            s.insert(key.to_vec(), next.to_le_bytes().to_vec());
            Ok(next)
        })
    }
}

pub(crate) fn watermark() -> i64 {
    with_host(|h| h.watermark)
}

pub(crate) fn set_timer(key: &[u8], at: i64) {
    with_host(|h| h.timers.insert((at, key.to_vec())));
}

pub(crate) fn delete_timer(key: &[u8], at: i64) {
    with_host(|h| h.timers.remove(&(at, key.to_vec())));
}

pub(crate) fn log(level: LogLevel, message: &str) {
    with_host(|h| h.logs.push((level, message.to_string())));
}

pub(crate) fn info() -> TaskInfo {
    with_host(|h| h.info.clone())
}

pub(crate) fn current_input() -> Option<String> {
    with_host(|h| h.input.clone())
}
