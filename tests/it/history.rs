//! `GET /v1/pipelines/{name}/history`: the tasks' counters sampled every second.

use crate::state_queries::WORDCOUNT;
use crate::support::server::TestApp;
use axum::body::Body;
use axum::http::{Method, StatusCode};
use serde_json::Value;
use std::time::{Duration, Instant};

/// The events in of every task at each sample.
fn events_in(history: &Value) -> Vec<u64> {
    history["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["events_in"].as_u64().unwrap())
                .sum()
        })
        .collect()
}

async fn wait_history(t: &TestApp, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, v) = t.get("/v1/pipelines/wc/history").await;
        assert_eq!(s, StatusCode::OK, "{v}");
        if cond(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_history_samples_each_task_every_second() {
    let t = TestApp::new();
    t.push("wordcount", "wordcount").await;
    t.create_topic("lines", 2).await;
    let (s, p) = t.create_pipeline(WORDCOUNT).await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let before = wait_history(&t, "a first sample", |v| {
        !v["samples"].as_array().unwrap().is_empty()
    })
    .await;
    assert_eq!(before["interval_ms"], 1000);
    assert_eq!(events_in(&before).last(), Some(&0));
    let lines: String = (0..50)
        .map(|i| format!("{{\"key\":\"k{i}\",\"value\":\"w{i}\"}}\n"))
        .collect();
    t.produce("lines", &lines).await;
    let after = wait_history(&t, "a sample with every line", |v| {
        events_in(v).last() == Some(&50)
    })
    .await;
    let samples = after["samples"].as_array().unwrap();
    // Samples a second apart (give or take the loop's tick), oldest first, one entry per task.
    let times: Vec<i64> = samples
        .iter()
        .map(|s| s["at_ms"].as_i64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[1] - w[0] >= 900), "{times:?}");
    assert!(
        samples
            .iter()
            .all(|s| s["tasks"].as_array().unwrap().len() == 2)
    );
    assert!(samples.iter().all(|s| s["state"] == "running"));
    // The counts rose: an earlier sample had none.
    assert_eq!(events_in(&after)[0], 0, "{after}");

    // Stopped here, the tasks keep their last counters.
    let (s, v) = t
        .json(Method::POST, "/v1/pipelines/wc/stop", Body::empty(), &[])
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let stopped = wait_history(&t, "a sample of the stopped pipeline", |v| {
        v["samples"].as_array().unwrap().last().unwrap()["state"] == "stopped"
    })
    .await;
    assert_eq!(events_in(&stopped).last(), Some(&50), "{stopped}");
    // Stopped since the server started, it has no task to sample: its state alone (its
    // stored state is not read every second).
    let t = t.restart();
    let restarted = wait_history(&t, "a sample after the restart", |v| {
        !v["samples"].as_array().unwrap().is_empty()
    })
    .await;
    let first = &restarted["samples"][0];
    assert_eq!(first["state"], "stopped", "{restarted}");
    assert_eq!(first["tasks"], serde_json::json!([]), "{restarted}");

    let (s, v) = t.get("/v1/pipelines/nope/history").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, _) = t
        .call(Method::DELETE, "/v1/pipelines/wc", Body::empty(), &[])
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = t.get("/v1/pipelines/wc/history").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}
