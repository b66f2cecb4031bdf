//! Changelogs: every state change is also in the store's changelog topic, and state
//! rebuilt from the changelogs equals the state it replaced.

use crate::support::server::TestApp;
use axum::body::Body;
use axum::http::{Method, StatusCode};

const PROBE: &str = "name = \"p\"\n[source]\ntopic = \"cmds\"\n[sink]\ntopic = \"out\"\n[[operators]]\nname = \"probe\"\n";

/// Commands touching every kind of state change, on both partitions.
fn commands() -> String {
    let mut lines = Vec::new();
    for p in 0..2 {
        for c in [
            "set s a 1",
            "set s b 2",
            "set s c 3",
            "set s d 4",
            "setmany s e=5,f=6",
            "del s b",
            "delrange s c e",
            "set s c 33",
            "incr n hits 1",
            "incr n hits 1",
            "timer t1 9000000000000",
            "timer t2 9000000000001",
            "untimer t2 9000000000001",
            "set other x y",
            "delrange other - -",
        ] {
            lines.push(format!(
                "{{\"value\":\"{c}\",\"partition\":{p},\"timestamp\":1}}"
            ));
        }
    }
    lines.join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn state_rebuilt_from_changelogs_equals_the_state_it_replaced() {
    let t = TestApp::new();
    t.push("probe", "fixture-probe").await;
    t.create_topic("cmds", 2).await;
    let (s, _) = t.create_pipeline(PROBE).await;
    assert_eq!(s, StatusCode::CREATED);
    t.produce("cmds", &commands()).await;
    t.wait_caught_up("p").await;
    let (s, _) = t
        .json(Method::POST, "/v1/pipelines/p/stop", Body::empty(), &[])
        .await;
    assert_eq!(s, StatusCode::OK);

    let db = t.app.as_ref().unwrap().controller.db().clone();
    let before = db.dump_pipeline("p").unwrap();
    let keys: Vec<String> = before
        .keys()
        .map(|(op, store, p, k)| format!("{op}/{store}/{p}/{}", String::from_utf8_lossy(k)))
        .collect();
    for expected in [
        "probe/s/0/a",
        "probe/s/1/c",
        "probe/s/0/f",
        "probe/n/1/hits",
    ] {
        assert!(
            keys.contains(&expected.to_string()),
            "{expected} missing from {keys:?}"
        );
    }
    assert!(
        !keys.iter().any(|k| k.ends_with("/b") || k.ends_with("/d")),
        "{keys:?}"
    );
    assert_eq!(
        before
            .keys()
            .filter(|(_, store, _, _)| store == "__timers")
            .count(),
        2,
        "one timer per partition"
    );
    assert!(!before.keys().any(|(_, store, _, _)| store == "other"));

    // The changelog topics exist, one partition per task.
    let (_, topic) = t.get("/v1/topics/p.probe.s.changelog").await;
    assert_eq!(topic["partitions"], 2);

    let (s, r) = t
        .json(
            Method::POST,
            "/v1/pipelines/p/rebuild-state",
            Body::empty(),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert!(r["records"].as_u64().unwrap() > 0);
    let after = db.dump_pipeline("p").unwrap();
    assert!(
        after == before,
        "rebuilt state differs:\nbefore {before:?}\nafter {after:?}"
    );

    // A running pipeline cannot be rebuilt underneath.
    t.json(Method::POST, "/v1/pipelines/p/start", Body::empty(), &[])
        .await;
    let (s, e) = t
        .json(
            Method::POST,
            "/v1/pipelines/p/rebuild-state",
            Body::empty(),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn lost_local_state_is_rebuilt_before_processing_resumes() {
    let t = TestApp::new();
    t.push("probe", "fixture-probe").await;
    t.create_topic("cmds", 1).await;
    t.create_pipeline(PROBE).await;
    t.produce(
        "cmds",
        "{\"value\":\"incr n k 1\"}\n{\"value\":\"incr n k 1\"}\n",
    )
    .await;
    t.wait_caught_up("p").await;
    t.json(Method::POST, "/v1/pipelines/p/stop", Body::empty(), &[])
        .await;
    let db = t.app.as_ref().unwrap().controller.db().clone();
    // Local state gone (a lost disk, say), positions and topics kept.
    db.delete_pipeline_stores("p").unwrap();
    assert!(db.dump_pipeline("p").unwrap().is_empty());
    t.produce("cmds", "{\"value\":\"incr n k 1\"}\n").await;
    let (s, _) = t
        .json(Method::POST, "/v1/pipelines/p/start", Body::empty(), &[])
        .await;
    assert_eq!(s, StatusCode::OK);
    t.wait_caught_up("p").await;
    let counts: Vec<String> = t
        .records("out")
        .await
        .iter()
        .map(|r| r["value"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        counts,
        ["1", "2", "3"],
        "the count went on from the rebuilt state"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_pipeline_deletes_its_changelogs() {
    let t = TestApp::new();
    t.push("probe", "fixture-probe").await;
    t.create_topic("cmds", 1).await;
    t.create_pipeline(PROBE).await;
    t.produce("cmds", "{\"value\":\"set s a 1\"}\n").await;
    t.wait_caught_up("p").await;
    let (s, e) = t
        .json(
            Method::DELETE,
            "/v1/topics/p.probe.s.changelog",
            Body::empty(),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    t.call(Method::DELETE, "/v1/pipelines/p", Body::empty(), &[])
        .await;
    let (s, _) = t
        .call(
            Method::GET,
            "/v1/topics/p.probe.s.changelog",
            Body::empty(),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn compacted_changelogs_still_rebuild_the_same_state() {
    let t = TestApp::new();
    t.push("probe", "fixture-probe").await;
    t.create_topic("cmds", 1).await;
    t.create_pipeline(PROBE).await;
    // Several commits (each waits for the last), each changing the same three keys.
    for _ in 0..10 {
        let lines: Vec<String> = (0..20)
            .map(|i| format!("{{\"value\":\"incr n k{} 1\"}}", i % 3))
            .collect();
        t.produce("cmds", &lines.join("\n")).await;
        t.wait_caught_up("p").await;
    }
    t.json(Method::POST, "/v1/pipelines/p/stop", Body::empty(), &[])
        .await;
    let controller = t.app.as_ref().unwrap().controller.clone();
    let before = controller.db().dump_pipeline("p").unwrap();
    let count = |t: &TestApp| {
        let log = t.app.as_ref().unwrap().controller.log().clone();
        let topic = log.topic("p.probe.n.changelog").unwrap();
        log.read(&topic, 0, 0, 100_000).unwrap().len()
    };
    let full = count(&t);
    assert!(controller.compact_changelogs(0).unwrap() > 0);
    let compacted = count(&t);
    assert!(
        compacted <= 3 && compacted < full,
        "{full} → {compacted} records"
    );
    controller.rebuild_state("p").unwrap();
    assert!(controller.db().dump_pipeline("p").unwrap() == before);
}
