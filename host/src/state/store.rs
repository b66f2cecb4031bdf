//! One named store of one task: committed values cached in memory (Kafka Streams' record
//! cache), and the current batch's writes in an overlay that reads see at once.

use super::{Cf, Db, StateError, keys};
use rocksdb::WriteBatch;
use rustc_hash::FxHashMap;

/// Longest store name.
pub const STORE_NAME_MAX: usize = keys::NAME_MAX;

/// Rough per-entry overhead of the cache's hash map, for its byte budget.
const ENTRY_OVERHEAD: usize = 64;

/// `increment` found a value that is not a counter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("value under key {key:?} is {len} bytes, not an 8-byte little-endian counter")]
pub struct CounterError {
    pub key: String,
    pub len: usize,
}

pub(crate) fn decode_counter(key: &[u8], value: Option<&[u8]>) -> Result<i64, CounterError> {
    match value {
        None => Ok(0),
        Some(v) => <[u8; 8]>::try_from(v).map(i64::from_le_bytes).map_err(|_| CounterError {
            key: String::from_utf8_lossy(key).into_owned(),
            len: v.len(),
        }),
    }
}

pub(crate) struct StoreState {
    pub(crate) name: String,
    pub(crate) prefix: Vec<u8>,
    /// Committed values; `None` caches "known absent".
    cache: FxHashMap<Vec<u8>, Option<Vec<u8>>>,
    cache_bytes: usize,
    cache_limit: usize,
    /// This batch's writes; `None` is a delete.
    overlay: FxHashMap<Vec<u8>, Option<Vec<u8>>>,
    /// This batch's range deletes `[start, end)`, in call order.
    range_deletes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

fn in_range(key: &[u8], start: &[u8], end: Option<&[u8]>) -> bool {
    key >= start && end.is_none_or(|e| key < e)
}

impl StoreState {
    pub(crate) fn new(name: String, prefix: Vec<u8>, cache_limit: usize) -> Self {
        StoreState {
            name,
            prefix,
            cache: FxHashMap::default(),
            cache_bytes: 0,
            cache_limit,
            overlay: FxHashMap::default(),
            range_deletes: Vec::new(),
        }
    }

    fn full_key(&self, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + key.len());
        k.extend_from_slice(&self.prefix);
        k.extend_from_slice(key);
        k
    }

    pub(crate) fn range_deleted(&self, key: &[u8]) -> bool {
        self.range_deletes.iter().any(|(s, e)| in_range(key, s, e.as_deref()))
    }

    /// Runs `f` on the committed value of `key` (cache, then RocksDB), ignoring the overlay.
    fn with_committed<R>(&mut self, db: &Db, key: &[u8], f: impl FnOnce(Option<&[u8]>) -> R) -> Result<R, StateError> {
        if self.range_deleted(key) {
            return Ok(f(None));
        }
        if let Some(v) = self.cache.get(key) {
            return Ok(f(v.as_deref()));
        }
        let loaded = db.get(Cf::State, &self.full_key(key))?;
        let r = f(loaded.as_deref());
        self.cache_insert(key.to_vec(), loaded);
        Ok(r)
    }

    fn cache_insert(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        let key_len = key.len();
        let new_len = value.as_ref().map_or(0, Vec::len);
        match self.cache.insert(key, value) {
            Some(old) => self.cache_bytes = self.cache_bytes - old.map_or(0, |v| v.len()) + new_len,
            None => self.cache_bytes += key_len + new_len + ENTRY_OVERHEAD,
        }
        if self.cache_bytes > self.cache_limit {
            self.evict();
        }
    }

    /// Drops about half of the cache. Hash order makes the choice effectively random,
    /// which costs nothing per access, unlike LRU bookkeeping on every hit.
    fn evict(&mut self) {
        let mut n = 0usize;
        let mut freed = 0usize;
        self.cache.retain(|k, v| {
            n += 1;
            let keep = n % 2 == 0;
            if !keep {
                freed += k.len() + v.as_ref().map_or(0, Vec::len) + ENTRY_OVERHEAD;
            }
            keep
        });
        self.cache_bytes -= freed;
    }

    pub(crate) fn get(&mut self, db: &Db, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        if let Some(v) = self.overlay.get(key) {
            return Ok(v.clone());
        }
        self.with_committed(db, key, |v| v.map(<[u8]>::to_vec))
    }

    pub(crate) fn set(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.overlay.insert(key, Some(value));
    }

    pub(crate) fn delete(&mut self, key: Vec<u8>) {
        self.overlay.insert(key, None);
    }

    pub(crate) fn delete_range(&mut self, start: Vec<u8>, end: Option<Vec<u8>>) {
        if end.as_ref().is_some_and(|e| *e <= start) {
            return;
        }
        self.overlay.retain(|k, _| !in_range(k, &start, end.as_deref()));
        self.range_deletes.push((start, end));
    }

    pub(crate) fn increment(&mut self, db: &Db, key: Vec<u8>, delta: i64) -> Result<Result<i64, CounterError>, StateError> {
        if let Some(slot) = self.overlay.get_mut(&key) {
            let next = match decode_counter(&key, slot.as_deref()) {
                Ok(n) => n.wrapping_add(delta),
                Err(e) => return Ok(Err(e)),
            };
            match slot {
                Some(v) => {
                    v.clear();
                    v.extend_from_slice(&next.to_le_bytes());
                }
                None => *slot = Some(next.to_le_bytes().to_vec()),
            }
            return Ok(Ok(next));
        }
        let current = self.with_committed(db, &key, |v| decode_counter(&key, v))?;
        Ok(current.map(|n| {
            let next = n.wrapping_add(delta);
            self.overlay.insert(key, Some(next.to_le_bytes().to_vec()));
            next
        }))
    }

    /// The overlay's entries within `[from, end)`, sorted; `None` values are deletes.
    pub(crate) fn overlay_range(&self, from: &[u8], end: Option<&[u8]>) -> Vec<(&[u8], Option<&[u8]>)> {
        let mut entries: Vec<(&[u8], Option<&[u8]>)> = self
            .overlay
            .iter()
            .filter(|(k, _)| in_range(k, from, end))
            .map(|(k, v)| (k.as_slice(), v.as_deref()))
            .collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        entries
    }

    pub(crate) fn is_dirty(&self) -> bool {
        !self.overlay.is_empty() || !self.range_deletes.is_empty()
    }

    /// Adds this batch's writes to a commit.
    pub(crate) fn stage(&self, db: &Db, batch: &mut WriteBatch) {
        let cf = db.cf(Cf::State);
        for (start, end) in &self.range_deletes {
            let to = match end {
                Some(e) => self.full_key(e),
                None => keys::prefix_end(&self.prefix).expect("store prefixes end with a partition, never all 0xff"),
            };
            batch.delete_range_cf(cf, self.full_key(start), to);
        }
        for (k, v) in &self.overlay {
            match v {
                Some(v) => batch.put_cf(cf, self.full_key(k), v),
                None => batch.delete_cf(cf, self.full_key(k)),
            }
        }
    }

    /// The commit that held [`StoreState::stage`]'s writes succeeded: they are the cache now.
    pub(crate) fn committed(&mut self) {
        for (start, end) in std::mem::take(&mut self.range_deletes) {
            let mut freed = 0;
            self.cache.retain(|k, v| {
                let drop = in_range(k, &start, end.as_deref());
                if drop {
                    freed += k.len() + v.as_ref().map_or(0, Vec::len) + ENTRY_OVERHEAD;
                }
                !drop
            });
            self.cache_bytes -= freed;
        }
        for (k, v) in std::mem::take(&mut self.overlay) {
            self.cache_insert(k, v);
        }
    }

    /// The batch failed: forget its writes.
    pub(crate) fn discard(&mut self) {
        self.overlay.clear();
        self.range_deletes.clear();
    }

    /// Forgets cached committed values (after state was replaced underneath, e.g. a restore).
    pub(crate) fn clear_cache(&mut self) {
        self.cache.clear();
        self.cache_bytes = 0;
    }
}
