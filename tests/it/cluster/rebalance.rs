//! Incremental rebalancing: a server that joins takes only the partitions that move to
//! it, and the tasks of the partitions that stay where they were keep running through
//! the rebalance (an eager rebalance would stop and restart every task).

use super::*;
use crate::support::server::http_get;
use std::collections::BTreeMap;

/// The events in of each task `server` runs itself (counted since the task started).
fn own_events_in(status: &Value, server: &str) -> BTreeMap<u64, u64> {
    status["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["server"] == server && t["state"] == "running")
        .map(|t| {
            let p = t["partition"].as_u64().unwrap();
            (p, t["events_in"].as_u64().unwrap())
        })
        .collect()
}

/// Server `a`, alone in its cluster, running the word count over 4 partitions.
fn alone(dir: &Path, broker: &Broker) -> ServerProcess {
    broker.create_topic("lines", 4);
    let a = member(&dir.join("a"), broker, "a");
    a.ok(&[
        "operator",
        "push",
        "wordcount",
        guest("wordcount").to_str().unwrap(),
    ]);
    let spec_path = dir.join("wc.toml");
    std::fs::write(&spec_path, spec()).unwrap();
    a.ok(&["pipeline", "create", spec_path.to_str().unwrap()]);
    a
}

#[test]
fn a_server_that_joins_takes_its_share_without_stopping_the_other_partitions() {
    let broker = Broker::start();
    let strict = hides_aborted_transactions(&broker);
    let dir = tempfile::tempdir().unwrap();
    let a = alone(dir.path(), &broker);
    wait_status(&a, "A to run every partition", |v| {
        own_events_in(v, "a").len() == 4
    });
    let values = lines(800, 3);
    let (first, second) = values.split_at(400);
    broker.produce("lines", 4, first, 1_700_000_000_000);
    if !wait_committed(&broker, &[(&a, "a")], 100) {
        return;
    }
    let before = own_events_in(&status_of(&a), "a");
    assert!(before.values().all(|n| *n == 100), "{before:?}");

    // B joins: the group gives it two partitions; A keeps two, whose tasks never stop.
    // A's status, asked all along, says where each partition is: a partition never
    // shows as run by no one without saying it moves.
    let b = member(&dir.path().join("b"), &broker, "b");
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    let split = loop {
        assert!(
            Instant::now() < deadline,
            "B never took its share: {seen:?}"
        );
        let Ok(v) = serde_json::from_str::<Value>(&http_get(&a.url, "/v1/pipelines/wc")) else {
            continue;
        };
        for t in v["tasks"].as_array().into_iter().flatten() {
            let (state, server) = (t["state"].as_str().unwrap_or("?"), t["server"].as_str());
            assert!(
                server.is_some() || state == "moving",
                "a task with no server that does not say it moves: {t}"
            );
            seen.insert(format!("{state} on {}", server.unwrap_or("-")));
        }
        if own_events_in(&v, "a").len() == 2 && servers_of(&v).contains("b") {
            break v;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    println!("A's view while B joined: {seen:?}");
    let kept = own_events_in(&split, "a");
    for (p, n) in &kept {
        // A restarted task would count from 0 again (no input arrived meanwhile).
        assert_eq!(
            *n, before[p],
            "A's task of partition {p} was restarted by B's arrival: {split}"
        );
    }

    // Both go on from where A committed: every line counted once.
    broker.produce("lines", 4, second, 1_700_000_100_000);
    if !wait_committed(&broker, &[(&a, "a"), (&b, "b")], 200) {
        return;
    }
    let expected = expected_counts(&as_source(&values, 4));
    check_output(&broker, strict, &expected, "a server joins");
}

#[test]
fn status_answers_while_partitions_move_and_says_they_are_restoring() {
    let broker = Broker::start();
    let strict = hides_aborted_transactions(&broker);
    let dir = tempfile::tempdir().unwrap();
    let a = alone(dir.path(), &broker);
    let values = lines(800, 3);
    broker.produce("lines", 4, &values, 1_700_000_000_000);
    if !wait_committed(&broker, &[(&a, "a")], 200) {
        return;
    }

    // B joins and takes two partitions, restoring their state from the changelogs. Its
    // status is asked for all along: an answer that waited for the restore could never
    // show a partition restoring.
    let b = member(&dir.path().join("b"), &broker, "b");
    let (mut seen, mut slowest) = (BTreeSet::new(), Duration::ZERO);
    let mut progress = BTreeSet::new();
    let mut stall = StallWatch::default();
    let deadline = Instant::now() + Duration::from_secs(90) + STALL_PROOF;
    loop {
        assert!(
            Instant::now() < deadline,
            "B never ran two partitions: {seen:?}"
        );
        let asked = Instant::now();
        let body = http_get(&b.url, "/v1/pipelines/wc");
        slowest = slowest.max(asked.elapsed());
        let Ok(v) = serde_json::from_str::<Value>(&body) else {
            continue;
        };
        if let Some(fault) = stall.check(&broker, &v) {
            // Checked until then: every answer came while B's partitions moved, and
            // nothing was counted twice or wrongly.
            println!("partitions move: {fault}; B's status meanwhile: {seen:?}");
            let out = broker.read("counts", "read_uncommitted", 0, Duration::from_secs(5));
            let expected = expected_counts(&as_source(&values, 4));
            assert_only_expected(counts(&out), &expected, "partitions move");
            return;
        }
        if let Some(tasks) = v["tasks"].as_array() {
            for t in tasks.iter().filter(|t| t["server"] == "b") {
                let state = |v: &Value| v["state"].as_str().unwrap_or("?").to_string();
                seen.insert(format!("{} / {}", state(&v), state(t)));
                if let Some(r) = t["restore"].as_object() {
                    progress.insert((r["restored"].as_u64(), r["to_restore"].as_u64()));
                }
            }
            let runs = |t: &&Value| t["server"] == "b" && t["state"] == "running";
            if tasks.iter().filter(runs).count() == 2 {
                break;
            }
        }
    }
    println!(
        "B's status during the move (slowest answer {slowest:?}): {seen:?}, restores seen: {progress:?}"
    );
    assert!(
        seen.contains("rebalancing / restoring"),
        "no status showed B's partitions restoring: {seen:?}"
    );
    // B's local state was empty: it covered its partitions' changelogs from offset 0.
    let covered = restored(&b);
    assert!(covered > 0, "B restored {covered} changelog offsets");
    if !wait_committed(&broker, &[(&a, "a"), (&b, "b")], 200) {
        return;
    }
    let expected = expected_counts(&as_source(&values, 4));
    check_output(&broker, strict, &expected, "partitions move");
}

/// B's view of A's tasks: partition, state, committed and end offsets, report age.
fn others_tasks(status: &Value) -> Vec<(u64, String, u64, u64, Option<u64>)> {
    status["tasks"]
        .as_array()
        .map(|tasks| {
            tasks
                .iter()
                .filter(|t| t["server"] == "a")
                .map(|t| {
                    (
                        t["partition"].as_u64().unwrap(),
                        t["state"].as_str().unwrap_or("?").to_string(),
                        t["committed_offset"].as_u64().unwrap(),
                        t["end_offset"].as_u64().unwrap(),
                        t["report_age_ms"].as_u64(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn another_server_s_tasks_show_where_they_stand_and_go_silent_when_it_dies() {
    let broker = Broker::start();
    broker.create_topic("lines", 4);
    let strict = hides_aborted_transactions(&broker);
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = running_on_two(dir.path(), &broker);
    let values = lines(800, 3);
    let (first, second) = values.split_at(400);
    broker.produce("lines", 4, first, 1_700_000_000_000);
    if !wait_committed(&broker, &[(&a, "a"), (&b, "b")], 100) {
        return;
    }

    // B shows A's tasks with the offsets A reports (every second), not zeros.
    let v = wait_status(&b, "B to show where A's tasks stand", |v| {
        let theirs = others_tasks(v);
        !theirs.is_empty()
            && theirs.iter().all(|(_, state, committed, end, age)| {
                state == "remote" && *committed == 100 && *end == 100 && age.is_some()
            })
    });
    println!("A's tasks as B sees them: {:?}", others_tasks(&v));

    // A dies: before the group moves its partitions (its session timeout, 6 s), B shows
    // them silent, with the time since A last reported.
    a.kill();
    broker.produce("lines", 4, second, 1_700_000_100_000);
    let killed = Instant::now();
    let mut silent = None;
    loop {
        assert!(
            killed.elapsed() < Duration::from_secs(90),
            "B never took A's partitions"
        );
        let Ok(v) = serde_json::from_str::<Value>(&http_get(&b.url, "/v1/pipelines/wc")) else {
            continue;
        };
        let theirs = others_tasks(&v);
        if let Some((p, _, committed, _, age)) =
            theirs.iter().find(|(_, state, ..)| state == "silent")
        {
            assert_eq!(*committed, 100, "{v}");
            assert!(age.is_some_and(|ms| ms >= 3_000), "{v}");
            silent.get_or_insert((*p, *age, killed.elapsed()));
        }
        if theirs.is_empty() && v["tasks"].as_array().is_some_and(|t| t.len() == 4) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("silent after the kill: {silent:?}");
    assert!(
        silent.is_some(),
        "B never showed A's tasks silent before taking them"
    );
    if !wait_committed(&broker, &[(&b, "b")], 200) {
        return;
    }
    let expected = expected_counts(&as_source(&values, 4));
    check_output(&broker, strict, &expected, "a server dies");
}

/// The changelog offsets `server` restored from Kafka into tasks it started.
fn restored(server: &ServerProcess) -> u64 {
    http_get(&server.url, "/metrics")
        .lines()
        .filter(|l| l.starts_with("eddy_restored_changelog_offsets_total{pipeline=\"wc\"}"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn with_a_standby_replica_a_takeover_restores_only_the_tail() {
    let broker = Broker::start();
    broker.create_topic("lines", 4);
    let strict = hides_aborted_transactions(&broker);
    let dir = tempfile::tempdir().unwrap();
    let (a, b, path) = two_members(dir.path(), &broker);
    let spec = spec().replace("[settings]", "[settings]\nnum_standby_replicas = 1");
    std::fs::write(&path, spec).unwrap();
    a.ok(&["pipeline", "create", path.to_str().unwrap()]);
    wait_status(&b, "both servers to run tasks", |v| {
        servers_of(v).len() == 2
    });
    // Many distinct words: each a key of its own in the changelogs.
    let values: Vec<String> = (0..1600).map(|i| format!("w{i} w{} x", i % 50)).collect();
    let (first, second) = values.split_at(1200);
    // In steps, so that B's refreshes (every 2 s) meet A's transactions as they commit.
    for (i, chunk) in first.chunks(200).enumerate() {
        broker.produce("lines", 4, chunk, 1_700_000_000_000 + i as i64 * 1000);
        std::thread::sleep(Duration::from_millis(700));
    }
    if !wait_committed(&broker, &[(&a, "a"), (&b, "b")], 300) {
        return;
    }

    // B keeps A's partitions warm: its copies reach A's commits.
    let v = wait_status(&b, "B's standbys of A's partitions to catch up", |v| {
        let theirs: Vec<&Value> = v["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["server"] == "a")
            .collect();
        !theirs.is_empty()
            && theirs
                .iter()
                .all(|t| t["committed_offset"] == 300 && t["standby"]["lag"] == 0)
    });
    let table = b.ok(&["pipeline", "status", "wc"]);
    assert!(table.contains("standby here, 0 behind"), "{table}");
    let moved: Vec<u64> = v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["server"] == "a")
        .map(|t| t["partition"].as_u64().unwrap())
        .collect();
    // What a restore without a warm copy covers: the whole changelog of those partitions.
    let whole: u64 = broker
        .offsets("c1.wc.wordcount.counts.changelog")
        .iter()
        .enumerate()
        .filter(|(p, _)| moved.contains(&(*p as u64)))
        .map(|(_, o)| o.as_ref().map_or(0, |(_, end)| *end as u64))
        .sum();
    let before = restored(&b);

    // A dies; B takes its partitions and restores only what its copies lack (nothing
    // but the transactions' control records, as no input came since).
    a.kill();
    broker.produce("lines", 4, second, 1_700_000_100_000);
    if !wait_committed(&broker, &[(&b, "b")], 400) {
        return;
    }
    let tail = restored(&b) - before;
    println!(
        "takeover of partitions {moved:?}: restored {tail} changelog offsets of {whole} (a restore from scratch)"
    );
    assert!(whole > 400, "the changelogs hold {whole} offsets");
    assert!(
        tail * 20 <= whole,
        "the takeover restored {tail} of {whole} changelog offsets: not only the tail"
    );
    let expected = expected_counts(&as_source(&values, 4));
    check_output(&broker, strict, &expected, "standby takeover");
}
