//! The WIT world grows additively: components built with the 0.1.0 and 0.1.1 SDKs
//! (binary fixtures) run on today's host unchanged. And the packed batches and store caches of
//! the Rust, Python, JavaScript and C SDKs (0.1.1) keep every count exact when records
//! fail in the middle of batches, in either operator of a chain.

use crate::languages::{built, key_values, run_to_string as run, wordcount_spec};
use crate::support::{guest, workspace_root};
use eddy_host::runtime::{Runtime, RuntimeConfig};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;

#[test]
fn a_component_built_with_the_0_1_0_sdk_runs_unchanged() {
    // The 0.1.0 world, without the packed handler of 0.1.1.
    runs_unchanged("0.1.0", false);
}

#[test]
fn a_component_built_with_the_0_1_1_sdk_runs_unchanged() {
    // The 0.1.1 world: packed batches, the guest's store cache, no `current-input`.
    runs_unchanged("0.1.1", true);
}

/// The word count built with the SDK of WIT `version` (a binary fixture) imports that
/// version, and counts exactly as the word count built from today's SDK.
fn runs_unchanged(version: &str, packed: bool) {
    let fixture = workspace_root().join(format!("tests/fixtures/compat/wordcount-{version}.wasm"));
    let bytes = std::fs::read(&fixture).unwrap();
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let component = runtime.load(&bytes).unwrap();
    let exports = component.exports();
    assert!(
        exports
            .iter()
            .any(|e| *e == format!("eddy:operator/handler@{version}")),
        "{exports:?}"
    );
    assert_eq!(
        exports.iter().any(|e| e.contains("packed")),
        packed,
        "{exports:?}"
    );
    let imports = component.imports();
    assert!(
        imports.iter().any(|i| i.ends_with(&format!("@{version}"))),
        "{imports:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let input = workspace_root().join("examples/wordcount/sample.jsonl");
    let old = run(
        &wordcount_spec(dir.path(), &fixture),
        &input,
        &dir.path().join("old.jsonl"),
    );
    let today = run(
        &wordcount_spec(dir.path(), &guest("wordcount")),
        &input,
        &dir.path().join("today.jsonl"),
    );
    assert!(old.lines().count() > 80, "{old}");
    assert_eq!(old, today);
}

/// 400 records over 5 keys: most plain, some that the first or the second operator
/// rejects, some that make both drop their count.
fn tally_input(dir: &Path) -> (std::path::PathBuf, Vec<(String, String)>) {
    let mut records = Vec::new();
    let mut text = String::new();
    for i in 0..400u64 {
        let key = format!("k{}", (i * 7 + i / 3) % 5);
        let value = match i % 13 {
            3 => "x1",
            8 => "x2",
            11 if i % 2 == 0 => "drop",
            _ => "v",
        };
        let event = json!({"key": key, "value": value, "timestamp": 1_700_000_000_000u64 + i});
        text.push_str(&format!("{event}\n"));
        records.push((key, value.to_string()));
    }
    let path = dir.join("tally.jsonl");
    std::fs::write(&path, text).unwrap();
    (path, records)
}

/// What the chain must emit: a record rejected by either operator leaves no trace in
/// either; the others carry each operator's running count.
fn expected_tallies(records: &[(String, String)]) -> Vec<(String, String, String)> {
    let mut counts: HashMap<&str, u64> = HashMap::new();
    let mut out = Vec::new();
    for (key, value) in records {
        if value == "x1" || value == "x2" {
            continue;
        }
        let n = counts.entry(key).or_default();
        *n += 1;
        out.push((key.clone(), n.to_string(), n.to_string()));
        if value == "drop" {
            counts.remove(key.as_str());
        }
    }
    out
}

#[test]
fn cached_counts_stay_exact_when_records_fail_mid_batch_in_a_chain() {
    let python = built("tests/fixtures/python-tally");
    let js = built("tests/fixtures/js-tally");
    let rust = guest("fixture-tally");
    let c = built("tests/fixtures/c-tally");
    let dir = tempfile::tempdir().unwrap();
    let (input, records) = tally_input(dir.path());
    let expected = expected_tallies(&records);
    // Each SDK first and second, and batch sizes that put failures at every position of
    // a batch.
    for (first, second) in [
        (&python, &js),
        (&js, &python),
        (&rust, &python),
        (&js, &rust),
        (&c, &js),
        (&rust, &c),
    ] {
        for batch_size in [1, 5, 64] {
            let spec = dir.path().join("tally.toml");
            std::fs::write(
                &spec,
                format!(
                    r#"name = "tally"
[[operators]]
name = "first"
path = {first:?}
config = {{ reject = "x1", header = "n1" }}
[[operators]]
name = "second"
path = {second:?}
config = {{ reject = "x2", header = "n2" }}
[settings]
batch_size = {batch_size}
on_error = "skip"
"#
                ),
            )
            .unwrap();
            let out = run(&spec, &input, &dir.path().join("out.jsonl"));
            let got: Vec<(String, String, String)> = out
                .lines()
                .map(|l| {
                    let v: Value = serde_json::from_str(l).unwrap();
                    let h = &v["headers"];
                    (
                        v["key"].as_str().unwrap().to_string(),
                        h["n1"].as_str().unwrap_or("-").to_string(),
                        h["n2"].as_str().unwrap_or("-").to_string(),
                    )
                })
                .collect();
            assert_eq!(
                got.len(),
                expected.len(),
                "{} then {}, batch {batch_size}",
                first.display(),
                second.display()
            );
            assert_eq!(
                got,
                expected,
                "{} then {}, batch {batch_size}",
                first.display(),
                second.display()
            );
        }
    }
}

#[test]
fn the_c_sdk_s_store_cache_answers_like_the_host() {
    let commands = built("tests/fixtures/c-commands");
    let dir = tempfile::tempdir().unwrap();
    // (key, commands, what the record emits); a record that fails emits nothing and
    // leaves no trace (on_error = "skip").
    let script: &[(&str, &str, &[&str])] = &[
        ("x", "inc", &["1"]),
        ("y", "set:hello scan", &["x=1,y=hello"]),
        ("z", "inc get del get", &["1", "1", "-"]),
        ("y", "clear get inc scan", &["-", "1", "y=1"]),
        ("t", "set:abc", &[]),
        ("t", "inc", &[]), // not a counter: refused by the host, skipped
        ("t", "get", &["abc"]),
        ("a", "inc inc fail", &[]),
        ("a", "get", &["-"]),
        // Past the cache's 65,536 entries, within a call and across calls.
        ("b", "bulk:70000", &[]),
        ("b", "bulk:70000 bulk:10 sum", &["n=70000 sum=140010"]),
        ("a", "inc scan", &["1", "a=1,t=abc,y=1"]),
        ("b", "sum", &["n=70000 sum=140010"]),
        // Past its 8 MiB: a new key, and a cached one that grows.
        ("g", "big:9000000 len", &["9000000"]),
        ("h", "set:x", &[]),
        ("h", "big:8500000 len", &["8500000"]),
        ("h", "len", &["8500000"]),
        ("g", "len", &["9000000"]),
    ];
    let mut text = String::new();
    let mut expected = Vec::new();
    for (i, (key, cmds, out)) in script.iter().enumerate() {
        let event =
            json!({"key": key, "value": cmds, "timestamp": 1_700_000_000_000u64 + i as u64});
        text.push_str(&format!("{event}\n"));
        expected.extend(out.iter().map(|v| (key.to_string(), v.to_string())));
    }
    let input = dir.path().join("commands.jsonl");
    std::fs::write(&input, text).unwrap();
    for batch_size in [1, 64] {
        let spec = dir.path().join("commands.toml");
        std::fs::write(
            &spec,
            format!(
                "name = \"commands\"\n[[operators]]\nname = \"c\"\npath = {commands:?}\n\
                 [settings]\nbatch_size = {batch_size}\non_error = \"skip\"\n"
            ),
        )
        .unwrap();
        let out = run(&spec, &input, &dir.path().join("out.jsonl"));
        let got: Vec<(String, String)> = key_values(&out).collect();
        assert_eq!(got, expected, "batch {batch_size}");
    }
}
