//! Probations that must see traffic: an upgrade without records stays on probation
//! (time alone never passes it), is judged when records come, times out by the
//! settings, and can be ended by hand; and reconfigures under continuous input.

use crate::support::server::TestApp;
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

fn spec(operator: &str, settings: &str) -> String {
    format!(
        "name = \"p\"\n[source]\ntopic = \"lines\"\n[sink]\ntopic = \"out\"\n[[operators]]\nname = \"{operator}\"\nversion = 1\n[settings]\nprobation_records = 20\nprobation_ms = 200\n{settings}\n"
    )
}

fn lines(values: &[&str]) -> String {
    values
        .iter()
        .map(|v| json!({ "value": v }).to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A pipeline on `v1` whose upgrade to `v2` is on probation, with no records since.
async fn on_probation(v1: &str, v2: &str, settings: &str) -> TestApp {
    let t = TestApp::new();
    t.push("op", v1).await;
    t.push("op", v2).await;
    t.create_topic("lines", 1).await;
    let (s, e) = t.create_pipeline(&spec("op", settings)).await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
    t.produce("lines", &lines(&["a b", "a"])).await;
    t.wait_caught_up("p").await;
    let (s, u) = t.start_upgrade("p", "op", 2, None).await;
    assert_eq!(
        (s, u["result"].as_str()),
        (StatusCode::OK, Some("probation")),
        "{u}"
    );
    t
}

/// Waits well past `probation_ms` and checks the upgrade is still on probation with no
/// records.
async fn still_waiting(t: &TestApp) -> Value {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let v = t.wait_caught_up("p").await;
    assert_eq!(
        v["upgrades"][0]["result"], "probation",
        "time alone passed it: {v}"
    );
    assert_eq!(v["tasks"][0]["probation"]["processed"], 0, "{v}");
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upgrade_stays_on_probation_until_its_records_come_and_is_judged_by_them() {
    // A broken new version, under each policy: a trap under `fail`, rejected records
    // under `skip` and `dead-letter` (the old version rejected none).
    for (v2, policy, says) in [
        ("fixture-wordcount-trap", "fail", "the 10th record"),
        ("fixture-probe", "skip", "rejected 1 of"),
        ("fixture-probe", "dead-letter", "rejected 1 of"),
    ] {
        let t = on_probation("wordcount", v2, &format!("on_error = \"{policy}\"")).await;
        still_waiting(&t).await;
        let during: Vec<&str> = (0..20)
            .map(|i| if i == 12 { "bad x" } else { "a" })
            .collect();
        t.produce("lines", &lines(&during)).await;
        let u = t.upgrade_outcome("p").await;
        assert_eq!(u["result"], "rolled_back", "{policy}: {u}");
        assert!(
            u["reason"].as_str().unwrap().contains(says),
            "{policy}: {u}"
        );
        // The old version handled every record once: a counts 1..=21 but for the
        // record it took as words `bad` and `x`.
        let v = t.wait_caught_up("p").await;
        assert_eq!(v["operators"][0]["version"], 1, "{policy}");
        let a: Vec<String> = t
            .records("out")
            .await
            .iter()
            .filter(|r| r["key"] == "a")
            .map(|r| r["value"].as_str().unwrap().to_string())
            .collect();
        let want: Vec<String> = (1..=21).map(|n| n.to_string()).collect();
        assert_eq!(a, want, "{policy}");
    }

    // A correct new version waits as long, then passes once its records came.
    let t = on_probation("wordcount", "wordcount-v2", "").await;
    still_waiting(&t).await;
    t.produce("lines", &lines(&["a"; 19])).await;
    still_waiting_with(&t, 19).await;
    assert_eq!(
        t.records("out").await.len(),
        3,
        "the probation's outputs are held"
    );
    t.produce("lines", &lines(&["a"])).await;
    let u = t.upgrade_outcome("p").await;
    assert_eq!(
        (u["result"].as_str(), &u["reason"]),
        (Some("succeeded"), &Value::Null),
        "{u}"
    );
    t.wait_caught_up("p").await;
    assert_eq!(t.records("out").await.len(), 23, "then they commit");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_probation_without_traffic_times_out_or_is_ended_by_hand() {
    // By default a timeout rolls back; with `accept` the new version stays, unexercised.
    let timeout = "probation_timeout = \"1s\"";
    for (settings, result, says) in [
        (
            timeout.to_string(),
            "rolled_back",
            "the probation timed out after 1s",
        ),
        (
            format!("{timeout}\non_probation_timeout = \"accept\""),
            "succeeded_unexercised",
            "accepted when the probation timed out after 1s with 0 of 20 records",
        ),
    ] {
        let t = on_probation("wordcount", "wordcount-v2", &settings).await;
        let u = t.upgrade_outcome("p").await;
        assert_eq!(u["result"], result, "{u}");
        assert!(u["reason"].as_str().unwrap().contains(says), "{u}");
        let v = t.wait_caught_up("p").await;
        let version = if result == "rolled_back" { 1 } else { 2 };
        assert_eq!(v["operators"][0]["version"], version, "{v}");
    }

    // Without a timeout it waits until a user ends it; a rollback drops the held work
    // and the old version takes the records again.
    let t = on_probation("wordcount", "wordcount-v2", "").await;
    t.produce("lines", &lines(&["a", "a"])).await;
    let v = still_waiting_with(&t, 2).await;
    assert_eq!(v["upgrades"][0]["result"], "probation");
    let (s, u) = t.post_json("/v1/pipelines/p/upgrade/rollback", "").await;
    assert_eq!(s, StatusCode::OK, "{u}");
    assert_eq!(u["result"], "rolled_back", "{u}");
    assert!(
        u["reason"]
            .as_str()
            .unwrap()
            .contains("rolled back by request after 2 of 20 records"),
        "{u}"
    );
    t.wait_caught_up("p").await;
    let values: Vec<String> = t
        .records("out")
        .await
        .iter()
        .map(|r| {
            format!(
                "{}={}",
                r["key"].as_str().unwrap(),
                r["value"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        values,
        ["a=1", "b=1", "a=2", "a=3", "a=4"],
        "version 1's format, once each"
    );

    // A stop rolls a probation back too, and the pipeline stops.
    let (s, u) = t.start_upgrade("p", "op", 2, None).await;
    assert_eq!(u["result"], "probation", "{s}: {u}");
    let (s, v) = t.post_json("/v1/pipelines/p/stop", "").await;
    assert_eq!(
        (s, v["state"].as_str()),
        (StatusCode::OK, Some("stopped")),
        "{v}"
    );
    assert_eq!(v["upgrades"][1]["result"], "rolled_back", "{v}");
    assert_eq!(v["operators"][0]["version"], 1, "{v}");
}

/// Waits past `probation_ms` and checks the upgrade is still on probation with `n`
/// records.
async fn still_waiting_with(t: &TestApp, n: u64) -> Value {
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let v = t
        .wait_for("p", "the probation's records", |v| {
            v["tasks"][0]["probation"]["processed"] == n
        })
        .await;
    assert_eq!(v["upgrades"][0]["result"], "probation", "{v}");
    v
}

/// A new config with the same version: the records before the switch are handled with
/// the old config, those after with the new one, each once; the config is recorded and
/// survives a restart.
#[tokio::test(flavor = "multi_thread")]
async fn a_reconfigure_under_continuous_input_switches_at_one_record() {
    let t = TestApp::new();
    t.push("wordcount", "wordcount").await;
    t.create_topic("lines", 2).await;
    let (s, e) = t
        .create_pipeline(&spec("wordcount", "").replace(
            "version = 1\n",
            "version = 1\nconfig = { lowercase = false }\n",
        ))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
    // Upper-case words keyed by their lower-case form, so each word stays in one task.
    let chunk = |c: usize| -> String {
        (c * 50..c * 50 + 50)
            .map(|i| {
                json!({ "key": format!("w{}", i % 5), "value": format!("W{}", i % 5), "timestamp": i })
                    .to_string()
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let producer = {
        let router = t.router.clone();
        tokio::spawn(async move {
            for c in 0..40 {
                let req = axum::http::Request::post("/v1/topics/lines/records")
                    .body(axum::body::Body::from(chunk(c)))
                    .unwrap();
                let resp = tower::ServiceExt::oneshot(router.clone(), req)
                    .await
                    .unwrap();
                assert_eq!(resp.status(), StatusCode::OK);
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (s, u) = t
        .start_upgrade("p", "wordcount", 1, Some(json!({ "lowercase": true })))
        .await;
    assert_eq!(s, StatusCode::OK, "{u}");
    assert_eq!(
        (u["from_version"].as_u64(), u["to_version"].as_u64()),
        (Some(1), Some(1))
    );
    let u = t.upgrade_outcome("p").await;
    assert_eq!(u["result"], "succeeded", "{u}");
    assert_eq!(u["old_config"], json!({ "lowercase": "false" }), "{u}");
    assert_eq!(u["new_config"], json!({ "lowercase": "true" }), "{u}");
    producer.await.unwrap();
    let v = t.wait_caught_up("p").await;
    assert_eq!(
        v["spec"]["operators"][0]["config"],
        json!({ "lowercase": "true" }),
        "{v}"
    );

    // Per word, in input order (an output keeps its input's timestamp; `W3` and `w3`
    // land in different partitions): `W3` 1..=n, then `w3` 1..=m, n + m = its events.
    let check = |records: &[Value], total: usize| {
        let mut by: BTreeMap<String, Vec<(i64, String, u64)>> = BTreeMap::new();
        for r in records {
            let word = r["key"].as_str().unwrap().to_string();
            by.entry(word.to_ascii_lowercase()).or_default().push((
                r["timestamp"].as_i64().unwrap(),
                word,
                r["value"].as_str().unwrap().parse().unwrap(),
            ));
        }
        assert_eq!(by.len(), 5);
        for (word, mut outs) in by {
            outs.sort();
            let upper = outs.iter().take_while(|o| o.1 != word).count();
            let got: Vec<u64> = outs.iter().map(|o| o.2).collect();
            let want: Vec<u64> = (1..=upper as u64)
                .chain(1..=(outs.len() - upper) as u64)
                .collect();
            assert_eq!(got, want, "{word}: {outs:?}");
            assert!(
                outs[upper..].iter().all(|o| o.1 == word),
                "{word}: {outs:?}"
            );
            assert!(
                upper > 0 && upper < outs.len(),
                "{word}: the switch fell inside the input"
            );
            assert_eq!(outs.len(), total / 5, "{word}: every record once");
        }
    };
    check(&t.records("out").await, 2000);
    // After a restart the new config holds.
    for action in ["stop", "start"] {
        let (s, e) = t.post_json(&format!("/v1/pipelines/p/{action}"), "").await;
        assert!(s.is_success(), "{e}");
    }
    t.produce("lines", &chunk(40)).await;
    t.wait_caught_up("p").await;
    check(&t.records("out").await, 2050);
}
