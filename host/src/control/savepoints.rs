//! Savepoints: user-owned, portable snapshots of a pipeline. A savepoint is a folder with
//! `manifest.json` (the spec, each operator's name, version, digest and state version,
//! every task's source offset and watermark, every store file with its key count and
//! checksum) and one SST file per operator store and partition. It can be downloaded and
//! uploaded as one archive (`.tar.gz`), and a pipeline restored from it.

use super::manifest::check_id;
pub use super::manifest::{FORMAT_VERSION, Manifest, SavedTask, SavepointError};
use super::manifest_check;
use super::savepoint_archive::{self as archive, ArchiveLimits, open_inside};
use crate::state::savepoint::{StoreFile, sha256_of};
use std::collections::BTreeSet;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

/// The savepoints of one server, each a folder under `dir`.
pub struct Savepoints {
    dir: PathBuf,
    limits: ArchiveLimits,
}

fn io(e: std::io::Error) -> SavepointError {
    SavepointError::Io(e.kind().to_string())
}

/// Largest `manifest.json` read (a manifest of 100,000 store files is ~30 MB).
const MANIFEST_MAX: u64 = 32 << 20;

impl Savepoints {
    pub fn open(dir: PathBuf, limits: ArchiveLimits) -> Result<Self, SavepointError> {
        std::fs::create_dir_all(&dir).map_err(io)?;
        // Uploads and restores a crash interrupted leave their scratch folders.
        for entry in std::fs::read_dir(&dir).map_err(io)?.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".upload-") || name.starts_with(".restore-") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(Savepoints { dir, limits })
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

    /// Reads and checks the manifest of the savepoint folder `dir` (never through a link).
    fn read_manifest(dir: &Path) -> Result<Manifest, SavepointError> {
        let (file, len) = open_inside(dir, "manifest.json").map_err(SavepointError::Corrupt)?;
        if len > MANIFEST_MAX {
            return Err(SavepointError::Corrupt(format!(
                "manifest.json is {len} bytes (at most {MANIFEST_MAX})"
            )));
        }
        let mut text = Vec::with_capacity(len as usize);
        file.take(MANIFEST_MAX)
            .read_to_end(&mut text)
            .map_err(|e| SavepointError::Corrupt(format!("manifest.json: {}", e.kind())))?;
        let m: Manifest = serde_json::from_slice(&text)
            .map_err(|e| SavepointError::Corrupt(format!("manifest.json is invalid: {e}")))?;
        if m.format_version != FORMAT_VERSION {
            return Err(SavepointError::Corrupt(format!(
                "format version {} is not supported (this server reads version {FORMAT_VERSION})",
                m.format_version
            )));
        }
        manifest_check::check(&m)?;
        Ok(m)
    }

    /// The folder of an existing savepoint: a real folder, not a link.
    fn folder(&self, id: &str) -> Result<PathBuf, SavepointError> {
        check_id(id)?;
        let dir = self.path(id);
        match std::fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => Ok(dir),
            _ => Err(SavepointError::NotFound(id.to_string())),
        }
    }

    /// A savepoint's manifest.
    pub fn get(&self, id: &str) -> Result<Manifest, SavepointError> {
        let dir = self.folder(id)?;
        let m = Self::read_manifest(&dir)?;
        if m.id != id {
            return Err(SavepointError::Corrupt(format!(
                "the folder of savepoint {id:?} holds the manifest of {:?}",
                m.id
            )));
        }
        Ok(m)
    }

    /// Checks that every file is present, a plain file inside the folder, and intact.
    pub fn verify(&self, m: &Manifest) -> Result<(), SavepointError> {
        let dir = self.folder(&m.id)?;
        m.stores.iter().try_for_each(|f| check_file(&dir, f, None))
    }

    /// Copies a store file of savepoint `m` to `to`, checking the copy: what is read
    /// afterwards is what was checked, whatever happens to the folder meanwhile.
    pub fn copy_checked(
        &self,
        m: &Manifest,
        f: &StoreFile,
        to: &Path,
    ) -> Result<(), SavepointError> {
        check_file(&self.folder(&m.id)?, f, Some(to))
    }

    /// Every savepoint, oldest first (folders that hold none are left out).
    pub fn list(&self) -> Result<Vec<Manifest>, SavepointError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let Some(id) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if let Ok(m) = self.get(&id) {
                out.push(m);
            }
        }
        out.sort_by_key(|m| (m.created_ms, m.id.clone()));
        Ok(out)
    }

    pub fn delete(&self, id: &str) -> Result<(), SavepointError> {
        // A folder whose manifest is damaged can still be deleted.
        let dir = self.folder(id)?;
        if !dir.join("manifest.json").exists() {
            return Err(SavepointError::NotFound(id.to_string()));
        }
        std::fs::remove_dir_all(dir).map_err(io)
    }

    /// The savepoint as one gzip-compressed tar archive (its manifest and the files it
    /// lists, nothing else of the folder), in an unnamed temporary file, and its size.
    pub fn archive(&self, id: &str) -> Result<(std::fs::File, u64), SavepointError> {
        let m = self.get(id)?;
        let files: Vec<&str> = m.stores.iter().map(|f| f.file.as_str()).collect();
        let out = tempfile::tempfile_in(&self.dir).map_err(io)?;
        let mut out = archive::pack(&self.path(&m.id), &m.id, &files, out)?;
        let len = out.stream_position().map_err(io)?;
        out.rewind().map_err(io)?;
        Ok((out, len))
    }

    /// [`Savepoints::archive`] in memory (for sharing it through the cluster catalog).
    pub fn archive_bytes(&self, id: &str) -> Result<Vec<u8>, SavepointError> {
        let (mut file, len) = self.archive(id)?;
        let mut bytes = Vec::with_capacity(len as usize);
        file.read_to_end(&mut bytes).map_err(io)?;
        Ok(bytes)
    }

    /// Stores an uploaded archive as a savepoint after checking it completely (every
    /// entry while it is unpacked, then the manifest and every file's checksum); nothing
    /// is kept when anything is wrong.
    pub fn import(&self, bytes: &[u8]) -> Result<Manifest, SavepointError> {
        let staging = tempfile::Builder::new()
            .prefix(".upload-")
            .tempdir_in(&self.dir)
            .map_err(io)?;
        let unpacked = archive::unpack(bytes, staging.path(), &self.limits)?;
        let m = Self::read_manifest(&unpacked.root)?;
        let mut listed: BTreeSet<&str> = BTreeSet::new();
        for f in &m.stores {
            let Some(d) = unpacked.files.get(&f.file) else {
                return Err(SavepointError::Corrupt(format!(
                    "file {} is missing",
                    f.file
                )));
            };
            if d.sha256 != f.sha256 || d.bytes != f.bytes {
                return Err(SavepointError::Corrupt(format!(
                    "file {} is corrupt (checksum mismatch)",
                    f.file
                )));
            }
            listed.insert(&f.file);
        }
        if let Some(extra) = unpacked
            .files
            .keys()
            .find(|f| f.as_str() != "manifest.json" && !listed.contains(f.as_str()))
        {
            return Err(SavepointError::Corrupt(format!(
                "file {extra:?} is not listed in manifest.json"
            )));
        }
        let target = self.path(&m.id);
        match rename_new(&unpacked.root, &target) {
            Ok(()) => Ok(m),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(SavepointError::Exists(m.id))
            }
            Err(e) => Err(io(e)),
        }
    }
}

/// Checks one store file against its manifest entry, reading it through
/// [`open_inside`]; with `copy`, also writes what it read there.
fn check_file(dir: &Path, f: &StoreFile, copy: Option<&Path>) -> Result<(), SavepointError> {
    let (file, _) = open_inside(dir, &f.file).map_err(SavepointError::Corrupt)?;
    let failed =
        |e: std::io::Error| SavepointError::Corrupt(format!("file {}: {}", f.file, e.kind()));
    let (sha256, bytes) = match copy {
        None => sha256_of(file).map_err(failed)?,
        Some(to) => {
            let out = std::fs::File::create(to).map_err(io)?;
            sha256_of(Tee {
                from: file,
                to: out,
            })
            .map_err(failed)?
        }
    };
    if sha256 != f.sha256 || bytes != f.bytes {
        return Err(SavepointError::Corrupt(format!(
            "file {} is corrupt (checksum mismatch)",
            f.file
        )));
    }
    Ok(())
}

/// Writes to `to` what it reads from `from`.
struct Tee<R, W> {
    from: R,
    to: W,
}

impl<R: Read, W: std::io::Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.from.read(buf)?;
        self.to.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Renames `from` to `to`, failing (`AlreadyExists`) rather than replacing anything there.
fn rename_new(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
    };
    let (from, to) = (c(from)?, c(to)?);
    // SAFETY: both are valid C strings for the duration of the call.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
