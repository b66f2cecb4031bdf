//! A restore that is refused changes nothing: not the state, not the changelog topics,
//! not the positions, and not the next boot. Each bad field of a manifest is tried on
//! a stored savepoint (as someone who edited its folder would), and a restore that
//! cannot be finished leaves its pipeline failed with the reason, never the boot.

use crate::hostile_savepoints::with_savepoint;
use crate::support::server::TestApp;
use axum::body::Body;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Digest;
use std::path::Path;

/// What a refused restore must leave as it was.
#[derive(Debug, PartialEq)]
struct Snapshot {
    state: std::collections::BTreeMap<(String, String, u32, Vec<u8>), Vec<u8>>,
    /// Every topic with its partitions' end offsets.
    topics: Vec<(String, Vec<u64>)>,
    /// Every task's committed offset and watermark.
    positions: Vec<(u64, i64)>,
}

async fn snapshot(t: &TestApp) -> Snapshot {
    let db = t.app.as_ref().unwrap().controller.db().clone();
    let (_, topics) = t.get("/v1/topics").await;
    let mut topics: Vec<(String, Vec<u64>)> = topics
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let ends = t["partition_offsets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["end_offset"].as_u64().unwrap())
                .collect();
            (t["name"].as_str().unwrap().to_string(), ends)
        })
        .collect();
    topics.sort();
    let positions = (0..2)
        .map(|partition| {
            let id = eddy_host::state::TaskId {
                pipeline: "wc".into(),
                stage: 0,
                partition,
            };
            let p = eddy_host::state::load_position(&db, &id).unwrap();
            (p.offset, p.watermark)
        })
        .collect();
    Snapshot {
        state: db.dump_pipeline("wc").unwrap(),
        topics,
        positions,
    }
}

/// Copies savepoint `id` to `copy`, with its manifest changed by `edit`.
fn bad_copy(savepoints: &Path, id: &str, copy: &str, edit: impl FnOnce(&mut Value, &Path)) {
    let (from, to) = (savepoints.join(id), savepoints.join(copy));
    copy_dir(&from, &to);
    let path = to.join("manifest.json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    m["id"] = copy.into();
    edit(&mut m, &to);
    std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_manifest_field_is_refused_before_anything_changes() {
    let t = TestApp::new();
    let (m, _) = with_savepoint(&t).await;
    let id = m["id"].as_str().unwrap().to_string();
    // More input after the savepoint, so a restore would visibly change things.
    let more: Vec<String> = (0..20)
        .map(|i| format!("{{\"value\":\"dog {i}\",\"partition\":{}}}", i % 2))
        .collect();
    t.produce("lines", &more.join("\n")).await;
    t.wait_caught_up("wc").await;
    t.json(Method::POST, "/v1/pipelines/wc/stop", Body::empty(), &[])
        .await;
    let outputs_before = t.records("counts").await.len();
    let before = snapshot(&t).await;
    let savepoints = t.data_dir().join("savepoints");

    type Edit = Box<dyn FnOnce(&mut Value, &Path)>;
    let store = |f: &'static str, v: Value| -> Edit {
        Box::new(move |m: &mut Value, _: &Path| m["stores"][0][f] = v)
    };
    let cases: Vec<(&str, Edit, &str)> = vec![
        ("store-dots", store("store", "../../x".into()), "store name"),
        (
            "partition-big",
            store("partition", 1_000_000.into()),
            "partition 1000000",
        ),
        (
            "partition-max",
            store("partition", u32::MAX.into()),
            "partition 4294967295",
        ),
        (
            "file-path",
            store("file", "../x.sst".into()),
            "must be in file",
        ),
        ("operator", store("operator", "ghost".into()), "ghost"),
        ("keys", store("keys", 999_999.into()), "keys"),
        (
            "checksum",
            store("sha256", "0".repeat(64).into()),
            "checksum",
        ),
        (
            "offset",
            Box::new(|m: &mut Value, _: &Path| m["tasks"][0]["offset"] = u64::MAX.into()),
            "past the largest offset",
        ),
        (
            "task-twice",
            Box::new(|m: &mut Value, _: &Path| {
                let t0 = m["tasks"][0].clone();
                m["tasks"][1] = t0;
            }),
            "appears twice",
        ),
        (
            "task-stage",
            Box::new(|m: &mut Value, _: &Path| m["tasks"][1]["stage"] = 5.into()),
            "stage 5",
        ),
        (
            "task-missing",
            Box::new(|m: &mut Value, _: &Path| {
                m["tasks"].as_array_mut().unwrap().pop();
            }),
            "partition(s)",
        ),
        (
            "upstream",
            Box::new(|m: &mut Value, _: &Path| {
                m["tasks"][0]["upstream_watermarks"] = json!([1, 2, 3])
            }),
            "upstream watermarks",
        ),
        (
            "pipeline-name",
            Box::new(|m: &mut Value, _: &Path| m["pipeline"] = "other".into()),
            "names pipeline",
        ),
        (
            // A file whose checksum matches but that is no store file.
            "not-sst",
            Box::new(|m: &mut Value, dir: &Path| {
                let file = dir.join(m["stores"][0]["file"].as_str().unwrap());
                let garbage = b"not an sst file at all".repeat(100);
                std::fs::write(&file, &garbage).unwrap();
                m["stores"][0]["sha256"] = hex::encode(sha2::Sha256::digest(&garbage)).into();
                m["stores"][0]["bytes"] = garbage.len().into();
            }),
            "cannot be read as a store file",
        ),
    ];
    for (copy, edit, why) in cases {
        let copy = format!("bad-{copy}");
        bad_copy(&savepoints, &id, &copy, edit);
        let (s, e) = t
            .post_json(
                "/v1/pipelines/wc/restore",
                format!("{{\"savepoint\":\"{copy}\"}}"),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{copy}: {e}");
        assert!(e["detail"].as_str().unwrap().contains(why), "{copy}: {e}");
        assert!(snapshot(&t).await == before, "{copy} changed something");
        let (_, p) = t.get("/v1/pipelines/wc").await;
        assert_eq!(p["state"], "stopped", "{copy}: {p}");
    }

    // The next boot is the same, and the pipeline resumes where it was: nothing is
    // processed again.
    let t = t.restart();
    assert!(
        snapshot(&t).await == before,
        "the restart changed something"
    );
    let (s, e) = t
        .json(Method::POST, "/v1/pipelines/wc/start", Body::empty(), &[])
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    t.wait_caught_up("wc").await;
    assert_eq!(t.records("counts").await.len(), outputs_before);

    // The honest savepoint still restores.
    t.json(Method::POST, "/v1/pipelines/wc/stop", Body::empty(), &[])
        .await;
    let (s, e) = t
        .post_json(
            "/v1/pipelines/wc/restore",
            format!("{{\"savepoint\":\"{id}\"}}"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_that_cannot_finish_fails_its_pipeline_not_the_boot() {
    let t = TestApp::new();
    let (m, _) = with_savepoint(&t).await;
    let id = m["id"].as_str().unwrap().to_string();
    t.json(Method::POST, "/v1/pipelines/wc/stop", Body::empty(), &[])
        .await;
    // A journal as a crash in the middle of a restore leaves it, for a savepoint damaged
    // since (a copy of the good one with a file changed).
    let savepoints = t.data_dir().join("savepoints");
    bad_copy(&savepoints, &id, "wc-bad-1", |m, dir| {
        let file = dir.join(m["stores"][0]["file"].as_str().unwrap());
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[10] ^= 1;
        std::fs::write(&file, bytes).unwrap();
    });
    let db = t.app.as_ref().unwrap().controller.db().clone();
    let mut wb = rocksdb::WriteBatch::default();
    wb.put_cf(
        db.cf(eddy_host::state::Cf::Meta),
        b"restore/wc",
        b"wc-bad-1",
    );
    db.write(wb).unwrap();
    drop(db);
    let t = t.restart();
    let (_, p) = t.get("/v1/pipelines/wc").await;
    assert_eq!(p["state"], "failed", "{p}");
    let reason = p["reason"].as_str().unwrap();
    assert!(
        reason.contains("wc-bad-1") && reason.contains("did not finish"),
        "{p}"
    );
    // It cannot start on the half-replaced state, its savepoint cannot go...
    let (s, e) = t
        .json(Method::POST, "/v1/pipelines/wc/start", Body::empty(), &[])
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert!(e["detail"].as_str().unwrap().contains("wc-bad-1"), "{e}");
    let (s, e) = t
        .json(
            Method::DELETE,
            "/v1/savepoints/wc-bad-1",
            Body::empty(),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    // ... and a restore from a savepoint that exists ends it.
    let (s, e) = t
        .post_json(
            "/v1/pipelines/wc/restore",
            format!("{{\"savepoint\":\"{id}\"}}"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    let (_, p) = t.get("/v1/pipelines/wc").await;
    assert_eq!(p["state"], "stopped", "{p}");
    let (s, e) = t
        .json(Method::POST, "/v1/pipelines/wc/start", Body::empty(), &[])
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
}
