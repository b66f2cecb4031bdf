//! The native test harnesses of the Python SDK (`eddy.testing`, plain CPython) and the
//! JavaScript SDK (`eddy/src/testing.js`, Node): the examples' operators run without a
//! component and give what `eddy run` gives for the same input, main and side outputs
//! alike (records the operator rejects are left out on both sides, as `on_error` does);
//! and `eddy new python|js` scaffolds tests that pass before any build.

use crate::languages::{built, tricky_input, wordcount_spec};
use crate::support::{eddy, eddy_output, eddy_run, workspace_root};
use eddy_host::model::spec::PipelineSpec;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Runs the operator of `example` (its module `app`) over `input` in the harness.
const DRIVER: &str = r#"
import json, sys
sdk, example, input_path, config = sys.argv[1:5]
sys.path[:0] = [sdk, example]
import eddy
from eddy.testing import Harness
import app

h = Harness(app.Handler.operator, config=json.loads(config))
text = lambda b: None if b is None else b.decode("utf-8")
for line in open(input_path):
    if not line.strip():
        continue
    r = json.loads(line)
    value = r["value"] if isinstance(r["value"], str) else json.dumps(r["value"], separators=(",", ":"))
    headers = list((r.get("headers") or {}).items())
    try:
        out = h.process(eddy.Event(r.get("key"), value, r.get("timestamp", 0), headers))
    except eddy.Error:
        continue
    for o in out:
        e = o.event
        print(json.dumps({"port": o.port, "key": text(e.key), "value": text(e.value),
                          "timestamp": e.timestamp, "headers": {n: text(v) for n, v in e.headers}}))
"#;

/// The same in Node: the example's `app.js` beside a `node_modules/eddy` that is the
/// repository's SDK.
const JS_DRIVER: &str = r#"
import { readFileSync } from "node:fs";
import { Event, EddyError } from "eddy";
import { Harness } from "eddy/src/testing.js";
import { handler } from "./app.js";

const [inputPath, config] = process.argv.slice(2);
const h = new Harness(handler, JSON.parse(config));
const text = (b) => (b === null ? null : new TextDecoder().decode(b));
for (const line of readFileSync(inputPath, "utf8").split("\n")) {
  if (!line.trim()) continue;
  const r = JSON.parse(line);
  const value = typeof r.value === "string" ? r.value : JSON.stringify(r.value);
  let out;
  try {
    out = h.process(new Event(r.key ?? null, value, r.timestamp ?? 0, Object.entries(r.headers ?? {})));
  } catch (e) {
    if (e instanceof EddyError) continue;
    throw e;
  }
  for (const o of out) {
    const e = o.event;
    const headers = Object.fromEntries(e.headers.map(([n, v]) => [n, text(v)]));
    console.log(JSON.stringify({ port: o.port, key: text(e.key), value: text(e.value), timestamp: e.timestamp, headers }));
  }
}
"#;

/// `(port, key, value, timestamp, headers)` of each output line, main output first.
type Line = (
    Option<String>,
    Option<String>,
    String,
    i64,
    BTreeMap<String, String>,
);

fn line(port: Option<String>, v: &Value) -> Line {
    let headers = v["headers"]
        .as_object()
        .map(|h| {
            h.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect()
        })
        .unwrap_or_default();
    (
        port,
        v["key"].as_str().map(String::from),
        v["value"].as_str().unwrap().to_string(),
        v["timestamp"].as_i64().unwrap(),
        headers,
    )
}

fn harness_outputs(example: &Path, input: &Path, config: &BTreeMap<String, String>) -> Vec<Line> {
    let sdk = workspace_root().join("guest-sdk/python");
    let mut python = Command::new("python3");
    python
        .args(["-c", DRIVER])
        .arg(&sdk)
        .arg(example)
        .arg(input);
    parse(python.arg(serde_json::to_string(config).unwrap()))
}

fn js_harness_outputs(
    example: &Path,
    input: &Path,
    config: &BTreeMap<String, String>,
) -> Vec<Line> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("node_modules")).unwrap();
    std::os::unix::fs::symlink(
        workspace_root().join("guest-sdk/js"),
        dir.path().join("node_modules/eddy"),
    )
    .unwrap();
    for file in ["app.js", "package.json"] {
        std::fs::copy(example.join(file), dir.path().join(file)).unwrap();
    }
    std::fs::write(dir.path().join("driver.js"), JS_DRIVER).unwrap();
    let mut node = Command::new("node");
    node.current_dir(dir.path())
        .args(["--import", "eddy/src/testing-register.js", "driver.js"])
        .arg(input);
    parse(node.arg(serde_json::to_string(config).unwrap()))
}

/// The output lines a driver printed.
fn parse(driver: &mut Command) -> Vec<Line> {
    let out = driver.output().expect("the driver runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<Line> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            line(v["port"].as_str().map(String::from), &v)
        })
        .collect();
    // Main output first, then each port: the order `eddy run`'s files are read in.
    lines.sort_by(|a, b| a.0.cmp(&b.0));
    lines
}

fn eddy_run_outputs(spec: &Path, input: &Path, ports: &[&str]) -> Vec<Line> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let (ok, _, stderr) = eddy_run(spec, input, &out);
    assert!(ok, "{stderr}");
    let mut lines = Vec::new();
    let files = std::iter::once((None, out.clone())).chain(ports.iter().map(|p| {
        (
            Some(p.to_string()),
            dir.path().join(format!("out.{p}.jsonl")),
        )
    }));
    for (port, file) in files {
        for l in std::fs::read_to_string(&file).unwrap_or_default().lines() {
            lines.push(line(port.clone(), &serde_json::from_str(l).unwrap()));
        }
    }
    lines
}

#[test]
fn examples_give_the_same_outputs_in_the_harnesses_as_through_eddy_run() {
    // Word count over input with punctuation, Unicode, keys and headers.
    let dir = tempfile::tempdir().unwrap();
    let component = built("examples/wordcount-python");
    let spec = wordcount_spec(dir.path(), &component);
    let input = tricky_input(dir.path());
    let config = BTreeMap::from([("lowercase".to_string(), "true".to_string())]);
    let expected = eddy_run_outputs(&spec, &input, &[]);
    assert!(expected.len() > 90);
    let example = workspace_root().join("examples/wordcount-python");
    assert_eq!(harness_outputs(&example, &input, &config), expected);
    // The JavaScript word count, through its harness, gives the same.
    let example = workspace_root().join("examples/wordcount-js");
    assert_eq!(js_harness_outputs(&example, &input, &config), expected);

    // Enrichment: JSON, a table in the config, a side output and rejected records.
    let component = built("examples/enrich-python");
    let project = component.parent().unwrap();
    let spec = project.join("pipeline.toml");
    let config = PipelineSpec::from_toml(&std::fs::read_to_string(&spec).unwrap())
        .unwrap()
        .operators[0]
        .config
        .clone();
    let input = project.join("orders.jsonl");
    let expected = eddy_run_outputs(&spec, &input, &["rejected"]);
    assert!(expected.iter().any(|l| l.0.as_deref() == Some("rejected")));
    assert!(expected.iter().any(|l| l.0.is_none()));
    let example = workspace_root().join("examples/enrich-python");
    assert_eq!(harness_outputs(&example, &input, &config), expected);
}

/// `python3 -m unittest` in a Python project: (passed, what it printed).
fn python_project_tests(project: &Path) -> (bool, String) {
    let out = Command::new("python3")
        .args(["-m", "unittest", "-v"])
        .current_dir(project)
        .output()
        .expect("python3 runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What `npm test` runs in a JavaScript project (package.json's script), without npm.
fn js_project_tests(project: &Path) -> (bool, String) {
    let package: Value =
        serde_json::from_str(&std::fs::read_to_string(project.join("package.json")).unwrap())
            .unwrap();
    let script = package["scripts"]["test"].as_str().unwrap();
    let mut words = script.split_whitespace();
    let out = Command::new(words.next().unwrap())
        .args(words)
        .current_dir(project)
        .output()
        .expect("node runs");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// `eddy build --sdk-only DIR` with the language's toolchain out of reach.
fn write_sdk_only(project: &Path) -> String {
    let out = eddy()
        .args(["build", "--sdk-only", project.to_str().unwrap()])
        .env("EDDY_COMPONENTIZE_PY", "/nonexistent/componentize-py")
        .env("EDDY_COMPONENTIZE_QJS", "/nonexistent/componentize-qjs")
        .output()
        .expect("run eddy");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn scaffolded_tests_pass_without_a_build_and_after_a_fresh_clone_with_sdk_only() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("op-python");
    let (ok, _, stderr) = eddy_output(&["new", "python", project.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let (ok, text) = python_project_tests(&project);
    assert!(ok, "{text}");
    assert!(
        text.contains("Ran 2 tests") && text.contains("OK"),
        "{text}"
    );
    // A fresh clone has no `.eddy` (the scaffold's .gitignore names it): the tests cannot
    // import the SDK until `eddy build --sdk-only` writes it, without componentize-py.
    assert!(
        std::fs::read_to_string(project.join(".gitignore"))
            .unwrap()
            .contains(".eddy/")
    );
    std::fs::remove_dir_all(project.join(".eddy")).unwrap();
    let (ok, text) = python_project_tests(&project);
    assert!(!ok && text.contains("No module named 'eddy'"), "{text}");
    let written = write_sdk_only(&project);
    assert_eq!(Path::new(&written), project.join(".eddy/python"));
    let (ok, text) = python_project_tests(&project);
    assert!(ok && text.contains("Ran 2 tests"), "{text}");

    let project = dir.path().join("op-js");
    let (ok, _, stderr) = eddy_output(&["new", "js", project.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let (ok, text) = js_project_tests(&project);
    assert!(ok, "{text}");
    assert!(
        text.contains("# pass 2") && text.contains("# fail 0"),
        "{text}"
    );
    assert!(
        std::fs::read_to_string(project.join(".gitignore"))
            .unwrap()
            .contains("node_modules/")
    );
    std::fs::remove_dir_all(project.join("node_modules")).unwrap();
    let (ok, text) = js_project_tests(&project);
    assert!(!ok, "{text}");
    let written = write_sdk_only(&project);
    assert_eq!(Path::new(&written), project.join("node_modules/eddy"));
    let (ok, text) = js_project_tests(&project);
    assert!(ok && text.contains("# pass 2"), "{text}");

    // Rust and C projects get their vendored crate and headers back the same way.
    for (lang, file) in [
        ("rust", ".eddy/rust/eddy-guest/Cargo.toml"),
        ("c", ".eddy/c/eddy.h"),
    ] {
        let project = dir.path().join(format!("op-{lang}"));
        let (ok, _, stderr) = eddy_output(&["new", lang, project.to_str().unwrap()]);
        assert!(ok, "{stderr}");
        std::fs::remove_dir_all(project.join(".eddy")).unwrap();
        write_sdk_only(&project);
        assert!(project.join(file).is_file(), "{lang}: no {file}");
    }

    // Nothing to detect: refused with the reason, and nothing written.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (ok, _, stderr) = eddy_output(&["build", "--sdk-only", empty.to_str().unwrap()]);
    assert!(!ok && stderr.contains("eddy new"), "{stderr}");
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
}

#[test]
fn the_python_and_javascript_sdks_pass_their_own_tests() {
    let out = Command::new("python3")
        .args(["-m", "unittest", "discover", "-s", "guest-sdk/python/tests"])
        .current_dir(workspace_root())
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("OK"), "{text}");
    let out = Command::new("node")
        .args(["--import", "./src/testing-register.js", "--test", "test/"])
        .current_dir(workspace_root().join("guest-sdk/js"))
        .output()
        .expect("node runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("# fail 0"), "{text}");
}
