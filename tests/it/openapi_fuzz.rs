//! The OpenAPI document against the server it describes, fuzzed by schemathesis (the
//! pinned version `scripts/setup` installs) with every check, on a fresh server that has
//! a token: no 5xx, every status and content type documented, schema-valid requests
//! accepted and schema-invalid ones refused, reads and changes without the token refused.
//! The four operations whose bodies schemathesis cannot generate (TOML, ndjson, wasm and
//! gzip) are covered by hand elsewhere. `EDDY_FUZZ_SECONDS` (default 120) bounds the run;
//! `EDDY_FUZZ_SEED` reruns one.

use crate::support::server::ServerProcess;
use std::process::Command;

/// Operations with bodies schemathesis cannot generate.
const BY_HAND: [&str; 4] = [
    "operators_upload",
    "pipelines_create",
    "topics_produce",
    "savepoints_upload",
];

#[test]
fn the_openapi_document_holds_under_schemathesis() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"), &["--api-token", "fuzz-t0ken"]);
    let seconds = std::env::var("EDDY_FUZZ_SECONDS").unwrap_or_else(|_| "120".into());
    let mut cmd = Command::new("schemathesis");
    // (It keeps a cache in its working directory: not in the checkout.)
    cmd.current_dir(dir.path());
    cmd.args([
        "run",
        "--checks",
        "all",
        "--max-examples",
        "20",
        "--max-time",
        &seconds,
    ])
    .args(["-H", "Authorization: Bearer fuzz-t0ken"])
    .args(["--no-color"]);
    for id in BY_HAND {
        cmd.args(["--exclude-operation-id", id]);
    }
    if let Ok(seed) = std::env::var("EDDY_FUZZ_SEED") {
        cmd.args(["--seed", &seed]);
    }
    let out = cmd
        .arg(format!("{}/v1/openapi.json", server.url))
        .output()
        .expect("schemathesis (run ./scripts/setup)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let seed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Seed: "))
        .unwrap_or("?");
    println!("schemathesis seed {seed} (rerun with EDDY_FUZZ_SEED={seed})");
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" passed"), "{stdout}");
    // The server is still up.
    let (ok, _, stderr) = server.cli(&["--api-token", "fuzz-t0ken", "topic", "list"]);
    assert!(ok, "{stderr}");
}
