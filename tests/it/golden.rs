//! Golden pipeline cases: `tests/pipelines/<case>/{pipeline.toml,input.jsonl,expected.jsonl}`.
//! Each case runs straight through, and again split in two runs that share a state
//! directory; both must produce exactly `expected.jsonl`.

use crate::support::{eddy_output, guest, workspace_root};
use eddy_host::control::PipelineSpec;
use std::path::{Path, PathBuf};

fn cases() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(workspace_root().join("tests/pipelines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("pipeline.toml").exists())
        .collect();
    cases.sort();
    assert!(!cases.is_empty());
    cases
}

/// `--operator id=<built guest>` for every operator of the case (guest crate = operator name).
fn operator_args(case: &Path) -> Vec<String> {
    let spec = PipelineSpec::from_toml(&std::fs::read_to_string(case.join("pipeline.toml")).unwrap()).unwrap();
    spec.operators
        .iter()
        .flat_map(|op| ["--operator".to_string(), format!("{}={}", op.id(), guest(&op.name).display())])
        .collect()
}

fn run(case: &Path, input: &Path, output: &Path, extra: &[&str]) {
    let mut args: Vec<String> = vec![
        "run".into(),
        case.join("pipeline.toml").display().to_string(),
        "--input".into(),
        input.display().to_string(),
        "--output".into(),
        output.display().to_string(),
    ];
    args.extend(operator_args(case));
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, _, stderr) = eddy_output(&args);
    assert!(ok, "{}: eddy run failed: {stderr}", case.display());
}

#[test]
fn golden_cases_run_straight_through() {
    for case in cases() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.jsonl");
        run(&case, &case.join("input.jsonl"), &out, &[]);
        let expected = std::fs::read_to_string(case.join("expected.jsonl")).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), expected, "{}", case.display());
    }
}

#[test]
fn golden_cases_split_in_two_runs_with_state_equal_one_run() {
    for case in cases() {
        let dir = tempfile::tempdir().unwrap();
        let input = std::fs::read_to_string(case.join("input.jsonl")).unwrap();
        let lines: Vec<&str> = input.lines().collect();
        let (first, second) = lines.split_at(lines.len() / 2);
        let halves = [dir.path().join("in1.jsonl"), dir.path().join("in2.jsonl")];
        std::fs::write(&halves[0], first.join("\n") + "\n").unwrap();
        std::fs::write(&halves[1], second.join("\n") + "\n").unwrap();
        let state = dir.path().join("state");
        let state = state.display().to_string();
        let outs = [dir.path().join("out1.jsonl"), dir.path().join("out2.jsonl")];
        run(&case, &halves[0], &outs[0], &["--state-dir", &state, "--keep-open"]);
        run(&case, &halves[1], &outs[1], &["--state-dir", &state]);
        let combined = std::fs::read_to_string(&outs[0]).unwrap() + &std::fs::read_to_string(&outs[1]).unwrap();
        let expected = std::fs::read_to_string(case.join("expected.jsonl")).unwrap();
        assert_eq!(combined, expected, "{}", case.display());
    }
}
