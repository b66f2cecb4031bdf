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
    let spec =
        PipelineSpec::from_toml(&std::fs::read_to_string(case.join("pipeline.toml")).unwrap())
            .unwrap();
    spec.operators
        .iter()
        .flat_map(|op| {
            [
                "--operator".to_string(),
                format!("{}={}", op.id(), guest(&op.name).display()),
            ]
        })
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
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            expected,
            "{}",
            case.display()
        );
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
        run(
            &case,
            &halves[0],
            &outs[0],
            &["--state-dir", &state, "--keep-open"],
        );
        run(&case, &halves[1], &outs[1], &["--state-dir", &state]);
        let combined = std::fs::read_to_string(&outs[0]).unwrap()
            + &std::fs::read_to_string(&outs[1]).unwrap();
        let expected = std::fs::read_to_string(case.join("expected.jsonl")).unwrap();
        assert_eq!(combined, expected, "{}", case.display());
    }
}

/// Each case on a server: the first half, a savepoint, a stop and a restore, then the
/// second half; the output must still be `expected.jsonl`.
#[tokio::test(flavor = "multi_thread")]
async fn golden_cases_with_a_savepoint_and_restore_in_the_middle() {
    use crate::support::server::TestApp;
    use axum::body::Body;
    use axum::http::{Method, StatusCode};
    for case in cases() {
        let t = TestApp::new();
        let mut spec =
            PipelineSpec::from_toml(&std::fs::read_to_string(case.join("pipeline.toml")).unwrap())
                .unwrap();
        for op in &spec.operators {
            t.push(&op.name, &op.name).await;
        }
        spec.source = Some(eddy_host::control::spec::TopicRef::embedded("in"));
        spec.sink = Some(eddy_host::control::spec::TopicRef::embedded("out"));
        t.create_topic("in", 1).await;
        let (s, p) = t
            .post_json("/v1/pipelines", serde_json::to_string(&spec).unwrap())
            .await;
        assert_eq!(s, StatusCode::CREATED, "{p}");
        let name = spec.name.clone();
        let input = std::fs::read_to_string(case.join("input.jsonl")).unwrap();
        let lines: Vec<&str> = input.lines().collect();
        let (first, second) = lines.split_at(lines.len() / 2);
        t.produce("in", &first.join("\n")).await;
        t.wait_caught_up(&name).await;
        let (s, m) = t
            .json(
                Method::POST,
                &format!("/v1/pipelines/{name}/savepoints"),
                Body::empty(),
                &[],
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{m}");
        t.json(
            Method::POST,
            &format!("/v1/pipelines/{name}/stop"),
            Body::empty(),
            &[],
        )
        .await;
        let body = serde_json::json!({ "savepoint": m["id"] }).to_string();
        let (s, r) = t
            .post_json(&format!("/v1/pipelines/{name}/restore"), body)
            .await;
        assert_eq!(s, StatusCode::OK, "{r}");
        t.json(
            Method::POST,
            &format!("/v1/pipelines/{name}/start"),
            Body::empty(),
            &[],
        )
        .await;
        t.produce("in", &second.join("\n")).await;
        t.wait_caught_up(&name).await;
        let got: Vec<serde_json::Value> = t
            .records("out")
            .await
            .into_iter()
            .map(|mut r| {
                let o = r.as_object_mut().unwrap();
                o.remove("partition");
                o.remove("offset");
                r
            })
            .collect();
        let expected: Vec<serde_json::Value> = std::fs::read_to_string(case.join("expected.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(got, expected, "{}", case.display());
    }
}
