//! `eddy pipeline shadow`: a shadow run's report, its promotion to a hot upgrade, or its
//! discard (`eddy pipeline upgrade --shadow` starts one).

use super::client::{Client, ServerArgs, seg};
use super::output;
use reqwest::Method;
use serde_json::Value;

#[derive(clap::Args)]
pub struct ShadowArgs {
    name: String,
    /// Hot-upgrade the operator to the shadowed version and config (from the live
    /// state, with probation); the shadow is discarded first.
    #[arg(long, conflicts_with = "discard")]
    promote: bool,
    /// Drop the shadow run, its state and its report.
    #[arg(long)]
    discard: bool,
    /// With --promote: return once the new version runs, without waiting for its
    /// probation.
    #[arg(long, requires = "promote")]
    no_wait: bool,
}

pub async fn run(client: &Client, args: &ServerArgs, s: ShadowArgs) -> anyhow::Result<()> {
    let name = s.name.as_str();
    let path = format!("/v1/pipelines/{}/shadow", seg(name));
    if s.promote {
        let u: Value = client
            .json(Method::POST, &format!("{path}/promote"), None)
            .await?;
        let u = if s.no_wait {
            u
        } else {
            super::upgrade::follow(client, args, name, u).await?
        };
        return super::upgrade::report(args, name, &u);
    }
    let report: Value = if s.discard {
        client
            .json(Method::POST, &format!("{path}/discard"), None)
            .await?
    } else {
        client.json(Method::GET, &path, None).await?
    };
    if args.json {
        output::json(&report);
    } else {
        println!("{}", report_text(&report));
        if s.discard {
            println!("discarded the shadow run of {name}");
        }
    }
    Ok(())
}

/// Comparison counts, summed from JSON objects of the API's `ShadowCounts`.
#[derive(Default)]
pub(super) struct Counts([u64; 8]);

const FIELDS: [&str; 8] = [
    "compared",
    "same",
    "different",
    "only_live",
    "only_shadow",
    "errors",
    "live_errors",
    "shadow_errors",
];

impl Counts {
    pub(super) fn add(&mut self, v: &Value) {
        for (n, f) in self.0.iter_mut().zip(FIELDS) {
            *n += v[f].as_u64().unwrap_or(0);
        }
    }

    pub(super) fn text(&self) -> String {
        let [
            compared,
            same,
            different,
            only_live,
            only_shadow,
            errors,
            live,
            shadow,
        ] = self.0;
        format!(
            "{compared} compared: {same} same, {different} different, {only_live} only live, {only_shadow} only shadow, {errors} errors ({live} live, {shadow} shadow)"
        )
    }
}

/// A shadow report as text: what runs, the counts, per partition, and the sample.
fn report_text(r: &Value) -> String {
    let s = &r["shadow"];
    let id = s["operator"]["id"].as_str().unwrap_or("?");
    let mut out = format!(
        "shadow of {id} in {}: {id}@{} beside {id}@{}, {}",
        r["pipeline"].as_str().unwrap_or(""),
        s["operator"]["version"],
        s["live_version"],
        s["state"].as_str().unwrap_or("?"),
    );
    let mut limits = Vec::new();
    if let Some(n) = s["records"].as_u64() {
        limits.push(format!("{n} records"));
    }
    if let Some(ms) = s["until_ms"].as_u64() {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
        limits.push(format!("{}", humantime::format_rfc3339_seconds(at)));
    }
    if !limits.is_empty() {
        out.push_str(&format!(" (until {})", limits.join(" or ")));
    }
    if let Some(reason) = s["reason"].as_str() {
        out.push_str(&format!(": {}", output::one_line(reason)));
    }
    let mut total = Counts::default();
    total.add(&r["counts"]);
    out.push_str(&format!(
        "\n  outputs to topic {} ({} records)\n  {}",
        r["topic"].as_str().unwrap_or(""),
        r["counts"]["shadow_outputs"],
        total.text()
    ));
    let mut t = output::table(&[
        "PARTITION",
        "COMPARED",
        "SAME",
        "DIFFERENT",
        "ONLY LIVE",
        "ONLY SHADOW",
        "ERRORS",
        "STOPPED",
    ]);
    for p in r["partitions"].as_array().into_iter().flatten() {
        let c = &p["counts"];
        let mut row = vec![p["partition"].to_string()];
        row.extend(FIELDS[..6].iter().map(|f| c[*f].to_string()));
        row.push(output::one_line(p["failure"].as_str().unwrap_or("")));
        t.add_row(row);
    }
    out.push_str(&format!("\n{t}"));
    let sample = r["sample"].as_array().cloned().unwrap_or_default();
    if !sample.is_empty() {
        let mut t = output::table(&["PARTITION", "OFFSET", "OUTCOME", "INPUT", "LIVE", "SHADOW"]);
        for d in &sample {
            let input = match (&d["input"], &d["timer"]) {
                (i, _) if i.is_object() => shown(i),
                (_, timer) if timer.is_object() => {
                    format!("timer {} at {}", shown_key(timer), timer["timestamp"])
                }
                _ => String::new(),
            };
            let side = |records: &Value, error: &Value| match error.as_str() {
                Some(e) => format!("error: {}", output::one_line(e)),
                None => records
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(shown)
                    .collect::<Vec<_>>()
                    .join(" | "),
            };
            t.add_row(vec![
                d["partition"].to_string(),
                d["offset"].as_u64().map_or("-".into(), |o| o.to_string()),
                d["outcome"].as_str().unwrap_or("").replace('_', " "),
                input,
                side(&d["live"], &d["live_error"]),
                side(&d["shadow"], &d["shadow_error"]),
            ]);
        }
        out.push_str(&format!("\ndifferences (a sample):\n{t}"));
    }
    out
}

fn shown_key(r: &Value) -> String {
    r["key"].as_str().unwrap_or("-").to_string()
}

/// A record as `key=value` (with its port, for a side output).
fn shown(r: &Value) -> String {
    let port = r["port"]
        .as_str()
        .map(|p| format!(" ({p})"))
        .unwrap_or_default();
    output::one_line(&format!(
        "{}={}{port}",
        shown_key(r),
        r["value"].as_str().unwrap_or("")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_shows_its_counts_partitions_and_differences() {
        let r = serde_json::json!({
            "pipeline": "fraud",
            "topic": "fraud.shadow",
            "shadow": { "operator": { "id": "fraud", "version": 2 }, "live_version": 1,
                        "state": "running", "records": 1000 },
            "counts": { "compared": 10, "same": 7, "different": 2, "errors": 1,
                        "shadow_errors": 1, "shadow_outputs": 9 },
            "partitions": [{ "partition": 0, "counts": { "compared": 10, "same": 7 } }],
            "sample": [
                { "partition": 0, "offset": 4, "outcome": "different",
                  "input": { "key": "c1", "value": "{\"amount\":600}", "timestamp": 1 },
                  "live": [{ "key": "c1", "value": "ok", "timestamp": 1 }],
                  "shadow": [{ "key": "c1", "value": "alert", "timestamp": 1, "port": "alerts" }] },
                { "partition": 0, "outcome": "error", "timer": { "key": "c2", "value": "", "timestamp": 60 },
                  "live": [], "shadow": [], "shadow_error": "boom" },
            ],
        });
        let text = report_text(&r);
        assert!(
            text.contains("fraud@2 beside fraud@1, running (until 1000 records)"),
            "{text}"
        );
        assert!(text.contains("10 compared: 7 same, 2 different"), "{text}");
        assert!(text.contains("fraud.shadow (9 records)"), "{text}");
        assert!(text.contains("c1=alert (alerts)"), "{text}");
        assert!(
            text.contains("timer c2 at 60") && text.contains("error: boom"),
            "{text}"
        );
    }
}
