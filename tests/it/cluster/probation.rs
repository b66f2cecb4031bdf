//! Shared upgrades on probation: waiting for traffic, ended by hand on the judge, and
//! canaries over the servers that run their partitions.

use super::*;

/// A pipeline status's last upgrade (`null` before any).
fn last(v: &Value) -> Value {
    v["upgrades"]
        .as_array()
        .and_then(|u| u.last())
        .cloned()
        .unwrap_or_default()
}

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
    if !wait_committed(&broker, &[(&a, "a"), (&b, "b")], 100) {
        return;
    }
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
    // (A stall of the test broker ends the test here too; `wait_committed` says so.)
    let _ = wait_committed(&broker, &[(&a, "a"), (&b, "b")], 200);
}

/// A canary of a shared pipeline: partitions 0 and 3 switch on whichever server runs
/// them while 1 and 2 stay; promoted, every partition runs version 2. Each word's
/// counts run 1, 2, 3 ... once, switching format exactly where its partition switched.
#[test]
fn a_shared_canary_switches_only_its_partitions_and_is_promoted() {
    let broker = Broker::start();
    broker.create_topic("lines", 4);
    let strict = hides_aborted_transactions(&broker);
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = upgradable(dir.path(), &broker, "probation_ms = 200");
    let all = partition_words(1600);
    // `false`: the test broker stalled (said by `wait_committed`); the test ends there.
    let round = |r: usize| {
        broker.produce("lines", 4, &all[r * 400..(r + 1) * 400], 1_700_000_000_000);
        wait_committed(&broker, &[(&a, "a"), (&b, "b")], (r as u64 + 1) * 100)
    };
    if !round(0) {
        return;
    }
    let out = b.ok(&[
        "pipeline",
        "upgrade",
        "wc",
        "--operator",
        "wordcount@2",
        "--partitions",
        "0,3",
        "--no-wait",
    ]);
    assert!(out.contains("runs on probation"), "{out}");
    if !round(1) {
        return;
    }
    for server in [&a, &b] {
        let v = wait_status(server, "the canary", |v| last(v)["result"] == "canary");
        assert_eq!(v["canary"]["partitions"], serde_json::json!([0, 3]), "{v}");
        assert_eq!(v["operators"][0]["version"], 1, "{v}");
    }
    if !round(2) {
        return;
    }
    let out = a.ok(&["pipeline", "upgrade", "wc", "--promote", "--no-wait"]);
    assert!(out.contains("runs on probation"), "{out}");
    if !round(3) {
        return;
    }
    for server in [&a, &b] {
        let v = wait_status(server, "the promotion", |v| {
            last(v)["result"] == "succeeded" && v["operators"][0]["version"] == 2
        });
        assert!(v["canary"].is_null(), "{v}");
    }
    let expected = expected_counts(&as_source(&all, 4));
    let isolation = if strict {
        "read_committed"
    } else {
        "read_uncommitted"
    };
    let out = broker.read("counts", isolation, expected.len(), Duration::from_secs(60));
    // Where each word's partition switched: after round 0 for the canary's, round 2 for
    // the others'.
    let seen_before = |word: &str, lines: &[String]| {
        lines
            .iter()
            .flat_map(|l| l.split(' '))
            .filter(|w| *w == word)
            .count()
    };
    let by = counts_by_format(&out);
    assert_eq!(by.len(), 20, "5 words per partition");
    for (word, cs) in &by {
        let counts: Vec<u64> = cs.iter().map(|(c, _)| *c).collect();
        assert_eq!(
            counts,
            (1..=counts.len() as u64).collect::<Vec<_>>(),
            "{word}"
        );
        let rounds = if ["p0", "p3"].iter().any(|p| word.starts_with(p)) {
            1
        } else {
            3
        };
        let switch = seen_before(word, &all[..rounds * 400]);
        let formats: Vec<bool> = cs.iter().map(|(_, j)| *j).collect();
        let want: Vec<bool> = (0..cs.len()).map(|i| i >= switch).collect();
        assert_eq!(formats, want, "{word}: switched after {switch}");
    }
}
