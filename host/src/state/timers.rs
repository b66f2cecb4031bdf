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
    /// At least how many timers the ended batches leave (committed and pending): exact
    /// when counted, then raised by every set whose timer may have existed already, so
    /// that no look-up is needed while it stays under the limit. `None`: not counted.
    ended: Option<u64>,
    /// `ended` is exact.
    exact: bool,
    /// What the current batch adds to `ended`: exactly for changes of timers it had
    /// changed before, at most one per first set of a timer.
    batch_most: i64,
    /// The batch changed a timer it had not changed before without looking under it,
    /// so `batch_most` may be more than the batch adds.
    batch_inexact: bool,
    /// Most timers the operator may have (`max_pending_timers`).
    limit: u64,
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
            ended: None,
            exact: false,
            batch_most: 0,
            batch_inexact: false,
            limit: u64::MAX,
        }
    }

    /// Bounds the timers (see [`TimerState::over`]).
    pub(crate) fn set_limit(&mut self, limit: u64) {
        self.limit = limit;
    }

    /// Whether the timer is set as the ended batches see it.
    fn below(&self, db: &Db, at: i64, key: &[u8]) -> Result<bool, StateError> {
        match self.pending.get(&(at, key.to_vec())) {
            Some(set) => Ok(*set),
            None => self.committed_has(db, at, key),
        }
    }

    fn committed_has(&self, db: &Db, at: i64, key: &[u8]) -> Result<bool, StateError> {
        let k = keys::timer_key(&self.prefix, at, key);
        Ok(db.rocks().get_pinned_cf(db.cf(Cf::Timers), k)?.is_some())
    }

    /// Counts the timers exactly: a key scan, and a look-up under each uncommitted
    /// change. The task counts once before it calls the operator (so the scan does not
    /// run against a call's deadline); later counts happen only when the bound passes
    /// the limit.
    fn recount(&mut self, db: &Db) -> Result<(), StateError> {
        let mut n = self.count(db)? as i64;
        for ((at, key), set) in &self.pending {
            n += i64::from(*set) - i64::from(self.committed_has(db, *at, key)?);
        }
        let mut delta = 0;
        for ((at, key), set) in &self.overlay {
            delta += i64::from(*set) - i64::from(self.below(db, *at, key)?);
        }
        self.ended = Some(n.max(0) as u64);
        self.exact = true;
        self.batch_most = delta;
        self.batch_inexact = false;
        Ok(())
    }

    /// Counts the timers unless they are counted already.
    pub(crate) fn counted(&mut self, db: &Db) -> Result<(), StateError> {
        if self.ended.is_none() {
            self.recount(db)?;
        }
        Ok(())
    }

    /// At most how many timers the batch sees (exact when `self.exact` and not
    /// `self.batch_inexact`).
    fn most(&self) -> u64 {
        self.ended
            .unwrap_or_default()
            .saturating_add_signed(self.batch_most)
    }

    /// The timers there are, as the batch sees them.
    pub(crate) fn live(&mut self, db: &Db) -> Result<u64, StateError> {
        if self.ended.is_none() || !self.exact || self.batch_inexact {
            self.recount(db)?;
        }
        Ok(self.most())
    }

    /// `Some(timers)` when the batch sees more than the limit: exact, without look-ups
    /// while the bound stays under the limit.
    pub(crate) fn over(&mut self, db: &Db) -> Result<Option<u64>, StateError> {
        self.counted(db)?;
        if self.most() <= self.limit {
            return Ok(None);
        }
        let n = self.live(db)?;
        Ok((n > self.limit).then_some(n))
    }

    /// Within an eighth of the limit (and exact so far), each first change of a timer
    /// looks under it, so the count stays exact there: a full count happens only when
    /// the bound jumps past the limit from below that, after at least an eighth of the
    /// limit of changes that did not look.
    fn near(&self) -> bool {
        self.exact && !self.batch_inexact && self.most() >= self.limit - self.limit / 8
    }

    /// Records a change of the timer to `now` and keeps the bound.
    fn change(&mut self, db: &Db, key: Vec<u8>, at: i64, now: bool) -> Result<(), StateError> {
        let look = (self.ended.is_some() && self.near()).then(|| key.clone());
        let was = self.overlay.insert((at, key), now);
        if self.ended.is_none() {
            return Ok(());
        }
        match (was, look) {
            (Some(was), _) => self.batch_most += i64::from(now) - i64::from(was),
            (None, Some(key)) => {
                self.batch_most += i64::from(now) - i64::from(self.below(db, at, &key)?);
            }
            (None, None) => {
                self.batch_most += i64::from(now);
                self.batch_inexact = true;
            }
        }
        Ok(())
    }

    pub(crate) fn set(&mut self, db: &Db, key: Vec<u8>, at: i64) -> Result<(), StateError> {
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
        self.change(db, key, at, true)
    }

    pub(crate) fn delete(&mut self, db: &Db, key: Vec<u8>, at: i64) -> Result<(), StateError> {
        self.change(db, key, at, false)
    }

    /// Deletes a timer that fires: one [`TimerState::due`] returned, in order. `false`
    /// when the batch deleted it since (an earlier timer's `on_timer` did): it must not
    /// fire.
    pub(crate) fn fired(&mut self, key: Vec<u8>, at: i64) -> bool {
        if !self.rewound {
            self.fired_to = Some((at, key.clone()));
        }
        let was = self.overlay.insert((at, key), false);
        if was == Some(false) {
            return false;
        }
        // Set in the batch, or (due returned it) in the layers below: one less.
        if self.ended.is_some() {
            self.batch_most -= 1;
        }
        true
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

    /// The batch succeeded: its changes join the ended ones, and its bound the count.
    pub(crate) fn end_batch(&mut self) {
        let overlay = std::mem::take(&mut self.overlay);
        self.pending.extend(overlay);
        if self.ended.is_some() {
            self.ended = Some(self.most());
            self.exact &= !self.batch_inexact;
        }
        self.forget_batch_count();
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
        self.batch_most = 0;
        self.batch_inexact = false;
    }

    pub(crate) fn reset(&mut self) {
        self.pending.clear();
        self.overlay.clear();
        self.ended = None;
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
        Fire(usize),
        EndBatch,
        Discard,
        Commit,
        Reset,
        Reopen,
        Ask,
        Over,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..6, 0i64..4).prop_map(|(k, at)| Op::Set(k, at)),
            2 => (0u8..6, 0i64..4).prop_map(|(k, at)| Op::Delete(k, at)),
            2 => (1usize..4).prop_map(Op::Fire),
            2 => Just(Op::EndBatch),
            1 => Just(Op::Discard),
            2 => Just(Op::Commit),
            1 => Just(Op::Reset),
            1 => Just(Op::Reopen),
            2 => Just(Op::Ask),
            3 => Just(Op::Over),
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
            ops in proptest::collection::vec(op(), 1..80),
            limit in 0u64..16,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let db = Db::open(dir.path(), &DbOptions::default()).unwrap();
            let prefix = keys::task_prefix(7, 0);
            let mut t = TimerState::new(prefix.clone());
            t.set_limit(limit);
            let (mut committed, mut ended, mut batch) = (Model::new(), Model::new(), Model::new());
            for op in ops {
                match op {
                    Op::Set(k, at) => {
                        t.set(&db, vec![k], at).unwrap();
                        batch.insert((at, vec![k]));
                    }
                    Op::Delete(k, at) => {
                        t.delete(&db, vec![k], at).unwrap();
                        batch.remove(&(at, vec![k]));
                    }
                    Op::Fire(n) => {
                        // Fires up to `n` due timers; the first one's `on_timer` deletes
                        // the last of them (which then must not fire).
                        let due = t.due(&db, i64::MAX, n).unwrap();
                        prop_assert_eq!(&due, &batch.iter().take(n).cloned().collect::<Vec<_>>());
                        for (i, (at, key)) in due.iter().enumerate() {
                            let fires = t.fired(key.clone(), *at);
                            prop_assert_eq!(fires, i == 0 || i + 1 < due.len());
                            batch.remove(&(*at, key.clone()));
                            if i == 0 && due.len() > 1 {
                                let (at, key) = due.last().unwrap().clone();
                                t.delete(&db, key.clone(), at).unwrap();
                                batch.remove(&(at, key));
                            }
                        }
                    }
                    Op::EndBatch => {
                        t.end_batch();
                        ended = batch.clone();
                    }
                    Op::Discard => {
                        t.discard_batch();
                        batch = ended.clone();
                    }
                    Op::Commit => {
                        t.end_batch();
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
                            t.set_limit(limit);
                        }
                        ended = committed.clone();
                        batch = committed.clone();
                    }
                    Op::Ask => prop_assert_eq!(t.live(&db).unwrap(), batch.len() as u64),
                    Op::Over => {
                        let n = batch.len() as u64;
                        prop_assert_eq!(t.over(&db).unwrap(), (n > limit).then_some(n));
                    }
                }
            }
            prop_assert_eq!(t.live(&db).unwrap(), batch.len() as u64);
        }
    }
}
