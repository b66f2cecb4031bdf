//! Uploaded operators: versions per name, binaries stored content-addressed (sha256) in
//! the data dir, metadata in RocksDB, compiled forms in the runtime's cache (so a
//! restart does not recompile).

mod language;

pub use language::detect as detect_language;

use crate::model::VersionRef;
use crate::model::spec::check_name;
use crate::record::now_ms;
use crate::runtime::{ComponentError, OperatorComponent, Runtime};
use crate::state::{Cf, Db, StateError, keys};
use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

const META: &[u8] = b"operator/";

/// One stored version of an operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OperatorVersion {
    pub name: String,
    pub version: u32,
    /// sha256 of the binary, hex.
    pub digest: String,
    pub size: u64,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    pub created_ms: i64,
    /// The language the operator was written in, when its component says (`eddy build`
    /// names it; Rust and C compilers record theirs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

/// Why a registry call failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("operator {0:?} does not exist")]
    NotFound(String),
    #[error("operator {name:?} has no version {version}")]
    NoSuchVersion { name: String, version: u32 },
    #[error("{0}")]
    InvalidName(String),
    #[error(transparent)]
    Invalid(#[from] ComponentError),
    #[error(
        "operator {name}@{version} is used by pipeline {pipeline:?}; delete or upgrade the pipeline first"
    )]
    InUse {
        name: String,
        version: u32,
        pipeline: String,
    },
    #[error("cannot store operator binary: {0}")]
    Io(String),
    #[error(transparent)]
    State(#[from] StateError),
}

impl From<rocksdb::Error> for RegistryError {
    fn from(e: rocksdb::Error) -> Self {
        RegistryError::State(StateError::Rocks(e))
    }
}

fn name_prefix(name: &str) -> Vec<u8> {
    let mut k = META.to_vec();
    keys::push_name(&mut k, name);
    k
}

fn version_key(name: &str, version: u32) -> Vec<u8> {
    let mut k = name_prefix(name);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

/// The operator registry of one server.
pub struct Registry {
    db: Arc<Db>,
    blobs: PathBuf,
    runtime: Runtime,
    /// Compiled components by digest, shared by every task that runs them.
    components: Mutex<HashMap<String, OperatorComponent>>,
    /// Serializes uploads so version numbers are assigned once each.
    uploads: Mutex<()>,
}

impl Registry {
    /// A registry keeping binaries under `dir/blobs`.
    pub fn open(db: Arc<Db>, dir: PathBuf, runtime: Runtime) -> Result<Self, RegistryError> {
        let blobs = dir.join("blobs");
        std::fs::create_dir_all(&blobs)
            .map_err(|e| RegistryError::Io(format!("{}: {e}", blobs.display())))?;
        Ok(Registry {
            db,
            blobs,
            runtime,
            components: Mutex::new(HashMap::new()),
            uploads: Mutex::new(()),
        })
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Stores `bytes` as the next version of `name` after checking it is a valid operator.
    /// Identical bytes already stored under `name` return that version instead
    /// (`created == false`).
    pub fn put(&self, name: &str, bytes: &[u8]) -> Result<(OperatorVersion, bool), RegistryError> {
        check_name("operator", name).map_err(|e| RegistryError::InvalidName(e.to_string()))?;
        let _upload = self.uploads.lock().expect("upload lock");
        let digest = crate::runtime::digest_of(bytes);
        let existing = self.versions_or_none(name)?;
        if let Some(v) = existing.iter().find(|v| v.digest == digest) {
            return Ok((v.clone(), false));
        }
        let next = existing.last().map_or(1, |v| v.version + 1);
        Ok((self.store(name, next, digest, bytes)?, true))
    }

    /// Stores `bytes` as exactly `name@version`, as another server of the cluster numbered
    /// it. Already there with the same digest: nothing to do (`false`).
    pub fn adopt(
        &self,
        name: &str,
        version: u32,
        bytes: &[u8],
    ) -> Result<(OperatorVersion, bool), RegistryError> {
        check_name("operator", name).map_err(|e| RegistryError::InvalidName(e.to_string()))?;
        let _upload = self.uploads.lock().expect("upload lock");
        let digest = crate::runtime::digest_of(bytes);
        if let Some(v) = self
            .versions_or_none(name)?
            .into_iter()
            .find(|v| v.version == version)
        {
            if v.digest != digest {
                return Err(RegistryError::Io(format!(
                    "{name}@{version} here has digest {} but the cluster's has {digest}; two servers took the same version number at once, push it again",
                    v.digest
                )));
            }
            return Ok((v, false));
        }
        Ok((self.store(name, version, digest, bytes)?, true))
    }

    fn versions_or_none(&self, name: &str) -> Result<Vec<OperatorVersion>, RegistryError> {
        self.versions(name).or_else(|e| match e {
            RegistryError::NotFound(_) => Ok(Vec::new()),
            other => Err(other),
        })
    }

    /// Validates, keeps the blob and records `name@version` (the upload lock is held).
    fn store(
        &self,
        name: &str,
        version: u32,
        digest: String,
        bytes: &[u8],
    ) -> Result<OperatorVersion, RegistryError> {
        let component = self.runtime.load(bytes)?;
        let blob = self.blob_path(&digest);
        if !blob.exists() {
            let tmp = blob.with_extension("tmp");
            std::fs::write(&tmp, bytes)
                .and_then(|_| std::fs::rename(&tmp, &blob))
                .map_err(|e| RegistryError::Io(format!("{}: {e}", blob.display())))?;
        }
        let version = OperatorVersion {
            name: name.to_string(),
            version,
            digest: digest.clone(),
            size: bytes.len() as u64,
            imports: component.imports().to_vec(),
            exports: component.exports().to_vec(),
            created_ms: now_ms(),
            language: language::detect(bytes),
        };
        let mut wb = WriteBatch::default();
        wb.put_cf(
            self.db.cf(Cf::Meta),
            version_key(name, version.version),
            serde_json::to_vec(&version).expect("serializes"),
        );
        self.db.write(wb)?;
        self.components
            .lock()
            .expect("components lock")
            .insert(digest, component);
        Ok(version)
    }

    /// Every operator name with its versions.
    pub fn list(&self) -> Result<BTreeMap<String, Vec<OperatorVersion>>, RegistryError> {
        let mut out: BTreeMap<String, Vec<OperatorVersion>> = BTreeMap::new();
        for v in self.scan(META)? {
            out.entry(v.name.clone()).or_default().push(v);
        }
        Ok(out)
    }

    /// The versions of `name`, oldest first.
    pub fn versions(&self, name: &str) -> Result<Vec<OperatorVersion>, RegistryError> {
        known(name)?;
        let versions = self.scan(&name_prefix(name))?;
        if versions.is_empty() {
            return Err(RegistryError::NotFound(name.to_string()));
        }
        Ok(versions)
    }

    fn scan(&self, prefix: &[u8]) -> Result<Vec<OperatorVersion>, RegistryError> {
        let mut out = Vec::new();
        for item in self
            .db
            .rocks()
            .prefix_iterator_cf(self.db.cf(Cf::Meta), prefix)
        {
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push(serde_json::from_slice(&v).map_err(|e| StateError::Corrupt {
                what: "operator metadata",
                detail: e.to_string(),
            })?);
        }
        Ok(out)
    }

    /// One version of `name`.
    pub fn version(&self, name: &str, version: u32) -> Result<OperatorVersion, RegistryError> {
        known(name)?;
        match self.db.get(Cf::Meta, &version_key(name, version))? {
            Some(v) => Ok(serde_json::from_slice(&v).map_err(|e| StateError::Corrupt {
                what: "operator metadata",
                detail: e.to_string(),
            })?),
            None if self.versions(name).is_ok() => Err(RegistryError::NoSuchVersion {
                name: name.to_string(),
                version,
            }),
            None => Err(RegistryError::NotFound(name.to_string())),
        }
    }

    /// The version a spec means: a number, or the latest (also when none is given).
    pub fn resolve(
        &self,
        name: &str,
        version: Option<VersionRef>,
    ) -> Result<OperatorVersion, RegistryError> {
        match version {
            Some(VersionRef::Number(n)) => self.version(name, n),
            _ => Ok(self
                .versions(name)?
                .pop()
                .expect("versions() is never empty")),
        }
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        self.blobs.join(format!("{digest}.wasm"))
    }

    /// The binary of a version.
    pub fn blob(&self, v: &OperatorVersion) -> Result<Vec<u8>, RegistryError> {
        std::fs::read(self.blob_path(&v.digest))
            .map_err(|e| RegistryError::Io(format!("operator {}@{}: {e}", v.name, v.version)))
    }

    /// The compiled component of a version (loaded once, then shared).
    pub fn component(&self, v: &OperatorVersion) -> Result<OperatorComponent, RegistryError> {
        if let Some(c) = self
            .components
            .lock()
            .expect("components lock")
            .get(&v.digest)
        {
            return Ok(c.clone());
        }
        let c = self.runtime.load(&self.blob(v)?)?;
        self.components
            .lock()
            .expect("components lock")
            .insert(v.digest.clone(), c.clone());
        Ok(c)
    }

    /// Deletes one version, or every version of `name`, unless a pipeline uses it
    /// (`in_use` names the pipeline).
    pub fn delete(
        &self,
        name: &str,
        version: Option<u32>,
        in_use: impl Fn(&str, u32) -> Option<String>,
    ) -> Result<Vec<OperatorVersion>, RegistryError> {
        known(name)?;
        let _upload = self.uploads.lock().expect("upload lock");
        let doomed = match version {
            Some(v) => vec![self.version(name, v)?],
            None => self.versions(name)?,
        };
        for v in &doomed {
            if let Some(pipeline) = in_use(name, v.version) {
                return Err(RegistryError::InUse {
                    name: name.to_string(),
                    version: v.version,
                    pipeline,
                });
            }
        }
        let mut wb = WriteBatch::default();
        for v in &doomed {
            wb.delete_cf(self.db.cf(Cf::Meta), version_key(name, v.version));
        }
        self.db.write(wb)?;
        let still_used: Vec<String> = self
            .list()?
            .into_values()
            .flatten()
            .map(|v| v.digest)
            .collect();
        for v in &doomed {
            if !still_used.contains(&v.digest) {
                let _ = std::fs::remove_file(self.blob_path(&v.digest));
                self.components
                    .lock()
                    .expect("components lock")
                    .remove(&v.digest);
            }
        }
        Ok(doomed)
    }
}

/// A name longer than any operator's is not found (and never reaches the key layout,
/// whose names are at most 255 bytes).
fn known(name: &str) -> Result<(), RegistryError> {
    if name.len() > crate::model::spec::NAME_MAX {
        return Err(RegistryError::NotFound(name.to_string()));
    }
    Ok(())
}
