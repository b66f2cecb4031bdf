//! Shared test helpers: building guest components once per test process, paths, and
//! running the `eddy` binary.

pub mod kafka;
pub mod oracle;
pub mod server;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Guest crates the tests use, built for wasm32-wasip2.
const GUESTS: &[&str] = &[
    "wordcount",
    "wordcount-v2",
    "split-words",
    "clicks-per-minute",
    "user-sessions",
    "enrich-orders",
    "ad-attribution",
    "fixture-probe",
    "fixture-other-world",
    "fixture-forbidden-import",
    "fixture-wordcount-trap",
    "fixture-counter-v1",
    "fixture-counter-v2",
    "fixture-fail-init",
    "fixture-tally",
];

pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ sits in the workspace")
}

/// The cargo target directory this test binary was built into.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // <target>/<profile>/deps/it-<hash>
    exe.ancestors()
        .nth(3)
        .expect("test binary lives in <target>/<profile>/deps")
        .to_path_buf()
}

/// Builds every guest once per test process (cargo makes concurrent builds wait on its
/// lock, and an up-to-date build is a no-op) and returns the artifact directory.
pub fn guests_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = target_dir().join("guests");
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.current_dir(workspace_root())
            .args([
                "build",
                "--quiet",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--target-dir",
            ])
            .arg(&target);
        for g in GUESTS {
            cmd.args(["-p", g]);
        }
        // Flags meant for the host build must not leak into the guest build.
        for var in [
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_BUILD_TARGET",
            "CARGO_TARGET_DIR",
        ] {
            cmd.env_remove(var);
        }
        let status = cmd
            .status()
            .expect("run cargo to build the guest components");
        assert!(
            status.success(),
            "building guest components failed (is the wasm32-wasip2 target installed?)"
        );
        target.join("wasm32-wasip2").join("release")
    })
}

/// The built component of guest crate `name` (`wordcount`, `fixture-probe`, ...).
pub fn guest(name: &str) -> PathBuf {
    guests_dir().join(format!("{}.wasm", name.replace('-', "_")))
}

/// The `eddy` binary, ready to run.
pub fn eddy() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eddy"));
    cmd.env(
        "EDDY_LOG",
        std::env::var("EDDY_TEST_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
    );
    cmd
}

/// Runs `eddy` with `args`, returning (success, stdout, stderr).
pub fn eddy_output(args: &[&str]) -> (bool, String, String) {
    let out = eddy().args(args).output().expect("run eddy");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `eddy run SPEC --input INPUT --output OUT`, returning (success, stdout, stderr).
pub fn eddy_run(spec: &Path, input: &Path, out: &Path) -> (bool, String, String) {
    eddy_output(&[
        "run",
        spec.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ])
}

/// Runs `eddy` with `args` in directory `dir`, returning (success, stdout, stderr).
pub fn eddy_in(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = eddy()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run eddy");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
