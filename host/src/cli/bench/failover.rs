//! `eddy bench failover`: two `eddy serve --cluster` servers share a word count whose
//! state holds `--keys` keys over `--partitions` partitions; one is killed (`SIGKILL`)
//! and the bench times how long the partitions it ran stand still, from the kill until the
//! survivor has processed a new record in each of them, with 0 and with 1 standby replica.
//! The baseline in the same run is the group's failure detection: a member's session
//! times out after `session.timeout.ms` (6 s) before any takeover can start.

use super::kafka::conn;
use crate::cli::client::{Client, ServerArgs};
use crate::cluster::SESSION_TIMEOUT;
use crate::kafka::ensure_topic;
use anyhow::{Context, bail};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use reqwest::Method;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Longest wait for any one step (loading, catching up, the takeover).
const STEP_LIMIT: Duration = Duration::from_secs(600);

#[derive(clap::Args)]
pub struct FailoverArgs {
    /// Bootstrap servers of the broker to measure against.
    #[arg(long, env = "EDDY_KAFKA_BROKERS")]
    brokers: String,
    /// examples/wordcount built for wasm32-wasip2.
    #[arg(long)]
    wasm: PathBuf,
    /// Keys of state (distinct words, one record each).
    #[arg(long, default_value_t = 1_000_000)]
    keys: usize,
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(2..=64))]
    partitions: u32,
    /// The runs' `num_standby_replicas`, one run each.
    #[arg(long, value_delimiter = ',', default_value = "0,1")]
    standbys: Vec<u32>,
    /// Keep each server's log in this folder (`<standbys>-<server>.log`).
    #[arg(long)]
    logs: Option<PathBuf>,
}

/// One `eddy serve` child process and a client of its API.
struct Server {
    child: Child,
    client: Client,
    url: String,
    name: &'static str,
}

impl Server {
    fn start(
        dir: &Path,
        brokers: &str,
        cluster: &str,
        name: &'static str,
        log: Option<PathBuf>,
    ) -> anyhow::Result<Self> {
        let data = dir.join(name);
        let stderr = match log {
            Some(path) => Stdio::from(
                std::fs::File::create(&path).with_context(|| path.display().to_string())?,
            ),
            None => Stdio::null(),
        };
        let child = Command::new(std::env::current_exe()?)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .args(["--kafka-brokers", brokers, "--cluster", cluster])
            .args(["--server-name", name])
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()?;
        // Killed on every way out until it is a `Server` (which kills it when dropped).
        let mut guard = KillOnDrop(Some(child));
        let child = guard.0.as_mut().expect("just spawned");
        let mut stdout = BufReader::new(child.stdout.take().context("server stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        // Keep reading, so the server never writes into a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .with_context(|| format!("no address in the server's first line {line:?}"))?
            .to_string();
        let client = Client::new(&ServerArgs {
            server: url.clone(),
            api_token: None,
            json: true,
        });
        Ok(Server {
            child: guard.0.take().expect("kept until here"),
            client,
            url,
            name,
        })
    }

    /// Runs the CLI against this server.
    fn cli(&self, args: &[&str]) -> anyhow::Result<()> {
        let out = Command::new(std::env::current_exe()?)
            .env("EDDY_SERVER", &self.url)
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!(
                "eddy {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    fn get(&self, rt: &tokio::runtime::Runtime, path: &str) -> anyhow::Result<Value> {
        Ok(rt.block_on(self.client.json(Method::GET, path, None))?)
    }

    /// `eddy_restored_changelog_offsets_total` of the pipeline, from `/metrics`.
    fn restored(&self, rt: &tokio::runtime::Runtime) -> anyhow::Result<u64> {
        let text = rt.block_on(async {
            let resp = self
                .client
                .send(Method::GET, "/metrics", None, Some("text/plain"))
                .await?;
            anyhow::Ok(resp.text().await?)
        })?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with("eddy_restored_changelog_offsets_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64)
    }
}

/// A child process killed when this is dropped, unless taken out first.
struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sets its flag when dropped: the producer thread stops on every way out.
struct StopOnDrop(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One run's figures.
struct Takeover {
    standbys: u32,
    /// Kill → every partition of the killed server processing on the survivor.
    stopped: Duration,
    /// Changelog offsets the survivor restored in the takeover.
    restored: u64,
    /// The survivor's own partitions: the longest stretch one did not commit while it had
    /// records waiting (sampled every 50 ms).
    own_pause: Duration,
}

pub fn run(args: FailoverArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let mut results = Vec::new();
    for &n in &args.standbys {
        let t = takeover(&args, n, &rt).with_context(|| format!("the run with {n} standbys"))?;
        println!(
            "standbys {n}: the killed server's partitions stood still {:.2} s ({:.2} s beyond the {} s session timeout); restored {} changelog offsets; the survivor's own partitions paused at most {:.2} s",
            t.stopped.as_secs_f64(),
            t.stopped.saturating_sub(SESSION_TIMEOUT).as_secs_f64(),
            SESSION_TIMEOUT.as_secs(),
            t.restored,
            t.own_pause.as_secs_f64(),
        );
        results.push(t);
    }
    if let (Some(none), Some(one)) = (
        results.iter().find(|t| t.standbys == 0),
        results.iter().find(|t| t.standbys > 0),
    ) {
        println!(
            "takeover with a standby / without: {:.2} (restored {} / {} changelog offsets)",
            one.stopped.as_secs_f64() / none.stopped.as_secs_f64(),
            one.restored,
            none.restored
        );
    }
    Ok(())
}

fn takeover(
    args: &FailoverArgs,
    standbys: u32,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<Takeover> {
    let dir = tempfile::tempdir()?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let cluster = format!("bench-failover-{}-{standbys}", nanos.as_millis());
    let (lines, counts) = (format!("{cluster}-lines"), format!("{cluster}-counts"));
    let c = conn(&args.brokers);
    ensure_topic(&c, &lines, args.partitions, false)?;
    ensure_topic(&c, &counts, args.partitions, false)?;
    let producer: BaseProducer = c
        .config(&[("linger.ms", "20"), ("enable.idempotence", "true")])
        .create()?;
    let words: Vec<String> = (0..args.keys).map(|i| format!("w{i:08}")).collect();
    produce(&producer, &lines, args.partitions, &words)?;

    let log = |name: &str| {
        args.logs
            .as_ref()
            .map(|d| d.join(format!("{standbys}-{name}.log")))
    };
    let a = Server::start(dir.path(), &args.brokers, &cluster, "a", log("a"))?;
    let b = Server::start(dir.path(), &args.brokers, &cluster, "b", log("b"))?;
    let wasm = args.wasm.to_str().context("the wasm path is not UTF-8")?;
    a.cli(&["operator", "push", "wordcount", wasm])?;
    let spec = dir.path().join("wc.toml");
    std::fs::write(
        &spec,
        format!(
            "name = \"wc\"\n[source]\nkafka = {{ topic = \"{lines}\" }}\n[sink]\nkafka = {{ topic = \"{counts}\" }}\n[[operators]]\nname = \"wordcount\"\nversion = \"latest\"\n[settings]\nnum_standby_replicas = {standbys}\n"
        ),
    )?;
    a.cli(&["pipeline", "create", spec.to_str().context("temp path")?])?;
    let started = Instant::now();
    let per = (args.keys as u64).div_ceil(args.partitions as u64);
    wait(&b, rt, "both servers to count every key", |v| {
        let tasks = own_tasks(v);
        let owners: std::collections::BTreeSet<&str> =
            tasks.iter().filter_map(|t| t["server"].as_str()).collect();
        owners.len() == 2
            && tasks.len() == args.partitions as usize
            && tasks
                .iter()
                .map(|t| t["committed_offset"].as_u64().unwrap_or(0))
                .sum::<u64>()
                >= args.keys as u64
    })?;
    eprintln!(
        "standbys {standbys}: {} keys counted on two servers in {:.1} s",
        args.keys,
        started.elapsed().as_secs_f64()
    );
    if standbys > 0 {
        // Each server's copies of the other's partitions caught up.
        for s in [&a, &b] {
            wait(s, rt, "the standbys to catch up", |v| {
                v["tasks"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|t| t["server"] != s.name)
                    .all(|t| t["standby"]["lag"] == 0)
            })?;
        }
    }
    let before = b.get(rt, "/v1/pipelines/wc")?;
    let victims: Vec<u64> = partitions_of(&before, "a");
    let restored_before = b.restored(rt)?;
    let mut a = a;
    a.child.kill()?;
    let killed = Instant::now();
    a.child.wait()?;
    // New records keep arriving in every partition (a batch of 40 every ~30 ms): a partition
    // processes again once its committed offset passes what was there before the kill,
    // and the survivor's own partitions show whether they pause meanwhile.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopping = StopOnDrop(stop.clone());
    let trickle = {
        let (stop, lines, partitions) = (stop.clone(), lines.clone(), args.partitions);
        std::thread::spawn(move || -> anyhow::Result<()> {
            let mut i = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let batch: Vec<String> = (i..i + 40).map(|j| format!("x{j:08}")).collect();
                produce(&producer, &lines, partitions, &batch)?;
                i += 40;
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(())
        })
    };
    let mut own_pause = Duration::ZERO;
    let mut last_move: std::collections::HashMap<u64, (u64, Instant)> = Default::default();
    loop {
        if trickle.is_finished() {
            drop(stopping);
            return Err(match trickle.join() {
                Ok(Err(e)) => e.context("producing records after the kill"),
                _ => anyhow::anyhow!("the producer thread ended early"),
            });
        }
        // A status call that fails (the survivor busy) is asked again.
        let Ok(v) = b.get(rt, "/v1/pipelines/wc") else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let now = Instant::now();
        // Records arrive in every partition all along: an own partition whose committed
        // offset does not move is paused.
        for t in own_tasks(&v).iter().filter(|t| t["server"] == "b") {
            let p = t["partition"].as_u64().unwrap_or(0);
            if victims.contains(&p) {
                continue;
            }
            let committed = t["committed_offset"].as_u64().unwrap_or(0);
            let entry = last_move.entry(p).or_insert((committed, now));
            if committed != entry.0 {
                *entry = (committed, now);
            }
            own_pause = own_pause.max(now - entry.1);
        }
        let done = victims.iter().all(|p| {
            own_tasks(&v).iter().any(|t| {
                t["partition"].as_u64() == Some(*p)
                    && t["server"] == "b"
                    && t["state"] == "running"
                    && t["committed_offset"].as_u64().unwrap_or(0) > per
            })
        });
        if done {
            break;
        }
        if killed.elapsed() > STEP_LIMIT {
            bail!("the survivor did not take over within {STEP_LIMIT:?}: {v}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let stopped = killed.elapsed();
    drop(stopping);
    trickle.join().expect("the producer thread")?;
    let restored = b.restored(rt)? - restored_before;
    Ok(Takeover {
        standbys,
        stopped,
        restored,
        own_pause,
    })
}

/// Produces one record per word, keyed by it, spread over the partitions in turn.
fn produce(
    producer: &BaseProducer,
    topic: &str,
    partitions: u32,
    words: &[String],
) -> anyhow::Result<()> {
    for (i, w) in words.iter().enumerate() {
        let mut record = BaseRecord::to(topic)
            .partition((i as u32 % partitions) as i32)
            .key(w.as_bytes())
            .payload(w.as_bytes());
        // Waits while the queue is full; any other refusal ends the run.
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, r)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    producer.poll(Duration::from_millis(5));
                    record = r;
                }
                Err((e, _)) => bail!("producing to {topic}: {e}"),
            }
        }
    }
    producer.flush(Duration::from_secs(60))?;
    Ok(())
}

/// The first stage's tasks of a pipeline status.
fn own_tasks(v: &Value) -> Vec<&Value> {
    v["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["stage"] == 0)
        .collect()
}

/// The partitions `server` runs.
fn partitions_of(v: &Value, server: &str) -> Vec<u64> {
    own_tasks(v)
        .into_iter()
        .filter(|t| t["server"] == server)
        .filter_map(|t| t["partition"].as_u64())
        .collect()
}

/// Polls `server`'s status of `wc` until `done` holds.
fn wait(
    server: &Server,
    rt: &tokio::runtime::Runtime,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + STEP_LIMIT;
    loop {
        if let Ok(v) = server.get(rt, "/v1/pipelines/wc")
            && done(&v)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("waiting for {what} took over {STEP_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
