//! `eddy operator push|list|show|delete`.

use super::client::{Client, ServerArgs, seg};
use super::output;
use anyhow::Context as _;
use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum OperatorCommand {
    /// Upload a component as the next version of NAME.
    Push { name: String, file: PathBuf },
    /// List operators and their latest versions.
    List,
    /// Show an operator's versions (or one version; --output saves its binary).
    Show {
        name: String,
        #[arg(long)]
        version: Option<u32>,
        /// With --version: write the component binary to this file.
        #[arg(long, requires = "version")]
        output: Option<PathBuf>,
    },
    /// Delete an operator (every version, or one with --version).
    Delete {
        name: String,
        #[arg(long)]
        version: Option<u32>,
    },
}

pub async fn run(cmd: OperatorCommand, args: &ServerArgs) -> anyhow::Result<()> {
    let client = Client::new(args);
    match cmd {
        OperatorCommand::Push { name, file } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let v: Value = client
                .json(
                    Method::PUT,
                    &format!("/v1/operators/{}", seg(&name)),
                    Some((bytes, "application/wasm")),
                )
                .await?;
            if args.json {
                output::json(&v);
            } else {
                println!(
                    "{}@{} ({} bytes, sha256 {})",
                    v["name"].as_str().unwrap_or(""),
                    v["version"],
                    v["size"],
                    v["digest"].as_str().unwrap_or("")
                );
            }
        }
        OperatorCommand::List => {
            let all: Vec<Value> = client.json(Method::GET, "/v1/operators", None).await?;
            if args.json {
                return {
                    output::json(&all);
                    Ok(())
                };
            }
            let mut t = output::table(&["NAME", "LATEST", "VERSIONS", "SIZE", "UPLOADED"]);
            for o in &all {
                let latest = o["versions"]
                    .as_array()
                    .and_then(|v| v.last())
                    .cloned()
                    .unwrap_or_default();
                t.add_row(vec![
                    o["name"].as_str().unwrap_or("").to_string(),
                    o["latest"].to_string(),
                    o["versions"].as_array().map_or(0, Vec::len).to_string(),
                    latest["size"].to_string(),
                    output::time(latest["created_ms"].as_i64().unwrap_or(0)),
                ]);
            }
            println!("{t}");
        }
        OperatorCommand::Show {
            name,
            version: Some(v),
            output: Some(path),
        } => {
            let resp = client
                .send(
                    Method::GET,
                    &format!("/v1/operators/{}/versions/{v}", seg(&name)),
                    None,
                    Some("application/wasm"),
                )
                .await?;
            let bytes = resp.bytes().await.context("reading the binary")?;
            std::fs::write(&path, &bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!(
                "wrote {name}@{v} to {} ({} bytes)",
                path.display(),
                bytes.len()
            );
        }
        OperatorCommand::Show { name, version, .. } => {
            let versions: Vec<Value> = match version {
                Some(v) => vec![
                    client
                        .json(
                            Method::GET,
                            &format!("/v1/operators/{}/versions/{v}", seg(&name)),
                            None,
                        )
                        .await?,
                ],
                None => {
                    let o: Value = client
                        .json(Method::GET, &format!("/v1/operators/{}", seg(&name)), None)
                        .await?;
                    o["versions"].as_array().cloned().unwrap_or_default()
                }
            };
            if args.json {
                return {
                    output::json(&versions);
                    Ok(())
                };
            }
            let mut t = output::table(&[
                "VERSION", "LANGUAGE", "SIZE", "DIGEST", "UPLOADED", "IMPORTS",
            ]);
            for v in &versions {
                let imports: Vec<&str> = v["imports"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                t.add_row(vec![
                    v["version"].to_string(),
                    v["language"].as_str().unwrap_or("-").to_string(),
                    v["size"].to_string(),
                    v["digest"]
                        .as_str()
                        .unwrap_or("")
                        .chars()
                        .take(16)
                        .collect::<String>(),
                    output::time(v["created_ms"].as_i64().unwrap_or(0)),
                    imports.join("\n"),
                ]);
            }
            println!("{name}\n{t}");
        }
        OperatorCommand::Delete { name, version } => {
            let path = match version {
                Some(v) => format!("/v1/operators/{}/versions/{v}", seg(&name)),
                None => format!("/v1/operators/{}", seg(&name)),
            };
            client.send(Method::DELETE, &path, None, None).await?;
            if !args.json {
                println!(
                    "deleted {name}{}",
                    version.map(|v| format!("@{v}")).unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}
