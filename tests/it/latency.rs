//! Latency at low load: a task that caught up with its input commits at once, so an
//! output is visible long before the commit interval; `commit_when_caught_up = false`
//! keeps the interval, and the default stays out of the stored record (an older Eddy
//! reads it).

use crate::support::server::TestApp;
use axum::http::StatusCode;
use eddy_host::control::Settings;
use serde_json::json;
use std::time::{Duration, Instant};

const SPEC: &str = "name = \"p\"\n[source]\ntopic = \"lines\"\n[sink]\ntopic = \"out\"\n[[operators]]\nname = \"wc\"\nversion = 1\n[settings]\ncommit_interval_ms = 600000\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caught_up_task_commits_without_waiting_for_the_interval() {
    let t = TestApp::new();
    t.push("wc", "wordcount").await;
    t.create_topic("lines", 2).await;
    let (s, e) = t.create_pipeline(SPEC).await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
    // The interval is ten minutes: only the caught-up commit can show these in time.
    for round in 0..3 {
        let line = json!({ "value": format!("a b round{round}") }).to_string();
        t.produce("lines", &line).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        while t.records("out").await.len() < 3 * (round + 1) {
            assert!(
                Instant::now() < deadline,
                "round {round}: the outputs wait for the interval"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let v = t.wait_caught_up("p").await;
    assert_eq!(v["tasks"][0]["lag"], 0, "{v}");
}

#[test]
fn the_setting_is_stored_only_when_it_is_off() {
    let on = serde_json::to_string(&Settings::default()).unwrap();
    assert!(!on.contains("commit_when_caught_up"), "{on}");
    let off = Settings {
        commit_when_caught_up: false,
        ..Settings::default()
    };
    let text = serde_json::to_string(&off).unwrap();
    assert!(text.contains("\"commit_when_caught_up\":false"), "{text}");
    let back: Settings = serde_json::from_str(&text).unwrap();
    assert!(!back.commit_when_caught_up);
}
