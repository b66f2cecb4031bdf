//! What status and metrics report: outputs include side outputs, state size is there
//! before RocksDB flushes, and the last error belongs to the version that runs.

use crate::support::server::TestApp;
use axum::body::Body;
use axum::http::{Method, StatusCode};

const PROBE: &str = "name = \"p\"\n[source]\ntopic = \"in\"\n[sink]\ntopic = \"out\"\n[[operators]]\nname = \"probe\"\n[settings]\non_error = \"skip\"\n";

#[tokio::test(flavor = "multi_thread")]
async fn outputs_state_size_and_the_last_error_are_reported_as_they_are() {
    let t = TestApp::new();
    t.push("probe", "fixture-probe").await;
    t.create_topic("in", 1).await;
    let (s, e) = t.create_pipeline(PROBE).await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
    let commands = [
        "set s k1 v1",
        "set s k2 v2",
        "emit alerts a1",
        "emit alerts a2",
        "bad a\nlong\ntraceback\nValueError: the real reason",
    ];
    let lines: Vec<String> = commands
        .iter()
        .map(|c| serde_json::json!({ "value": c }).to_string())
        .collect();
    t.produce("in", &lines.join("\n")).await;
    let v = t.wait_caught_up("p").await;
    let task = &v["tasks"][0];
    // Two side outputs (and no main output: `set` and `emit` reply nothing else).
    let side = t.records("p.alerts").await.len() as u64;
    let main = t.records("out").await.len() as u64;
    assert_eq!(side, 2);
    assert_eq!(task["events_out"].as_u64().unwrap(), main + side, "{v}");
    assert_eq!(task["events_in"], 5, "{v}");
    assert!(
        task["last_error"]
            .as_str()
            .unwrap()
            .contains("the real reason"),
        "{v}"
    );

    // The state is counted though it sits in RocksDB's memtable.
    let (_, metrics) = t.call(Method::GET, "/metrics", Body::empty(), &[]).await;
    let metrics = String::from_utf8(metrics).unwrap();
    let bytes: u64 = metrics
        .lines()
        .find(|l| l.starts_with("eddy_state_bytes{pipeline=\"p\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no eddy_state_bytes for p:\n{metrics}"));
    assert!(bytes > 0, "{metrics}");

    // After an upgrade the old version's last error is gone. Without traffic the
    // probation waits, until a user promotes it.
    t.push("probe", "wordcount").await;
    let (s, u) = t.start_upgrade("p", "probe", 2, None).await;
    assert_eq!(s, StatusCode::OK, "{u}");
    let (s, u) = t.post_json("/v1/pipelines/p/upgrade/promote", "").await;
    assert_eq!(s, StatusCode::OK, "{u}");
    assert_eq!(u["result"], "succeeded_unexercised", "{u}");
    assert!(
        u["reason"]
            .as_str()
            .unwrap()
            .contains("promoted by request after 0 of 1000 records"),
        "{u}"
    );
    let v = t.wait_caught_up("p").await;
    assert_eq!(v["operators"][0]["version"], 2, "{v}");
    assert_eq!(v["tasks"][0]["last_error"], serde_json::Value::Null, "{v}");
    let (s, again) = t.post_json("/v1/pipelines/p/upgrade/rollback", "").await;
    assert_eq!(s, StatusCode::CONFLICT, "{again}");
}
