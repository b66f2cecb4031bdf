//! Interned store names: every `(pipeline, operator, store)` gets a 4-byte id, the prefix
//! of its keys. Short prefixes keep RocksDB's memtable comparisons cheap: with the names
//! themselves as the prefix (27 bytes for `bench/wordcount/counts`) word count ran about
//! 25% slower.

use super::{Cf, Db, StateError, keys};
use std::collections::HashMap;
use std::sync::Mutex;

/// The store name under which an operator's timers are kept (user store names are
/// never empty).
pub const TIMERS: &str = "";

const NEXT_ID: &[u8] = b"catalog-next";

/// Names of one store, as the catalog records them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreName {
    pub pipeline: String,
    pub operator: String,
    pub store: String,
}

fn name_key(n: &StoreName) -> Vec<u8> {
    let mut k = b"catalog/".to_vec();
    keys::push_name(&mut k, &n.pipeline);
    keys::push_name(&mut k, &n.operator);
    keys::push_name(&mut k, &n.store);
    k
}

fn decode_name(bytes: &[u8]) -> Option<StoreName> {
    let mut rest = bytes;
    let mut next = || -> Option<String> {
        let (&len, tail) = rest.split_first()?;
        let (name, tail) = tail.split_at_checked(len as usize)?;
        rest = tail;
        String::from_utf8(name.to_vec()).ok()
    };
    Some(StoreName {
        pipeline: next()?,
        operator: next()?,
        store: next()?,
    })
}

/// The id registry, cached in memory; ids are allocated under a lock.
#[derive(Default)]
pub(crate) struct Catalog {
    ids: Mutex<HashMap<StoreName, u32>>,
}

impl Catalog {
    /// The id of a store, allocating (and persisting) one the first time.
    pub(crate) fn id(&self, db: &Db, name: &StoreName) -> Result<u32, StateError> {
        let mut ids = self.ids.lock().expect("catalog lock");
        if let Some(id) = ids.get(name) {
            return Ok(*id);
        }
        let key = name_key(name);
        let id = match db.get(Cf::Meta, &key)? {
            Some(v) => decode_id(&v)?,
            None => {
                let next = match db.get(Cf::Meta, NEXT_ID)? {
                    Some(v) => decode_id(&v)?,
                    None => 1,
                };
                let mut wb = rocksdb::WriteBatch::default();
                wb.put_cf(db.cf(Cf::Meta), &key, next.to_be_bytes());
                wb.put_cf(db.cf(Cf::Meta), NEXT_ID, (next + 1).to_be_bytes());
                db.write(wb)?;
                next
            }
        };
        ids.insert(name.clone(), id);
        Ok(id)
    }

    /// The id of a store that has one, allocating none (names too long for a key have
    /// none).
    pub(crate) fn existing(&self, db: &Db, name: &StoreName) -> Result<Option<u32>, StateError> {
        if let Some(id) = self.ids.lock().expect("catalog lock").get(name) {
            return Ok(Some(*id));
        }
        let names = [&name.pipeline, &name.operator, &name.store];
        if names.iter().any(|n| n.len() > keys::NAME_MAX) {
            return Ok(None);
        }
        let Some(v) = db.get(Cf::Meta, &name_key(name))? else {
            return Ok(None);
        };
        let id = decode_id(&v)?;
        let mut ids = self.ids.lock().expect("catalog lock");
        ids.insert(name.clone(), id);
        Ok(Some(id))
    }

    /// Every store the catalog knows whose names match the filter, with their ids.
    pub(crate) fn list(
        &self,
        db: &Db,
        pipeline: &str,
        operator: Option<&str>,
    ) -> Result<Vec<(StoreName, u32)>, StateError> {
        let mut prefix = b"catalog/".to_vec();
        keys::push_name(&mut prefix, pipeline);
        if let Some(op) = operator {
            keys::push_name(&mut prefix, op);
        }
        let mut out = Vec::new();
        for item in db.rocks().prefix_iterator_cf(db.cf(Cf::Meta), &prefix) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            let name = decode_name(&k[b"catalog/".len()..]).ok_or_else(|| StateError::Corrupt {
                what: "catalog entry",
                detail: String::from_utf8_lossy(&k).into_owned(),
            })?;
            out.push((name, decode_id(&v)?));
        }
        Ok(out)
    }
}

fn decode_id(v: &[u8]) -> Result<u32, StateError> {
    v.try_into()
        .map(u32::from_be_bytes)
        .map_err(|_| StateError::Corrupt {
            what: "catalog id",
            detail: format!("{} bytes", v.len()),
        })
}
