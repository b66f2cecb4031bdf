//! Shadow runs: another version beside the live one, compared record by record. The
//! report's counts and sample are checked against an independent simulation of both
//! versions; the sink holds exactly the live version's outputs, through a `kill -9`
//! during the shadow; promote and discard work; a shadow that traps is dropped with the
//! reason and the live pipeline never notices.

use crate::support::guest;
use crate::support::oracle::{expected_counts, lines, read_topic};
use crate::support::server::{ServerProcess, TestApp};
use axum::http::StatusCode;
use eddy_host::record::Record;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Word count that lowercases (as the live version runs) on four partitions.
const SPEC: &str = "name = \"p\"\n[source]\ntopic = \"lines\"\n[sink]\ntopic = \"out\"\n[[operators]]\nname = \"wc\"\nversion = 1\nconfig = { lowercase = \"true\" }\n[settings]\nprobation_records = 20\nprobation_ms = 200\n";

/// `count` lines of mixed-case words as JSON records, spread over four partitions.
fn round(count: usize, seed: u64) -> String {
    lines(count, seed)
        .into_iter()
        .enumerate()
        .map(|(i, l)| json!({ "value": l, "partition": i % 4 }).to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The words of a line as examples/wordcount splits them, in their case.
fn words(text: &str) -> Vec<String> {
    text.split_ascii_whitespace()
        .map(|w| w.trim_matches(|c: char| c.is_ascii_punctuation()))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// What a simulation of both versions says of a shadow of word count without
/// `lowercase` beside the live one with it, started at `start[p]` in each partition.
#[derive(Debug, Default, PartialEq)]
struct Expected {
    compared: u64,
    different: u64,
    /// Per partition, the offsets of the records whose outputs differ, in order.
    differing: BTreeMap<u32, Vec<u64>>,
    shadow_outputs: u64,
}

fn simulate(source: &[(u32, u64, String)], start: &HashMap<u32, u64>) -> Expected {
    let mut live: HashMap<(u32, String), u64> = HashMap::new();
    let mut shadow: HashMap<(u32, String), u64> = HashMap::new();
    let mut e = Expected::default();
    let mut ordered: Vec<&(u32, u64, String)> = source.iter().collect();
    ordered.sort_by_key(|(p, o, _)| (*p, *o));
    for (p, offset, text) in ordered {
        let mut live_out = Vec::new();
        for w in words(text) {
            let w = w.to_ascii_lowercase();
            let n = live.entry((*p, w.clone())).or_default();
            *n += 1;
            live_out.push((w, *n));
        }
        if *offset < start[p] {
            // The shadow's state is a copy of the live state where it starts.
            shadow = shadow
                .into_iter()
                .filter(|((q, _), _)| q != p)
                .chain(
                    live.iter()
                        .filter(|((q, _), _)| q == p)
                        .map(|(k, v)| (k.clone(), *v)),
                )
                .collect();
            continue;
        }
        let mut shadow_out = Vec::new();
        for w in words(text) {
            let n = shadow.entry((*p, w.clone())).or_default();
            *n += 1;
            shadow_out.push((w, *n));
        }
        e.compared += 1;
        e.shadow_outputs += shadow_out.len() as u64;
        if live_out != shadow_out {
            e.different += 1;
            e.differing.entry(*p).or_default().push(*offset);
        }
    }
    e
}

/// The committed offset of each task of a pipeline status.
fn committed(status: &Value) -> HashMap<u32, u64> {
    status["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["partition"].as_u64().unwrap() as u32,
                t["committed_offset"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// `(partition, offset, value)` of every record of a topic, as the API reads it.
async fn source_of(t: &TestApp) -> Vec<(u32, u64, String)> {
    t.records("lines")
        .await
        .iter()
        .map(|r| {
            (
                r["partition"].as_u64().unwrap() as u32,
                r["offset"].as_u64().unwrap(),
                r["value"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Sorted `(word, count)` pairs of a word count's output records.
fn counts_of(records: &[Value]) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = records
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap().to_string(),
                r["value"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// What the live version must have emitted for the source, as sorted pairs.
fn live_expected(source: &[(u32, u64, String)]) -> Vec<(String, u64)> {
    let records: Vec<(u32, u64, Record)> = source
        .iter()
        .map(|(p, o, v)| {
            (
                *p,
                *o,
                Record {
                    key: None,
                    value: v.clone().into_bytes(),
                    timestamp: 0,
                    headers: Vec::new(),
                },
            )
        })
        .collect();
    expected_counts(&records)
}

/// A word count on version 1 that handled one round; `versions` more are pushed.
async fn pipeline(versions: &[&str]) -> TestApp {
    let t = TestApp::new();
    t.push("wc", "wordcount").await;
    for v in versions {
        t.push("wc", v).await;
    }
    t.create_topic("lines", 4).await;
    let (s, e) = t.create_pipeline(SPEC).await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
    t.produce("lines", &round(200, 1)).await;
    t.wait_caught_up("p").await;
    t
}

/// Waits until the shadow report satisfies `cond`.
async fn report_when(t: &TestApp, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, r) = t.get("/v1/pipelines/p/shadow").await;
        assert_eq!(s, StatusCode::OK, "{r}");
        if cond(&r) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {r}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_reports_exactly_the_records_that_differ_and_is_discarded() {
    let t = pipeline(&[]).await;
    let start = committed(&t.wait_caught_up("p").await);
    let before = t.records("out").await.len();
    let body = json!({ "operator": "wc", "version": 1, "config": { "lowercase": "false" } });
    let (s, r) = t
        .post_json("/v1/pipelines/p/shadow", body.to_string())
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["shadow"]["state"], "running", "{r}");
    assert_eq!(r["topic"], "p.shadow", "{r}");

    // While it runs: no upgrade, no second shadow.
    let (s, e) = t
        .start_upgrade("p", "wc", 1, Some(json!({"lowercase": "false"})))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    assert!(
        e["detail"].as_str().unwrap().contains("runs a shadow"),
        "{e}"
    );
    let (s, e) = t
        .post_json("/v1/pipelines/p/shadow", body.to_string())
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");

    t.produce("lines", &round(400, 2)).await;
    let status = t.wait_caught_up("p").await;
    let tasks = status["tasks"].as_array().unwrap();
    assert!(tasks.iter().all(|t| t["shadow"].is_object()), "{status}");

    let source = source_of(&t).await;
    let expected = simulate(&source, &start);
    assert_eq!(expected.compared, 400);
    assert!(
        expected.different > 0 && expected.different < expected.compared,
        "the test needs records that differ and records that do not: {expected:?}"
    );
    let r = report_when(&t, "the report", |r| r["counts"]["compared"] == 400).await;
    let c = &r["counts"];
    assert_eq!(c["different"], expected.different, "{r}");
    assert_eq!(c["same"], expected.compared - expected.different, "{r}");
    assert_eq!(c["errors"], 0, "{r}");
    assert_eq!(c["shadow_outputs"], expected.shadow_outputs, "{r}");
    // The sample: the first differences of each partition, with their inputs.
    let sample: Vec<(u32, u64)> = r["sample"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert_eq!(d["outcome"], "different", "{d}");
            (
                d["partition"].as_u64().unwrap() as u32,
                d["offset"].as_u64().unwrap(),
            )
        })
        .collect();
    let first: Vec<(u32, u64)> = expected
        .differing
        .iter()
        .flat_map(|(p, offsets)| offsets.iter().take(10).map(|o| (*p, *o)))
        .collect();
    assert_eq!(sample, first, "{r}");
    let d = &r["sample"][0];
    let input = source
        .iter()
        .find(|(p, o, _)| json!(p) == d["partition"] && json!(o) == d["offset"])
        .unwrap();
    assert_eq!(d["input"]["value"], input.2, "{d}");

    // The sink has the live version's outputs only, exactly; the shadow's are in their
    // own topic.
    let out = t.records("out").await;
    assert!(out.len() > before);
    assert_eq!(counts_of(&out), live_expected(&source));
    assert_eq!(
        t.records("p.shadow").await.len() as u64,
        expected.shadow_outputs
    );

    // The status says it, and /metrics (refreshed by the supervision, every 100 ms).
    let (_, status) = t.get("/v1/pipelines/p").await;
    assert_eq!(status["shadow"]["operator"]["version"], 1, "{status}");
    let gauge = format!(
        "eddy_shadow_inputs{{outcome=\"different\",pipeline=\"p\"}} {}",
        expected.different
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, m) = t
            .call(
                axum::http::Method::GET,
                "/metrics",
                axum::body::Body::empty(),
                &[],
            )
            .await;
        let m = String::from_utf8(m).unwrap();
        if m.contains(&gauge) {
            break;
        }
        assert!(Instant::now() < deadline, "{gauge} missing from:\n{m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Discarded: no report any more, and a new shadow starts from the live state again.
    let (s, r) = t.post_json("/v1/pipelines/p/shadow/discard", "").await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["counts"]["compared"], 400, "the report as it was: {r}");
    let (s, e) = t.get("/v1/pipelines/p/shadow").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");
    let (_, status) = t.get("/v1/pipelines/p").await;
    assert!(status["shadow"].is_null(), "{status}");
    let (s, r) = t
        .post_json("/v1/pipelines/p/shadow", body.to_string())
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let start = committed(&t.wait_caught_up("p").await);
    t.produce("lines", &round(100, 3)).await;
    t.wait_caught_up("p").await;
    let again = simulate(&source_of(&t).await, &start);
    let r = report_when(&t, "the second report", |r| r["counts"]["compared"] == 100).await;
    assert_eq!(r["counts"]["different"], again.different, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_is_promoted_to_an_upgrade_of_its_version() {
    let t = pipeline(&["wordcount-v2"]).await;
    let (s, e) = t
        .post_json(
            "/v1/pipelines/p/shadow",
            json!({ "operator": "wc", "version": 2, "records": 0 }).to_string(),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    let (s, e) = t
        .post_json(
            "/v1/pipelines/p/shadow",
            json!({ "operator": "wc", "version": 2, "for_ms": 999 }).to_string(),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    let (s, r) = t
        .post_json(
            "/v1/pipelines/p/shadow",
            json!({ "operator": "wc", "version": 2, "records": 100 }).to_string(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    t.produce("lines", &round(200, 4)).await;
    // Version 2 emits JSON where version 1 emits a number: every record differs; the
    // shadow finishes after 100 (give or take a batch: it ends between two).
    let r = report_when(&t, "the shadow's end", |r| {
        r["shadow"]["state"] == "finished"
    })
    .await;
    let c = &r["counts"];
    assert!(c["compared"].as_u64().unwrap() >= 100, "{r}");
    assert_eq!(c["different"], c["compared"], "{r}");
    let shadowed = t.records("p.shadow").await;
    assert!(
        shadowed[0]["value"].as_str().unwrap().starts_with('{'),
        "{shadowed:?}"
    );

    let (s, u) = t.post_json("/v1/pipelines/p/shadow/promote", "").await;
    assert_eq!(
        (s, u["result"].as_str()),
        (StatusCode::OK, Some("probation")),
        "{u}"
    );
    t.produce("lines", &round(100, 5)).await;
    let u = t.upgrade_outcome("p").await;
    assert_eq!(u["result"], "succeeded", "{u}");
    let v = t.wait_caught_up("p").await;
    assert_eq!(v["operators"][0]["version"], 2, "{v}");
    assert!(v["shadow"].is_null(), "{v}");
    let (s, _) = t.get("/v1/pipelines/p/shadow").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_shadow_is_dropped_and_the_live_pipeline_never_notices() {
    let t = pipeline(&["fixture-wordcount-trap"]).await;
    let (s, r) = t
        .post_json(
            "/v1/pipelines/p/shadow",
            json!({ "operator": "wc", "version": 2 }).to_string(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    // The shadow traps on every 10th record an instance sees: 20 traps in a partition
    // drop it.
    t.produce("lines", &round(900, 6)).await;
    let r = report_when(&t, "the shadow dropped", |r| {
        r["shadow"]["state"] == "dropped"
    })
    .await;
    let reason = r["shadow"]["reason"].as_str().unwrap();
    assert!(reason.contains("trapped 20 times"), "{reason}");
    assert!(r["counts"]["shadow_errors"].as_u64().unwrap() >= 20, "{r}");
    let status = t.wait_caught_up("p").await;
    assert_eq!(status["state"], "running", "{status}");
    for task in status["tasks"].as_array().unwrap() {
        assert_eq!(task["errors"], 0, "{status}");
        assert!(task["shadow"].is_null(), "the lanes ended: {status}");
    }
    let source = source_of(&t).await;
    assert_eq!(counts_of(&t.records("out").await), live_expected(&source));
    // The text status shows how it ended.
    let (_, status) = t.get("/v1/pipelines/p").await;
    assert_eq!(status["shadow"]["state"], "dropped", "{status}");
}

/// The real server and CLI: a shadow started with `eddy pipeline upgrade --shadow`,
/// a `kill -9` while it compares, a restart; the sink holds exactly the live version's
/// outputs and the report counts every record once.
#[test]
fn a_shadow_survives_kill_9_and_the_sink_never_sees_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = ServerProcess::start(&data, &[]);
    server.ok(&[
        "operator",
        "push",
        "wc",
        guest("wordcount").to_str().unwrap(),
    ]);
    server.ok(&["topic", "create", "lines", "--partitions", "4"]);
    let spec = dir.path().join("p.toml");
    std::fs::write(&spec, SPEC).unwrap();
    server.ok(&["pipeline", "create", spec.to_str().unwrap()]);
    let produce = |server: &ServerProcess, name: &str, text: String| {
        let file = dir.path().join(name);
        std::fs::write(&file, text).unwrap();
        server.ok(&[
            "topic",
            "produce",
            "lines",
            "--file",
            file.to_str().unwrap(),
        ]);
    };
    let status = |server: &ServerProcess| -> Value {
        serde_json::from_str(&server.ok(&["pipeline", "status", "p", "--json"])).unwrap()
    };
    let caught_up = |server: &ServerProcess| -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let v = status(server);
            if v["tasks"].as_array().unwrap().iter().all(|t| t["lag"] == 0) {
                return v;
            }
            assert!(Instant::now() < deadline, "no catch-up: {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    produce(&server, "a.jsonl", round(400, 7));
    let start = committed(&caught_up(&server));
    let out = server.ok(&[
        "pipeline",
        "upgrade",
        "p",
        "--operator",
        "wc@1",
        "--config",
        "lowercase=false",
        "--shadow",
    ]);
    assert!(
        out.contains("shadow of wc started") && out.contains("p.shadow"),
        "{out}"
    );
    let text = server.ok(&["pipeline", "status", "p"]);
    assert!(text.contains("shadow: wc@1 running"), "{text}");

    // Input keeps coming; the kill cuts into it.
    for chunk in 0..5 {
        produce(&server, &format!("b{chunk}.jsonl"), round(2000, 10 + chunk));
    }
    std::thread::sleep(Duration::from_millis(150));
    let lag: u64 = status(&server)["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["lag"].as_u64().unwrap())
        .sum();
    println!("kill -9 with {lag} records not yet committed");
    server.kill();

    let server = ServerProcess::start(&data, &[]);
    caught_up(&server);
    let report: Value =
        serde_json::from_str(&server.ok(&["pipeline", "shadow", "p", "--json"])).unwrap();
    let text = server.ok(&["pipeline", "shadow", "p"]);
    assert!(text.contains("wc@1 beside wc@1, running"), "{text}");
    assert!(text.contains("differences (a sample):"), "{text}");
    server.stop();

    let source: Vec<(u32, u64, String)> = read_topic(&data, "lines")
        .into_iter()
        .map(|(p, o, r)| (p, o, String::from_utf8(r.value).unwrap()))
        .collect();
    let expected = simulate(&source, &start);
    assert_eq!(expected.compared, 10_000);
    assert_eq!(report["counts"]["compared"], expected.compared, "{report}");
    assert_eq!(
        report["counts"]["different"], expected.different,
        "{report}"
    );
    assert_eq!(
        report["counts"]["shadow_outputs"], expected.shadow_outputs,
        "{report}"
    );
    let sink: Vec<(String, u64)> = {
        let mut v: Vec<(String, u64)> = read_topic(&data, "out")
            .into_iter()
            .map(|(_, _, r)| {
                (
                    String::from_utf8(r.key.unwrap()).unwrap(),
                    String::from_utf8(r.value).unwrap().parse().unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };
    assert!(
        sink == live_expected(&source),
        "the sink differs from the live version's outputs"
    );
    assert_eq!(
        read_topic(&data, "p.shadow").len() as u64,
        expected.shadow_outputs,
        "the shadow topic holds each shadow output once"
    );
}

/// Windows close on timers: a shadow that behaves like the live version (the same
/// window, written out in its config) compares every click and every fired timer as
/// the same, and its topic gets each window once; one with shorter windows fires other
/// timers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_are_compared_per_timer() {
    for (config, all_same) in [("60000", true), ("30000", false)] {
        let t = TestApp::new();
        t.push("clicks", "clicks-per-minute").await;
        t.create_topic("clicks", 1).await;
        let spec = "name = \"p\"\n[source]\ntopic = \"clicks\"\n[sink]\ntopic = \"out\"\n[[operators]]\nname = \"clicks\"\nversion = 1\n";
        let (s, e) = t.create_pipeline(spec).await;
        assert_eq!(s, StatusCode::CREATED, "{e}");
        let body = json!({ "operator": "clicks", "version": 1, "config": { "size_ms": config } });
        let (s, r) = t
            .post_json("/v1/pipelines/p/shadow", body.to_string())
            .await;
        assert_eq!(s, StatusCode::OK, "{r}");
        // 300 clicks on 3 pages over 10 minutes, in order.
        let clicks: Vec<String> = (0..300)
            .map(|i| {
                json!({ "key": format!("page{}", i % 3), "value": "click", "timestamp": 1_700_000_000_000i64 + i * 2_000 })
                    .to_string()
            })
            .collect();
        t.produce("clicks", &clicks.join("\n")).await;
        t.wait_caught_up("p").await;
        let windows = t.records("out").await.len() as u64;
        assert!(
            windows >= 27,
            "nine closed minutes of three pages: {windows}"
        );
        let r = report_when(&t, "every click compared", |r| {
            r["counts"]["compared"].as_u64().unwrap() >= 300
        })
        .await;
        let c = &r["counts"];
        if all_same {
            assert_eq!(
                c["compared"],
                300 + windows,
                "each click and each window's timer: {r}"
            );
            assert_eq!(c["same"], c["compared"], "{r}");
            assert_eq!(c["shadow_outputs"], windows, "{r}");
            assert_eq!(t.records("p.shadow").await.len() as u64, windows);
        } else {
            // Timers are compared by key and time: the live version's (at minute ends)
            // are none of the shadow's (a window's end is in its timer's key), which
            // closes twice as many windows on timers of its own.
            assert_eq!(c["only_live"], windows, "{r}");
            assert_eq!(c["only_shadow"], 2 * windows, "{r}");
            assert_eq!(c["shadow_outputs"], 2 * windows, "{r}");
            assert_eq!(c["same"], 300, "the clicks themselves emit nothing: {r}");
        }
    }
}

/// Records the live version's policy skips are given to the shadow too (and counted as
/// errors of either); a shadow that cannot start leaves no trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_records_reach_the_shadow_and_a_refused_start_leaves_nothing() {
    let t = TestApp::new();
    t.push("probe", "fixture-probe").await;
    t.create_topic("cmds", 1).await;
    let spec = "name = \"p\"\n[source]\ntopic = \"cmds\"\n[sink]\ntopic = \"out\"\n[[operators]]\nname = \"probe\"\nversion = 1\n[settings]\non_error = \"skip\"\n";
    let (s, e) = t.create_pipeline(spec).await;
    assert_eq!(s, StatusCode::CREATED, "{e}");

    // An init that fails: refused, and nothing of it stays.
    let body = json!({ "operator": "probe", "version": 1, "config": { "fail_init": "no" } });
    let (s, e) = t
        .post_json("/v1/pipelines/p/shadow", body.to_string())
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    assert!(
        e["detail"].as_str().unwrap().contains("could not start"),
        "{e}"
    );
    let (s, _) = t.get("/v1/pipelines/p/shadow").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, status) = t.get("/v1/pipelines/p").await;
    assert!(status["shadow"].is_null(), "{status}");

    let body = json!({ "operator": "probe", "version": 1, "config": { "x": "1" } });
    let (s, r) = t
        .post_json("/v1/pipelines/p/shadow", body.to_string())
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let values = ["a", "b", "bad input", "c", "trap", "d"];
    let lines: Vec<String> = values
        .iter()
        .map(|v| json!({ "value": v }).to_string())
        .collect();
    t.produce("cmds", &lines.join("\n")).await;
    t.wait_caught_up("p").await;
    let r = report_when(&t, "every record compared", |r| {
        r["counts"]["compared"] == 6
    })
    .await;
    let c = &r["counts"];
    assert_eq!(
        (
            c["same"].as_u64(),
            c["errors"].as_u64(),
            c["live_errors"].as_u64(),
            c["shadow_errors"].as_u64()
        ),
        (Some(4), Some(2), Some(2), Some(2)),
        "{r}"
    );
    let offsets: Vec<&Value> = r["sample"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["offset"])
        .collect();
    assert_eq!(offsets, [&json!(2), &json!(4)], "{r}");
    assert_eq!(r["sample"][0]["input"]["value"], "bad input", "{r}");
    assert!(r["sample"][0]["shadow_error"].is_string(), "{r}");
}

/// A savepoint leaves the shadow out; a restore drops a running shadow with the reason
/// (its copy went with the old state), and the pipeline then runs without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_drops_a_running_shadow() {
    let t = pipeline(&[]).await;
    let body = json!({ "operator": "wc", "version": 1, "config": { "lowercase": "false" } });
    let (s, r) = t
        .post_json("/v1/pipelines/p/shadow", body.to_string())
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    t.produce("lines", &round(100, 8)).await;
    t.wait_caught_up("p").await;
    let (s, m) = t.post_json("/v1/pipelines/p/savepoints", "").await;
    assert_eq!(s, StatusCode::CREATED, "{m}");
    let (_, all) = t
        .get(&format!("/v1/savepoints/{}", m["id"].as_str().unwrap()))
        .await;
    assert!(!all.to_string().contains("~shadow"), "{all}");
    let (s, _) = t.post_json("/v1/pipelines/p/stop", "").await;
    assert_eq!(s, StatusCode::OK);
    let restore = json!({ "savepoint": m["id"] }).to_string();
    let (s, r) = t.post_json("/v1/pipelines/p/restore", restore).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let (_, status) = t.get("/v1/pipelines/p").await;
    assert_eq!(status["shadow"]["state"], "dropped", "{status}");
    assert!(
        status["shadow"]["reason"]
            .as_str()
            .unwrap()
            .contains("restored from savepoint"),
        "{status}"
    );
    let (s, _) = t.post_json("/v1/pipelines/p/start", "").await;
    assert_eq!(s, StatusCode::OK);
    t.produce("lines", &round(40, 9)).await;
    let status = t.wait_caught_up("p").await;
    assert!(
        status["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["shadow"].is_null()),
        "no lane runs: {status}"
    );
    // A new shadow waits until the dropped one is discarded.
    let (s, e) = t
        .post_json("/v1/pipelines/p/shadow", body.to_string())
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    let (s, _) = t.post_json("/v1/pipelines/p/shadow/discard", "").await;
    assert_eq!(s, StatusCode::OK);
    let (s, r) = t
        .post_json("/v1/pipelines/p/shadow", body.to_string())
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
}
