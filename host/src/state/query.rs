//! Reads of committed state from outside the task that owns it (interactive queries).
//!
//! A task keeps its writes in memory until it commits them in one RocksDB write, so what
//! RocksDB holds is exactly what the tasks committed: these reads never see a batch in
//! flight, and they take no lock a task waits for.

use super::{Cf, Db, StateError, keys};
use rocksdb::ReadOptions;

/// The committed value under `key` in partition `partition` of store `id`.
pub fn committed_value(
    db: &Db,
    id: u32,
    partition: u32,
    key: &[u8],
) -> Result<Option<Vec<u8>>, StateError> {
    let mut full = keys::task_prefix(id, partition);
    full.extend_from_slice(key);
    db.get(Cf::State, &full)
}

/// Where a range of keys starts and ends (`end` excluded, `None`: to the last key).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRange {
    pub start: Vec<u8>,
    pub end: Option<Vec<u8>>,
}

impl KeyRange {
    /// Every key that starts with `prefix`.
    pub fn prefix(prefix: &[u8]) -> Self {
        KeyRange {
            start: prefix.to_vec(),
            end: keys::prefix_end(prefix),
        }
    }
}

/// Keys and values, in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Up to `limit` committed entries of partition `partition` of store `id` in `range`, in
/// key order, after `after` (a key an earlier page ended with) when given; and whether
/// more remain.
pub fn committed_entries(
    db: &Db,
    id: u32,
    partition: u32,
    range: &KeyRange,
    after: Option<&[u8]>,
    limit: usize,
) -> Result<(Entries, bool), StateError> {
    let prefix = keys::task_prefix(id, partition);
    let with_prefix = |k: &[u8]| [prefix.as_slice(), k].concat();
    let mut ro = ReadOptions::default();
    ro.set_iterate_upper_bound(match &range.end {
        Some(e) => with_prefix(e),
        None => keys::prefix_end(&prefix).expect("task prefixes are never all 0xff"),
    });
    let mut it = db.rocks().raw_iterator_cf_opt(db.cf(Cf::State), ro);
    match after {
        Some(a) if a >= range.start.as_slice() => {
            it.seek(with_prefix(a));
            if it.key() == Some(with_prefix(a).as_slice()) {
                it.next();
            }
        }
        _ => it.seek(with_prefix(&range.start)),
    }
    let mut entries = Vec::new();
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        if entries.len() == limit {
            return Ok((entries, true));
        }
        entries.push((k[prefix.len()..].to_vec(), v.to_vec()));
        it.next();
    }
    it.status()?;
    Ok((entries, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::DbOptions;

    fn db_with(entries: &[(u32, &[u8], &[u8])]) -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), &DbOptions::default()).unwrap();
        let mut wb = rocksdb::WriteBatch::default();
        for (p, k, v) in entries {
            let mut full = keys::task_prefix(7, *p);
            full.extend_from_slice(k);
            wb.put_cf(db.cf(Cf::State), full, v);
        }
        // A neighbouring store, which no read of store 7 may show.
        wb.put_cf(db.cf(Cf::State), keys::task_prefix(8, 0), b"other");
        db.write(wb).unwrap();
        (dir, db)
    }

    #[test]
    fn pages_go_through_a_partition_in_key_order() {
        let (_dir, db) = db_with(&[
            (0, b"b", b"2"),
            (0, b"a", b"1"),
            (0, b"c", b"3"),
            (1, b"a", b"x"),
        ]);
        let all = KeyRange::default();
        let (page, more) = committed_entries(&db, 7, 0, &all, None, 2).unwrap();
        assert_eq!(
            page,
            [
                (b"a".to_vec(), b"1".to_vec()),
                (b"b".to_vec(), b"2".to_vec())
            ]
        );
        assert!(more);
        let (page, more) = committed_entries(&db, 7, 0, &all, Some(b"b"), 2).unwrap();
        assert_eq!(page, [(b"c".to_vec(), b"3".to_vec())]);
        assert!(!more);
        assert_eq!(
            committed_value(&db, 7, 1, b"a").unwrap(),
            Some(b"x".to_vec())
        );
        assert_eq!(committed_value(&db, 7, 1, b"b").unwrap(), None);
    }

    #[test]
    fn a_prefix_or_a_range_bounds_the_keys() {
        let (_dir, db) = db_with(&[
            (0, b"ab", b"1"),
            (0, b"abc", b"2"),
            (0, b"ac", b"3"),
            (0, b"b", b"4"),
        ]);
        let keys_of = |r: &KeyRange| -> Vec<Vec<u8>> {
            let (page, _) = committed_entries(&db, 7, 0, r, None, 10).unwrap();
            page.into_iter().map(|(k, _)| k).collect()
        };
        assert_eq!(
            keys_of(&KeyRange::prefix(b"ab")),
            [b"ab".to_vec(), b"abc".to_vec()]
        );
        let range = KeyRange {
            start: b"abc".to_vec(),
            end: Some(b"b".to_vec()),
        };
        assert_eq!(keys_of(&range), [b"abc".to_vec(), b"ac".to_vec()]);
        // A continuation before the range's start starts at the start.
        let (page, _) = committed_entries(&db, 7, 0, &range, Some(b"a"), 10).unwrap();
        assert_eq!(page.len(), 2);
    }
}
