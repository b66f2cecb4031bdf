//! Pipelines on Kafka topics, against a real Kafka-protocol broker the test starts:
//! Kafka → word count → Kafka read with `read_committed`, and exactly-once through
//! `kill -9` of the server at random points.

use crate::support::guest;
use crate::support::kafka::{Broker, ReadRecord, STALL_PROOF, StallWatch};
use crate::support::oracle::{actual_counts, expected_counts, lines};
use crate::support::server::{ServerProcess, TestApp};
use eddy_host::record::Record;
use rand::{Rng, SeedableRng};
use std::time::Duration;

/// The source as the oracle wants it: value i went to partition i % partitions.
pub fn as_source(values: &[String], partitions: usize) -> Vec<(u32, u64, Record)> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let r = Record {
                value: v.as_bytes().to_vec(),
                ..Record::default()
            };
            ((i % partitions) as u32, (i / partitions) as u64, r)
        })
        .collect()
}

/// The `(word, count)` pairs of records read from the output topic, sorted.
pub fn counts(records: &[ReadRecord]) -> Vec<(String, u64)> {
    let sink: Vec<(u32, u64, Record)> = records
        .iter()
        .map(|(p, o, k, v)| {
            let r = Record {
                key: k.clone(),
                value: v.clone(),
                ..Record::default()
            };
            (*p as u32, *o as u64, r)
        })
        .collect();
    actual_counts(&sink)
}

pub const SPEC: &str = r#"
name = "wc"
[source]
kafka = { topic = "lines" }
[sink]
kafka = { topic = "counts" }
[[operators]]
name = "wordcount"
version = "latest"
config = { lowercase = "true" }
[settings]
commit_interval_ms = 50
"#;

#[tokio::test(flavor = "multi_thread")]
async fn kafka_to_word_count_to_kafka_is_exact_under_read_committed() {
    let broker = Broker::start();
    broker.create_topic("lines", 4);
    let values = lines(400, 1);
    broker.produce("lines", 4, &values, 1_700_000_000_000);

    let t = TestApp::with_kafka(&broker.brokers);
    t.push("wordcount", "wordcount").await;
    let (s, v) = t.create_pipeline(SPEC).await;
    assert_eq!(s, axum::http::StatusCode::CREATED, "{v}");

    let expected = expected_counts(&as_source(&values, 4));
    let out = tokio::task::spawn_blocking(move || {
        let out = broker.read_committed("counts", expected.len(), Duration::from_secs(60));
        (out, expected)
    })
    .await
    .unwrap();
    assert_eq!(counts(&out.0), out.1);
}

#[test]
fn a_kafka_pipeline_is_exactly_once_through_kill_9_at_random_points() {
    kill_at_random_points(true, true);
}

#[test]
fn an_embedded_to_kafka_pipeline_is_exactly_once_through_kill_9_at_random_points() {
    kill_at_random_points(false, true);
}

#[test]
fn a_kafka_to_embedded_pipeline_is_exactly_once_through_kill_9_at_random_points() {
    kill_at_random_points(true, false);
}

/// Word count over 6,000 lines on 4 partitions, `kill -9` of the server 4 times at
/// random points, restart each time; the output is compared with the oracle's.
fn kill_at_random_points(source_in_kafka: bool, sink_in_kafka: bool) {
    let broker = Broker::start();
    let seed = std::env::var("EDDY_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    println!(
        "kafka crash test (source in Kafka: {source_in_kafka}, sink in Kafka: {sink_in_kafka}) seed {seed} (rerun with EDDY_CRASH_SEED={seed})"
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let strict = !sink_in_kafka || hides_aborted_transactions(&broker);
    let values = lines(6000, seed);

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let spec = dir.path().join("wc.toml");
    let mut text = SPEC.replace(
        "commit_interval_ms = 50",
        "commit_interval_ms = 20\nbatch_size = 64",
    );
    if !source_in_kafka {
        text = text.replace("kafka = { topic = \"lines\" }", "topic = \"lines\"");
    }
    if !sink_in_kafka {
        text = text.replace("kafka = { topic = \"counts\" }", "topic = \"counts\"");
    }
    std::fs::write(&spec, text).unwrap();
    let args = ["--kafka-brokers", broker.brokers.as_str(), "--workers", "2"];
    let mut server = ServerProcess::start(&data, &args);
    if source_in_kafka {
        broker.create_topic("lines", 4);
        broker.produce("lines", 4, &values, 1_700_000_000_000);
    } else {
        server.ok(&["topic", "create", "lines", "--partitions", "4"]);
        let events: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| serde_json::json!({ "value": v, "partition": i % 4 }).to_string())
            .collect();
        let file = dir.path().join("lines.jsonl");
        std::fs::write(&file, events.join("\n")).unwrap();
        server.ok(&[
            "topic",
            "produce",
            "lines",
            "--file",
            file.to_str().unwrap(),
        ]);
    }
    server.ok(&[
        "operator",
        "push",
        "wordcount",
        guest("wordcount").to_str().unwrap(),
    ]);
    server.ok(&["pipeline", "create", spec.to_str().unwrap()]);
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(rng.random_range(200..1500)));
        server.kill();
        server = ServerProcess::start(&data, &args);
    }
    // Every task has committed its whole partition (1500 records each).
    let deadline = std::time::Instant::now() + Duration::from_secs(120) + STALL_PROOF;
    let mut stall = StallWatch::default();
    loop {
        let v: serde_json::Value =
            serde_json::from_str(&server.ok(&["pipeline", "status", "wc", "--json"])).unwrap();
        let tasks = v["tasks"].as_array().unwrap();
        if tasks.len() == 4 && tasks.iter().all(|t| t["committed_offset"] == 1500) {
            break;
        }
        if let Some(fault) = stall.check(&broker, &v) {
            // The output can then only be checked for what it holds: expected outputs.
            println!("seed {seed}: {fault}");
            let out = broker.read("counts", "read_uncommitted", 0, Duration::from_secs(5));
            assert_only_expected(
                counts(&out),
                &expected_counts(&as_source(&values, 4)),
                &format!("seed {seed}"),
            );
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "seed {seed}: the pipeline did not finish: {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let expected = expected_counts(&as_source(&values, 4));
    let status = server.cli(&["pipeline", "status", "wc"]).1;
    let got = if sink_in_kafka {
        // A broker that shows aborted transactions (Tansu) may also hold read_committed
        // readers behind a transaction a kill left open: read everything there.
        let isolation = if strict {
            "read_committed"
        } else {
            "read_uncommitted"
        };
        let out = broker.read(
            "counts",
            isolation,
            expected.len(),
            Duration::from_secs(120),
        );
        drop(server);
        counts(&out)
    } else {
        server.stop();
        actual_counts(&crate::support::oracle::read_topic(&data, "counts"))
    };
    assert_output(strict, got, &expected, &format!("seed {seed}\n{status}"));
}

/// Checks that every output is an expected one (repeats allowed: the broker shows
/// aborted transactions), when not all could be produced.
pub fn assert_only_expected(got: Vec<(String, u64)>, expected: &[(String, u64)], context: &str) {
    for x in &got {
        assert!(
            expected.binary_search(x).is_ok(),
            "{context}: unexpected output {x:?}"
        );
    }
}

/// Checks a word count's output: exact on a broker that hides aborted transactions;
/// on one that shows them (Tansu), nothing lost and every extra output a repeat of an
/// expected one (the aborted transactions' outputs).
pub fn assert_output(
    strict: bool,
    got: Vec<(String, u64)>,
    expected: &[(String, u64)],
    context: &str,
) {
    if strict {
        assert_eq!(
            got.len(),
            expected.len(),
            "{context}: {} outputs, expected {}",
            got.len(),
            expected.len()
        );
        assert_eq!(got, expected, "{context}");
        return;
    }
    let mut extra = got;
    for e in expected {
        let i = extra
            .binary_search(e)
            .unwrap_or_else(|_| panic!("{context}: output {e:?} is missing"));
        extra.remove(i);
    }
    for x in &extra {
        assert!(
            expected.binary_search(x).is_ok(),
            "{context}: unexpected output {x:?}"
        );
    }
    println!(
        "the broker shows aborted transactions: {} outputs of aborted transactions on top of {}",
        extra.len(),
        expected.len()
    );
}

/// Whether the broker hides records of aborted transactions from `read_committed`
/// consumers, as Apache Kafka does (Tansu 0.6 does not).
pub fn hides_aborted_transactions(broker: &Broker) -> bool {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    broker.create_topic("probe", 1);
    let p: BaseProducer = broker
        .config()
        .set("transactional.id", "probe")
        .create()
        .unwrap();
    let t = Duration::from_secs(10);
    p.init_transactions(t).unwrap();
    p.begin_transaction().unwrap();
    p.send(
        BaseRecord::<(), str>::to("probe")
            .payload("aborted")
            .partition(0),
    )
    .map_err(|(e, _)| e)
    .unwrap();
    p.flush(t).unwrap();
    p.abort_transaction(t).unwrap();
    p.begin_transaction().unwrap();
    p.send(
        BaseRecord::<(), str>::to("probe")
            .payload("committed")
            .partition(0),
    )
    .map_err(|(e, _)| e)
    .unwrap();
    p.commit_transaction(t).unwrap();
    let out = broker.read_committed("probe", 1, Duration::from_secs(10));
    !out.iter().any(|r| r.3 == b"aborted")
}

/// Whether the broker reports a partition's end (its high watermark) as Kafka does: the
/// offset after the last record. Tansu has been seen to answer less after a batch of
/// records, so a reader cannot tell from it that records wait to be fetched.
pub fn reports_its_end(broker: &Broker) -> bool {
    broker.create_topic("end-probe", 1);
    let records: Vec<(String, String, i64)> = (0..500)
        .map(|i| (format!("k{i}"), format!("v{i}"), i))
        .collect();
    let records: Vec<(&str, &str, i64)> = records
        .iter()
        .map(|(k, v, t)| (k.as_str(), v.as_str(), *t))
        .collect();
    broker.produce_to("end-probe", 0, &records);
    let ends = broker.offsets("end-probe");
    println!("the broker's offsets after 500 records: {ends:?}");
    matches!(ends.as_slice(), [Ok((_, 500))])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_with_an_empty_data_dir_restores_state_from_kafka_and_continues() {
    let broker = Broker::start();
    broker.create_topic("lines", 2);
    let values = lines(600, 7);
    let (first, second) = values.split_at(300);
    broker.produce("lines", 2, first, 1_700_000_000_000);
    let expected_first = expected_counts(&as_source(first, 2));
    let brokers = broker.brokers.clone();
    {
        let a = TestApp::with_kafka(&brokers);
        a.push("wordcount", "wordcount").await;
        let (s, v) = a.create_pipeline(SPEC).await;
        assert_eq!(s, axum::http::StatusCode::CREATED, "{v}");
        let n = expected_first.len();
        let b = Broker::attach(&brokers);
        let out = tokio::task::spawn_blocking(move || {
            b.read_committed("counts", n, Duration::from_secs(60))
        })
        .await
        .unwrap();
        assert_eq!(counts(&out), expected_first);
    } // server A is gone, with its data dir

    // Server B starts from nothing but the broker: state and position come from Kafka.
    let b_app = TestApp::with_kafka(&brokers);
    b_app.push("wordcount", "wordcount").await;
    let (s, v) = b_app.create_pipeline(SPEC).await;
    assert_eq!(s, axum::http::StatusCode::CREATED, "{v}");
    // The second half goes to the partitions in the same rotation, after the first.
    let expected = expected_counts(&as_source(&values, 2));
    let (second, n) = (second.to_vec(), expected.len());
    // `broker` (which owns the broker's process) lives to the end of the test.
    let b = Broker::attach(&brokers);
    let out = tokio::task::spawn_blocking(move || {
        b.produce("lines", 2, &second, 1_700_000_100_000);
        b.read_committed("counts", n, Duration::from_secs(60))
    })
    .await
    .unwrap();
    let got = counts(&out);
    if got.len() < expected.len() {
        // Tansu at times stalls `read_committed` readers for minutes after a producer
        // went away. B must still have run everything: once it has committed its whole
        // input, every expected output is in the log, and nothing else.
        b_app.wait_caught_up("wc").await;
        let b = Broker::attach(&brokers);
        let all = tokio::task::spawn_blocking(move || {
            b.read("counts", "read_uncommitted", 0, Duration::from_secs(10))
        })
        .await
        .unwrap();
        let all = counts(&all);
        assert_only_expected(all.clone(), &expected, "empty data dir");
        assert!(
            crate::cluster::holds_all(&all, &expected),
            "empty data dir: outputs missing from the log ({} of {})",
            all.len(),
            expected.len()
        );
        println!(
            "read_committed stalled at {} of {} outputs (the broker's known fault): checked the log with read_uncommitted instead",
            got.len(),
            expected.len()
        );
    } else {
        assert_eq!(got, expected);
    }
    drop(broker);
}

/// `(word, count)` of a record from either word-count version: `3` or
/// `{"word":"the","count":3}`.
pub fn either_format(value: &[u8]) -> (u64, bool) {
    let v = String::from_utf8_lossy(value);
    match serde_json::from_str::<serde_json::Value>(&v) {
        Ok(serde_json::Value::Object(o)) => (o["count"].as_u64().expect("a count"), true),
        _ => (v.parse().expect("counts are numbers"), false),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hot_upgrade_of_a_kafka_pipeline_loses_and_repeats_nothing() {
    let broker = Broker::start();
    broker.create_topic("lines", 2);
    let values = lines(1200, 11);
    let t = TestApp::with_kafka(&broker.brokers);
    t.push("wordcount", "wordcount").await;
    t.push("wordcount", "wordcount-v2").await;
    let spec = SPEC.replace("version = \"latest\"", "version = 1").replace(
        "commit_interval_ms = 50",
        "commit_interval_ms = 20\nprobation_records = 50",
    );
    let (s, v) = t.create_pipeline(&spec).await;
    assert_eq!(s, axum::http::StatusCode::CREATED, "{v}");

    // A producer writes the lines in chunks the whole time; chunks of an even size keep
    // the round-robin rotation the oracle assumes.
    let brokers = broker.brokers.clone();
    let chunks: Vec<Vec<String>> = values.chunks(40).map(<[String]>::to_vec).collect();
    let producer = tokio::task::spawn_blocking(move || {
        let b = Broker::attach(&brokers);
        for (i, chunk) in chunks.iter().enumerate() {
            b.produce("lines", 2, chunk, 1_700_000_000_000 + 1000 * i as i64);
            std::thread::sleep(Duration::from_millis(15));
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (s, u) = t.upgrade("wc", "wordcount", 2).await;
    assert_eq!(s, axum::http::StatusCode::OK, "{u}");
    assert_eq!(u["result"], "succeeded", "{u}");
    producer.await.unwrap();

    let expected = expected_counts(&as_source(&values, 2));
    let n = expected.len();
    let out = tokio::task::spawn_blocking(move || {
        broker.read_committed("counts", n, Duration::from_secs(60))
    })
    .await
    .unwrap();
    // Per partition and word, the counts run 1, 2, 3 ... in version 1's format, then in
    // version 2's after the switch: nothing lost, nothing repeated.
    let mut got = Vec::new();
    let mut formats: std::collections::BTreeMap<(i32, String), Vec<bool>> = Default::default();
    for (p, _, k, v) in &out {
        let word = String::from_utf8(k.clone().expect("counts are keyed")).unwrap();
        let (count, json) = either_format(v);
        got.push((word.clone(), count));
        formats.entry((*p, word)).or_default().push(json);
    }
    got.sort();
    assert_eq!(got.len(), expected.len(), "one output per word");
    assert_eq!(got, expected);
    assert!(
        formats.values().any(|f| f.contains(&true)),
        "version 2 produced outputs"
    );
    for (key, f) in &formats {
        let switch = f.iter().position(|j| *j).unwrap_or(f.len());
        assert!(f[switch..].iter().all(|j| *j), "{key:?}: formats {f:?}");
    }
}

async fn stop_and_restore(t: &TestApp, savepoint: &str) {
    let (s, v) = t.post_json("/v1/pipelines/wc/stop", String::new()).await;
    assert_eq!(s, axum::http::StatusCode::OK, "{v}");
    let body = serde_json::json!({ "savepoint": savepoint }).to_string();
    let (s, v) = t.post_json("/v1/pipelines/wc/restore", body).await;
    assert_eq!(s, axum::http::StatusCode::OK, "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_savepoint_restored_into_a_kafka_pipeline_rewinds_state_position_and_changelogs() {
    use axum::http::StatusCode;
    let broker = Broker::start();
    broker.create_topic("lines", 2);
    let values = lines(400, 13);
    let (first, second) = values.split_at(200);
    let brokers = broker.brokers.clone();
    let read = |n: usize| {
        let b = Broker::attach(&brokers);
        tokio::task::spawn_blocking(move || b.read_committed("counts", n, Duration::from_secs(60)))
    };
    let expected_first = expected_counts(&as_source(first, 2));
    let expected_all = expected_counts(&as_source(&values, 2));

    let t = TestApp::with_kafka(&broker.brokers);
    t.push("wordcount", "wordcount").await;
    let (s, v) = t.create_pipeline(SPEC).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    broker.produce("lines", 2, first, 1_700_000_000_000);
    assert_eq!(
        counts(&read(expected_first.len()).await.unwrap()),
        expected_first
    );
    let (s, m) = t
        .post_json("/v1/pipelines/wc/savepoints", String::new())
        .await;
    assert_eq!(s, StatusCode::CREATED, "{m}");
    let id = m["id"].as_str().unwrap().to_string();
    assert_eq!(
        m["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["offset"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [100, 100],
        "the savepoint holds the Kafka offsets: {m}"
    );

    broker.produce("lines", 2, second, 1_700_000_100_000);
    assert_eq!(
        counts(&read(expected_all.len()).await.unwrap()),
        expected_all
    );

    // Back to the savepoint: the second half is processed again from the savepoint's
    // state, so its outputs repeat exactly (not continuing from the later counts).
    stop_and_restore(&t, &id).await;
    let (s, v) = t.post_json("/v1/pipelines/wc/start", String::new()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let mut second_outputs = expected_all.clone();
    for e in &expected_first {
        let i = second_outputs.binary_search(e).unwrap();
        second_outputs.remove(i);
    }
    let mut expected = expected_all.clone();
    expected.extend(second_outputs.iter().cloned());
    expected.sort();
    let got = counts(&read(expected.len()).await.unwrap());
    assert_eq!(got.len(), expected.len());
    assert_eq!(got, expected);

    // Restored again, then taken over by a server with an empty data dir: the state it
    // rebuilds from the Kafka changelogs and the position it reads are the savepoint's,
    // so the second half's outputs repeat once more.
    stop_and_restore(&t, &id).await;
    drop(t);
    let b = TestApp::with_kafka(&broker.brokers);
    b.push("wordcount", "wordcount").await;
    let (s, v) = b.create_pipeline(SPEC).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    expected.extend(second_outputs);
    expected.sort();
    let got = counts(&read(expected.len()).await.unwrap());
    assert_eq!(got.len(), expected.len());
    assert_eq!(got, expected);
}

#[test]
fn a_kafka_pipeline_recovers_by_itself_when_the_brokers_come_back() {
    let (broker, proxy) = Broker::start_behind_proxy();
    broker.create_topic("lines", 2);
    let values = lines(400, 17);
    let (first, second) = values.split_at(200);
    broker.produce("lines", 2, first, 1_700_000_000_000);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let spec = dir.path().join("wc.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let args = ["--kafka-brokers", broker.brokers.as_str(), "--workers", "2"];
    let server = ServerProcess::start(&data, &args);
    server.ok(&[
        "operator",
        "push",
        "wordcount",
        guest("wordcount").to_str().unwrap(),
    ]);
    server.ok(&["pipeline", "create", spec.to_str().unwrap()]);
    let expected_first = expected_counts(&as_source(first, 2));
    let out = broker.read_committed("counts", expected_first.len(), Duration::from_secs(60));
    assert_eq!(counts(&out), expected_first);
    server.stop();

    // The server comes back while the brokers are unreachable: the pipeline says so and
    // keeps trying.
    proxy.set_up(false);
    let server = ServerProcess::start(&data, &args);
    let status = |server: &ServerProcess| -> serde_json::Value {
        serde_json::from_str(&server.ok(&["pipeline", "status", "wc", "--json"])).unwrap()
    };
    let v = status(&server);
    assert_eq!(v["state"], "recovering", "{v}");
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.contains(&broker.brokers) && reason.contains("retrying by itself"),
        "{reason}"
    );

    // Brokers back: it runs again without anyone starting it, and nothing is lost.
    proxy.set_up(true);
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while status(&server)["state"] != "running" {
        assert!(
            std::time::Instant::now() < deadline,
            "the pipeline did not recover: {}",
            status(&server)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    broker.produce("lines", 2, second, 1_700_000_100_000);
    let expected = expected_counts(&as_source(&values, 2));
    let out = broker.read_committed("counts", expected.len(), Duration::from_secs(60));
    assert_eq!(counts(&out), expected);
}

/// A shadow of a Kafka pipeline: its records go to the Kafka topic `wc.shadow` in the
/// task's transactions, the sink holds the live version's outputs only.
#[tokio::test(flavor = "multi_thread")]
async fn a_shadow_of_a_kafka_pipeline_writes_its_own_topic() {
    let broker = Broker::start();
    broker.create_topic("lines", 2);
    let t = TestApp::with_kafka(&broker.brokers);
    t.push("wordcount", "wordcount").await;
    t.push("wordcount", "wordcount-v2").await;
    let spec = SPEC.replace("version = \"latest\"", "version = 1");
    let (s, v) = t.create_pipeline(&spec).await;
    assert_eq!(s, axum::http::StatusCode::CREATED, "{v}");
    let body = serde_json::json!({ "operator": "wordcount", "version": 2 }).to_string();
    let (s, r) = t.post_json("/v1/pipelines/wc/shadow", body).await;
    assert_eq!(s, axum::http::StatusCode::OK, "{r}");

    let values = lines(300, 21);
    broker.produce("lines", 2, &values, 1_700_000_000_000);
    let expected = expected_counts(&as_source(&values, 2));
    let n = expected.len();
    let brokers = broker.brokers.clone();
    let (sink, shadow) = tokio::task::spawn_blocking(move || {
        let b = Broker::attach(&brokers);
        let sink = b.read_committed("counts", n, Duration::from_secs(60));
        let shadow = b.read_committed("wc.shadow", n, Duration::from_secs(60));
        (sink, shadow)
    })
    .await
    .unwrap();
    assert_eq!(
        counts(&sink),
        expected,
        "the live version's outputs, exactly"
    );
    // The shadow (version 2) emits the same counts as JSON.
    let mut shadowed: Vec<(String, u64)> = shadow
        .iter()
        .map(|(_, _, k, v)| {
            let (count, json) = either_format(v);
            assert!(json, "version 2's format");
            (String::from_utf8(k.clone().unwrap()).unwrap(), count)
        })
        .collect();
    shadowed.sort();
    assert_eq!(shadowed, expected);
    // The report lands with the task's local commit, just after its transaction.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let r = loop {
        let (_, r) = t.get("/v1/pipelines/wc/shadow").await;
        if r["counts"]["compared"] == 300 || std::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(r["counts"]["compared"], 300, "{r}");
    assert_eq!(r["counts"]["different"], 300, "{r}");
}
