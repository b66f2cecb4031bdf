//! `eddy pipeline create|list|status|stop|start|delete`.

use super::client::{Client, ServerArgs, seg};
use super::output;
use anyhow::Context as _;
use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum PipelineCommand {
    /// Create and start a pipeline from its spec file (TOML, or JSON ending in .json).
    Create { file: PathBuf },
    /// List pipelines.
    List,
    /// Show a pipeline's state and its tasks.
    Status { name: String },
    /// Stop a pipeline (its tasks commit first).
    Stop { name: String },
    /// Start a stopped or failed pipeline where it left off.
    Start { name: String },
    /// Delete a pipeline and its state (its topics stay).
    Delete { name: String },
    /// Rebuild a stopped pipeline's state from its changelogs.
    RebuildState { name: String },
    /// Take a savepoint of a pipeline (it keeps running).
    Savepoint {
        name: String,
        /// Also download it as an archive to this file.
        #[arg(long)]
        download: Option<std::path::PathBuf>,
    },
    /// Restore a stopped pipeline from a savepoint.
    Restore { name: String, savepoint: String },
    /// Hot-upgrade one operator of a running pipeline: --operator ID[@VERSION].
    Upgrade {
        name: String,
        /// The operator's id in the pipeline, and the version (default: the latest).
        #[arg(long, value_name = "ID[@VERSION]")]
        operator: String,
        /// Return once the new version runs, without waiting for its probation.
        #[arg(long)]
        no_wait: bool,
    },
    /// Wait until the pipeline has committed everything in its source topics.
    Wait {
        name: String,
        /// Give up after this long (e.g. 30s, 2m).
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
}

pub async fn run(cmd: PipelineCommand, args: &ServerArgs) -> anyhow::Result<()> {
    let client = Client::new(args);
    let status = match cmd {
        PipelineCommand::Create { file } => {
            let text =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let content_type = if file.extension().is_some_and(|e| e == "json") {
                "application/json"
            } else {
                "application/toml"
            };
            client
                .json::<Value>(Method::POST, "/v1/pipelines", Some((text, content_type)))
                .await?
        }
        PipelineCommand::List => {
            let all: Vec<Value> = client.json(Method::GET, "/v1/pipelines", None).await?;
            if args.json {
                return {
                    output::json(&all);
                    Ok(())
                };
            }
            let mut t = output::table(&[
                "NAME",
                "STATE",
                "SOURCE",
                "SINK",
                "OPERATORS",
                "LAG",
                "EVENTS IN",
            ]);
            for p in &all {
                t.add_row(vec![
                    p["name"].as_str().unwrap_or("").to_string(),
                    state_of(p),
                    p["source"].as_str().unwrap_or("").to_string(),
                    p["sink"].as_str().unwrap_or("").to_string(),
                    operators_of(p),
                    sum(p, "lag").to_string(),
                    sum(p, "events_in").to_string(),
                ]);
            }
            println!("{t}");
            return Ok(());
        }
        PipelineCommand::Status { name } => {
            client
                .json(Method::GET, &format!("/v1/pipelines/{}", seg(&name)), None)
                .await?
        }
        PipelineCommand::Stop { name } => {
            client
                .json(
                    Method::POST,
                    &format!("/v1/pipelines/{}/stop", seg(&name)),
                    None,
                )
                .await?
        }
        PipelineCommand::Start { name } => {
            client
                .json(
                    Method::POST,
                    &format!("/v1/pipelines/{}/start", seg(&name)),
                    None,
                )
                .await?
        }
        PipelineCommand::Wait { name, timeout } => {
            let deadline = std::time::Instant::now() + timeout;
            loop {
                let status: Value = client
                    .json(Method::GET, &format!("/v1/pipelines/{}", seg(&name)), None)
                    .await?;
                if status["state"] != "running" {
                    anyhow::bail!("pipeline {name} is {}", state_of(&status));
                }
                if status["tasks"]
                    .as_array()
                    .is_some_and(|ts| ts.iter().all(|t| t["lag"] == 0))
                {
                    break status;
                }
                if std::time::Instant::now() > deadline {
                    anyhow::bail!(
                        "pipeline {name} still has {} record(s) to process after {}",
                        sum(&status, "lag"),
                        humantime::format_duration(timeout)
                    );
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
        PipelineCommand::RebuildState { name } => {
            let r: Value = client
                .json(
                    Method::POST,
                    &format!("/v1/pipelines/{}/rebuild-state", seg(&name)),
                    None,
                )
                .await?;
            if args.json {
                output::json(&r);
            } else {
                println!(
                    "rebuilt {name}: {} changelog records into {} store partitions in {} ms",
                    r["records"], r["stores"], r["millis"]
                );
            }
            return Ok(());
        }
        PipelineCommand::Savepoint { name, download } => {
            let spinner =
                super::progress::spinner(&format!("taking a savepoint of {name}"), args.json);
            let m: Value = client
                .json(
                    Method::POST,
                    &format!("/v1/pipelines/{}/savepoints", seg(&name)),
                    None,
                )
                .await?;
            spinner.finish_and_clear();
            if let Some(path) = download {
                super::savepoint::download(
                    &client,
                    m["id"].as_str().unwrap_or_default(),
                    &path,
                    args.json,
                )
                .await?;
            }
            if args.json {
                output::json(&m);
            } else {
                println!(
                    "savepoint {} of {name}: {} keys in {} store file(s)",
                    m["id"].as_str().unwrap_or(""),
                    m["keys"],
                    m["stores"].as_array().map_or(0, Vec::len)
                );
            }
            return Ok(());
        }
        PipelineCommand::Restore { name, savepoint } => {
            let spinner =
                super::progress::spinner(&format!("restoring {name} from {savepoint}"), args.json);
            let body = serde_json::json!({ "savepoint": savepoint })
                .to_string()
                .into_bytes();
            let r: Value = client
                .json(
                    Method::POST,
                    &format!("/v1/pipelines/{}/restore", seg(&name)),
                    Some((body, "application/json")),
                )
                .await?;
            spinner.finish_and_clear();
            if args.json {
                output::json(&r);
            } else {
                println!(
                    "restored {name} from {savepoint}: {} keys in {} ms",
                    r["keys"], r["millis"]
                );
            }
            return Ok(());
        }
        PipelineCommand::Upgrade {
            name,
            operator,
            no_wait,
        } => return upgrade(&client, args, &name, &operator, no_wait).await,
        PipelineCommand::Delete { name } => {
            client
                .send(
                    Method::DELETE,
                    &format!("/v1/pipelines/{}", seg(&name)),
                    None,
                    None,
                )
                .await?;
            if !args.json {
                println!("deleted pipeline {name}");
            }
            return Ok(());
        }
    };
    if args.json {
        output::json(&status);
    } else {
        print_status(&status);
    }
    Ok(())
}

fn state_of(p: &Value) -> String {
    let state = p["state"].as_str().unwrap_or("").to_string();
    match p["reason"].as_str() {
        Some(r) => format!("{state}: {r}"),
        None => state,
    }
}

fn operators_of(p: &Value) -> String {
    p["operators"]
        .as_array()
        .map(|ops| {
            ops.iter()
                .map(|o| format!("{}@{}", o["name"].as_str().unwrap_or(""), o["version"]))
                .collect::<Vec<_>>()
                .join(" → ")
        })
        .unwrap_or_default()
}

fn sum(p: &Value, field: &str) -> u64 {
    p["tasks"]
        .as_array()
        .map(|ts| ts.iter().map(|t| t[field].as_u64().unwrap_or(0)).sum())
        .unwrap_or(0)
}

fn print_status(p: &Value) {
    println!(
        "pipeline {}: {}",
        p["name"].as_str().unwrap_or(""),
        state_of(p)
    );
    println!(
        "  {} → {} → {}",
        p["source"].as_str().unwrap_or(""),
        operators_of(p),
        p["sink"].as_str().unwrap_or("")
    );
    let tasks = p["tasks"].as_array().cloned().unwrap_or_default();
    let staged = tasks.iter().any(|t| t["stage"].as_u64().unwrap_or(0) > 0);
    let mut header = vec![
        "PARTITION",
        "STATE",
        "COMMITTED",
        "END",
        "LAG",
        "IN",
        "OUT",
        "WATERMARK",
        "TIMERS",
        "ERRORS",
        "LAST ERROR",
    ];
    let late = tasks.iter().any(|t| t["late"].as_u64().unwrap_or(0) > 0);
    if late {
        header.insert(header.len() - 2, "LATE");
    }
    let clustered = tasks.iter().any(|t| t["server"].is_string());
    if clustered {
        header.insert(2, "SERVER");
    }
    if staged {
        header.insert(0, "STAGE");
    }
    let mut t = output::table(&header);
    for task in &tasks {
        let mut row = Vec::new();
        if staged {
            row.push(task["stage"].to_string());
        }
        let server = clustered.then(|| task["server"].as_str().unwrap_or("?").to_string());
        row.extend([
            task["partition"].to_string(),
            task["state"].as_str().unwrap_or("").to_string(),
        ]);
        row.extend(server);
        row.extend([
            task["committed_offset"].to_string(),
            task["end_offset"].to_string(),
            task["lag"].to_string(),
            task["events_in"].to_string(),
            task["events_out"].to_string(),
            watermark_text(&task["watermark"], task["idle"].as_bool().unwrap_or(false)),
            task["timers"].to_string(),
        ]);
        if late {
            row.push(task["late"].to_string());
        }
        row.extend([
            task["errors"].to_string(),
            one_line(
                task["failure"]
                    .as_str()
                    .or(task["last_error"].as_str())
                    .unwrap_or(""),
            ),
        ]);
        t.add_row(row);
    }
    println!("{t}");
    print_upgrades(p);
}

/// Upgrades a status shows, the latest last (`--json` has them all).
const UPGRADES_SHOWN: usize = 10;

/// The pipeline's upgrade history, oldest first, as a table.
fn print_upgrades(p: &Value) {
    if let Some(text) = upgrades_text(p) {
        println!("{text}");
    }
}

/// The upgrade history as a titled table; an upgrade on probation shows how far its
/// probation is (records its tasks processed of `probation_records`, rejected ones).
fn upgrades_text(p: &Value) -> Option<String> {
    let upgrades = p["upgrades"].as_array().cloned().unwrap_or_default();
    if upgrades.is_empty() {
        return None;
    }
    let skipped = upgrades.len().saturating_sub(UPGRADES_SHOWN);
    let title = if skipped > 0 {
        format!(
            "upgrades (the last {UPGRADES_SHOWN} of {}):",
            upgrades.len()
        )
    } else {
        "upgrades:".to_string()
    };
    let mut t = output::table(&[
        "STARTED (UTC)",
        "OPERATOR",
        "VERSIONS",
        "RESULT",
        "PAUSE",
        "MIGRATED",
        "REASON",
    ]);
    for u in &upgrades[skipped..] {
        let started = u["started_ms"]
            .as_u64()
            .map(|ms| std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
            .map(|at| humantime::format_rfc3339_seconds(at).to_string())
            .unwrap_or_default();
        let mut result = u["result"].as_str().unwrap_or("").replace('_', " ");
        if result == "probation" {
            let probations = p["tasks"].as_array().into_iter().flatten();
            let (done, rejected) =
                probations
                    .filter_map(|t| t["probation"].as_object())
                    .fold((0, 0), |(d, r), p| {
                        (
                            d + p["processed"].as_u64().unwrap_or(0),
                            r + p["errors"].as_u64().unwrap_or(0),
                        )
                    });
            let of = &p["spec"]["settings"]["probation_records"];
            result = format!("on probation: {done} of {of} records, {rejected} rejected");
        }
        t.add_row(vec![
            started,
            u["operator"].as_str().unwrap_or("").to_string(),
            format!("{} → {}", u["from_version"], u["to_version"]),
            result,
            format!("{:.1} ms", u["pause_ms"].as_f64().unwrap_or(0.0)),
            u["migrated_keys"].to_string(),
            one_line(u["reason"].as_str().unwrap_or("")),
        ]);
    }
    Some(format!("{title}\n{t}"))
}

/// Longest error a status table shows (`--json` has the whole text).
const ERROR_WIDTH: usize = 100;

/// An error on one line of a table: a multi-line error (a Python traceback, say) as its
/// first line and its last one (where the exception is), cut to [`ERROR_WIDTH`] with
/// the last line kept whole where it can be.
fn one_line(text: &str) -> String {
    let cut = |s: &str, n: usize| -> String {
        if s.chars().count() <= n {
            s.to_string()
        } else {
            let mut c: String = s.chars().take(n.saturating_sub(1)).collect();
            c.push('…');
            c
        }
    };
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    match lines.as_slice() {
        [] => String::new(),
        [one] => cut(one, ERROR_WIDTH),
        [first, .., last] => {
            let last = cut(last, ERROR_WIDTH / 2);
            let room = ERROR_WIDTH - last.chars().count() - 3;
            format!("{} … {last}", cut(first, room))
        }
    }
}

/// A task's watermark as a time (`-` before the first event, `end` at the end of input),
/// marked when the partition is idle and follows its stage.
fn watermark_text(watermark: &serde_json::Value, idle: bool) -> String {
    let text = match watermark.as_i64() {
        None => "-".to_string(),
        Some(i64::MAX) => "end".to_string(),
        Some(ms) if ms < 0 => ms.to_string(),
        Some(ms) => humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64),
        )
        .to_string(),
    };
    if idle { format!("{text} (idle)") } else { text }
}

async fn upgrade(
    client: &Client,
    args: &ServerArgs,
    name: &str,
    operator: &str,
    no_wait: bool,
) -> anyhow::Result<()> {
    let (id, version) = match operator.split_once('@') {
        Some((id, v)) => {
            let v: u32 = v.parse().map_err(|_| {
                anyhow::anyhow!("--operator {operator}: the version after @ must be a number")
            })?;
            (id, serde_json::json!(v))
        }
        None => (operator, serde_json::json!("latest")),
    };
    let body = serde_json::json!({ "operator": id, "version": version })
        .to_string()
        .into_bytes();
    let spinner = super::progress::spinner(
        &format!("upgrading {id} in {name}: pausing, savepoint, swap"),
        args.json,
    );
    let mut u: Value = client
        .json(
            Method::POST,
            &format!("/v1/pipelines/{}/upgrade", seg(name)),
            Some((body, "application/json")),
        )
        .await?;
    spinner.finish_and_clear();
    if u["result"] == "probation" && !no_wait {
        let spinner = super::progress::spinner("new version on probation", args.json);
        while u["result"] == "probation" {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let status: Value = client
                .json(Method::GET, &format!("/v1/pipelines/{}", seg(name)), None)
                .await?;
            if let Some(last) = status["upgrades"].as_array().and_then(|a| a.last())
                && last["started_ms"] == u["started_ms"]
            {
                u = last.clone();
            }
        }
        spinner.finish_and_clear();
    }
    if !args.json {
        // A shared pipeline's upgrade takes no savepoint (its held probation work is the
        // way back).
        let savepoint = match u["savepoint"].as_str().unwrap_or("") {
            "" => "none".to_string(),
            id => id.to_string(),
        };
        println!(
            "{id}: {} → {}, paused {:.1} ms, savepoint {savepoint}, {} key(s) migrated",
            u["from_version"],
            u["to_version"],
            u["pause_ms"].as_f64().unwrap_or(0.0),
            u["migrated_keys"]
        );
    }
    if args.json {
        output::json(&u);
    } else {
        match u["result"].as_str() {
            Some("succeeded") => {
                println!("upgrade succeeded: {name} runs {id}@{}", u["to_version"])
            }
            Some("probation") => println!(
                "version {} runs on probation (see `eddy pipeline status {name}`)",
                u["to_version"]
            ),
            _ => {}
        }
    }
    if u["result"] == "rolled_back" {
        anyhow::bail!(
            "upgrade rolled back: {}",
            u["reason"].as_str().unwrap_or("no reason given")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_fit_one_table_line() {
        assert_eq!(one_line("plain"), "plain");
        let traceback = "operator fraud@1: process failed on record 3 of partition 0: Traceback (most recent call last):\n  File \"app.py\", line 9\n    x = state['max']\nKeyError: 'max'\n";
        let shown = one_line(traceback);
        assert!(shown.ends_with(" … KeyError: 'max'"), "{shown}");
        assert!(
            shown.starts_with("operator fraud@1: process failed"),
            "{shown}"
        );
        assert!(shown.chars().count() <= ERROR_WIDTH, "{shown}");
        let short = "failed:\nKeyError: 'max'";
        assert_eq!(one_line(short), "failed: … KeyError: 'max'");
        assert!(one_line(&"x".repeat(500)).chars().count() <= ERROR_WIDTH);
    }

    #[test]
    fn the_upgrade_history_shows_how_far_a_probation_is() {
        let status = serde_json::json!({
            "spec": { "settings": { "probation_records": 1000 } },
            "tasks": [
                { "probation": { "processed": 40, "errors": 1 } },
                { "probation": { "processed": 2, "errors": 0 } },
                {},
            ],
            "upgrades": [
                { "operator": "fraud", "from_version": 1, "to_version": 2,
                  "result": "rolled_back", "reason": "a task failed:\nKeyError: 'max'",
                  "pause_ms": 3.25, "migrated_keys": 7, "started_ms": 0 },
                { "operator": "fraud", "from_version": 1, "to_version": 3,
                  "result": "probation", "pause_ms": 1.0, "migrated_keys": 0,
                  "started_ms": 1_000 },
            ],
        });
        let text = upgrades_text(&status).unwrap();
        assert!(text.starts_with("upgrades:\n"), "{text}");
        assert!(text.contains("1970-01-01T00:00:00Z"), "{text}");
        assert!(
            text.contains("1 → 2") && text.contains("rolled back"),
            "{text}"
        );
        assert!(text.contains("a task failed: … KeyError: 'max'"), "{text}");
        assert!(text.contains("3.2 ms") && text.contains("7"), "{text}");
        assert!(
            text.contains("on probation: 42 of 1000 records, 1 rejected"),
            "{text}"
        );
        assert_eq!(upgrades_text(&serde_json::json!({ "upgrades": [] })), None);
    }
}
