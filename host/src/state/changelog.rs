//! Changelogs: every committed change of a store (and of an operator's timers) is also
//! appended, in the same commit, to the store's changelog topic
//! `<pipeline>.<operator>.<store>.changelog`, partition = the task's partition. A store
//! can be rebuilt from its changelog; the offset up to which a store's local state
//! reflects its changelog is kept beside it (the marker), written in the same commit.
//!
//! A changelog record is the key and the value, with an `op` header for everything but
//! puts: `delete`, or `delete-range` (key = start, value = end, `open-end` header when the
//! range runs to the end of the store).

use super::{Cf, Db, StateError, StateScope, TIMERS, keys};
use crate::record::Record;
use rocksdb::WriteBatch;

/// The changelog store name of an operator's timers.
pub const TIMERS_STORE: &str = "__timers";

/// One change to a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        key: Vec<u8>,
    },
    DeleteRange {
        start: Vec<u8>,
        end: Option<Vec<u8>>,
    },
}

/// The changes of one store in one commit, in order.
#[derive(Debug, Clone, Default)]
pub struct StoreChanges {
    /// The store's name (`__timers` for the timers).
    pub store: String,
    pub changes: Vec<Change>,
}

/// The changes of one operator's stores in one commit.
#[derive(Debug, Clone, Default)]
pub struct OperatorChanges {
    /// The operator's id in the pipeline.
    pub operator: String,
    pub stores: Vec<StoreChanges>,
}

/// The changelog topic of a store.
pub fn changelog_topic(pipeline: &str, operator: &str, store: &str) -> String {
    format!("{pipeline}.{operator}.{store}.changelog")
}

/// The store whose changelog `topic` is, among the operators `ids` of `pipeline`
/// (the longest matching id wins, as ids may contain dots).
pub fn changelog_store<'a>(
    pipeline: &str,
    ids: &[&'a str],
    topic: &str,
) -> Option<(&'a str, String)> {
    let rest = topic
        .strip_prefix(pipeline)?
        .strip_prefix('.')?
        .strip_suffix(".changelog")?;
    ids.iter()
        .filter_map(|id| {
            let store = rest.strip_prefix(id)?.strip_prefix('.')?;
            (!store.is_empty()).then(|| (*id, store.to_string()))
        })
        .max_by_key(|(id, _)| id.len())
}

const OP: &str = "op";
const OPEN_END: &str = "open-end";

impl Change {
    /// The change as a changelog record (timestamp 0: changelogs carry no event time).
    pub fn to_record(&self) -> Record {
        let (key, value, headers) = match self {
            Change::Put { key, value } => (key.clone(), value.clone(), Vec::new()),
            Change::Delete { key } => (
                key.clone(),
                Vec::new(),
                vec![(OP.to_string(), b"delete".to_vec())],
            ),
            Change::DeleteRange { start, end } => {
                let mut headers = vec![(OP.to_string(), b"delete-range".to_vec())];
                if end.is_none() {
                    headers.push((OPEN_END.to_string(), b"1".to_vec()));
                }
                (start.clone(), end.clone().unwrap_or_default(), headers)
            }
        };
        Record {
            key: Some(key),
            value,
            timestamp: 0,
            headers,
        }
    }

    /// Reads a changelog record.
    pub fn from_record(r: &Record) -> Result<Change, StateError> {
        Change::from_parts(r.key.as_deref(), &r.value, |name| {
            r.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_slice())
        })
    }

    /// Reads a changelog record from its key, value and a lookup of its headers by name
    /// (a restore reads millions straight from the client's buffers).
    pub fn from_parts<'a>(
        key: Option<&[u8]>,
        value: &[u8],
        header: impl Fn(&str) -> Option<&'a [u8]>,
    ) -> Result<Change, StateError> {
        let bad = |detail: &str| StateError::Corrupt {
            what: "changelog record",
            detail: detail.to_string(),
        };
        let key = key.ok_or_else(|| bad("no key"))?.to_vec();
        match header(OP) {
            None => Ok(Change::Put {
                key,
                value: value.to_vec(),
            }),
            Some(b"delete") => Ok(Change::Delete { key }),
            Some(b"delete-range") => Ok(Change::DeleteRange {
                start: key,
                end: header(OPEN_END).is_none().then(|| value.to_vec()),
            }),
            Some(other) => Err(bad(&format!(
                "unknown op {:?}",
                String::from_utf8_lossy(other)
            ))),
        }
    }
}

/// The meta key holding the changelog offset a store's local state reflects.
pub fn marker_key(scope: &StateScope, store: &str) -> Vec<u8> {
    let mut k = b"clog".to_vec();
    keys::push_name(&mut k, &scope.pipeline);
    keys::push_name(&mut k, &scope.operator);
    keys::push_name(&mut k, store);
    k.extend_from_slice(&scope.partition.to_be_bytes());
    k
}

/// The changelog offset a store's local state reflects (`None`: no local state recorded).
pub fn load_marker(db: &Db, scope: &StateScope, store: &str) -> Result<Option<u64>, StateError> {
    match db.get(Cf::Meta, &marker_key(scope, store))? {
        None => Ok(None),
        Some(v) => v
            .as_slice()
            .try_into()
            .map(|b| Some(u64::from_be_bytes(b)))
            .map_err(|_| StateError::Corrupt {
                what: "changelog marker",
                detail: format!("{} bytes", v.len()),
            }),
    }
}

/// Writes changelog changes into one store partition's keys.
pub struct ChangeApplier {
    cf: Cf,
    prefix: Vec<u8>,
}

impl ChangeApplier {
    /// The applier of `store` (or the timers, `TIMERS_STORE`) of `scope`.
    pub fn new(db: &Db, scope: &StateScope, store: &str) -> Result<Self, StateError> {
        let (cf, catalog_name) = if store == TIMERS_STORE {
            (Cf::Timers, TIMERS)
        } else {
            (Cf::State, store)
        };
        let id = db.store_id(&scope.store_name(catalog_name))?;
        Ok(ChangeApplier {
            cf,
            prefix: keys::task_prefix(id, scope.partition),
        })
    }

    pub fn apply(&self, db: &Db, wb: &mut WriteBatch, change: Change) {
        let full = |k: &[u8]| [self.prefix.as_slice(), k].concat();
        match change {
            Change::Put { key, value } => wb.put_cf(db.cf(self.cf), full(&key), value),
            Change::Delete { key } => wb.delete_cf(db.cf(self.cf), full(&key)),
            Change::DeleteRange { start, end } => {
                let end = match end {
                    Some(e) => full(&e),
                    None => keys::prefix_end(&self.prefix).expect("task prefixes are not all 0xff"),
                };
                wb.delete_range_cf(db.cf(self.cf), full(&start), end);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_round_trip_through_records() {
        for c in [
            Change::Put {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
            },
            Change::Put {
                key: b"k".to_vec(),
                value: Vec::new(),
            },
            Change::Delete { key: b"k".to_vec() },
            Change::DeleteRange {
                start: b"a".to_vec(),
                end: Some(b"b".to_vec()),
            },
            Change::DeleteRange {
                start: b"a".to_vec(),
                end: None,
            },
        ] {
            assert_eq!(Change::from_record(&c.to_record()).unwrap(), c);
        }
    }

    #[test]
    fn topic_names_map_back_to_stores() {
        let t = changelog_topic("wc", "wordcount", "counts");
        assert_eq!(t, "wc.wordcount.counts.changelog");
        assert_eq!(
            changelog_store("wc", &["wordcount"], &t),
            Some(("wordcount", "counts".into()))
        );
        assert_eq!(changelog_store("wc", &["wordcount"], "wc.counts"), None);
        assert_eq!(changelog_store("w", &["wordcount"], &t), None);
        let dotted = changelog_topic("p", "a.b", "x");
        assert_eq!(
            changelog_store("p", &["a", "a.b"], &dotted),
            Some(("a.b", "x".into()))
        );
    }
}
