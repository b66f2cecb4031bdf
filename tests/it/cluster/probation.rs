//! Shared upgrades on probation: waiting for traffic, ended by hand on the judge.

use super::*;

/// A shared upgrade without traffic stays on probation on every server; it is ended on
/// the server that judges it (another one names that server), and a stop there rolls it
/// back everywhere.
#[test]
fn a_shared_probation_waits_for_traffic_and_is_ended_on_the_server_that_judges_it() {
    let broker = Broker::start();
    broker.create_topic("lines", 4);
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = upgradable(dir.path(), &broker, "probation_ms = 200");
    broker.produce("lines", 4, &partition_words(400), 1_700_000_000_000);
    wait_committed(&[(&a, "a"), (&b, "b")], 100);
    let started = b.ok(&[
        "pipeline",
        "upgrade",
        "wc",
        "--operator",
        "wordcount@2",
        "--no-wait",
    ]);
    assert!(started.contains("runs on probation"), "{started}");
    std::thread::sleep(Duration::from_secs(2));
    let last = |v: &Value| {
        v["upgrades"]
            .as_array()
            .and_then(|u| u.last())
            .cloned()
            .unwrap_or_default()
    };
    for server in [&a, &b] {
        let u = last(&wait_status(server, "the upgrade in the record", |v| {
            last(v)["result"] == "probation"
        }));
        assert_eq!(u["judge"], "b", "{u}");
    }
    let (ok, _, stderr) = a.cli(&["pipeline", "upgrade", "wc", "--rollback"]);
    assert!(!ok && stderr.contains("judged by server \"b\""), "{stderr}");
    let (ok, _, stderr) = b.cli(&["pipeline", "upgrade", "wc", "--rollback"]);
    assert!(
        !ok && stderr.contains("rolled back by request after"),
        "{stderr}"
    );
    for server in [&a, &b] {
        let v = wait_status(server, "the rollback", |v| {
            last(v)["result"] == "rolled_back"
        });
        assert_eq!(v["operators"][0]["version"], 1, "{v}");
    }
    // Version 1 goes on everywhere: the next lines are counted in its format.
    broker.produce("lines", 4, &partition_words(800)[400..], 1_700_000_100_000);
    wait_committed(&[(&a, "a"), (&b, "b")], 200);
}
