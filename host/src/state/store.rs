//! One named store of one task, in three layers (as Kafka Streams' record cache):
//!
//! - the **batch layer**: writes of the batch being processed, visible at once, dropped
//!   if the batch fails;
//! - the **cache**: committed values plus *dirty* ones, written by batches that succeeded
//!   since the last commit; dirty entries are never evicted;
//! - **RocksDB**, which the next commit brings up to date in one atomic write.
//!
//! Committing every few batches rather than every batch writes a hot key once per commit,
//! not once per batch; exactly-once holds because the source position moves only with
//! the same commit.

use super::changelog::Change;
use super::{Cf, Db, StateError, keys};
use rocksdb::WriteBatch;
use rustc_hash::FxHashMap;

/// Longest store name (it becomes part of the changelog topic's name).
pub const STORE_NAME_MAX: usize = 64;

/// Store names are 1 to 64 characters from `A-Z a-z 0-9 . _ -`, not starting with `__`
/// (reserved), because each store has a changelog topic named after it.
pub fn check_store_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= STORE_NAME_MAX
        && !name.starts_with("__")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "store name {name:?} is invalid: use 1 to {STORE_NAME_MAX} characters from A-Z a-z 0-9 . _ - (not starting with __)"
        ))
    }
}

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
        Some(v) => <[u8; 8]>::try_from(v)
            .map(i64::from_le_bytes)
            .map_err(|_| CounterError {
                key: String::from_utf8_lossy(key).into_owned(),
                len: v.len(),
            }),
    }
}

/// A cached value; `None` caches "absent".
struct Entry {
    /// Committed, or dirty (written by a batch that succeeded since the last commit).
    value: Option<Vec<u8>>,
    dirty: bool,
    /// The current batch's write, over `value`; `Some(None)` is a delete.
    batch: Option<Option<Vec<u8>>>,
}

type Range = (Vec<u8>, Option<Vec<u8>>);

pub(crate) fn in_range(key: &[u8], start: &[u8], end: Option<&[u8]>) -> bool {
    key >= start && end.is_none_or(|e| key < e)
}

fn in_any(ranges: &[Range], key: &[u8]) -> bool {
    ranges.iter().any(|(s, e)| in_range(key, s, e.as_deref()))
}

/// The first 8 bytes of a key, zero-padded, as a big-endian integer.
fn head(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = key.len().min(8);
    b[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(b)
}

fn size_of(key: &[u8], value: &Option<Vec<u8>>) -> usize {
    key.len() + value.as_ref().map_or(0, Vec::len) + ENTRY_OVERHEAD
}

/// One store of one task. All three layers live in one hash map, so the common
/// operation (read-modify-write of a hot key) is one lookup.
pub(crate) struct StoreState {
    pub(crate) name: String,
    pub(crate) prefix: Vec<u8>,
    cache: FxHashMap<Vec<u8>, Entry>,
    /// Keys the current batch wrote (each once).
    batch_keys: Vec<Vec<u8>>,
    /// Entries the current batch created without reading RocksDB (blind writes).
    unread: Vec<Vec<u8>>,
    /// The current batch's range deletes `[start, end)`.
    batch_ranges: Vec<Range>,
    /// Keys that became dirty since the last commit (each once).
    dirty_keys: Vec<Vec<u8>>,
    /// Range deletes of batches that succeeded since the last commit.
    pending_ranges: Vec<Range>,
    cache_bytes: usize,
    dirty_bytes: usize,
    cache_limit: usize,
}

impl StoreState {
    pub(crate) fn new(name: String, prefix: Vec<u8>, cache_limit: usize) -> Self {
        StoreState {
            name,
            prefix,
            cache: FxHashMap::default(),
            batch_keys: Vec::new(),
            unread: Vec::new(),
            batch_ranges: Vec::new(),
            dirty_keys: Vec::new(),
            pending_ranges: Vec::new(),
            cache_bytes: 0,
            dirty_bytes: 0,
            cache_limit,
        }
    }

    pub(crate) fn full_key(&self, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + key.len());
        k.extend_from_slice(&self.prefix);
        k.extend_from_slice(key);
        k
    }

    /// Whether a RocksDB entry under `key` is hidden by a range delete not yet committed.
    pub(crate) fn hidden_in_db(&self, key: &[u8]) -> bool {
        in_any(&self.batch_ranges, key) || in_any(&self.pending_ranges, key)
    }

    /// The value the batch sees in a cache entry.
    fn visible<'e>(&self, key: &[u8], e: &'e Entry) -> Option<&'e [u8]> {
        match &e.batch {
            Some(v) => v.as_deref(),
            None if in_any(&self.batch_ranges, key) => None,
            None => e.value.as_deref(),
        }
    }

    /// Makes sure `key` has a cache entry (reading RocksDB unless an uncommitted range
    /// delete covers it) and returns it.
    fn load(&mut self, db: &Db, key: &[u8]) -> Result<&mut Entry, StateError> {
        if !self.cache.contains_key(key) {
            let value = if self.hidden_in_db(key) {
                None
            } else {
                db.get(Cf::State, &self.full_key(key))?
            };
            self.cache_bytes += size_of(key, &value);
            self.cache.insert(
                key.to_vec(),
                Entry {
                    value,
                    dirty: false,
                    batch: None,
                },
            );
        }
        Ok(self.cache.get_mut(key).expect("just loaded"))
    }

    pub(crate) fn get(&mut self, db: &Db, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        if let Some(e) = self.cache.get(key) {
            return Ok(self.visible(key, e).map(<[u8]>::to_vec));
        }
        self.load(db, key)?;
        let e = &self.cache[key];
        Ok(self.visible(key, e).map(<[u8]>::to_vec))
    }

    /// Records the batch's write of `key` (an entry exists).
    fn write(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        let e = self
            .cache
            .get_mut(&key)
            .expect("written keys are loaded or inserted first");
        if e.batch.replace(value).is_none() {
            self.batch_keys.push(key);
        }
    }

    fn ensure_entry(&mut self, key: &[u8]) {
        if !self.cache.contains_key(key) {
            // A blind write needs no read: the entry's base value only matters if the
            // batch fails, and then the entry is dropped (see `discard_batch`).
            self.cache.insert(
                key.to_vec(),
                Entry {
                    value: None,
                    dirty: false,
                    batch: None,
                },
            );
            self.cache_bytes += size_of(key, &None);
            self.unread.push(key.to_vec());
        }
    }

    pub(crate) fn set(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.ensure_entry(&key);
        self.write(key, Some(value));
    }

    pub(crate) fn delete(&mut self, key: Vec<u8>) {
        self.ensure_entry(&key);
        self.write(key, None);
    }

    /// `set` (or, with `None`, `delete`) from borrowed bytes: a key the batch already
    /// wrote costs one lookup and no allocation (guests that cache write each key once
    /// per batch, and this is most of what the host does for them).
    pub(crate) fn put(&mut self, key: &[u8], value: Option<&[u8]>) {
        match self.cache.get_mut(key) {
            Some(e) => match (&mut e.batch, value) {
                (Some(Some(buf)), Some(v)) => {
                    buf.clear();
                    buf.extend_from_slice(v);
                }
                (slot, v) => {
                    if slot.replace(v.map(<[u8]>::to_vec)).is_none() {
                        self.batch_keys.push(key.to_vec());
                    }
                }
            },
            None => {
                self.ensure_entry(key);
                self.write(key.to_vec(), value.map(<[u8]>::to_vec));
            }
        }
    }

    pub(crate) fn delete_range(&mut self, start: Vec<u8>, end: Option<Vec<u8>>) {
        if end.as_ref().is_some_and(|e| *e <= start) {
            return;
        }
        for k in &self.batch_keys {
            if in_range(k, &start, end.as_deref())
                && let Some(e) = self.cache.get_mut(k)
            {
                e.batch = Some(None);
            }
        }
        self.batch_ranges.push((start, end));
    }

    pub(crate) fn increment(
        &mut self,
        db: &Db,
        key: Vec<u8>,
        delta: i64,
    ) -> Result<Result<i64, CounterError>, StateError> {
        let ranges_hide = !self.batch_ranges.is_empty() && in_any(&self.batch_ranges, &key);
        let e = match self.cache.get_mut(&key) {
            Some(e) => e,
            None => self.load(db, &key)?,
        };
        let current = match &e.batch {
            Some(v) => v.as_deref(),
            None if ranges_hide => None,
            None => e.value.as_deref(),
        };
        let next = match decode_counter(&key, current) {
            Ok(n) => n.wrapping_add(delta),
            Err(err) => return Ok(Err(err)),
        };
        match &mut e.batch {
            Some(Some(v)) => {
                v.clear();
                v.extend_from_slice(&next.to_le_bytes());
            }
            slot => {
                let first_write = slot.is_none();
                *slot = Some(Some(next.to_le_bytes().to_vec()));
                if first_write {
                    self.batch_keys.push(key);
                }
            }
        }
        Ok(Ok(next))
    }

    /// Entries not yet in RocksDB within `[from, end)`, sorted: the batch's writes over
    /// the dirty ones. `None` values are deletes.
    pub(crate) fn pending_range(
        &self,
        from: &[u8],
        end: Option<&[u8]>,
    ) -> Vec<(&[u8], Option<&[u8]>)> {
        let mut merged: std::collections::BTreeMap<&[u8], Option<&[u8]>> =
            std::collections::BTreeMap::new();
        for k in self.dirty_keys.iter().chain(&self.batch_keys) {
            if !in_range(k, from, end) {
                continue;
            }
            if let Some(e) = self.cache.get(k.as_slice())
                && (e.batch.is_some() || e.dirty)
            {
                merged.insert(k, self.visible(k, e));
            }
        }
        merged.into_iter().collect()
    }

    /// Bytes of dirty entries waiting for a commit.
    pub(crate) fn dirty_bytes(&self) -> usize {
        self.dirty_bytes
    }

    pub(crate) fn has_pending(&self) -> bool {
        !self.dirty_keys.is_empty() || !self.pending_ranges.is_empty()
    }

    /// The batch succeeded: its writes become dirty entries awaiting the commit.
    pub(crate) fn end_batch(&mut self) {
        self.unread.clear();
        for (start, end) in std::mem::take(&mut self.batch_ranges) {
            // Entries the range hides and the batch did not write again are gone.
            let (mut freed, mut freed_dirty) = (0, 0);
            self.cache.retain(|k, e| {
                let drop = e.batch.is_none() && in_range(k, &start, end.as_deref());
                if drop {
                    freed += size_of(k, &e.value);
                    if e.dirty {
                        freed_dirty += size_of(k, &e.value);
                    }
                }
                !drop
            });
            self.cache_bytes -= freed;
            self.dirty_bytes -= freed_dirty;
            self.pending_ranges.push((start, end));
        }
        for k in std::mem::take(&mut self.batch_keys) {
            let e = self.cache.get_mut(&k).expect("batch keys stay cached");
            let value = e.batch.take().expect("batch keys have a batch value");
            let (old, new) = (size_of(&k, &e.value), size_of(&k, &value));
            self.cache_bytes = self.cache_bytes - old + new;
            e.value = value;
            if e.dirty {
                self.dirty_bytes = self.dirty_bytes - old + new;
            } else {
                e.dirty = true;
                self.dirty_bytes += new;
                self.dirty_keys.push(k);
            }
        }
    }

    /// The batch failed: forget its writes.
    pub(crate) fn discard_batch(&mut self) {
        for k in std::mem::take(&mut self.batch_keys) {
            if let Some(e) = self.cache.get_mut(&k) {
                e.batch = None;
            }
        }
        // Entries created for blind writes never held a real base value.
        for k in std::mem::take(&mut self.unread) {
            if let Some(e) = self.cache.remove(&k) {
                self.cache_bytes -= size_of(&k, &e.value);
            }
        }
        self.batch_ranges.clear();
    }

    /// Adds everything written since the last commit to `batch`, in key order: RocksDB's
    /// memtable inserts sorted keys much faster (it reuses the previous insert position).
    pub(crate) fn stage(
        &mut self,
        db: &Db,
        batch: &mut WriteBatch,
        mut changes: Option<&mut Vec<Change>>,
    ) {
        // Comparing the first 8 bytes as an integer settles most comparisons without a
        // memcmp call; the order is the same as bytewise.
        self.dirty_keys
            .sort_unstable_by(|a, b| head(a).cmp(&head(b)).then_with(|| a.cmp(b)));
        let cf = db.cf(Cf::State);
        for (start, end) in &self.pending_ranges {
            let to = match end {
                Some(e) => self.full_key(e),
                None => keys::prefix_end(&self.prefix)
                    .expect("store prefixes end with a partition, never all 0xff"),
            };
            batch.delete_range_cf(cf, self.full_key(start), to);
            if let Some(c) = changes.as_deref_mut() {
                c.push(Change::DeleteRange {
                    start: start.clone(),
                    end: end.clone(),
                });
            }
        }
        for k in &self.dirty_keys {
            // A key may have been dropped by a later range delete: then it is not dirty.
            if let Some(e) = self.cache.get(k).filter(|e| e.dirty) {
                match &e.value {
                    Some(v) => batch.put_cf(cf, self.full_key(k), v),
                    None => batch.delete_cf(cf, self.full_key(k)),
                }
                if let Some(c) = changes.as_deref_mut() {
                    c.push(match &e.value {
                        Some(v) => Change::Put {
                            key: k.clone(),
                            value: v.clone(),
                        },
                        None => Change::Delete { key: k.clone() },
                    });
                }
            }
        }
    }

    /// The commit holding [`StoreState::stage`]'s writes succeeded: they are clean now.
    /// With `shed` (the server's memory budget is short), the clean cache goes entirely.
    pub(crate) fn committed(&mut self, shed: bool) {
        for k in std::mem::take(&mut self.dirty_keys) {
            if let Some(e) = self.cache.get_mut(&k) {
                e.dirty = false;
            }
        }
        self.dirty_bytes = 0;
        self.pending_ranges.clear();
        if shed || self.cache_bytes > self.cache_limit {
            self.evict(if shed { 1 } else { 2 });
        }
    }

    /// What the cache holds, in bytes (approximately).
    pub(crate) fn cache_bytes(&self) -> usize {
        self.cache_bytes
    }

    /// Drops the clean cache but one entry in `keep_one_in` (about half with 2). Hash
    /// order makes the choice effectively random, which costs nothing per access, unlike
    /// LRU bookkeeping on every hit.
    fn evict(&mut self, keep_one_in: usize) {
        let mut n = 0usize;
        let mut freed = 0usize;
        self.cache.retain(|k, e| {
            n += 1;
            let keep =
                e.dirty || e.batch.is_some() || (keep_one_in > 1 && n.is_multiple_of(keep_one_in));
            if !keep {
                freed += size_of(k, &e.value);
            }
            keep
        });
        self.cache_bytes -= freed;
    }

    /// Forgets everything not in RocksDB and every cached value (the state underneath
    /// was replaced, e.g. by a restore).
    pub(crate) fn reset(&mut self) {
        self.cache.clear();
        self.batch_keys.clear();
        self.batch_ranges.clear();
        self.unread.clear();
        self.dirty_keys.clear();
        self.pending_ranges.clear();
        self.cache_bytes = 0;
        self.dirty_bytes = 0;
    }
}
