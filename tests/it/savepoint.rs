//! Savepoints: taken while running, moved between servers as one archive, restored
//! exactly; damaged or mismatched ones refused without changing anything.

use crate::support::server::TestApp;
use axum::body::Body;
use axum::http::{Method, StatusCode};
use serde_json::Value;

const WC: &str = "name = \"wc\"\n[source]\ntopic = \"lines\"\n[sink]\ntopic = \"counts\"\n[[operators]]\nname = \"wordcount\"\nconfig = { lowercase = true }\n";

/// Deterministic input, each record on an explicit partition, so every server puts each
/// record at the same offset.
fn input(from: usize, to: usize) -> String {
    const WORDS: &[&str] = &[
        "the", "cat", "sat", "on", "a", "mat", "and", "the", "dog", "ran",
    ];
    (from..to)
        .map(|i| {
            let text: Vec<&str> = (0..(i % 5 + 1))
                .map(|j| WORDS[(i * 7 + j * 3) % WORDS.len()])
                .collect();
            format!(
                "{{\"value\":\"{}\",\"partition\":{},\"timestamp\":{i}}}",
                text.join(" "),
                i % 2
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn set_up(t: &TestApp) {
    t.push("wordcount", "wordcount").await;
    t.create_topic("lines", 2).await;
}

fn outputs(records: &[Value]) -> Vec<(u64, String, String)> {
    let mut out: Vec<(u64, String, String)> = records
        .iter()
        .map(|r| {
            (
                r["partition"].as_u64().unwrap(),
                r["key"].as_str().unwrap().to_string(),
                r["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_savepoint_moves_a_pipeline_to_another_server_exactly() {
    // The uninterrupted run.
    let whole = TestApp::new();
    set_up(&whole).await;
    whole.create_pipeline(WC).await;
    whole.produce("lines", &input(0, 400)).await;
    whole.wait_caught_up("wc").await;
    let expected = outputs(&whole.records("counts").await);
    let expected_state = whole
        .app
        .as_ref()
        .unwrap()
        .controller
        .db()
        .dump_pipeline("wc")
        .unwrap();

    // First half on server A, then a savepoint while the pipeline runs.
    let a = TestApp::new();
    set_up(&a).await;
    a.create_pipeline(WC).await;
    a.produce("lines", &input(0, 200)).await;
    a.wait_caught_up("wc").await;
    let (s, m) = a
        .json(
            Method::POST,
            "/v1/pipelines/wc/savepoints",
            Body::empty(),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{m}");
    let id = m["id"].as_str().unwrap().to_string();
    assert_eq!(m["pipeline"], "wc");
    assert_eq!(m["tasks"].as_array().unwrap().len(), 2);
    assert!(m["keys"].as_u64().unwrap() > 0);
    let (_, p) = a.get("/v1/pipelines/wc").await;
    assert_eq!(
        p["state"], "running",
        "a savepoint does not stop the pipeline"
    );
    let (s, archive) = a
        .call(
            Method::GET,
            &format!("/v1/savepoints/{id}/archive"),
            Body::empty(),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let first_half = outputs(&a.records("counts").await);

    // Server B: the archive, a pipeline created from it, the second half.
    let b = TestApp::new();
    set_up(&b).await;
    let (s, up) = b
        .json(
            Method::POST,
            "/v1/savepoints",
            archive.clone(),
            &[("content-type", "application/gzip")],
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{up}");
    assert_eq!(up["id"], id.as_str());
    let (s, e) = b
        .json(
            Method::POST,
            "/v1/savepoints",
            archive,
            &[("content-type", "application/gzip")],
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    b.produce("lines", &input(0, 400)).await;
    let (s, p) = b
        .create_pipeline(&format!("from_savepoint = \"{id}\"\n{WC}"))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    b.wait_caught_up("wc").await;
    let second_half = outputs(&b.records("counts").await);

    let mut combined = first_half;
    combined.extend(second_half);
    combined.sort();
    assert_eq!(
        combined, expected,
        "outputs before and after the move equal one uninterrupted run"
    );
    let state = b
        .app
        .as_ref()
        .unwrap()
        .controller
        .db()
        .dump_pipeline("wc")
        .unwrap();
    assert!(
        state == expected_state,
        "state equals the uninterrupted run's, key for key"
    );

    // And the savepoint can be restored in place on a stopped pipeline.
    b.json(Method::POST, "/v1/pipelines/wc/stop", Body::empty(), &[])
        .await;
    let (s, r) = b
        .post_json(
            "/v1/pipelines/wc/restore",
            format!("{{\"savepoint\":\"{id}\"}}"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["keys"], m["keys"]);
    let (_, p) = b.get("/v1/pipelines/wc").await;
    let offsets: Vec<u64> = p["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["committed_offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, [100, 100], "offsets back at the savepoint");
    // Rebuilding from the changelog after a restore gives the restored state.
    let restored = b
        .app
        .as_ref()
        .unwrap()
        .controller
        .db()
        .dump_pipeline("wc")
        .unwrap();
    b.json(
        Method::POST,
        "/v1/pipelines/wc/rebuild-state",
        Body::empty(),
        &[],
    )
    .await;
    assert!(
        b.app
            .as_ref()
            .unwrap()
            .controller
            .db()
            .dump_pipeline("wc")
            .unwrap()
            == restored
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn damaged_or_mismatched_savepoints_are_refused_and_change_nothing() {
    let t = TestApp::new();
    set_up(&t).await;
    t.push("probe", "fixture-probe").await;
    t.create_pipeline(WC).await;
    t.produce("lines", &input(0, 50)).await;
    t.wait_caught_up("wc").await;
    let (_, m) = t
        .json(
            Method::POST,
            "/v1/pipelines/wc/savepoints",
            Body::empty(),
            &[],
        )
        .await;
    let id = m["id"].as_str().unwrap().to_string();
    let (_, archive) = t
        .call(
            Method::GET,
            &format!("/v1/savepoints/{id}/archive"),
            Body::empty(),
            &[],
        )
        .await;
    t.json(Method::POST, "/v1/pipelines/wc/stop", Body::empty(), &[])
        .await;
    t.produce("lines", &input(50, 60)).await;
    t.json(Method::POST, "/v1/pipelines/wc/start", Body::empty(), &[])
        .await;
    t.wait_caught_up("wc").await;
    t.json(Method::POST, "/v1/pipelines/wc/stop", Body::empty(), &[])
        .await;
    let db = t.app.as_ref().unwrap().controller.db().clone();
    let before = db.dump_pipeline("wc").unwrap();
    let restore = |sp: String| format!("{{\"savepoint\":\"{sp}\"}}");

    // A flipped byte: the archive does not even unpack (gzip checksum), or a file's
    // checksum fails.
    let mut flipped = archive.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x55;
    let (s, e) = t.json(Method::POST, "/v1/savepoints", flipped, &[]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    let (s, e) = t
        .json(
            Method::POST,
            "/v1/savepoints",
            b"not an archive".to_vec(),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");

    // A damaged file or a missing file in the stored savepoint.
    let dir = t.app.as_ref().unwrap().controller.savepoints().path(&id);
    let file = dir.join(m["stores"][0]["file"].as_str().unwrap());
    let original = std::fs::read(&file).unwrap();
    let mut damaged = original.clone();
    damaged[10] ^= 1;
    std::fs::write(&file, damaged).unwrap();
    let (s, e) = t
        .post_json("/v1/pipelines/wc/restore", restore(id.clone()))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert!(e["detail"].as_str().unwrap().contains("checksum"), "{e}");
    std::fs::remove_file(&file).unwrap();
    let (s, e) = t
        .post_json("/v1/pipelines/wc/restore", restore(id.clone()))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert!(e["detail"].as_str().unwrap().contains("missing"), "{e}");
    std::fs::write(&file, &original).unwrap();

    // Another pipeline's shape.
    t.create_topic("cmds", 2).await;
    t.create_pipeline("name = \"other\"\n[source]\ntopic = \"cmds\"\n[sink]\ntopic = \"o\"\n[[operators]]\nname = \"probe\"\n").await;
    t.json(Method::POST, "/v1/pipelines/other/stop", Body::empty(), &[])
        .await;
    let (s, e) = t
        .post_json("/v1/pipelines/other/restore", restore(id.clone()))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert!(
        e["detail"].as_str().unwrap().contains("does not fit"),
        "{e}"
    );
    let (s, e) = t
        .post_json("/v1/pipelines/wc/restore", restore("nope".into()))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");

    // None of it changed anything.
    assert!(db.dump_pipeline("wc").unwrap() == before);
    let (_, p) = t.get("/v1/pipelines/wc").await;
    let offsets: Vec<u64> = p["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["committed_offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, [30, 30]);

    // A running pipeline cannot be restored underneath; a savepoint can be deleted.
    t.json(Method::POST, "/v1/pipelines/wc/start", Body::empty(), &[])
        .await;
    let (s, e) = t
        .post_json("/v1/pipelines/wc/restore", restore(id.clone()))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    let (_, list) = t.get("/v1/pipelines/wc/savepoints").await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (s, _) = t
        .call(
            Method::DELETE,
            &format!("/v1/savepoints/{id}"),
            Body::empty(),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = t
        .call(
            Method::GET,
            &format!("/v1/savepoints/{id}"),
            Body::empty(),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}
