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
        }
    }

    pub(crate) fn set(&mut self, key: Vec<u8>, at: i64) {
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
        self.overlay.insert((at, key), false);
    }

    /// Deletes a timer that fires: the earliest due one (see [`TimerState::due`]).
    pub(crate) fn fired(&mut self, key: Vec<u8>, at: i64) {
        if !self.rewound {
            self.fired_to = Some((at, key.clone()));
        }
        self.delete(key, at);
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

    pub(crate) fn end_batch(&mut self) {
        let overlay = std::mem::take(&mut self.overlay);
        self.pending.extend(overlay);
    }

    pub(crate) fn discard_batch(&mut self) {
        self.overlay.clear();
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

    pub(crate) fn reset(&mut self) {
        self.pending.clear();
        self.overlay.clear();
        self.fired_to = None;
        self.rewound = true;
    }
}
