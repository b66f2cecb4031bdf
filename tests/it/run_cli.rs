//! `eddy run` as a user runs it: outputs, side outputs, dead letters, and clear errors.

use crate::support::{eddy_output, guest, workspace_root};
use std::path::Path;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

const PROBE_SPEC: &str =
    "name = \"probe\"\n[[operators]]\nname = \"probe\"\n[settings]\non_error = \"dead-letter\"\n";

fn probe_arg() -> String {
    format!("probe={}", guest("fixture-probe").display())
}

#[test]
fn side_outputs_and_dead_letters_go_beside_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(dir.path(), "p.toml", PROBE_SPEC);
    let input = write(
        dir.path(),
        "in.jsonl",
        "{\"value\":\"hello\",\"timestamp\":1}\n\n{\"value\":\"emit late x\",\"timestamp\":2}\n{\"value\":\"bad nope\",\"timestamp\":3,\"headers\":{\"h\":\"1\"}}\n",
    );
    let out = dir.path().join("out.jsonl");
    let (ok, _, stderr) = eddy_output(&[
        "run",
        &spec,
        "--input",
        &input,
        "--output",
        out.to_str().unwrap(),
        "--operator",
        &probe_arg(),
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "{\"value\":\"hello\",\"timestamp\":1}\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.late.jsonl")).unwrap(),
        "{\"value\":\"x\",\"timestamp\":2}\n"
    );
    let dlq: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("out.dlq.jsonl")).unwrap())
            .unwrap();
    assert_eq!(dlq["value"], "bad nope");
    assert_eq!(dlq["headers"]["h"], "1");
    assert_eq!(dlq["headers"]["eddy.offset"], "2");
    assert!(
        dlq["headers"]["eddy.error"]
            .as_str()
            .unwrap()
            .contains("nope")
    );
    assert!(stderr.contains("3 events in"), "{stderr}");
}

#[test]
fn failing_records_under_fail_policy_stop_with_the_operator_message() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(
        dir.path(),
        "p.toml",
        &PROBE_SPEC.replace("dead-letter", "fail"),
    );
    let input = write(
        dir.path(),
        "in.jsonl",
        "{\"value\":\"a\"}\n{\"value\":\"trap\"}\n",
    );
    let out = dir.path().join("out.jsonl");
    let (ok, _, stderr) = eddy_output(&[
        "run",
        &spec,
        "--input",
        &input,
        "--output",
        out.to_str().unwrap(),
        "--operator",
        &probe_arg(),
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("operator probe@1: process failed on record 1 of partition 0"),
        "{stderr}"
    );
    assert!(stderr.contains("trap requested"), "{stderr}");
}

#[test]
fn bad_input_gets_a_clear_message_and_a_failing_exit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good_spec = write(d, "p.toml", PROBE_SPEC);
    let good_input = write(d, "in.jsonl", "{\"value\":\"a\"}\n");
    let out = d.join("out.jsonl").display().to_string();
    let probe = probe_arg();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "run".into(),
                d.join("missing.toml").display().to_string(),
                "--input".into(),
                good_input.clone(),
                "--output".into(),
                out.clone(),
            ],
            "cannot read pipeline spec",
        ),
        (
            vec![
                "run".into(),
                write(d, "bad.toml", "name = \"x\"\n[[operators]\n"),
                "--input".into(),
                good_input.clone(),
                "--output".into(),
                out.clone(),
            ],
            "not valid TOML",
        ),
        (
            vec![
                "run".into(),
                write(d, "unknown.toml", &format!("{PROBE_SPEC}colour = 1\n")),
                "--input".into(),
                good_input.clone(),
                "--output".into(),
                out.clone(),
            ],
            "unknown field `colour`",
        ),
        (
            vec![
                "run".into(),
                good_spec.clone(),
                "--input".into(),
                d.join("nope.jsonl").display().to_string(),
                "--output".into(),
                out.clone(),
                "--operator".into(),
                probe.clone(),
            ],
            "cannot open input",
        ),
        (
            vec![
                "run".into(),
                good_spec.clone(),
                "--input".into(),
                write(d, "bad.jsonl", "{\"value\":\"a\"}\n\n{\"value\": oops}\n"),
                "--output".into(),
                out.clone(),
                "--operator".into(),
                probe.clone(),
            ],
            "bad.jsonl:3: invalid JSON event",
        ),
        (
            vec![
                "run".into(),
                good_spec.clone(),
                "--input".into(),
                good_input.clone(),
                "--output".into(),
                out.clone(),
                "--operator".into(),
                format!("probe={}", write(d, "x.wasm", "not wasm")),
            ],
            "not a WebAssembly binary",
        ),
        (
            vec![
                "run".into(),
                good_spec.clone(),
                "--input".into(),
                good_input.clone(),
                "--output".into(),
                out.clone(),
                "--operator".into(),
                format!("probe={}", guest("fixture-other-world").display()),
            ],
            "does not export `eddy:operator/handler@0.1.x`",
        ),
        (
            vec![
                "run".into(),
                good_spec.clone(),
                "--input".into(),
                good_input.clone(),
                "--output".into(),
                out.clone(),
            ],
            "has no `path`",
        ),
        (
            vec![
                "run".into(),
                write(
                    d,
                    "init.toml",
                    "name = \"p\"\n[[operators]]\nname = \"probe\"\nconfig = { fail_init = \"need a dictionary\" }\n",
                ),
                "--input".into(),
                good_input.clone(),
                "--output".into(),
                out.clone(),
                "--operator".into(),
                probe.clone(),
            ],
            "operator probe: init failed: need a dictionary",
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, _, stderr) = eddy_output(&args);
        assert!(!ok, "{args:?} succeeded");
        assert!(
            stderr.contains(expected),
            "{args:?}: expected {expected:?} in {stderr:?}"
        );
        assert_eq!(
            stderr
                .trim()
                .lines()
                .filter(|l| l.starts_with("error:"))
                .count(),
            1,
            "{stderr}"
        );
    }
}

#[test]
fn the_example_pipeline_file_runs_as_documented() {
    // examples/wordcount/pipeline.toml points at the workspace's target dir; the test
    // passes the built component instead, the spec itself is what users run.
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        dir.path(),
        "in.jsonl",
        "{\"value\":\"Hello hello\",\"timestamp\":9}\n",
    );
    let out = dir.path().join("out.jsonl");
    let spec = workspace_root().join("examples/wordcount/pipeline.toml");
    let wc = format!("wordcount={}", guest("wordcount").display());
    let (ok, _, stderr) = eddy_output(&[
        "run",
        spec.to_str().unwrap(),
        "--input",
        &input,
        "--output",
        out.to_str().unwrap(),
        "--operator",
        &wc,
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "{\"key\":\"hello\",\"value\":\"1\",\"timestamp\":9}\n{\"key\":\"hello\",\"value\":\"2\",\"timestamp\":9}\n"
    );
}

#[test]
fn the_window_examples_give_their_documented_output_on_their_samples() {
    // Out-of-order clicks: windows close at the end of input; clicks later than the
    // bound go to the `late` side output beside the output file.
    for (example, late) in [("clicks-per-minute", 2), ("user-sessions", 0)] {
        let dir = tempfile::tempdir().unwrap();
        let root = workspace_root().join("examples").join(example);
        let out = dir.path().join("out.jsonl");
        let op = format!("{example}={}", guest(example).display());
        let (ok, _, stderr) = eddy_output(&[
            "run",
            root.join("pipeline.toml").to_str().unwrap(),
            "--input",
            root.join("sample.jsonl").to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--operator",
            &op,
        ]);
        assert!(ok, "{example}: {stderr}");
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            std::fs::read_to_string(root.join("expected.jsonl")).unwrap(),
            "{example}"
        );
        let late_path = dir.path().join("out.late.jsonl");
        let late_lines = std::fs::read_to_string(&late_path)
            .map(|s| s.lines().count())
            .unwrap_or(0);
        assert_eq!(late_lines, late, "{example}: late clicks");
    }
}

#[test]
fn records_after_one_that_traps_in_the_same_batch_are_still_handled() {
    // A trap ends the task's batch there (the rest waits for the next read); `eddy run`
    // hands the rest over again rather than dropping it.
    let dir = tempfile::tempdir().unwrap();
    let spec = write(
        dir.path(),
        "p.toml",
        "name = \"probe\"\n[[operators]]\nname = \"probe\"\n[settings]\non_error = \"skip\"\n",
    );
    let input = write(
        dir.path(),
        "in.jsonl",
        "{\"value\":\"a\",\"timestamp\":1}\n{\"value\":\"trap\",\"timestamp\":2}\n{\"value\":\"b\",\"timestamp\":3}\n{\"value\":\"trap\",\"timestamp\":4}\n{\"value\":\"c\",\"timestamp\":5}\n",
    );
    let out = dir.path().join("out.jsonl");
    let (ok, _, stderr) = eddy_output(&[
        "run",
        &spec,
        "--input",
        &input,
        "--output",
        out.to_str().unwrap(),
        "--operator",
        &probe_arg(),
    ]);
    assert!(ok, "{stderr}");
    let values: Vec<String> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["value"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(values, ["a", "b", "c"]);
    assert!(
        stderr.contains("5 events in, 3 out, 2 failed records"),
        "{stderr}"
    );
}
