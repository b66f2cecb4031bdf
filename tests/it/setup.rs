//! `scripts/setup` checks what it promises after installing it, and fails naming what
//! is missing (a fresh machine is the truth; a hand-installed tool must not hide a
//! missing install step).

use crate::support::workspace_root;
use std::process::Command;

fn check(path: &str) -> (bool, String, String) {
    let out = Command::new("bash")
        .arg(workspace_root().join("scripts/setup"))
        .arg("--check")
        .env("PATH", path)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn setup_checks_every_tool_and_names_the_missing_ones() {
    let path = std::env::var("PATH").unwrap();
    let (ok, stdout, stderr) = check(&path);
    assert!(ok, "setup --check fails on this machine:\n{stdout}{stderr}");
    assert!(stdout.contains("every tool is in place"), "{stdout}");

    // The same PATH without clang, componentize-qjs and the browser driver (every other
    // command linked).
    let farm = tempfile::tempdir().unwrap();
    let hidden = ["clang", "componentize-qjs", "chromedriver"];
    for dir in path.split(':') {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let link = farm.path().join(&name);
            if hidden.contains(&name.to_str().unwrap_or("")) || link.exists() {
                continue;
            }
            std::os::unix::fs::symlink(e.path(), link).unwrap();
        }
    }
    let (ok, _, stderr) = check(farm.path().to_str().unwrap());
    assert!(!ok, "setup --check passed without {hidden:?}");
    for tool in hidden {
        assert!(
            stderr.contains(&format!("MISSING {tool}")),
            "{tool}: {stderr}"
        );
    }
    assert!(stderr.contains("setup: failed: missing"), "{stderr}");
}
