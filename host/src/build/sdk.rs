//! The WIT world and the guest SDKs, embedded so `eddy build` works from any directory.

use super::toolchain::{BuildError, write_if_changed};
use std::path::Path;

/// `(relative path, contents)` of a set of files.
pub type Files = &'static [(&'static str, &'static str)];

macro_rules! embed {
    ($root:literal: $($file:literal),* $(,)?) => {
        &[$(($file, include_str!(concat!("../../../", $root, "/", $file)))),*]
    };
}

/// The world every operator implements.
pub const WIT: Files = embed!("wit": "operator.wit");

/// The Python package `eddy`.
pub const PYTHON: Files = embed!("guest-sdk/python":
    "eddy/__init__.py", "eddy/_api.py", "eddy/_config.py", "eddy/_env.py", "eddy/_export.py",
    "eddy/_flat.py", "eddy/_host.py", "eddy/_memory_host.py", "eddy/testing.py", "eddy/window.py",
    "eddy/join.py");

/// The JavaScript package `eddy`.
pub const JS: Files = embed!("guest-sdk/js":
    "package.json", "src/index.js", "src/api.js", "src/config.js", "src/errors.js", "src/export.js", "src/flat.js",
    "src/memory-host.js", "src/testing.js", "src/testing-hooks.js", "src/testing-register.js", "src/utf8.js",
    "src/window.js", "src/join.js");

/// The Rust crate `eddy-guest` (its manifest is [`RUST_MANIFEST`]: the real one names
/// workspace settings).
pub const RUST: Files = embed!("guest-sdk":
    "src/lib.rs", "src/bindings.rs", "src/backend/mod.rs", "src/backend/native.rs", "src/backend/wasm.rs",
    "src/testing.rs", "src/flat.rs", "src/event.rs", "src/context.rs", "src/dispatch.rs", "src/error.rs",
    "src/store.rs", "src/operator.rs", "src/config.rs", "src/window.rs", "src/cache.rs", "src/packed.rs",
    "src/join.rs", "src/join_window.rs");

pub const RUST_MANIFEST: &str = r#"# Vendored by `eddy new` / `eddy build`: do not edit, it is overwritten.
[package]
name = "eddy-guest"
version = "0.1.0"
edition = "2024"
rust-version = "1.87"
publish = false

[dependencies]
wit-bindgen = { version = "0.63", default-features = false, features = ["macros", "realloc"] }
foldhash = "0.2"
serde = { version = "1", features = ["derive"], optional = true }
serde_json = { version = "1", optional = true }

[features]
default = ["json"]
json = ["dep:serde", "dep:serde_json"]
"#;

/// Where a Rust project keeps the vendored SDK (its Cargo.toml names this path).
pub const RUST_VENDOR_DIR: &str = ".eddy/rust/eddy-guest";

/// Writes the vendored Rust SDK (and the WIT it reads from `../wit`) into `project`.
pub fn write_rust(project: &Path) -> Result<(), BuildError> {
    let crate_dir = project.join(RUST_VENDOR_DIR);
    write(RUST, &crate_dir)?;
    write_if_changed(&crate_dir.join("Cargo.toml"), RUST_MANIFEST.as_bytes())?;
    write(WIT, &crate_dir.join("../wit"))
}

/// The C helper.
pub const C: Files = embed!("guest-sdk/c":
    "eddy.h", "eddy_internal.h", "eddy.c", "eddy_store.c", "eddy_config.c");

/// Writes `files` under `dir`.
pub fn write(files: Files, dir: &Path) -> Result<(), BuildError> {
    for (name, contents) in files {
        write_if_changed(&dir.join(name), contents.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The files under `root` (relative to the workspace) ending in `.ext`.
    fn on_disk(root: &str, ext: &str) -> Vec<String> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(root);
        let mut found = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == ext) {
                    let rel = path.strip_prefix(&root).unwrap();
                    found.push(rel.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        found.sort();
        found
    }

    fn embedded(files: super::Files) -> Vec<String> {
        let mut names: Vec<String> = files.iter().map(|(p, _)| p.to_string()).collect();
        names.sort();
        names
    }

    /// Every source file of the Rust, Python and JavaScript SDKs is embedded: a missing one only
    /// shows when a scaffolded project fails to build.
    #[test]
    fn the_sdks_are_embedded_whole() {
        assert_eq!(
            embedded(super::RUST),
            on_disk("guest-sdk/src", "rs")
                .iter()
                .map(|f| format!("src/{f}"))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            embedded(super::PYTHON),
            on_disk("guest-sdk/python/eddy", "py")
                .iter()
                .map(|f| format!("eddy/{f}"))
                .collect::<Vec<_>>()
        );
    }
}
