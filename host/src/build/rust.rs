//! Rust: `cargo build --target wasm32-wasip2 --release` (the toolchain emits a component).

use super::toolchain::{BuildError, Tool};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const TARGET: &str = "wasm32-wasip2";

const CARGO: Tool = Tool {
    name: "cargo",
    env: "CARGO",
    install: "curl https://sh.rustup.rs -sSf | sh, then rustup target add wasm32-wasip2",
};

pub fn build(dir: &Path) -> Result<PathBuf, BuildError> {
    let cargo = CARGO.find("Rust operators")?;
    check_target()?;
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).map_err(|e| BuildError::io(&manifest, e))?;
    if text.contains(super::sdk::RUST_VENDOR_DIR) {
        // A project from `eddy new`: refresh the SDK it vendors to this binary's version.
        super::sdk::write_rust(dir)?;
    }
    let mut child = Command::new(&cargo)
        .args([
            "build",
            "--release",
            "--target",
            TARGET,
            "--message-format=json-render-diagnostics",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| BuildError::ToolFailed {
            tool: "cargo".into(),
            status: format!("could not start: {e}"),
        })?;
    let manifest = std::fs::canonicalize(&manifest).map_err(|e| BuildError::io(&manifest, e))?;
    let mut component = None;
    for line in BufReader::new(child.stdout.take().expect("piped stdout")).lines() {
        let line = line.map_err(|e| BuildError::io(dir, e))?;
        if let Some(path) = cdylib_of(&line, &manifest) {
            component = Some(path);
        }
    }
    let status = child.wait().map_err(|e| BuildError::io(dir, e))?;
    if !status.success() {
        return Err(BuildError::ToolFailed {
            tool: "cargo".into(),
            status: status.to_string(),
        });
    }
    let built = component.ok_or_else(|| {
        BuildError::Project(format!(
            "{} builds no .wasm: an operator crate needs `[lib] crate-type = [\"cdylib\"]`",
            manifest.display()
        ))
    })?;
    // Named after the package (`my-op.wasm`), not the library file (`my_op.wasm`).
    let package = toml::from_str::<toml::Table>(&text)
        .ok()
        .and_then(|t| t.get("package")?.get("name")?.as_str().map(String::from));
    let name = package.or_else(|| built.file_stem().and_then(|s| s.to_str()).map(String::from));
    let out = super::output_path(dir, name.as_deref().unwrap_or("operator"));
    std::fs::copy(&built, &out).map_err(|e| BuildError::io(&out, e))?;
    Ok(out)
}

/// The `.wasm` of a `compiler-artifact` message about the package at `manifest`.
fn cdylib_of(line: &str, manifest: &Path) -> Option<PathBuf> {
    let msg: serde_json::Value = serde_json::from_str(line).ok()?;
    if msg["reason"] != "compiler-artifact" || Path::new(msg["manifest_path"].as_str()?) != manifest
    {
        return None;
    }
    msg["filenames"]
        .as_array()?
        .iter()
        .filter_map(|f| f.as_str())
        .find(|f| f.ends_with(".wasm"))
        .map(PathBuf::from)
}

/// With rustup, a clear message when the wasm target is missing (cargo's own is cryptic).
fn check_target() -> Result<(), BuildError> {
    let Ok(out) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    else {
        return Ok(());
    };
    if out.status.success()
        && !String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.trim() == TARGET)
    {
        return Err(BuildError::ToolMissing {
            tool: format!("the Rust target {TARGET}"),
            what: "Rust operators",
            install: format!("rustup target add {TARGET}"),
        });
    }
    Ok(())
}
