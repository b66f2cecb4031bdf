//! The HTTP API through `router().oneshot`: every endpoint and its error cases.

use crate::support::guest;
use crate::support::server::TestApp;
use axum::body::Body;
use axum::http::{Method, StatusCode};
use eddy_host::api::ApiConfig;
use serde_json::{Value, json};

const WORDCOUNT: &str = r#"
name = "wc"
[source]
topic = "lines"
[sink]
topic = "counts"
[[operators]]
name = "wordcount"
config = { lowercase = true }
"#;

fn assert_error(status: StatusCode, body: &Value, expected: StatusCode, detail_has: &str) {
    assert_eq!(status, expected, "{body}");
    assert!(body["error"].is_string(), "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(detail_has),
        "expected {detail_has:?} in {detail:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_upload_version_download_and_delete() {
    let t = TestApp::new();
    let wasm = std::fs::read(guest("wordcount")).unwrap();
    let ct = [("content-type", "application/wasm")];
    let (s, v1) = t
        .json(Method::PUT, "/v1/operators/wordcount", wasm.clone(), &ct)
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(
        (
            v1["name"].as_str(),
            v1["version"].as_u64(),
            v1["size"].as_u64()
        ),
        (Some("wordcount"), Some(1), Some(wasm.len() as u64))
    );
    assert_eq!(v1["digest"].as_str().unwrap().len(), 64);
    assert!(
        v1["imports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i == "eddy:operator/state@0.1.2")
    );
    assert!(
        v1["exports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "eddy:operator/handler@0.1.2")
    );
    // The same bytes again: the existing version.
    let (s, again) = t
        .json(Method::PUT, "/v1/operators/wordcount", wasm.clone(), &ct)
        .await;
    assert_eq!((s, again["version"].as_u64()), (StatusCode::OK, Some(1)));
    // Other bytes: the next version.
    let v2 = t.push("wordcount", "wordcount-v2").await;
    assert_eq!(v2["version"], 2);

    let (s, list) = t.get("/v1/operators").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (list[0]["name"].as_str(), list[0]["latest"].as_u64()),
        (Some("wordcount"), Some(2))
    );
    let (_, one) = t.get("/v1/operators/wordcount").await;
    assert_eq!(one["versions"].as_array().unwrap().len(), 2);
    let (_, latest) = t.get("/v1/operators/wordcount/latest").await;
    assert_eq!(latest["version"], 2);
    let (_, meta) = t.get("/v1/operators/wordcount/versions/1").await;
    assert_eq!(meta["digest"], v1["digest"]);
    let (s, bytes) = t
        .call(
            Method::GET,
            "/v1/operators/wordcount/versions/1",
            Body::empty(),
            &[("accept", "application/wasm")],
        )
        .await;
    assert_eq!((s, bytes == wasm), (StatusCode::OK, true));

    let (s, e) = t.get("/v1/operators/nope").await;
    assert_error(s, &e, StatusCode::NOT_FOUND, "does not exist");
    let (s, e) = t.get("/v1/operators/wordcount/versions/9").await;
    assert_error(s, &e, StatusCode::NOT_FOUND, "no version 9");
    let (s, e) = t.get("/v1/operators/wordcount/versions/x").await;
    assert_error(s, &e, StatusCode::BAD_REQUEST, "not a version number");

    let (s, _) = t
        .call(
            Method::DELETE,
            "/v1/operators/wordcount/versions/1",
            Body::empty(),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = t
        .call(
            Method::GET,
            "/v1/operators/wordcount/versions/1",
            Body::empty(),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = t
        .call(
            Method::DELETE,
            "/v1/operators/wordcount",
            Body::empty(),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = t
        .call(Method::GET, "/v1/operators/wordcount", Body::empty(), &[])
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_uploads_are_refused_with_a_reason() {
    let t = TestApp::with_api(ApiConfig {
        max_body_bytes: 200_000,
        ..ApiConfig::default()
    });
    let ct = [("content-type", "application/wasm")];
    let cases: Vec<(Vec<u8>, &str, StatusCode, &str)> = vec![
        (
            b"\0asm\x01\0\0\0".to_vec(),
            "core",
            StatusCode::BAD_REQUEST,
            "core WebAssembly module",
        ),
        (
            b"hello".to_vec(),
            "text",
            StatusCode::BAD_REQUEST,
            "not a WebAssembly binary",
        ),
        (
            std::fs::read(guest("fixture-other-world")).unwrap(),
            "other",
            StatusCode::BAD_REQUEST,
            "does not export `eddy:operator/handler@0.1.x`",
        ),
        (
            std::fs::read(guest("fixture-forbidden-import")).unwrap(),
            "sneaky",
            StatusCode::BAD_REQUEST,
            "eddy:forbidden/raw-network",
        ),
        (
            Vec::new(),
            "empty",
            StatusCode::BAD_REQUEST,
            "send the .wasm file",
        ),
        (
            std::fs::read(guest("wordcount")).unwrap(),
            "bad%20name",
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            vec![0u8; 300_000],
            "huge",
            StatusCode::PAYLOAD_TOO_LARGE,
            "200000 bytes",
        ),
    ];
    for (body, name, status, detail) in cases {
        let (s, e) = t
            .json(Method::PUT, &format!("/v1/operators/{name}"), body, &ct)
            .await;
        assert_error(s, &e, status, detail);
    }
    let (s, e) = t
        .json(
            Method::PUT,
            "/v1/operators/x",
            b"\0asm".to_vec(),
            &[("content-type", "text/plain")],
        )
        .await;
    assert_error(
        s,
        &e,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "application/wasm",
    );
    // Nothing was stored.
    let (_, list) = t.get("/v1/operators").await;
    assert_eq!(list, json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn topics_create_produce_consume_describe_delete() {
    let t = TestApp::new();
    let js = [("content-type", "application/json")];
    let (s, topic) = t
        .json(
            Method::POST,
            "/v1/topics",
            r#"{"name":"lines","partitions":3}"#,
            &js,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(topic["partition_offsets"].as_array().unwrap().len(), 3);
    let (s, e) = t
        .json(
            Method::POST,
            "/v1/topics",
            r#"{"name":"lines","partitions":3}"#,
            &js,
        )
        .await;
    assert_error(s, &e, StatusCode::CONFLICT, "already exists");
    let (s, e) = t.post_json("/v1/topics", r#"{"name":"a b"}"#).await;
    assert_error(s, &e, StatusCode::BAD_REQUEST, "invalid");
    let (s, e) = t
        .json(
            Method::POST,
            "/v1/topics",
            r#"{"name":"z","partitions":0}"#,
            &js,
        )
        .await;
    assert_error(s, &e, StatusCode::BAD_REQUEST, "1 to 1024");
    let (s, e) = t
        .json(
            Method::POST,
            "/v1/topics",
            r#"{"name":"z","colour":1}"#,
            &js,
        )
        .await;
    assert_error(s, &e, StatusCode::BAD_REQUEST, "unknown field `colour`");
    let (s, e) = t.post_json("/v1/topics", r#"{"name":"#).await;
    assert_error(s, &e, StatusCode::BAD_REQUEST, "");
    let (s, e) = t
        .json(Method::POST, "/v1/topics", r#"{"name":"z"}"#, &[])
        .await;
    assert_error(
        s,
        &e,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "application/json",
    );

    // JSON lines: explicit partitions, keys (Kafka's partitioner), keyless round-robin.
    let produced = t
        .produce("lines", "{\"value\":\"a\",\"partition\":2}\n\n{\"key\":\"k\",\"value\":\"b\"}\n{\"key\":\"k\",\"value\":\"c\",\"headers\":{\"h\":\"1\"}}\n")
        .await;
    assert_eq!(produced["count"], 3);
    assert_eq!(produced["offsets"][0], json!({"partition": 2, "offset": 0}));
    let kp = produced["offsets"][1]["partition"].as_u64().unwrap();
    assert_eq!(
        kp,
        eddy_host::log::partitioner::partition_for_key(b"k", 3) as u64
    );
    assert_eq!(
        produced["offsets"][2],
        json!({"partition": kp, "offset": produced["offsets"][1]["offset"].as_u64().unwrap() + 1})
    );
    // A JSON array.
    let (s, v) = t
        .json(
            Method::POST,
            "/v1/topics/lines/records",
            r#"[{"value":"x","partition":1},{"value_b64":"/wA=","partition":1}]"#,
            &js,
        )
        .await;
    assert_eq!((s, v["count"].as_u64()), (StatusCode::OK, Some(2)));
    // Bad events name the line.
    let (s, e) = t
        .json(
            Method::POST,
            "/v1/topics/lines/records",
            "{\"value\":\"ok\"}\n{\"value\": nope}\n",
            &[],
        )
        .await;
    assert_error(s, &e, StatusCode::BAD_REQUEST, "line 2");
    let (s, e) = t
        .json(
            Method::POST,
            "/v1/topics/lines/records",
            "{\"value\":\"v\",\"partition\":9}",
            &[],
        )
        .await;
    assert_error(s, &e, StatusCode::BAD_REQUEST, "partition 9 does not exist");
    let (s, e) = t
        .json(
            Method::POST,
            "/v1/topics/nope/records",
            "{\"value\":\"v\"}",
            &[],
        )
        .await;
    assert_error(s, &e, StatusCode::NOT_FOUND, "does not exist");

    let (s, got) = t.get("/v1/topics/lines/records?partition=1").await;
    assert_eq!(s, StatusCode::OK);
    let values: Vec<Value> = got["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["value"].clone())
        .collect();
    assert_eq!(values, vec![json!("x"), Value::Null]);
    assert_eq!(got["records"][1]["value_b64"], "/wA=");
    assert_eq!(got["next_offsets"]["1"], 2);
    let (_, some) = t
        .get("/v1/topics/lines/records?partition=1&offset=1&limit=1")
        .await;
    assert_eq!(some["records"].as_array().unwrap().len(), 1);
    assert_eq!(some["records"][0]["offset"], 1);
    assert_eq!(t.records("lines").await.len(), 5);
    let (s, e) = t.get("/v1/topics/lines/records?partition=7").await;
    assert_error(s, &e, StatusCode::NOT_FOUND, "partition 7 does not exist");
    let (s, e) = t.get("/v1/topics/lines/records?from=middle").await;
    assert_error(s, &e, StatusCode::BAD_REQUEST, "expected `start` or `end`");
    let (s, e) = t.get("/v1/topics/lines/records?limit=oops").await;
    assert_error(s, &e, StatusCode::BAD_REQUEST, "limit");
    let (s, e) = t.get("/v1/topics/lines/records?color=red").await;
    assert_error(s, &e, StatusCode::BAD_REQUEST, "unknown field `color`");

    let (_, d) = t.get("/v1/topics/lines").await;
    let ends: Vec<u64> = d["partition_offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["end_offset"].as_u64().unwrap())
        .collect();
    assert_eq!(ends.iter().sum::<u64>(), 5);
    let (_, all) = t.get("/v1/topics").await;
    assert_eq!(all.as_array().unwrap().len(), 1);
    let (s, _) = t
        .call(Method::DELETE, "/v1/topics/lines", Body::empty(), &[])
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, e) = t
        .json(Method::DELETE, "/v1/topics/lines", Body::empty(), &[])
        .await;
    assert_error(s, &e, StatusCode::NOT_FOUND, "does not exist");
}

#[tokio::test(flavor = "multi_thread")]
async fn follow_streams_records_as_server_sent_events() {
    let t = TestApp::new();
    t.create_topic("live", 1).await;
    let req = axum::http::Request::get("/v1/topics/live/records?follow=true&from=end")
        .body(Body::empty())
        .unwrap();
    let resp = tower::ServiceExt::oneshot(t.router.clone(), req)
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body().into_data_stream();
    t.produce("live", "{\"value\":\"hello\"}").await;
    let mut seen = String::new();
    while !seen.contains("hello") {
        let chunk = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            futures::StreamExt::next(&mut body),
        )
        .await
        .unwrap()
        .unwrap()
        .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let data = seen.lines().find_map(|l| l.strip_prefix("data:")).unwrap();
    let r: Value = serde_json::from_str(data.trim()).unwrap();
    assert_eq!(
        (r["value"].as_str(), r["offset"].as_u64()),
        (Some("hello"), Some(0))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelines_create_run_stop_start_delete() {
    let t = TestApp::new();
    t.push("wordcount", "wordcount").await;
    t.create_topic("lines", 2).await;
    let (s, p) = t.create_pipeline(WORDCOUNT).await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    assert_eq!(
        (p["state"].as_str(), p["tasks"].as_array().unwrap().len()),
        (Some("running"), 2)
    );
    assert_eq!(
        p["operators"][0],
        json!({"id": "wordcount", "name": "wordcount", "version": 1, "digest": p["operators"][0]["digest"], "state_version": 1})
    );
    // The sink topic was created with the source's partitions.
    let (_, sink) = t.get("/v1/topics/counts").await;
    assert_eq!(sink["partitions"], 2);

    t.produce(
        "lines",
        "{\"key\":\"a\",\"value\":\"The cat\"}\n{\"key\":\"a\",\"value\":\"the end\"}\n",
    )
    .await;
    let status = t.wait_caught_up("wc").await;
    let counts: u64 = status["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["events_out"].as_u64().unwrap())
        .sum();
    assert_eq!(counts, 4);
    let mut out: Vec<(String, String)> = t
        .records("counts")
        .await
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap().into(),
                r["value"].as_str().unwrap().into(),
            )
        })
        .collect();
    out.sort();
    assert_eq!(
        out,
        [
            ("cat".into(), "1".into()),
            ("end".into(), "1".into()),
            ("the".into(), "1".into()),
            ("the".into(), "2".into())
        ]
    );

    let (s, _) = t
        .json(Method::POST, "/v1/pipelines/wc/stop", Body::empty(), &[])
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, p) = t.get("/v1/pipelines/wc").await;
    assert_eq!(p["state"], "stopped");
    t.produce("lines", "{\"key\":\"a\",\"value\":\"the\"}\n")
        .await;
    let (s, p) = t
        .json(Method::POST, "/v1/pipelines/wc/start", Body::empty(), &[])
        .await;
    assert_eq!((s, p["state"].as_str()), (StatusCode::OK, Some("running")));
    t.wait_caught_up("wc").await;
    assert!(
        t.records("counts")
            .await
            .iter()
            .any(|r| r["key"] == "the" && r["value"] == "3")
    );

    // JSON specs work too; names are unique.
    let json_spec = json!({"name": "wc", "source": {"topic": "lines"}, "sink": {"topic": "c2"}, "operators": [{"name": "wordcount", "version": 1}]});
    let (s, e) = t.post_json("/v1/pipelines", json_spec.to_string()).await;
    assert_error(s, &e, StatusCode::CONFLICT, "already exists");
    let (_, list) = t.get("/v1/pipelines").await;
    assert_eq!(list.as_array().unwrap().len(), 1);

    // In use: the operator and the topics cannot go.
    let (s, e) = t
        .json(
            Method::DELETE,
            "/v1/operators/wordcount",
            Body::empty(),
            &[],
        )
        .await;
    assert_error(s, &e, StatusCode::CONFLICT, "used by pipeline \"wc\"");
    let (s, e) = t
        .json(Method::DELETE, "/v1/topics/lines", Body::empty(), &[])
        .await;
    assert_error(s, &e, StatusCode::CONFLICT, "pipeline \"wc\"");

    let (s, _) = t
        .call(Method::DELETE, "/v1/pipelines/wc", Body::empty(), &[])
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, e) = t.get("/v1/pipelines/wc").await;
    assert_error(s, &e, StatusCode::NOT_FOUND, "does not exist");
    let (s, _) = t
        .call(
            Method::DELETE,
            "/v1/operators/wordcount",
            Body::empty(),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    // A new pipeline of the same name starts from scratch.
    t.push("wordcount", "wordcount").await;
    let (s, p) = t
        .create_pipeline(&WORDCOUNT.replace("\"counts\"", "\"fresh\""))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    t.wait_caught_up("wc").await;
    assert!(
        t.records("fresh")
            .await
            .iter()
            .any(|r| r["key"] == "the" && r["value"] == "3"),
        "replays the whole source with empty state"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_pipelines_are_refused_and_leave_nothing() {
    let t = TestApp::new();
    t.push("probe", "fixture-probe").await;
    t.create_topic("in", 1).await;
    let base = "name = \"p\"\n[source]\ntopic = \"in\"\n[sink]\ntopic = \"out\"\n[[operators]]\nname = \"probe\"\n";
    let cases = [
        ("name = \"p\"\n[[operators]\n", "not valid TOML"),
        (
            &format!("{base}colour = 1\n") as &str,
            "unknown field `colour`",
        ),
        (
            &base.replace("\"in\"", "\"missing\""),
            "input topic \"missing\" does not exist",
        ),
        (
            &base.replace("name = \"probe\"", "name = \"ghost\""),
            "operator \"ghost\" is not in the registry",
        ),
        (&format!("{base}version = 7\n"), "no version 7"),
        (&base.replace("[sink]\ntopic = \"out\"\n", ""), "add a sink"),
        (
            &base.replace("[source]\ntopic = \"in\"\n", ""),
            "add a source",
        ),
        (
            &format!("{base}config = {{ fail_init = \"need a dictionary\" }}\n"),
            "init failed: need a dictionary",
        ),
        (&base.replace("\"out\"", "\"in\""), "must differ"),
    ];
    for (spec, expected) in cases {
        let (s, e) = t.create_pipeline(spec).await;
        assert_error(s, &e, StatusCode::BAD_REQUEST, expected);
    }
    let (_, list) = t.get("/v1/pipelines").await;
    assert_eq!(list, json!([]));
    let (s, e) = t
        .json(Method::POST, "/v1/pipelines/nope/stop", Body::empty(), &[])
        .await;
    assert_error(s, &e, StatusCode::NOT_FOUND, "does not exist");
    let (s, e) = t
        .json(Method::POST, "/v1/pipelines/nope/start", Body::empty(), &[])
        .await;
    assert_error(s, &e, StatusCode::NOT_FOUND, "does not exist");
    let (s, e) = t
        .json(Method::DELETE, "/v1/pipelines/nope", Body::empty(), &[])
        .await;
    assert_error(s, &e, StatusCode::NOT_FOUND, "does not exist");
}

#[tokio::test(flavor = "multi_thread")]
async fn named_outputs_write_the_topics_the_spec_gives_their_ports() {
    let t = TestApp::new();
    t.push("probe", "fixture-probe").await;
    t.create_topic("commands", 2).await;
    let spec = "name = \"named\"\n[source]\ntopic = \"commands\"\n[sink]\ntopic = \"echo\"\n[outputs]\nalerts = { topic = \"fraud-alerts\" }\ndlq = { topic = \"rejects\" }\n[[operators]]\nname = \"probe\"\n[settings]\non_error = \"dead-letter\"\n";
    let (s, body) = t.create_pipeline(spec).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    t.produce(
        "commands",
        "{\"key\":\"a\",\"value\":\"emit alerts card-7\"}\n{\"key\":\"b\",\"value\":\"emit audit seen\"}\n{\"key\":\"c\",\"value\":\"bad amount\"}\n{\"key\":\"d\",\"value\":\"plain\"}\n",
    )
    .await;
    t.wait_caught_up("named").await;
    let values = |records: Vec<serde_json::Value>| -> Vec<String> {
        records
            .iter()
            .map(|r| r["value"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(values(t.records("fraud-alerts").await), ["card-7"]);
    assert_eq!(
        values(t.records("named.audit").await),
        ["seen"],
        "an unnamed port keeps <pipeline>.<port>"
    );
    assert_eq!(values(t.records("rejects").await), ["bad amount"]);
    assert_eq!(values(t.records("echo").await), ["plain"]);
    let (s, _) = t.get("/v1/topics/named.alerts").await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "the named port wrote nothing to <pipeline>.<port>"
    );
    let (s, _) = t.get("/v1/topics/named.dlq").await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Refused before anything is created: a reserved port, a Kafka topic beside an
    // embedded sink, the pipeline's own source, a bad topic name.
    for (outputs, says) in [
        ("shadow = { topic = \"x\" }", "reserved"),
        (
            "alerts = { kafka = { topic = \"x\" } }",
            "same commit as the sink",
        ),
        ("alerts = { topic = \"commands\" }", "its own outputs"),
        ("alerts = { topic = \"a/b\" }", "invalid"),
    ] {
        let spec = format!(
            "name = \"refused\"\n[source]\ntopic = \"commands\"\n[sink]\ntopic = \"echo\"\n[outputs]\n{outputs}\n[[operators]]\nname = \"probe\"\n"
        );
        let (s, e) = t.create_pipeline(&spec).await;
        assert_error(s, &e, StatusCode::BAD_REQUEST, says);
        let (s, _) = t.get("/v1/pipelines/refused").await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{outputs}: nothing was created");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_pipeline_does_not_stop_another() {
    let t = TestApp::new();
    t.push("probe", "fixture-probe").await;
    t.push("wordcount", "wordcount").await;
    t.create_topic("lines", 2).await;
    t.create_topic("commands", 1).await;
    t.create_topic("commands2", 1).await;
    let (s, _) = t.create_pipeline(WORDCOUNT).await;
    assert_eq!(s, StatusCode::CREATED);
    let fragile = "name = \"fragile\"\n[source]\ntopic = \"commands\"\n[sink]\ntopic = \"echo\"\n[[operators]]\nname = \"probe\"\n";
    let (s, _) = t.create_pipeline(fragile).await;
    assert_eq!(s, StatusCode::CREATED);
    let tolerant = "name = \"tolerant\"\n[source]\ntopic = \"commands2\"\n[sink]\ntopic = \"echo2\"\n[[operators]]\nname = \"probe\"\n[settings]\non_error = \"dead-letter\"\n";
    let (s, _) = t.create_pipeline(tolerant).await;
    assert_eq!(s, StatusCode::CREATED);

    t.produce(
        "commands",
        "{\"value\":\"before\"}\n{\"value\":\"trap\"}\n{\"value\":\"after\"}\n",
    )
    .await;
    t.produce(
        "commands2",
        "{\"value\":\"before\"}\n{\"value\":\"bad wrong\"}\n{\"value\":\"after\"}\n",
    )
    .await;
    let failed = t
        .wait_for("fragile", "failed", |v| v["state"] == "failed")
        .await;
    let reason = failed["reason"].as_str().unwrap();
    assert!(
        reason.contains("operator probe@1: process failed on record 1 of partition 0")
            && reason.contains("trap requested"),
        "{reason}"
    );
    assert_eq!(
        failed["tasks"][0]["committed_offset"], 1,
        "the record before the failure committed"
    );
    assert_eq!(t.records("echo").await.len(), 1);

    t.wait_caught_up("tolerant").await;
    let dlq = t.records("tolerant.dlq").await;
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0]["value"], "bad wrong");
    assert!(
        dlq[0]["headers"]["eddy.error"]
            .as_str()
            .unwrap()
            .contains("wrong")
    );
    assert_eq!(t.records("echo2").await.len(), 2);

    // The healthy pipeline keeps going.
    t.produce("lines", "{\"value\":\"still running\"}\n").await;
    let wc = t.wait_caught_up("wc").await;
    assert_eq!(wc["state"], "running");
    assert_eq!(t.records("counts").await.len(), 2);

    // /metrics reports the tasks.
    let (s, m) = t.call(Method::GET, "/metrics", Body::empty(), &[]).await;
    assert_eq!(s, StatusCode::OK);
    let m = String::from_utf8(m).unwrap();
    for metric in [
        "eddy_events_in_total{partition=\"0\",pipeline=\"tolerant\"} 3",
        "eddy_errors_total{partition=\"0\",pipeline=\"tolerant\"} 1",
        "eddy_lag_records",
        "eddy_batch_duration_seconds_bucket",
        "eddy_pipelines{state=\"failed\"} 1",
        "eddy_state_bytes",
    ] {
        assert!(m.contains(metric), "{metric} missing from:\n{m}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn system_endpoints_and_unknown_routes() {
    let t = TestApp::new();
    let (s, h) = t.get("/healthz").await;
    assert_eq!((s, h["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (s, doc) = t.get("/v1/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/v1/operators/{name}",
        "/v1/topics/{topic}/records",
        "/v1/pipelines",
        "/v1/pipelines/{name}/stop",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    let (s, e) = t.get("/v1/nothing").await;
    assert_error(s, &e, StatusCode::NOT_FOUND, "not part of the API");
    let (s, e) = t
        .json(Method::PATCH, "/v1/topics", Body::empty(), &[])
        .await;
    assert_error(s, &e, StatusCode::METHOD_NOT_ALLOWED, "PATCH");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repartition_brings_every_key_to_one_task() {
    let t = TestApp::new();
    t.push("split-words", "split-words").await;
    t.push("wordcount", "wordcount").await;
    t.create_topic("lines", 3).await;
    let spec = std::fs::read_to_string(
        crate::support::workspace_root().join("examples/wordcount/pipeline-global.toml"),
    )
    .unwrap();
    let (s, p) = t.create_pipeline(&spec).await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let stages: Vec<u64> = p["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["stage"].as_u64().unwrap())
        .collect();
    assert_eq!(stages, [0, 0, 0, 1, 1, 1]);
    // Keyless lines spread round-robin over the partitions.
    let lines: String = (0..30)
        .map(|i| format!("{{\"value\":\"the cat {i} The\"}}\n"))
        .collect();
    t.produce("lines", &lines).await;
    t.wait_caught_up("wordcount").await;
    let mut the: Vec<u64> = t
        .records("counts")
        .await
        .iter()
        .filter(|r| r["key"] == "the")
        .map(|r| r["value"].as_str().unwrap().parse().unwrap())
        .collect();
    the.sort();
    assert_eq!(
        the,
        (1..=60).collect::<Vec<u64>>(),
        "one task counted every `the`"
    );
    // The repartition topic is the pipeline's own.
    let (s, _) = t
        .call(
            Method::GET,
            "/v1/topics/wordcount.wordcount.repartition",
            Body::empty(),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, e) = t
        .json(
            Method::DELETE,
            "/v1/topics/wordcount.wordcount.repartition",
            Body::empty(),
            &[],
        )
        .await;
    assert_error(s, &e, StatusCode::CONFLICT, "pipeline \"wordcount\"");
    let (s, _) = t
        .call(
            Method::DELETE,
            "/v1/pipelines/wordcount",
            Body::empty(),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = t
        .call(
            Method::GET,
            "/v1/topics/wordcount.wordcount.repartition",
            Body::empty(),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}
