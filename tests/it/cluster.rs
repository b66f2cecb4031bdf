//! Several servers as one cluster (`--cluster`): uploads and pipelines reach every
//! server through the catalog topic, the servers split a pipeline's partitions through
//! its assignment group, and a killed server's partitions move to the survivor, which
//! restores their state from Kafka and continues exactly.

use crate::kafka::{
    as_source, assert_only_expected, assert_output, counts, hides_aborted_transactions,
};
use crate::support::guest;
use crate::support::kafka::{Broker, ReadRecord, STALL_PROOF, StallWatch, waited_for};
use crate::support::oracle::{expected_counts, lines};
use crate::support::server::ServerProcess;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod namespaces;
mod probation;
mod queries;
mod rebalance;
mod repartition;

/// The Kafka word count, committing often in small batches.
fn spec() -> String {
    crate::kafka::SPEC.replace(
        "commit_interval_ms = 50",
        "commit_interval_ms = 20\nbatch_size = 64",
    )
}

pub(crate) fn member(data: &Path, broker: &Broker, name: &str) -> ServerProcess {
    member_with(data, broker, name, &[])
}

/// A member of cluster `c1` started with `extra` arguments too.
pub(crate) fn member_with(
    data: &Path,
    broker: &Broker,
    name: &str,
    extra: &[&str],
) -> ServerProcess {
    let mut args = vec![
        "--kafka-brokers",
        &broker.brokers,
        "--cluster",
        "c1",
        "--server-name",
        name,
        "--workers",
        "2",
    ];
    args.extend_from_slice(extra);
    ServerProcess::start(data, &args)
}

/// Servers `a` and `b` in one cluster, the word count pushed to `a`, its spec written.
fn two_members(dir: &Path, broker: &Broker) -> (ServerProcess, ServerProcess, PathBuf) {
    let a = member(&dir.join("a"), broker, "a");
    let b = member(&dir.join("b"), broker, "b");
    a.ok(&[
        "operator",
        "push",
        "wordcount",
        guest("wordcount").to_str().unwrap(),
    ]);
    let path = dir.join("wc.toml");
    std::fs::write(&path, spec()).unwrap();
    (a, b, path)
}

/// Servers `a` and `b` with the word count created on `a` and running on both.
fn running_on_two(dir: &Path, broker: &Broker) -> (ServerProcess, ServerProcess) {
    let (a, b, spec) = two_members(dir, broker);
    a.ok(&["pipeline", "create", spec.to_str().unwrap()]);
    wait_status(&b, "both servers to run tasks", |v| {
        servers_of(v).len() == 2
    });
    (a, b)
}

/// What the output holds after a restore: everything of the first run (`all`), and again
/// the outputs of the records after the savepoint (all but those of `before`, the
/// records before it), recomputed from the savepoint's state.
fn with_replay(all: &[(String, u64)], before: &[(String, u64)]) -> Vec<(String, u64)> {
    let mut again = all.to_vec();
    for e in before {
        let i = again.binary_search(e).unwrap();
        again.remove(i);
    }
    let mut expected = all.to_vec();
    expected.extend(again);
    expected.sort();
    expected
}

fn status_of(server: &ServerProcess) -> Value {
    serde_json::from_str(&server.ok(&["pipeline", "status", "wc", "--json"])).unwrap()
}

/// The servers running the pipeline's tasks, as `server` reports them.
pub(crate) fn servers_of(status: &Value) -> BTreeSet<String> {
    status["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["server"].as_str().map(String::from))
        .collect()
}

/// Polls `server`'s status of `wc` until `done` holds.
fn wait_status(server: &ServerProcess, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    wait_status_of(server, "wc", what, done)
}

/// Polls `server`'s status of `pipeline` until `done` holds.
pub(crate) fn wait_status_of(
    server: &ServerProcess,
    pipeline: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (ok, out, _) = server.cli(&["pipeline", "status", pipeline, "--json"]);
        if ok {
            let v: Value = serde_json::from_str(&out).unwrap();
            if done(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "waiting for {what}: {v}");
        } else {
            assert!(Instant::now() < deadline, "waiting for {what}: {out}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The word count's output. On a broker that hides aborted transactions (Apache Kafka)
/// exactly what `read_committed` shows; on one that does not (Tansu), which under load
/// also at times leaves committed records invisible to `read_committed` for over a
/// minute, everything written (`assert_output` then allows repeats of expected outputs).
/// Outputs of aborted transactions can make up the expected count before every expected
/// output has arrived, so on Tansu the read goes on until all of them are there.
fn output(
    broker: &Broker,
    topic: &str,
    strict: bool,
    expected: &[(String, u64)],
) -> Vec<(String, u64)> {
    if strict {
        let out = broker.read(
            topic,
            "read_committed",
            expected.len(),
            Duration::from_secs(60),
        );
        return counts(&out);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = broker.read(
            topic,
            "read_uncommitted",
            expected.len(),
            Duration::from_secs(20),
        );
        let got = counts(&out);
        if holds_all(&got, expected) || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Checks the word count's output against `expected` (see [`output`], [`assert_output`]).
fn check_output(broker: &Broker, strict: bool, expected: &[(String, u64)], context: &str) {
    check_output_in(broker, "counts", strict, expected, context);
}

/// Checks a word count's output in `topic` against `expected`.
fn check_output_in(
    broker: &Broker,
    topic: &str,
    strict: bool,
    expected: &[(String, u64)],
    context: &str,
) {
    let got = output(broker, topic, strict, expected);
    if !holds_all(&got, expected) {
        // Where each partition's log starts and ends, for the failure report.
        eprintln!("{context}: {topic} offsets {:?}", broker.offsets(topic));
    }
    assert_output(strict, got, expected, context);
}

/// Whether sorted `got` holds every item of sorted `expected` (as many times).
pub(crate) fn holds_all(got: &[(String, u64)], expected: &[(String, u64)]) -> bool {
    let mut rest = got.iter().peekable();
    expected.iter().all(|e| {
        while rest.peek().is_some_and(|g| *g < e) {
            rest.next();
        }
        rest.next() == Some(e)
    })
}

/// Waits until the servers' own running tasks together cover all 4 partitions, each
/// committed up to `offset`. `false` (having said why) when the test broker kept a
/// transaction undecided for good while a server waited for it (see [`StallWatch`]):
/// the test then ends there, having checked that the pipeline waits and says so.
#[must_use]
fn wait_committed(broker: &Broker, servers: &[(&ServerProcess, &str)], offset: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(90) + STALL_PROOF;
    let mut stalls: Vec<StallWatch> = servers.iter().map(|_| StallWatch::default()).collect();
    loop {
        let mut all = Vec::new();
        let mut seen = Vec::new();
        for ((server, me), stall) in servers.iter().zip(&mut stalls) {
            let v = status_of(server);
            if let Some(fault) = stall.check(broker, &v) {
                println!("waiting for offset {offset} on every partition: {fault}");
                return false;
            }
            all.extend(
                v["tasks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|t| t["server"] == *me && t["state"] == "running")
                    .map(|t| {
                        (
                            t["partition"].as_u64().unwrap(),
                            t["committed_offset"].as_u64().unwrap(),
                        )
                    }),
            );
            seen.push(v);
        }
        all.sort();
        if all == (0..4).map(|p| (p, offset)).collect::<Vec<_>>() {
            return true;
        }
        assert!(
            Instant::now() < deadline,
            "the pipeline did not reach {offset} everywhere: {all:?}\n{seen:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_operator_uploaded_on_one_server_runs_in_a_pipeline_created_on_another() {
    let broker = Broker::start();
    broker.create_topic("lines", 4);
    let dir = tempfile::tempdir().unwrap();
    let (a, b, spec) = two_members(dir.path(), &broker);
    // B has never seen the upload itself: it reaches B through the catalog.
    b.ok(&["pipeline", "create", spec.to_str().unwrap()]);
    assert!(b.ok(&["operator", "list"]).contains("wordcount"));

    // A runs it too: the group splits the 4 partitions between the two servers, and
    // either server's status says which runs which.
    let both = wait_status(&a, "both servers to run tasks", |v| {
        servers_of(v) == BTreeSet::from(["a".to_string(), "b".to_string()])
            && v["tasks"].as_array().unwrap().len() == 4
    });
    println!("{both}");
    let table = a.ok(&["pipeline", "status", "wc"]);
    assert!(table.contains("SERVER"), "{table}");

    let values = lines(800, 3);
    broker.produce("lines", 4, &values, 1_700_000_000_000);
    // Each server reports the partitions it runs: together they commit all 200 lines of
    // every partition.
    if !wait_committed(&broker, &[(&a, "a"), (&b, "b")], 200) {
        return;
    }
    let expected = expected_counts(&as_source(&values, 4));
    let strict = hides_aborted_transactions(&broker);
    check_output(&broker, strict, &expected, "upload on A, pipeline on B");

    // A deletion on A reaches B.
    a.ok(&["pipeline", "delete", "wc"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while b.cli(&["pipeline", "status", "wc"]).0 {
        assert!(Instant::now() < deadline, "B still has the pipeline");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn when_one_of_two_servers_is_killed_the_other_takes_its_partitions_and_finishes_exactly() {
    let broker = Broker::start();
    broker.create_topic("lines", 4);
    let strict = hides_aborted_transactions(&broker);
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = running_on_two(dir.path(), &broker);

    let values = lines(4000, 5);
    let (first, second) = values.split_at(2000);
    broker.produce("lines", 4, first, 1_700_000_000_000);
    // Let both servers get well into their partitions, then kill A mid-stream.
    wait_status(&b, "B to process", |v| {
        v["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["server"] == "b" && t["committed_offset"].as_u64() > Some(50))
    });
    a.kill();
    broker.produce("lines", 4, second, 1_700_000_100_000);

    // B takes all four partitions (after A's session times out) and commits everything.
    let expected = expected_counts(&as_source(&values, 4));
    let mut stall = StallWatch::default();
    let deadline = Instant::now() + Duration::from_secs(90) + STALL_PROOF;
    loop {
        let v = status_of(&b);
        let tasks = v["tasks"].as_array().unwrap();
        if tasks.len() == 4
            && tasks
                .iter()
                .all(|t| t["server"] == "b" && t["committed_offset"] == 1000)
        {
            println!("{v}");
            break;
        }
        if let Some(fault) = stall.check(&broker, &v) {
            println!("cluster kill: {fault}");
            let out = broker.read("counts", "read_uncommitted", 0, Duration::from_secs(5));
            assert_only_expected(counts(&out), &expected, "cluster kill");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "waiting for B to run and finish every partition: {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    check_output(&broker, strict, &expected, "cluster kill");
}

#[test]
fn a_shared_pipeline_stopped_everywhere_takes_a_savepoint_on_one_server_and_restores_it() {
    savepoint_and_restore(true);
}

#[test]
fn a_restore_on_one_server_is_heard_by_another_started_right_after() {
    savepoint_and_restore(false);
}

/// A savepoint of a stopped shared pipeline on A, restored on B. With `b_leaves`, B exits
/// and A runs every partition; else A starts the pipeline right after B's restore and
/// both run it (A must have dropped its local state, ahead of the savepoint, first).
fn savepoint_and_restore(b_leaves: bool) {
    let broker = Broker::start();
    broker.create_topic("lines", 4);
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = running_on_two(dir.path(), &broker);
    let values = lines(800, 7);
    let (first, second) = values.split_at(400);
    broker.produce("lines", 4, first, 1_700_000_000_000);
    if !wait_committed(&broker, &[(&a, "a"), (&b, "b")], 100) {
        return;
    }

    // A running shared pipeline refuses a restore: it must stop everywhere first.
    let (ok, _, err) = a.cli(&["pipeline", "restore", "wc", "none"]);
    assert!(!ok && err.contains("stop it first"), "{err}");
    // This savepoint is taken stopped (a running one is another test's).
    a.ok(&["pipeline", "stop", "wc"]);
    wait_status(&b, "B to stop", |v| v["state"] == "stopped");
    // A takes the savepoint alone, with the state of B's partitions read from Kafka.
    let Some(m) = stopped_savepoint(&broker, &a, "savepoint and restore") else {
        return;
    };
    let id = m["id"].as_str().unwrap().to_string();
    let offsets: Vec<u64> = m["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, [100, 100, 100, 100], "{m}");
    let expected_first = expected_counts(&as_source(first, 4));
    // The savepoint reaches B through the catalog.
    wait_savepoint(&b, &id, true);

    b.ok(&["pipeline", "start", "wc"]);
    broker.produce("lines", 4, second, 1_700_000_100_000);
    if !wait_committed(&broker, &[(&a, "a"), (&b, "b")], 200) {
        return;
    }
    let expected_all = expected_counts(&as_source(&values, 4));
    let strict = hides_aborted_transactions(&broker);
    check_output(&broker, strict, &expected_all, "before the restore");

    // Restored on B from the shared copy; then A runs partitions it ran before (all four
    // once B left, or two with B): its local state of them is ahead of the savepoint, so
    // it must drop it when it hears of the restore and rebuild from Kafka. The second
    // half is processed again from the savepoint's counts, so its outputs repeat exactly.
    a.ok(&["pipeline", "stop", "wc"]);
    wait_status(&b, "B to stop", |v| v["state"] == "stopped");
    b.ok(&["pipeline", "restore", "wc", &id]);
    let b = if b_leaves {
        b.stop();
        a.ok(&["pipeline", "start", "wc"]);
        if let Some(fault) = running_or_stalled(&broker, &a, |_| true) {
            println!("savepoint and restore: {fault}");
            return;
        }
        if !wait_committed(&broker, &[(&a, "a")], 200) {
            return;
        }
        None
    } else {
        a.ok(&["pipeline", "start", "wc"]);
        if let Some(fault) = running_or_stalled(&broker, &a, both_run) {
            println!("savepoint and restore: {fault}");
            return;
        }
        if !wait_committed(&broker, &[(&a, "a"), (&b, "b")], 200) {
            return;
        }
        Some(b)
    };
    let expected = with_replay(&expected_all, &expected_first);
    check_output(&broker, strict, &expected, "after the restore");

    // A server joining later gets the savepoint too; a deletion reaches it.
    let c = member(&dir.path().join("c"), &broker, "c");
    wait_savepoint(&c, &id, true);
    a.ok(&["savepoint", "delete", &id]);
    wait_savepoint(&c, &id, false);
    drop(b);
}

/// A savepoint of the stopped word count taken on `server`; `None` when only the
/// broker's known fault refused it (a transaction Tansu keeps undecided after its
/// producer was fenced; a correct broker aborts it then), checked and said.
fn stopped_savepoint(broker: &Broker, server: &ServerProcess, context: &str) -> Option<Value> {
    let (ok, out, err) = server.cli(&["pipeline", "savepoint", "wc", "--json"]);
    if ok {
        return Some(serde_json::from_str(&out).unwrap());
    }
    let (topic, p) = waited_for(&err).unwrap_or_else(|| panic!("savepoint: {err}"));
    assert!(broker.undecided(&topic, p), "savepoint: {err}");
    println!(
        "{context}: the broker keeps a transaction on {topic}/{p} undecided; checked that the savepoint is refused and says what it waits for ({err:?})"
    );
    None
}

/// Whether two servers run the word count with A's own tasks running, not only both
/// servers named (from the catalog, before A's start of its partitions ran into the
/// broker's fault).
fn both_run(v: &Value) -> bool {
    servers_of(v).len() == 2
        && v["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["server"] == "a" && t["state"] == "running")
}

/// Waits until `server` lists savepoint `id` (or, with `present = false`, no longer does).
/// Waits until `server` runs the word count and `done` holds, or the broker's known
/// fault (a transaction it keeps undecided after its producer was fenced) holds the
/// start back for good: then the pipeline must be `recovering` and say what it waits
/// for (`Some` of what was checked).
fn running_or_stalled(
    broker: &Broker,
    server: &ServerProcess,
    done: impl Fn(&Value) -> bool,
) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(90) + STALL_PROOF;
    let mut stall = StallWatch::default();
    loop {
        let v = status_of(server);
        if v["state"] == "running" && done(&v) {
            return None;
        }
        if let Some(fault) = stall.check(broker, &v) {
            return Some(fault);
        }
        assert!(Instant::now() < deadline, "waiting for the start: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wait_savepoint(server: &ServerProcess, id: &str, present: bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = server.ok(&["savepoint", "list"]);
        if list.contains(id) == present {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "savepoint {id} present={present}: {list}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

const IDLE_SPEC: &str = r#"
name = "clicks"
[source]
kafka = { topic = "clicks" }
[sink]
kafka = { topic = "page-minutes" }
[[operators]]
name = "clicks-per-minute"
version = "latest"
[settings]
max_out_of_orderness = "1s"
idle_timeout = "1s"
commit_interval_ms = 20
"#;

#[test]
fn an_idle_partition_follows_the_watermark_of_a_task_on_another_server() {
    let broker = Broker::start();
    broker.create_topic("clicks", 2);
    let dir = tempfile::tempdir().unwrap();
    let a = member(&dir.path().join("a"), &broker, "a");
    let b = member(&dir.path().join("b"), &broker, "b");
    a.ok(&[
        "operator",
        "push",
        "clicks-per-minute",
        guest("clicks-per-minute").to_str().unwrap(),
    ]);
    let spec = dir.path().join("clicks.toml");
    std::fs::write(&spec, IDLE_SPEC).unwrap();
    a.ok(&["pipeline", "create", spec.to_str().unwrap()]);
    // One partition on each server: the quiet one has no busy task beside it.
    let split = wait_status_of(&b, "clicks", "one partition on each server", |v| {
        servers_of(v).len() == 2 && v["tasks"].as_array().unwrap().len() == 2
    });
    println!("{split}");

    // A click in each partition opens a window in each; then only partition 0 goes on,
    // two minutes later. Partition 1's window closes only if its task, idle after 1 s,
    // follows partition 0's watermark, which only the other server knows first hand.
    let t0: i64 = 1_700_000_000_000;
    broker.produce_to("clicks", 1, &[("quiet", "c", t0 + 1_000)]);
    broker.produce_to("clicks", 0, &[("busy", "c", t0 + 1_000)]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 0;
    let quiet = loop {
        i += 1;
        broker.produce_to("clicks", 0, &[("busy", "c", t0 + 120_000 + i)]);
        let out = broker.read(
            "page-minutes",
            "read_uncommitted",
            1,
            Duration::from_millis(500),
        );
        let quiet: Vec<Value> = out
            .iter()
            .filter(|(_, _, key, _)| key.as_deref() == Some(&b"quiet"[..]))
            .map(|(.., value)| serde_json::from_slice(value).unwrap())
            .collect();
        if !quiet.is_empty() {
            break quiet;
        }
        assert!(
            Instant::now() < deadline,
            "the quiet partition's window never closed: {}\n{}",
            a.ok(&["pipeline", "status", "clicks", "--json"]),
            b.ok(&["pipeline", "status", "clicks", "--json"])
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let start = t0.div_euclid(60_000) * 60_000;
    assert_eq!(
        quiet[0],
        serde_json::json!({"page": "quiet", "window_start": start, "window_end": start + 60_000, "count": 1})
    );
}

/// The word count on version 1 with a short probation, word count v2 pushed as
/// version 2 (same state, JSON output), on servers `a` and `b`.
fn upgradable(dir: &Path, broker: &Broker, extra: &str) -> (ServerProcess, ServerProcess) {
    let (a, b, path) = two_members(dir, broker);
    a.ok(&[
        "operator",
        "push",
        "wordcount",
        guest("wordcount-v2").to_str().unwrap(),
    ]);
    let spec = spec()
        .replace("version = \"latest\"", "version = 1")
        .replace(
            "batch_size = 64",
            &format!("batch_size = 64\nprobation_records = 100\n{extra}"),
        );
    std::fs::write(&path, spec).unwrap();
    a.ok(&["pipeline", "create", path.to_str().unwrap()]);
    wait_status(&b, "both servers to run tasks", |v| {
        servers_of(v).len() == 2
    });
    (a, b)
}

/// `(partition, line)` pairs into `lines`, one producer per partition.
fn produce_lines(broker: &Broker, lines: &[(i32, String)]) {
    let mut by: std::collections::BTreeMap<i32, Vec<(&str, &str, i64)>> = Default::default();
    for (p, line) in lines {
        by.entry(*p)
            .or_default()
            .push(("l", line.as_str(), 1_700_000_100_000));
    }
    for (p, records) in by {
        broker.produce_to("lines", p, &records);
    }
}

/// Lines whose words each occur in one source partition only (`p<partition>w<n>`), so
/// a word's counts in the output all come from one task.
fn partition_words(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let p = i % 4;
            format!("p{p}w{} p{p}w{}", (i / 4) % 5, (i / 4) % 3)
        })
        .collect()
}

/// Per word, its counts in offset order (repeats of a count, outputs of aborted
/// transactions on a broker that shows them, dropped) and whether each was in version
/// 2's format.
fn counts_by_format(out: &[ReadRecord]) -> std::collections::BTreeMap<String, Vec<(u64, bool)>> {
    let mut ordered: Vec<_> = out.iter().collect();
    ordered.sort_by_key(|(p, o, ..)| (*p, *o));
    let mut by: std::collections::BTreeMap<String, Vec<(u64, bool)>> = Default::default();
    for (_, _, k, v) in ordered {
        let word = String::from_utf8(k.clone().expect("counts are keyed")).unwrap();
        let (count, json) = crate::kafka::either_format(v);
        let seen = by.entry(word).or_default();
        if !seen.iter().any(|(c, _)| *c == count) {
            seen.push((count, json));
        }
    }
    by
}

#[test]
fn a_shared_pipeline_is_hot_upgraded_on_every_server_with_nothing_lost_or_repeated() {
    let broker = Broker::start();
    broker.create_topic("lines", 4);
    let strict = hides_aborted_transactions(&broker);
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = upgradable(dir.path(), &broker, "");
    // Lines keep coming the whole time (until 10 chunks after the upgrade ended), in
    // chunks that keep the round-robin rotation.
    let all = partition_words(40_000);
    let brokers = broker.brokers.clone();
    let upgraded_flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = std::sync::Arc::clone(&upgraded_flag);
    let chunks: Vec<Vec<String>> = all.chunks(80).map(<[String]>::to_vec).collect();
    let producer = std::thread::spawn(move || {
        let b = Broker::attach(&brokers);
        let mut after = 0;
        let mut sent = 0;
        for (i, chunk) in chunks.iter().enumerate() {
            b.produce("lines", 4, chunk, 1_700_000_000_000 + 1000 * i as i64);
            sent += chunk.len();
            if done.load(std::sync::atomic::Ordering::Acquire) {
                after += 1;
                if after == 10 {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(40));
        }
        sent
    });
    std::thread::sleep(Duration::from_millis(400));
    // Asked on B, carried out on both.
    let upgraded = b.ok(&["pipeline", "upgrade", "wc", "--operator", "wordcount@2"]);
    assert!(upgraded.contains("upgrade succeeded"), "{upgraded}");
    upgraded_flag.store(true, std::sync::atomic::Ordering::Release);
    let sent = producer.join().unwrap();
    assert!(sent < all.len(), "the producer ran out of lines");
    let values = &all[..sent];
    for server in [&a, &b] {
        wait_status(server, "the upgrade in the record", |v| {
            v["upgrades"]
                .as_array()
                .and_then(|u| u.last())
                .map(|u| &u["result"])
                == Some(&Value::from("succeeded"))
        });
    }
    if !wait_committed(&broker, &[(&a, "a"), (&b, "b")], sent as u64 / 4) {
        return;
    }

    let expected = expected_counts(&as_source(values, 4));
    let out = broker.read(
        "counts",
        if strict {
            "read_committed"
        } else {
            "read_uncommitted"
        },
        expected.len(),
        Duration::from_secs(60),
    );
    let by = counts_by_format(&out);
    let mut got: Vec<(String, u64)> = by
        .iter()
        .flat_map(|(w, cs)| cs.iter().map(|(c, _)| (w.clone(), *c)))
        .collect();
    got.sort();
    assert_eq!(got, expected, "every count once, none missing");
    // Each word (so each task) switched once, from version 1's format to version 2's,
    // with its counts in order, and every partition (on both servers) got to version 2.
    for (key, cs) in &by {
        let switch = cs.iter().position(|(_, j)| *j).unwrap_or(cs.len());
        assert!(cs[switch..].iter().all(|(_, j)| *j), "{key:?}: {cs:?}");
        let counts: Vec<u64> = cs.iter().map(|(c, _)| *c).collect();
        assert!(counts.windows(2).all(|w| w[0] < w[1]), "{key:?}: {cs:?}");
    }
    for p in 0..4 {
        assert!(
            by.iter()
                .any(|(w, cs)| w.starts_with(&format!("p{p}w")) && cs.iter().any(|(_, j)| *j)),
            "partition {p} never ran version 2"
        );
    }
}

#[test]
fn a_shared_upgrade_that_fails_on_another_server_is_rolled_back_everywhere() {
    let broker = Broker::start();
    broker.create_topic("lines", 4);
    let strict = hides_aborted_transactions(&broker);
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = upgradable(dir.path(), &broker, "probation_ms = 60000");
    // Version 2 traps on the 10th record an instance handles.
    a.ok(&[
        "operator",
        "push",
        "wordcount",
        guest("fixture-wordcount-trap").to_str().unwrap(),
    ]);
    let first = partition_words(400);
    broker.produce("lines", 4, &first, 1_700_000_000_000);
    if !wait_committed(&broker, &[(&a, "a"), (&b, "b")], 100) {
        return;
    }
    let on = |server: &str| -> Vec<i32> {
        status_of(&a)["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["server"] == server)
            .map(|t| t["partition"].as_i64().unwrap() as i32)
            .collect()
    };
    let (on_a, on_b) = (on("a"), on("b"));
    // B decides; only A's partitions get records during the probation, so the failure
    // reaches B through A's report.
    let more = |partitions: &[i32], from: usize| -> Vec<(i32, String)> {
        partitions
            .iter()
            .flat_map(|&p| {
                (from..from + 50).map(move |k| {
                    let i = k * 4 + p as usize;
                    (p, format!("p{p}w{} p{p}w{}", (i / 4) % 5, (i / 4) % 3))
                })
            })
            .collect()
    };
    let (ok, stdout, stderr, second) = std::thread::scope(|s| {
        let upgrading =
            s.spawn(|| b.cli(&["pipeline", "upgrade", "wc", "--operator", "wordcount@3"]));
        // A's tasks run the new version (on probation) before their input comes.
        wait_status(&a, "A's tasks on probation", |v| {
            v["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| t["server"] == "a")
                .all(|t| t["probation"].is_object())
        });
        let second = more(&on_a, 100);
        produce_lines(&broker, &second);
        let (ok, stdout, stderr) = upgrading.join().unwrap();
        (ok, stdout, stderr, second)
    });
    assert!(!ok, "the upgrade must fail: {stdout}");
    assert!(stderr.contains("upgrade rolled back"), "{stderr}");
    assert!(stderr.contains("on server a"), "{stderr}");
    for server in [&a, &b] {
        wait_status(server, "the rollback in the record", |v| {
            v["upgrades"]
                .as_array()
                .and_then(|u| u.last())
                .map(|u| &u["result"])
                == Some(&Value::from("rolled_back"))
        });
    }
    // Version 1 goes on everywhere.
    let third = more(&on_b, 100);
    produce_lines(&broker, &third);
    if !wait_committed(&broker, &[(&a, "a"), (&b, "b")], 150) {
        return;
    }

    let mut source = as_source(&first, 4);
    for (k, (p, line)) in second.iter().chain(&third).enumerate() {
        let r = eddy_host::record::Record {
            value: line.as_bytes().to_vec(),
            ..Default::default()
        };
        source.push((*p as u32, 100 + k as u64, r));
    }
    let expected = expected_counts(&source);
    let out = broker.read(
        "counts",
        if strict {
            "read_committed"
        } else {
            "read_uncommitted"
        },
        expected.len(),
        Duration::from_secs(60),
    );
    for (.., v) in &out {
        assert!(
            !String::from_utf8_lossy(v).contains("BAD VERSION"),
            "an output of the failed version was committed"
        );
    }
    let by = counts_by_format(&out);
    let mut got: Vec<(String, u64)> = by
        .iter()
        .flat_map(|(w, cs)| cs.iter().map(|(c, _)| (w.clone(), *c)))
        .collect();
    got.sort();
    assert_eq!(got, expected, "every count once, none missing");
    assert!(
        by.values().flatten().all(|(_, json)| !json),
        "version 1 only"
    );
}

#[test]
fn a_savepoint_of_a_running_shared_pipeline_under_input_restores_exactly() {
    let broker = Broker::start();
    broker.create_topic("lines", 4);
    let strict = hides_aborted_transactions(&broker);
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = running_on_two(dir.path(), &broker);
    let values = lines(1600, 23);
    let (first, second) = values.split_at(400);
    broker.produce("lines", 4, first, 1_700_000_000_000);
    if !wait_committed(&broker, &[(&a, "a"), (&b, "b")], 100) {
        return;
    }

    // The rest arrives while A takes the savepoint: the pipeline is held on both servers
    // for a moment, and A reads B's partitions from Kafka.
    let brokers = broker.brokers.clone();
    let chunks: Vec<Vec<String>> = second.chunks(40).map(<[String]>::to_vec).collect();
    let producer = std::thread::spawn(move || {
        let b = Broker::attach(&brokers);
        for (i, chunk) in chunks.iter().enumerate() {
            b.produce("lines", 4, chunk, 1_700_000_100_000 + 1000 * i as i64);
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    wait_status(&a, "the second half to flow", |v| {
        v["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["server"] == "a" && t["committed_offset"].as_u64() > Some(120))
    });
    let m: Value = serde_json::from_str(&a.ok(&["pipeline", "savepoint", "wc", "--json"])).unwrap();
    producer.join().unwrap();
    let id = m["id"].as_str().unwrap().to_string();
    let at: Vec<(u32, u64)> = m["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["partition"].as_u64().unwrap() as u32,
                t["offset"].as_u64().unwrap(),
            )
        })
        .collect();
    println!("savepoint at {at:?} of 400 lines per partition");
    // Both servers go on after the savepoint.
    if !wait_committed(&broker, &[(&a, "a"), (&b, "b")], 400) {
        return;
    }
    let source = as_source(&values, 4);
    let expected_all = expected_counts(&source);
    check_output(&broker, strict, &expected_all, "before the restore");

    // Restored (stopped everywhere first), then both servers run again: every line after
    // the savepoint's offset of its partition is counted again from the savepoint's
    // state, so its outputs repeat exactly.
    a.ok(&["pipeline", "stop", "wc"]);
    wait_status(&b, "B to stop", |v| v["state"] == "stopped");
    b.ok(&["pipeline", "restore", "wc", &id]);
    a.ok(&["pipeline", "start", "wc"]);
    wait_status(&a, "both servers to run tasks", |v| {
        servers_of(v).len() == 2
    });
    if !wait_committed(&broker, &[(&a, "a"), (&b, "b")], 400) {
        return;
    }
    let before: Vec<_> = source
        .iter()
        .filter(|(p, o, _)| at.iter().any(|(q, saved)| q == p && o < saved))
        .cloned()
        .collect();
    let expected = with_replay(&expected_all, &expected_counts(&before));
    check_output(&broker, strict, &expected, "after the restore");
}
