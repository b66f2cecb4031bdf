//! Savepoint archives (`.tar.gz`): packing a stored savepoint, and unpacking an upload
//! that may be hostile. An upload may only hold plain files and folders whose names are
//! plain path components under one root folder; links, devices, FIFOs, names with `..`,
//! `/`, `\` or NUL are refused, and so is anything past the size and file-count limits,
//! while the archive is read. Files are hashed as they are written, so the checks after
//! it never read them again. Errors name the archive's entry, never a server path.

use super::manifest::SavepointError;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// What an uploaded savepoint archive may unpack to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveLimits {
    /// Bytes of file content over the whole archive.
    pub max_bytes: u64,
    /// Files and folders in the archive.
    pub max_entries: u64,
}

impl Default for ArchiveLimits {
    /// 4 GiB and 100,000 entries: a savepoint of 1M keys is a few tens of MB in a few
    /// dozen files, so the defaults hold it many times over.
    fn default() -> Self {
        ArchiveLimits {
            max_bytes: 4 << 30,
            max_entries: 100_000,
        }
    }
}

/// Longest name of one path component (Linux's NAME_MAX).
const COMPONENT_MAX: usize = 255;
/// Deepest path inside an archive (a savepoint's deepest file is 4 levels down).
const DEPTH_MAX: usize = 8;
/// Largest GNU long-name or pax header an archive may carry.
const EXTENSION_MAX: u64 = 64 << 10;

/// A file's digest, computed while it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    pub sha256: String,
    pub bytes: u64,
}

/// What an archive unpacked to.
#[derive(Debug)]
pub struct Unpacked {
    /// The one root folder, inside the staging folder.
    pub root: PathBuf,
    /// Every file, by its path under the root (`/`-separated).
    pub files: BTreeMap<String, FileDigest>,
}

/// Whether `name` may be one component of a path in a savepoint: not empty, not `.` or
/// `..`, no `/`, `\`, NUL or other control characters, at most 255 bytes.
pub fn check_component(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("an empty path component".into());
    }
    if name == "." || name == ".." {
        return Err(format!("the path component {name:?}"));
    }
    if name.len() > COMPONENT_MAX {
        return Err(format!("a path component of over {COMPONENT_MAX} bytes"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| matches!(c, '/' | '\\') || c.is_control())
    {
        return Err(format!("the character {c:?} in a path component"));
    }
    Ok(())
}

/// Splits a relative, `/`-separated path into checked components.
pub fn check_relative(path: &str) -> Result<Vec<&str>, String> {
    if path.starts_with('/') {
        return Err("an absolute path".into());
    }
    let parts: Vec<&str> = path.split('/').collect();
    if parts.len() > DEPTH_MAX {
        return Err(format!("a path over {DEPTH_MAX} levels deep"));
    }
    for part in &parts {
        check_component(part)?;
    }
    Ok(parts)
}

/// An entry's name as a message shows it: quoted, escaped, at most 200 characters.
fn shown(name: &[u8]) -> String {
    let text = String::from_utf8_lossy(name);
    let cut: String = text.chars().take(200).collect();
    if cut.len() < text.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

fn refused(entry: &[u8], why: impl std::fmt::Display) -> SavepointError {
    SavepointError::Corrupt(format!("archive entry {}: {why}", shown(entry)))
}

fn unreadable(e: std::io::Error) -> SavepointError {
    SavepointError::Corrupt(format!("not a readable savepoint archive (.tar.gz): {e}"))
}

/// Unpacks `archive` (gzip-compressed tar) into the empty folder `into`.
pub fn unpack(
    archive: impl Read,
    into: &Path,
    limits: &ArchiveLimits,
) -> Result<Unpacked, SavepointError> {
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    // Raw entries: GNU long names and pax headers are read here, with a bound, instead
    // of the tar crate reading them whole into memory.
    tar.set_ignore_zeros(false);
    let entries = tar.entries().map_err(unreadable)?.raw(true);
    let mut root: Option<String> = None;
    let mut files = BTreeMap::new();
    let mut seen = BTreeSet::new();
    // Bytes and headers read so far, and the files and folders among them.
    let (mut bytes, mut count, mut entries_seen) = (0u64, 0u64, 0u64);
    let mut long_name: Option<Vec<u8>> = None;
    for entry in entries {
        let mut entry = entry.map_err(unreadable)?;
        let kind = entry.header().entry_type();
        let size = entry.header().entry_size().map_err(unreadable)?;
        let header_name = entry.path_bytes().into_owned();
        // Every header counts, name headers too, so an archive of nothing but headers
        // cannot keep the server busy.
        count += 1;
        bytes = bytes.saturating_add(size);
        if count > limits.max_entries.saturating_mul(3) || bytes > limits.max_bytes {
            return Err(too_large(limits));
        }
        if kind.is_gnu_longname() || kind.is_pax_local_extensions() {
            if size > EXTENSION_MAX {
                return Err(refused(
                    &header_name,
                    format!("a name header of {size} bytes (at most {EXTENSION_MAX})"),
                ));
            }
            let mut data = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut data).map_err(unreadable)?;
            if kind.is_gnu_longname() {
                while data.last() == Some(&0) {
                    data.pop();
                }
                long_name = Some(data);
            } else {
                for ext in tar::PaxExtensions::new(&data) {
                    let ext = ext.map_err(unreadable)?;
                    if ext.key_bytes() == b"path" {
                        long_name = Some(ext.value_bytes().to_vec());
                    }
                }
            }
            continue;
        }
        if kind.is_pax_global_extensions() {
            // Archive-wide metadata (times, owners): nothing a savepoint uses.
            if size > EXTENSION_MAX {
                return Err(refused(&header_name, "an oversized pax global header"));
            }
            std::io::copy(&mut entry, &mut std::io::sink()).map_err(unreadable)?;
            continue;
        }
        let name = long_name.take().unwrap_or(header_name);
        entries_seen += 1;
        if entries_seen > limits.max_entries {
            return Err(SavepointError::Corrupt(format!(
                "the archive holds over {} files and folders (eddy serve --savepoint-max-files)",
                limits.max_entries
            )));
        }
        let directory = kind.is_dir();
        if !(directory || kind.is_file()) {
            return Err(refused(
                &name,
                format!(
                    "{} entries are not allowed in a savepoint (only files and folders)",
                    kind_name(kind)
                ),
            ));
        }
        let text =
            std::str::from_utf8(&name).map_err(|_| refused(&name, "a name that is not UTF-8"))?;
        let text = if directory {
            text.strip_suffix('/').unwrap_or(text)
        } else {
            text
        };
        let parts =
            check_relative(text).map_err(|why| refused(&name, format!("{why} is not allowed")))?;
        match &root {
            None => root = Some(parts[0].to_string()),
            Some(r) if r != parts[0] => {
                return Err(refused(
                    &name,
                    format!(
                        "it is outside the savepoint folder {r:?} (an archive holds exactly one)"
                    ),
                ));
            }
            Some(_) => {}
        }
        if !seen.insert(text.to_string()) {
            return Err(refused(&name, "it appears twice"));
        }
        let path = parts.iter().fold(into.to_path_buf(), |p, c| p.join(c));
        if directory {
            if size != 0 {
                return Err(refused(&name, "a folder entry with content"));
            }
            std::fs::create_dir_all(&path).map_err(|e| refused(&name, e))?;
            continue;
        }
        if parts.len() == 1 {
            return Err(refused(&name, "a file outside the savepoint folder"));
        }
        let parent = path.parent().expect("files are inside the root");
        std::fs::create_dir_all(parent).map_err(|e| refused(&name, e))?;
        let digest = write_file(&mut entry, &path, size).map_err(|e| refused(&name, e))?;
        files.insert(parts[1..].join("/"), digest);
    }
    let root = root.ok_or_else(|| SavepointError::Corrupt("the archive is empty".into()))?;
    Ok(Unpacked {
        root: into.join(root),
        files,
    })
}

fn too_large(limits: &ArchiveLimits) -> SavepointError {
    SavepointError::Corrupt(format!(
        "the archive unpacks to over {} bytes or holds too many headers (eddy serve --savepoint-max-mb)",
        limits.max_bytes
    ))
}

/// Writes exactly `size` bytes of `from` into a new file at `path` (never through an
/// existing file or link), hashing them.
fn write_file(from: &mut impl Read, path: &Path, size: u64) -> std::io::Result<FileDigest> {
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = from.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the archive ends inside this file",
            ));
        }
        hash.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    out.flush()?;
    Ok(FileDigest {
        sha256: hex::encode(hash.finalize()),
        bytes: size,
    })
}

fn kind_name(kind: tar::EntryType) -> &'static str {
    match kind {
        tar::EntryType::Symlink => "symbolic link",
        tar::EntryType::Link => "hard link",
        tar::EntryType::Char => "character device",
        tar::EntryType::Block => "block device",
        tar::EntryType::Fifo => "FIFO",
        tar::EntryType::Continuous => "contiguous file",
        tar::EntryType::GNUSparse => "sparse file",
        _ => "special",
    }
}

/// Opens `rel` (checked, `/`-separated) under `dir` for reading, one step at a time
/// from the folder before it (`openat` with `O_NOFOLLOW`), so no link, and no folder
/// swapped for a link between a check and the open, leads outside `dir`; the last step
/// must be a plain file (`O_NONBLOCK`: a FIFO put there cannot hang the open).
pub fn open_inside(dir: &Path, rel: &str) -> Result<(File, u64), String> {
    use std::ffi::CString;
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    let parts = check_relative(rel).map_err(|why| format!("file {rel:?}: {why} is not allowed"))?;
    let failed = |e: std::io::Error| match e.raw_os_error() {
        Some(libc::ENOENT) => format!("file {rel} is missing"),
        Some(libc::ELOOP | libc::ENOTDIR) => {
            format!("file {rel} is not a plain file inside the savepoint")
        }
        _ => format!("file {rel}: {}", io_kind(&e)),
    };
    let open_at = |at: libc::c_int, name: &[u8], flags: libc::c_int| -> std::io::Result<OwnedFd> {
        let name =
            CString::new(name).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: `name` is a valid C string; the returned descriptor is owned below.
        let fd = unsafe {
            libc::openat(
                at,
                name.as_ptr(),
                flags | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and nothing else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    };
    let folder = libc::O_RDONLY | libc::O_DIRECTORY;
    let mut at = open_at(libc::AT_FDCWD, dir.as_os_str().as_bytes(), folder).map_err(failed)?;
    let (last, folders) = parts.split_last().expect("a path has a component");
    for part in folders {
        at = open_at(
            std::os::fd::AsRawFd::as_raw_fd(&at),
            part.as_bytes(),
            folder,
        )
        .map_err(failed)?;
    }
    let fd = open_at(
        std::os::fd::AsRawFd::as_raw_fd(&at),
        last.as_bytes(),
        libc::O_RDONLY | libc::O_NONBLOCK,
    )
    .map_err(failed)?;
    let file = File::from(fd);
    let meta = file.metadata().map_err(failed)?;
    if !meta.file_type().is_file() {
        return Err(format!(
            "file {rel} is not a plain file inside the savepoint"
        ));
    }
    Ok((file, meta.len()))
}

/// An I/O error without the path it happened on.
fn io_kind(e: &std::io::Error) -> String {
    e.kind().to_string()
}

/// Reads exactly `len` bytes of `inner`: a file that shrank while it was read is an
/// error, not a short entry in an archive.
struct Exactly<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exactly<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.left as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file shrank while it was read",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Packs the savepoint in `dir` as `<root>/manifest.json` plus the listed files, each
/// opened through [`open_inside`] (nothing else in the folder is read).
pub fn pack<W: Write>(dir: &Path, root: &str, files: &[&str], out: W) -> Result<W, SavepointError> {
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut folders = BTreeSet::new();
    let io = |e: std::io::Error| SavepointError::Io(format!("writing the archive: {}", e.kind()));
    for rel in std::iter::once("manifest.json").chain(files.iter().copied()) {
        let (file, len) = open_inside(dir, rel).map_err(SavepointError::Corrupt)?;
        // Folders first, so any unpacker recreates them as plain folders.
        let mut prefix = String::from(root);
        for part in rel
            .split('/')
            .collect::<Vec<_>>()
            .iter()
            .rev()
            .skip(1)
            .rev()
        {
            prefix = format!("{prefix}/{part}");
            if folders.insert(prefix.clone()) {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                tar.append_data(&mut h, &prefix, std::io::empty())
                    .map_err(io)?;
            }
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(len);
        let data = Exactly {
            inner: file,
            left: len,
        };
        tar.append_data(&mut h, format!("{root}/{rel}"), data)
            .map_err(io)?;
    }
    tar.into_inner().and_then(|gz| gz.finish()).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar entry with exactly these bytes as its name (no checks, as an attacker
    /// writes it).
    fn raw(
        tar: &mut tar::Builder<Vec<u8>>,
        name: &[u8],
        kind: tar::EntryType,
        data: &[u8],
        link: &[u8],
    ) {
        let mut h = tar::Header::new_gnu();
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name);
        gnu.linkname[..link.len()].copy_from_slice(link);
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_cksum();
        tar.append(&h, data).unwrap();
    }

    fn gz(tar: tar::Builder<Vec<u8>>) -> Vec<u8> {
        let bytes = tar.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&bytes).unwrap();
        gz.finish().unwrap()
    }

    fn one(name: &[u8], kind: tar::EntryType, data: &[u8], link: &[u8]) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        raw(
            &mut tar,
            b"sp/manifest.json",
            tar::EntryType::Regular,
            b"{}",
            b"",
        );
        raw(&mut tar, name, kind, data, link);
        gz(tar)
    }

    fn refusal(archive: &[u8], limits: &ArchiveLimits) -> String {
        let dir = tempfile::tempdir().unwrap();
        let err = unpack(archive, dir.path(), limits).unwrap_err().to_string();
        assert!(
            !err.contains(dir.path().to_str().unwrap()),
            "the error shows a server path: {err}"
        );
        err
    }

    #[test]
    fn names_that_leave_the_folder_are_refused() {
        let l = ArchiveLimits::default();
        for (name, why) in [
            (&b"sp/../../etc/x"[..], "\"..\""),
            (b"/etc/x", "absolute"),
            (b"sp/a\\..\\b", "'\\\\'"),
            (b"sp/./x", "\".\""),
            (b"sp//x", "empty"),
            (b"other/x", "outside the savepoint folder"),
            (b"x", "outside the savepoint folder"),
        ] {
            let e = refusal(&one(name, tar::EntryType::Regular, b"data", b""), &l);
            assert!(e.contains(why), "{}: {e}", String::from_utf8_lossy(name));
        }
    }

    #[test]
    fn links_devices_and_fifos_are_refused() {
        let l = ArchiveLimits::default();
        for (kind, what) in [
            (tar::EntryType::Symlink, "symbolic link"),
            (tar::EntryType::Link, "hard link"),
            (tar::EntryType::Char, "character device"),
            (tar::EntryType::Block, "block device"),
            (tar::EntryType::Fifo, "FIFO"),
        ] {
            let e = refusal(&one(b"sp/leak", kind, b"", b"/etc/hostname"), &l);
            assert!(e.contains(what) && e.contains("sp/leak"), "{e}");
        }
        // A root that is itself a link.
        let mut tar = tar::Builder::new(Vec::new());
        raw(&mut tar, b"sp", tar::EntryType::Symlink, b"", b"/etc");
        let e = refusal(&gz(tar), &l);
        assert!(e.contains("symbolic link"), "{e}");
    }

    #[test]
    fn sizes_and_counts_are_bounded_before_the_data_is_written() {
        let limits = ArchiveLimits {
            max_bytes: 1 << 20,
            max_entries: 5,
        };
        let dir = tempfile::tempdir().unwrap();
        let big = vec![0u8; 2 << 20];
        let e = unpack(
            &one(b"sp/state/a/b/0.sst", tar::EntryType::Regular, &big, b"")[..],
            dir.path(),
            &limits,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("1048576 bytes"), "{e}");
        // Nothing of the big file was written.
        let written: u64 = walk(dir.path());
        assert!(written <= 2, "{written} bytes written");

        let mut tar = tar::Builder::new(Vec::new());
        for i in 0..6 {
            raw(
                &mut tar,
                format!("sp/f{i}").as_bytes(),
                tar::EntryType::Regular,
                b"x",
                b"",
            );
        }
        let e = refusal(&gz(tar), &limits);
        assert!(e.contains("over 5 files"), "{e}");
    }

    fn walk(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    walk(&e.path())
                } else {
                    e.metadata().unwrap().len()
                }
            })
            .sum()
    }

    #[test]
    fn duplicates_folders_with_content_and_huge_name_headers_are_refused() {
        let l = ArchiveLimits::default();
        let e = refusal(
            &one(b"sp/manifest.json", tar::EntryType::Regular, b"x", b""),
            &l,
        );
        assert!(e.contains("twice"), "{e}");
        let e = refusal(&one(b"sp/d/", tar::EntryType::Directory, b"xx", b""), &l);
        assert!(e.contains("folder entry with content"), "{e}");
        let e = refusal(
            &one(
                b"././@LongLink",
                tar::EntryType::GNULongName,
                &vec![b'a'; 100_000],
                b"",
            ),
            &l,
        );
        assert!(e.contains("name header"), "{e}");
    }

    #[test]
    fn a_packed_savepoint_unpacks_with_long_names_and_digests() {
        let src = tempfile::tempdir().unwrap();
        let rel = format!("state/{}/{}/0.sst", "o".repeat(64), "s".repeat(64));
        std::fs::create_dir_all(src.path().join(&rel).parent().unwrap()).unwrap();
        std::fs::write(src.path().join(&rel), b"content").unwrap();
        std::fs::write(src.path().join("manifest.json"), b"{}").unwrap();
        std::fs::write(src.path().join("stray"), b"not listed").unwrap();
        let archive = pack(src.path(), "sp-1", &[rel.as_str()], Vec::new()).unwrap();
        let dst = tempfile::tempdir().unwrap();
        let out = unpack(&archive[..], dst.path(), &ArchiveLimits::default()).unwrap();
        assert_eq!(out.root, dst.path().join("sp-1"));
        assert_eq!(
            out.files.keys().collect::<Vec<_>>(),
            vec!["manifest.json", rel.as_str()]
        );
        assert_eq!(out.files[&rel].bytes, 7);
        assert_eq!(
            out.files[&rel].sha256,
            crate::state::savepoint::sha256_of(&b"content"[..])
                .unwrap()
                .0
        );
    }

    #[test]
    fn pack_never_follows_a_link() {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("manifest.json"), b"{}").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", src.path().join("leak")).unwrap();
        let e = pack(src.path(), "sp", &["leak"], Vec::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a plain file"), "{e}");
        std::fs::create_dir(src.path().join("state")).unwrap();
        std::os::unix::fs::symlink("/etc", src.path().join("state/o")).unwrap();
        let e = pack(src.path(), "sp", &["state/o/hostname"], Vec::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a plain file"), "{e}");
    }
}
