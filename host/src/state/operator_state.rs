//! Everything one operator of one task reads and writes: its named stores and timers.

use super::scan::{self, ScanPage};
use super::store::{CounterError, STORE_NAME_MAX, StoreState};
use super::timers::TimerState;
use super::{Db, StateError, keys};
use rocksdb::WriteBatch;
use std::sync::Arc;

/// Which operator of which task a piece of state belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateScope {
    pub pipeline: String,
    pub operator: String,
    pub partition: u32,
}

/// Index of an open store within an [`OperatorState`].
pub type StoreId = u32;

/// The state of one operator in one task. Writes go to a per-batch overlay that reads see
/// at once; [`OperatorState::stage`] adds them to the batch's commit, and
/// [`OperatorState::committed`] or [`OperatorState::discard`] ends the batch.
pub struct OperatorState {
    db: Arc<Db>,
    scope: StateScope,
    stores: Vec<StoreState>,
    timers: TimerState,
    cache_limit: usize,
    /// The task's watermark as of the current batch.
    pub watermark: i64,
}


impl OperatorState {
    /// State of `scope`; each store caches up to `cache_limit` bytes of committed values.
    pub fn new(db: Arc<Db>, scope: StateScope, cache_limit: usize) -> Self {
        let timers = TimerState::new(keys::timer_prefix(&scope.pipeline, &scope.operator, scope.partition));
        OperatorState { db, scope, stores: Vec::new(), timers, cache_limit, watermark: i64::MIN }
    }

    pub fn scope(&self) -> &StateScope {
        &self.scope
    }

    pub fn db(&self) -> &Arc<Db> {
        &self.db
    }

    /// Opens the store `name`, the same id for the same name.
    pub fn open_store(&mut self, name: &str) -> Result<StoreId, String> {
        if name.is_empty() || name.len() > STORE_NAME_MAX {
            return Err(format!("store name {name:?} must be 1 to {STORE_NAME_MAX} bytes long"));
        }
        if let Some(i) = self.stores.iter().position(|s| s.name == name) {
            return Ok(i as StoreId);
        }
        let prefix = keys::store_prefix(&self.scope.pipeline, &self.scope.operator, name, self.scope.partition);
        self.stores.push(StoreState::new(name.to_string(), prefix, self.cache_limit));
        Ok((self.stores.len() - 1) as StoreId)
    }

    fn store(&mut self, id: StoreId) -> &mut StoreState {
        &mut self.stores[id as usize]
    }

    pub fn get(&mut self, id: StoreId, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let db = Arc::clone(&self.db);
        self.store(id).get(&db, key)
    }

    pub fn set(&mut self, id: StoreId, key: Vec<u8>, value: Vec<u8>) {
        self.store(id).set(key, value)
    }

    pub fn delete(&mut self, id: StoreId, key: Vec<u8>) {
        self.store(id).delete(key)
    }

    pub fn delete_range(&mut self, id: StoreId, start: Vec<u8>, end: Option<Vec<u8>>) {
        self.store(id).delete_range(start, end)
    }

    pub fn increment(&mut self, id: StoreId, key: Vec<u8>, delta: i64) -> Result<Result<i64, CounterError>, StateError> {
        let db = Arc::clone(&self.db);
        self.store(id).increment(&db, key, delta)
    }

    pub fn scan(
        &self,
        id: StoreId,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
        continuation: Option<&[u8]>,
    ) -> Result<ScanPage, StateError> {
        scan::scan(&self.db, &self.stores[id as usize], start, end, limit, continuation)
    }

    pub fn set_timer(&mut self, key: Vec<u8>, at: i64) {
        self.timers.set(key, at)
    }

    pub fn delete_timer(&mut self, key: Vec<u8>, at: i64) {
        self.timers.delete(key, at)
    }

    /// Up to `limit` timers due at `watermark`, earliest first.
    pub fn due_timers(&self, watermark: i64, limit: usize) -> Result<Vec<(i64, Vec<u8>)>, StateError> {
        self.timers.due(&self.db, watermark, limit)
    }

    /// Whether the current batch wrote anything.
    pub fn is_dirty(&self) -> bool {
        self.timers.is_dirty() || self.stores.iter().any(StoreState::is_dirty)
    }

    /// Adds the current batch's writes to `batch`.
    pub fn stage(&self, batch: &mut WriteBatch) {
        for store in &self.stores {
            store.stage(&self.db, batch);
        }
        self.timers.stage(&self.db, batch);
    }

    /// The commit holding [`OperatorState::stage`]'s writes succeeded.
    pub fn committed(&mut self) {
        self.stores.iter_mut().for_each(StoreState::committed);
        self.timers.committed();
    }

    /// The batch failed: forget its writes.
    pub fn discard(&mut self) {
        self.stores.iter_mut().for_each(StoreState::discard);
        self.timers.discard();
    }

    /// Forgets cached values, after the state underneath was replaced.
    pub fn clear_cache(&mut self) {
        self.stores.iter_mut().for_each(StoreState::clear_cache);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::DbOptions;

    fn state(dir: &tempfile::TempDir, cache_limit: usize) -> OperatorState {
        let db = Arc::new(Db::open(dir.path(), &DbOptions::default()).unwrap());
        OperatorState::new(db, StateScope { pipeline: "p".into(), operator: "op".into(), partition: 0 }, cache_limit)
    }

    fn commit(s: &mut OperatorState) {
        let mut batch = WriteBatch::default();
        s.stage(&mut batch);
        s.db().write(batch).unwrap();
        s.committed();
    }

    fn keys_of(page: &ScanPage) -> Vec<&[u8]> {
        page.entries.iter().map(|(k, _)| k.as_slice()).collect()
    }

    #[test]
    fn overlay_is_visible_then_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = state(&dir, 1 << 20);
        let id = s.open_store("counts").unwrap();
        s.set(id, b"a".to_vec(), b"1".to_vec());
        assert_eq!(s.get(id, b"a").unwrap(), Some(b"1".to_vec()));
        s.discard();
        assert_eq!(s.get(id, b"a").unwrap(), None);
        s.set(id, b"a".to_vec(), b"2".to_vec());
        commit(&mut s);
        // A fresh state (no cache) reads the committed value from RocksDB.
        let mut fresh = OperatorState::new(Arc::clone(s.db()), s.scope().clone(), 1 << 20);
        let id2 = fresh.open_store("counts").unwrap();
        assert_eq!(fresh.get(id2, b"a").unwrap(), Some(b"2".to_vec()));
    }

    #[test]
    fn increment_counts_and_rejects_non_counters() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = state(&dir, 1 << 20);
        let id = s.open_store("c").unwrap();
        assert_eq!(s.increment(id, b"k".to_vec(), 2).unwrap(), Ok(2));
        assert_eq!(s.increment(id, b"k".to_vec(), 3).unwrap(), Ok(5));
        commit(&mut s);
        assert_eq!(s.increment(id, b"k".to_vec(), -1).unwrap(), Ok(4));
        assert_eq!(s.get(id, b"k").unwrap(), Some(4i64.to_le_bytes().to_vec()));
        s.set(id, b"s".to_vec(), b"abc".to_vec());
        let err = s.increment(id, b"s".to_vec(), 1).unwrap().unwrap_err();
        assert_eq!(err.len, 3);
    }

    #[test]
    fn scan_merges_overlay_and_continues() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = state(&dir, 1 << 20);
        let id = s.open_store("s").unwrap();
        for k in ["a", "b", "c", "d", "e"] {
            s.set(id, k.into(), k.into());
        }
        commit(&mut s);
        s.delete(id, b"b".to_vec());
        s.set(id, b"bb".to_vec(), b"new".to_vec());
        s.set(id, b"c".to_vec(), b"C".to_vec());
        let first = s.scan(id, b"a", Some(b"e"), 2, None).unwrap();
        assert_eq!(keys_of(&first), vec![&b"a"[..], b"bb"]);
        let second = s.scan(id, b"a", Some(b"e"), 2, first.continuation.as_deref()).unwrap();
        assert_eq!(second.entries, vec![(b"c".to_vec(), b"C".to_vec()), (b"d".to_vec(), b"d".to_vec())]);
        assert_eq!(second.continuation, None);
        let all = s.scan(id, b"", None, 100, None).unwrap();
        assert_eq!(keys_of(&all), vec![&b"a"[..], b"bb", b"c", b"d", b"e"]);
    }

    #[test]
    fn delete_range_hides_committed_and_pending_keys() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = state(&dir, 1 << 20);
        let id = s.open_store("s").unwrap();
        for k in ["a", "b", "c", "d"] {
            s.set(id, k.into(), b"1".to_vec());
        }
        commit(&mut s);
        s.set(id, b"bz".to_vec(), b"1".to_vec());
        s.delete_range(id, b"b".to_vec(), Some(b"d".to_vec()));
        s.set(id, b"c".to_vec(), b"again".to_vec());
        assert_eq!(s.get(id, b"b").unwrap(), None);
        assert_eq!(s.get(id, b"bz").unwrap(), None);
        let keys: Vec<Vec<u8>> = s.scan(id, b"", None, 100, None).unwrap().entries.into_iter().map(|e| e.0).collect();
        assert_eq!(keys, vec![b"a".to_vec(), b"c".to_vec(), b"d".to_vec()]);
        commit(&mut s);
        let mut fresh = OperatorState::new(Arc::clone(s.db()), s.scope().clone(), 1 << 20);
        let id2 = fresh.open_store("s").unwrap();
        let keys: Vec<Vec<u8>> = fresh.scan(id2, b"", None, 100, None).unwrap().entries.into_iter().map(|e| e.0).collect();
        assert_eq!(keys, vec![b"a".to_vec(), b"c".to_vec(), b"d".to_vec()]);
        assert_eq!(fresh.get(id2, b"c").unwrap(), Some(b"again".to_vec()));
        s.delete_range(id, b"".to_vec(), None);
        commit(&mut s);
        assert_eq!(s.scan(id, b"", None, 100, None).unwrap(), ScanPage::default());
        assert_eq!(s.get(id, b"a").unwrap(), None);
    }

    #[test]
    fn stores_and_partitions_do_not_leak_into_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = state(&dir, 1 << 20);
        let a = s.open_store("a").unwrap();
        let ab = s.open_store("ab").unwrap();
        s.set(a, b"k".to_vec(), b"1".to_vec());
        s.set(ab, b"k".to_vec(), b"2".to_vec());
        commit(&mut s);
        let mut other = OperatorState::new(
            Arc::clone(s.db()),
            StateScope { pipeline: "p".into(), operator: "op".into(), partition: 1 },
            1 << 20,
        );
        let a1 = other.open_store("a").unwrap();
        assert_eq!(other.get(a1, b"k").unwrap(), None);
        assert_eq!(s.scan(a, b"", None, 10, None).unwrap().entries, vec![(b"k".to_vec(), b"1".to_vec())]);
    }

    #[test]
    fn tiny_cache_still_reads_correctly() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = state(&dir, 256);
        let id = s.open_store("c").unwrap();
        for round in 1..=3 {
            for i in 0..200 {
                assert_eq!(s.increment(id, format!("k{i}").into_bytes(), 1).unwrap(), Ok(round));
            }
            commit(&mut s);
        }
    }

    #[test]
    fn timers_fire_in_order_and_respect_overlay() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = state(&dir, 1 << 20);
        s.set_timer(b"x".to_vec(), 20);
        s.set_timer(b"y".to_vec(), 10);
        s.set_timer(b"z".to_vec(), -5);
        commit(&mut s);
        s.delete_timer(b"y".to_vec(), 10);
        s.set_timer(b"w".to_vec(), 15);
        assert_eq!(s.due_timers(15, 10).unwrap(), vec![(-5, b"z".to_vec()), (15, b"w".to_vec())]);
        assert_eq!(s.due_timers(i64::MAX, 1).unwrap(), vec![(-5, b"z".to_vec())]);
        s.discard();
        assert_eq!(s.due_timers(10, 10).unwrap(), vec![(-5, b"z".to_vec()), (10, b"y".to_vec())]);
    }
}
