//! `eddy topic create|list|describe|delete|produce|consume`.

use super::client::{Client, ServerArgs, seg};
use super::output;
use anyhow::Context as _;
use clap::Subcommand;
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use std::io::{BufRead, Write};
use std::path::PathBuf;

/// Lines sent per produce request.
const PRODUCE_CHUNK: usize = 5_000;

#[derive(Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// Delete records older than this (default 7 days; 0 keeps them forever).
        #[arg(long)]
        retention_ms: Option<u64>,
        /// Keep at most about this many bytes per partition.
        #[arg(long)]
        retention_bytes: Option<u64>,
    },
    /// List topics.
    List,
    /// Show a topic's partitions and offsets.
    Describe { name: String },
    /// Delete a topic and its records.
    Delete { name: String },
    /// Append records read from stdin (or --file): JSON events one per line, or plain
    /// text lines (each line one record's value).
    Produce {
        name: String,
        #[arg(long)]
        file: Option<PathBuf>,
        /// `json` (one event object per line), `text` (each line is a value), or `auto`
        /// (json when the first line starts with `{`).
        #[arg(long, default_value = "auto")]
        format: String,
        /// Key for text lines.
        #[arg(long)]
        key: Option<String>,
    },
    /// Print records (JSON lines with --json); --follow keeps printing new ones.
    Consume {
        name: String,
        #[arg(long)]
        partition: Option<u32>,
        #[arg(long)]
        offset: Option<u64>,
        /// `start` or `end` (with --follow: only new records).
        #[arg(long)]
        from: Option<String>,
        /// Most records to print (1 to 10000; ignored with --follow).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        limit: u64,
        #[arg(long)]
        follow: bool,
    },
}

pub async fn run(cmd: TopicCommand, args: &ServerArgs) -> anyhow::Result<()> {
    let client = Client::new(args);
    match cmd {
        TopicCommand::Create {
            name,
            partitions,
            retention_ms,
            retention_bytes,
        } => {
            let body = json!({ "name": name, "partitions": partitions, "retention_ms": retention_ms, "retention_bytes": retention_bytes });
            let t: Value = client
                .json(
                    Method::POST,
                    "/v1/topics",
                    Some((body.to_string().into_bytes(), "application/json")),
                )
                .await?;
            if args.json {
                output::json(&t);
            } else {
                println!(
                    "created topic {} with {} partition(s)",
                    t["name"].as_str().unwrap_or(""),
                    t["partitions"]
                );
            }
        }
        TopicCommand::List => {
            let topics: Vec<Value> = client.json(Method::GET, "/v1/topics", None).await?;
            if args.json {
                return {
                    output::json(&topics);
                    Ok(())
                };
            }
            let mut t = output::table(&["NAME", "PARTITIONS", "RECORDS", "RETENTION"]);
            for topic in &topics {
                let records: u64 = topic["partition_offsets"]
                    .as_array()
                    .map(|ps| {
                        ps.iter()
                            .map(|p| {
                                p["end_offset"].as_u64().unwrap_or(0)
                                    - p["start_offset"].as_u64().unwrap_or(0)
                            })
                            .sum()
                    })
                    .unwrap_or(0);
                let retention = match topic["retention_ms"].as_u64() {
                    Some(ms) => {
                        humantime::format_duration(std::time::Duration::from_millis(ms)).to_string()
                    }
                    None => "forever".into(),
                };
                t.add_row(vec![
                    topic["name"].as_str().unwrap_or("").to_string(),
                    topic["partitions"].to_string(),
                    records.to_string(),
                    retention,
                ]);
            }
            println!("{t}");
        }
        TopicCommand::Describe { name } => {
            let topic: Value = client
                .json(Method::GET, &format!("/v1/topics/{}", seg(&name)), None)
                .await?;
            if args.json {
                return {
                    output::json(&topic);
                    Ok(())
                };
            }
            let mut t = output::table(&["PARTITION", "START", "END", "RECORDS"]);
            for p in topic["partition_offsets"].as_array().into_iter().flatten() {
                let (s, e) = (
                    p["start_offset"].as_u64().unwrap_or(0),
                    p["end_offset"].as_u64().unwrap_or(0),
                );
                t.add_row(vec![
                    p["partition"].to_string(),
                    s.to_string(),
                    e.to_string(),
                    (e - s).to_string(),
                ]);
            }
            println!(
                "{name} (created {})\n{t}",
                output::time(topic["created_ms"].as_i64().unwrap_or(0))
            );
        }
        TopicCommand::Delete { name } => {
            client
                .send(
                    Method::DELETE,
                    &format!("/v1/topics/{}", seg(&name)),
                    None,
                    None,
                )
                .await?;
            if !args.json {
                println!("deleted topic {name}");
            }
        }
        TopicCommand::Produce {
            name,
            file,
            format,
            key,
        } => produce(&client, args, &name, file, &format, key).await?,
        TopicCommand::Consume {
            name,
            partition,
            offset,
            from,
            limit,
            follow,
        } => {
            let mut query = vec![format!("limit={limit}")];
            query.extend(partition.map(|p| format!("partition={p}")));
            query.extend(offset.map(|o| format!("offset={o}")));
            query.extend(from.map(|f| format!("from={}", seg(&f))));
            if follow {
                query.push("follow=true".into());
            }
            let path = format!("/v1/topics/{}/records?{}", seg(&name), query.join("&"));
            if follow {
                let resp = client
                    .send(Method::GET, &path, None, Some("text/event-stream"))
                    .await?;
                let mut stream = resp.bytes_stream();
                let mut buf = String::new();
                while let Some(chunk) = stream.next().await {
                    buf.push_str(&String::from_utf8_lossy(
                        &chunk.context("the server closed the stream")?,
                    ));
                    while let Some(nl) = buf.find('\n') {
                        let line: String = buf.drain(..=nl).collect();
                        if let Some(data) = line.trim_end().strip_prefix("data:") {
                            print_record(
                                &serde_json::from_str(data.trim()).unwrap_or(Value::Null),
                                args.json,
                            );
                        }
                    }
                }
            } else {
                let out: Value = client.json(Method::GET, &path, None).await?;
                for r in out["records"].as_array().into_iter().flatten() {
                    print_record(r, args.json);
                }
            }
        }
    }
    Ok(())
}

fn print_record(r: &Value, json: bool) {
    let mut stdout = std::io::stdout().lock();
    if json {
        let _ = writeln!(stdout, "{r}");
    } else {
        let text = |f: &str| {
            r[f].as_str().map(String::from).or_else(|| {
                r[format!("{f}_b64")]
                    .as_str()
                    .map(|b| format!("(base64) {b}"))
            })
        };
        let _ = writeln!(
            stdout,
            "{}:{}\t{}\t{}",
            r["partition"],
            r["offset"],
            text("key").unwrap_or_else(|| "-".into()),
            text("value").unwrap_or_default()
        );
    }
}

async fn produce(
    client: &Client,
    args: &ServerArgs,
    name: &str,
    file: Option<PathBuf>,
    format: &str,
    key: Option<String>,
) -> anyhow::Result<()> {
    let reader: Box<dyn BufRead> = match &file {
        Some(f) => Box::new(std::io::BufReader::new(
            std::fs::File::open(f).with_context(|| format!("cannot open {}", f.display()))?,
        )),
        None => Box::new(std::io::stdin().lock()),
    };
    let mut json_lines: Option<bool> = match format {
        "json" => Some(true),
        "text" => Some(false),
        "auto" => None,
        other => anyhow::bail!("--format {other}: use json, text or auto"),
    };
    let path = format!("/v1/topics/{}/records", seg(name));
    let (mut chunk, mut total) = (String::new(), 0usize);
    let mut lines_in_chunk = 0;
    for line in reader.lines() {
        let line = line.context("reading the input")?;
        if line.trim().is_empty() {
            continue;
        }
        let is_json = *json_lines.get_or_insert_with(|| line.trim_start().starts_with('{'));
        if is_json {
            chunk.push_str(&line);
        } else {
            let mut event = json!({ "value": line });
            if let Some(k) = &key {
                event["key"] = json!(k);
            }
            chunk.push_str(&event.to_string());
        }
        chunk.push('\n');
        lines_in_chunk += 1;
        if lines_in_chunk == PRODUCE_CHUNK {
            total += send_chunk(client, &path, std::mem::take(&mut chunk)).await?;
            lines_in_chunk = 0;
        }
    }
    if !chunk.is_empty() {
        total += send_chunk(client, &path, chunk).await?;
    }
    if args.json {
        output::json(&json!({ "count": total }));
    } else {
        println!("produced {total} record(s) to {name}");
    }
    Ok(())
}

async fn send_chunk(client: &Client, path: &str, chunk: String) -> anyhow::Result<usize> {
    let v: Value = client
        .json(
            Method::POST,
            path,
            Some((chunk.into_bytes(), "application/x-ndjson")),
        )
        .await?;
    Ok(v["count"].as_u64().unwrap_or(0) as usize)
}
