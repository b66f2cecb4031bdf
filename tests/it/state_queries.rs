//! Interactive state queries (`/v1/pipelines/{p}/state/{operator}/{store}`) through
//! `router().oneshot`, and `eddy state` against a real server.

use crate::support::guest;
use crate::support::server::{ServerProcess, TestApp};
use axum::body::Body;
use axum::http::{Method, StatusCode};
use eddy_host::log::partitioner::partition_for_key;
use serde_json::Value;
use std::collections::BTreeMap;

pub(crate) const WORDCOUNT: &str = r#"
name = "wc"
[source]
topic = "lines"
[sink]
topic = "counts"
[[operators]]
name = "wordcount"
"#;

const STATE: &str = "/v1/pipelines/wc/state/wordcount/counts";

/// Lines of one word each, keyed by it (so a word's count is in its key's partition):
/// word `wN` appears N times (N from 1 to `words`).
fn lines(words: u32) -> String {
    let mut out = String::new();
    for n in 1..=words {
        for _ in 0..n {
            out.push_str(&format!("{{\"key\":\"w{n}\",\"value\":\"w{n}\"}}\n"));
        }
    }
    out
}

/// Batches the pipeline's tasks ran through their operators, committed or not.
async fn batches_run(t: &TestApp, pipeline: &str) -> u64 {
    let (_, body) = t.call(Method::GET, "/metrics", Body::empty(), &[]).await;
    let text = String::from_utf8(body).unwrap();
    let prefix = format!("eddy_batch_duration_seconds_count{{pipeline=\"{pipeline}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map_or(0, |n| n.trim().parse().unwrap())
}

async fn get(t: &TestApp, query: &str) -> (StatusCode, Value) {
    t.get(&format!("{STATE}?{query}")).await
}

/// Every entry of a scan, following its continuations; and the pages' sizes.
async fn scan_all(t: &TestApp, query: &str) -> (Vec<Value>, Vec<usize>) {
    let mut entries = Vec::new();
    let mut sizes = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let q = match &next {
            Some(c) => format!("{query}&continuation={c}"),
            None => query.to_string(),
        };
        let (s, page) = get(t, &q).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        let got = page["entries"].as_array().unwrap();
        sizes.push(got.len());
        entries.extend(got.iter().cloned());
        match page["continuation"].as_str() {
            Some(c) => next = Some(c.to_string()),
            None => return (entries, sizes),
        }
        assert!(sizes.len() < 100, "a scan that does not end");
    }
}

async fn stop(t: &TestApp) {
    let (s, v) = t
        .json(Method::POST, "/v1/pipelines/wc/stop", Body::empty(), &[])
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

async fn word_count(t: &TestApp, partitions: u32) {
    t.push("wordcount", "wordcount").await;
    t.create_topic("lines", partitions).await;
    let (s, p) = t.create_pipeline(WORDCOUNT).await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_lists_the_stores_it_can_be_queried_on() {
    let t = TestApp::new();
    word_count(&t, 2).await;
    // No store before the operator wrote one (timers are never listed).
    let (s, v) = t.get("/v1/pipelines/wc/state").await;
    assert_eq!((s, v), (StatusCode::OK, serde_json::json!([])));
    t.produce("lines", &lines(3)).await;
    t.wait_caught_up("wc").await;
    let (s, v) = t.get("/v1/pipelines/wc/state").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        serde_json::json!([{"operator": "wordcount", "store": "counts"}])
    );
    let (s, v) = t.get("/v1/pipelines/nope/state").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    // The status draws the topology the dashboard shows: one stage, source to sink.
    let (_, status) = t.get("/v1/pipelines/wc").await;
    assert_eq!(
        status["stages"],
        serde_json::json!([{"index": 0, "source": "lines", "inputs": [{"name": "source", "topic": "lines", "kind": "stream", "kafka": false}], "operators": ["wordcount"], "sink": "counts"}]),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_and_scans_read_the_committed_counts() {
    let t = TestApp::new();
    word_count(&t, 3).await;
    t.produce("lines", &lines(12)).await;
    t.wait_caught_up("wc").await;

    // A key, found in its own partition: the count as a number.
    let (s, v) = get(&t, "key=w7").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let e = &v["entries"][0];
    assert_eq!(e["key"], "w7");
    assert_eq!(e["number"], 7);
    assert_eq!(e["partition"], partition_for_key(b"w7", 3));
    assert!(e["value_b64"].is_string(), "{e}");
    // The same key in another partition: no value there.
    let other = (partition_for_key(b"w7", 3) + 1) % 3;
    let (s, v) = get(&t, &format!("key=w7&partition={other}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("\"w7\""), "{v}");
    // As base64 (`w7`), and a key never counted.
    let (s, v) = get(&t, "key_b64=dzc=").await;
    assert_eq!(
        (s, &v["entries"][0]["number"]),
        (StatusCode::OK, &Value::from(7))
    );
    let (s, _) = get(&t, "key=nothing").await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Every partition, 5 entries a page: each word once, its count right, keys in order
    // within each partition, partitions in order.
    let (entries, sizes) = scan_all(&t, "limit=5").await;
    assert!(
        sizes.iter().all(|&n| n <= 5) && sizes.len() >= 3,
        "{sizes:?}"
    );
    let mut seen: Vec<(u64, String)> = Vec::new();
    for e in &entries {
        let key = e["key"].as_str().unwrap().to_string();
        let n: u64 = key[1..].parse().unwrap();
        assert_eq!(e["number"], n, "{e}");
        assert_eq!(e["partition"], partition_for_key(key.as_bytes(), 3), "{e}");
        seen.push((e["partition"].as_u64().unwrap(), key));
    }
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "partition order, then key order");
    assert_eq!(seen.len(), 12);
    // One partition, a prefix, a range.
    let p = partition_for_key(b"w1", 3);
    let (one, _) = scan_all(&t, &format!("partition={p}&limit=2")).await;
    assert!(one.iter().all(|e| e["partition"] == p) && !one.is_empty());
    assert_eq!(
        one.len(),
        seen.iter().filter(|(q, _)| *q == u64::from(p)).count()
    );
    let (prefixed, _) = scan_all(&t, "prefix=w1").await;
    let mut keys: Vec<&str> = prefixed
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    keys.sort();
    assert_eq!(keys, ["w1", "w10", "w11", "w12"]);
    let (ranged, _) = scan_all(&t, "start=w2&end=w4").await;
    let mut keys: Vec<&str> = ranged.iter().map(|e| e["key"].as_str().unwrap()).collect();
    keys.sort();
    assert_eq!(keys, ["w2", "w3"]);

    // The counts the state holds are the last ones the sink got.
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    for r in t.records("counts").await {
        last.insert(
            r["key"].as_str().unwrap().into(),
            r["value"].as_str().unwrap().into(),
        );
    }
    for e in &entries {
        assert_eq!(last[e["key"].as_str().unwrap()], e["number"].to_string());
    }

    // A stopped pipeline answers from its stored state.
    stop(&t).await;
    let (s, v) = get(&t, "key=w12").await;
    assert_eq!(
        (s, &v["entries"][0]["number"]),
        (StatusCode::OK, &Value::from(12))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_query_sees_only_what_a_task_committed() {
    let t = TestApp::new();
    t.push("wordcount", "wordcount").await;
    t.create_topic("lines", 1).await;
    // Commits only every ten minutes (or at a stop): what the task counts meanwhile stays
    // in its batch.
    let spec = format!(
        "{WORDCOUNT}\n[settings]\ncommit_interval_ms = 600000\ncommit_when_caught_up = false\n"
    );
    let (s, p) = t.create_pipeline(&spec).await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    t.produce("lines", &lines(3)).await;
    // The six lines fit one batch: once it ran, the task has counted them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while batches_run(&t, "wc").await == 0 {
        assert!(std::time::Instant::now() < deadline, "no batch ran");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (_, status) = t.get("/v1/pipelines/wc").await;
    assert_eq!(status["tasks"][0]["committed_offset"], 0, "{status}");
    let (s, v) = get(&t, "key=w3").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "counted, not committed: {v}");
    let (s, v) = get(&t, "").await;
    assert_eq!(
        (s, v["entries"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(0))
    );
    // The stop commits.
    stop(&t).await;
    let (s, v) = get(&t, "key=w3").await;
    assert_eq!(
        (s, &v["entries"][0]["number"]),
        (StatusCode::OK, &Value::from(3))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_queries_get_a_reason() {
    let t = TestApp::new();
    word_count(&t, 2).await;
    t.produce("lines", &lines(2)).await;
    t.wait_caught_up("wc").await;
    let cases: &[(&str, StatusCode, &str)] = &[
        (
            "/v1/pipelines/nope/state/wordcount/counts?key=a",
            StatusCode::NOT_FOUND,
            "nope",
        ),
        (
            "/v1/pipelines/wc/state/nope/counts?key=a",
            StatusCode::NOT_FOUND,
            "wordcount",
        ),
        (
            "/v1/pipelines/wc/state/wordcount/nope?key=a",
            StatusCode::NOT_FOUND,
            "counts",
        ),
        (
            &format!("{STATE}?key=a&key_b64=YQ=="),
            StatusCode::BAD_REQUEST,
            "not both",
        ),
        (
            &format!("{STATE}?key_b64=%25%25"),
            StatusCode::BAD_REQUEST,
            "base64",
        ),
        (
            &format!("{STATE}?key=a&partition=2"),
            StatusCode::BAD_REQUEST,
            "0 to 1",
        ),
        (
            &format!("{STATE}?partition=-1"),
            StatusCode::BAD_REQUEST,
            "partition",
        ),
        (
            &format!("{STATE}?partition=x"),
            StatusCode::BAD_REQUEST,
            "partition",
        ),
        (
            &format!("{STATE}?limit=0"),
            StatusCode::BAD_REQUEST,
            "1 to 1000",
        ),
        (
            &format!("{STATE}?limit=1001"),
            StatusCode::BAD_REQUEST,
            "1 to 1000",
        ),
        (
            &format!("{STATE}?continuation=zz"),
            StatusCode::BAD_REQUEST,
            "continuation",
        ),
        (
            &format!("{STATE}?continuation=AAAACQ"),
            StatusCode::BAD_REQUEST,
            "0 to 1",
        ),
        (
            &format!("{STATE}?key=a&limit=3"),
            StatusCode::BAD_REQUEST,
            "scan",
        ),
        (
            &format!("{STATE}?prefix=a&start=b"),
            StatusCode::BAD_REQUEST,
            "not both",
        ),
    ];
    let long = format!("/v1/pipelines/wc/state/wordcount/{}?key=a", "s".repeat(300));
    let cases = [cases, &[(long.as_str(), StatusCode::NOT_FOUND, "counts")]].concat();
    for (uri, status, detail) in &cases {
        let (s, v) = t.get(uri).await;
        assert_eq!(s, *status, "{uri}: {v}");
        assert!(v["error"].is_string(), "{uri}: {v}");
        let text = v["detail"].as_str().unwrap_or_default();
        assert!(text.contains(detail), "{uri}: {detail:?} not in {v}");
        assert!(!text.contains(t.data_dir().to_str().unwrap()), "{uri}: {v}");
    }
    // A pipeline's timers are not a store a query can name.
    let (s, _) = t.get("/v1/pipelines/wc/state/wordcount/?key=a").await;
    assert!(s.is_client_error(), "{s}");
}

#[test]
fn the_cli_gets_and_scans_with_tables_or_json() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"), &[]);
    server.ok(&[
        "operator",
        "push",
        "wordcount",
        guest("wordcount").to_str().unwrap(),
    ]);
    server.ok(&["topic", "create", "lines", "--partitions", "2"]);
    let spec = dir.path().join("wc.toml");
    std::fs::write(&spec, WORDCOUNT).unwrap();
    server.ok(&["pipeline", "create", spec.to_str().unwrap()]);
    let input = dir.path().join("lines.jsonl");
    std::fs::write(&input, lines(4)).unwrap();
    server.ok(&[
        "topic",
        "produce",
        "lines",
        "--file",
        input.to_str().unwrap(),
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let got = loop {
        let (ok, out, _) =
            server.cli(&["state", "get", "wc", "wordcount", "counts", "w4", "--json"]);
        if ok {
            break serde_json::from_str::<Value>(&out).unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "w4 never counted");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(got["entries"][0]["number"], 4);
    let table = server.ok(&[
        "state",
        "scan",
        "wc",
        "wordcount",
        "counts",
        "--limit",
        "1",
        "--all",
    ]);
    for w in ["w1", "w2", "w3", "w4"] {
        assert!(table.contains(w), "{table}");
    }
    let first = server.ok(&["state", "scan", "wc", "wordcount", "counts", "--limit", "1"]);
    assert!(first.contains("more: --continuation "), "{first}");
    let (ok, _, err) = server.cli(&["state", "get", "wc", "wordcount", "counts", "nope"]);
    assert!(!ok && err.contains("no committed value"), "{err}");
    let (ok, _, err) = server.cli(&["state", "get", "wc", "nope", "counts", "w1"]);
    assert!(!ok && err.contains("has no operator"), "{err}");
}
