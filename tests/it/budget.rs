//! The server's memory budget (`eddy serve --memory-budget`): a Wasm memory that would
//! pass it does not grow and the record fails naming the budget; the tasks' state caches
//! are charged to it and dropped when it runs short; `/v1/server` and `/metrics` report
//! it.

use crate::support::server::TestApp;
use eddy_host::api::ApiConfig;
use eddy_host::server::ServerConfig;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

fn server_with_budget(bytes: u64) -> TestApp {
    TestApp::open_config(
        tempfile::tempdir().unwrap(),
        ApiConfig::default(),
        None,
        ServerConfig {
            memory_budget: Some(bytes),
            ..ServerConfig::default()
        },
    )
}

const PIPELINE: &str = r#"
name = "hog"
source = { topic = "in" }
sink = { topic = "out" }
[[operators]]
name = "probe"
[settings]
on_error = "skip"
batch_size = 1
SETTINGS
"#;

/// Waits until the pipeline's only task committed `offset`; returns the task's status.
async fn wait_committed(app: &TestApp, offset: u64) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, v) = app.get("/v1/pipelines/hog").await;
        let task = &v["tasks"][0];
        if task["committed_offset"] == offset {
            return task.clone();
        }
        assert!(
            v["state"] == "running" && Instant::now() < deadline,
            "never committed {offset}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wasm_memory_that_would_pass_the_budget_does_not_grow_and_the_record_fails_naming_it() {
    let app = server_with_budget(256 * MIB);
    app.push("probe", "fixture-probe").await;
    app.create_topic("in", 1).await;
    // The instance's own limit (1 GiB) is above what the budget leaves operators.
    let spec = PIPELINE.replace("SETTINGS", "memory_limit_mb = 1024");
    let (status, v) = app.create_pipeline(&spec).await;
    assert!(status.is_success(), "{v}");
    app.produce("in", "{\"value\": \"bomb\"}\n{\"value\": \"a\"}\n")
        .await;
    let task = wait_committed(&app, 2).await;
    assert_eq!(task["errors"], 1, "{task}");
    let error = task["last_error"].as_str().unwrap();
    assert!(
        error.contains("memory budget is used up") && error.contains("--memory-budget"),
        "{error}"
    );

    let (status, server) = app.get("/v1/server").await;
    assert!(status.is_success(), "{server}");
    let memory = &server["memory"];
    assert_eq!(memory["budget_bytes"], 256 * MIB, "{server}");
    assert_eq!(memory["rocksdb_limit_bytes"], 64 * MIB, "{server}");
    // The live instance (started again after the trap) holds some memory, the trapped
    // one gave its memory back.
    let wasm = memory["wasm_bytes"].as_u64().unwrap();
    assert!(wasm > 0 && wasm < 64 * MIB, "{server}");

    let (status, text) = app
        .call(
            axum::http::Method::GET,
            "/metrics",
            axum::body::Body::empty(),
            &[],
        )
        .await;
    assert!(status.is_success());
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains(&format!(
            "eddy_memory_bytes{{part=\"budget\"}} {}",
            256 * MIB
        )),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn state_caches_are_dropped_when_the_budget_runs_short() {
    // 128 MiB: RocksDB 32, operators 96; tasks shed past 90% of that.
    let app = server_with_budget(128 * MIB);
    app.push("probe", "fixture-probe").await;
    app.create_topic("in", 1).await;
    // A cache per store far above the budget: only the budget keeps it small.
    let spec = PIPELINE.replace("SETTINGS", "state_cache_mb = 1024");
    let (status, v) = app.create_pipeline(&spec).await;
    assert!(status.is_success(), "{v}");
    // Each record writes 5 values of 8 MiB (40 MiB); six of them would cache 240 MiB.
    let lines: String = (0..6)
        .map(|i| format!("{{\"value\": \"big s{i} 5 8\"}}\n"))
        .collect();
    app.produce("in", &lines).await;
    let task = wait_committed(&app, 6).await;
    assert_eq!(task["errors"], 0, "{task}");
    let (_, server) = app.get("/v1/server").await;
    let state = server["memory"]["state_bytes"].as_u64().unwrap();
    assert!(
        state <= 96 * MIB,
        "the tasks' state caches hold {state} bytes, over what the budget leaves them: {server}"
    );
}
