//! Savepoints: user-owned, portable snapshots of a pipeline. A savepoint is a folder with
//! `manifest.json` (the spec, each operator's name, version, digest and state version,
//! every task's source offset and watermark, every store file with its key count and
//! checksum) and one SST file per operator store and partition. It can be downloaded and
//! uploaded as one archive (`.tar.gz`), and a pipeline restored from it.

use super::{PinnedOperator, PipelineSpec};
use crate::state::savepoint::{StoreFile, verify};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The manifest format this server writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Where one task stood.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SavedTask {
    pub stage: u32,
    pub partition: u32,
    /// The next source offset to read.
    pub offset: u64,
    pub watermark: i64,
    /// After a repartition: the last watermark of each upstream task, of which the
    /// task's watermark is the lowest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstream_watermarks: Vec<i64>,
}

/// What a savepoint holds.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Manifest {
    pub format_version: u32,
    pub id: String,
    pub pipeline: String,
    pub created_ms: i64,
    #[schema(value_type = Object)]
    pub spec: PipelineSpec,
    /// Each operator's id, name, version, digest and state format version.
    pub operators: Vec<PinnedOperator>,
    pub tasks: Vec<SavedTask>,
    pub stores: Vec<StoreFile>,
    /// Keys over every store file.
    pub keys: u64,
}

/// Why a savepoint cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SavepointError {
    #[error("savepoint {0:?} does not exist")]
    NotFound(String),
    #[error("savepoint {0:?} already exists")]
    Exists(String),
    /// The savepoint is damaged or not a savepoint at all.
    #[error("savepoint is unusable: {0}")]
    Corrupt(String),
    /// The savepoint is fine but does not fit the pipeline.
    #[error("savepoint {id} does not fit pipeline {pipeline:?}: {reason}")]
    Incompatible {
        id: String,
        pipeline: String,
        reason: String,
    },
    #[error("savepoint storage: {0}")]
    Io(String),
}

/// The savepoints of one server, each a folder under `dir`.
pub struct Savepoints {
    dir: PathBuf,
}

fn io(e: impl std::fmt::Display) -> SavepointError {
    SavepointError::Io(e.to_string())
}

/// Savepoint ids are file and URL safe: letters, digits, `.`, `_`, `-`.
fn check_id(id: &str) -> Result<(), SavepointError> {
    let ok = !id.is_empty()
        && id.len() <= 200
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !id.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(SavepointError::NotFound(id.to_string()))
    }
}

impl Savepoints {
    pub fn open(dir: PathBuf) -> Result<Self, SavepointError> {
        std::fs::create_dir_all(&dir).map_err(io)?;
        Ok(Savepoints { dir })
    }

    /// The folder of a savepoint.
    pub fn path(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// A fresh id for a savepoint of `pipeline`.
    pub fn new_id(&self, pipeline: &str, now_ms: i64) -> String {
        loop {
            let id = format!("{pipeline}-{now_ms}-{:04x}", rand::random::<u16>());
            if !self.path(&id).exists() {
                return id;
            }
        }
    }

    pub fn write_manifest(&self, m: &Manifest) -> Result<(), SavepointError> {
        let path = self.path(&m.id).join("manifest.json");
        std::fs::write(
            &path,
            serde_json::to_vec_pretty(m).expect("manifests serialize"),
        )
        .map_err(io)
    }

    fn read_manifest(dir: &Path) -> Result<Manifest, SavepointError> {
        let text = std::fs::read(dir.join("manifest.json"))
            .map_err(|_| SavepointError::Corrupt("manifest.json is missing".into()))?;
        let m: Manifest = serde_json::from_slice(&text)
            .map_err(|e| SavepointError::Corrupt(format!("manifest.json is invalid: {e}")))?;
        if m.format_version != FORMAT_VERSION {
            return Err(SavepointError::Corrupt(format!(
                "format version {} is not supported (this server reads version {FORMAT_VERSION})",
                m.format_version
            )));
        }
        Ok(m)
    }

    /// A savepoint's manifest.
    pub fn get(&self, id: &str) -> Result<Manifest, SavepointError> {
        check_id(id)?;
        let dir = self.path(id);
        if !dir.join("manifest.json").exists() {
            return Err(SavepointError::NotFound(id.to_string()));
        }
        Self::read_manifest(&dir)
    }

    /// Checks that every file is present and intact.
    pub fn verify(&self, m: &Manifest) -> Result<(), SavepointError> {
        let dir = self.path(&m.id);
        m.stores
            .iter()
            .try_for_each(|f| verify(&dir, f).map_err(SavepointError::Corrupt))
    }

    /// Every savepoint, oldest first.
    pub fn list(&self) -> Result<Vec<Manifest>, SavepointError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.join("manifest.json").exists()
                && let Ok(m) = Self::read_manifest(&path)
            {
                out.push(m);
            }
        }
        out.sort_by_key(|m| (m.created_ms, m.id.clone()));
        Ok(out)
    }

    pub fn delete(&self, id: &str) -> Result<(), SavepointError> {
        self.get(id)?;
        std::fs::remove_dir_all(self.path(id)).map_err(io)
    }

    /// The savepoint as one gzip-compressed tar archive.
    pub fn archive(&self, id: &str) -> Result<Vec<u8>, SavepointError> {
        let m = self.get(id)?;
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        tar.append_dir_all(&m.id, self.path(&m.id)).map_err(io)?;
        tar.into_inner().and_then(|gz| gz.finish()).map_err(io)
    }

    /// Stores an uploaded archive as a savepoint after checking it completely; nothing is
    /// kept when anything is wrong.
    pub fn import(&self, archive: &[u8]) -> Result<Manifest, SavepointError> {
        let staging = tempfile::Builder::new()
            .prefix(".upload-")
            .tempdir_in(&self.dir)
            .map_err(io)?;
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
        for entry in tar.entries().map_err(|e| {
            SavepointError::Corrupt(format!("not a savepoint archive (.tar.gz): {e}"))
        })? {
            let mut entry = entry.map_err(|e| SavepointError::Corrupt(format!("archive: {e}")))?;
            // `unpack_in` refuses paths that would leave the folder.
            if !entry
                .unpack_in(staging.path())
                .map_err(|e| SavepointError::Corrupt(format!("archive: {e}")))?
            {
                return Err(SavepointError::Corrupt(
                    "archive entries must stay inside the savepoint folder".into(),
                ));
            }
        }
        let mut roots = std::fs::read_dir(staging.path())
            .map_err(io)?
            .filter_map(Result::ok)
            .map(|e| e.path());
        let (Some(root), None) = (roots.next(), roots.next()) else {
            return Err(SavepointError::Corrupt(
                "an archive holds exactly one savepoint folder".into(),
            ));
        };
        let m = Self::read_manifest(&root)?;
        check_id(&m.id)
            .map_err(|_| SavepointError::Corrupt(format!("invalid savepoint id {:?}", m.id)))?;
        m.stores
            .iter()
            .try_for_each(|f| verify(&root, f).map_err(SavepointError::Corrupt))?;
        let target = self.path(&m.id);
        if target.exists() {
            return Err(SavepointError::Exists(m.id));
        }
        std::fs::rename(&root, &target).map_err(io)?;
        Ok(m)
    }
}
