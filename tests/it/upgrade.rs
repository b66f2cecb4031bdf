//! Hot upgrades: under continuous input, with state migration, and rolled back when the
//! new version fails.

use crate::support::server::TestApp;
use axum::body::Body;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeMap;

fn spec(name: &str, operator: &str, extra_settings: &str) -> String {
    format!(
        "name = \"{name}\"\n[source]\ntopic = \"lines\"\n[sink]\ntopic = \"out\"\n[[operators]]\nname = \"{operator}\"\nversion = 1\n[settings]\n{extra_settings}\n"
    )
}

/// One-word events keyed by the word, so each word's events stay in one task, in order.
fn events(from: usize, to: usize, words: usize) -> String {
    (from..to)
        .map(|i| {
            format!(
                "{{\"key\":\"w{0}\",\"value\":\"w{0}\",\"timestamp\":{i}}}",
                i % words
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Each word's output counts, in output order.
fn counts_by_word(
    records: &[Value],
    parse: impl Fn(&str) -> Option<u64>,
) -> BTreeMap<String, Vec<u64>> {
    let mut by: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for r in records {
        let n =
            parse(r["value"].as_str().unwrap()).unwrap_or_else(|| panic!("unexpected output {r}"));
        by.entry(r["key"].as_str().unwrap().to_string())
            .or_default()
            .push((r["offset"].as_u64().unwrap(), n));
    }
    by.into_iter()
        .map(|(w, mut v)| {
            v.sort();
            (w, v.into_iter().map(|(_, n)| n).collect())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upgrade_under_continuous_input_loses_and_repeats_nothing() {
    let t = TestApp::new();
    t.push("wordcount", "wordcount").await;
    t.push("wordcount", "wordcount-v2").await;
    t.create_topic("lines", 2).await;
    let (s, p) = t
        .create_pipeline(&spec("wc", "wordcount", "probation_records = 100"))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");

    // A producer writes numbered events the whole time.
    let producer = {
        let router = t.router.clone();
        tokio::spawn(async move {
            for chunk in 0..40 {
                let body = events(chunk * 50, chunk * 50 + 50, 20);
                let req = axum::http::Request::post("/v1/topics/lines/records")
                    .body(Body::from(body))
                    .unwrap();
                let resp = tower::ServiceExt::oneshot(router.clone(), req)
                    .await
                    .unwrap();
                assert_eq!(resp.status(), StatusCode::OK);
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let (s, u) = t.upgrade("wc", "wordcount", 2).await;
    assert_eq!(s, StatusCode::OK, "{u}");
    assert_eq!(u["result"], "succeeded", "{u}");
    assert_eq!(
        (u["from_version"].as_u64(), u["to_version"].as_u64()),
        (Some(1), Some(2))
    );
    assert!(u["pause_ms"].as_f64().unwrap() >= 0.0 && u["savepoint"].is_string());
    producer.await.unwrap();
    let status = t.wait_caught_up("wc").await;
    assert_eq!(
        status["operators"][0]["version"], 2,
        "the pipeline now runs version 2"
    );
    assert_eq!(status["upgrades"].as_array().unwrap().len(), 1);

    let records = t.records("out").await;
    assert_eq!(records.len(), 2000, "one output per input event");
    // Each word counts 1, 2, 3 ... 100 with nothing missing or repeated, in version 1's
    // format first and version 2's after the switch.
    let formats: BTreeMap<String, Vec<bool>> = {
        let mut by: BTreeMap<String, Vec<(u64, bool)>> = BTreeMap::new();
        for r in &records {
            let v = r["value"].as_str().unwrap();
            by.entry(r["key"].as_str().unwrap().to_string())
                .or_default()
                .push((r["offset"].as_u64().unwrap(), v.starts_with('{')));
        }
        by.into_iter()
            .map(|(w, mut v)| {
                v.sort();
                (w, v.into_iter().map(|(_, j)| j).collect())
            })
            .collect()
    };
    for (word, f) in &formats {
        let switch = f.iter().position(|j| *j).unwrap_or(f.len());
        assert!(f[switch..].iter().all(|j| *j), "{word}: formats {f:?}");
    }
    let counts = counts_by_word(&records, |v| {
        if v.starts_with('{') {
            serde_json::from_str::<Value>(v).ok()?["count"].as_u64()
        } else {
            v.parse().ok()
        }
    });
    for (word, c) in &counts {
        assert_eq!(*c, (1..=100).collect::<Vec<u64>>(), "{word}");
    }
    let state = t
        .app
        .as_ref()
        .unwrap()
        .controller
        .db()
        .dump_pipeline("wc")
        .unwrap();
    for ((_, store, _, key), value) in &state {
        if store == "counts" {
            assert_eq!(
                i64::from_le_bytes(value.as_slice().try_into().unwrap()),
                100,
                "{}",
                String::from_utf8_lossy(key)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_new_version_is_rolled_back_and_the_output_is_unchanged() {
    let t = TestApp::new();
    t.push("wordcount", "wordcount").await;
    t.push("wordcount", "fixture-wordcount-trap").await;
    t.create_topic("lines", 2).await;
    t.create_pipeline(&spec(
        "wc",
        "wordcount",
        "probation_records = 1000\nprobation_ms = 20000",
    ))
    .await;
    t.produce("lines", &events(0, 40, 4)).await;
    t.wait_caught_up("wc").await;

    let upgrading = {
        let router = t.router.clone();
        tokio::spawn(async move {
            let body = json!({ "operator": "wordcount", "version": 2 }).to_string();
            let req = axum::http::Request::post("/v1/pipelines/wc/upgrade?wait=true")
                .header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap();
            let resp = tower::ServiceExt::oneshot(router, req).await.unwrap();
            let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap();
            serde_json::from_slice::<Value>(&bytes).unwrap()
        })
    };
    // Records arrive while version 2 is on probation; it traps on its 10th.
    t.wait_for("wc", "probation", |v| {
        v["upgrades"].as_array().is_some_and(|u| !u.is_empty())
    })
    .await;
    t.produce("lines", &events(40, 100, 4)).await;
    let u = upgrading.await.unwrap();
    assert_eq!(u["result"], "rolled_back", "{u}");
    assert!(
        u["reason"].as_str().unwrap().contains("the 10th record"),
        "{u}"
    );
    let status = t.wait_caught_up("wc").await;
    assert_eq!(status["state"], "running");
    assert_eq!(
        status["operators"][0]["version"], 1,
        "the old version runs again"
    );
    assert_eq!(status["upgrades"][0]["result"], "rolled_back");
    // The counters count committed work: what the rolled-back version did is not in them.
    let tasks = status["tasks"].as_array().unwrap();
    let sum = |f: &str| tasks.iter().map(|t| t[f].as_u64().unwrap()).sum::<u64>();
    assert_eq!(sum("events_in"), sum("committed_offset"), "{status}");
    assert_eq!(
        sum("events_out") as usize,
        t.records("out").await.len(),
        "{status}"
    );

    // The output equals a run that never tried version 2.
    let records = t.records("out").await;
    assert!(
        records
            .iter()
            .all(|r| !r["value"].as_str().unwrap().contains("BAD")),
        "nothing of version 2 was committed"
    );
    let counts = counts_by_word(&records, |v| v.parse().ok());
    assert_eq!(counts.len(), 4);
    for (word, c) in &counts {
        assert_eq!(*c, (1..=25).collect::<Vec<u64>>(), "{word}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_state_format_is_migrated_during_the_upgrade() {
    let t = TestApp::new();
    t.push("counter", "fixture-counter-v1").await;
    t.push("counter", "fixture-counter-v2").await;
    t.create_topic("lines", 2).await;
    t.create_pipeline(&spec("c", "counter", "probation_records = 10"))
        .await;
    t.produce("lines", &events(0, 100, 10)).await;
    let before = t.wait_caught_up("c").await;
    assert_eq!(before["operators"][0]["state_version"], 1);
    let (s, u) = t.start_upgrade("c", "counter", 2, None).await;
    assert_eq!(s, StatusCode::OK, "{u}");
    assert_eq!(u["migrated_keys"], 10, "{u}");
    t.produce("lines", &events(100, 200, 10)).await;
    let u = t.upgrade_outcome("c").await;
    let after = t.wait_caught_up("c").await;
    assert_eq!(u["result"], "succeeded", "{u}");
    assert_eq!(
        (
            after["operators"][0]["version"].as_u64(),
            after["operators"][0]["state_version"].as_u64()
        ),
        (Some(2), Some(2))
    );
    let state = t
        .app
        .as_ref()
        .unwrap()
        .controller
        .db()
        .dump_pipeline("c")
        .unwrap();
    let counts: Vec<i64> = state
        .iter()
        .filter(|((_, store, _, _), _)| store == "counts")
        .map(|(_, v)| {
            i64::from_le_bytes(v.as_slice().try_into().expect("every count is 8 bytes now"))
        })
        .collect();
    assert_eq!(counts, vec![20; 10], "every count is right");
    let outputs = counts_by_word(&t.records("out").await, |v| {
        v.split_once(':').and_then(|(_, n)| n.parse().ok())
    });
    for (word, c) in &outputs {
        assert_eq!(*c, (1..=20).collect::<Vec<u64>>(), "{word}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn upgrades_that_cannot_start_are_undone_at_once_and_bad_requests_refused() {
    let t = TestApp::new();
    t.push("wordcount", "wordcount").await;
    t.push("wordcount", "fixture-fail-init").await;
    t.create_topic("lines", 1).await;
    t.create_pipeline(&spec("wc", "wordcount", "")).await;
    t.produce("lines", &events(0, 10, 2)).await;
    t.wait_caught_up("wc").await;
    let (s, u) = t.upgrade("wc", "wordcount", 2).await;
    assert_eq!(s, StatusCode::OK, "{u}");
    assert_eq!(u["result"], "rolled_back");
    assert!(
        u["reason"]
            .as_str()
            .unwrap()
            .contains("this version cannot start"),
        "{u}"
    );
    t.produce("lines", &events(10, 20, 2)).await;
    let status = t.wait_caught_up("wc").await;
    assert_eq!(status["operators"][0]["version"], 1);
    let counts = counts_by_word(&t.records("out").await, |v| v.parse().ok());
    assert!(
        counts
            .values()
            .all(|c| *c == (1..=10).collect::<Vec<u64>>()),
        "{counts:?}"
    );

    let js = [("content-type", "application/json")];
    let (s, e) = t
        .json(
            Method::POST,
            "/v1/pipelines/wc/upgrade",
            r#"{"operator":"nope","version":2}"#,
            &js,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    let (s, e) = t
        .json(
            Method::POST,
            "/v1/pipelines/wc/upgrade",
            r#"{"operator":"wordcount","version":9}"#,
            &js,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");
    let (s, e) = t
        .json(
            Method::POST,
            "/v1/pipelines/wc/upgrade",
            r#"{"operator":"wordcount","version":1}"#,
            &js,
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    // A config is checked before anything moves; the same config is no change.
    for (body, code, says) in [
        (
            r#"{"operator":"wordcount","version":1,"config":{"":"x"}}"#,
            StatusCode::BAD_REQUEST,
            "must not be empty",
        ),
        (
            r#"{"operator":"wordcount","version":1,"config":{"a":null}}"#,
            StatusCode::BAD_REQUEST,
            "is null",
        ),
        (
            r#"{"operator":"wordcount","version":1,"config":{}}"#,
            StatusCode::CONFLICT,
            "already runs",
        ),
    ] {
        let (s, e) = t
            .json(Method::POST, "/v1/pipelines/wc/upgrade", body, &js)
            .await;
        assert_eq!(s, code, "{body}: {e}");
        assert!(e["detail"].as_str().unwrap().contains(says), "{body}: {e}");
    }
    let many: serde_json::Map<String, Value> =
        (0..1001).map(|i| (format!("k{i}"), json!("v"))).collect();
    let body = json!({ "operator": "wordcount", "version": 1, "config": many }).to_string();
    let (s, e) = t.post_json("/v1/pipelines/wc/upgrade", body).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert!(
        e["detail"].as_str().unwrap().contains("more than 1000"),
        "{e}"
    );
    for action in ["promote", "rollback"] {
        let (s, e) = t
            .post_json(&format!("/v1/pipelines/wc/upgrade/{action}"), "")
            .await;
        assert_eq!(s, StatusCode::CONFLICT, "{e}");
        assert!(
            e["detail"]
                .as_str()
                .unwrap()
                .contains("no upgrade on probation"),
            "{e}"
        );
    }
    let status = t.wait_caught_up("wc").await;
    assert_eq!(
        status["upgrades"].as_array().unwrap().len(),
        1,
        "refused requests leave no trace"
    );
    t.json(Method::POST, "/v1/pipelines/wc/stop", Body::empty(), &[])
        .await;
    let (s, e) = t
        .json(
            Method::POST,
            "/v1/pipelines/wc/upgrade",
            r#"{"operator":"wordcount","version":2}"#,
            &js,
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
}

/// `eddy run --state-dir` with a new `state-version` of an operator runs its `migrate`
/// over the stored state first (and says so), and gives the outputs the server's hot
/// upgrade gives for the same input.
#[tokio::test(flavor = "multi_thread")]
async fn eddy_run_migrates_a_state_dir_like_the_servers_upgrade() {
    let (first, second) = (events(0, 100, 10), events(100, 200, 10));
    // The server: v1 over the first half, a hot upgrade to v2, the second half.
    let t = TestApp::new();
    t.push("counter", "fixture-counter-v1").await;
    t.push("counter", "fixture-counter-v2").await;
    t.create_topic("lines", 1).await;
    t.create_pipeline(&spec("c", "counter", "probation_records = 10"))
        .await;
    t.produce("lines", &first).await;
    t.wait_caught_up("c").await;
    let (s, u) = t.start_upgrade("c", "counter", 2, None).await;
    assert!(s.is_success() && u["result"] == "probation", "{u}");
    t.produce("lines", &second).await;
    let u = t.upgrade_outcome("c").await;
    assert_eq!(u["result"], "succeeded", "{u}");
    t.wait_caught_up("c").await;
    let served: Vec<(String, String)> = t
        .records("out")
        .await
        .iter()
        .skip(100)
        .map(|r| {
            (
                r["key"].as_str().unwrap().into(),
                r["value"].as_str().unwrap().into(),
            )
        })
        .collect();

    // eddy run: v1 over the first half, then v2 over the second, in one state directory.
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    std::fs::write(
        path("c.toml"),
        "name = \"c\"\n[[operators]]\nname = \"counter\"\n",
    )
    .unwrap();
    std::fs::write(path("first.jsonl"), &first).unwrap();
    std::fs::write(path("second.jsonl"), &second).unwrap();
    let run = |version: &str, input: &str| {
        let operator = format!("counter={}", crate::support::guest(version).display());
        let (ok, _, stderr) = crate::support::eddy_output(&[
            "run",
            &path("c.toml"),
            "--input",
            &path(input),
            "--output",
            &path("out.jsonl"),
            "--state-dir",
            &path("state"),
            "--operator",
            &operator,
        ]);
        assert!(ok, "{stderr}");
        stderr
    };
    let said = run("fixture-counter-v1", "first.jsonl");
    assert!(!said.contains("migrat"), "{said}");
    let said = run("fixture-counter-v2", "second.jsonl");
    assert!(
        said.contains("state-version 1, the operator reads 2: migrating")
            && said.contains("migrated 10 keys"),
        "{said}"
    );
    let ran: Vec<(String, String)> = std::fs::read_to_string(path("out.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let r: Value = serde_json::from_str(l).unwrap();
            (
                r["key"].as_str().unwrap().into(),
                r["value"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(ran, served);
    assert!(ran.contains(&("w3".into(), "v2:20".into())), "{ran:?}");
    // The version is recorded with the migrated state: the next run does not migrate.
    let said = run("fixture-counter-v2", "second.jsonl");
    assert!(!said.contains("migrat"), "{said}");
}

/// A word count, upgraded to the probe (which rejects `bad …` records the word count
/// takes) while `during` arrives on probation; returns the server, the upgrade's
/// verdict and the outputs' values.
async fn probe_upgrade(
    settings: &str,
    before: &str,
    during: &str,
) -> (TestApp, Value, Vec<String>) {
    let t = TestApp::new();
    t.push("wordcount", "wordcount").await;
    t.push("wordcount", "fixture-probe").await;
    t.create_topic("lines", 1).await;
    t.create_pipeline(&spec("wc", "wordcount", settings)).await;
    t.produce("lines", before).await;
    t.wait_caught_up("wc").await;
    let upgrade = try_probe(&t, during, 0).await;
    let values = t
        .records("out")
        .await
        .iter()
        .map(|r| r["value"].as_str().unwrap().to_string())
        .collect();
    (t, upgrade, values)
}

/// Upgrade number `n` of the word count to the probe, with `during` on probation.
async fn try_probe(t: &TestApp, during: &str, n: usize) -> Value {
    let body = json!({ "operator": "wordcount", "version": 2 }).to_string();
    let (s, u) = t.post_json("/v1/pipelines/wc/upgrade", body).await;
    assert!(s.is_success() && u["result"] == "probation", "{u}");
    t.produce("lines", during).await;
    let status = t
        .wait_for("wc", "the verdict", |v| {
            v["upgrades"][n]["result"] != "probation"
        })
        .await;
    t.wait_caught_up("wc").await;
    status["upgrades"][n].clone()
}

fn lines(values: &[&str]) -> String {
    values
        .iter()
        .map(|v| format!("{{\"value\":\"{v}\"}}\n"))
        .collect()
}

/// Under `skip` and `dead-letter`, records the new version rejects (and the old one
/// took) count against it: the first one rolls it back, the reason names it, and the old
/// version handles every record once.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_version_that_rejects_records_is_rolled_back_whatever_the_policy() {
    for policy in ["skip", "dead-letter"] {
        let settings =
            format!("on_error = \"{policy}\"\nprobation_records = 20\nprobation_ms = 60000");
        let before = lines(&["a", "b"]);
        let during: Vec<&str> = (0..20)
            .map(|i| if i == 5 { "bad x" } else { "a" })
            .collect();
        let (t, upgrade, values) = probe_upgrade(&settings, &before, &lines(&during)).await;
        assert_eq!(upgrade["result"], "rolled_back", "{policy}: {upgrade}");
        let reason = upgrade["reason"].as_str().unwrap();
        assert!(
            reason.contains("rejected 1 of")
                && reason.contains("more than the old version (0 of 2 records)")
                && reason.contains("record 7 of partition 0"),
            "{policy}: {reason}"
        );
        // The word count's counts only: a 1, b 1, then a 2..=20 with bad and x once.
        let mut want: Vec<String> = ["1", "1"].iter().map(|s| s.to_string()).collect();
        let mut a = 1;
        for v in &during {
            for _ in v.split(' ') {
                if *v == "a" {
                    a += 1;
                    want.push(a.to_string());
                } else {
                    want.push("1".into());
                }
            }
        }
        assert_eq!(values, want, "{policy}");
        // Tried again, it is judged against the old version's records alone: the 22 it
        // committed, none rejected (the rolled-back version's rejection is not theirs).
        let again = try_probe(&t, &lines(&during), 1).await;
        assert_eq!(again["result"], "rolled_back", "{policy}: {again}");
        let reason = again["reason"].as_str().unwrap();
        assert!(
            reason.contains("more than the old version (0 of 22 records)"),
            "{policy}: {reason}"
        );
    }
}

/// With `probation_max_error_rate`, a new version may reject up to that share of its
/// probation's records; past it, it is rolled back when the probation has its records.
#[tokio::test(flavor = "multi_thread")]
async fn the_error_rate_a_probation_allows_is_a_setting() {
    let during: Vec<&str> = (0..20)
        .map(|i| if i % 10 == 0 { "bad x" } else { "a" })
        .collect();
    let settings = "on_error = \"skip\"\nprobation_records = 20\nprobation_ms = 300";
    let allows = format!("{settings}\nprobation_max_error_rate = 0.1");
    let (_, upgrade, _) = probe_upgrade(&allows, &lines(&["a"]), &lines(&during)).await;
    assert_eq!(upgrade["result"], "succeeded", "{upgrade}");
    let strict = format!("{settings}\nprobation_max_error_rate = 0.05");
    let (_, upgrade, _) = probe_upgrade(&strict, &lines(&["a"]), &lines(&during)).await;
    assert_eq!(upgrade["result"], "rolled_back", "{upgrade}");
    let reason = upgrade["reason"].as_str().unwrap();
    assert!(
        reason.contains("rejected 2 of 20 records")
            && reason.contains("probation_max_error_rate = 0.05"),
        "{reason}"
    );
}
