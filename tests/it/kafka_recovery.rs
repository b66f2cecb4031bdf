//! A task that restores from Kafka never resumes behind a transaction the broker has
//! not decided yet: it waits for the partition's last stable offset to reach its end,
//! says so in the pipeline's status and metrics, and retries with backoff (also through
//! a broker that stops answering for a while).

use crate::kafka::{SPEC, as_source, counts};
use crate::support::guest;
use crate::support::kafka::Broker;
use crate::support::oracle::{expected_counts, lines};
use crate::support::server::{ServerProcess, http_get};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::time::{Duration, Instant};

fn status(server: &ServerProcess) -> serde_json::Value {
    serde_json::from_str(&server.ok(&["pipeline", "status", "wc", "--json"])).unwrap()
}

fn wait_running(server: &ServerProcess, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let v = status(server);
        if v["state"] == "running" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the pipeline did not run again: {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_restart_waits_for_an_open_transaction_on_its_positions_and_resumes_after_it() {
    let broker = Broker::start();
    broker.create_topic("lines", 1);
    let values = lines(300, 29);
    broker.produce("lines", 1, &values[..100], 1_700_000_000_000);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let spec = dir.path().join("wc.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let args = ["--kafka-brokers", broker.brokers.as_str()];
    let server = ServerProcess::start(&data, &args);
    server.ok(&[
        "operator",
        "push",
        "wordcount",
        guest("wordcount").to_str().unwrap(),
    ]);
    server.ok(&["pipeline", "create", spec.to_str().unwrap()]);
    let first = expected_counts(&as_source(&values[..100], 1));
    let out = broker.read_committed("counts", first.len(), Duration::from_secs(60));
    assert_eq!(counts(&out), first);
    server.stop();

    // While the server is down: more input, and a transaction that records the task's
    // position as 200, left open (its producer "crashed" before deciding it).
    broker.produce("lines", 1, &values[100..], 1_700_000_000_100);
    let zombie: BaseProducer = broker
        .config()
        .set("transactional.id", "test.zombie")
        .set("transaction.timeout.ms", "600000")
        .create()
        .unwrap();
    zombie.init_transactions(Duration::from_secs(30)).unwrap();
    zombie.begin_transaction().unwrap();
    let record: BaseRecord<'_, str, str> = BaseRecord::to("wc.positions")
        .key("0/0")
        .payload("200,1700000000199")
        .partition(0);
    zombie.send(record).map_err(|(e, _)| e).unwrap();
    zombie.flush(Duration::from_secs(30)).unwrap();

    // The restarted server cannot tell where its task stands: it says what it waits for
    // instead of resuming at its own (older) position.
    let server = ServerProcess::start(&data, &args);
    let v = status(&server);
    assert_eq!(v["state"], "recovering", "{v}");
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.contains("waiting for wc.positions/0 to reach offset")
            && reason.contains("retrying by itself"),
        "{reason}"
    );
    let metrics = http_get(&server.url, "/metrics");
    assert!(
        metrics.contains("eddy_pipelines{state=\"recovering\"} 1"),
        "{metrics}"
    );

    // The broker stops answering for a while (SIGSTOP), then comes back: still waiting.
    broker.pause(Duration::from_secs(3));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(status(&server)["state"], "recovering");

    // The transaction commits: the task resumes at the position it recorded, so records
    // 100..200 count as done and only 200..300 are processed next.
    zombie.commit_transaction(Duration::from_secs(30)).unwrap();
    wait_running(&server, Duration::from_secs(90));
    let mut seen: Vec<String> = values[..100].to_vec();
    seen.extend_from_slice(&values[200..]);
    let expected = expected_counts(&as_source(&seen, 1));
    let out = broker.read_committed("counts", expected.len(), Duration::from_secs(60));
    assert_eq!(counts(&out), expected);
    let tasks = status(&server)["tasks"].clone();
    assert_eq!(tasks[0]["committed_offset"], 300, "{tasks}");
}

/// A restore long enough to go in without RocksDB's write-ahead log (one partition's
/// changelog of 60,000 offsets; the restore flushes the store and only then writes the
/// marker that accounts for it) applies every change and marks the changelog's end:
/// `eddy bench restore` checks both against what it wrote, and fails otherwise.
#[test]
fn a_long_restore_applies_every_change_and_marks_the_changelog_s_end() {
    let broker = Broker::start();
    let (ok, out, err) = crate::support::eddy_output(&[
        "bench",
        "restore",
        "--brokers",
        &broker.brokers,
        "--keys",
        "60000",
        "--partitions",
        "1",
        "--rounds",
        "1",
    ]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("restore into RocksDB"), "{out}");
}
