//! Inputs that are not co-partitioned, read with `repartition = true`: every task reads
//! every partition of such an input and keeps the records whose key is its own. The
//! join of `examples/enrich-orders` with a customer table of another partition count,
//! through `kill -9`, against the oracle; and a merge of two streams of different
//! partition counts, every record once and each key's records in order.

use crate::joins::{
    Ev, committed, expected_by_key, initial_customers, outputs_by_key, part, spec, timeline,
    updates_from, write,
};
use crate::support::guest;
use crate::support::oracle::read_topic;
use crate::support::server::ServerProcess;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

fn produce(server: &ServerProcess, dir: &Path, topic: &str, name: &str, events: &[&Ev]) {
    let file = write(dir, name, events);
    server.ok(&["topic", "produce", topic, "--file", file.to_str().unwrap()]);
}

fn status(server: &ServerProcess, pipeline: &str) -> Value {
    serde_json::from_str(&server.ok(&["pipeline", "status", pipeline, "--json"])).unwrap()
}

fn wait_until(server: &ServerProcess, pipeline: &str, done: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v = status(server, pipeline);
        if v["state"] == "running" && done(&v) {
            return;
        }
        assert!(Instant::now() < deadline, "waiting: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_table_of_another_partition_count_joins_as_the_oracle_through_kill_9() {
    let seed: u64 = std::env::var("EDDY_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    println!("repartitioned join seed {seed} (rerun with EDDY_CRASH_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = ServerProcess::start(&data, &[]);
    server.ok(&[
        "operator",
        "push",
        "enrich-orders",
        guest("enrich-orders").to_str().unwrap(),
    ]);
    server.ok(&["topic", "create", "orders", "--partitions", "3"]);
    server.ok(&["topic", "create", "customers", "--partitions", "2"]);
    let text = std::fs::read_to_string(spec(dir.path(), "left")).unwrap();
    let spec_path = dir.path().join("repartitioned.toml");
    // Without the flag, refused with the fix; with it, created.
    std::fs::write(&spec_path, &text).unwrap();
    let (ok, _, err) = server.cli(&["pipeline", "create", spec_path.to_str().unwrap()]);
    assert!(!ok && err.contains("repartition = true"), "{err}");
    let text = text.replace("kind = \"table\"", "kind = \"table\"\nrepartition = true");
    std::fs::write(&spec_path, &text).unwrap();

    let keys = 150;
    let initial = initial_customers(keys - 15);
    produce(
        &server,
        dir.path(),
        "customers",
        "c-0.jsonl",
        &initial.iter().collect::<Vec<_>>(),
    );
    let mut next_order = 0;
    let backlog = timeline(&mut rng, 1, 4_000, keys, &mut next_order);
    let orders: Vec<&Ev> = backlog.iter().filter(|e| !e.table).collect();
    produce(&server, dir.path(), "orders", "o-0.jsonl", &orders);
    let mut history: Vec<Ev> = initial.clone();
    history.extend(orders.into_iter().cloned());
    server.ok(&["pipeline", "create", spec_path.to_str().unwrap()]);
    let v = status(&server, "enrich-orders");
    for t in v["tasks"].as_array().unwrap() {
        let customers = t["sources"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["input"] == "customers")
            .count();
        assert_eq!(customers, 2, "every task reads both partitions: {t}");
    }
    wait_until(&server, "enrich-orders", |v| committed(v, "orders") > 0);
    let mut from = 1_000_000i64;
    for round in 0..3 {
        server.ok(&["pipeline", "stop", "enrich-orders"]);
        let chunk = timeline(&mut rng, from, 8_000, keys, &mut next_order);
        let chunk: Vec<Ev> = part(&chunk, false)
            .into_iter()
            .chain(updates_from(&chunk, from + 50_000))
            .collect();
        from += 100_000;
        let orders: Vec<&Ev> = chunk.iter().filter(|e| !e.table).collect();
        let updates: Vec<&Ev> = chunk.iter().filter(|e| e.table).collect();
        produce(
            &server,
            dir.path(),
            "orders",
            &format!("o-{}.jsonl", round + 1),
            &orders,
        );
        produce(
            &server,
            dir.path(),
            "customers",
            &format!("c-{}.jsonl", round + 1),
            &updates,
        );
        history.extend(chunk);
        server.ok(&["pipeline", "start", "enrich-orders"]);
        std::thread::sleep(Duration::from_millis(rng.random_range(0..80)));
        server.kill();
        server = ServerProcess::start(&data, &[]);
    }
    let orders = history.iter().filter(|e| !e.table).count() as u64;
    let rows = history.iter().filter(|e| e.table).count() as u64;
    // Each of the 3 tasks reads the whole table.
    wait_until(&server, "enrich-orders", |v| {
        committed(v, "orders") == orders && committed(v, "customers") == 3 * rows
    });
    server.stop();

    let expected = expected_by_key(&history);
    let actual = outputs_by_key(
        read_topic(&data, "enriched-orders")
            .into_iter()
            .map(|(_, _, r)| (r.key, r.value)),
    );
    let n: usize = expected.values().map(Vec::len).sum();
    let m: usize = actual.values().map(Vec::len).sum();
    assert_eq!(m, n, "seed {seed}: outputs: {n} expected, {m} found");
    assert!(
        actual == expected,
        "seed {seed}: the output differs from the oracle"
    );
}

#[test]
fn a_merge_of_streams_of_different_partition_counts_passes_each_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = ServerProcess::start(&data, &[]);
    server.ok(&[
        "operator",
        "push",
        "probe",
        guest("fixture-probe").to_str().unwrap(),
    ]);
    server.ok(&["topic", "create", "eu", "--partitions", "3"]);
    server.ok(&["topic", "create", "us", "--partitions", "2"]);
    let spec = dir.path().join("merge.toml");
    std::fs::write(
        &spec,
        "name = \"merge\"\n[[inputs]]\nname = \"eu\"\ntopic = \"eu\"\n[[inputs]]\nname = \"us\"\ntopic = \"us\"\nrepartition = true\n[sink]\ntopic = \"merged\"\n[[operators]]\nname = \"probe\"\nversion = \"latest\"\n",
    )
    .unwrap();
    // Each key's records, in time order, spread over both inputs.
    let mut eu = Vec::new();
    let mut us = Vec::new();
    for i in 0..3_000i64 {
        let e = Ev {
            table: false,
            key: format!("k{}", i % 97),
            value: format!("v{i}"),
            ts: 1_000 + i,
        };
        if i % 3 == 0 { us.push(e) } else { eu.push(e) }
    }
    produce(
        &server,
        dir.path(),
        "eu",
        "eu.jsonl",
        &eu.iter().collect::<Vec<_>>(),
    );
    produce(
        &server,
        dir.path(),
        "us",
        "us.jsonl",
        &us.iter().collect::<Vec<_>>(),
    );
    server.ok(&["pipeline", "create", spec.to_str().unwrap()]);
    wait_until(&server, "merge", |v| {
        committed(v, "eu") == eu.len() as u64 && committed(v, "us") == 3 * us.len() as u64
    });
    server.stop();
    let got = outputs_by_key(
        read_topic(&data, "merged")
            .into_iter()
            .map(|(_, _, r)| (r.key, r.value)),
    );
    let mut want: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut all: Vec<&Ev> = eu.iter().chain(&us).collect();
    all.sort_by_key(|e| e.ts);
    for e in all {
        want.entry(e.key.clone()).or_default().push(e.value.clone());
    }
    assert_eq!(got, want, "every record once, each key's in time order");
}
