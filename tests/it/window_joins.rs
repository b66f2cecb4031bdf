//! The windowed stream–stream join (`examples/ad-attribution`, on
//! `eddy_guest::join::WindowJoin`) against a brute-force oracle, through `eddy run`:
//! out-of-order events within the pipeline's bound, late ones dropped, inner and left,
//! in one run and split across two runs that share their state.

use crate::joins::{read_outputs, run_spec};
use crate::support::{guest, workspace_root};
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::path::{Path, PathBuf};

const WINDOW: i64 = 60_000;
const BASE: i64 = 1_700_000_000_000;

struct Rec {
    key: String,
    value: String,
    ts: i64,
    late: bool,
}

/// `n` records over `keys` keys, about `gap` ms apart, each up to 2 s early or late (so
/// never more than the pipeline's 5 s behind an earlier one); records 400 and 900 come
/// an hour late.
fn records(rng: &mut impl Rng, prefix: &str, n: usize, keys: usize, gap: i64) -> Vec<Rec> {
    (0..n)
        .map(|i| {
            let late = i == 400 || i == 900;
            let ts = if late {
                BASE - 3_600_000
            } else {
                BASE + i as i64 * gap + rng.random_range(-2_000..=2_000)
            };
            Rec {
                key: format!("u{}", rng.random_range(0..keys)),
                value: format!("{{\"id\":\"{prefix}{i}\"}}"),
                ts,
                late,
            }
        })
        .collect()
}

fn write(dir: &Path, name: &str, recs: &[Rec]) -> PathBuf {
    let text: String = recs
        .iter()
        .map(|r| json!({"key": r.key, "value": r.value, "timestamp": r.ts}).to_string() + "\n")
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Every click with every impression of its key shown at most `WINDOW` before it (late
/// records take no part); with `left`, impressions that got none, with `null`.
fn oracle(imps: &[Rec], clicks: &[Rec], left: bool) -> Vec<String> {
    let mut out = Vec::new();
    for i in imps.iter().filter(|r| !r.late) {
        let mut met = false;
        for c in clicks.iter().filter(|r| !r.late) {
            if c.key == i.key && (0..=WINDOW).contains(&(c.ts - i.ts)) {
                met = true;
                out.push(format!(
                    "{}={{\"impression\":{},\"click\":{}}}",
                    i.key, i.value, c.value
                ));
            }
        }
        if left && !met {
            out.push(format!(
                "{}={{\"impression\":{},\"click\":null}}",
                i.key, i.value
            ));
        }
    }
    out.sort();
    out
}

fn spec(dir: &Path, join: &str) -> PathBuf {
    let text =
        std::fs::read_to_string(workspace_root().join("examples/ad-attribution/pipeline.toml"))
            .unwrap()
            .replace(
                "window = \"10m\", join = \"inner\"",
                &format!("window = \"1m\", join = \"{join}\""),
            );
    assert!(
        text.contains("\"1m\""),
        "the example's config changed: {text}"
    );
    let path = dir.join(format!("ads-{join}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn run(spec: &Path, imps: &Path, clicks: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let op = format!("ad-attribution={}", guest("ad-attribution").display());
    let inputs = [
        format!("impressions={}", imps.display()),
        format!("clicks={}", clicks.display()),
    ];
    let mut args = vec!["--operator", op.as_str()];
    args.extend(extra);
    lines(run_spec(spec, &inputs, out, &args))
}

fn lines(outputs: Vec<(String, String)>) -> Vec<String> {
    outputs
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

#[test]
fn a_windowed_join_matches_the_oracle_with_out_of_order_and_late_events() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let imps = records(&mut rng, "i", 1_500, 40, 1_000);
    let clicks = records(&mut rng, "c", 1_200, 40, 1_250);
    for join in ["inner", "left"] {
        let expected = oracle(&imps, &clicks, join == "left");
        assert!(expected.len() > 500, "{join}: {}", expected.len());
        let spec = spec(d, join);

        let i = write(d, "imps.jsonl", &imps);
        let c = write(d, "clicks.jsonl", &clicks);
        let mut got = run(&spec, &i, &c, &d.join("out.jsonl"), &[]);
        got.sort();
        assert_eq!(got.len(), expected.len(), "{join}, one run");
        assert!(got == expected, "{join}: one run differs from the oracle");

        // Split: the inputs stop at different places in the first run, which leaves its
        // windows open (--keep-open) for the second, on the same state.
        let state = d.join(format!("state-{join}"));
        let s = state.to_str().unwrap();
        let (i1, i2) = imps.split_at(700);
        let (c1, c2) = clicks.split_at(450);
        let i1 = write(d, "i1.jsonl", i1);
        let c1 = write(d, "c1.jsonl", c1);
        let i2 = write(d, "i2.jsonl", i2);
        let c2 = write(d, "c2.jsonl", c2);
        let mut got = run(
            &spec,
            &i1,
            &c1,
            &d.join("o1.jsonl"),
            &["--state-dir", s, "--keep-open"],
        );
        got.extend(run(
            &spec,
            &i2,
            &c2,
            &d.join("o2.jsonl"),
            &["--state-dir", s],
        ));
        got.sort();
        assert_eq!(got.len(), expected.len(), "{join}, split");
        assert!(got == expected, "{join}: two runs differ from the oracle");
    }
}

#[test]
fn the_example_attributes_its_sample_clicks() {
    let dir = tempfile::tempdir().unwrap();
    let example = workspace_root().join("examples/ad-attribution");
    let got = run(
        &example.join("pipeline.toml"),
        &example.join("impressions.jsonl"),
        &example.join("clicks.jsonl"),
        &dir.path().join("out.jsonl"),
        &[],
    );
    let expected = lines(read_outputs(&example.join("expected.jsonl")));
    assert_eq!(got, expected);
}
