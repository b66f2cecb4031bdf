//! `eddy savepoint list|show|delete|download|upload`.

use super::client::{Client, ServerArgs, seg};
use super::{output, progress};
use anyhow::Context as _;
use clap::Subcommand;
use futures::StreamExt;
use reqwest::Method;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum SavepointCommand {
    /// List savepoints (of one pipeline with --pipeline).
    List {
        #[arg(long)]
        pipeline: Option<String>,
    },
    /// Show a savepoint's manifest.
    Show { id: String },
    /// Delete a savepoint.
    Delete { id: String },
    /// Download a savepoint as one archive (default: ID.tar.gz).
    Download {
        id: String,
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Upload a savepoint archive (from another server's download).
    Upload { file: PathBuf },
}

pub async fn run(cmd: SavepointCommand, args: &ServerArgs) -> anyhow::Result<()> {
    let client = Client::new(args);
    match cmd {
        SavepointCommand::List { pipeline } => {
            let path = match &pipeline {
                Some(p) => format!("/v1/pipelines/{}/savepoints", seg(p)),
                None => "/v1/savepoints".into(),
            };
            let all: Vec<Value> = client.json(Method::GET, &path, None).await?;
            if args.json {
                return {
                    output::json(&all);
                    Ok(())
                };
            }
            let mut t = output::table(&["ID", "PIPELINE", "TAKEN", "KEYS", "OPERATORS"]);
            for m in &all {
                let ops: Vec<String> = m["operators"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|o| format!("{}@{}", o["name"].as_str().unwrap_or(""), o["version"]))
                    .collect();
                t.add_row(vec![
                    m["id"].as_str().unwrap_or("").to_string(),
                    m["pipeline"].as_str().unwrap_or("").to_string(),
                    output::time(m["created_ms"].as_i64().unwrap_or(0)),
                    m["keys"].to_string(),
                    ops.join(", "),
                ]);
            }
            println!("{t}");
        }
        SavepointCommand::Show { id } => {
            let m: Value = client
                .json(Method::GET, &format!("/v1/savepoints/{}", seg(&id)), None)
                .await?;
            if args.json {
                return {
                    output::json(&m);
                    Ok(())
                };
            }
            println!(
                "savepoint {id} of {} taken {}",
                m["pipeline"].as_str().unwrap_or(""),
                output::time(m["created_ms"].as_i64().unwrap_or(0))
            );
            let mut tasks = output::table(&["STAGE", "PARTITION", "OFFSET", "WATERMARK"]);
            for t in m["tasks"].as_array().into_iter().flatten() {
                tasks.add_row(vec![
                    t["stage"].to_string(),
                    t["partition"].to_string(),
                    t["offset"].to_string(),
                    t["watermark"].to_string(),
                ]);
            }
            println!("{tasks}");
            let mut stores = output::table(&["OPERATOR", "STORE", "PARTITION", "KEYS", "BYTES"]);
            for s in m["stores"].as_array().into_iter().flatten() {
                stores.add_row(vec![
                    s["operator"].as_str().unwrap_or("").to_string(),
                    s["store"].as_str().unwrap_or("").to_string(),
                    s["partition"].to_string(),
                    s["keys"].to_string(),
                    s["bytes"].to_string(),
                ]);
            }
            println!("{stores}");
        }
        SavepointCommand::Delete { id } => {
            client
                .send(
                    Method::DELETE,
                    &format!("/v1/savepoints/{}", seg(&id)),
                    None,
                    None,
                )
                .await?;
            if !args.json {
                println!("deleted savepoint {id}");
            }
        }
        SavepointCommand::Download { id, output } => {
            let path = output.unwrap_or_else(|| PathBuf::from(format!("{id}.tar.gz")));
            download(&client, &id, &path, args.json).await?;
            if !args.json {
                println!("wrote {}", path.display());
            }
        }
        SavepointCommand::Upload { file } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let pb = progress::bytes("uploading", Some(bytes.len() as u64), args.json);
            let counter = pb.clone();
            let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
                bytes.chunks(256 << 10).map(|c| Ok(c.to_vec())).collect();
            let body =
                reqwest::Body::wrap_stream(futures::stream::iter(chunks).inspect(move |c| {
                    if let Ok(c) = c {
                        counter.inc(c.len() as u64);
                    }
                }));
            let resp = client
                .send_body(
                    Method::POST,
                    "/v1/savepoints",
                    Some((body, "application/gzip")),
                    Some("application/json"),
                )
                .await?;
            pb.set_message("checking");
            let m: Value = resp.json().await.context("reading the server's answer")?;
            pb.finish_and_clear();
            if args.json {
                output::json(&m);
            } else {
                println!(
                    "uploaded savepoint {} of {} ({} keys)",
                    m["id"].as_str().unwrap_or(""),
                    m["pipeline"].as_str().unwrap_or(""),
                    m["keys"]
                );
            }
        }
    }
    Ok(())
}

/// Streams a savepoint archive to `path`, with a progress bar.
pub async fn download(client: &Client, id: &str, path: &Path, quiet: bool) -> anyhow::Result<()> {
    let resp = client
        .send(
            Method::GET,
            &format!("/v1/savepoints/{}/archive", seg(id)),
            None,
            Some("application/gzip"),
        )
        .await?;
    let pb = progress::bytes("downloading", resp.content_length(), quiet);
    let mut file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.context("the download broke off")?;
        file.write_all(&chunk)
            .with_context(|| format!("writing {}", path.display()))?;
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    Ok(())
}
