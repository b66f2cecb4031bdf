//! Compaction of changelog-style topics: the latest change per key stays, what it
//! supersedes goes (as Kafka's compacted topics do), read with the changelog's own format.

use super::embedded::{Log, LogError, record_key};
use super::topic::Topic;
use crate::state::Cf;
use crate::state::changelog::Change;
use rocksdb::WriteBatch;

/// How a record of a compacted topic relates to the others.
enum Kind {
    /// A put or delete of one key.
    Key(Vec<u8>),
    /// A range delete, with its bounds.
    Range(Vec<u8>, Option<Vec<u8>>),
}

impl Log {
    /// Compacts a partition of a changelog-style topic: among records below offset
    /// `below`, drops every put or delete superseded by a later record of the same key
    /// (or by a later range delete covering it), and deletes that end up the oldest record
    /// of their key. Range deletes stay. Returns how many records went.
    pub fn compact_partition(
        &self,
        topic: &Topic,
        partition: u32,
        below: u64,
    ) -> Result<u64, LogError> {
        let start = topic.start_offset(partition);
        let below = below.min(topic.end_offset(partition));
        let mut records: Vec<(u64, Kind, bool)> = Vec::new();
        let mut at = start;
        while at < below {
            let chunk = self.read(topic, partition, at, 10_000)?;
            let Some((last, _, _)) = chunk.last() else {
                break;
            };
            at = last + 1;
            for (offset, r, _) in chunk.into_iter().filter(|(o, _, _)| *o < below) {
                // The changelog's own format decides; a record that is not a change
                // counts as a put of its key.
                let (kind, delete) = match Change::from_record(&r) {
                    Ok(Change::DeleteRange { start, end }) => (Kind::Range(start, end), false),
                    Ok(Change::Delete { key }) => (Kind::Key(key), true),
                    Ok(Change::Put { key, .. }) => (Kind::Key(key), false),
                    Err(_) => (Kind::Key(r.key.unwrap_or_default()), false),
                };
                records.push((offset, kind, delete));
            }
        }
        // Newest first: a record is obsolete when a newer one covers its key.
        let mut seen: rustc_hash::FxHashSet<Vec<u8>> = Default::default();
        let mut ranges: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        let mut doomed = Vec::new();
        let oldest_of_key: rustc_hash::FxHashMap<&[u8], u64> =
            records.iter().fold(Default::default(), |mut m, (o, k, _)| {
                if let Kind::Key(key) = k {
                    m.entry(key.as_slice()).or_insert(*o);
                }
                m
            });
        for (offset, kind, delete) in records.iter().rev() {
            match kind {
                Kind::Range(s, e) => ranges.push((s.clone(), e.clone())),
                Kind::Key(key) => {
                    let covered = ranges
                        .iter()
                        .any(|(s, e)| key >= s && e.as_ref().is_none_or(|e| key < e));
                    let superseded = !seen.insert(key.clone()) || covered;
                    // Nothing older left to cancel.
                    let lone_delete = *delete && oldest_of_key.get(key.as_slice()) == Some(offset);
                    if superseded || lone_delete {
                        doomed.push(*offset);
                    }
                }
            }
        }
        if doomed.is_empty() {
            return Ok(0);
        }
        let mut wb = WriteBatch::default();
        let cf = self.db().cf(Cf::Log);
        for offset in &doomed {
            wb.delete_cf(cf, record_key(topic.meta.id, partition, *offset));
        }
        self.db().write(wb)?;
        Ok(doomed.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::TopicConfig;
    use crate::record::Record;
    use crate::state::{Db, DbOptions};
    use std::sync::Arc;

    /// Every change left in partition 0 of a changelog topic.
    fn changes_in(log: &Log, t: &Topic) -> Vec<Change> {
        log.read(t, 0, 0, 100)
            .unwrap()
            .iter()
            .map(|(_, r, _)| Change::from_record(r).unwrap())
            .collect()
    }

    #[test]
    fn compaction_keeps_the_latest_change_per_key() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(Arc::new(
            Db::open(dir.path(), &DbOptions::default()).unwrap(),
        ))
        .unwrap();
        let t = log.create_topic("c", &TopicConfig::kept(1)).unwrap();
        let put = |k: &str, v: &str| Change::Put {
            key: k.into(),
            value: v.into(),
        };
        let changes = vec![
            put("a", "1"),
            put("b", "1"),
            put("a", "2"),
            Change::Delete { key: b"b".to_vec() },
            put("c", "1"),
            Change::DeleteRange {
                start: b"c".to_vec(),
                end: Some(b"d".to_vec()),
            },
            put("d", "1"),
            put("e", "1"),
        ];
        let records: Vec<(Record, Option<u32>)> =
            changes.iter().map(|c| (c.to_record(), None)).collect();
        log.produce(&t, &records).unwrap();
        // Everything below offset 7 may go; `e` (offset 7) is kept as is.
        let removed = log.compact_partition(&t, 0, 7).unwrap();
        let left = changes_in(&log, &t);
        assert_eq!(
            left,
            vec![
                put("a", "2"),
                Change::Delete { key: b"b".to_vec() },
                Change::DeleteRange {
                    start: b"c".to_vec(),
                    end: Some(b"d".to_vec())
                },
                put("d", "1"),
                put("e", "1")
            ]
        );
        assert_eq!(removed, 3);
        // Again: the delete of `b` is now the oldest record of `b`, so it goes too.
        assert_eq!(log.compact_partition(&t, 0, 100).unwrap(), 1);
        let left = changes_in(&log, &t);
        assert_eq!(
            replay(&left),
            replay(&changes),
            "replaying what is left gives the same state"
        );
    }

    fn replay(changes: &[Change]) -> std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
        let mut state = std::collections::BTreeMap::new();
        for c in changes {
            match c {
                Change::Put { key, value } => {
                    state.insert(key.clone(), value.clone());
                }
                Change::Delete { key } => {
                    state.remove(key);
                }
                Change::DeleteRange { start, end } => {
                    state.retain(|k, _| !(k >= start && end.as_ref().is_none_or(|e| k < e)))
                }
            }
        }
        state
    }
}
