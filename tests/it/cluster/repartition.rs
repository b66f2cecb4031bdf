//! A shared pipeline that repartitions: its repartition topic lives in Kafka (under the
//! cluster's names), written in the same transaction as the rest of the upstream task's
//! commit, so a global word count runs across servers and a kill neither loses nor
//! repeats a count.

use super::*;
use crate::support::oracle::expected_global_counts;

/// Split lines into words, repartition by word, count: one count per word overall.
const GLOBAL: &str = r#"
name = "wc"
[source]
kafka = { topic = "lines" }
[sink]
kafka = { topic = "counts" }
[[operators]]
name = "split-words"
version = "latest"
config = { lowercase = "true" }
[[operators]]
name = "wordcount"
version = "latest"
repartition = true
[settings]
commit_interval_ms = 20
batch_size = 64
"#;

/// The tasks of `stage` that `server` runs itself, as (partition, committed offset).
fn own_tasks(v: &Value, server: &str, stage: u64) -> Vec<(u64, u64)> {
    v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["server"] == server && t["stage"] == stage && t["state"] == "running")
        .map(|t| {
            (
                t["partition"].as_u64().unwrap(),
                t["committed_offset"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_global_word_count_shared_by_two_servers_counts_each_word_once_across_a_kill() {
    let broker = Broker::start();
    broker.create_topic("lines", 4);
    let strict = hides_aborted_transactions(&broker);
    let dir = tempfile::tempdir().unwrap();
    let a = member(&dir.path().join("a"), &broker, "a");
    let b = member(&dir.path().join("b"), &broker, "b");
    for name in ["split-words", "wordcount"] {
        a.ok(&["operator", "push", name, guest(name).to_str().unwrap()]);
    }
    let path = dir.path().join("global.toml");
    std::fs::write(&path, GLOBAL).unwrap();
    a.ok(&["pipeline", "create", path.to_str().unwrap()]);
    // Both stages of a partition run on the server the group gives the partition to.
    let v = wait_status(&b, "both servers to run tasks", |v| {
        servers_of(v).len() == 2 && v["tasks"].as_array().unwrap().len() == 8
    });
    for server in ["a", "b"] {
        let first: Vec<u64> = own_tasks(&v, server, 0).iter().map(|t| t.0).collect();
        let second: Vec<u64> = own_tasks(&v, server, 1).iter().map(|t| t.0).collect();
        assert_eq!(
            first, second,
            "{server} runs both stages of its partitions: {v}"
        );
    }
    assert_eq!(
        v["stages"][1]["source"], "c1.wc.wordcount.repartition",
        "the repartition topic carries the cluster's name: {v}"
    );

    let values = lines(10_000, 7);
    let (first, second) = values.split_at(8_000);
    broker.produce("lines", 4, first, 1_700_000_000_000);
    // Kill A mid-stream: while it still splits lines of its partitions into the
    // repartition topic, and B counts words A split.
    wait_status(&a, "A to split part of its lines", |v| {
        let split = own_tasks(v, "a", 0);
        split.iter().any(|t| t.1 > 200) && split.iter().all(|t| t.1 < 1_600)
    });
    a.kill();
    let killed = Instant::now();
    broker.produce("lines", 4, second, 1_700_000_100_000);

    // B takes A's partitions, both stages, and splits every line.
    let mut stall = StallWatch::default();
    let deadline = Instant::now() + Duration::from_secs(120) + STALL_PROOF;
    loop {
        let v = status_of(&b);
        let split = own_tasks(&v, "b", 0);
        if split.len() == 4
            && split.iter().all(|t| t.1 == 2_500)
            && own_tasks(&v, "b", 1).len() == 4
        {
            break;
        }
        if let Some(fault) = stall.check(&broker, &v) {
            println!("global word count kill: {fault}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "waiting for B to run every task and split every line: {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Well within the transactions' timeout (60 s): the start fenced A's producers of
    // both stages rather than waiting for the broker to time their transactions out.
    assert!(
        killed.elapsed() < Duration::from_secs(50),
        "the takeover took {:?}",
        killed.elapsed()
    );
    let mut expected = expected_global_counts(&as_source(&values, 4));
    if !strict {
        expected = as_the_broker_shows_it(&broker, &expected);
    }
    check_output(
        &broker,
        strict,
        &expected,
        "global word count across a kill",
    );

    // Savepoints of such a pipeline would leave out the records between its stages.
    let (ok, out, err) = b.cli(&["pipeline", "savepoint", "wc"]);
    assert!(!ok && err.contains("repartitions"), "{out}{err}");
}

/// On a broker that shows records of aborted transactions to `read_committed` readers
/// (Tansu does), the words of A's transaction that the kill cut short show in the
/// repartition topic although they were aborted, and the counting stage, reading them
/// as the broker shows them, counts them. Checked there instead: the repartition topic
/// holds every word of the input (the splitting stage lost none), and the counts are
/// exactly the global counts of the words it shows (the counting stage, restored on B,
/// counted each once). (How many more words it shows is not bounded here: this broker
/// also at times answers a partition's end short of its last records, so a takeover
/// may resume from a position a few commits old, whose repeats it shows as well.)
/// Returns those counts.
fn as_the_broker_shows_it(broker: &Broker, expected: &[(String, u64)]) -> Vec<(String, u64)> {
    let shown = broker.read(
        "c1.wc.wordcount.repartition",
        "read_committed",
        expected.len(),
        Duration::from_secs(30),
    );
    // Watermark records have no key; each word is keyed by itself.
    let words: Vec<String> = shown
        .iter()
        .filter_map(|r| r.2.as_ref())
        .map(|k| String::from_utf8(k.clone()).unwrap())
        .collect();
    let counts = expected_global_counts(&as_source(&words, 1));
    assert!(
        holds_all(&counts, expected),
        "the repartition topic lacks words of the input ({} words shown, {} in the input)",
        words.len(),
        expected.len()
    );
    println!(
        "the broker shows aborted transactions: the repartition topic shows {} words for {} in the input; checked that the counts are exactly those of the words it shows",
        words.len(),
        expected.len()
    );
    counts
}
