//! `eddy pipeline upgrade`: hot-upgrade an operator (to another version, another config,
//! or both), follow its probation, or end the probation by hand; and the upgrade history
//! `eddy pipeline status` prints.

use super::client::{Client, ServerArgs, seg};
use super::output;
use reqwest::Method;
use serde_json::{Map, Value};
use std::time::Duration;

#[derive(clap::Args)]
pub struct UpgradeArgs {
    name: String,
    /// The operator's id in the pipeline, and the version (default: the latest; the
    /// version it runs when only --config changes).
    #[arg(long, value_name = "ID[@VERSION]", required_unless_present_any = ["promote", "rollback"])]
    operator: Option<String>,
    /// The new instances' config: KEY=VALUE changes one key and keeps the others
    /// (repeatable); a JSON object replaces the whole config.
    #[arg(long, value_name = "KEY=VALUE|JSON", requires = "operator")]
    config: Vec<String>,
    /// Only these partitions switch (with probation): a canary, until --promote
    /// upgrades the others or --rollback sends it back.
    #[arg(
        long,
        value_name = "P,P,...",
        value_delimiter = ',',
        requires = "operator"
    )]
    partitions: Vec<u32>,
    /// End the upgrade on probation now and keep the new version; or upgrade the
    /// partitions a canary does not cover to it.
    #[arg(long, conflicts_with_all = ["operator", "rollback"])]
    promote: bool,
    /// End the upgrade on probation now and go back to the old version; or send a
    /// canary's partitions back.
    #[arg(long, conflicts_with_all = ["operator", "no_wait"])]
    rollback: bool,
    /// Return once the new version runs, without waiting for its probation.
    #[arg(long)]
    no_wait: bool,
    /// Do not upgrade: run the version beside the live one on a copy of its state and
    /// compare their outputs record by record (`eddy pipeline shadow` shows the report).
    #[arg(long, requires = "operator", conflicts_with_all = ["partitions", "no_wait"])]
    shadow: bool,
    /// With --shadow: finish once this many records (and timers) were compared.
    #[arg(long, value_name = "N", requires = "shadow")]
    records: Option<u64>,
    /// With --shadow: finish after this long (e.g. 10m, 2h).
    #[arg(long = "for", value_name = "DURATION", requires = "shadow", value_parser = humantime::parse_duration)]
    for_: Option<std::time::Duration>,
}

pub async fn run(client: &Client, args: &ServerArgs, up: UpgradeArgs) -> anyhow::Result<()> {
    let name = up.name.as_str();
    let u = if up.promote || up.rollback {
        let action = if up.promote { "promote" } else { "rollback" };
        client
            .json(
                Method::POST,
                &format!("/v1/pipelines/{}/upgrade/{action}", seg(name)),
                None,
            )
            .await?
    } else if up.shadow {
        let operator = up.operator.as_deref().unwrap_or_default();
        let mut body = request(client, name, operator, &up).await?;
        if let Some(n) = up.records {
            body["records"] = serde_json::json!(n);
        }
        if let Some(d) = up.for_ {
            body["for_ms"] = serde_json::json!(d.as_millis() as u64);
        }
        let r: Value = client
            .json(
                Method::POST,
                &format!("/v1/pipelines/{}/shadow", seg(name)),
                Some((body.to_string().into_bytes(), "application/json")),
            )
            .await?;
        if args.json {
            output::json(&r);
        } else {
            let s = &r["shadow"];
            println!(
                "shadow of {} started: {}@{} runs beside the live version, its outputs go to {} (`eddy pipeline shadow {name}` for the report)",
                s["operator"]["id"].as_str().unwrap_or("?"),
                s["operator"]["id"].as_str().unwrap_or("?"),
                s["operator"]["version"],
                r["topic"].as_str().unwrap_or("")
            );
        }
        return Ok(());
    } else {
        let operator = up.operator.as_deref().unwrap_or_default();
        start(client, args, name, operator, &up).await?
    };
    // A canary's promotion is an upgrade of the other partitions, on probation.
    let u = if up.no_wait {
        u
    } else {
        follow(client, args, name, u).await?
    };
    report(args, name, &u)
}

/// Starts an upgrade; answers once the new version runs on probation.
async fn start(
    client: &Client,
    args: &ServerArgs,
    name: &str,
    operator: &str,
    up: &UpgradeArgs,
) -> anyhow::Result<Value> {
    let mut body = request(client, name, operator, up).await?;
    if !up.partitions.is_empty() {
        body["partitions"] = serde_json::json!(up.partitions);
    }
    let id = body["operator"].as_str().unwrap_or_default().to_string();
    let spinner = super::progress::spinner(
        &format!("upgrading {id} in {name}: pausing, savepoint, swap"),
        args.json,
    );
    let u: Value = client
        .json(
            Method::POST,
            &format!("/v1/pipelines/{}/upgrade", seg(name)),
            Some((body.to_string().into_bytes(), "application/json")),
        )
        .await?;
    spinner.finish_and_clear();
    Ok(u)
}

/// The operator, version and config an upgrade (or a shadow) asks for.
async fn request(
    client: &Client,
    name: &str,
    operator: &str,
    up: &UpgradeArgs,
) -> anyhow::Result<Value> {
    let config = &up.config;
    let (id, version) = match operator.split_once('@') {
        Some((id, v)) => {
            let v: u32 = v.parse().map_err(|_| {
                anyhow::anyhow!("--operator {operator}: the version after @ must be a number")
            })?;
            (id, Some(v))
        }
        None => (operator, None),
    };
    let mut body = serde_json::json!({ "operator": id, "version": "latest" });
    if let Some(v) = version {
        body["version"] = serde_json::json!(v);
    }
    if !config.is_empty() {
        let status: Value = client
            .json(Method::GET, &format!("/v1/pipelines/{}", seg(name)), None)
            .await?;
        body["config"] = Value::Object(new_config(&status, id, config)?);
        // A new config alone keeps the version the operator runs.
        let running = status["operators"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|o| o["id"] == id);
        if let (None, Some(o)) = (version, running) {
            body["version"] = o["version"].clone();
        }
    }
    Ok(body)
}

/// Follows an upgrade on probation to its end.
pub(super) async fn follow(
    client: &Client,
    args: &ServerArgs,
    name: &str,
    mut u: Value,
) -> anyhow::Result<Value> {
    if u["result"] == "probation" {
        let spinner = super::progress::spinner("new version on probation", args.json);
        while u["result"] == "probation" {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let status: Value = client
                .json(Method::GET, &format!("/v1/pipelines/{}", seg(name)), None)
                .await?;
            if let Some(last) = status["upgrades"].as_array().and_then(|a| a.last())
                && last["started_ms"] == u["started_ms"]
            {
                u = last.clone();
            }
            let (done, rejected) = probation_progress(&status);
            spinner.set_message(format!(
                "new version on probation: {done} of {} records, {rejected} rejected (Ctrl-C leaves it on probation; --promote or --rollback ends it)",
                status["spec"]["settings"]["probation_records"]
            ));
        }
        spinner.finish_and_clear();
    }
    Ok(u)
}

/// The config an upgrade hands the new instances: the operator's current config with
/// each KEY=VALUE set, or a JSON object given whole (and KEY=VALUE set on it).
fn new_config(status: &Value, id: &str, given: &[String]) -> anyhow::Result<Map<String, Value>> {
    let operators = status["spec"]["operators"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let current = operators
        .iter()
        .find(|o| o["id"].as_str().or(o["name"].as_str()) == Some(id))
        .and_then(|o| o["config"].as_object().cloned())
        .unwrap_or_default();
    let mut config = current;
    for g in given {
        if g.trim_start().starts_with('{') {
            config = serde_json::from_str(g).map_err(|e| {
                anyhow::anyhow!(
                    "--config {g}: not a JSON object (of strings, numbers, booleans, arrays or objects): {e}"
                )
            })?;
        } else {
            let (k, v) = g.split_once('=').ok_or_else(|| {
                anyhow::anyhow!(
                    "--config {g}: write KEY=VALUE, or a JSON object for the whole config"
                )
            })?;
            config.insert(k.to_string(), Value::String(v.to_string()));
        }
    }
    Ok(config)
}

/// Records processed and rejected on probation by the tasks of a pipeline status.
fn probation_progress(status: &Value) -> (u64, u64) {
    status["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["probation"].as_object())
        .fold((0, 0), |(d, r), p| {
            (
                d + p["processed"].as_u64().unwrap_or(0),
                r + p["errors"].as_u64().unwrap_or(0),
            )
        })
}

/// Prints how an upgrade went; an error when it was rolled back.
pub(super) fn report(args: &ServerArgs, name: &str, u: &Value) -> anyhow::Result<()> {
    let id = u["operator"].as_str().unwrap_or("?");
    if args.json {
        output::json(u);
    } else {
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
        let note = u["reason"]
            .as_str()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        match u["result"].as_str() {
            Some("succeeded") => {
                println!(
                    "upgrade succeeded: {name} runs {id}@{}{note}",
                    u["to_version"]
                )
            }
            Some("succeeded_unexercised") => println!(
                "upgrade succeeded unexercised: {name} runs {id}@{}{note}",
                u["to_version"]
            ),
            Some("probation") => println!(
                "version {} runs on probation (see `eddy pipeline status {name}`)",
                u["to_version"]
            ),
            Some("canary") => println!(
                "canary: {name} runs {id}@{} on partitions {}; the others stay until `eddy pipeline upgrade {name} --promote` (or `--rollback`)",
                u["to_version"], u["partitions"]
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

/// Upgrades a status shows, the latest last (`--json` has them all).
const UPGRADES_SHOWN: usize = 10;

/// The upgrade history as a titled table; an upgrade on probation shows how far its
/// probation is (records its tasks processed of `probation_records`, rejected ones).
pub(super) fn history_text(p: &Value) -> Option<String> {
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
            let (done, rejected) = probation_progress(p);
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
            output::one_line(u["reason"].as_str().unwrap_or("")),
        ]);
    }
    Some(format!("{title}\n{t}"))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let text = history_text(&status).unwrap();
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
        assert_eq!(history_text(&serde_json::json!({ "upgrades": [] })), None);
    }

    #[test]
    fn a_config_changes_keys_or_comes_whole() {
        let status = serde_json::json!({ "spec": { "operators": [
            { "name": "fraud", "config": { "threshold": "5", "mode": "strict" } },
        ] } });
        let set = new_config(&status, "fraud", &["threshold=7".into()]).unwrap();
        assert_eq!(
            Value::Object(set),
            serde_json::json!({ "threshold": "7", "mode": "strict" })
        );
        let whole = new_config(
            &status,
            "fraud",
            &[r#"{"threshold": 9}"#.into(), "x=1".into()],
        )
        .unwrap();
        assert_eq!(
            Value::Object(whole),
            serde_json::json!({ "threshold": 9, "x": "1" })
        );
        assert!(new_config(&status, "fraud", &["threshold".into()]).is_err());
        assert!(new_config(&status, "fraud", &["{ nope".into()]).is_err());
    }
}
