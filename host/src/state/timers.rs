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
}

impl TimerState {
    pub(crate) fn new(prefix: Vec<u8>) -> Self {
        TimerState {
            prefix,
            pending: BTreeMap::new(),
            overlay: BTreeMap::new(),
        }
    }

    pub(crate) fn set(&mut self, key: Vec<u8>, at: i64) {
        self.overlay.insert((at, key), true);
    }

    pub(crate) fn delete(&mut self, key: Vec<u8>, at: i64) {
        self.overlay.insert((at, key), false);
    }

    /// Up to `limit` timers with `at <= watermark`, earliest first, as the batch sees them.
    pub(crate) fn due(
        &self,
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
        it.seek(&self.prefix);
        // Committed timers, then the uncommitted layers on top; stop reading once enough
        // are certain (each uncommitted delete can hide at most one).
        let mut due: BTreeMap<(i64, Vec<u8>), ()> = BTreeMap::new();
        let read_max = limit + self.pending.len() + self.overlay.len();
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
        for ((at, key), set) in self.pending.iter().chain(&self.overlay) {
            if *at > watermark {
                continue;
            }
            if *set {
                due.insert((*at, key.clone()), ());
            } else {
                due.remove(&(*at, key.clone()));
            }
        }
        Ok(due.into_keys().take(limit).collect())
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

    pub(crate) fn end_batch(&mut self) {
        let overlay = std::mem::take(&mut self.overlay);
        self.pending.extend(overlay);
    }

    pub(crate) fn discard_batch(&mut self) {
        self.overlay.clear();
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

    pub(crate) fn reset(&mut self) {
        self.pending.clear();
        self.overlay.clear();
    }
}
