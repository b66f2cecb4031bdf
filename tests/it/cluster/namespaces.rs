//! Two clusters on one broker: a pipeline's internal names in Kafka (changelog and
//! positions topics, consumer group, transactional ids) carry its cluster's name, so
//! pipelines of the same name in two clusters share none of them.

use super::*;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// A server alone in cluster `cluster`, with the word count uploaded.
fn server_of(dir: &Path, broker: &Broker, cluster: &str) -> ServerProcess {
    let s = ServerProcess::start(
        &dir.join(cluster),
        &[
            "--kafka-brokers",
            &broker.brokers,
            "--cluster",
            cluster,
            "--server-name",
            cluster,
            "--workers",
            "2",
        ],
    );
    s.ok(&[
        "operator",
        "push",
        "wordcount",
        guest("wordcount").to_str().unwrap(),
    ]);
    s
}

/// Creates the word count `wc` on `server`, writing to `sink`.
fn create_wc(dir: &Path, server: &ServerProcess, sink: &str) {
    let path = dir.join(format!("{sink}.toml"));
    let spec = spec().replace("topic = \"counts\"", &format!("topic = \"{sink}\""));
    assert!(spec.contains(sink), "{spec}");
    std::fs::write(&path, spec).unwrap();
    server.ok(&["pipeline", "create", path.to_str().unwrap()]);
}

/// Waits until `server`, alone in its cluster (or in none), runs all 4 tasks of `wc`,
/// each committed up to `offset`.
fn wait_done(server: &ServerProcess, offset: u64) -> Value {
    wait_status(server, "every partition to commit the input", |v| {
        let tasks = v["tasks"].as_array().unwrap();
        tasks.len() == 4
            && tasks
                .iter()
                .all(|t| t["state"] == "running" && t["committed_offset"] == offset)
    })
}

fn topics(broker: &Broker) -> BTreeSet<String> {
    let client: BaseConsumer = broker.config().create().unwrap();
    let metadata = client
        .fetch_metadata(None, Duration::from_secs(30))
        .unwrap();
    metadata
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .collect()
}

#[test]
fn pipelines_of_one_name_in_two_clusters_on_one_broker_share_no_topic_group_or_transaction() {
    let broker = Broker::start();
    broker.create_topic("lines", 4);
    let strict = hides_aborted_transactions(&broker);
    let dir = tempfile::tempdir().unwrap();
    let values = lines(800, 3);
    broker.produce("lines", 4, &values, 1_700_000_000_000);
    let expected = expected_counts(&as_source(&values, 4));

    // Cluster blue counts the whole input first.
    let blue = server_of(dir.path(), &broker, "blue");
    create_wc(dir.path(), &blue, "counts-blue");
    let done = wait_done(&blue, 200);
    assert_eq!(done["namespace"], "blue", "{done}");
    check_output_in(&broker, "counts-blue", strict, &expected, "cluster blue");

    // Then cluster green, with a pipeline of the same name over the same input. Had it
    // shared blue's positions, changelogs or group, it would resume where blue stands
    // and count nothing (or count on from blue's counts); it counts everything once.
    let green = server_of(dir.path(), &broker, "green");
    create_wc(dir.path(), &green, "counts-green");
    let done = wait_done(&green, 200);
    assert_eq!(done["namespace"], "green", "{done}");
    check_output_in(&broker, "counts-green", strict, &expected, "cluster green");

    // Both run on: more input reaches each once (their transactional ids differ, so
    // neither fences the other's producers).
    let more = lines(400, 7);
    broker.produce("lines", 4, &more, 1_700_000_100_000);
    wait_done(&blue, 300);
    wait_done(&green, 300);
    let mut all = values.clone();
    all.extend(more);
    let expected = expected_counts(&as_source(&all, 4));
    check_output_in(
        &broker,
        "counts-blue",
        strict,
        &expected,
        "blue, more input",
    );
    check_output_in(
        &broker,
        "counts-green",
        strict,
        &expected,
        "green, more input",
    );

    let names = topics(&broker);
    for cluster in ["blue", "green"] {
        for topic in [
            format!("{cluster}.wc.positions"),
            format!("{cluster}.wc.wordcount.counts.changelog"),
        ] {
            assert!(names.contains(&topic), "no {topic} in {names:?}");
        }
    }
    let unscoped: Vec<&String> = names.iter().filter(|n| n.starts_with("wc.")).collect();
    assert!(
        unscoped.is_empty(),
        "topics without a cluster: {unscoped:?}"
    );
}

#[test]
fn a_restore_moves_a_pipeline_whose_names_predate_namespaces_into_its_cluster_s() {
    let broker = Broker::start();
    broker.create_topic("lines", 4);
    let strict = hides_aborted_transactions(&broker);
    let dir = tempfile::tempdir().unwrap();
    let values = lines(800, 5);
    let (first, second) = values.split_at(400);

    // A pipeline made outside a cluster has the names of old: `wc.positions`, ...
    let solo = ServerProcess::start(
        &dir.path().join("a"),
        &["--kafka-brokers", &broker.brokers, "--workers", "2"],
    );
    solo.ok(&[
        "operator",
        "push",
        "wordcount",
        guest("wordcount").to_str().unwrap(),
    ]);
    let path = dir.path().join("wc.toml");
    std::fs::write(&path, spec()).unwrap();
    solo.ok(&["pipeline", "create", path.to_str().unwrap()]);
    broker.produce("lines", 4, first, 1_700_000_000_000);
    wait_done(&solo, 100);
    solo.stop();

    // The same server joins cluster c1: the pipeline runs on, shared, under its old names.
    let a = member(&dir.path().join("a"), &broker, "a");
    let v = wait_done(&a, 100);
    assert!(v["namespace"].is_null(), "{v}");
    // Operators uploaded outside the cluster are shared once pushed in it.
    a.ok(&[
        "operator",
        "push",
        "wordcount",
        guest("wordcount").to_str().unwrap(),
    ]);
    // A start shares the pipeline with the cluster; B joins and runs its share under the
    // old names too.
    a.ok(&["pipeline", "stop", "wc"]);
    a.ok(&["pipeline", "start", "wc"]);
    let b = member(&dir.path().join("b"), &broker, "b");
    if let Some(fault) = running_or_stalled(&broker, &a, both_run) {
        println!("names migration: {fault}");
        return;
    }
    a.ok(&["pipeline", "stop", "wc"]);
    wait_status(&b, "B to stop", |v| v["state"] == "stopped");
    let Some(m) = stopped_savepoint(&broker, &a, "names migration") else {
        return;
    };
    let id = m["id"].as_str().unwrap().to_string();
    a.ok(&["pipeline", "start", "wc"]);
    broker.produce("lines", 4, second, 1_700_000_100_000);
    if !wait_committed(&broker, &[(&a, "a"), (&b, "b")], 200) {
        return;
    }
    assert!(
        topics(&broker).contains("wc.positions"),
        "the old names were in use"
    );

    // The restore moves it to the cluster's names: what it writes, and where every
    // server of the cluster runs it from then on. B hears of the new names and rebuilds
    // its partitions from them: from the old ones (which stand after the second half) it
    // would not process the second half again.
    a.ok(&["pipeline", "stop", "wc"]);
    wait_status(&b, "B to stop", |v| v["state"] == "stopped");
    a.ok(&["pipeline", "restore", "wc", &id]);
    let v = status_of(&a);
    assert_eq!(v["namespace"], "c1", "{v}");
    wait_status(&b, "B to hear of the new names", |v| v["namespace"] == "c1");
    a.ok(&["pipeline", "start", "wc"]);
    if let Some(fault) = running_or_stalled(&broker, &a, both_run) {
        println!("names migration: {fault}");
        return;
    }
    if !wait_committed(&broker, &[(&a, "a"), (&b, "b")], 200) {
        return;
    }
    let v = status_of(&b);
    assert_eq!(v["namespace"], "c1", "{v}");
    let expected_all = expected_counts(&as_source(&values, 4));
    let expected_first = expected_counts(&as_source(first, 4));
    let expected = with_replay(&expected_all, &expected_first);
    check_output(&broker, strict, &expected, "after the names moved");
    let names = topics(&broker);
    for topic in ["c1.wc.positions", "c1.wc.wordcount.counts.changelog"] {
        assert!(names.contains(topic), "no {topic} in {names:?}");
    }
}
