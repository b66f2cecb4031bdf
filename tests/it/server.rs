//! The real `eddy serve` and CLI as users run them: a pipeline end to end, a restart mid
//! stream, `kill -9` at random points, and CLI errors.

use crate::support::guest;
use crate::support::oracle::{
    actual_counts, expected_counts, expected_global_counts, lines, read_topic,
};
use crate::support::server::ServerProcess;
use crate::support::workspace_root;
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::time::{Duration, Instant};

const SPEC: &str = "examples/wordcount/pipeline.toml";
const GLOBAL_SPEC: &str = "examples/wordcount/pipeline-global.toml";

/// Lines of text, deterministic for a seed, each ending in a newline.
fn text(count: usize, seed: u64) -> String {
    lines(count, seed).into_iter().map(|l| l + "\n").collect()
}

fn set_up(server: &ServerProcess) {
    for (name, guest_name) in [("wordcount", "wordcount"), ("split-words", "split-words")] {
        server.ok(&[
            "operator",
            "push",
            name,
            guest(guest_name).to_str().unwrap(),
        ]);
    }
    server.ok(&["topic", "create", "lines", "--partitions", "4"]);
}

fn create_pipeline(server: &ServerProcess, spec: &str) {
    server.ok(&[
        "pipeline",
        "create",
        workspace_root().join(spec).to_str().unwrap(),
    ]);
}

/// Waits until the pipeline has committed its whole source.
fn wait_caught_up(server: &ServerProcess, pipeline: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = server.ok(&["pipeline", "status", pipeline, "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["state"], "running", "{v}");
        if v["tasks"].as_array().unwrap().iter().all(|t| t["lag"] == 0) {
            return;
        }
        assert!(Instant::now() < deadline, "pipeline did not catch up: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn produce(server: &ServerProcess, dir: &Path, name: &str, text: &str) {
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    let out = server.ok(&[
        "topic",
        "produce",
        "lines",
        "--file",
        file.to_str().unwrap(),
    ]);
    assert!(
        out.contains(&format!("produced {} record(s)", text.lines().count())),
        "{out}"
    );
}

fn check_exact(data_dir: &Path, global: bool) {
    let source = read_topic(data_dir, "lines");
    let expected = if global {
        expected_global_counts(&source)
    } else {
        expected_counts(&source)
    };
    let actual = actual_counts(&read_topic(data_dir, "counts"));
    assert_eq!(
        actual.len(),
        expected.len(),
        "outputs: {} expected, {} found",
        expected.len(),
        actual.len()
    );
    assert!(
        actual == expected,
        "the output differs from a failure-free run"
    );
}

#[test]
fn cli_end_to_end_survives_a_restart_mid_stream() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = ServerProcess::start(&data, &[]);
    set_up(&server);
    create_pipeline(&server, SPEC);
    produce(&server, dir.path(), "first.txt", &text(500, 1));
    wait_caught_up(&server, "wordcount");

    // Tables for people, JSON for scripts.
    let table = server.ok(&["pipeline", "list"]);
    assert!(
        table.contains("wordcount") && table.contains("running") && table.contains("wordcount@1"),
        "{table}"
    );
    let topics: serde_json::Value =
        serde_json::from_str(&server.ok(&["topic", "list", "--json"])).unwrap();
    let names: Vec<&str> = topics
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["counts", "lines", "wordcount.wordcount.counts.changelog"]
    );
    let consumed = server.ok(&[
        "topic",
        "consume",
        "counts",
        "--partition",
        "0",
        "--limit",
        "3",
        "--json",
    ]);
    assert_eq!(consumed.lines().count(), 3);
    let first: serde_json::Value = serde_json::from_str(consumed.lines().next().unwrap()).unwrap();
    assert_eq!(
        (first["partition"].as_u64(), first["offset"].as_u64()),
        (Some(0), Some(0))
    );

    server.stop();
    let server = ServerProcess::start(&data, &[]);
    produce(&server, dir.path(), "second.txt", &text(500, 2));
    wait_caught_up(&server, "wordcount");
    server.stop();
    check_exact(&data, false);
}

/// `kill -9` of the server 20 times (`EDDY_CRASH_KILLS`) at random points while a
/// two-stage pipeline works through a backlog that keeps growing, a restart after each;
/// the output must equal a failure-free run's exactly. The seed is printed
/// (`EDDY_CRASH_SEED` reruns it).
#[test]
fn kill_9_at_random_points_loses_and_duplicates_nothing() {
    let seed: u64 = std::env::var("EDDY_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    let kills: usize = std::env::var("EDDY_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    println!("crash test seed {seed}, {kills} kills (rerun with EDDY_CRASH_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = ServerProcess::start(&data, &[]);
    set_up(&server);
    // A backlog first, so the kills land while the pipeline works through it.
    produce(&server, dir.path(), "input.txt", &text(150_000, seed));
    // Two stages (split, repartition by word, count): exactly-once across the internal
    // topic as well.
    create_pipeline(&server, GLOBAL_SPEC);
    let mut server = server;
    let mut mid_stream = 0;
    for round in 0..kills {
        // Input keeps arriving between crashes, so every kill has work to cut into; a
        // machine fast enough to drain it within the pause gets more, after shorter
        // pauses (up to 10 chunks).
        let mut lag = 0;
        for chunk in 0..10u64 {
            produce(
                &server,
                dir.path(),
                &format!("more-{round}-{chunk}.txt"),
                &text(8_000, seed + 1 + 3 * round as u64 + chunk),
            );
            let pause = if chunk == 0 { 20..400 } else { 5..60 };
            std::thread::sleep(Duration::from_millis(rng.random_range(pause)));
            let status: serde_json::Value =
                serde_json::from_str(&server.ok(&["pipeline", "status", "wordcount", "--json"]))
                    .unwrap();
            lag = status["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["lag"].as_u64().unwrap())
                .sum();
            if lag > 0 {
                break;
            }
        }
        println!("round {round}: kill -9 with {lag} records not yet committed");
        mid_stream += usize::from(lag > 0);
        server.kill();
        server = ServerProcess::start(&data, &[]);
    }
    assert!(
        mid_stream * 4 >= kills * 3,
        "only {mid_stream} of {kills} kills hit a pipeline with work left; the test needs a bigger backlog"
    );
    wait_caught_up(&server, "wordcount");
    server.stop();
    check_exact(&data, true);
}

#[test]
fn cli_errors_are_one_clear_line_and_a_failing_exit() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"), &["--api-token", "t0ken"]);
    // (arguments, with the token, the first words of the error)
    let cases: [(&[&str], bool, &str); 5] = [
        (
            &["pipeline", "status", "nope"],
            true,
            "error: pipeline not found: pipeline \"nope\" does not exist",
        ),
        (&["topic", "create", "lines"], false, "error: missing token"),
        (&["topic", "list"], false, "error: missing token"),
        (
            &["operator", "push", "x", "/nonexistent.wasm"],
            true,
            "error: cannot read /nonexistent.wasm",
        ),
        (
            &["topic", "describe", "ghost"],
            true,
            "error: topic not found",
        ),
    ];
    for (args, token, expected) in cases {
        let out = crate::support::eddy()
            .env("EDDY_API_TOKEN", if token { "t0ken" } else { "" })
            .env("EDDY_SERVER", &server.url)
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with(expected), "{args:?}: {stderr}");
    }
    let out = crate::support::eddy()
        .env("EDDY_API_TOKEN", "t0ken")
        .env("EDDY_SERVER", &server.url)
        .args(["topic", "create", "lines"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = crate::support::eddy()
        .env("EDDY_SERVER", "http://127.0.0.1:9")
        .args(["topic", "list"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("cannot reach the Eddy server at http://127.0.0.1:9"),
        "{stderr}"
    );
}
