//! Durable event-time timers of one operator in one task, with a per-batch overlay.

use super::{Cf, Db, StateError, keys};
use rocksdb::{ReadOptions, WriteBatch};
use std::collections::BTreeMap;

pub(crate) struct TimerState {
    prefix: Vec<u8>,
    /// This batch's changes: `true` sets the timer, `false` deletes it.
    overlay: BTreeMap<(i64, Vec<u8>), bool>,
}

impl TimerState {
    pub(crate) fn new(prefix: Vec<u8>) -> Self {
        TimerState { prefix, overlay: BTreeMap::new() }
    }

    pub(crate) fn set(&mut self, key: Vec<u8>, at: i64) {
        self.overlay.insert((at, key), true);
    }

    pub(crate) fn delete(&mut self, key: Vec<u8>, at: i64) {
        self.overlay.insert((at, key), false);
    }

    /// Up to `limit` timers with `at <= watermark`, earliest first, as the batch sees them.
    pub(crate) fn due(&self, db: &Db, watermark: i64, limit: usize) -> Result<Vec<(i64, Vec<u8>)>, StateError> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(match watermark.checked_add(1) {
            Some(next) => [self.prefix.as_slice(), &keys::ordered_i64(next)].concat(),
            None => keys::prefix_end(&self.prefix).expect("timer prefixes end with a partition"),
        });
        let mut it = db.rocks().raw_iterator_cf_opt(db.cf(Cf::Timers), ro);
        it.seek(&self.prefix);
        // Committed timers, then the overlay on top; stop reading once enough are certain.
        let mut due: BTreeMap<(i64, Vec<u8>), ()> = BTreeMap::new();
        while let Some(k) = it.key() {
            let rest = &k[self.prefix.len()..];
            let at = keys::from_ordered_i64(rest[..8].try_into().map_err(|_| StateError::Corrupt {
                what: "timer key",
                detail: format!("{} bytes after the prefix", rest.len()),
            })?);
            due.insert((at, rest[8..].to_vec()), ());
            if due.len() > limit + self.overlay.len() {
                break;
            }
            it.next();
        }
        it.status()?;
        for ((at, key), set) in &self.overlay {
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

    pub(crate) fn is_dirty(&self) -> bool {
        !self.overlay.is_empty()
    }

    pub(crate) fn stage(&self, db: &Db, batch: &mut WriteBatch) {
        let cf = db.cf(Cf::Timers);
        for ((at, key), set) in &self.overlay {
            let k = keys::timer_key(&self.prefix, *at, key);
            if *set {
                batch.put_cf(cf, k, []);
            } else {
                batch.delete_cf(cf, k);
            }
        }
    }

    pub(crate) fn committed(&mut self) {
        self.overlay.clear();
    }

    pub(crate) fn discard(&mut self) {
        self.overlay.clear();
    }
}
