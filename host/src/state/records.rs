//! The control plane's own records in the meta column family, under one typed key scheme:
//!
//! ```text
//! "pipeline/" name  -> the pipeline's record (JSON)
//! "restore/" name   -> the savepoint a restore of the pipeline is replacing its state with
//!                      (its journal, until the restore finished)
//! "restored/" name  -> the tag of the last restore another server of a cluster made
//! ```

use super::{Cf, Db, StateError};
use rocksdb::WriteBatch;

/// What kind of control-plane record a key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    Pipeline,
    RestoreJournal,
    RestoredTag,
}

impl RecordKind {
    fn prefix(self) -> &'static [u8] {
        match self {
            RecordKind::Pipeline => b"pipeline/",
            RecordKind::RestoreJournal => b"restore/",
            RecordKind::RestoredTag => b"restored/",
        }
    }

    fn key(self, name: &str) -> Vec<u8> {
        [self.prefix(), name.as_bytes()].concat()
    }
}

/// The record of `kind` for pipeline `name`, if any.
pub fn get_record(db: &Db, kind: RecordKind, name: &str) -> Result<Option<Vec<u8>>, StateError> {
    db.get(Cf::Meta, &kind.key(name))
}

/// Writes (or replaces) the record of `kind` for `name`.
pub fn put_record(db: &Db, kind: RecordKind, name: &str, value: &[u8]) -> Result<(), StateError> {
    let mut wb = WriteBatch::default();
    wb.put_cf(db.cf(Cf::Meta), kind.key(name), value);
    db.write(wb)
}

/// Removes the record of `kind` for `name` (if there is one).
pub fn delete_record(db: &Db, kind: RecordKind, name: &str) -> Result<(), StateError> {
    let mut wb = WriteBatch::default();
    wb.delete_cf(db.cf(Cf::Meta), kind.key(name));
    db.write(wb)
}

/// Every record of `kind`: the name it is for, and its value, in name order.
pub fn list_records(db: &Db, kind: RecordKind) -> Result<Vec<(String, Vec<u8>)>, StateError> {
    let prefix = kind.prefix();
    let mut out = Vec::new();
    for item in db.rocks().prefix_iterator_cf(db.cf(Cf::Meta), prefix) {
        let (k, v) = item?;
        if !k.starts_with(prefix) {
            break;
        }
        let name = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
        out.push((name, v.to_vec()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::DbOptions;

    #[test]
    fn kinds_do_not_see_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), &DbOptions::default()).unwrap();
        put_record(&db, RecordKind::Pipeline, "wc", b"{}").unwrap();
        put_record(&db, RecordKind::RestoreJournal, "wc", b"sp-1").unwrap();
        put_record(&db, RecordKind::RestoredTag, "wc", b"sp-1@5").unwrap();
        put_record(&db, RecordKind::Pipeline, "a", b"{1}").unwrap();
        assert_eq!(
            list_records(&db, RecordKind::Pipeline).unwrap(),
            vec![("a".into(), b"{1}".to_vec()), ("wc".into(), b"{}".to_vec())]
        );
        assert_eq!(
            get_record(&db, RecordKind::RestoreJournal, "wc").unwrap(),
            Some(b"sp-1".to_vec())
        );
        delete_record(&db, RecordKind::RestoreJournal, "wc").unwrap();
        assert_eq!(
            list_records(&db, RecordKind::RestoreJournal).unwrap(),
            vec![]
        );
        assert_eq!(list_records(&db, RecordKind::RestoredTag).unwrap().len(), 1);
    }
}
