//! `eddy state get|scan`: interactive queries of an operator's committed state.

use super::client::{Client, ServerArgs, seg};
use super::output;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::Value;

#[derive(Subcommand)]
pub enum StateCommand {
    /// The committed value under a key (in the key's partition unless --partition).
    Get {
        #[command(flatten)]
        store: StoreArgs,
        key: String,
        /// The key (and --prefix, --start, --end) are base64.
        #[arg(long)]
        b64: bool,
        #[arg(long)]
        partition: Option<u32>,
    },
    /// Committed entries in key order per partition: all, a prefix, or start to end.
    Scan {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long, conflicts_with_all = ["start", "end"])]
        prefix: Option<String>,
        /// From this key on (included).
        #[arg(long)]
        start: Option<String>,
        /// Up to this key (excluded).
        #[arg(long)]
        end: Option<String>,
        #[arg(long)]
        b64: bool,
        /// One partition (default: every one).
        #[arg(long)]
        partition: Option<u32>,
        /// Entries per page (the server allows 1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Go on from an earlier page (its `continuation`).
        #[arg(long, conflicts_with = "all")]
        continuation: Option<String>,
        /// Every page, not just the first.
        #[arg(long)]
        all: bool,
    },
}

/// Which store: a pipeline's operator (its id) and the store's name.
#[derive(Args)]
pub struct StoreArgs {
    pipeline: String,
    operator: String,
    store: String,
}

impl StoreArgs {
    fn path(&self) -> String {
        format!(
            "/v1/pipelines/{}/state/{}/{}",
            seg(&self.pipeline),
            seg(&self.operator),
            seg(&self.store)
        )
    }
}

pub async fn run(cmd: StateCommand, args: &ServerArgs) -> anyhow::Result<()> {
    let client = Client::new(args);
    match cmd {
        StateCommand::Get {
            store,
            key,
            b64,
            partition,
        } => {
            let mut query = vec![param("key", b64, &key)];
            query.extend(partition.map(|p| format!("partition={p}")));
            let read: Value = client
                .json(Method::GET, &with_query(&store.path(), &query), None)
                .await?;
            print(&read, args.json);
        }
        StateCommand::Scan {
            store,
            prefix,
            start,
            end,
            b64,
            partition,
            limit,
            continuation,
            all,
        } => {
            let mut query: Vec<String> = [("prefix", prefix), ("start", start), ("end", end)]
                .into_iter()
                .filter_map(|(name, v)| v.map(|v| param(name, b64, &v)))
                .collect();
            query.extend(partition.map(|p| format!("partition={p}")));
            query.push(format!("limit={limit}"));
            let mut next = continuation;
            let mut pages = Vec::new();
            loop {
                let mut q = query.clone();
                q.extend(next.as_ref().map(|c| format!("continuation={}", seg(c))));
                let page: Value = client
                    .json(Method::GET, &with_query(&store.path(), &q), None)
                    .await?;
                next = page["continuation"].as_str().map(str::to_string);
                pages.push(page);
                if !all || next.is_none() {
                    break;
                }
            }
            if args.json {
                // One page as the server sends it; --all as one list of entries.
                let entries: Vec<&Value> = pages
                    .iter()
                    .flat_map(|p| p["entries"].as_array().into_iter().flatten())
                    .collect();
                match pages.as_slice() {
                    [one] => output::json(one),
                    _ => output::json(&serde_json::json!({ "entries": entries })),
                }
                return Ok(());
            }
            for page in &pages {
                print(page, false);
            }
            if let Some(c) = next {
                println!("more: --continuation {c}");
            }
        }
    }
    Ok(())
}

/// `name=value` (or `name_b64=value`), encoded for a query string.
fn param(name: &str, b64: bool, value: &str) -> String {
    let suffix = if b64 { "_b64" } else { "" };
    format!("{name}{suffix}={}", seg(value))
}

fn with_query(path: &str, query: &[String]) -> String {
    format!("{path}?{}", query.join("&"))
}

/// A page of entries as a table (or as the server's JSON).
fn print(read: &Value, json: bool) {
    if json {
        output::json(read);
        return;
    }
    let mut t = output::table(&["PARTITION", "KEY", "VALUE", "NUMBER"]);
    for e in read["entries"].as_array().into_iter().flatten() {
        let shown = |text: &str, b64: &str| match (e[text].as_str(), e[b64].as_str()) {
            (Some(t), _) => t.to_string(),
            (None, Some(b)) => format!("(base64) {b}"),
            (None, None) => String::new(),
        };
        t.add_row(vec![
            e["partition"].to_string(),
            shown("key", "key_b64"),
            shown("value", "value_b64"),
            e["number"]
                .as_i64()
                .map(|n| n.to_string())
                .unwrap_or_default(),
        ]);
    }
    println!("{t}");
}
