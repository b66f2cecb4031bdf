//! Event time on a real server: one-minute windows over out-of-order clicks close
//! exactly once through `kill -9` at random points and a hot upgrade under input, and
//! equal a brute-force computation over the sorted clicks.

use crate::support::guest;
use crate::support::oracle::read_topic;
use crate::support::server::ServerProcess;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const SPEC: &str = r#"
name = "clicks"
[source]
topic = "clicks"
[sink]
topic = "page-minutes"
[[operators]]
name = "clicks-per-minute"
version = "latest"
[settings]
max_out_of_orderness = "10s"
late_events = "drop"
on_error = "skip"
batch_size = 32
commit_interval_ms = 20
probation_records = 200
"#;

const BOUND: i64 = 10_000;
const MINUTE: i64 = 60_000;

/// `n` clicks on 20 pages from `t0`, out of order within about `BOUND` (a few further:
/// those are late), as JSON lines.
fn clicks(rng: &mut rand::rngs::StdRng, n: usize, t0: i64) -> Vec<(String, i64)> {
    let mut t = t0;
    let mut out: Vec<(String, i64)> = (0..n)
        .map(|_| {
            t += rng.random_range(0..50);
            (format!("page-{}", rng.random_range(0..20)), t)
        })
        .collect();
    for _ in 0..n {
        let i = rng.random_range(0..n - 1);
        if out[i + 1].1 - out[i].1 < BOUND {
            out.swap(i, i + 1);
        }
    }
    out
}

fn jsonl(clicks: &[(String, i64)]) -> String {
    clicks
        .iter()
        .map(|(page, ts)| format!("{{\"key\":\"{page}\",\"value\":\"c\",\"timestamp\":{ts}}}\n"))
        .collect()
}

/// Clicks as JSON lines into one partition.
fn jsonl_to(partition: u32, clicks: &[(String, i64)]) -> String {
    clicks
        .iter()
        .map(|(page, ts)| {
            format!("{{\"key\":\"{page}\",\"value\":\"c\",\"timestamp\":{ts},\"partition\":{partition}}}\n")
        })
        .collect()
}

fn produce(server: &ServerProcess, dir: &Path, name: &str, text: &str) {
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    server.ok(&[
        "topic",
        "produce",
        "clicks",
        "--file",
        file.to_str().unwrap(),
    ]);
}

/// The windows a failure-free task emits: clicks below the watermark (largest time
/// seen minus the bound) dropped record by record, the rest counted per page and minute.
fn brute_force(clicks: &[(String, i64)]) -> Vec<(String, i64, i64, i64)> {
    per_minute(on_time(clicks))
}

/// The clicks a task keeps: those below its watermark when they arrive are dropped.
fn on_time(clicks: &[(String, i64)]) -> Vec<&(String, i64)> {
    let mut watermark = i64::MIN;
    let mut kept = Vec::new();
    for click in clicks {
        if click.1 >= watermark {
            watermark = watermark.max(click.1 - BOUND);
            kept.push(click);
        }
    }
    kept
}

/// Clicks counted per page and minute, as `(page, start, end, count)`.
fn per_minute(clicks: Vec<&(String, i64)>) -> Vec<(String, i64, i64, i64)> {
    let mut counts: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for (page, ts) in clicks {
        *counts
            .entry((page.clone(), ts.div_euclid(MINUTE) * MINUTE))
            .or_default() += 1;
    }
    counts
        .into_iter()
        .map(|((page, start), n)| (page, start, start + MINUTE, n))
        .collect()
}

/// The windows in the sink topic, sorted.
fn emitted_windows(data: &Path) -> Vec<(String, i64, i64, i64)> {
    let mut got: Vec<(String, i64, i64, i64)> = read_topic(data, "page-minutes")
        .into_iter()
        .map(|(_, _, r)| {
            let v: serde_json::Value = serde_json::from_slice(&r.value).unwrap();
            (
                v["page"].as_str().unwrap().to_string(),
                v["window_start"].as_i64().unwrap(),
                v["window_end"].as_i64().unwrap(),
                v["count"].as_i64().unwrap(),
            )
        })
        .collect();
    got.sort();
    got
}

/// The wasm component with a custom section appended: the same operator under another
/// digest, so the registry stores it as a new version.
fn new_version_of(wasm: &Path, dir: &Path) -> std::path::PathBuf {
    let mut bytes = std::fs::read(wasm).unwrap();
    let name = b"eddy-test";
    let payload = b"v2";
    bytes.push(0); // custom section
    bytes.push((1 + name.len() + payload.len()) as u8);
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(payload);
    let path = dir.join("clicks-v2.wasm");
    std::fs::write(&path, bytes).unwrap();
    path
}

fn status(server: &ServerProcess) -> serde_json::Value {
    serde_json::from_str(&server.ok(&["pipeline", "status", "clicks", "--json"])).unwrap()
}

/// Waits until every task committed everything and no timer is left (the status
/// counts timers every 2 s).
fn wait_all_closed(server: &ServerProcess) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v = status(server);
        let tasks = v["tasks"].as_array().cloned().unwrap_or_default();
        if v["state"] == "running"
            && !tasks.is_empty()
            && tasks.iter().all(|t| t["lag"] == 0 && t["timers"] == 0)
        {
            return v;
        }
        assert!(Instant::now() < deadline, "windows still open: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The test's random source: seeded from `EDDY_CRASH_SEED` when set, else at random
/// (the seed is printed, to rerun a failure).
fn seeded(test: &str) -> (u64, rand::rngs::StdRng) {
    let seed: u64 = std::env::var("EDDY_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    println!("{test} seed {seed} (rerun with EDDY_CRASH_SEED={seed})");
    (seed, rand::rngs::StdRng::seed_from_u64(seed))
}

/// A server on `data` running pipeline `spec` over topic `clicks` (of `partitions`),
/// with `clicks-per-minute` pushed.
fn clicks_server(dir: &Path, data: &Path, partitions: &str, spec: &str) -> ServerProcess {
    let server = ServerProcess::start(data, &[]);
    server.ok(&[
        "operator",
        "push",
        "clicks-per-minute",
        guest("clicks-per-minute").to_str().unwrap(),
    ]);
    server.ok(&["topic", "create", "clicks", "--partitions", partitions]);
    let path = dir.join("clicks.toml");
    std::fs::write(&path, spec).unwrap();
    server.ok(&["pipeline", "create", path.to_str().unwrap()]);
    server
}

#[test]
fn windows_close_exactly_once_through_kill_9_and_a_hot_upgrade() {
    let (seed, mut rng) = seeded("window crash test");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = clicks_server(dir.path(), &data, "1", SPEC);
    let wasm = guest("clicks-per-minute");
    // Clicks come in chunks, each followed by a kill -9 a random moment later. A kill
    // after the task caught up tests less, so rounds go on (up to 10) until two kills
    // hit uncommitted work, and a chunk the task finished before the kill makes the next
    // one twice as big (a faster task, a faster machine).
    let mut all: Vec<(String, i64)> = Vec::new();
    let mut mid_stream = 0;
    let mut round = 0;
    let mut chunk_size = 60_000;
    while round < 4 || (mid_stream < 2 && round < 10) {
        let from = all.last().map_or(1_700_000_000_000, |c| c.1 + 1);
        let chunk = clicks(&mut rng, chunk_size, from);
        produce(
            &server,
            dir.path(),
            &format!("{round}.jsonl"),
            &jsonl(&chunk),
        );
        all.extend(chunk);
        std::thread::sleep(Duration::from_millis(rng.random_range(0..60)));
        let v = status(&server);
        let committed = v["tasks"][0]["committed_offset"].as_u64().unwrap_or(0);
        println!(
            "round {round}: kill -9 at {committed} of {} clicks committed, {} timers",
            all.len(),
            v["tasks"][0]["timers"]
        );
        if committed < all.len() as u64 {
            mid_stream += 1;
        } else {
            chunk_size = (chunk_size * 2).min(480_000);
        }
        server.kill();
        server = ServerProcess::start(&data, &[]);
        round += 1;
    }
    assert!(
        mid_stream >= 2,
        "only {mid_stream} kills hit open work; make the chunks bigger"
    );
    // A new version, then more clicks for its probation: open windows and their timers
    // carry over.
    let v2 = new_version_of(&wasm, dir.path());
    server.ok(&[
        "operator",
        "push",
        "clicks-per-minute",
        v2.to_str().unwrap(),
    ]);
    let upgraded = std::thread::scope(|s| {
        let upgrading = s.spawn(|| {
            server.ok(&[
                "pipeline",
                "upgrade",
                "clicks",
                "--operator",
                "clicks-per-minute",
            ])
        });
        // The probation waits for its records.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = status(&server);
            if v["upgrades"]
                .as_array()
                .and_then(|u| u.last())
                .map(|u| &u["result"])
                == Some(&serde_json::Value::from("probation"))
            {
                break;
            }
            assert!(Instant::now() < deadline, "no probation: {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let table = server.ok(&["pipeline", "status", "clicks"]);
        assert!(table.contains("on probation: "), "{table}");
        let second = clicks(&mut rng, 10_000, all.last().unwrap().1 + 1);
        produce(&server, dir.path(), "second.jsonl", &jsonl(&second));
        all.extend(second);
        upgrading.join().unwrap()
    });
    assert!(upgraded.contains("upgrade succeeded"), "{upgraded}");
    // The plain status shows the upgrade history.
    let table = server.ok(&["pipeline", "status", "clicks"]);
    assert!(
        table.contains("upgrades:") && table.contains("1 → 2") && table.contains("succeeded"),
        "{table}"
    );
    // A last click without a page (skipped) moves the watermark past every window.
    let end = all.iter().map(|c| c.1).max().unwrap() + 3_600_000;
    produce(
        &server,
        dir.path(),
        "end.jsonl",
        &format!("{{\"value\":\"end\",\"timestamp\":{end}}}\n"),
    );
    let v = wait_all_closed(&server);
    assert_eq!(v["tasks"][0]["watermark"], end - BOUND, "{v}");
    // The metrics say the same.
    let metrics = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async {
            reqwest::get(format!("{}/metrics", server.url))
                .await?
                .text()
                .await
        })
        .unwrap();
    let series = |name: &str| {
        let prefix = format!("{name}{{partition=\"0\",pipeline=\"clicks\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"))
            .to_string()
    };
    assert_eq!(series("eddy_watermark_ms"), (end - BOUND).to_string());
    assert_eq!(series("eddy_timers"), "0");
    server.stop();

    let expected = brute_force(&all);
    let got = emitted_windows(&data);
    assert_eq!(got.len(), expected.len(), "windows emitted vs expected");
    assert_eq!(got, expected, "seed {seed}");
}

/// Clicks repartitioned by page before the windows: stage 0 (no operators) reads the two
/// source partitions, stage 1 counts.
const STAGED_SPEC: &str = r#"
name = "clicks"
[source]
topic = "clicks"
[sink]
topic = "page-minutes"
[[operators]]
name = "clicks-per-minute"
version = "latest"
repartition = true
[settings]
max_out_of_orderness = "10s"
late_events = "drop"
on_error = "skip"
batch_size = 32
commit_interval_ms = 20
"#;

#[test]
fn after_a_repartition_a_lagging_partition_holds_the_watermark_back_instead_of_going_late() {
    let (seed, mut rng) = seeded("repartition watermark test");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = clicks_server(dir.path(), &data, "2", STAGED_SPEC);
    // Partition 0 runs ten minutes ahead and is fully processed before partition 1's
    // clicks of the same ten minutes arrive. Downstream, every page mixes both: judged
    // by the timestamps it reads, partition 1's clicks would all be late there.
    let t0 = 1_700_000_000_000;
    let ahead = clicks(&mut rng, 20_000, t0);
    let behind = clicks(&mut rng, 20_000, t0);
    produce(&server, dir.path(), "ahead.jsonl", &jsonl_to(0, &ahead));
    wait_all_closed(&server);
    produce(&server, dir.path(), "behind.jsonl", &jsonl_to(1, &behind));
    std::thread::sleep(Duration::from_millis(rng.random_range(0..40)));
    server.kill();
    server = ServerProcess::start(&data, &[]);
    // A last click without a page (skipped) in each partition moves every watermark on.
    let end = t0 + 3_600_000;
    let ends: String = (0..2)
        .map(|p| format!("{{\"value\":\"end\",\"timestamp\":{end},\"partition\":{p}}}\n"))
        .collect();
    produce(&server, dir.path(), "end.jsonl", &ends);
    let v = wait_all_closed(&server);
    for t in v["tasks"].as_array().unwrap() {
        assert_eq!(t["watermark"], end - BOUND, "{v}");
    }
    server.stop();

    // Each source partition drops its own late clicks; none turn late downstream.
    let mut kept = on_time(&ahead);
    kept.extend(on_time(&behind));
    let expected = per_minute(kept);
    let got = emitted_windows(&data);
    assert_eq!(got.len(), expected.len(), "windows emitted vs expected");
    assert_eq!(got, expected, "seed {seed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_watermarks_survive_a_savepoint_and_restore() {
    use crate::support::server::TestApp;
    use axum::body::Body;
    use axum::http::{Method, StatusCode};
    let t = TestApp::new();
    t.push("clicks-per-minute", "clicks-per-minute").await;
    t.create_topic("clicks", 2).await;
    let (s, p) = t
        .create_pipeline(&STAGED_SPEC.replace("batch_size = 32\n", ""))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let t0: i64 = 1_700_000_000_000;
    let stage_1 = |v: &serde_json::Value| -> Vec<serde_json::Value> {
        v["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["stage"] == 1)
            .map(|t| t["watermark"].clone())
            .collect()
    };
    // Only partition 0 has spoken: the second stage waits for partition 1.
    t.produce(
        "clicks",
        &format!(
            "{{\"key\":\"a\",\"value\":\"c\",\"timestamp\":{},\"partition\":0}}",
            t0 + 100_000
        ),
    )
    .await;
    let v = t.wait_caught_up("clicks").await;
    assert_eq!(
        stage_1(&v),
        [serde_json::Value::Null, serde_json::Value::Null],
        "{v}"
    );
    let (s, m) = t
        .json(
            Method::POST,
            "/v1/pipelines/clicks/savepoints",
            Body::empty(),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{m}");
    let saved: Vec<&serde_json::Value> = m["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["stage"] == 1)
        .map(|t| &t["upstream_watermarks"])
        .collect();
    let w0 = t0 + 100_000 - BOUND;
    let expected = serde_json::json!([w0, i64::MIN]);
    assert_eq!(saved, [&expected, &expected], "{m}");
    t.json(
        Method::POST,
        "/v1/pipelines/clicks/stop",
        Body::empty(),
        &[],
    )
    .await;
    let body = serde_json::json!({ "savepoint": m["id"] }).to_string();
    let (s, r) = t.post_json("/v1/pipelines/clicks/restore", body).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    t.json(
        Method::POST,
        "/v1/pipelines/clicks/start",
        Body::empty(),
        &[],
    )
    .await;
    // Partition 1 moves far ahead: the stage follows partition 0's watermark, which it
    // only knows from the savepoint.
    t.produce(
        "clicks",
        &format!(
            "{{\"key\":\"b\",\"value\":\"c\",\"timestamp\":{},\"partition\":1}}",
            t0 + 900_000
        ),
    )
    .await;
    let v = t
        .wait_for("clicks", "the second stage's watermark", |v| {
            stage_1(v).iter().all(|w| !w.is_null())
        })
        .await;
    assert_eq!(
        stage_1(&v),
        [serde_json::json!(w0), serde_json::json!(w0)],
        "{v}"
    );
}
