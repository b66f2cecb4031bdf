//! Canary upgrades: some partitions switch (with probation) while the others stay,
//! until a promote upgrades the others or a rollback sends the canaries back; each
//! record is handled once, by the version its partition ran at the time.

use crate::support::server::TestApp;
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeMap;

const SPEC: &str = "name = \"p\"\n[source]\ntopic = \"lines\"\n[sink]\ntopic = \"out\"\n[[operators]]\nname = \"wc\"\nversion = 1\n[settings]\nprobation_records = 20\nprobation_ms = 200\n";

/// Ten records of each of eight words, word `w{k}` always in partition `k % 4`.
fn round() -> String {
    (0..80)
        .map(|i| {
            let w = i % 8;
            json!({ "key": format!("w{w}"), "value": format!("w{w}"), "partition": w % 4 })
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A word count on four partitions that took one round on version 1.
async fn pipeline() -> TestApp {
    let t = TestApp::new();
    t.push("wc", "wordcount").await;
    t.push("wc", "wordcount-v2").await;
    t.create_topic("lines", 4).await;
    let (s, e) = t.create_pipeline(SPEC).await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
    t.produce("lines", &round()).await;
    t.wait_caught_up("p").await;
    t
}

/// Starts a canary of version 2 on partitions 0 and 3, and gives it a round.
async fn canary(t: &TestApp) {
    let body = json!({ "operator": "wc", "version": 2, "partitions": [0, 3] }).to_string();
    let (s, u) = t.post_json("/v1/pipelines/p/upgrade", body).await;
    assert_eq!(
        (s, u["result"].as_str()),
        (StatusCode::OK, Some("probation")),
        "{u}"
    );
    t.produce("lines", &round()).await;
    let u = t.upgrade_outcome("p").await;
    assert_eq!(u["result"], "canary", "{u}");
    assert_eq!(u["partitions"], json!([0, 3]), "{u}");
    let v = t.wait_caught_up("p").await;
    assert_eq!(
        v["operators"][0]["version"], 1,
        "the record pins version 1: {v}"
    );
    assert_eq!(v["canary"]["partitions"], json!([0, 3]), "{v}");
    let runs: Vec<Value> = v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["canary"].clone())
        .collect();
    assert_eq!(
        runs,
        [json!("wc@2"), Value::Null, Value::Null, json!("wc@2")],
        "{v}"
    );
}

/// Per word, the formats of its outputs in order (`1` for version 1's plain count, `2`
/// for version 2's JSON), checking the counts run 1, 2, 3 ... once each.
async fn formats(t: &TestApp) -> BTreeMap<String, String> {
    let mut by: BTreeMap<String, Vec<(u64, u64, char)>> = BTreeMap::new();
    for r in t.records("out").await {
        let value = r["value"].as_str().unwrap();
        let (n, format) = match value.parse::<u64>() {
            Ok(n) => (n, '1'),
            Err(_) => {
                let v: Value = serde_json::from_str(value).unwrap();
                (v["count"].as_u64().unwrap(), '2')
            }
        };
        by.entry(r["key"].as_str().unwrap().to_string())
            .or_default()
            .push((r["offset"].as_u64().unwrap(), n, format));
    }
    by.into_iter()
        .map(|(word, mut outs)| {
            outs.sort();
            let counts: Vec<u64> = outs.iter().map(|o| o.1).collect();
            assert_eq!(
                counts,
                (1..=outs.len() as u64).collect::<Vec<_>>(),
                "{word}"
            );
            (word, outs.iter().map(|o| o.2).collect())
        })
        .collect()
}

fn runs(formats: &BTreeMap<String, String>, canary: &str, others: &str) {
    for (word, f) in formats {
        let k: u32 = word[1..].parse().unwrap();
        let want = if [0, 3].contains(&(k % 4)) {
            canary
        } else {
            others
        };
        assert_eq!(f, want, "{word}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canary_runs_on_its_partitions_until_it_is_promoted() {
    let t = pipeline().await;
    canary(&t).await;
    // Another upgrade is refused while the canary runs.
    let body = json!({ "operator": "wc", "version": 1, "config": { "lowercase": true } });
    let (s, e) = t
        .post_json("/v1/pipelines/p/upgrade", body.to_string())
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    assert!(
        e["detail"]
            .as_str()
            .unwrap()
            .contains("runs a canary of wc@2 on partitions [0, 3]"),
        "{e}"
    );
    t.produce("lines", &round()).await;
    t.wait_caught_up("p").await;
    // A restart keeps the canary where it was.
    for action in ["stop", "start"] {
        let (s, e) = t.post_json(&format!("/v1/pipelines/p/{action}"), "").await;
        assert!(s.is_success(), "{e}");
    }
    t.produce("lines", &round()).await;
    t.wait_caught_up("p").await;
    let r = "1111111111";
    runs(
        &formats(&t).await,
        &format!("{r}{}", "2".repeat(30)),
        &r.repeat(4),
    );

    // Promoted: the other partitions switch too, with their own probation.
    let (s, u) = t.post_json("/v1/pipelines/p/upgrade/promote", "").await;
    assert_eq!(
        (s, u["result"].as_str()),
        (StatusCode::OK, Some("probation")),
        "{u}"
    );
    assert_eq!(u["partitions"], json!([1, 2]), "{u}");
    t.produce("lines", &round()).await;
    let u = t.upgrade_outcome("p").await;
    assert_eq!(u["result"], "succeeded", "{u}");
    let v = t.wait_caught_up("p").await;
    assert_eq!(v["operators"][0]["version"], 2, "{v}");
    assert_eq!(v["canary"], Value::Null, "{v}");
    assert!(
        v["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["canary"].is_null()),
        "{v}"
    );
    runs(
        &formats(&t).await,
        &format!("{r}{}", "2".repeat(40)),
        &format!("{}{}", r.repeat(4), "2".repeat(10)),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canary_rolled_back_goes_on_with_the_old_version_from_its_state() {
    let t = pipeline().await;
    canary(&t).await;
    let (s, u) = t.post_json("/v1/pipelines/p/upgrade/rollback", "").await;
    assert_eq!(
        (s, u["result"].as_str()),
        (StatusCode::OK, Some("rolled_back")),
        "{u}"
    );
    assert!(
        u["reason"]
            .as_str()
            .unwrap()
            .contains("canary was rolled back by request"),
        "{u}"
    );
    t.produce("lines", &round()).await;
    let v = t.wait_caught_up("p").await;
    assert_eq!(
        (v["operators"][0]["version"].as_u64(), &v["canary"]),
        (Some(1), &Value::Null),
        "{v}"
    );
    let r = "1111111111";
    runs(
        &formats(&t).await,
        &format!("{r}{}{r}", "2".repeat(10)),
        &r.repeat(3),
    );
    // Nothing left to end; canary partitions are checked before anything moves.
    let (s, e) = t.post_json("/v1/pipelines/p/upgrade/rollback", "").await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    for (partitions, says) in [
        (json!([]), "name at least one"),
        (
            json!([4]),
            "partition 4 is not one of the operator's stage (0 to 3)",
        ),
        (json!([1, 1]), "partition 1 is named twice"),
        (json!([0, 1, 2, 3]), "every partition"),
    ] {
        let body = json!({ "operator": "wc", "version": 2, "partitions": partitions });
        let (s, e) = t
            .post_json("/v1/pipelines/p/upgrade", body.to_string())
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{partitions}: {e}");
        assert!(
            e["detail"].as_str().unwrap().contains(says),
            "{partitions}: {e}"
        );
    }
    let v = t.wait_caught_up("p").await;
    assert_eq!(
        v["upgrades"].as_array().unwrap().len(),
        1,
        "refused requests leave no trace"
    );
}

/// The CLI's upgrade flags against a real server: a reconfigure with `--config`, a
/// canary with `--partitions` shown in the status table, and `--promote`.
#[test]
fn the_cli_reconfigures_runs_a_canary_and_promotes_it() {
    use crate::support::server::ServerProcess;
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"), &[]);
    for v in ["wordcount", "wordcount-v2"] {
        server.ok(&[
            "operator",
            "push",
            "wc",
            crate::support::guest(v).to_str().unwrap(),
        ]);
    }
    server.ok(&["topic", "create", "lines", "--partitions", "4"]);
    let spec = dir.path().join("p.toml");
    std::fs::write(
        &spec,
        SPEC.replace(
            "version = 1\n",
            "version = 1\nconfig = { lowercase = false, keep = \"me\" }\n",
        ),
    )
    .unwrap();
    server.ok(&["pipeline", "create", spec.to_str().unwrap()]);
    let input = dir.path().join("round.jsonl");
    std::fs::write(&input, round().replace("\"w", "\"W")).unwrap();
    let produce = || {
        server.ok(&[
            "topic",
            "produce",
            "lines",
            "--file",
            input.to_str().unwrap(),
        ])
    };
    let last = |result: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let v: Value =
                serde_json::from_str(&server.ok(&["pipeline", "status", "p", "--json"])).unwrap();
            let u = v["upgrades"]
                .as_array()
                .and_then(|u| u.last())
                .cloned()
                .unwrap_or_default();
            if u["result"] == result {
                return v;
            }
            assert!(std::time::Instant::now() < deadline, "no {result}: {v}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    produce();

    // One key changes, the others stay, the version too.
    let out = server.ok(&[
        "pipeline",
        "upgrade",
        "p",
        "--operator",
        "wc",
        "--config",
        "lowercase=true",
        "--no-wait",
    ]);
    assert!(
        out.contains("wc: 1 → 1") && out.contains("runs on probation"),
        "{out}"
    );
    produce();
    let v = last("succeeded");
    assert_eq!(
        v["spec"]["operators"][0]["config"],
        json!({ "lowercase": "true", "keep": "me" }),
        "{v}"
    );

    // A canary on partitions 0 and 3, in the status table.
    let out = server.ok(&[
        "pipeline",
        "upgrade",
        "p",
        "--operator",
        "wc@2",
        "--partitions",
        "0,3",
        "--no-wait",
    ]);
    assert!(out.contains("runs on probation"), "{out}");
    produce();
    last("canary");
    let table = server.ok(&["pipeline", "status", "p"]);
    assert!(
        table.contains("canary: wc@2 runs on partitions [0,3]") && table.contains("CANARY"),
        "{table}"
    );
    assert_eq!(
        table.matches("wc@2").count(),
        3,
        "the line and two tasks: {table}"
    );

    // Promoted: the others switch once their probation has its records.
    let out = server.ok(&["pipeline", "upgrade", "p", "--promote", "--no-wait"]);
    assert!(out.contains("runs on probation"), "{out}");
    produce();
    let v = last("succeeded");
    assert_eq!(
        (v["operators"][0]["version"].as_u64(), &v["canary"]),
        (Some(2), &Value::Null),
        "{v}"
    );
    server.ok(&["pipeline", "wait", "p"]);
    server.stop();
}
