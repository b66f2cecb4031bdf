use crate::backend::StoreHandle;
use crate::cache::Cache;
use crate::{Error, flat};
use std::cell::RefCell;
use std::rc::Rc;

/// A durable key-value store of the operator, scoped to its source partition.
///
/// Get one with [`crate::Context::store`]. Writes are visible at once and become durable
/// when the host commits the batch, atomically with the source offset and the outputs.
/// Cloning a `Store` is cheap; every clone is the same store.
///
/// Values are cached inside the operator: a key is read from the host once and the
/// batch's writes reach it in one call when the batch ends, so a hot key costs no
/// crossing of the component boundary per record.
#[derive(Clone)]
pub struct Store {
    inner: Rc<Inner>,
}

struct Inner {
    handle: StoreHandle,
    name: Box<str>,
    cache: RefCell<Cache>,
}

/// Entries per host call while iterating a [`Scan`].
const SCAN_PAGE: u32 = 256;

impl Store {
    pub(crate) fn open(name: &str) -> Result<Self, Error> {
        Ok(Store {
            inner: Rc::new(Inner {
                handle: StoreHandle::open(name)?,
                name: name.into(),
                cache: RefCell::default(),
            }),
        })
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    fn cache(&self) -> std::cell::RefMut<'_, Cache> {
        self.inner.cache.borrow_mut()
    }

    /// Sends the cached writes to the host (so it can answer from current state).
    pub(crate) fn write_out(&self) {
        self.cache().write_out(&self.inner.handle)
    }

    /// Forgets the cached values (the host may have forgotten writes they reflect).
    pub(crate) fn forget(&self) {
        self.cache().clear()
    }

    /// The value under `key`.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Option<Vec<u8>> {
        self.cache().get(&self.inner.handle, key.as_ref())
    }

    /// The values under `keys`, in the same order.
    pub fn get_many<K: AsRef<[u8]>>(&self, keys: &[K]) -> Vec<Option<Vec<u8>>> {
        self.write_out();
        let list = flat::byte_list(keys.iter().map(|k| Some(k.as_ref())));
        let values = self.inner.handle.get_many(&list);
        flat::byte_list_items(&values)
            .map(|v| v.map(<[u8]>::to_vec))
            .collect()
    }

    /// Stores `value` under `key`.
    pub fn set(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.cache()
            .put(&self.inner.handle, key.as_ref(), Some(value.as_ref()))
    }

    /// Stores many pairs.
    pub fn set_many<K: AsRef<[u8]>, V: AsRef<[u8]>>(&self, entries: &[(K, V)]) {
        let mut cache = self.cache();
        for (k, v) in entries {
            cache.put(&self.inner.handle, k.as_ref(), Some(v.as_ref()));
        }
    }

    /// Removes `key`.
    pub fn delete(&self, key: impl AsRef<[u8]>) {
        self.cache().put(&self.inner.handle, key.as_ref(), None)
    }

    /// Removes every key in `[start, end)`; `end = None` removes to the end of the store.
    pub fn delete_range(&self, start: impl AsRef<[u8]>, end: Option<&[u8]>) {
        let mut cache = self.cache();
        cache.write_out(&self.inner.handle);
        cache.clear();
        self.inner.handle.delete_range(start.as_ref(), end)
    }

    /// Iterates the entries with keys in `[start, end)` in key order, fetching pages
    /// from the host as it goes.
    pub fn scan(&self, start: impl AsRef<[u8]>, end: Option<&[u8]>) -> Scan {
        Scan {
            store: self.clone(),
            start: start.as_ref().to_vec(),
            end: end.map(<[u8]>::to_vec),
            page: Vec::new(),
            next: None,
            done: false,
        }
    }

    /// Iterates the entries whose keys start with `prefix`.
    pub fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> Scan {
        let prefix = prefix.as_ref();
        let end = prefix_end(prefix);
        self.scan(prefix, end.as_deref())
    }

    /// Adds `delta` to the counter under `key` (absent counts as 0) and returns the new
    /// value. Counters are 8-byte little-endian integers; any other value is bad input.
    pub fn increment(&self, key: impl AsRef<[u8]>, delta: i64) -> Result<i64, Error> {
        self.cache()
            .increment(&self.inner.handle, key.as_ref(), delta)
    }

    /// [`Store::increment`] over many keys, in order; stops at the first that fails.
    pub fn increment_many<K: AsRef<[u8]>>(
        &self,
        keys: &[K],
        deltas: &[i64],
    ) -> Result<Vec<i64>, Error> {
        if keys.len() != deltas.len() {
            return Err(Error::Fatal(format!(
                "increment_many got {} keys and {} deltas",
                keys.len(),
                deltas.len()
            )));
        }
        let mut cache = self.cache();
        keys.iter()
            .zip(deltas)
            .map(|(k, d)| cache.increment(&self.inner.handle, k.as_ref(), *d))
            .collect()
    }

    /// The value under `key`, decoded from JSON.
    #[cfg(feature = "json")]
    pub fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        key: impl AsRef<[u8]>,
    ) -> Result<Option<T>, Error> {
        match self.get(key) {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error::Fatal(format!(
                    "store {}: stored value is not the expected JSON: {e}",
                    self.name()
                ))
            }),
        }
    }

    /// Stores `value` as JSON under `key`.
    #[cfg(feature = "json")]
    pub fn set_json<T: serde::Serialize>(
        &self,
        key: impl AsRef<[u8]>,
        value: &T,
    ) -> Result<(), Error> {
        let bytes = serde_json::to_vec(value).map_err(|e| {
            Error::Fatal(format!(
                "store {}: cannot encode value as JSON: {e}",
                self.name()
            ))
        })?;
        self.set(key, bytes);
        Ok(())
    }
}

/// The smallest key greater than every key starting with `prefix` (`None`: no bound).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// An iterator over a key range of a [`Store`], from [`Store::scan`].
pub struct Scan {
    store: Store,
    start: Vec<u8>,
    end: Option<Vec<u8>>,
    /// The current page, reversed so `pop` yields key order.
    page: Vec<(Vec<u8>, Vec<u8>)>,
    next: Option<Vec<u8>>,
    done: bool,
}

impl Iterator for Scan {
    type Item = (Vec<u8>, Vec<u8>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.page.is_empty() && !self.done {
            // The host answers from its state: give it the writes made since.
            self.store.write_out();
            let page = self.store.inner.handle.scan(
                &self.start,
                self.end.as_deref(),
                SCAN_PAGE,
                self.next.as_deref(),
            );
            self.page = flat::kv_entries(&page.entries)
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect();
            self.page.reverse();
            self.done = page.continuation.is_none();
            self.next = page.continuation;
        }
        self.page.pop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_carries_over_ff() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(b""), None);
    }
}
