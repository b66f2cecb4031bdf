//! Hostile operators next to a healthy pipeline. Each test runs one hostile case of the
//! probe fixture (its records say what to do) on a real `eddy serve` with a memory
//! budget, while a word count keeps receiving input, and checks that:
//! - the server's resident memory stays under its budget plus [`MARGIN`];
//! - the word count never waits [`MAX_GAP`] or more between commits and its output is
//!   exact;
//! - the hostile pipeline fails or is held back with the documented message;
//! - every status call answers within [`MAX_STATUS`];
//! - a restart afterwards answers `/healthz` within 2 s.
//!
//! The bounds tell isolation from its absence, not fast from slow: before the server had
//! a budget and fair scheduling, the same cases stalled the word count's commits for
//! 10–20 s, held status calls for up to 29 s and took gigabytes.

use crate::support::server::ServerProcess;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const BUDGET: u64 = 512 << 20;
/// What the server holds outside the budget: its code and the compiled operators, the
/// threads' stacks, the allocator's slack.
const MARGIN: u64 = 256 << 20;
const MAX_GAP: Duration = Duration::from_secs(2);
const MAX_STATUS: Duration = Duration::from_millis(100);

/// A server with the healthy word count (`wc`, one partition) and one hostile pipeline
/// (`hostile`, the probe on two partitions).
struct Neighbourhood {
    dir: tempfile::TempDir,
    server: Option<ServerProcess>,
    http: reqwest::Client,
    log: std::path::PathBuf,
}

/// What the watcher saw while the hostile pipeline ran.
#[derive(Debug, Default)]
struct Seen {
    slowest_status: Duration,
    longest_gap: Duration,
    most_rss: u64,
    hostile_backoff: bool,
    polls: u64,
}

impl Neighbourhood {
    async fn start(hostile_settings: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        let n = Neighbourhood {
            server: Some(Self::serve(dir.path(), &log)),
            dir,
            http: reqwest::Client::new(),
            log,
        };
        n.push("wordcount", "wordcount").await;
        n.push("probe", "fixture-probe").await;
        n.send(
            "POST",
            "/v1/topics",
            r#"{"name": "lines", "partitions": 1}"#,
        )
        .await;
        n.send("POST", "/v1/topics", r#"{"name": "in", "partitions": 2}"#)
            .await;
        let wc = "name = \"wc\"\nsource = { topic = \"lines\" }\nsink = { topic = \"counts\" }\n[[operators]]\nname = \"wordcount\"\n";
        n.send("POST", "/v1/pipelines", wc).await;
        let hostile = format!(
            "name = \"hostile\"\nsource = {{ topic = \"in\" }}\nsink = {{ topic = \"out\" }}\n[[operators]]\nname = \"probe\"\n[settings]\n{hostile_settings}\n"
        );
        n.send("POST", "/v1/pipelines", &hostile).await;
        n
    }

    fn serve(data: &std::path::Path, log: &std::path::Path) -> ServerProcess {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let budget = BUDGET.to_string();
        ServerProcess::start_with_stderr(data, &["--memory-budget", &budget], log.into())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.as_ref().unwrap().url)
    }

    async fn push(&self, name: &str, guest: &str) {
        let bytes = std::fs::read(crate::support::guest(guest)).unwrap();
        let answer = self
            .http
            .put(self.url(&format!("/v1/operators/{name}")))
            .header("content-type", "application/wasm")
            .body(bytes)
            .send()
            .await
            .unwrap();
        assert!(
            answer.status().is_success(),
            "{}",
            answer.text().await.unwrap()
        );
    }

    async fn send(&self, method: &str, path: &str, body: &str) -> Value {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let kind = match path {
            "/v1/topics" => "application/json",
            "/v1/pipelines" => "application/toml",
            _ => "application/x-ndjson",
        };
        let answer = self
            .http
            .request(method, self.url(path))
            .header("content-type", kind)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = answer.status();
        let v: Value = answer.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    async fn get(&self, path: &str) -> Value {
        self.http
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Runs the hostile `commands` (each a record of `in`) for `running`, while the word
    /// count gets lines every 100 ms and a watcher polls the status every 50 ms. Then
    /// checks the word count's output and returns what the watcher saw.
    async fn run(self: &Arc<Self>, commands: &[Value], running: Duration) -> Seen {
        let pid = self.server.as_ref().unwrap().child.id();
        let done = Arc::new(AtomicBool::new(false));
        let watcher = tokio::spawn(Arc::clone(self).watch(pid, Arc::clone(&done)));
        let lines: String = commands.iter().map(|c| format!("{c}\n")).collect();
        self.send("POST", "/v1/topics/in/records", &lines).await;
        let started = Instant::now();
        let mut expected: BTreeMap<String, u64> = BTreeMap::new();
        let mut i = 0u64;
        while started.elapsed() < running {
            let batch: Vec<String> = (0..10)
                .map(|_| {
                    i += 1;
                    format!("w{} common", i % 7)
                })
                .collect();
            for line in &batch {
                for word in line.split(' ') {
                    *expected.entry(word.into()).or_default() += 1;
                }
            }
            let body: String = batch
                .iter()
                .map(|l| format!("{}\n", serde_json::json!({ "value": l })))
                .collect();
            self.send("POST", "/v1/topics/lines/records", &body).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.wait_caught_up().await;
        done.store(true, Ordering::Relaxed);
        let seen = watcher.await.unwrap();
        self.check_counts(&expected).await;
        seen
    }

    async fn watch(self: Arc<Self>, pid: u32, done: Arc<AtomicBool>) -> Seen {
        let mut seen = Seen::default();
        let mut last = (0u64, Instant::now());
        let paths = ["/v1/pipelines/wc", "/v1/pipelines/hostile", "/v1/pipelines"];
        while !done.load(Ordering::Relaxed) {
            for path in paths {
                let asked = Instant::now();
                let v = self.get(path).await;
                seen.slowest_status = seen.slowest_status.max(asked.elapsed());
                match path {
                    "/v1/pipelines/wc" => {
                        let committed = v["tasks"][0]["committed_offset"].as_u64().unwrap();
                        if committed != last.0 {
                            last = (committed, Instant::now());
                        }
                        seen.longest_gap = seen.longest_gap.max(last.1.elapsed());
                    }
                    "/v1/pipelines/hostile" => {
                        let tasks = v["tasks"].as_array().unwrap();
                        seen.hostile_backoff |= tasks.iter().any(|t| t["backoff_ms"].is_u64());
                    }
                    _ => {}
                }
            }
            seen.most_rss = seen.most_rss.max(rss(pid));
            seen.polls += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        seen
    }

    async fn wait_caught_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.get("/v1/pipelines/wc").await;
            let t = &v["tasks"][0];
            if t["committed_offset"] == t["end_offset"] && t["lag"] == 0 {
                return;
            }
            assert!(Instant::now() < deadline, "the word count fell behind: {v}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every word's counts, in output order, are 1, 2, … up to its occurrences.
    async fn check_counts(&self, expected: &BTreeMap<String, u64>) {
        let v = self.get("/v1/topics/counts/records?limit=10000").await;
        let mut counts: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for r in v["records"].as_array().unwrap() {
            let n = r["value"].as_str().unwrap().parse().unwrap();
            counts
                .entry(r["key"].as_str().unwrap().into())
                .or_default()
                .push(n);
        }
        for (word, n) in expected {
            let want: Vec<u64> = (1..=*n).collect();
            assert_eq!(counts.get(word), Some(&want), "counts of {word}");
        }
        assert_eq!(counts.len(), expected.len(), "{counts:?}");
    }

    async fn hostile(&self) -> Value {
        self.get("/v1/pipelines/hostile").await
    }

    /// The checks every case shares: memory, the word count's commits, status calls, and
    /// a restart that answers `/healthz` at once. Returns the server's log before the
    /// restart.
    async fn check_and_restart(mut self, seen: &Seen) -> String {
        eprintln!("{seen:?}");
        let log = std::fs::read_to_string(&self.log).unwrap();
        assert!(seen.polls > 10, "{seen:?}");
        assert!(seen.most_rss < BUDGET + MARGIN, "{seen:?}");
        assert!(seen.longest_gap < MAX_GAP, "{seen:?}");
        assert!(seen.slowest_status < MAX_STATUS, "{seen:?}");
        self.server.take().unwrap().stop();
        let started = Instant::now();
        self.server = Some(Self::serve(self.dir.path(), &self.log));
        let health = self.http.get(self.url("/healthz")).send().await.unwrap();
        assert!(health.status().is_success());
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        log
    }
}

/// The process's resident memory in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|kb| kb.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb << 10)
}

/// `n` records of `command`, spread over the hostile pipeline's partitions.
fn repeat(command: &str, n: usize) -> Vec<Value> {
    vec![serde_json::json!({ "value": command }); n]
}

/// The `commands` in one partition, in order.
fn in_order(commands: &[&str]) -> Vec<Value> {
    commands
        .iter()
        .map(|c| serde_json::json!({ "key": "k", "value": c }))
        .collect()
}

/// The hostile task's errors, summed, and the last error any of them saw.
fn errors(status: &Value) -> (u64, String) {
    let tasks = status["tasks"].as_array().unwrap();
    let n = tasks.iter().map(|t| t["errors"].as_u64().unwrap()).sum();
    let last = tasks
        .iter()
        .filter_map(|t| t["last_error"].as_str())
        .collect::<Vec<_>>()
        .join(" | ");
    (n, last)
}

async fn case(settings: &str, commands: Vec<Value>, running: u64) -> (Value, Seen, String) {
    let n = Arc::new(Neighbourhood::start(settings).await);
    let seen = n.run(&commands, Duration::from_secs(running)).await;
    let hostile = n.hostile().await;
    let n = Arc::into_inner(n).unwrap();
    let log = n.check_and_restart(&seen).await;
    (hostile, seen, log)
}

/// The hostile pipeline's outputs' values.
async fn hostile_outputs(n: &Neighbourhood) -> Vec<String> {
    let v = n.get("/v1/topics/out/records?limit=100").await;
    v["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["value"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn values_over_the_largest_value_fail_naming_the_setting() {
    let (hostile, ..) = case("on_error = \"skip\"", repeat("big s 1 20", 4), 3).await;
    let (n, last) = errors(&hostile);
    assert_eq!(n, 4, "{hostile}");
    assert!(last.contains("over settings.max_value_mb = 16"), "{last}");
}

#[tokio::test(flavor = "multi_thread")]
async fn records_writing_a_gigabyte_each_fail_naming_the_setting() {
    let (hostile, ..) = case("on_error = \"skip\"", repeat("big s 100 10", 4), 4).await;
    let (n, last) = errors(&hostile);
    assert_eq!(n, 4, "{hostile}");
    assert!(
        last.contains("over settings.max_batch_state_mb = 64"),
        "{last}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_bomb_stops_at_the_servers_budget() {
    let settings = "on_error = \"skip\"\nmemory_limit_mb = 2048";
    let (hostile, ..) = case(settings, repeat("bomb", 2), 4).await;
    let (n, last) = errors(&hostile);
    assert_eq!(n, 2, "{hostile}");
    assert!(last.contains("memory budget is used up"), "{last}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scan_over_big_values_comes_in_pages_and_its_output_is_bounded() {
    // 60 MiB of values, then a scan that emits all of them as one output.
    let settings = "on_error = \"skip\"\nmax_output_mb = 16";
    let (hostile, ..) = case(settings, in_order(&["big s 6 10", "scan s - -"]), 4).await;
    let (n, last) = errors(&hostile);
    assert_eq!(n, 1, "{hostile}");
    assert!(last.contains("over settings.max_output_mb = 16"), "{last}");
}

#[tokio::test(flavor = "multi_thread")]
async fn outputs_over_the_output_limit_fail_naming_the_setting() {
    let (hostile, ..) = case("on_error = \"skip\"", repeat("emitbig 100", 3), 4).await;
    let (n, last) = errors(&hostile);
    assert_eq!(n, 3, "{hostile}");
    assert!(last.contains("over settings.max_output_mb = 64"), "{last}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_flood_stops_at_the_store_limit() {
    let n = Arc::new(Neighbourhood::start("on_error = \"skip\"").await);
    let seen = n
        .run(&repeat("stores 100000", 1), Duration::from_secs(3))
        .await;
    let replies = hostile_outputs(&n).await;
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert!(
        replies[0].starts_with("100 ") && replies[0].contains("settings.max_stores = 100"),
        "{replies:?}"
    );
    Arc::into_inner(n).unwrap().check_and_restart(&seen).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn timer_floods_stop_at_the_timer_limits_and_fire_between_inputs() {
    let settings = "on_error = \"skip\"\nmax_pending_timers = 50000";
    let commands = in_order(&["timers 1000000", "timers 60000", "timers 40000"]);
    let n = Arc::new(Neighbourhood::start(settings).await);
    let seen = n.run(&commands, Duration::from_secs(5)).await;
    let hostile = n.hostile().await;
    let (errors, last) = errors(&hostile);
    assert_eq!(errors, 2, "{hostile}");
    assert!(
        last.contains("settings.max_pending_timers = 50000"),
        "{last}"
    );
    // The 40,000 timers it could set are due at once (every event's time is past them)
    // and all fired, while the word count went on.
    let fired: u64 = hostile["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["events_out"].as_u64().unwrap())
        .sum();
    assert_eq!(fired, 40_000, "{hostile}");
    Arc::into_inner(n).unwrap().check_and_restart(&seen).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn records_that_loop_to_their_deadline_are_backed_off() {
    let settings = "on_error = \"skip\"\ncall_timeout_ms = 1000";
    let (hostile, seen, _) = case(settings, repeat("loop", 6), 8).await;
    let (n, last) = errors(&hostile);
    assert!(n >= 2, "{hostile}");
    assert!(last.contains("deadline"), "{last}");
    assert!(seen.hostile_backoff, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trapping_operator_is_backed_off_and_its_log_stays_small() {
    let settings = "on_error = \"dead-letter\"";
    let (hostile, seen, log) = case(settings, repeat("trap", 2000), 5).await;
    let (n, last) = errors(&hostile);
    assert!(n >= 2, "{hostile}");
    assert!(last.contains("trap requested"), "{last}");
    assert!(seen.hostile_backoff, "{seen:?}");
    // Unbounded, each trapped record added about 1 KiB of log: 2 MiB for these.
    eprintln!("{n} traps, {} bytes of log", log.len());
    assert!(log.len() < 16 << 10, "{log}");
}
