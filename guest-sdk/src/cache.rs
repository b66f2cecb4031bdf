//! A store's values inside the guest, so a hot key crosses to the host about once, not
//! once per record.
//!
//! A key is read from the host once; reads, writes and increments then work on the
//! cached value, and the writes go to the host in one `write-packed` call when the batch
//! ends (and before anything the host must answer from current state: a scan, a
//! `get-many`, a range delete). The cache outlives a batch while the host's state epoch
//! stays the same, that is while the host has forgotten none of this instance's writes;
//! the context drops it otherwise, and on any failed call. Exactly-once is the host's
//! business as before: it still commits every write with its batch, or none.

use crate::Error;
use crate::backend::StoreHandle;
use crate::packed::Writes;
use std::collections::hash_map::{Entry, HashMap};
use std::rc::Rc;

/// Most entries a store's cache holds; past it, or past [`MAX_BYTES`], the cache writes
/// out and keeps only its hot entries (a batch goes on after that: its writes are with
/// the host).
const MAX_ENTRIES: usize = 65_536;
/// Most bytes of keys and values (with [`SLOT_BYTES`] per entry) a store's cache holds.
const MAX_BYTES: usize = 8 << 20;
/// What an entry costs beyond its key and value, about: the table's buckets (at most half
/// full after it grows), the key's shared allocation, and its place in the dirty list.
const SLOT_BYTES: usize = 160;

/// A cached value: what the host holds under the key, or will once written out.
enum Value {
    Absent,
    /// An 8-byte value, kept as the number so increments need no decoding.
    Counter(i64),
    Bytes(Vec<u8>),
}

impl Value {
    fn from_host(value: Option<Vec<u8>>) -> Self {
        match value {
            None => Value::Absent,
            Some(v) => match <[u8; 8]>::try_from(v.as_slice()) {
                Ok(b) => Value::Counter(i64::from_le_bytes(b)),
                Err(_) => Value::Bytes(v),
            },
        }
    }

    fn len(&self) -> usize {
        match self {
            Value::Absent => 0,
            Value::Counter(_) => 8,
            Value::Bytes(v) => v.len(),
        }
    }

    fn to_vec(&self) -> Option<Vec<u8>> {
        match self {
            Value::Absent => None,
            Value::Counter(n) => Some(n.to_le_bytes().to_vec()),
            Value::Bytes(v) => Some(v.clone()),
        }
    }
}

struct Slot {
    /// The map's own key, so the dirty list can share it without a second lookup.
    key: Rc<[u8]>,
    value: Value,
    dirty: bool,
    /// Read or written again since it was cached or last survived an eviction.
    used: bool,
}

/// One store's cache. Every method that may miss takes the store's host handle.
#[derive(Default)]
pub(crate) struct Cache {
    /// foldhash: SipHash cost more than the rest of a cached increment. Its seed varies
    /// per instance, but it is not built to resist keys crafted to collide; such keys
    /// would slow only this instance, whose calls stay under their deadline.
    entries: HashMap<Rc<[u8]>, Slot, foldhash::fast::RandomState>,
    /// Keys written since the last write-out, each once (shared with `entries`).
    dirty: Vec<Rc<[u8]>>,
    bytes: usize,
}

impl Cache {
    /// The value under `key`, from the host on a miss.
    pub(crate) fn get(&mut self, host: &StoreHandle, key: &[u8]) -> Option<Vec<u8>> {
        if let Some(slot) = self.entries.get_mut(key) {
            slot.used = true;
            return slot.value.to_vec();
        }
        let value = host.get(key);
        let copy = value.clone();
        self.insert_clean(host, key, Value::from_host(value));
        copy
    }

    /// Writes `value` (`None`: a delete) under `key`; it reaches the host at the next
    /// write-out.
    pub(crate) fn put(&mut self, host: &StoreHandle, key: &[u8], value: Option<&[u8]>) {
        let value = match value {
            None => Value::Absent,
            Some(v) => Value::from_host(Some(v.to_vec())),
        };
        self.write(host, key, value);
    }

    /// Adds `delta` to the counter under `key` (absent counts as 0), as the host would.
    pub(crate) fn increment(
        &mut self,
        host: &StoreHandle,
        key: &[u8],
        delta: i64,
    ) -> Result<i64, Error> {
        // The hot path: one lookup, no allocation.
        if let Some(slot) = self.entries.get_mut(key) {
            slot.used = true;
            if let Value::Counter(n) = &mut slot.value {
                *n = n.wrapping_add(delta);
                let next = *n;
                if !slot.dirty {
                    slot.dirty = true;
                    self.dirty.push(Rc::clone(&slot.key));
                }
                return Ok(next);
            }
        }
        let current = match self.entries.get(key) {
            Some(slot) => match &slot.value {
                Value::Absent => 0,
                Value::Counter(n) => *n,
                Value::Bytes(_) => return self.host_increment(host, key, delta),
            },
            None => match Value::from_host(host.get(key)) {
                Value::Absent => 0,
                Value::Counter(n) => n,
                bytes @ Value::Bytes(_) => {
                    self.insert_clean(host, key, bytes);
                    return self.host_increment(host, key, delta);
                }
            },
        };
        let next = current.wrapping_add(delta);
        self.write(host, key, Value::Counter(next));
        Ok(next)
    }

    /// A value that is not a counter: the host says so, in its own words.
    fn host_increment(&mut self, host: &StoreHandle, key: &[u8], delta: i64) -> Result<i64, Error> {
        self.write_out(host);
        if let Some(slot) = self.entries.remove(key) {
            self.bytes -= SLOT_BYTES + key.len() + slot.value.len();
        }
        host.increment(key, delta)
    }

    /// Sends every write since the last write-out to the host, in one call.
    pub(crate) fn write_out(&mut self, host: &StoreHandle) {
        if self.dirty.is_empty() {
            return;
        }
        let mut writes = Writes::default();
        for key in self.dirty.drain(..) {
            let slot = self.entries.get_mut(&*key).expect("a dirty key is cached");
            slot.dirty = false;
            match &slot.value {
                Value::Absent => writes.push(&key, None),
                Value::Counter(n) => writes.push(&key, Some(&n.to_le_bytes())),
                Value::Bytes(v) => writes.push(&key, Some(v)),
            }
        }
        host.write_packed(writes.into_wit());
    }

    /// Forgets everything, written out or not. A large table is dropped, not kept: timer
    /// calls start from an empty cache, and clearing a big empty table for each of them
    /// would cost more than growing it again.
    pub(crate) fn clear(&mut self) {
        if self.entries.capacity() > 1024 {
            self.entries = HashMap::default();
        } else {
            self.entries.clear();
        }
        self.dirty.clear();
        self.bytes = 0;
    }

    fn write(&mut self, host: &StoreHandle, key: &[u8], value: Value) {
        match self.entries.get_mut(key) {
            Some(slot) => {
                slot.used = true;
                self.bytes = self.bytes - slot.value.len() + value.len();
                slot.value = value;
                if !slot.dirty {
                    slot.dirty = true;
                    self.dirty.push(Rc::clone(&slot.key));
                }
            }
            None => {
                self.make_room(host, key.len() + value.len());
                self.bytes += SLOT_BYTES + key.len() + value.len();
                let key: Rc<[u8]> = key.into();
                self.dirty.push(Rc::clone(&key));
                let slot = Slot {
                    key: Rc::clone(&key),
                    value,
                    dirty: true,
                    used: false,
                };
                self.entries.insert(key, slot);
            }
        }
        if self.bytes > MAX_BYTES {
            // One value grew past the bound: keep the cache small by starting over.
            self.write_out(host);
            self.clear();
        }
    }

    fn insert_clean(&mut self, host: &StoreHandle, key: &[u8], value: Value) {
        let size = key.len() + value.len();
        self.make_room(host, size);
        let key: Rc<[u8]> = key.into();
        if let Entry::Vacant(e) = self.entries.entry(Rc::clone(&key)) {
            self.bytes += SLOT_BYTES + size;
            e.insert(Slot {
                key,
                value,
                dirty: false,
                used: false,
            });
        }
    }

    /// Makes room when one more entry of `size` bytes would not fit: writes out, then
    /// keeps only the entries used again since they came (second chance, so hot keys
    /// stay), or nothing when those alone fill most of the cache.
    fn make_room(&mut self, host: &StoreHandle, size: usize) {
        if self.entries.len() < MAX_ENTRIES && self.bytes + SLOT_BYTES + size <= MAX_BYTES {
            return;
        }
        self.write_out(host);
        let mut freed = 0;
        self.entries.retain(|k, slot| {
            let keep = slot.used;
            slot.used = false;
            if !keep {
                freed += SLOT_BYTES + k.len() + slot.value.len();
            }
            keep
        });
        self.bytes -= freed;
        if self.entries.len() >= MAX_ENTRIES / 2 || self.bytes + SLOT_BYTES + size > MAX_BYTES / 2 {
            self.clear();
        }
    }
}
