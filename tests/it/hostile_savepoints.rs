//! Savepoints from an attacker: uploaded archives with names that leave the folder,
//! links, devices, size bombs; stored savepoints whose folder or manifest someone
//! changed. Each is refused with a 4xx that names the entry and never a server path,
//! and leaves nothing behind; none leads the server to read or serve a file outside
//! the savepoint.

use crate::support::server::TestApp;
use axum::body::Body;
use axum::http::{Method, StatusCode};
use eddy_host::api::ApiConfig;
use eddy_host::control::ArchiveLimits;
use eddy_host::server::ServerConfig;
use serde_json::Value;
use sha2::Digest;
use std::io::{Read, Write};
use std::path::Path;

const WC: &str = "name = \"wc\"\n[source]\ntopic = \"lines\"\n[sink]\ntopic = \"counts\"\n[[operators]]\nname = \"wordcount\"\n";

/// A server with a running word count over two partitions and one savepoint; returns
/// the savepoint's manifest and archive.
pub async fn with_savepoint(t: &TestApp) -> (Value, Vec<u8>) {
    t.push("wordcount", "wordcount").await;
    t.create_topic("lines", 2).await;
    let (s, e) = t.create_pipeline(WC).await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
    let lines: Vec<String> = (0..40)
        .map(|i| format!("{{\"value\":\"the cat {i}\",\"partition\":{}}}", i % 2))
        .collect();
    t.produce("lines", &lines.join("\n")).await;
    t.wait_caught_up("wc").await;
    let (s, m) = t
        .json(
            Method::POST,
            "/v1/pipelines/wc/savepoints",
            Body::empty(),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{m}");
    let id = m["id"].as_str().unwrap();
    let (s, archive) = t
        .call(
            Method::GET,
            &format!("/v1/savepoints/{id}/archive"),
            Body::empty(),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    (m, archive)
}

/// The entries of a savepoint archive: (path, bytes).
pub fn entries(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    tar.entries()
        .unwrap()
        .filter_map(|e| {
            let mut e = e.unwrap();
            if e.header().entry_type().is_dir() {
                return None;
            }
            let path = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            Some((path, data))
        })
        .collect()
}

/// One tar entry exactly as given (no checks: the way an attacker writes it).
fn raw(tar: &mut tar::Builder<Vec<u8>>, name: &str, kind: tar::EntryType, data: &[u8], link: &str) {
    let mut h = tar::Header::new_gnu();
    let gnu = h.as_gnu_mut().unwrap();
    gnu.name[..name.len()].copy_from_slice(name.as_bytes());
    gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_cksum();
    tar.append(&h, data).unwrap();
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// An archive of `files` under `root` (plain files), plus `extra` entries.
fn archive_of(
    root: &str,
    files: &[(String, Vec<u8>)],
    extra: &[(&str, tar::EntryType, &str)],
) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let rel = path.split_once('/').map_or(path.as_str(), |(_, r)| r);
        raw(
            &mut tar,
            &format!("{root}/{rel}"),
            tar::EntryType::Regular,
            data,
            "",
        );
    }
    for (name, kind, link) in extra {
        raw(&mut tar, name, *kind, b"", link);
    }
    gz(&tar.into_inner().unwrap())
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The archive's files with its manifest changed by `edit`.
fn with_manifest(files: &[(String, Vec<u8>)], edit: impl Fn(&mut Value)) -> Vec<(String, Vec<u8>)> {
    files
        .iter()
        .map(|(p, d)| {
            if p.ends_with("/manifest.json") {
                let mut m: Value = serde_json::from_slice(d).unwrap();
                edit(&mut m);
                (p.clone(), serde_json::to_vec(&m).unwrap())
            } else {
                (p.clone(), d.clone())
            }
        })
        .collect()
}

/// Everything under the savepoints folder: (path, size).
fn listing(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            if meta.is_dir() {
                stack.push(e.path());
            }
            out.push((
                e.path().strip_prefix(dir).unwrap().display().to_string(),
                meta.len(),
            ));
        }
    }
    out.sort();
    out
}

async fn upload(t: &TestApp, archive: Vec<u8>) -> (StatusCode, Value) {
    t.json(
        Method::POST,
        "/v1/savepoints",
        archive,
        &[("content-type", "application/gzip")],
    )
    .await
}

fn assert_refused(s: StatusCode, e: &Value, data_dir: &Path, what: &str) {
    assert_eq!(s, StatusCode::BAD_REQUEST, "{what}: {e}");
    let detail = e["detail"].as_str().unwrap();
    assert!(
        !detail.contains(data_dir.to_str().unwrap()) && !detail.contains(".upload-"),
        "{what}: the answer shows a server path: {detail}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn uploaded_archives_never_reach_outside_their_folder() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        savepoint_limits: ArchiveLimits {
            max_bytes: 8 << 20,
            max_entries: 50,
        },
        ..ServerConfig::default()
    };
    let t = TestApp::open_config(dir, ApiConfig::default(), None, config);
    let (m, archive) = with_savepoint(&t).await;
    let id = m["id"].as_str().unwrap().to_string();
    let data = t.data_dir().to_path_buf();
    let savepoints = data.join("savepoints");
    // Delete the stored one, so each upload below would be new.
    let (s, _) = t
        .call(
            Method::DELETE,
            &format!("/v1/savepoints/{id}"),
            Body::empty(),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let before = listing(&savepoints);
    let files = entries(&archive);
    assert!(files.iter().any(|(p, _)| p.ends_with(".sst")), "{files:?}");

    // A file outside the folder whose checksum matches: the manifest names it by an
    // absolute path or with `..`. Whether the file exists must not show either.
    let secret = std::env::temp_dir().join(format!("eddy-secret-{}", std::process::id()));
    std::fs::write(&secret, b"the secret").unwrap();
    let depth = "../".repeat(savepoints.components().count() + 2);
    for (name, path) in [
        ("absolute", secret.display().to_string()),
        ("dot-dot", format!("{depth}{}", secret.display())),
        ("missing", "/nonexistent/eddy-x".to_string()),
    ] {
        let edited = with_manifest(&files, |m| {
            m["stores"][0]["file"] = path.clone().into();
            m["stores"][0]["sha256"] = sha256(b"the secret").into();
            m["stores"][0]["bytes"] = 10.into();
        });
        let (s, e) = upload(&t, archive_of(&id, &edited, &[])).await;
        assert_refused(s, &e, &data, name);
        let detail = e["detail"].as_str().unwrap();
        assert!(detail.contains("must be in file"), "{name}: {detail}");
        assert!(
            !detail.contains("missing") && !detail.contains("checksum"),
            "{name}: an existence oracle: {detail}"
        );
    }
    std::fs::remove_file(&secret).unwrap();

    // Links, devices and FIFOs, listed in the manifest or not.
    let root = id.as_str();
    for (name, kind, link) in [
        (
            format!("{root}/leak"),
            tar::EntryType::Symlink,
            "/etc/hostname",
        ),
        (
            format!("{root}/state/wordcount/counts/9.sst"),
            tar::EntryType::Link,
            "/etc/hostname",
        ),
        (format!("{root}/dev"), tar::EntryType::Char, ""),
        (format!("{root}/fifo"), tar::EntryType::Fifo, ""),
    ] {
        let (s, e) = upload(&t, archive_of(root, &files, &[(&name, kind, link)])).await;
        assert_refused(s, &e, &data, &name);
        assert!(e["detail"].as_str().unwrap().contains(&name), "{e}");
    }
    // A root that is a link to another folder.
    let mut tar = tar::Builder::new(Vec::new());
    raw(&mut tar, root, tar::EntryType::Symlink, b"", "/etc");
    raw(
        &mut tar,
        &format!("{root}/manifest.json"),
        tar::EntryType::Regular,
        b"{}",
        "",
    );
    let (s, e) = upload(&t, gz(&tar.into_inner().unwrap())).await;
    assert_refused(s, &e, &data, "root link");
    assert!(
        e["detail"].as_str().unwrap().contains("symbolic link"),
        "{e}"
    );

    // Entries outside the root, and files the manifest does not list.
    for extra in [
        format!("{root}/../escape"),
        format!("/{root}/abs"),
        "other/x".to_string(),
    ] {
        let mut tar = tar::Builder::new(Vec::new());
        for (p, d) in &files {
            raw(&mut tar, p, tar::EntryType::Regular, d, "");
        }
        raw(&mut tar, &extra, tar::EntryType::Regular, b"x", "");
        let (s, e) = upload(&t, gz(&tar.into_inner().unwrap())).await;
        assert_refused(s, &e, &data, &extra);
    }
    let mut unlisted = files.clone();
    unlisted.push((format!("{root}/notes.txt"), b"hello".to_vec()));
    let (s, e) = upload(&t, archive_of(root, &unlisted, &[])).await;
    assert_refused(s, &e, &data, "unlisted");
    assert!(e["detail"].as_str().unwrap().contains("not listed"), "{e}");

    // A size bomb: 300 MiB of zeros in a few hundred KiB, past the 8 MiB limit; and
    // more files than the limit.
    let bomb = {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let mut tar = tar::Builder::new(&mut gz);
        let mut h = tar::Header::new_gnu();
        h.set_size(300 << 20);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(
            &mut h,
            format!("{root}/state/wordcount/counts/0.sst"),
            std::io::repeat(0).take(300 << 20),
        )
        .unwrap();
        tar.finish().unwrap();
        drop(tar);
        gz.finish().unwrap()
    };
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    let (s, e) = upload(&t, bomb).await;
    assert_refused(s, &e, &data, "size bomb");
    assert!(
        e["detail"].as_str().unwrap().contains("8388608 bytes"),
        "{e}"
    );
    let many: Vec<(String, Vec<u8>)> = (0..60).map(|i| (format!("{root}/f{i}"), vec![1])).collect();
    let (s, e) = upload(&t, archive_of(root, &many, &[])).await;
    assert_refused(s, &e, &data, "file count");

    // None of it left a trace, and the honest archive is still accepted.
    assert_eq!(listing(&savepoints), before);
    let (_, list) = t.get("/v1/savepoints").await;
    assert_eq!(list.as_array().unwrap().len(), 0);
    let (s, e) = upload(&t, archive.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stored_savepoint_with_links_is_neither_served_nor_restored() {
    let t = TestApp::new();
    let (m, _) = with_savepoint(&t).await;
    let id = m["id"].as_str().unwrap().to_string();
    let folder = t.data_dir().join("savepoints").join(&id);
    // A link someone put beside the files (as an upload before this check could): the
    // download holds the listed files only.
    std::os::unix::fs::symlink("/etc/hostname", folder.join("leak")).unwrap();
    let (s, archive) = t
        .call(
            Method::GET,
            &format!("/v1/savepoints/{id}/archive"),
            Body::empty(),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<String> = entries(&archive).into_iter().map(|(p, _)| p).collect();
    assert!(names.iter().all(|n| !n.contains("leak")), "{names:?}");
    // A listed file replaced by a link: neither downloaded nor restored.
    let file = folder.join(m["stores"][0]["file"].as_str().unwrap());
    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", &file).unwrap();
    let (s, e) = t
        .json(
            Method::GET,
            &format!("/v1/savepoints/{id}/archive"),
            Body::empty(),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert!(
        e["detail"].as_str().unwrap().contains("not a plain file"),
        "{e}"
    );
    t.json(Method::POST, "/v1/pipelines/wc/stop", Body::empty(), &[])
        .await;
    let (s, e) = t
        .post_json(
            "/v1/pipelines/wc/restore",
            format!("{{\"savepoint\":\"{id}\"}}"),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert!(
        e["detail"].as_str().unwrap().contains("not a plain file"),
        "{e}"
    );
    // A savepoint folder that is itself a link is no savepoint.
    let elsewhere = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), t.data_dir().join("savepoints/linked-1")).unwrap();
    let (s, _) = t.get("/v1/savepoints/linked-1").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}
