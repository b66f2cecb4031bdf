//! Savepoint files: one SST file (RocksDB's SstFileWriter) per operator store and
//! partition, holding the store's user keys in order, so a savepoint does not depend on
//! the key prefixes of the server that wrote it.

use super::changelog::TIMERS_STORE;
use super::{Cf, Db, StateError, TIMERS};
use rocksdb::{
    DB, IngestExternalFileOptions, Options, ReadOptions, SnapshotWithThreadMode, SstFileWriter,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// Where the file of `(operator, store, partition)` lives inside a savepoint folder (the
/// one place a manifest's file may name).
pub fn store_file_path(operator: &str, store: &str, partition: u32) -> String {
    format!("state/{operator}/{store}/{partition}.sst")
}

/// One store partition in a savepoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoreFile {
    pub operator: String,
    /// The store (`__timers` for the operator's timers).
    pub store: String,
    pub partition: u32,
    /// Path of the SST file inside the savepoint folder.
    pub file: String,
    pub keys: u64,
    pub bytes: u64,
    /// sha256 of the file, hex.
    pub sha256: String,
}

/// The sha256 (hex) and length of a file, read in chunks.
pub fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    sha256_of(std::fs::File::open(path)?)
}

/// The sha256 (hex) and length of what `file` reads, read in chunks.
pub fn sha256_of(mut file: impl Read) -> std::io::Result<(String, u64)> {
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok((hex::encode(hash.finalize()), bytes));
        }
        hash.update(&buf[..n]);
        bytes += n as u64;
    }
}

/// A failed file operation, named by the file's place in the savepoint (never the
/// server's path).
fn io(file: &str, e: std::io::Error) -> StateError {
    StateError::Corrupt {
        what: "savepoint file",
        detail: format!("{file}: {}", e.kind()),
    }
}

/// Writes every store of `pipeline`, as `snapshot` sees it, into SST files under `dir`.
pub fn export_pipeline(
    db: &Db,
    snapshot: &SnapshotWithThreadMode<'_, DB>,
    pipeline: &str,
    dir: &Path,
) -> Result<Vec<StoreFile>, StateError> {
    let mut files = Vec::new();
    // A shadow's copy is not the pipeline's state: it never goes into a savepoint.
    let stores = db.stores(pipeline, None)?;
    for (name, id) in stores
        .into_iter()
        .filter(|(n, _)| !super::is_shadow_scope(&n.operator))
    {
        let (cf, store) = if name.store == TIMERS {
            (Cf::Timers, TIMERS_STORE.to_string())
        } else {
            (Cf::State, name.store.clone())
        };
        let mut ro = ReadOptions::default();
        ro.set_snapshot(snapshot);
        ro.set_iterate_upper_bound((id + 1).to_be_bytes().to_vec());
        let mut it = db.rocks().raw_iterator_cf_opt(db.cf(cf), ro);
        it.seek(id.to_be_bytes());
        let opts = Options::default();
        let mut current: Option<(u32, SstFileWriter<'_>, u64, String)> = None;
        let finish = |current: Option<(u32, SstFileWriter<'_>, u64, String)>,
                      files: &mut Vec<StoreFile>|
         -> Result<(), StateError> {
            if let Some((partition, mut w, keys, file)) = current {
                w.finish()?;
                let (sha256, bytes) = sha256_file(&dir.join(&file)).map_err(|e| io(&file, e))?;
                files.push(StoreFile {
                    operator: name.operator.clone(),
                    store: store.clone(),
                    partition,
                    file,
                    keys,
                    bytes,
                    sha256,
                });
            }
            Ok(())
        };
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            let partition = u32::from_be_bytes(
                k[4..8]
                    .try_into()
                    .expect("state keys start with an 8-byte prefix"),
            );
            if current.as_ref().is_none_or(|c| c.0 != partition) {
                finish(current.take(), &mut files)?;
                let file = store_file_path(&name.operator, &store, partition);
                let path = dir.join(&file);
                std::fs::create_dir_all(path.parent().expect("files are in folders"))
                    .map_err(|e| io(&file, e))?;
                let w = SstFileWriter::create(&opts);
                w.open(&path)?;
                current = Some((partition, w, 0, file));
            }
            let c = current.as_mut().expect("just opened");
            c.1.put(&k[8..], v)?;
            c.2 += 1;
            it.next();
        }
        it.status()?;
        finish(current.take(), &mut files)?;
    }
    Ok(files)
}

/// Calls `each` with every `(user key, value)` of a savepoint SST file, in key order.
/// (The rocksdb crate has no SST reader: the file is ingested, as a copy, into a
/// scratch database under `scratch` and read back from there.)
pub fn for_each_entry(
    file: &Path,
    scratch: &Path,
    mut each: impl FnMut(&[u8], &[u8]) -> Result<(), StateError>,
) -> Result<(), StateError> {
    let _ = std::fs::remove_dir_all(scratch);
    let mut opts = Options::default();
    opts.create_if_missing(true);
    let db = DB::open(&opts, scratch)?;
    let mut ingest = IngestExternalFileOptions::default();
    ingest.set_move_files(false);
    db.ingest_external_file_opts(&ingest, vec![file])?;
    let mut it = db.raw_iterator();
    it.seek_to_first();
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        each(k, v)?;
        it.next();
    }
    it.status()?;
    drop(it);
    drop(db);
    let _ = std::fs::remove_dir_all(scratch);
    Ok(())
}

/// Writes `entries` (sorted by key) to an SST file at `path`; `None` when there are none.
pub struct SstBuilder<'a> {
    writer: SstFileWriter<'a>,
    count: u64,
}

impl<'a> SstBuilder<'a> {
    pub fn create(opts: &'a Options, path: &Path) -> Result<Self, StateError> {
        let writer = SstFileWriter::create(opts);
        writer.open(path)?;
        Ok(SstBuilder { writer, count: 0 })
    }

    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StateError> {
        self.count += 1;
        Ok(self.writer.put(key, value)?)
    }

    /// Finishes the file; `false` when nothing was written (no file usable).
    pub fn finish(mut self) -> Result<bool, StateError> {
        if self.count == 0 {
            return Ok(false);
        }
        self.writer.finish()?;
        Ok(true)
    }
}

/// Ingests SST files into a column family (atomically for the files given).
pub fn ingest(db: &Db, cf: Cf, files: &[std::path::PathBuf]) -> Result<(), StateError> {
    if files.is_empty() {
        return Ok(());
    }
    let mut opts = IngestExternalFileOptions::default();
    opts.set_move_files(true);
    Ok(db
        .rocks()
        .ingest_external_file_cf_opts(db.cf(cf), &opts, files.to_vec())?)
}
