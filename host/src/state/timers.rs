//! Durable event-time timers of one operator in one task, layered like stores: the
//! batch's changes, changes of batches since the last commit, and RocksDB.

use super::changelog::Change;
use super::{Cf, Db, StateError, keys};
use rocksdb::{ReadOptions, WriteBatch};
use std::collections::BTreeMap;

/// `true` sets a timer, `false` deletes it.
type Changes = BTreeMap<(i64, Vec<u8>), bool>;

pub(crate) struct TimerState {
    prefix: Vec<u8>,
    pending: Changes,
    overlay: Changes,
    /// The last timer fired: every timer before it is fired (deleted) too, so looking for
    /// due timers starts there rather than at the first, over the deletions of those
    /// fired before (which made firing n timers take n² steps).
    fired_to: Option<(i64, Vec<u8>)>,
    /// A timer was set before `fired_to` since the last look for due timers: the next
    /// look starts at the first timer, and firings do not move `fired_to` until then.
    rewound: bool,
    /// The last timer the last look for due timers returned.
    due_to: Option<(i64, Vec<u8>)>,
    /// How many timers there are as of the last batch's end (committed and pending),
    /// counted once when first asked for and kept since; `None` until then.
    live: Option<u64>,
    /// What the current batch's changes add to `live`, for those whose effect is known.
    batch_delta: i64,
    /// The batch's first changes of timers it had not changed before (a set is `true`):
    /// whether they add or remove one depends on the timers below, looked up only when
    /// the count must be exact (near the limit, at the batch's end). A call that sets
    /// timers past a limit and fails never pays for the lookups.
    unknown: Vec<((i64, Vec<u8>), bool)>,
    unknown_sets: u64,
}

impl TimerState {
    pub(crate) fn new(prefix: Vec<u8>) -> Self {
        TimerState {
            prefix,
            pending: BTreeMap::new(),
            overlay: BTreeMap::new(),
            fired_to: None,
            rewound: false,
            due_to: None,
            live: None,
            batch_delta: 0,
            unknown: Vec::new(),
            unknown_sets: 0,
        }
    }

    fn committed_has(&self, db: &Db, at: i64, key: &[u8]) -> Result<bool, StateError> {
        let k = keys::timer_key(&self.prefix, at, key);
        Ok(db.rocks().get_pinned_cf(db.cf(Cf::Timers), k)?.is_some())
    }

    /// Whether the timer is set, as the ended batches see it.
    fn ended_has(&self, db: &Db, at: i64, key: &[u8]) -> Result<bool, StateError> {
        match self.pending.get(&(at, key.to_vec())) {
            Some(set) => Ok(*set),
            None => self.committed_has(db, at, key),
        }
    }

    /// Counts the timers if they were never counted: a key scan, and a look at each
    /// uncommitted change.
    fn counted(&mut self, db: &Db) -> Result<u64, StateError> {
        if let Some(n) = self.live {
            return Ok(n);
        }
        let mut n = self.count(db)? as i64;
        for ((at, key), set) in &self.pending {
            n += i64::from(*set) - i64::from(self.committed_has(db, *at, key)?);
        }
        let mut delta = 0;
        for ((at, key), set) in &self.overlay {
            delta += i64::from(*set) - i64::from(self.ended_has(db, *at, key)?);
        }
        let n = n.max(0) as u64;
        self.live = Some(n);
        self.batch_delta = delta;
        Ok(n)
    }

    /// Looks up what the batch's first changes of timers did.
    fn resolve(&mut self, db: &Db) -> Result<(), StateError> {
        for ((at, key), set) in std::mem::take(&mut self.unknown) {
            self.batch_delta += i64::from(set) - i64::from(self.ended_has(db, at, &key)?);
        }
        self.unknown_sets = 0;
        Ok(())
    }

    /// The timers there are, as the batch sees them.
    pub(crate) fn live(&mut self, db: &Db) -> Result<u64, StateError> {
        let base = self.counted(db)?;
        self.resolve(db)?;
        Ok(base.saturating_add_signed(self.batch_delta))
    }

    /// `Some(timers)` when the batch sees more than `limit` timers. Exact, yet cheap while
    /// the count is well under the limit.
    pub(crate) fn over(&mut self, db: &Db, limit: u64) -> Result<Option<u64>, StateError> {
        let base = self.counted(db)?;
        let most = base
            .saturating_add_signed(self.batch_delta)
            .saturating_add(self.unknown_sets);
        if most <= limit {
            return Ok(None);
        }
        let n = self.live(db)?;
        Ok((n > limit).then_some(n))
    }

    /// Keeps the count across a change to `now` (once the timers are counted).
    fn track(&mut self, at: i64, key: &[u8], now: bool) {
        if self.live.is_none() {
            return;
        }
        match self.overlay.get(&(at, key.to_vec())) {
            Some(was) => self.batch_delta += i64::from(now) - i64::from(*was),
            None => {
                self.unknown.push(((at, key.to_vec()), now));
                self.unknown_sets += u64::from(now);
            }
        }
    }

    pub(crate) fn set(&mut self, key: Vec<u8>, at: i64) {
        self.track(at, &key, true);
        // A timer set before the last one fired, or before the last of those the last
        // look returned (they fire next and move `fired_to` past it): look from the start
        // again.
        let before = |t: &Option<(i64, Vec<u8>)>| {
            t.as_ref()
                .is_some_and(|(a, k)| (at, key.as_slice()) <= (*a, k.as_slice()))
        };
        if before(&self.fired_to) || before(&self.due_to) {
            self.fired_to = None;
            self.rewound = true;
        }
        self.overlay.insert((at, key), true);
    }

    pub(crate) fn delete(&mut self, key: Vec<u8>, at: i64) {
        self.track(at, &key, false);
        self.overlay.insert((at, key), false);
    }

    /// Deletes a timer that fires: the earliest due one (see [`TimerState::due`]), so
    /// one that is set.
    pub(crate) fn fired(&mut self, key: Vec<u8>, at: i64) {
        if !self.rewound {
            self.fired_to = Some((at, key.clone()));
        }
        if self.live.is_some() {
            self.batch_delta -= 1;
        }
        self.overlay.insert((at, key), false);
    }

    /// Up to `limit` timers with `at <= watermark`, earliest first, as the batch sees them.
    pub(crate) fn due(
        &mut self,
        db: &Db,
        watermark: i64,
        limit: usize,
    ) -> Result<Vec<(i64, Vec<u8>)>, StateError> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(match watermark.checked_add(1) {
            Some(next) => [self.prefix.as_slice(), &keys::ordered_i64(next)].concat(),
            None => keys::prefix_end(&self.prefix).expect("timer prefixes end with a partition"),
        });
        let mut it = db.rocks().raw_iterator_cf_opt(db.cf(Cf::Timers), ro);
        self.rewound = false;
        let from = self.fired_to.clone().unwrap_or((i64::MIN, Vec::new()));
        it.seek(keys::timer_key(&self.prefix, from.0, &from.1));
        let is_due = move |e: &(&(i64, Vec<u8>), &bool)| e.0.0 <= watermark;
        let layered = || {
            let pending = self.pending.range(&from..).take_while(is_due);
            pending.chain(self.overlay.range(&from..).take_while(is_due))
        };
        // Committed timers, then the uncommitted layers on top; stop reading once enough
        // are certain (each uncommitted delete can hide at most one).
        let mut due: BTreeMap<(i64, Vec<u8>), ()> = BTreeMap::new();
        let read_max = limit + layered().filter(|(_, set)| !**set).count();
        while let Some(k) = it.key() {
            let rest = &k[self.prefix.len()..];
            let at: [u8; 8] = rest
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| StateError::Corrupt {
                    what: "timer key",
                    detail: format!("{} bytes after the prefix", rest.len()),
                })?;
            due.insert((keys::from_ordered_i64(at), rest[8..].to_vec()), ());
            if due.len() > read_max {
                break;
            }
            it.next();
        }
        it.status()?;
        for ((at, key), set) in layered() {
            if *set {
                due.insert((*at, key.clone()), ());
            } else {
                due.remove(&(*at, key.clone()));
            }
        }
        let due: Vec<(i64, Vec<u8>)> = due.into_keys().take(limit).collect();
        self.due_to = due.last().cloned();
        Ok(due)
    }

    /// Committed timers (a key scan: for status, not for every batch).
    pub(crate) fn count(&self, db: &Db) -> Result<u64, StateError> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(
            keys::prefix_end(&self.prefix).expect("timer prefixes end with a partition"),
        );
        let mut it = db.rocks().raw_iterator_cf_opt(db.cf(Cf::Timers), ro);
        it.seek(&self.prefix);
        let mut n = 0;
        while it.valid() {
            n += 1;
            it.next();
        }
        it.status()?;
        Ok(n)
    }

    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The batch succeeded: its changes join the ended ones (and the count, once the
    /// batch's first changes are looked up).
    pub(crate) fn end_batch(&mut self, db: &Db) -> Result<(), StateError> {
        if self.live.is_some() {
            self.resolve(db)?;
        }
        let overlay = std::mem::take(&mut self.overlay);
        self.pending.extend(overlay);
        if let Some(n) = &mut self.live {
            *n = n.saturating_add_signed(self.batch_delta);
        }
        self.batch_delta = 0;
        Ok(())
    }

    pub(crate) fn discard_batch(&mut self) {
        self.overlay.clear();
        self.forget_batch_count();
        // The batch's firings are undone.
        self.fired_to = None;
        self.rewound = true;
    }

    pub(crate) fn stage(
        &self,
        db: &Db,
        batch: &mut WriteBatch,
        mut changes: Option<&mut Vec<Change>>,
    ) {
        let cf = db.cf(Cf::Timers);
        for ((at, key), set) in &self.pending {
            let k = keys::timer_key(&self.prefix, *at, key);
            if let Some(c) = changes.as_deref_mut() {
                let key = k[self.prefix.len()..].to_vec();
                c.push(if *set {
                    Change::Put {
                        key,
                        value: Vec::new(),
                    }
                } else {
                    Change::Delete { key }
                });
            }
            if *set {
                batch.put_cf(cf, k, []);
            } else {
                batch.delete_cf(cf, k);
            }
        }
    }

    pub(crate) fn committed(&mut self) {
        self.pending.clear();
    }

    fn forget_batch_count(&mut self) {
        self.batch_delta = 0;
        self.unknown.clear();
        self.unknown_sets = 0;
    }

    pub(crate) fn reset(&mut self) {
        self.pending.clear();
        self.overlay.clear();
        self.live = None;
        self.forget_batch_count();
        self.fired_to = None;
        self.rewound = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::DbOptions;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[derive(Debug, Clone)]
    enum Op {
        Set(u8, i64),
        Delete(u8, i64),
        Fire,
        EndBatch,
        Discard,
        Commit,
        Reset,
        Reopen,
        Ask,
        Over(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..6, 0i64..4).prop_map(|(k, at)| Op::Set(k, at)),
            2 => (0u8..6, 0i64..4).prop_map(|(k, at)| Op::Delete(k, at)),
            2 => Just(Op::Fire),
            2 => Just(Op::EndBatch),
            1 => Just(Op::Discard),
            2 => Just(Op::Commit),
            1 => Just(Op::Reset),
            1 => Just(Op::Reopen),
            2 => Just(Op::Ask),
            2 => (0u64..8).prop_map(Op::Over),
        ]
    }

    type Model = BTreeSet<(i64, Vec<u8>)>;

    proptest! {
        /// The kept count of timers matches the timers the batch sees, whenever it is
        /// first asked for (mid-batch, after ended batches, after a restart) and through
        /// sets of timers that exist, deletes of ones that do not, firings, failed
        /// batches and commits.
        #[test]
        fn the_kept_count_is_the_number_of_timers_the_batch_sees(
            ops in proptest::collection::vec(op(), 1..80)
        ) {
            let dir = tempfile::tempdir().unwrap();
            let db = Db::open(dir.path(), &DbOptions::default()).unwrap();
            let prefix = keys::task_prefix(7, 0);
            let mut t = TimerState::new(prefix.clone());
            let (mut committed, mut ended, mut batch) = (Model::new(), Model::new(), Model::new());
            for op in ops {
                match op {
                    Op::Set(k, at) => {
                        t.set(vec![k], at);
                        batch.insert((at, vec![k]));
                    }
                    Op::Delete(k, at) => {
                        t.delete(vec![k], at);
                        batch.remove(&(at, vec![k]));
                    }
                    Op::Fire => {
                        let due = t.due(&db, i64::MAX, 1).unwrap();
                        prop_assert_eq!(due.first(), batch.first());
                        if let Some((at, key)) = due.into_iter().next() {
                            t.fired(key.clone(), at);
                            batch.remove(&(at, key));
                        }
                    }
                    Op::EndBatch => {
                        t.end_batch(&db).unwrap();
                        ended = batch.clone();
                    }
                    Op::Discard => {
                        t.discard_batch();
                        batch = ended.clone();
                    }
                    Op::Commit => {
                        t.end_batch(&db).unwrap();
                        let mut wb = WriteBatch::default();
                        t.stage(&db, &mut wb, None);
                        db.rocks().write(wb).unwrap();
                        t.committed();
                        committed = batch.clone();
                        ended = batch.clone();
                    }
                    Op::Reset | Op::Reopen => {
                        if matches!(op, Op::Reset) {
                            t.reset();
                        } else {
                            t = TimerState::new(prefix.clone());
                        }
                        ended = committed.clone();
                        batch = committed.clone();
                    }
                    Op::Ask => prop_assert_eq!(t.live(&db).unwrap(), batch.len() as u64),
                    Op::Over(limit) => {
                        let n = batch.len() as u64;
                        prop_assert_eq!(t.over(&db, limit).unwrap(), (n > limit).then_some(n));
                    }
                }
            }
            prop_assert_eq!(t.live(&db).unwrap(), batch.len() as u64);
        }
    }
}
