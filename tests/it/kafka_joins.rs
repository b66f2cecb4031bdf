//! Several inputs with Kafka: the stream–table join of `examples/enrich-orders` with its
//! orders in a Kafka topic and its customer table in an embedded one, `kill -9` at
//! random points during both inputs' backlogs, the output compared with the oracle's.
//! Once into an embedded sink (every input's position in the task's RocksDB write), once
//! into a Kafka sink (every input's position in the Kafka transaction). And a cluster of
//! two servers sharing the join of two Kafka inputs, one server killed mid-stream.

use crate::joins::{
    Ev, committed, expected_by_key, initial_customers, outputs_by_key, part, spec, timeline,
    updates_from, write,
};
use crate::kafka::{hides_aborted_transactions, reports_its_end};
use crate::support::guest;
use crate::support::kafka::{Broker, STALL_PROOF, StallWatch};
use crate::support::oracle::read_topic;
use crate::support::server::ServerProcess;
use eddy_host::log::partitioner::partition_for_key;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const PARTITIONS: u32 = 3;

#[test]
fn kill_9_with_a_kafka_and_an_embedded_input_into_an_embedded_sink() {
    kill_during_both_inputs(false);
}

#[test]
fn kill_9_with_a_kafka_and_an_embedded_input_into_a_kafka_sink() {
    kill_during_both_inputs(true);
}

/// Records into a Kafka topic, keyed as Eddy's embedded topics key them (co-partitioned).
fn produce_keyed(broker: &Broker, topic: &str, events: &[&Ev]) {
    for p in 0..PARTITIONS {
        let records: Vec<(&str, &str, i64)> = events
            .iter()
            .filter(|e| partition_for_key(e.key.as_bytes(), PARTITIONS) == p)
            .map(|e| (e.key.as_str(), e.value.as_str(), e.ts))
            .collect();
        broker.produce_to(topic, p as i32, &records);
    }
}

/// The left join of `examples/enrich-orders` reading its orders from Kafka, writing to
/// Kafka too when `sink_in_kafka`.
fn kafka_spec(dir: &Path, sink_in_kafka: bool) -> String {
    let text = std::fs::read_to_string(spec(dir, "left"))
        .unwrap()
        .replacen("topic = \"orders\"", "kafka = { topic = \"orders\" }", 1);
    if !sink_in_kafka {
        return text;
    }
    text.replace(
        "[sink]\ntopic = \"enriched-orders\"",
        "[sink]\nkafka = { topic = \"enriched-orders\" }",
    )
}

fn produce_orders(broker: &Broker, orders: &[&Ev]) {
    produce_keyed(broker, "orders", orders);
}

fn produce_customers(server: &ServerProcess, dir: &Path, name: &str, events: &[&Ev]) {
    let file = write(dir, name, events);
    server.ok(&[
        "topic",
        "produce",
        "customers",
        "--file",
        file.to_str().unwrap(),
    ]);
}

fn status(server: &ServerProcess) -> Value {
    serde_json::from_str(&server.ok(&["pipeline", "status", "enrich-orders", "--json"])).unwrap()
}

fn kill_during_both_inputs(sink_in_kafka: bool) {
    let broker = Broker::start();
    let seed: u64 = std::env::var("EDDY_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    println!(
        "kafka join crash test (sink in Kafka: {sink_in_kafka}) seed {seed} (rerun with EDDY_CRASH_SEED={seed})"
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let strict = !sink_in_kafka || hides_aborted_transactions(&broker);
    // The merge knows Kafka records wait to be fetched from the partition's end; on a
    // broker that answers a wrong end (Tansu), a table row may go before an older order.
    let ordered = reports_its_end(&broker);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = ["--kafka-brokers", broker.brokers.as_str(), "--workers", "2"];
    let server = ServerProcess::start(&data, &args);
    server.ok(&[
        "operator",
        "push",
        "enrich-orders",
        guest("enrich-orders").to_str().unwrap(),
    ]);
    broker.create_topic("orders", PARTITIONS as i32);
    server.ok(&["topic", "create", "customers", "--partitions", "3"]);
    if sink_in_kafka {
        broker.create_topic("enriched-orders", PARTITIONS as i32);
    }
    let mut text = kafka_spec(dir.path(), sink_in_kafka);
    text.push_str("\n[settings]\ncommit_interval_ms = 20\nbatch_size = 64\n");
    let spec = dir.path().join("kafka-join.toml");
    std::fs::write(&spec, text).unwrap();

    // The table exists before the pipeline: the first start reads it whole.
    let keys = 200;
    let initial = initial_customers(keys - 20);
    produce_customers(
        &server,
        dir.path(),
        "customers-0.jsonl",
        &initial.iter().collect::<Vec<_>>(),
    );
    let mut next_order = 0;
    let backlog = timeline(&mut rng, 1, 3_000, keys, &mut next_order);
    let orders: Vec<&Ev> = backlog.iter().filter(|e| !e.table).collect();
    produce_orders(&broker, &orders);
    server.ok(&["pipeline", "create", spec.to_str().unwrap()]);
    // Kills start once the first start committed (a start with nothing committed reads
    // the table whole again, up to its end then).
    let deadline = Instant::now() + Duration::from_secs(60);
    while status(&server)["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["committed_offset"] == 0)
    {
        assert!(Instant::now() < deadline, "{}", status(&server));
        std::thread::sleep(Duration::from_millis(20));
    }
    // As in the embedded test: each round's orders, then its table updates timed after
    // them, so the merge by event time handles everything in time order.
    let mut history: Vec<Ev> = initial.clone();
    history.extend(backlog.iter().filter(|e| !e.table).cloned());
    let mut server = server;
    let mut mid_stream = 0;
    let kills = 5;
    let mut from = 1_000_000i64;
    for round in 0..kills {
        server.ok(&["pipeline", "stop", "enrich-orders"]);
        let n = if sink_in_kafka { 6_000 } else { 15_000 };
        let chunk = timeline(&mut rng, from, n, keys, &mut next_order);
        let chunk: Vec<Ev> = part(&chunk, false)
            .into_iter()
            .chain(updates_from(&chunk, from + 50_000))
            .collect();
        from += 100_000;
        let orders: Vec<&Ev> = chunk.iter().filter(|e| !e.table).collect();
        let updates: Vec<&Ev> = chunk.iter().filter(|e| e.table).collect();
        produce_orders(&broker, &orders);
        produce_customers(&server, dir.path(), &format!("c-{round}.jsonl"), &updates);
        history.extend(chunk);
        server.ok(&["pipeline", "start", "enrich-orders"]);
        // A Kafka transaction per commit makes the Kafka sink's run much longer.
        let most = if sink_in_kafka { 600 } else { 60 };
        std::thread::sleep(Duration::from_millis(rng.random_range(0..most)));
        let lag: u64 = status(&server)["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["lag"].as_u64().unwrap_or(0))
            .sum();
        println!("round {round}: kill -9 with {lag} records not yet committed");
        mid_stream += usize::from(lag > 0);
        server.kill();
        server = ServerProcess::start(&data, &args);
    }
    let total_orders = history.iter().filter(|e| !e.table).count() as u64;
    let total_customers = history.iter().filter(|e| e.table).count() as u64;
    let deadline = Instant::now() + Duration::from_secs(180) + STALL_PROOF;
    let mut stall = StallWatch::default();
    let mut stalled = None;
    loop {
        let v = status(&server);
        if v["state"] == "running"
            && committed(&v, "orders") == total_orders
            && committed(&v, "customers") == total_customers
        {
            break;
        }
        if sink_in_kafka && let Some(fault) = stall.check(&broker, &v) {
            println!("seed {seed}: {fault}");
            stalled = Some(fault);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed}: did not catch up ({total_orders} orders, {total_customers} rows): {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(mid_stream > 0, "seed {seed}: no kill cut into work");

    let expected = expected_by_key(&history);
    let n: usize = expected.values().map(Vec::len).sum();
    let outputs = if sink_in_kafka {
        let isolation = if strict && stalled.is_none() {
            "read_committed"
        } else {
            "read_uncommitted"
        };
        drop(server);
        kafka_outputs(&broker, isolation, n)
    } else {
        server.stop();
        read_topic(&data, "enriched-orders")
            .into_iter()
            .map(|(_, _, r)| (r.key, r.value))
            .collect()
    };
    let (outputs, expected) = if ordered {
        (outputs, expected)
    } else {
        println!(
            "the broker misreports its partitions' ends: checked that every order is joined \
             exactly once, in order per key, with a row its customer had (or none), not \
             which row"
        );
        orders_only(&history, outputs, &expected, seed)
    };
    check_outputs(outputs, &expected, strict, stalled, seed);
}

/// The outputs and the expected ones with only their orders, after checking that each
/// output's customer is a row its key had at some time (or none).
#[allow(clippy::type_complexity)]
fn orders_only(
    history: &[Ev],
    outputs: Vec<(Option<Vec<u8>>, Vec<u8>)>,
    expected: &BTreeMap<String, Vec<String>>,
    seed: u64,
) -> (
    Vec<(Option<Vec<u8>>, Vec<u8>)>,
    BTreeMap<String, Vec<String>>,
) {
    let order = |v: &[u8]| -> (String, String) {
        let v: Value = serde_json::from_slice(v).unwrap();
        (v["order"].to_string(), v["customer"].to_string())
    };
    let outputs = outputs
        .into_iter()
        .map(|(k, v)| {
            let key = String::from_utf8(k.clone().expect("a keyed output")).unwrap();
            let (order, customer) = order(&v);
            let had = customer == "null"
                || history
                    .iter()
                    .any(|e| e.table && e.key == key && e.value == customer);
            assert!(
                had,
                "seed {seed}: {key} joined with {customer}, never its row"
            );
            (k, order.into_bytes())
        })
        .collect();
    let expected = expected
        .iter()
        .map(|(k, vs)| {
            (
                k.clone(),
                vs.iter().map(|v| order(v.as_bytes()).0).collect(),
            )
        })
        .collect();
    (outputs, expected)
}

/// The Kafka sink's records as (key, value), in order per partition.
fn kafka_outputs(broker: &Broker, isolation: &str, n: usize) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
    let out = broker.read("enriched-orders", isolation, n, Duration::from_secs(120));
    out.into_iter().map(|(_, _, k, v)| (k, v)).collect()
}

/// Checks the sink's records of each key against the oracle's: equal (`strict`); on a
/// broker that shows aborted transactions, the expected ones in order with every extra a
/// repeat of an expected one; after a broker stall (`stalled`), every one expected.
fn check_outputs(
    outputs: Vec<(Option<Vec<u8>>, Vec<u8>)>,
    expected: &BTreeMap<String, Vec<String>>,
    strict: bool,
    stalled: Option<String>,
    seed: u64,
) {
    let n: usize = expected.values().map(Vec::len).sum();
    let actual = outputs_by_key(outputs);
    let m: usize = actual.values().map(Vec::len).sum();
    if let Some(fault) = stalled {
        // Only what was produced can be checked: every output an expected one.
        for (k, vs) in &actual {
            let want = expected.get(k).cloned().unwrap_or_default();
            for v in vs {
                assert!(
                    want.contains(v),
                    "seed {seed} ({fault}): unexpected {k}={v}"
                );
            }
        }
        return;
    }
    if strict {
        assert_eq!(m, n, "seed {seed}: outputs: {n} expected, {m} found");
        if let Some((k, want)) = expected.iter().find(|(k, w)| actual.get(*k) != Some(*w)) {
            let got = actual.get(k).cloned().unwrap_or_default();
            let at = want.iter().zip(&got).take_while(|(w, g)| w == g).count();
            panic!(
                "seed {seed}: the output differs from the oracle, first at key {k} output {at}: expected {:?}, found {:?}",
                want.get(at),
                got.get(at)
            );
        }
        return;
    }
    // The broker shows aborted transactions (Tansu): per key, the expected outputs in
    // order with nothing missing, every extra output a repeat of an expected one.
    for (k, want) in expected {
        let got = actual.get(k).cloned().unwrap_or_default();
        let mut it = got.iter();
        for w in want {
            assert!(
                it.any(|g| g == w),
                "seed {seed}: {k}: {w} missing or out of order"
            );
        }
        for g in &got {
            assert!(want.contains(g), "seed {seed}: unexpected {k}={g}");
        }
    }
    for k in actual.keys() {
        assert!(expected.contains_key(k), "seed {seed}: unexpected key {k}");
    }
    println!(
        "the broker shows aborted transactions: {} outputs of aborted transactions on top of {n}",
        m - n
    );
}

#[test]
fn a_cluster_shares_a_join_of_kafka_inputs_and_the_survivor_of_a_kill_finishes_it_exactly() {
    use crate::cluster::{member, servers_of, wait_status_of};
    let broker = Broker::start();
    let strict = hides_aborted_transactions(&broker);
    for topic in ["orders", "customers", "enriched-orders"] {
        broker.create_topic(topic, PARTITIONS as i32);
    }
    let dir = tempfile::tempdir().unwrap();
    let a = member(&dir.path().join("a"), &broker, "a");
    let b = member(&dir.path().join("b"), &broker, "b");
    a.ok(&[
        "operator",
        "push",
        "enrich-orders",
        guest("enrich-orders").to_str().unwrap(),
    ]);
    let text =
        kafka_spec(dir.path(), true) + "\n[settings]\ncommit_interval_ms = 20\nbatch_size = 64\n";
    // An embedded input lives on one server: a shared pipeline cannot read it.
    let path = dir.path().join("embedded-customers.toml");
    std::fs::write(&path, &text).unwrap();
    let (ok, _, err) = a.cli(&["pipeline", "create", path.to_str().unwrap()]);
    assert!(!ok && err.contains("must be Kafka topics"), "{err}");
    let text = text.replacen(
        "topic = \"customers\"",
        "kafka = { topic = \"customers\" }",
        1,
    );
    let path = dir.path().join("shared.toml");
    std::fs::write(&path, &text).unwrap();

    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let keys = 120;
    let initial = initial_customers(keys - 12);
    produce_keyed(&broker, "customers", &initial.iter().collect::<Vec<_>>());
    let mut next_order = 0;
    let first = timeline(&mut rng, 1, 3_000, keys, &mut next_order);
    let first_orders: Vec<&Ev> = first.iter().filter(|e| !e.table).collect();
    produce_orders(&broker, &first_orders);
    let mut history: Vec<Ev> = initial.clone();
    history.extend(first_orders.into_iter().cloned());
    a.ok(&["pipeline", "create", path.to_str().unwrap()]);
    // Every task has committed (so its table's bootstrap is decided: a task taken over
    // before its first commit would start over and read the table to its end then).
    // Each server reports the offsets of its own tasks.
    let own_committed = |server: &ServerProcess, name: &str| -> Vec<u64> {
        status(server)["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["server"] == name)
            .map(|t| t["committed_offset"].as_u64().unwrap())
            .collect()
    };
    wait_status_of(&b, "enrich-orders", "both servers to run tasks", |v| {
        servers_of(v).len() == 2
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut offsets = own_committed(&a, "a");
        offsets.extend(own_committed(&b, "b"));
        if offsets.len() == PARTITIONS as usize && offsets.iter().all(|&o| o > 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "every task to commit: {offsets:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    a.kill();
    // While B takes A's partitions: more orders, then (once they are in) table updates
    // timed after them, then (once those are in) orders that find the updated rows. Each
    // waits for the one before: records that arrive together in two Kafka inputs of a
    // running task merge in the order they are fetched, not always by time.
    let second = timeline(&mut rng, 1_000_000, 6_000, keys, &mut next_order);
    let third = part(
        &timeline(&mut rng, 2_000_000, 3_000, keys, &mut next_order),
        false,
    );
    let steps: [(&str, Vec<Ev>); 3] = [
        ("orders", part(&second, false)),
        ("customers", updates_from(&second, 1_050_000)),
        ("orders", third),
    ];
    let mut stalled = None;
    for (topic, events) in steps {
        produce_keyed(&broker, topic, &events.iter().collect::<Vec<_>>());
        history.extend(events);
        stalled = all_on_b_and_committed(&broker, &b, &history);
        if stalled.is_some() {
            break;
        }
    }
    let expected = expected_by_key(&history);
    let n: usize = expected.values().map(Vec::len).sum();
    let isolation = if strict && stalled.is_none() {
        "read_committed"
    } else {
        "read_uncommitted"
    };
    let outputs = kafka_outputs(&broker, isolation, n);
    drop(b);
    check_outputs(outputs, &expected, strict, stalled, 11);
}

/// Waits until B runs every partition and committed every record of `history`; `Some`
/// of the broker's known fault when it holds the pipeline back for good instead.
fn all_on_b_and_committed(broker: &Broker, b: &ServerProcess, history: &[Ev]) -> Option<String> {
    let orders = history.iter().filter(|e| !e.table).count() as u64;
    let rows = history.iter().filter(|e| e.table).count() as u64;
    let deadline = Instant::now() + Duration::from_secs(120) + STALL_PROOF;
    let mut stall = StallWatch::default();
    loop {
        let v = status(b);
        let on_b = v["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["server"] == "b");
        if on_b && committed(&v, "orders") == orders && committed(&v, "customers") == rows {
            return None;
        }
        if let Some(fault) = stall.check(broker, &v) {
            println!("cluster join: {fault}");
            return Some(fault);
        }
        assert!(
            Instant::now() < deadline,
            "B did not take every partition and finish ({orders} orders, {rows} rows): {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_savepoint_restored_into_a_join_with_a_kafka_sink_replays_from_every_input_s_position() {
    use crate::joins::jsonl;
    use crate::support::server::TestApp;
    use axum::http::StatusCode;
    let broker = Broker::start();
    broker.create_topic("orders", PARTITIONS as i32);
    broker.create_topic("enriched-orders", PARTITIONS as i32);
    let t = TestApp::with_kafka(&broker.brokers);
    t.push("enrich-orders", "enrich-orders").await;
    t.create_topic("customers", PARTITIONS).await;
    let dir = tempfile::tempdir().unwrap();
    let text = kafka_spec(dir.path(), true);
    let brokers = broker.brokers.clone();
    let read = |n: usize| {
        let b = Broker::attach(&brokers);
        tokio::task::spawn_blocking(move || {
            let out = b.read_committed("enriched-orders", n, Duration::from_secs(60));
            outputs_by_key(out.into_iter().map(|(_, _, k, v)| (k, v)))
        })
    };
    let total = |m: &BTreeMap<String, Vec<String>>| m.values().map(Vec::len).sum::<usize>();

    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let keys = 60;
    let mut history = initial_customers(keys - 6);
    t.produce("customers", &jsonl(&history.iter().collect::<Vec<_>>()))
        .await;
    let mut next_order = 0;
    let first = part(&timeline(&mut rng, 1, 900, keys, &mut next_order), false);
    produce_orders(&broker, &first.iter().collect::<Vec<_>>());
    history.extend(first);
    let (s, v) = t.create_pipeline(&text).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let before = expected_by_key(&history);
    assert_eq!(read(total(&before)).await.unwrap(), before);
    let (orders, rows) = (
        history.iter().filter(|e| !e.table).count() as u64,
        history.iter().filter(|e| e.table).count() as u64,
    );
    t.wait_for("enrich-orders", "everything committed", |v| {
        committed(v, "orders") == orders && committed(v, "customers") == rows
    })
    .await;
    let (s, m) = t
        .post_json("/v1/pipelines/enrich-orders/savepoints", String::new())
        .await;
    assert_eq!(s, StatusCode::CREATED, "{m}");
    let id = m["id"].as_str().unwrap().to_string();
    let saved = |input: &str| -> u64 {
        m["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|t| t["sources"].as_array().unwrap())
            .filter(|s| s["topic"] == input)
            .map(|s| s["offset"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(
        (saved("orders"), saved("customers")),
        (orders, rows),
        "the savepoint holds every input's position: {m}"
    );

    // More orders; once they are in, table updates timed after them; once those are
    // in, orders that find the updated rows. (Records arriving together in two inputs
    // of a running task merge in the order they are read, not always by time.)
    let chunk = timeline(&mut rng, 1_000_000, 1_800, keys, &mut next_order);
    let later = part(
        &timeline(&mut rng, 2_000_000, 900, keys, &mut next_order),
        false,
    );
    for events in [part(&chunk, false), updates_from(&chunk, 1_050_000), later] {
        let refs: Vec<&Ev> = events.iter().collect();
        if events[0].table {
            t.produce("customers", &jsonl(&refs)).await;
        } else {
            produce_orders(&broker, &refs);
        }
        history.extend(events);
        let orders = history.iter().filter(|e| !e.table).count() as u64;
        let rows = history.iter().filter(|e| e.table).count() as u64;
        t.wait_for("enrich-orders", "the records committed", |v| {
            committed(v, "orders") == orders && committed(v, "customers") == rows
        })
        .await;
    }
    let all = expected_by_key(&history);
    assert_eq!(read(total(&all)).await.unwrap(), all);

    // Back to the savepoint: both inputs are read again from its positions and the
    // table from its state, so the outputs after it repeat exactly.
    for (path, body) in [
        ("stop", String::new()),
        (
            "restore",
            serde_json::json!({ "savepoint": id }).to_string(),
        ),
        ("start", String::new()),
    ] {
        let (s, v) = t
            .post_json(&format!("/v1/pipelines/enrich-orders/{path}"), body)
            .await;
        assert_eq!(s, StatusCode::OK, "{path}: {v}");
    }
    let mut expected = all.clone();
    for (k, outs) in expected.iter_mut() {
        let from = before.get(k).map_or(0, Vec::len);
        let again: Vec<String> = outs[from..].to_vec();
        outs.extend(again);
    }
    let got = read(total(&expected)).await.unwrap();
    assert_eq!(total(&got), total(&expected));
    assert!(
        got == expected,
        "the outputs after the savepoint repeat exactly"
    );
}
