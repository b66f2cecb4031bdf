//! `eddy pipeline create|list|status|stop|start|delete|…` (`upgrade` is in `upgrade`).

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
    /// Hot-upgrade one operator of a running pipeline (--operator ID[@VERSION]), end
    /// the upgrade on probation (--promote, --rollback), or start a shadow run
    /// (--shadow).
    Upgrade(super::upgrade::UpgradeArgs),
    /// Show a pipeline's shadow run and how it compares, or promote it to an upgrade
    /// (--promote), or drop it (--discard).
    Shadow(super::shadow::ShadowArgs),
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
        PipelineCommand::Upgrade(upgrade) => {
            return super::upgrade::run(&client, args, upgrade).await;
        }
        PipelineCommand::Shadow(shadow) => {
            return super::shadow::run(&client, args, shadow).await;
        }
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
        inputs_of(p),
        operators_of(p),
        p["sink"].as_str().unwrap_or("")
    );
    if let Some(c) = p["canary"].as_object() {
        println!(
            "  canary: {}@{} runs on partitions {} (promote or roll back: eddy pipeline upgrade {} --promote | --rollback)",
            c["operator"]["id"].as_str().unwrap_or("?"),
            c["operator"]["version"],
            c["partitions"],
            p["name"].as_str().unwrap_or("")
        );
    }
    if let Some(line) = shadow_line(p) {
        println!("{line}");
    }
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
    let canary = p["canary"].is_object();
    if canary {
        header.insert(2, "CANARY");
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
        let mut state = task["state"].as_str().unwrap_or("").to_string();
        if let (Some(done), Some(all)) = (
            task["restore"]["restored"].as_u64(),
            task["restore"]["to_restore"].as_u64(),
        ) {
            state = format!("{state} ({done} of {all})");
        }
        if let Some(age) = task["report_age_ms"].as_u64().filter(|_| state == "silent") {
            state = format!("silent ({} s)", age / 1000);
        }
        if let Some(lag) = task["standby"]["lag"].as_u64() {
            state = format!("{state} (standby here, {lag} behind)");
        }
        row.extend([task["partition"].to_string(), state]);
        if canary {
            row.push(task["canary"].as_str().unwrap_or("-").to_string());
        }
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
            output::one_line(
                task["failure"]
                    .as_str()
                    .or(task["last_error"].as_str())
                    .unwrap_or(""),
            ),
        ]);
        t.add_row(row);
    }
    println!("{t}");
    if let Some(sources) = sources_table(&tasks) {
        println!("{sources}");
    }
    if let Some(text) = super::upgrade::history_text(p) {
        println!("{text}");
    }
}

/// The pipeline's inputs: its source, or each of its `[[inputs]]` with its kind.
fn inputs_of(p: &Value) -> String {
    match p["spec"]["inputs"].as_array().filter(|i| !i.is_empty()) {
        None => p["source"].as_str().unwrap_or("").to_string(),
        Some(inputs) => inputs
            .iter()
            .map(|i| {
                let name = i["name"].as_str().unwrap_or("?");
                match i["kind"].as_str() {
                    Some(kind) if kind != "stream" => format!("{name} ({kind})"),
                    _ => name.to_string(),
                }
            })
            .collect::<Vec<_>>()
            .join(" + "),
    }
}

/// Each source of the tasks of a pipeline with several inputs.
fn sources_table(tasks: &[Value]) -> Option<String> {
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .flat_map(|task| {
            task["sources"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |s| {
                    vec![
                        task["partition"].to_string(),
                        s["input"].as_str().unwrap_or("?").to_string(),
                        format!("{}/{}", s["topic"].as_str().unwrap_or("?"), s["partition"]),
                        s["committed_offset"].to_string(),
                        s["end_offset"].to_string(),
                        s["lag"].to_string(),
                        watermark_text(&s["watermark"], false),
                    ]
                })
        })
        .collect();
    if rows.is_empty() {
        return None;
    }
    let mut t = output::table(&[
        "PARTITION",
        "INPUT",
        "TOPIC/PARTITION",
        "COMMITTED",
        "END",
        "LAG",
        "WATERMARK",
    ]);
    for row in rows {
        t.add_row(row);
    }
    Some(t.to_string())
}

/// The shadow run's line of a status: its version, where it is and how it compares so
/// far (the tasks' committed counts).
fn shadow_line(p: &Value) -> Option<String> {
    let s = p["shadow"].as_object()?;
    let mut counts = super::shadow::Counts::default();
    for t in p["tasks"].as_array().into_iter().flatten() {
        counts.add(&t["shadow"]);
    }
    let state = s["state"].as_str().unwrap_or("?");
    Some(format!(
        "  shadow: {}@{} {state}: {} (eddy pipeline shadow {} for the report)",
        s["operator"]["id"].as_str().unwrap_or("?"),
        s["operator"]["version"],
        if state == "running" {
            counts.text()
        } else {
            output::one_line(s["reason"].as_str().unwrap_or("see its report"))
        },
        p["name"].as_str().unwrap_or("")
    ))
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
