//! The layering of `host/src` (docs/ARCHITECTURE.md): each folder imports only the
//! folders below it, so there is no import cycle between folders; and no source file
//! grows past what one person can hold in mind.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What each folder (or top-level module) of `host/src` may import, bottom to top.
const LAYERS: &[(&str, &[&str])] = &[
    ("record", &[]),
    ("model", &[]),
    ("metrics", &[]),
    ("memory", &[]),
    ("dashboard", &[]),
    ("state", &["memory", "record"]),
    ("runtime", &["memory", "state", "model", "record"]),
    ("io", &["state", "record"]),
    ("log", &["io", "state", "model", "record"]),
    ("kafka", &["log", "io", "state", "model", "record"]),
    ("registry", &["runtime", "state", "model", "record"]),
    (
        "task",
        &[
            "kafka", "log", "registry", "runtime", "io", "state", "model", "record", "metrics",
            "memory",
        ],
    ),
    ("cluster", &["kafka", "registry", "model", "record"]),
    (
        "control",
        &[
            "cluster", "task", "kafka", "log", "registry", "state", "model", "record", "metrics",
            "memory",
        ],
    ),
    ("build", &["model"]),
    ("scaffold", &["build", "model"]),
];

/// Longest source file, in lines.
const MAX_LINES: usize = 800;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The modules of the crate a file names as `crate::<module>`, outside comments.
fn imports(path: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// The folder (or top-level module) a file of `host/src` belongs to.
fn layer_of(path: &Path) -> String {
    let rel = path.strip_prefix(src()).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

#[test]
fn every_folder_imports_only_the_layers_below_it() {
    let allowed: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let layer = layer_of(file);
        let Some(may) = allowed.get(layer.as_str()) else {
            continue; // api, cli, server, lib.rs, main.rs: the top
        };
        for module in imports(file) {
            if module != layer && !may.contains(&module.as_str()) {
                wrong.push(format!(
                    "{} imports crate::{module}",
                    file.strip_prefix(src()).unwrap().display()
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layering:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_layers_form_no_cycle() {
    // Each layer may import only layers listed before it.
    for (i, (layer, may)) in LAYERS.iter().enumerate() {
        for m in *may {
            let below = LAYERS[..i].iter().any(|(l, _)| l == m);
            assert!(below, "{layer} may import {m}, which is not below it");
        }
    }
}

#[test]
fn no_source_file_is_over_800_lines() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > MAX_LINES).then(|| format!("{}: {n} lines", f.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines:\n{}",
        long.join("\n")
    );
}
