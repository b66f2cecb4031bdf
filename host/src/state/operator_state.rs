//! Everything one operator of one task reads and writes: its named stores and timers.

use super::changelog::{Change, OperatorChanges, StoreChanges, TIMERS_STORE};
use super::scan::{self, ScanPage};
use super::store::{CounterError, StoreState, check_store_name};
use super::timers::TimerState;
use super::{Db, StateError, StoreName, TIMERS, keys};
use crate::memory::{Charge, Holder};
use rustc_hash::FxHashMap;
use std::sync::Arc;

/// Which operator of which task a piece of state belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateScope {
    pub pipeline: String,
    pub operator: String,
    pub partition: u32,
}

impl std::fmt::Display for StateScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "operator {} of pipeline {}, partition {}",
            self.operator, self.pipeline, self.partition
        )
    }
}

impl StateScope {
    /// The catalog name of one of this scope's stores.
    pub fn store_name(&self, store: &str) -> StoreName {
        StoreName {
            pipeline: self.pipeline.clone(),
            operator: self.operator.clone(),
            store: store.to_string(),
        }
    }
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
    /// Each open store's index in `stores`, by name (opening stays linear in stores).
    store_ids: FxHashMap<String, StoreId>,
    timers: TimerState,
    cache_limit: usize,
    /// What the stores' caches hold, charged to the server's memory budget.
    charge: Charge,
    /// The task's watermark as of the current batch.
    pub watermark: i64,
    /// The pipeline input the current batch comes from (`None` in a timer call).
    pub input: Option<Arc<str>>,
    /// Goes up whenever writes the operator made are forgotten (a failed batch, a reset):
    /// a guest may keep what it read and wrote while it stays the same.
    epoch: u64,
}

impl OperatorState {
    /// State of `scope`; each store caches up to `cache_limit` bytes of committed values.
    pub fn new(db: Arc<Db>, scope: StateScope, cache_limit: usize) -> Result<Self, StateError> {
        let timers_id = db.store_id(&scope.store_name(TIMERS))?;
        let timers = TimerState::new(keys::task_prefix(timers_id, scope.partition));
        let charge = Charge::new(Arc::clone(db.budget()), Holder::State);
        Ok(OperatorState {
            db,
            scope,
            stores: Vec::new(),
            store_ids: FxHashMap::default(),
            timers,
            cache_limit,
            charge,
            watermark: i64::MIN,
            input: None,
            epoch: 0,
        })
    }

    /// See [`OperatorState::epoch`]'s field: changes when the operator's writes were
    /// forgotten, so a guest's copies of values may be stale.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn scope(&self) -> &StateScope {
        &self.scope
    }

    pub fn db(&self) -> &Arc<Db> {
        &self.db
    }

    /// Opens the store `name`, the same id for the same name. `Ok(Err(..))`: the name is
    /// not acceptable.
    pub fn open_store(&mut self, name: &str) -> Result<Result<StoreId, String>, StateError> {
        if let Err(e) = check_store_name(name) {
            return Ok(Err(e));
        }
        if let Some(&i) = self.store_ids.get(name) {
            return Ok(Ok(i));
        }
        let id = self.db.store_id(&self.scope.store_name(name))?;
        let prefix = keys::task_prefix(id, self.scope.partition);
        self.stores
            .push(StoreState::new(name.to_string(), prefix, self.cache_limit));
        let i = (self.stores.len() - 1) as StoreId;
        self.store_ids.insert(name.to_string(), i);
        Ok(Ok(i))
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

    /// A set (`Some`) or delete (`None`) from borrowed bytes.
    pub fn put(&mut self, id: StoreId, key: &[u8], value: Option<&[u8]>) {
        self.store(id).put(key, value)
    }

    pub fn delete_range(&mut self, id: StoreId, start: Vec<u8>, end: Option<Vec<u8>>) {
        self.store(id).delete_range(start, end)
    }

    pub fn increment(
        &mut self,
        id: StoreId,
        key: Vec<u8>,
        delta: i64,
    ) -> Result<Result<i64, CounterError>, StateError> {
        let db = Arc::clone(&self.db);
        self.store(id).increment(&db, key, delta)
    }

    /// Up to `limit` entries (and about `max_bytes` of keys and values, at least one
    /// entry) from `start` (or `continuation`) to `end`.
    pub fn scan(
        &self,
        id: StoreId,
        (start, end): (&[u8], Option<&[u8]>),
        limit: usize,
        max_bytes: usize,
        continuation: Option<&[u8]>,
    ) -> Result<ScanPage, StateError> {
        let store = &self.stores[id as usize];
        scan::scan(&self.db, store, start, end, limit, max_bytes, continuation)
    }

    /// Whether a store of this name is open already.
    pub fn has_store(&self, name: &str) -> bool {
        self.store_ids.contains_key(name)
    }

    /// How many stores are open.
    pub fn store_count(&self) -> usize {
        self.stores.len()
    }

    pub fn set_timer(&mut self, key: Vec<u8>, at: i64) -> Result<(), StateError> {
        self.timers.set(&self.db, key, at)
    }

    pub fn delete_timer(&mut self, key: Vec<u8>, at: i64) -> Result<(), StateError> {
        self.timers.delete(&self.db, key, at)
    }

    /// Bounds this operator's timers in this task (`max_pending_timers`).
    pub fn limit_timers(&mut self, limit: u64) {
        self.timers.set_limit(limit)
    }

    /// `Some(timers)` when the operator has more timers in this task than its limit, as
    /// the batch sees them.
    pub fn timers_over(&mut self) -> Result<Option<u64>, StateError> {
        self.timers.over(&self.db)
    }

    /// Deletes a timer that fires (one [`OperatorState::due_timers`] returned, in order);
    /// `false` when the batch deleted it since, so it must not fire.
    pub fn fired_timer(&mut self, key: Vec<u8>, at: i64) -> bool {
        self.timers.fired(key, at)
    }

    /// Counts this operator's timers in this task unless they are counted already (for
    /// `max_pending_timers`), so the count never runs inside a call.
    pub fn count_timers(&mut self) -> Result<(), StateError> {
        self.timers.counted(&self.db)
    }

    /// Up to `limit` timers due at `watermark`, earliest first.
    pub fn due_timers(
        &mut self,
        watermark: i64,
        limit: usize,
    ) -> Result<Vec<(i64, Vec<u8>)>, StateError> {
        self.timers.due(&self.db, watermark, limit)
    }

    /// Committed timers of this operator in this task.
    pub fn timer_count(&self) -> Result<u64, StateError> {
        self.timers.count(&self.db)
    }

    /// Whether anything awaits a commit (from batches that succeeded).
    pub fn has_pending(&self) -> bool {
        self.timers.has_pending() || self.stores.iter().any(StoreState::has_pending)
    }

    /// Bytes of state written since the last commit.
    pub fn dirty_bytes(&self) -> usize {
        self.stores.iter().map(StoreState::dirty_bytes).sum()
    }

    /// The current batch succeeded: its writes wait for the next commit.
    pub fn end_batch(&mut self) {
        self.timers.end_batch();
        for store in &mut self.stores {
            store.end_batch();
        }
        self.account();
    }

    /// The current batch failed: forget its writes (earlier batches' writes stay).
    pub fn discard_batch(&mut self) {
        self.epoch += 1;
        self.each(StoreState::discard_batch, TimerState::discard_batch);
        self.account();
    }

    /// Charges what the caches hold now to the memory budget.
    fn account(&mut self) {
        let bytes: usize = self.stores.iter().map(StoreState::cache_bytes).sum();
        self.charge.set(bytes as u64);
    }

    /// Takes the same step in every store and in the timers.
    fn each(&mut self, store: fn(&mut StoreState), timers: fn(&mut TimerState)) {
        self.stores.iter_mut().for_each(store);
        timers(&mut self.timers);
    }

    /// Adds everything written since the last commit to `commit`; with `changes`, also
    /// lists them for the changelogs.
    pub fn stage(&mut self, commit: &mut super::Commit, mut changes: Option<&mut OperatorChanges>) {
        let batch = commit.batch();
        if let Some(out) = changes.as_deref_mut() {
            out.operator = self.scope.operator.clone();
        }
        for store in &mut self.stores {
            let mut c = changes.as_ref().map(|_| Vec::new());
            store.stage(&self.db, batch, c.as_mut());
            collect(&mut changes, &store.name, c);
        }
        let mut c = changes.as_ref().map(|_| Vec::new());
        self.timers.stage(&self.db, batch, c.as_mut());
        collect(&mut changes, TIMERS_STORE, c);
    }

    /// Names of the stores opened so far.
    pub fn store_names(&self) -> impl Iterator<Item = &str> {
        self.stores.iter().map(|s| s.name.as_str())
    }

    /// The commit holding [`OperatorState::stage`]'s writes succeeded.
    /// When the server's memory budget is short, the clean cache goes.
    pub fn committed(&mut self) {
        let shed = self.charge.budget().short();
        for store in &mut self.stores {
            store.committed(shed);
        }
        self.timers.committed();
        self.account();
    }

    /// Forgets everything not committed and every cached value: the state underneath
    /// was replaced (a restore), or the task goes back to its last commit.
    pub fn reset(&mut self) {
        self.epoch += 1;
        self.each(StoreState::reset, TimerState::reset);
        self.account();
    }
}

/// Adds one store's staged changes, if there are any, to the operator's.
fn collect(out: &mut Option<&mut OperatorChanges>, store: &str, changes: Option<Vec<Change>>) {
    if let (Some(out), Some(changes)) = (out.as_deref_mut(), changes)
        && !changes.is_empty()
    {
        out.stores.push(StoreChanges {
            store: store.to_string(),
            changes,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::DbOptions;

    #[test]
    fn a_scope_reads_as_words_in_messages() {
        let scope = StateScope {
            pipeline: "fraud".into(),
            operator: "score".into(),
            partition: 3,
        };
        assert_eq!(
            scope.to_string(),
            "operator score of pipeline fraud, partition 3"
        );
    }

    fn state(dir: &tempfile::TempDir, cache_limit: usize) -> OperatorState {
        let db = Arc::new(Db::open(dir.path(), &DbOptions::default()).unwrap());
        OperatorState::new(
            db,
            StateScope {
                pipeline: "p".into(),
                operator: "op".into(),
                partition: 0,
            },
            cache_limit,
        )
        .unwrap()
    }

    fn commit(s: &mut OperatorState) {
        s.end_batch();
        let mut commit = crate::state::Commit::new(Arc::clone(s.db()));
        s.stage(&mut commit, None);
        commit.write().unwrap();
        s.committed();
    }

    /// Every key of a store, as a scan sees it.
    fn all_keys(s: &mut OperatorState, id: StoreId) -> Vec<Vec<u8>> {
        let page = s.scan(id, (b"", None), 100, usize::MAX, None).unwrap();
        page.entries.into_iter().map(|e| e.0).collect()
    }

    fn keys_of(page: &ScanPage) -> Vec<&[u8]> {
        page.entries.iter().map(|(k, _)| k.as_slice()).collect()
    }

    #[test]
    fn overlay_is_visible_then_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = state(&dir, 1 << 20);
        let id = s.open_store("counts").unwrap().unwrap();
        s.set(id, b"a".to_vec(), b"1".to_vec());
        assert_eq!(s.get(id, b"a").unwrap(), Some(b"1".to_vec()));
        s.discard_batch();
        assert_eq!(s.get(id, b"a").unwrap(), None);
        s.set(id, b"a".to_vec(), b"2".to_vec());
        commit(&mut s);
        // A fresh state (no cache) reads the committed value from RocksDB.
        let mut fresh = OperatorState::new(Arc::clone(s.db()), s.scope().clone(), 1 << 20).unwrap();
        let id2 = fresh.open_store("counts").unwrap().unwrap();
        assert_eq!(fresh.get(id2, b"a").unwrap(), Some(b"2".to_vec()));
    }

    #[test]
    fn the_epoch_moves_only_when_writes_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = state(&dir, 1 << 20);
        let id = s.open_store("counts").unwrap().unwrap();
        let start = s.epoch();
        s.set(id, b"a".to_vec(), b"1".to_vec());
        commit(&mut s);
        assert_eq!(
            s.epoch(),
            start,
            "a batch that succeeded keeps the guest's copies good"
        );
        s.set(id, b"a".to_vec(), b"2".to_vec());
        s.discard_batch();
        assert_eq!(s.epoch(), start + 1);
        s.reset();
        assert_eq!(s.epoch(), start + 2);
    }

    #[test]
    fn increment_counts_and_rejects_non_counters() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = state(&dir, 1 << 20);
        let id = s.open_store("c").unwrap().unwrap();
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
    fn a_scan_page_is_bounded_by_bytes_but_holds_at_least_one_entry() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = state(&dir, 1 << 20);
        let id = s.open_store("s").unwrap().unwrap();
        for k in ["a", "b", "c"] {
            s.set(id, k.into(), vec![b'x'; 10]);
        }
        // Each entry is 11 bytes: a 15-byte page holds one, a 5-byte page still one.
        let mut seen = Vec::new();
        let mut from: Option<Vec<u8>> = None;
        loop {
            let page = s.scan(id, (b"", None), 100, 15, from.as_deref()).unwrap();
            assert_eq!(page.entries.len(), 1);
            seen.push(page.entries[0].0.clone());
            match page.continuation {
                Some(c) => from = Some(c),
                None => break,
            }
        }
        assert_eq!(seen, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        assert_eq!(
            s.scan(id, (b"", None), 100, 5, None).unwrap().entries.len(),
            1
        );
        assert_eq!(
            s.scan(id, (b"", None), 100, 22, None)
                .unwrap()
                .entries
                .len(),
            2
        );
    }

    #[test]
    fn scan_merges_overlay_and_continues() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = state(&dir, 1 << 20);
        let id = s.open_store("s").unwrap().unwrap();
        for k in ["a", "b", "c", "d", "e"] {
            s.set(id, k.into(), k.into());
        }
        commit(&mut s);
        s.delete(id, b"b".to_vec());
        s.set(id, b"bb".to_vec(), b"new".to_vec());
        s.set(id, b"c".to_vec(), b"C".to_vec());
        let first = s.scan(id, (b"a", Some(b"e")), 2, usize::MAX, None).unwrap();
        assert_eq!(keys_of(&first), vec![&b"a"[..], b"bb"]);
        let second = s
            .scan(
                id,
                (b"a", Some(b"e")),
                2,
                usize::MAX,
                first.continuation.as_deref(),
            )
            .unwrap();
        assert_eq!(
            second.entries,
            vec![
                (b"c".to_vec(), b"C".to_vec()),
                (b"d".to_vec(), b"d".to_vec())
            ]
        );
        assert_eq!(second.continuation, None);
        let all = s.scan(id, (b"", None), 100, usize::MAX, None).unwrap();
        assert_eq!(keys_of(&all), vec![&b"a"[..], b"bb", b"c", b"d", b"e"]);
    }

    #[test]
    fn delete_range_hides_committed_and_pending_keys() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = state(&dir, 1 << 20);
        let id = s.open_store("s").unwrap().unwrap();
        for k in ["a", "b", "c", "d"] {
            s.set(id, k.into(), b"1".to_vec());
        }
        commit(&mut s);
        s.set(id, b"bz".to_vec(), b"1".to_vec());
        s.delete_range(id, b"b".to_vec(), Some(b"d".to_vec()));
        s.set(id, b"c".to_vec(), b"again".to_vec());
        assert_eq!(s.get(id, b"b").unwrap(), None);
        assert_eq!(s.get(id, b"bz").unwrap(), None);
        assert_eq!(
            all_keys(&mut s, id),
            vec![b"a".to_vec(), b"c".to_vec(), b"d".to_vec()]
        );
        commit(&mut s);
        let mut fresh = OperatorState::new(Arc::clone(s.db()), s.scope().clone(), 1 << 20).unwrap();
        let id2 = fresh.open_store("s").unwrap().unwrap();
        assert_eq!(
            all_keys(&mut fresh, id2),
            vec![b"a".to_vec(), b"c".to_vec(), b"d".to_vec()]
        );
        assert_eq!(fresh.get(id2, b"c").unwrap(), Some(b"again".to_vec()));
        s.delete_range(id, b"".to_vec(), None);
        commit(&mut s);
        assert_eq!(
            s.scan(id, (b"", None), 100, usize::MAX, None).unwrap(),
            ScanPage::default()
        );
        assert_eq!(s.get(id, b"a").unwrap(), None);
    }

    #[test]
    fn stores_and_partitions_do_not_leak_into_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = state(&dir, 1 << 20);
        let a = s.open_store("a").unwrap().unwrap();
        let ab = s.open_store("ab").unwrap().unwrap();
        s.set(a, b"k".to_vec(), b"1".to_vec());
        s.set(ab, b"k".to_vec(), b"2".to_vec());
        commit(&mut s);
        let mut other = OperatorState::new(
            Arc::clone(s.db()),
            StateScope {
                pipeline: "p".into(),
                operator: "op".into(),
                partition: 1,
            },
            1 << 20,
        )
        .unwrap();
        let a1 = other.open_store("a").unwrap().unwrap();
        assert_eq!(other.get(a1, b"k").unwrap(), None);
        assert_eq!(
            s.scan(a, (b"", None), 10, usize::MAX, None)
                .unwrap()
                .entries,
            vec![(b"k".to_vec(), b"1".to_vec())]
        );
    }

    #[test]
    fn tiny_cache_still_reads_correctly() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = state(&dir, 256);
        let id = s.open_store("c").unwrap().unwrap();
        for round in 1..=3 {
            for i in 0..200 {
                assert_eq!(
                    s.increment(id, format!("k{i}").into_bytes(), 1).unwrap(),
                    Ok(round)
                );
            }
            commit(&mut s);
        }
    }

    #[test]
    fn batches_between_commits_stack_and_only_the_failed_one_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = state(&dir, 1 << 20);
        let id = s.open_store("s").unwrap().unwrap();
        for k in ["a", "b", "c"] {
            s.set(id, k.into(), b"0".to_vec());
        }
        commit(&mut s);
        // Batch 1 succeeds: a range delete and a write.
        s.delete_range(id, b"a".to_vec(), Some(b"c".to_vec()));
        s.set(id, b"bb".to_vec(), b"1".to_vec());
        s.end_batch();
        // Batch 2 fails.
        s.set(id, b"a".to_vec(), b"2".to_vec());
        s.delete(id, b"c".to_vec());
        s.discard_batch();
        assert_eq!(s.get(id, b"a").unwrap(), None);
        assert_eq!(s.get(id, b"c").unwrap(), Some(b"0".to_vec()));
        let keys = |s: &OperatorState| -> Vec<Vec<u8>> {
            s.scan(id, (b"", None), 10, usize::MAX, None)
                .unwrap()
                .entries
                .into_iter()
                .map(|e| e.0)
                .collect()
        };
        assert_eq!(keys(&s), vec![b"bb".to_vec(), b"c".to_vec()]);
        // Nothing reached RocksDB yet.
        let mut other = OperatorState::new(Arc::clone(s.db()), s.scope().clone(), 1 << 20).unwrap();
        let oid = other.open_store("s").unwrap().unwrap();
        assert_eq!(other.get(oid, b"a").unwrap(), Some(b"0".to_vec()));
        commit(&mut s);
        let mut fresh = OperatorState::new(Arc::clone(s.db()), s.scope().clone(), 1 << 20).unwrap();
        let fid = fresh.open_store("s").unwrap().unwrap();
        assert_eq!(keys(&fresh).len(), 2);
        assert_eq!(fresh.get(fid, b"bb").unwrap(), Some(b"1".to_vec()));
        assert_eq!(fresh.get(fid, b"a").unwrap(), None);
    }

    #[test]
    fn a_failed_blind_write_does_not_hide_the_committed_value() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = state(&dir, 1 << 20);
        let id = s.open_store("s").unwrap().unwrap();
        s.set(id, b"k".to_vec(), b"committed".to_vec());
        commit(&mut s);
        let mut t = OperatorState::new(Arc::clone(s.db()), s.scope().clone(), 1 << 20).unwrap();
        let tid = t.open_store("s").unwrap().unwrap();
        // A write without a read first, in a batch that fails.
        t.set(tid, b"k".to_vec(), b"doomed".to_vec());
        t.delete(tid, b"j".to_vec());
        t.discard_batch();
        assert_eq!(t.get(tid, b"k").unwrap(), Some(b"committed".to_vec()));
        assert_eq!(t.increment(tid, b"n".to_vec(), 1).unwrap(), Ok(1));
        t.discard_batch();
        assert_eq!(t.get(tid, b"n").unwrap(), None);
    }

    #[test]
    fn puts_from_borrowed_bytes_act_as_sets_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = state(&dir, 1 << 20);
        let id = s.open_store("s").unwrap().unwrap();
        s.set(id, b"k".to_vec(), b"committed".to_vec());
        commit(&mut s);
        // Blind, then over the batch's own write (in place), then a delete and a set again.
        s.put(id, b"k", Some(b"one"));
        s.put(id, b"k", Some(b"two!"));
        assert_eq!(s.get(id, b"k").unwrap(), Some(b"two!".to_vec()));
        s.put(id, b"j", Some(b"x"));
        s.put(id, b"j", None);
        assert_eq!(s.get(id, b"j").unwrap(), None);
        // A failed batch forgets them all.
        s.discard_batch();
        assert_eq!(s.get(id, b"k").unwrap(), Some(b"committed".to_vec()));
        s.put(id, b"k", None);
        s.put(id, b"k", Some(b"three"));
        s.put(id, b"m", Some(b""));
        commit(&mut s);
        assert_eq!(s.get(id, b"k").unwrap(), Some(b"three".to_vec()));
        assert_eq!(s.get(id, b"m").unwrap(), Some(Vec::new()));
        assert_eq!(all_keys(&mut s, id), vec![b"k".to_vec(), b"m".to_vec()]);
    }

    #[test]
    fn dirty_entries_survive_a_tiny_cache_until_committed() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = state(&dir, 64);
        let id = s.open_store("c").unwrap().unwrap();
        for i in 0..100 {
            s.set(id, format!("k{i}").into_bytes(), b"v".to_vec());
            s.end_batch();
        }
        assert!(s.has_pending() && s.dirty_bytes() > 64);
        commit(&mut s);
        let mut fresh = OperatorState::new(Arc::clone(s.db()), s.scope().clone(), 64).unwrap();
        let fid = fresh.open_store("c").unwrap().unwrap();
        assert_eq!(
            fresh
                .scan(fid, (b"", None), 1000, usize::MAX, None)
                .unwrap()
                .entries
                .len(),
            100
        );
    }

    #[test]
    fn timers_fire_in_order_and_respect_overlay() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = state(&dir, 1 << 20);
        s.set_timer(b"x".to_vec(), 20).unwrap();
        s.set_timer(b"y".to_vec(), 10).unwrap();
        s.set_timer(b"z".to_vec(), -5).unwrap();
        commit(&mut s);
        s.delete_timer(b"y".to_vec(), 10).unwrap();
        s.set_timer(b"w".to_vec(), 15).unwrap();
        assert_eq!(
            s.due_timers(15, 10).unwrap(),
            vec![(-5, b"z".to_vec()), (15, b"w".to_vec())]
        );
        assert_eq!(
            s.due_timers(i64::MAX, 1).unwrap(),
            vec![(-5, b"z".to_vec())]
        );
        s.discard_batch();
        s.set_timer(b"v".to_vec(), 1).unwrap();
        s.end_batch();
        assert_eq!(
            s.due_timers(1, 10).unwrap(),
            vec![(-5, b"z".to_vec()), (1, b"v".to_vec())]
        );
        s.delete_timer(b"v".to_vec(), 1).unwrap();
        s.discard_batch();
        // The failed batch's delete is gone; the earlier batch's timer stays.
        assert_eq!(
            s.due_timers(10, 10).unwrap(),
            vec![(-5, b"z".to_vec()), (1, b"v".to_vec()), (10, b"y".to_vec())]
        );
    }

    /// Firing starts where the last firing ended (so n timers fire in linear time), yet
    /// a timer set before that point, a commit, or a failed batch never hides a timer.
    #[test]
    fn firing_resumes_after_the_last_fired_timer_without_losing_earlier_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = state(&dir, 1 << 20);
        for i in 0..10 {
            s.set_timer(format!("t{i}").into_bytes(), i).unwrap();
        }
        commit(&mut s);
        let fire = |s: &mut OperatorState, wm: i64, n: usize| {
            let due = s.due_timers(wm, n).unwrap();
            for (at, key) in &due {
                s.fired_timer(key.clone(), *at);
            }
            due.into_iter().map(|(at, _)| at).collect::<Vec<_>>()
        };
        assert_eq!(fire(&mut s, 100, 3), [0, 1, 2]);
        assert_eq!(fire(&mut s, 100, 2), [3, 4]);
        // A timer set before the last fired one (by an operator's on_timer).
        s.set_timer(b"early".to_vec(), 1).unwrap();
        assert_eq!(fire(&mut s, 100, 2), [1, 5]);
        // One set, while a list fires, between two of its timers: it fires next.
        let due = s.due_timers(100, 2).unwrap();
        assert_eq!(due.iter().map(|(at, _)| *at).collect::<Vec<_>>(), [6, 7]);
        s.fired_timer(due[0].1.clone(), due[0].0);
        s.set_timer(b"u".to_vec(), 6).unwrap();
        s.fired_timer(due[1].1.clone(), due[1].0);
        assert_eq!(fire(&mut s, 100, 1), [6]);
        s.set_timer(b"t6".to_vec(), 6).unwrap();
        s.set_timer(b"t7".to_vec(), 7).unwrap();
        s.end_batch();
        commit(&mut s);
        assert_eq!(fire(&mut s, 6, 10), [6]);
        // A failed batch undoes its firings: they are due again.
        s.end_batch();
        assert_eq!(fire(&mut s, 100, 2), [7, 8]);
        s.discard_batch();
        assert_eq!(fire(&mut s, 100, 10), [7, 8, 9]);
        s.end_batch();
        commit(&mut s);
        assert_eq!(s.timer_count().unwrap(), 0);
    }
}
