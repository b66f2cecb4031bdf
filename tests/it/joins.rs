//! Pipelines with several inputs: a stream–table join (`examples/enrich-orders`)
//! against a brute-force oracle, through `eddy run` (in one run, split across runs with
//! `--state-dir`, inner and left) and through the server with `kill -9` at random
//! points; refusals.

use crate::support::oracle::read_topic;
use crate::support::server::ServerProcess;
use crate::support::{eddy_output, guest, workspace_root};
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// One record of either input.
#[derive(Clone)]
pub(crate) struct Ev {
    pub(crate) table: bool,
    pub(crate) key: String,
    pub(crate) value: String,
    pub(crate) ts: i64,
}

pub(crate) fn jsonl(events: &[&Ev]) -> String {
    events
        .iter()
        .map(|e| json!({"key": e.key, "value": e.value, "timestamp": e.ts}).to_string() + "\n")
        .collect()
}

/// What the join emits for `events` in the order the task handles them, the table
/// starting as `table`: each order with its customer's row then (left: `null` when
/// none; inner: dropped).
pub(crate) fn oracle(
    table: &mut BTreeMap<String, String>,
    events: &[&Ev],
    left: bool,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in events {
        if e.table {
            if e.value.is_empty() {
                table.remove(&e.key);
            } else {
                table.insert(e.key.clone(), e.value.clone());
            }
            continue;
        }
        let row = table.get(&e.key).cloned();
        if row.is_none() && !left {
            continue;
        }
        let customer = row.unwrap_or_else(|| "null".into());
        out.push((
            e.key.clone(),
            format!("{{\"order\":{},\"customer\":{customer}}}", e.value),
        ));
    }
    out
}

/// A timeline of `n` records with distinct, increasing timestamps from `from`: about a
/// third of them customer updates (a fifth of those deletes), the rest orders, keys
/// over `keys` customers (some never in the table).
pub(crate) fn timeline(
    rng: &mut impl Rng,
    from: i64,
    n: usize,
    keys: usize,
    next_order: &mut u64,
) -> Vec<Ev> {
    (0..n)
        .map(|i| {
            let ts = from + i as i64 * 3;
            let key = format!("c{}", rng.random_range(0..keys));
            if rng.random_bool(0.33) {
                let value = if rng.random_bool(0.2) {
                    String::new()
                } else {
                    format!("{{\"name\":\"{key}\",\"v\":{i}}}")
                };
                Ev {
                    table: true,
                    key,
                    value,
                    ts,
                }
            } else {
                *next_order += 1;
                let value = format!("{{\"id\":{next_order}}}");
                Ev {
                    table: false,
                    key,
                    value,
                    ts,
                }
            }
        })
        .collect()
}

/// The table's records of `events` (or the stream's).
pub(crate) fn part(events: &[Ev], table: bool) -> Vec<Ev> {
    events
        .iter()
        .filter(|e| e.table == table)
        .cloned()
        .collect()
}

/// The table's records of `events`, timed one millisecond apart from `from` (after
/// the stream's records they come with).
pub(crate) fn updates_from(events: &[Ev], from: i64) -> Vec<Ev> {
    let mut updates = part(events, true);
    for (i, u) in updates.iter_mut().enumerate() {
        u.ts = from + i as i64;
    }
    updates
}

pub(crate) fn initial_customers(keys: usize) -> Vec<Ev> {
    (0..keys)
        .map(|k| Ev {
            table: true,
            key: format!("c{k}"),
            value: format!("{{\"name\":\"c{k}\",\"v\":0}}"),
            ts: 0,
        })
        .collect()
}

pub(crate) fn spec(dir: &Path, join: &str) -> std::path::PathBuf {
    let text =
        std::fs::read_to_string(workspace_root().join("examples/enrich-orders/pipeline.toml"))
            .unwrap()
            .replace("join = \"inner\"", &format!("join = \"{join}\""));
    let path = dir.join(format!("pipeline-{join}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// `eddy run` over the two files; the main output as (key, value).
fn run(
    spec: &Path,
    orders: &Path,
    customers: &Path,
    out: &Path,
    state: Option<&Path>,
) -> Vec<(String, String)> {
    let op = format!("enrich-orders={}", guest("enrich-orders").display());
    run_with(spec, &op, orders, customers, out, state)
}

/// `eddy run` with `--operator OP` (`NAME=FILE`).
fn run_with(
    spec: &Path,
    op: &str,
    orders: &Path,
    customers: &Path,
    out: &Path,
    state: Option<&Path>,
) -> Vec<(String, String)> {
    let inputs = [
        format!("orders={}", orders.display()),
        format!("customers={}", customers.display()),
    ];
    let mut extra = vec!["--operator", op];
    let state = state.map(|s| s.display().to_string());
    if let Some(s) = &state {
        extra.extend(["--state-dir", s]);
    }
    run_spec(spec, &inputs, out, &extra)
}

/// `eddy run SPEC` with `inputs` (`NAME=FILE` each) and `extra` arguments, writing `out`:
/// each output's key (empty when keyless) and value.
pub(crate) fn run_spec(
    spec: &Path,
    inputs: &[String],
    out: &Path,
    extra: &[&str],
) -> Vec<(String, String)> {
    let mut args = vec![
        "run",
        spec.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ];
    for i in inputs {
        args.extend(["--input", i.as_str()]);
    }
    args.extend(extra);
    let (ok, _, stderr) = eddy_output(&args);
    assert!(ok, "{stderr}");
    read_outputs(out)
}

/// The key (empty when keyless) and value of each record of a JSON-lines file.
pub(crate) fn read_outputs(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let text = |f: &str| v[f].as_str().unwrap_or_default().to_string();
            (text("key"), text("value"))
        })
        .collect()
}

/// Writes `records` (key, value, time; an empty key: none) as input `name`'s file in
/// `dir`; answers `NAME=FILE` for `eddy run`.
fn input_file(dir: &Path, name: &str, records: &[(&str, &str, i64)]) -> String {
    let text: String = records
        .iter()
        .map(|(k, v, ts)| {
            let mut r = json!({"value": v, "timestamp": ts});
            if !k.is_empty() {
                r["key"] = json!(k);
            }
            r.to_string() + "\n"
        })
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    format!("{name}={}", path.display())
}

pub(crate) fn write(dir: &Path, name: &str, events: &[&Ev]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, jsonl(events)).unwrap();
    path
}

#[test]
fn a_stream_table_join_matches_the_oracle_in_one_run_and_split_across_runs() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let keys = 30;
    let mut next_order = 0;
    let initial = initial_customers(keys - 5);
    let first = timeline(&mut rng, 1, 400, keys, &mut next_order);
    let second = timeline(&mut rng, 5_000, 600, keys, &mut next_order);
    for join in ["inner", "left"] {
        let left = join == "left";
        let spec = spec(d, join);

        // One run: the whole table is read first (bootstrap), so every order joins with
        // the table's final rows.
        let customers: Vec<Ev> = initial
            .iter()
            .cloned()
            .chain(part(&first, true))
            .chain(part(&second, true))
            .collect();
        let orders: Vec<Ev> = part(&first, false)
            .into_iter()
            .chain(part(&second, false))
            .collect();
        let c = write(
            d,
            "customers-all.jsonl",
            &customers.iter().collect::<Vec<_>>(),
        );
        let o = write(d, "orders-all.jsonl", &orders.iter().collect::<Vec<_>>());
        let got = run(&spec, &o, &c, &d.join(format!("one-{join}.jsonl")), None);
        let mut table = BTreeMap::new();
        oracle(&mut table, &customers.iter().collect::<Vec<_>>(), left);
        let expected = oracle(&mut table, &orders.iter().collect::<Vec<_>>(), left);
        assert!(expected.len() > 300, "{}", expected.len());
        assert_eq!(got, expected, "{join}, one run");

        // Split: the first run bootstraps the initial table and joins the first orders;
        // the second (same state) merges updates and orders by event time, a table
        // update first on a tie.
        let state = d.join(format!("state-{join}"));
        let c1 = write(d, "customers-1.jsonl", &initial.iter().collect::<Vec<_>>());
        let f_orders = part(&first, false);
        let o1 = write(d, "orders-1.jsonl", &f_orders.iter().collect::<Vec<_>>());
        let mut got = run(&spec, &o1, &c1, &d.join("split-1.jsonl"), Some(&state));
        // The first part's updates go with the second run: they and its orders arrive
        // together, interleaved by time.
        let rest: Vec<Ev> = part(&first, true)
            .into_iter()
            .chain(second.iter().cloned())
            .collect();
        let c2: Vec<&Ev> = rest.iter().filter(|e| e.table).collect();
        let o2: Vec<&Ev> = rest.iter().filter(|e| !e.table).collect();
        let c2f = write(d, "customers-2.jsonl", &c2);
        let o2f = write(d, "orders-2.jsonl", &o2);
        got.extend(run(
            &spec,
            &o2f,
            &c2f,
            &d.join("split-2.jsonl"),
            Some(&state),
        ));

        let mut table = BTreeMap::new();
        oracle(&mut table, &initial.iter().collect::<Vec<_>>(), left);
        let mut expected = oracle(&mut table, &f_orders.iter().collect::<Vec<_>>(), left);
        let mut merged: Vec<&Ev> = rest.iter().collect();
        merged.sort_by_key(|e| (e.ts, !e.table));
        expected.extend(oracle(&mut table, &merged, left));
        assert_eq!(got.len(), expected.len(), "{join}, split");
        assert_eq!(got, expected, "{join}, split across two runs");
    }
}

#[test]
fn eddy_run_refuses_inputs_the_spec_does_not_name() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(dir.path(), "inner");
    let file = dir.path().join("x.jsonl");
    std::fs::write(&file, "{\"value\":\"a\"}\n").unwrap();
    let f = file.to_str().unwrap();
    let out = dir.path().join("out.jsonl");
    let o = out.to_str().unwrap();
    let op = format!("enrich-orders={}", guest("enrich-orders").display());
    for (inputs, says) in [
        (
            vec![format!("payments={f}"), format!("customers={f}")],
            "no input called \"payments\" (its inputs: orders, customers)",
        ),
        (
            vec![f.to_string()],
            "several inputs (orders, customers): write --input NAME=FILE",
        ),
        (
            vec![format!("orders={f}")],
            "input \"customers\" has no file",
        ),
        (
            vec![
                format!("orders={f}"),
                format!("orders={f}"),
                format!("customers={f}"),
            ],
            "given twice",
        ),
    ] {
        let mut args = vec![
            "run",
            spec.to_str().unwrap(),
            "--operator",
            &op,
            "--output",
            o,
        ];
        for i in &inputs {
            args.extend(["--input", i]);
        }
        let (ok, _, stderr) = eddy_output(&args);
        assert!(!ok && stderr.contains(says), "{inputs:?}: {stderr}");
    }
}

fn produce(server: &ServerProcess, dir: &Path, topic: &str, name: &str, events: &[&Ev]) {
    let file = write(dir, name, events);
    server.ok(&["topic", "produce", topic, "--file", file.to_str().unwrap()]);
}

fn status(server: &ServerProcess) -> serde_json::Value {
    serde_json::from_str(&server.ok(&["pipeline", "status", "enrich-orders", "--json"])).unwrap()
}

#[test]
fn kill_9_during_both_inputs_loses_and_duplicates_nothing() {
    let seed: u64 = std::env::var("EDDY_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    println!("join crash test seed {seed} (rerun with EDDY_CRASH_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = ServerProcess::start(&data, &[]);
    server.ok(&[
        "operator",
        "push",
        "enrich-orders",
        guest("enrich-orders").to_str().unwrap(),
    ]);
    server.ok(&["topic", "create", "orders", "--partitions", "3"]);
    server.ok(&["topic", "create", "customers", "--partitions", "3"]);
    // The table exists before the pipeline: the first start reads it whole.
    let keys = 400;
    let initial = initial_customers(keys - 40);
    produce(
        &server,
        dir.path(),
        "customers",
        "customers-0.jsonl",
        &initial.iter().collect::<Vec<_>>(),
    );
    let mut next_order = 0;
    let backlog = timeline(&mut rng, 1, 60_000, keys, &mut next_order);
    let orders: Vec<&Ev> = backlog.iter().filter(|e| !e.table).collect();
    produce(&server, dir.path(), "orders", "orders-0.jsonl", &orders);
    let spec = spec(dir.path(), "left");
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
    // From here on records arrive in time order across both inputs: each round's orders,
    // then its table updates, timed after them (and before the next round's orders). So
    // the merge by event time handles them in time order, whatever the kills cut.
    let mut history: Vec<Ev> = initial.clone();
    history.extend(backlog.iter().filter(|e| !e.table).cloned());
    let mut server = server;
    let mut mid_stream = 0;
    let kills = 10;
    let mut from = 1_000_000i64;
    for round in 0..kills {
        // Each round's records wait while the pipeline is stopped, so the kill, a moment
        // after the start, cuts into a backlog of both inputs.
        server.ok(&["pipeline", "stop", "enrich-orders"]);
        let chunk = timeline(&mut rng, from, 150_000, keys, &mut next_order);
        let chunk: Vec<Ev> = part(&chunk, false)
            .into_iter()
            .chain(updates_from(&chunk, from + 500_000))
            .collect();
        from += 700_000;
        let updates: Vec<&Ev> = chunk.iter().filter(|e| e.table).collect();
        let orders: Vec<&Ev> = chunk.iter().filter(|e| !e.table).collect();
        produce(
            &server,
            dir.path(),
            "orders",
            &format!("o-{round}.jsonl"),
            &orders,
        );
        produce(
            &server,
            dir.path(),
            "customers",
            &format!("c-{round}.jsonl"),
            &updates,
        );
        history.extend(chunk);
        server.ok(&["pipeline", "start", "enrich-orders"]);
        std::thread::sleep(Duration::from_millis(rng.random_range(0..60)));
        let lag: u64 = status(&server)["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["lag"].as_u64().unwrap())
            .sum();
        println!("round {round}: kill -9 with {lag} records not yet committed");
        mid_stream += usize::from(lag > 0);
        server.kill();
        server = ServerProcess::start(&data, &[]);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v = status(&server);
        assert_eq!(v["state"], "running", "{v}");
        if v["tasks"].as_array().unwrap().iter().all(|t| t["lag"] == 0) {
            break;
        }
        assert!(Instant::now() < deadline, "did not catch up: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    server.stop();
    assert!(
        mid_stream * 2 >= kills,
        "only {mid_stream} of {kills} kills cut into work"
    );

    let expected = expected_by_key(&history);
    let actual = outputs_by_key(
        read_topic(&data, "enriched-orders")
            .into_iter()
            .map(|(_, _, r)| (r.key, r.value)),
    );
    let n: usize = expected.values().map(Vec::len).sum();
    let m: usize = actual.values().map(Vec::len).sum();
    assert_eq!(m, n, "outputs: {n} expected, {m} found");
    assert!(actual == expected, "the output differs from the oracle");
}

/// Per customer (a partition holds whole customers), the join's outputs in order: the
/// oracle (left join) over every record in time order, a table's first on a tie.
pub(crate) fn expected_by_key(history: &[Ev]) -> BTreeMap<String, Vec<String>> {
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut table = BTreeMap::new();
    let mut ordered: Vec<&Ev> = history.iter().collect();
    ordered.sort_by_key(|e| (e.ts, !e.table));
    for (k, v) in oracle(&mut table, &ordered, true) {
        expected.entry(k).or_default().push(v);
    }
    expected
}

/// A sink's records (key, value) as each key's values in order.
pub(crate) fn outputs_by_key(
    records: impl IntoIterator<Item = (Option<Vec<u8>>, Vec<u8>)>,
) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in records {
        let key = String::from_utf8(k.expect("a keyed output")).unwrap();
        out.entry(key)
            .or_default()
            .push(String::from_utf8(v).unwrap());
    }
    out
}

/// The records of `input` the tasks in a pipeline's `status` committed, summed over
/// their sources.
pub(crate) fn committed(status: &serde_json::Value, input: &str) -> u64 {
    status["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["sources"].as_array().cloned().unwrap_or_default())
        .filter(|s| s["input"] == input)
        .map(|s| s["committed_offset"].as_u64().unwrap())
        .sum()
}

#[test]
fn a_c_operator_sees_the_input_of_each_record() {
    let commands = crate::languages::built("tests/fixtures/c-commands");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let spec = d.join("inputs.toml");
    std::fs::write(
        &spec,
        format!(
            "name = \"inputs\"\n[[inputs]]\nname = \"clicks\"\ntopic = \"clicks\"\n\
             [[inputs]]\nname = \"pages\"\ntopic = \"pages\"\nkind = \"table\"\n\
             [[operators]]\nname = \"c\"\npath = {commands:?}\n"
        ),
    )
    .unwrap();
    let clicks = input_file(d, "clicks", &[("c1", "input", 5), ("c2", "input", 20)]);
    let pages = input_file(d, "pages", &[("p1", "input", 10), ("p2", "input", 30)]);
    let got = run_spec(&spec, &[clicks, pages], &d.join("out.jsonl"), &[]);
    let got: Vec<String> = got.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    // The table is read first (a first start), then the stream.
    assert_eq!(got, ["p1=pages", "p2=pages", "c1=clicks", "c2=clicks"]);
}

const ENRICH: &str = "name = \"eo\"\n[[inputs]]\nname = \"orders\"\ntopic = \"orders\"\n[[inputs]]\nname = \"customers\"\ntopic = \"customers\"\nkind = \"table\"\n[sink]\ntopic = \"enriched\"\n[[operators]]\nname = \"enrich-orders\"\nconfig = { join = \"left\" }\n[settings]\nprobation_records = 20\nprobation_ms = 0\n";

fn records_jsonl(events: &[Ev]) -> String {
    jsonl(&events.iter().collect::<Vec<_>>())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_savepoint_keeps_every_input_s_position_and_refusals_leave_nothing() {
    use crate::support::server::TestApp;
    use axum::http::{Method, StatusCode};
    let t = TestApp::new();
    t.push("enrich-orders", "enrich-orders").await;
    t.create_topic("orders", 2).await;
    t.create_topic("customers", 2).await;
    t.create_topic("few", 1).await;

    // Refused before anything is created, with the reason.
    let bad = [
        (
            // A Kafka input on a server without brokers.
            ENRICH.replace("topic = \"customers\"", "kafka = { topic = \"customers\" }"),
            "no Kafka brokers",
        ),
        (
            ENRICH.replace("topic = \"customers\"", "topic = \"few\""),
            "co-partitioned",
        ),
        (
            ENRICH.replace("topic = \"customers\"", "topic = \"nope\""),
            "nope",
        ),
        (
            format!("[source]\ntopic = \"orders\"\n{ENRICH}")
                .replace("name = \"eo\"\n", "")
                .replacen("[source]", "name = \"eo\"\n[source]", 1),
            "not both",
        ),
        (
            ENRICH.replace(
                "kind = \"table\"",
                "kind = \"table\"\n[[inputs]]\nname = \"orders\"\ntopic = \"few\"",
            ),
            "appears twice",
        ),
    ];
    for (spec, says) in &bad {
        let (s, e) = t.create_pipeline(spec).await;
        assert!(s.is_client_error(), "{spec}: {s} {e}");
        assert!(
            e["detail"].as_str().unwrap_or_default().contains(says),
            "{says}: {e}"
        );
        let (s, _) = t.get("/v1/pipelines/eo").await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{spec}: nothing was created");
    }
    // A broadcast input may have any number of partitions.
    let broadcast = ENRICH
        .replace(
            "topic = \"customers\"\nkind = \"table\"",
            "topic = \"few\"\nkind = \"broadcast\"",
        )
        .replace("name = \"eo\"", "name = \"eo-broadcast\"")
        .replace("topic = \"enriched\"", "topic = \"enriched-broadcast\"");
    let (s, e) = t.create_pipeline(&broadcast).await;
    assert_eq!(s, StatusCode::CREATED, "{e}");

    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut next_order = 0;
    let initial = initial_customers(20);
    let first = timeline(&mut rng, 1, 300, 24, &mut next_order);
    let second = timeline(&mut rng, 10_000, 300, 24, &mut next_order);
    t.produce("customers", &records_jsonl(&initial)).await;
    let (s, e) = t.create_pipeline(ENRICH).await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
    // Orders, then the updates timed after them: handled in time order.
    let updates = updates_from(&first, 5_000);
    t.produce("orders", &records_jsonl(&part(&first, false)))
        .await;
    t.produce("customers", &records_jsonl(&updates)).await;
    t.wait_caught_up("eo").await;
    let (s, m) = t
        .json(
            Method::POST,
            "/v1/pipelines/eo/savepoints",
            axum::body::Body::empty(),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{m}");
    let id = m["id"].as_str().unwrap().to_string();
    let sources: Vec<&serde_json::Value> = m["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["sources"].as_array().unwrap())
        .collect();
    assert_eq!(sources.len(), 4, "two sources per task: {m}");

    let late = updates_from(&second, 20_000);
    t.produce("orders", &records_jsonl(&part(&second, false)))
        .await;
    t.produce("customers", &records_jsonl(&late)).await;
    let status = t.wait_caught_up("eo").await;
    let (in_total, end_total): (u64, u64) =
        status["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .fold((0, 0), |(a, b), t| {
                (
                    a + t["events_in"].as_u64().unwrap(),
                    b + t["end_offset"].as_u64().unwrap(),
                )
            });
    for task in status["tasks"].as_array().unwrap() {
        let sources = task["sources"].as_array().unwrap();
        let names: Vec<&str> = sources
            .iter()
            .map(|s| s["input"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["orders", "customers"], "{task}");
        for s in sources {
            assert_eq!(s["partition"], task["partition"], "{s}");
            assert_eq!(
                (s["lag"].as_u64(), s["committed_offset"] == s["end_offset"]),
                (Some(0), true),
                "{s}"
            );
        }
        let sum: u64 = sources
            .iter()
            .map(|s| s["committed_offset"].as_u64().unwrap())
            .sum();
        assert_eq!(task["committed_offset"].as_u64(), Some(sum), "{task}");
        assert!(
            sources[0]["watermark"].as_i64().unwrap() >= 10_000,
            "{task}"
        );
    }
    let all = initial.len() + first.len() + second.len();
    assert_eq!(
        (in_total as usize, end_total as usize),
        (all, all),
        "offsets and lag sum the task's sources"
    );
    let after = t.records("enriched").await;

    // The oracle, per key (a task holds whole keys, and its records keep their order):
    // the initial table, the first orders and their updates, then the second part.
    let mut table = BTreeMap::new();
    oracle(&mut table, &initial.iter().collect::<Vec<_>>(), true);
    let mut first_part: Vec<Ev> = part(&first, false);
    first_part.extend(updates.clone());
    let mut second_part: Vec<Ev> = part(&second, false);
    second_part.extend(late.clone());
    let first_out = oracle(&mut table, &first_part.iter().collect::<Vec<_>>(), true);
    let second_out = oracle(&mut table, &second_part.iter().collect::<Vec<_>>(), true);
    let expected = |parts: &[&[(String, String)]]| {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in parts.iter().flat_map(|p| p.iter()) {
            m.entry(k.clone()).or_default().push(v.clone());
        }
        m
    };
    let by_key = |records: &[serde_json::Value]| {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in records {
            m.entry(r["key"].as_str().unwrap().to_string())
                .or_default()
                .push(r["value"].as_str().unwrap().to_string());
        }
        m
    };
    assert_eq!(by_key(&after), expected(&[&first_out, &second_out]));

    // Restored to the savepoint, the pipeline reads the second part again (not the
    // table from its start, nor the orders) and emits it again, the same.
    t.json(
        Method::POST,
        "/v1/pipelines/eo/stop",
        axum::body::Body::empty(),
        &[],
    )
    .await;
    let (s, r) = t
        .post_json(
            "/v1/pipelines/eo/restore",
            format!("{{\"savepoint\":\"{id}\"}}"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    t.json(
        Method::POST,
        "/v1/pipelines/eo/start",
        axum::body::Body::empty(),
        &[],
    )
    .await;
    t.wait_caught_up("eo").await;
    let again = t.records("enriched").await;
    assert_eq!(
        by_key(&again),
        expected(&[&first_out, &second_out, &second_out]),
        "the replay emits what the second part did"
    );

    // A hot upgrade under input: the join turns inner (a new config for version 1). The
    // orders after it join the same rows; those without one are dropped now.
    let (s, u) = t
        .start_upgrade("eo", "enrich-orders", 1, Some(json!({"join": "inner"})))
        .await;
    assert_eq!(s, StatusCode::OK, "{u}");
    let third: Vec<Ev> = (0..200)
        .map(|i| Ev {
            table: false,
            key: format!("c{}", i % 30),
            value: format!("{{\"id\":{}}}", 10_000 + i),
            ts: 30_000 + i as i64,
        })
        .collect();
    t.produce("orders", &records_jsonl(&third)).await;
    let outcome = t.upgrade_outcome("eo").await;
    assert_eq!(outcome["result"], "succeeded", "{outcome}");
    t.wait_caught_up("eo").await;
    let third_out = oracle(&mut table, &third.iter().collect::<Vec<_>>(), false);
    assert!(!third_out.is_empty() && third_out.len() < third.len());
    assert_eq!(
        by_key(&t.records("enriched").await),
        expected(&[&first_out, &second_out, &second_out, &third_out]),
        "the upgraded join emitted exactly the inner join's records"
    );

    // A shadow run is refused for a pipeline with several inputs (canaries work).
    t.push("enrich-orders", "wordcount").await;
    let (s, e) = t
        .post_json(
            "/v1/pipelines/eo/shadow",
            "{\"operator\":\"enrich-orders\",\"version\":2}".to_string(),
        )
        .await;
    assert!(s.is_client_error(), "{s} {e}");
    assert!(
        e["detail"].as_str().unwrap_or_default().contains("canary"),
        "{e}"
    );
}

#[test]
fn the_watermark_is_the_lowest_of_the_stream_inputs_and_tables_do_not_hold_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let spec = d.join("wm.toml");
    std::fs::write(
        &spec,
        format!(
            "name = \"wm\"\n[[inputs]]\nname = \"a\"\ntopic = \"a\"\n[[inputs]]\nname = \"b\"\ntopic = \"b\"\n\
             [[inputs]]\nname = \"t\"\ntopic = \"t\"\nkind = \"table\"\n\
             [[operators]]\nname = \"probe\"\npath = {:?}\n[settings]\nbatch_size = 1\n",
            guest("fixture-probe")
        ),
    )
    .unwrap();
    let w = "watermark";
    let inputs = [
        input_file(d, "a", &[("a100", w, 100), ("a300", w, 300)]),
        input_file(d, "b", &[("b200", w, 200), ("b400", w, 400)]),
        input_file(d, "t", &[("t150", w, 150), ("t9000", w, 9_000)]),
    ];
    let got: Vec<String> = run_spec(&spec, &inputs, &d.join("out.jsonl"), &[])
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    // In time order (the table first: t150, t9000, a100, b200, a300, b400), each record
    // sees the watermark before it: the lowest of a's and b's, whatever the table's times
    // (its records are versions of rows, not the clock).
    let min = i64::MIN.to_string();
    assert_eq!(got, [&min, &min, &min, &min, "100", "200"]);
}

#[test]
fn a_merge_passes_every_input_s_records_on_in_time_order() {
    // A merge needs no helper: an operator that emits each record it gets.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let spec = d.join("merge.toml");
    std::fs::write(
        &spec,
        format!(
            "name = \"merge\"\n[[inputs]]\nname = \"eu\"\ntopic = \"eu\"\n[[inputs]]\nname = \"us\"\ntopic = \"us\"\n\
             [[operators]]\nname = \"probe\"\npath = {:?}\n",
            guest("fixture-probe")
        ),
    )
    .unwrap();
    let inputs = [
        input_file(
            d,
            "eu",
            &[("", "e1", 1), ("", "e3", 3), ("", "e4", 4), ("", "e9", 9)],
        ),
        input_file(d, "us", &[("", "u2", 2), ("", "u5", 5), ("", "u6", 6)]),
    ];
    let got: Vec<String> = run_spec(&spec, &inputs, &d.join("out.jsonl"), &[])
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(got, ["e1", "u2", "e3", "e4", "u5", "u6", "e9"]);
}

#[test]
fn the_python_example_joins_as_the_rust_one() {
    let component = crate::languages::built("examples/enrich-orders-python");
    let dir = tempfile::tempdir().unwrap();
    let example = workspace_root().join("examples/enrich-orders");
    let spec = dir.path().join("pipeline.toml");
    std::fs::copy(
        workspace_root().join("examples/enrich-orders-python/pipeline.toml"),
        &spec,
    )
    .unwrap();
    let out = dir.path().join("out.jsonl");
    let got = run_with(
        &spec,
        &format!("enrich-orders-python={}", component.display()),
        &example.join("orders.jsonl"),
        &example.join("customers.jsonl"),
        &out,
        None,
    );
    let rust = run(
        &example.join("pipeline.toml"),
        &example.join("orders.jsonl"),
        &example.join("customers.jsonl"),
        &dir.path().join("rust.jsonl"),
        None,
    );
    assert_eq!(got, rust);
    let expected = std::fs::read_to_string(example.join("expected.jsonl")).unwrap();
    assert_eq!(got.len(), expected.lines().count());
}
