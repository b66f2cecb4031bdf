//! Typed config in the Python, JavaScript and C SDKs (the Rust SDK's has unit tests): the
//! same spec reads the same in each, arrays included, and a value of the wrong kind fails
//! `init` naming the key, the value and what was expected.

use crate::languages::built;
use crate::support::eddy_run;
use serde_json::{Value, json};
use std::path::Path;

const FIXTURES: &[&str] = &[
    "tests/fixtures/python-config",
    "tests/fixtures/js-config",
    "tests/fixtures/c-config",
];

const GOOD: &str = r#"threshold = 7
ratio = 0.25
on = true
window = "2m"
pages = ["home", "cart", 3, false]
name = "x""#;

/// Runs `component` over one record with `config` (TOML lines of `[operators.config]`).
fn run(dir: &Path, component: &Path, config: &str) -> (bool, String, String) {
    let spec = dir.join("config.toml");
    std::fs::write(
        &spec,
        format!(
            "name = \"show\"\n[[operators]]\nname = \"show\"\npath = {:?}\n[operators.config]\n{config}\n",
            component.display()
        ),
    )
    .unwrap();
    let input = dir.join("one.jsonl");
    std::fs::write(&input, "{\"value\": \"x\"}\n").unwrap();
    let out = dir.join("out.jsonl");
    let (ok, _, stderr) = eddy_run(&spec, &input, &out);
    let output = std::fs::read_to_string(&out).unwrap_or_default();
    (ok, output, stderr)
}

#[test]
fn typed_config_reads_alike_in_python_javascript_and_c() {
    let components: Vec<_> = FIXTURES.iter().map(|f| built(f)).collect();
    let dir = tempfile::tempdir().unwrap();
    let expected = json!({"threshold": 7, "ratio": 0.25, "on": true, "window_ms": 120000,
                          "pages": ["home", "cart", "3", "false"], "name": "x", "unset": 42});
    for component in &components {
        let (ok, out, stderr) = run(dir.path(), component, GOOD);
        assert!(ok, "{}: {stderr}", component.display());
        let line: Value = serde_json::from_str(out.lines().next().unwrap_or("{}")).unwrap();
        let seen: Value = match &line["value"] {
            Value::String(text) => serde_json::from_str(text).unwrap(),
            other => other.clone(),
        };
        assert_eq!(seen, expected, "{}", component.display());
    }
}

#[test]
fn a_config_value_of_the_wrong_kind_fails_init_naming_it() {
    let [python, js, c] = [0, 1, 2].map(|i| built(FIXTURES[i]));
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "threshold = \"five\"",
            "`threshold`",
            "\"five\"",
            "a whole number",
        ),
        ("ratio = \"x\"", "`ratio`", "\"x\"", "a number"),
        ("on = \"maybe\"", "`on`", "\"maybe\"", "true or false"),
        (
            "window = \"5 parsecs\"",
            "`window`",
            "\"5 parsecs\"",
            "a duration",
        ),
        ("pages = { a = 1 }", "`pages`", "{", "a list"),
    ];
    // Every case in JavaScript (quick to start); two in Python and C.
    let runs = cases
        .iter()
        .map(|case| (&js, case))
        .chain([(&python, &cases[0]), (&python, &cases[4])])
        .chain([(&c, &cases[3]), (&c, &cases[4])]);
    for (component, (config, key, value, expected)) in runs {
        let (ok, _, stderr) = run(dir.path(), component, config);
        assert!(!ok, "{} accepted {config}", component.display());
        assert!(
            stderr.contains(key) && stderr.contains(value) && stderr.contains(expected),
            "{} with {config}: {stderr}",
            component.display()
        );
    }
}

#[test]
fn the_c_config_parsers_pass_their_own_tests_natively() {
    let root = crate::support::workspace_root();
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("config_test");
    let out = std::process::Command::new("clang")
        .args(["-Wall", "-Werror", "-g", "-I"])
        .arg(root.join("guest-sdk/c"))
        .arg(root.join("guest-sdk/c/tests/config_test.c"))
        .arg(root.join("guest-sdk/c/eddy_config.c"))
        .arg("-o")
        .arg(&exe)
        .arg("-lm")
        .output()
        .expect("clang runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = std::process::Command::new(&exe).output().unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}
