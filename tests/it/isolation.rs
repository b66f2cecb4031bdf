//! The control plane never waits on an operator: while one pipeline's operator loops in
//! `init`, status calls answer at once and report it as `starting`; a stop interrupts a
//! call that loops instead of waiting for its deadline; `/healthz` answers (`starting`)
//! while a restart resumes a pipeline whose operators are slow to start.

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
async fn a_stop_interrupts_a_looping_call_at_once() {
    let app = TestApp::new();
    app.push("probe", "fixture-probe").await;
    app.create_topic("in", 1).await;
    // The call's deadline is far away: only the interrupt can end it soon.
    let spec = PIPELINE
        .replace("CONFIG", "{}")
        .replace("call_timeout_ms = 3000", "call_timeout_ms = 60000");
    let (status, v) = app.create_pipeline(&spec).await;
    assert!(status.is_success(), "{v}");
    app.produce("in", "{\"value\": \"a\"}\n").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.produce("in", "{\"value\": \"loop\"}\n").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let asked = Instant::now();
    let stop = app.json(
        axum::http::Method::POST,
        "/v1/pipelines/slow/stop",
        axum::body::Body::empty(),
        &[],
    );
    // Status answers at once while the stop runs.
    let watch = async {
        let (status, _) = app.get("/v1/pipelines").await;
        assert!(status.is_success());
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "{:?}",
            asked.elapsed()
        );
    };
    let ((status, v), ()) = tokio::join!(stop, watch);
    assert!(status.is_success(), "{v}");
    assert!(
        asked.elapsed() < Duration::from_secs(30),
        "the stop waited for the call's deadline: {:?}",
        asked.elapsed()
    );
    // Stopped, not failed: the looping record is not the operator's failure, and it is
    // not committed (a start reads it again).
    assert_eq!(v["state"], "stopped", "{v}");
    assert_eq!(v["tasks"][0]["committed_offset"], 1, "{v}");
    assert_eq!(v["tasks"][0]["errors"], 0, "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_whose_record_runs_to_its_deadline_waits_before_its_next_batch() {
    let app = TestApp::new();
    app.push("probe", "fixture-probe").await;
    app.create_topic("in", 1).await;
    let spec = PIPELINE.replace("CONFIG", "{}").replace(
        "call_timeout_ms = 3000",
        "call_timeout_ms = 500\non_error = \"skip\"",
    );
    let (status, v) = app.create_pipeline(&spec).await;
    assert!(status.is_success(), "{v}");
    app.produce(
        "in",
        "{\"value\": \"loop\"}\n{\"value\": \"a\"}\n{\"value\": \"b\"}\n",
    )
    .await;
    // The looping record is skipped at its deadline; the task then waits (its status
    // says for how long) before it handles the rest.
    let mut saw_backoff = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, v) = app.get("/v1/pipelines/slow").await;
        let task = &v["tasks"][0];
        saw_backoff |= task["backoff_ms"].as_u64().is_some_and(|ms| ms > 0);
        if task["committed_offset"] == 3 {
            assert_eq!(task["errors"], 1, "{v}");
            assert!(
                task.get("backoff_ms").is_none(),
                "a clean batch ends the wait: {v}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "never caught up: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(saw_backoff, "the status never showed the wait");
}

#[tokio::test(flavor = "multi_thread")]
async fn healthz_answers_while_a_restart_resumes_a_slow_pipeline() {
    let app = TestApp::new();
    app.push("probe", "fixture-probe").await;
    app.create_topic("in", 1).await;
    // Every start of the operator takes 3 s (its init is slow), the restart's too.
    let spec = PIPELINE
        .replace("CONFIG", "{ init_ms = \"3000\" }")
        .replace("call_timeout_ms = 3000", "call_timeout_ms = 20000");
    let (status, v) = app.create_pipeline(&spec).await;
    assert!(status.is_success(), "{v}");
    let dir = app.close();

    let port = crate::support::kafka::free_port();
    let mut child = crate::support::eddy()
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("{base}{path}")).send();
    let mut saw_starting = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "the server never came up");
        let Ok(answer) = get("/healthz").await else {
            // Not listening yet.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        assert!(answer.status().is_success());
        let health: serde_json::Value = answer.json().await.unwrap();
        if health["status"] == "ok" {
            break;
        }
        assert_eq!(health["status"], "starting", "{health}");
        saw_starting = true;
        // Not ready: the probe and every other call say so, and nothing waits.
        let ready = get("/readyz").await.unwrap();
        assert_eq!(ready.status().as_u16(), 503);
        let list = get("/v1/pipelines").await.unwrap();
        assert_eq!(list.status().as_u16(), 503);
        let body: serde_json::Value = list.json().await.unwrap();
        assert_eq!(body["error"], "starting", "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(saw_starting, "/healthz never said the server was starting");
    assert_eq!(get("/readyz").await.unwrap().status().as_u16(), 200);
    let status: serde_json::Value = get("/v1/pipelines/slow")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["state"], "running", "{status}");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_keeps_its_share_of_the_workers_next_to_one_whose_every_record_loops() {
    // Two workers; the looping pipeline has a task on each partition.
    let app = TestApp::new();
    app.push("probe", "fixture-probe").await;
    app.push("wordcount", "wordcount").await;
    app.create_topic("in", 2).await;
    app.create_topic("lines", 2).await;
    let healthy = "name = \"wc\"\nsource = { topic = \"lines\" }\nsink = { topic = \"counts\" }\n[[operators]]\nname = \"wordcount\"\n";
    let (status, v) = app.create_pipeline(healthy).await;
    assert!(status.is_success(), "{v}");
    app.produce("lines", "{\"value\": \"a b\"}\n").await;
    app.wait_caught_up("wc").await;
    // Calls that only their deadline (a minute) or a stop ends, on both partitions.
    let spec = PIPELINE.replace("CONFIG", "{}").replace(
        "call_timeout_ms = 3000",
        "call_timeout_ms = 60000\non_error = \"skip\"",
    );
    let (status, v) = app.create_pipeline(&spec).await;
    assert!(status.is_success(), "{v}");
    // One loop first: a pipeline with a step running long is slow, and may then not
    // take the worker the word count keeps between its inputs.
    app.produce("in", "{\"value\": \"loop\"}\n").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    app.produce("in", &"{\"value\": \"loop\"}\n".repeat(3))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The word count goes on, on the worker the looping pipeline may not take, long
    // before the loops' deadline.
    let lines: String = (0..50).map(|_| "{\"value\": \"a b a\"}\n").collect();
    app.produce("lines", &lines).await;
    let status = app.wait_caught_up("wc").await;
    let out: u64 = status["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["events_out"].as_u64().unwrap())
        .sum();
    assert_eq!(out, 2 + 150, "{status}");
    // Each task counts its partition's words; every occurrence is one output (keyed by
    // the word, so all of them land in one partition of the sink), each task's counts
    // going up by one.
    let mut seen: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for p in 0..2 {
        let (_, v) = app
            .get(&format!(
                "/v1/topics/counts/records?partition={p}&limit=10000"
            ))
            .await;
        for r in v["records"].as_array().unwrap() {
            let n: u64 = r["value"].as_str().unwrap().parse().unwrap();
            seen.entry(r["key"].as_str().unwrap().into())
                .or_default()
                .push(n);
        }
    }
    for (word, times) in [("a", 101), ("b", 51)] {
        let mut counts = seen[word].clone();
        counts.sort_unstable();
        // Two tasks' counts, 1..=k and 1..=times-k: each number at most twice.
        assert_eq!(counts.len(), times, "{word}: {counts:?}");
        assert!(
            counts.windows(3).all(|w| w[0] != w[2]),
            "{word}: {counts:?}"
        );
    }
    let (_, slow) = app.get("/v1/pipelines/slow").await;
    assert_eq!(slow["state"], "running", "{slow}");
    assert_eq!(slow["tasks"][0]["errors"], 0, "the loops still run: {slow}");
    // A stop ends the loops at once.
    let (status, v) = app
        .json(
            axum::http::Method::POST,
            "/v1/pipelines/slow/stop",
            axum::body::Body::empty(),
            &[],
        )
        .await;
    assert!(status.is_success() && v["state"] == "stopped", "{v}");
}

/// A panic in a task's step (a bug in the host, played here by a native operator) fails
/// that task with the reason; the only worker goes on with the other task.
#[test]
fn a_panic_in_a_task_fails_it_and_its_worker_goes_on() {
    use eddy_host::log::{Log, TopicConfig};
    use eddy_host::metrics::Metrics;
    use eddy_host::model::{PipelineRecord, PipelineSpec, PipelineState};
    use eddy_host::record::Record;
    use eddy_host::record::batch::OutputBatch;
    use eddy_host::registry::Registry;
    use eddy_host::runtime::{Runtime, RuntimeConfig};
    use eddy_host::state::{Db, DbOptions, OperatorState, StateScope};
    use eddy_host::task::{NativeOperator, Operator, TaskError, TaskFactory, TaskState};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(&dir.path().join("db"), &DbOptions::default()).unwrap());
    let log = Arc::new(Log::open(Arc::clone(&db)).unwrap());
    let config = TopicConfig::kept(2);
    let source = log.create_topic("in", &config).unwrap();
    log.create_topic("out", &config).unwrap();
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let registry =
        Arc::new(Registry::open(Arc::clone(&db), dir.path().join("operators"), runtime).unwrap());
    // One worker: had the panic taken it, the other task would never run.
    let factory = TaskFactory::new(
        Arc::clone(&db),
        Arc::clone(&log),
        registry,
        Arc::new(Metrics::new()),
        1,
    );
    let spec = PipelineSpec::from_toml(
        "name = \"p\"\nsource = { topic = \"in\" }\nsink = { topic = \"out\" }\n[[operators]]\nname = \"boom\"\n",
    )
    .unwrap();
    let record = PipelineRecord {
        spec,
        operators: Vec::new(),
        state: PipelineState::Running,
        reason: None,
        created_ms: 0,
        updated_ms: 0,
        upgrades: Vec::new(),
        canary: None,
        namespace: None,
        shadow: None,
    };
    let handles = factory
        .start_with(&record, None, &mut |_, partition, _| {
            let scope = StateScope {
                pipeline: "p".into(),
                operator: "boom".into(),
                partition,
            };
            let state =
                OperatorState::new(Arc::clone(&db), scope, 1 << 20).map_err(TaskError::from)?;
            let op: Box<dyn Operator> = Box::new(NativeOperator::new(
                "boom",
                state,
                Box::new(|batch, _| {
                    assert!(!batch.data.starts_with(b"boom"), "boom");
                    Ok(OutputBatch::default())
                }),
            ));
            Ok(vec![op])
        })
        .unwrap();
    let value = |v: &str| Record {
        value: v.as_bytes().to_vec(),
        ..Record::default()
    };
    log.produce(
        &source,
        &[(value("boom"), Some(0)), (value("fine"), Some(1))],
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (zero, one) = (handles[0].status(), handles[1].status());
        if zero.state == TaskState::Failed && one.committed_offset == 1 {
            let failure = zero.failure.unwrap();
            assert!(
                failure.contains("internal error") && failure.contains("boom"),
                "{failure}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{zero:?}\n{one:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    for h in &handles {
        h.request_stop();
    }
}
