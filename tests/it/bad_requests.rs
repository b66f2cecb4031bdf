//! Inputs a probe found accepted although harmful, or refused with a message that leads
//! nowhere: each is refused, with a message that says what to do, and leaves nothing.

use crate::support::server::TestApp;
use axum::body::Body;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

fn assert_error(status: StatusCode, body: &Value, expected: StatusCode, detail_has: &str) {
    assert_eq!(status, expected, "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(detail_has),
        "expected {detail_has:?} in {detail:?}"
    );
}

const BASE: &str = "name = \"p\"\n[source]\ntopic = \"in\"\n[sink]\ntopic = \"out\"\n[[operators]]\nname = \"probe\"\n";

#[tokio::test(flavor = "multi_thread")]
async fn dotted_names_and_harmful_settings_are_refused() {
    let t = TestApp::new();
    t.push("probe", "fixture-probe").await;
    t.create_topic("in", 1).await;
    for name in [".", "..", ".hidden"] {
        let (s, e) = t
            .json(
                Method::PUT,
                &format!("/v1/operators/{name}"),
                std::fs::read(crate::support::guest("fixture-probe")).unwrap(),
                &[("content-type", "application/wasm")],
            )
            .await;
        assert_error(s, &e, StatusCode::BAD_REQUEST, "must not start with a dot");
        let (s, e) = t
            .create_pipeline(&BASE.replace("name = \"p\"", &format!("name = \"{name}\"")))
            .await;
        assert_error(s, &e, StatusCode::BAD_REQUEST, "must not start with a dot");
    }
    for name in [".", ".."] {
        let body = json!({ "name": name }).to_string();
        let (s, e) = t.post_json("/v1/topics", body).await;
        assert_error(s, &e, StatusCode::BAD_REQUEST, "must not be . or ..");
    }
    for (setting, why) in [
        (
            "commit_interval_ms = 0",
            "commit_interval_ms = 0 must be 1 to 600000",
        ),
        (
            "probation_records = 0",
            "probation_records must be at least 1",
        ),
        (
            "probation_max_error_rate = 1.5",
            "probation_max_error_rate must be from 0 to 1",
        ),
        (
            "probation_timeout = \"1s\"",
            "probation_timeout = 1s is shorter than settings.probation_ms = 5000",
        ),
        (
            "on_probation_timeout = \"accept\"",
            "on_probation_timeout needs settings.probation_timeout",
        ),
        (
            "probation_timeout = \"1m\"\non_probation_timeout = \"maybe\"",
            "unknown variant `maybe`",
        ),
        (
            "max_pending_timers = 0",
            "max_pending_timers = 0 must be 1 to 1000000000",
        ),
        (
            "state_cache_mb = 1000000000000",
            "state_cache_mb = 1000000000000 must be 0 to 4096",
        ),
    ] {
        let (s, e) = t
            .create_pipeline(&format!("{BASE}[settings]\n{setting}\n"))
            .await;
        assert_error(s, &e, StatusCode::BAD_REQUEST, why);
    }
    let (s, e) = t
        .create_pipeline(&format!("from_savepoint = \"nope-1\"\n{BASE}"))
        .await;
    assert_error(
        s,
        &e,
        StatusCode::BAD_REQUEST,
        "from_savepoint = \"nope-1\": no such savepoint here",
    );
    assert!(
        !e["detail"]
            .as_str()
            .unwrap()
            .contains("pipeline \"savepoint"),
        "{e}"
    );
    let (_, list) = t.get("/v1/pipelines").await;
    assert_eq!(list, json!([]));
    let (_, ops) = t.get("/v1/operators").await;
    assert_eq!(ops.as_array().unwrap().len(), 1, "{ops}");

    // Names longer than any valid one are not found, on every endpoint that takes one.
    let long = "x".repeat(300);
    for (method, uri) in [
        (Method::GET, format!("/v1/operators/{long}")),
        (Method::GET, format!("/v1/operators/{long}/latest")),
        (Method::GET, format!("/v1/operators/{long}/versions/1")),
        (Method::DELETE, format!("/v1/operators/{long}")),
        (Method::DELETE, format!("/v1/operators/{long}/versions/1")),
        (Method::GET, format!("/v1/topics/{long}")),
        (Method::GET, format!("/v1/pipelines/{long}")),
        (Method::POST, format!("/v1/pipelines/{long}/savepoints")),
        (Method::GET, format!("/v1/savepoints/{long}")),
        (Method::DELETE, format!("/v1/savepoints/{long}")),
    ] {
        let (s, e) = t.json(method.clone(), &uri, Body::empty(), &[]).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {}: {e}", &uri[..30]);
    }
    // An unknown savepoint is a savepoint not found, not a pipeline.
    for method in [Method::GET, Method::DELETE] {
        let (s, e) = t
            .json(method, "/v1/savepoints/nope-1", Body::empty(), &[])
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(e["error"], "savepoint not found", "{e}");
        assert_eq!(e["detail"], "savepoint \"nope-1\" does not exist", "{e}");
    }
    // ... and the registry still works afterwards (nothing panicked holding its lock).
    let (s, _) = t
        .call(Method::DELETE, "/v1/operators/probe", Body::empty(), &[])
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}

#[tokio::test(flavor = "multi_thread")]
async fn produce_bodies_that_are_not_events_say_how_to_fix_them() {
    let t = TestApp::new();
    t.create_topic("in", 1).await;
    let produce = |body: &'static str, ct: &'static str| {
        let t = &t;
        async move {
            t.json(
                Method::POST,
                "/v1/topics/in/records",
                body,
                &[("content-type", ct)],
            )
            .await
        }
    };
    let (s, e) = produce("", "application/x-ndjson").await;
    assert_error(s, &e, StatusCode::BAD_REQUEST, "the body holds no events");
    let (s, e) = produce("\n\n", "application/x-ndjson").await;
    assert_error(s, &e, StatusCode::BAD_REQUEST, "the body holds no events");
    let (s, e) = produce("{\"value\":\"a\"}\n{\"value\":\"b\"}\n", "application/json").await;
    assert_error(s, &e, StatusCode::BAD_REQUEST, "application/x-ndjson");
    let (s, e) = produce("{\"card\":\"4111\",\"amount\":12}", "application/x-ndjson").await;
    assert_error(s, &e, StatusCode::BAD_REQUEST, "wrap it: {\"value\": …}");
    assert_eq!(
        e["detail"]
            .as_str()
            .unwrap()
            .matches("unknown field")
            .count(),
        1,
        "{e}"
    );
    let (s, e) = produce("[{\"card\":\"4111\"}]", "application/json").await;
    assert_error(
        s,
        &e,
        StatusCode::BAD_REQUEST,
        "event 1: unknown field \"card\"",
    );
    // Nothing of it was stored; a right body still is.
    let (_, d) = t.get("/v1/topics/in").await;
    assert_eq!(d["partition_offsets"][0]["end_offset"], 0, "{d}");
    let (s, _) = produce("[{\"value\":\"a\"}]", "application/json").await;
    assert_eq!(s, StatusCode::OK);
}
