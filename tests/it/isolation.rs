//! The control plane never waits on an operator: while one pipeline's operator loops in
//! `init` or in a call, status calls about every pipeline answer at once, reporting the
//! pipeline as `starting` or `stopping`.

use crate::support::server::TestApp;
use std::time::{Duration, Instant};

const PIPELINE: &str = r#"
name = "slow"
source = { topic = "in" }
sink = { topic = "out" }
[[operators]]
name = "probe"
config = CONFIG
[settings]
call_timeout_ms = 3000
"#;

/// Polls `GET uri` until `state` shows (at most 2 s), checking that every answer is quick.
async fn wait_for_state(app: &TestApp, uri: &str, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let asked = Instant::now();
        let (status, v) = app.get(uri).await;
        assert!(
            asked.elapsed() < Duration::from_millis(500),
            "{uri} took {:?}",
            asked.elapsed()
        );
        assert!(status.is_success(), "{v}");
        let states: Vec<&str> = match v.as_array() {
            Some(list) => list.iter().filter_map(|p| p["state"].as_str()).collect(),
            None => v["state"].as_str().into_iter().collect(),
        };
        if states.contains(&state) {
            return;
        }
        assert!(Instant::now() < deadline, "{uri} never said {state}: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn status_answers_while_an_operator_loops_in_init() {
    let app = TestApp::new();
    app.push("probe", "fixture-probe").await;
    app.create_topic("in", 1).await;
    let spec = PIPELINE.replace("CONFIG", "{ loop_init = true }");
    let create = app.create_pipeline(&spec);
    let watch = async {
        wait_for_state(&app, "/v1/pipelines", "starting").await;
        wait_for_state(&app, "/v1/pipelines/slow", "starting").await;
    };
    let ((status, v), ()) = tokio::join!(create, watch);
    assert_eq!(status.as_u16(), 400, "{v}");
    let detail = v["detail"].as_str().unwrap();
    assert!(
        detail.contains("cannot start") && detail.contains("deadline"),
        "{detail}"
    );
    let (status, _) = app.get("/v1/pipelines/slow").await;
    assert_eq!(
        status.as_u16(),
        404,
        "a pipeline that could not start is gone"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn status_answers_while_a_stop_waits_for_a_looping_call() {
    let app = TestApp::new();
    app.push("probe", "fixture-probe").await;
    app.create_topic("in", 1).await;
    let spec = PIPELINE.replace("CONFIG", "{}");
    let (status, v) = app.create_pipeline(&spec).await;
    assert!(status.is_success(), "{v}");
    // A record whose call loops until its deadline (3 s).
    app.produce("in", "{\"value\": \"loop\"}\n").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stop = app.json(
        axum::http::Method::POST,
        "/v1/pipelines/slow/stop",
        axum::body::Body::empty(),
        &[],
    );
    let watch = wait_for_state(&app, "/v1/pipelines/slow", "stopping");
    let ((status, v), ()) = tokio::join!(stop, watch);
    assert!(status.is_success(), "{v}");
    assert_eq!(v["state"], "stopped", "{v}");
}
