//! Operators in every language: built from source with `eddy build` in the test run, the
//! same word count as the Rust example byte for byte (through `eddy run` and the server),
//! a Python → JavaScript hot upgrade over the same state, the WASI sandbox as a guest sees
//! it, and toolchain errors passed through.

use crate::support::server::TestApp;
use crate::support::{eddy_output, eddy_run, guest, workspace_root};
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// The (key, value) of every line of an output file, both text.
pub(crate) fn key_values(out: &str) -> impl Iterator<Item = (String, String)> + '_ {
    out.lines().map(|l| {
        let v: Value = serde_json::from_str(l).unwrap();
        (
            v["key"].as_str().unwrap().to_string(),
            v["value"].as_str().unwrap().to_string(),
        )
    })
}

/// Copies a project (examples/NAME or tests/fixtures/NAME) into a scratch directory, so
/// the source tree stays clean, and builds it with `eddy build` once per test process.
pub(crate) fn built(project: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, Arc<OnceLock<PathBuf>>>>> = OnceLock::new();
    let cell = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .entry(project.to_string())
        .or_default()
        .clone();
    cell.get_or_init(|| {
        let src = workspace_root().join(project);
        let dir = tempfile::tempdir()
            .unwrap()
            .keep()
            .join(src.file_name().unwrap());
        copy_project(&src, &dir);
        let (ok, stdout, stderr) = eddy_output(&["build", dir.to_str().unwrap()]);
        assert!(ok, "eddy build {project} failed:\n{stderr}");
        let path = PathBuf::from(stdout.trim());
        assert!(path.is_file(), "eddy build printed {stdout:?}");
        assert!(
            path.starts_with(&dir),
            "the component lands inside the project"
        );
        path
    })
    .clone()
}

fn copy_project(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap();
        if [".eddy", "node_modules", "__pycache__", "target"].contains(&name)
            || name.ends_with(".wasm")
        {
            continue;
        }
        if path.is_dir() {
            copy_project(&path, &dst.join(name));
        } else {
            std::fs::copy(&path, dst.join(name)).unwrap();
        }
    }
}

/// Builds several projects at once (the toolchains are single-threaded).
fn build_all(projects: &[&str]) -> Vec<PathBuf> {
    std::thread::scope(|s| {
        let handles: Vec<_> = projects.iter().map(|p| s.spawn(move || built(p))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

const WORDCOUNTS: &[&str] = &[
    "examples/wordcount-python",
    "examples/wordcount-js",
    "examples/wordcount-c",
];

pub(crate) fn wordcount_spec(dir: &Path, component: &Path) -> PathBuf {
    let spec = dir.join(format!(
        "{}.toml",
        component.file_stem().unwrap().to_str().unwrap()
    ));
    std::fs::write(
        &spec,
        format!(
            "name = \"wc\"\n[[operators]]\nname = \"wordcount\"\npath = {:?}\nconfig = {{ lowercase = \"true\" }}\n[settings]\nbatch_size = 7\n",
            component.display()
        ),
    )
    .unwrap();
    spec
}

/// Input with what tells word counts apart: punctuation at both ends, mixed case,
/// non-ASCII letters, tabs and runs of spaces, an empty line, keys and headers.
pub(crate) fn tricky_input(dir: &Path) -> PathBuf {
    let mut text =
        std::fs::read_to_string(workspace_root().join("examples/wordcount/sample.jsonl")).unwrap();
    for (i, line) in [
        "Hello, WORLD!! hello\tworld...  (hello)",
        "Ünïcödé straße STRASSE --- ... ¿qué? «quoi» 日本語 日本語",
        "",
        "'quoted' \"double\" a-b-c a_b_c [x] {y} <z> ~!@#$%^&*()_+",
    ]
    .iter()
    .enumerate()
    {
        let event = json!({ "key": format!("k{i}"), "value": line, "timestamp": 1_700_000_100_000u64 + i as u64,
                            "headers": { "h": "v" } });
        text.push_str(&event.to_string());
        text.push('\n');
    }
    let path = dir.join("input.jsonl");
    std::fs::write(&path, text).unwrap();
    path
}

pub(crate) fn run_to_string(spec: &Path, input: &Path, out: &Path) -> String {
    let (ok, _, stderr) = eddy_run(spec, input, out);
    assert!(ok, "eddy run {}: {stderr}", spec.display());
    std::fs::read_to_string(out).unwrap()
}

#[test]
fn word_count_in_every_language_gives_the_rust_output_byte_for_byte_through_eddy_run() {
    let components = build_all(WORDCOUNTS);
    let dir = tempfile::tempdir().unwrap();
    let input = tricky_input(dir.path());
    let rust = run_to_string(
        &wordcount_spec(dir.path(), &guest("wordcount")),
        &input,
        &dir.path().join("rust.jsonl"),
    );
    assert!(rust.lines().count() > 90, "{rust}");
    for component in components {
        let name = component.file_stem().unwrap().to_str().unwrap().to_string();
        let out = run_to_string(
            &wordcount_spec(dir.path(), &component),
            &input,
            &dir.path().join(format!("{name}.jsonl")),
        );
        assert!(
            out == rust,
            "{name} differs from Rust:\n--- rust\n{rust}\n--- {name}\n{out}"
        );
    }
}

/// `(partition, offset, key, value, timestamp)` of every record of a topic.
async fn topic_contents(t: &TestApp, topic: &str) -> Vec<(u64, u64, Value, Value, Value)> {
    let mut all: Vec<_> = t
        .records(topic)
        .await
        .into_iter()
        .map(|r| {
            (
                r["partition"].as_u64().unwrap(),
                r["offset"].as_u64().unwrap(),
                r["key"].clone(),
                r["value"].clone(),
                r["timestamp"].clone(),
            )
        })
        .collect();
    all.sort_by_key(|r| (r.0, r.1));
    all
}

fn server_spec(name: &str, operator: &str, sink: &str) -> String {
    format!(
        "name = \"{name}\"\n[source]\ntopic = \"lines\"\n[sink]\ntopic = \"{sink}\"\n[[operators]]\nname = \"{operator}\"\nversion = 1\nconfig = {{ lowercase = \"true\" }}\n[settings]\nprobation_records = 5\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn word_count_in_every_language_gives_the_rust_output_byte_for_byte_through_the_server() {
    let components = tokio::task::spawn_blocking(|| build_all(WORDCOUNTS))
        .await
        .unwrap();
    let t = TestApp::new();
    // One source partition: one task per pipeline, so sink offsets are deterministic.
    t.create_topic("lines", 1).await;
    // A component cargo built: its compilers' records say Rust.
    let rust = t.push("wc-rust", "wordcount").await;
    assert_eq!(rust["language"], "rust", "{rust}");
    t.create_pipeline(&server_spec("rust", "wc-rust", "out-rust"))
        .await;
    for c in &components {
        let lang = c
            .file_stem()
            .unwrap()
            .to_str()
            .unwrap()
            .trim_start_matches("wordcount-")
            .to_string();
        let pushed = t.push_file(&format!("wc-{lang}"), c).await;
        assert_eq!(pushed["version"], 1, "{pushed}");
        // `eddy build` named the language in the component.
        let named = if lang == "js" {
            "javascript"
        } else {
            lang.as_str()
        };
        assert_eq!(pushed["language"], named, "{pushed}");
        let (s, v) = t
            .create_pipeline(&server_spec(
                &lang,
                &format!("wc-{lang}"),
                &format!("out-{lang}"),
            ))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let input = std::fs::read_to_string(tricky_input(tempfile::tempdir().unwrap().path())).unwrap();
    t.produce("lines", &input).await;
    for pipeline in ["rust", "python", "js", "c"] {
        t.wait_caught_up(pipeline).await;
    }
    let rust = topic_contents(&t, "out-rust").await;
    assert!(rust.len() > 90);
    for lang in ["python", "js", "c"] {
        assert_eq!(
            topic_contents(&t, &format!("out-{lang}")).await,
            rust,
            "{lang}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn state_written_by_python_survives_a_hot_upgrade_to_javascript() {
    let [python, js] = tokio::task::spawn_blocking(|| {
        build_all(&["examples/wordcount-python", "examples/wordcount-js"])
            .try_into()
            .unwrap()
    })
    .await
    .unwrap();
    let t = TestApp::new();
    t.create_topic("lines", 1).await;
    t.push_file("wc", &python).await;
    assert_eq!(t.push_file("wc", &js).await["version"], 2);
    let (s, v) = t.create_pipeline(&server_spec("wc", "wc", "out")).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    let lines: Vec<String> = (0..60)
        .map(|i| {
            format!(
                "Eddy runs {} operators, eddy {}",
                ["python", "js"][i % 2],
                i % 7
            )
        })
        .collect();
    let events = |range: std::ops::Range<usize>| {
        range
            .map(|i| json!({ "value": lines[i], "timestamp": i }).to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    t.produce("lines", &events(0..30)).await;
    t.wait_caught_up("wc").await;
    let (s, u) = t.start_upgrade("wc", "wc", 2, None).await;
    assert_eq!(s, StatusCode::OK, "{u}");
    t.produce("lines", &events(30..60)).await;
    assert_eq!(t.upgrade_outcome("wc").await["result"], "succeeded");
    let status = t.wait_caught_up("wc").await;
    assert_eq!(status["operators"][0]["version"], 2, "{status}");
    assert_eq!(status["upgrades"][0]["result"], "succeeded", "{status}");

    // Every word's counts run 1, 2, 3, ... across the switch: JS continued Python's state.
    let mut by_word: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in topic_contents(&t, "out").await {
        by_word
            .entry(r.2.as_str().unwrap().to_string())
            .or_default()
            .push(r.3.as_str().unwrap().parse().unwrap());
    }
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for line in &lines {
        for w in crate::support::oracle::words(line) {
            *expected.entry(w).or_default() += 1;
        }
    }
    assert_eq!(
        by_word.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (word, counts) in &by_word {
        assert_eq!(*counts, (1..=expected[word]).collect::<Vec<_>>(), "{word}");
    }
}

#[test]
fn a_guest_that_reaches_for_files_sockets_or_the_environment_gets_errors_inside_the_guest() {
    let component = built("tests/fixtures/python-sandbox");
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "host secret").unwrap();
    let escaped = dir.path().join("escaped.txt");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();

    let commands = [
        format!("read:{}", secret.display()),
        "read:/etc/passwd".to_string(),
        format!("write:{}", escaped.display()),
        "list:/".to_string(),
        "list:.".to_string(),
        format!("connect:127.0.0.1:{port}"),
        "env".to_string(),
    ];
    let input = dir.path().join("in.jsonl");
    let lines: Vec<String> = commands
        .iter()
        .map(|c| json!({ "value": c, "timestamp": 1 }).to_string())
        .collect();
    std::fs::write(&input, lines.join("\n")).unwrap();
    let spec = dir.path().join("p.toml");
    std::fs::write(
        &spec,
        format!(
            "name = \"s\"\n[[operators]]\nname = \"sandbox\"\npath = {:?}\n",
            component.display()
        ),
    )
    .unwrap();
    let out = run_to_string(&spec, &input, &dir.path().join("out.jsonl"));

    let results: BTreeMap<String, String> = key_values(&out).collect();
    assert_eq!(results.len(), commands.len(), "{out}");
    for c in &commands[..6] {
        assert!(results[c].starts_with("denied: "), "{c}: {}", results[c]);
    }
    assert!(
        results[&commands[5]].contains("PermissionError"),
        "{}",
        results[&commands[5]]
    );
    assert_eq!(results["env"], "env: 0");
    assert!(!escaped.exists(), "the guest wrote a host file");
    assert!(
        listener.accept().is_err(),
        "the guest connected to a host socket"
    );
    assert!(!out.contains("host secret"));
}

#[test]
fn building_a_guest_with_a_syntax_error_shows_the_toolchains_message_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "python",
            "app.py",
            "import eddy\nclass A(eddy.Operator):\n    def process(self, event, ctx)\n        pass\nHandler = eddy.export(A)\n",
            "SyntaxError",
        ),
        (
            "js",
            "app.js",
            "import { Operator } from \"eddy\";\nexport const handler = {\n  init(config) { return 1 +; }\n};\n",
            "unexpected token",
        ),
        (
            "c",
            "op.c",
            "#include \"eddy.h\"\neddy_status eddy_process(const eddy_event *e, eddy_ctx *c) { return EDDY_OK }\n",
            "expected ';'",
        ),
    ];
    for (lang, file, source, message) in cases {
        let project = dir.path().join(lang);
        std::fs::create_dir_all(&project).unwrap();
        std::fs::write(project.join(file), source).unwrap();
        let (ok, stdout, stderr) = eddy_output(&["build", project.to_str().unwrap()]);
        assert!(!ok, "{lang}: a broken project built");
        assert!(stdout.is_empty(), "{lang}: {stdout}");
        assert!(
            stderr.contains(message),
            "{lang}: the toolchain's message is missing:\n{stderr}"
        );
        assert!(stderr.contains("failed"), "{lang}: {stderr}");
    }
}

#[test]
fn eddy_new_scaffolds_a_project_that_builds_and_runs_in_every_language() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = None;
    for lang in ["rust", "python", "js", "c"] {
        let project = dir.path().join(format!("op-{lang}"));
        let (ok, _, stderr) = eddy_output(&["new", lang, project.to_str().unwrap()]);
        assert!(ok, "{stderr}");
        let (ok, stdout, stderr) = eddy_output(&["build", project.to_str().unwrap()]);
        assert!(ok, "{lang}: {stderr}");
        assert_eq!(
            PathBuf::from(stdout.trim()),
            project.join(format!("op-{lang}.wasm"))
        );
        let (ok, _, stderr) = crate::support::eddy_in(
            &project,
            &[
                "run",
                "pipeline.toml",
                "--input",
                "input.jsonl",
                "--output",
                "output.jsonl",
            ],
        );
        assert!(ok, "{lang}: {stderr}");
        let out = std::fs::read_to_string(project.join("output.jsonl")).unwrap();
        assert!(out.contains("\"value\":\"hello #3\""), "{lang}: {out}");
        match &expected {
            None => expected = Some(out),
            Some(e) => assert_eq!(&out, e, "{lang} scaffolds differ"),
        }
    }
    let (ok, _, stderr) = eddy_output(&["new", "js", dir.path().join("op-c").to_str().unwrap()]);
    assert!(!ok && stderr.contains("not empty"), "{stderr}");
    let (ok, _, stderr) = eddy_output(&["build", dir.path().to_str().unwrap()]);
    assert!(
        !ok && stderr.contains("not an operator project"),
        "{stderr}"
    );
}

#[test]
fn the_showcase_examples_in_python_javascript_and_c_give_their_expected_output() {
    let [
        enrich,
        sessions,
        clicks,
        user_sessions,
        clicks_c,
        sessions_c,
    ] = build_all(&[
        "examples/enrich-python",
        "examples/sessionize-js",
        "examples/clicks-per-minute-python",
        "examples/user-sessions-js",
        "examples/clicks-per-minute-c",
        "examples/user-sessions-c",
    ])
    .try_into()
    .unwrap();
    for (component, input, side) in [
        (enrich, "orders.jsonl", Some("rejected")),
        (sessions, "clicks.jsonl", None),
        (clicks.clone(), "sample.jsonl", Some("late")),
        (user_sessions.clone(), "sample.jsonl", None),
        (clicks_c.clone(), "sample.jsonl", Some("late")),
        (sessions_c.clone(), "sample.jsonl", None),
    ] {
        let project = component.parent().unwrap();
        let (ok, _, stderr) = crate::support::eddy_in(
            project,
            &[
                "run",
                "pipeline.toml",
                "--input",
                input,
                "--output",
                "out.jsonl",
            ],
        );
        assert!(ok, "{stderr}");
        let read = |f: &str| std::fs::read_to_string(project.join(f)).unwrap();
        assert_eq!(
            read("out.jsonl"),
            read("expected.jsonl"),
            "{}",
            project.display()
        );
        if let Some(port) = side {
            assert_eq!(
                read(&format!("out.{port}.jsonl")),
                read(&format!("expected.{port}.jsonl"))
            );
        }
    }
    // Python's, JavaScript's and C's windows give the Rust SDK's byte for byte: golden
    // cases.
    for (component, case, rust_operator) in [
        (&clicks, "clicks-sliding", "clicks-per-minute"),
        (&user_sessions, "user-sessions", "user-sessions"),
        (&clicks_c, "clicks-tumbling", "clicks-per-minute"),
        (&clicks_c, "clicks-sliding", "clicks-per-minute"),
        (&sessions_c, "user-sessions", "user-sessions"),
    ] {
        let project = component.parent().unwrap();
        let name = component.file_stem().unwrap().to_str().unwrap();
        let case = workspace_root().join("tests/pipelines").join(case);
        let spec = std::fs::read_to_string(case.join("pipeline.toml"))
            .unwrap()
            .replace(
                &format!("name = \"{rust_operator}\""),
                &format!("name = \"{name}\"\npath = \"{name}.wasm\""),
            );
        std::fs::write(project.join("golden.toml"), spec).unwrap();
        let (ok, _, stderr) = crate::support::eddy_in(
            project,
            &[
                "run",
                "golden.toml",
                "--input",
                case.join("input.jsonl").to_str().unwrap(),
                "--output",
                "golden.jsonl",
            ],
        );
        assert!(ok, "{name}: {stderr}");
        assert_eq!(
            std::fs::read_to_string(project.join("golden.jsonl")).unwrap(),
            std::fs::read_to_string(case.join("expected.jsonl")).unwrap(),
            "{name} on {}",
            case.display()
        );
    }
}

#[test]
fn a_missing_toolchain_is_named_with_how_to_install_it() {
    let dir = tempfile::tempdir().unwrap();
    for (file, var, hint) in [
        (
            "app.py",
            "EDDY_COMPONENTIZE_PY",
            "pip install componentize-py",
        ),
        (
            "app.js",
            "EDDY_COMPONENTIZE_QJS",
            "npm install -g componentize-qjs",
        ),
        ("op.c", "EDDY_CLANG", "apt-get install clang"),
    ] {
        let project = dir.path().join(file.replace('.', "-"));
        std::fs::create_dir_all(&project).unwrap();
        std::fs::write(project.join(file), "").unwrap();
        let out = crate::support::eddy()
            .env(var, "/nonexistent/tool")
            .args(["build", project.to_str().unwrap()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{file}");
        assert!(
            stderr.contains("is not installed") && stderr.contains(hint),
            "{file}: {stderr}"
        );
    }
}

/// `eddy run --state-dir` across an operator's state-version change runs its `migrate`;
/// one that returns the wrong type fails with a message naming the store, the key and
/// the mistake, without the SDK's internals: in Python and in JavaScript.
#[test]
fn a_migrate_that_returns_the_wrong_type_fails_naming_the_store_and_the_key() {
    let built = build_all(&[
        "examples/wordcount-python",
        "tests/fixtures/python-migrate",
        "examples/wordcount-js",
        "tests/fixtures/js-migrate",
    ]);
    let cases = [
        (
            &built[0],
            &built[1],
            "migrating store 'counts' key base64:AXg=: migrate returned str; return bytes (or None to drop the key)",
        ),
        (
            &built[2],
            &built[3],
            "migrating store \"counts\" key base64:AXg=: migrate returned number; return a Uint8Array or a string (or null to drop the key)",
        ),
    ];
    for (v1, v2, says) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).display().to_string();
        std::fs::write(
            path("wc.toml"),
            "name = \"wc\"\n[[operators]]\nname = \"wc\"\n",
        )
        .unwrap();
        // The first key in order, "\u{1}x", is not printable: it is shown in base64.
        std::fs::write(path("in.jsonl"), "{\"value\": \"\\u0001x a b a\"}\n").unwrap();
        let run = |component: &Path| {
            eddy_output(&[
                "run",
                &path("wc.toml"),
                "--input",
                &path("in.jsonl"),
                "--output",
                &path("out.jsonl"),
                "--state-dir",
                &path("state"),
                "--operator",
                &format!("wc={}", component.display()),
            ])
        };
        let (ok, _, stderr) = run(v1);
        assert!(ok, "{stderr}");
        let (ok, _, stderr) = run(v2);
        assert!(!ok, "{stderr}");
        assert!(
            stderr.contains("cannot migrate its state") && stderr.contains(says),
            "{stderr}"
        );
        assert!(
            !stderr.contains("StateScope") && !stderr.contains("Traceback"),
            "{stderr}"
        );
    }
}
