//! `eddy build`: turns an operator project, whatever its language, into a component.
//!
//! The language is detected from the project's files; each builder runs that language's
//! toolchain with the WIT world and the Eddy SDK that this binary embeds, so a project
//! needs nothing from the Eddy source tree.

mod c;
pub(crate) mod js;
pub(crate) mod python;
mod rust;
pub mod sdk;
mod toolchain;

use std::fmt;
use std::path::{Path, PathBuf};

pub use toolchain::BuildError;

/// Languages `eddy build` and `eddy new` know.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    Rust,
    Python,
    Js,
    C,
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Language::Rust => "rust",
            Language::Python => "python",
            Language::Js => "js",
            Language::C => "c",
        })
    }
}

/// What a build produced.
#[derive(Debug)]
pub struct Built {
    pub language: Language,
    pub path: PathBuf,
    pub size: u64,
}

/// Builds the project in `dir` (its language detected unless given) and writes
/// `<dir>/<name>.wasm`.
pub fn build(dir: &Path, language: Option<Language>) -> Result<Built, BuildError> {
    let language = project_language(dir, language)?;
    let path = match language {
        Language::Rust => rust::build(dir)?,
        Language::Python => python::build(dir)?,
        Language::Js => js::build(dir)?,
        Language::C => c::build(dir)?,
    };
    stamp_language(&path, language)?;
    let size = std::fs::metadata(&path)
        .map_err(|e| BuildError::io(&path, e))?
        .len();
    Ok(Built {
        language,
        path,
        size,
    })
}

/// Names the language in the component's own producers section, so a server shows
/// what an operator was written in (a Python or JavaScript component records none).
fn stamp_language(path: &Path, language: Language) -> Result<(), BuildError> {
    let name = match language {
        Language::Rust => "Rust",
        Language::Python => "Python",
        Language::Js => "JavaScript",
        Language::C => "C",
    };
    let bytes = std::fs::read(path).map_err(|e| BuildError::io(path, e))?;
    let mut producers = wasm_metadata::Producers::empty();
    producers.add("language", name, "");
    let stamped = producers
        .add_to_wasm(&bytes)
        .map_err(|e| BuildError::io(path, std::io::Error::other(e.to_string())))?;
    std::fs::write(path, stamped).map_err(|e| BuildError::io(path, e))
}

/// Writes the SDK that a project's tests and editor read, without building: the vendored
/// crate (Rust), `.eddy/python`, `node_modules/eddy` or the C headers in `.eddy/c`. These
/// are ignored by git, so a fresh clone of a project needs this (or a build) before its
/// tests run. Returns the language and where the SDK went.
pub fn write_sdk(
    dir: &Path,
    language: Option<Language>,
) -> Result<(Language, PathBuf), BuildError> {
    let language = project_language(dir, language)?;
    let written = match language {
        Language::Rust => {
            sdk::write_rust(dir)?;
            dir.join(sdk::RUST_VENDOR_DIR)
        }
        Language::Python => python::write_sdk(dir)?.join("python"),
        Language::Js => {
            js::write_sdk(dir)?;
            dir.join("node_modules").join("eddy")
        }
        Language::C => c::write_sdk(dir)?,
    };
    Ok((language, written))
}

/// The language given, or the one detected; `dir` must be an existing directory.
fn project_language(dir: &Path, language: Option<Language>) -> Result<Language, BuildError> {
    if !dir.is_dir() {
        return Err(BuildError::NotAProject {
            dir: dir.to_path_buf(),
            reason: "it is not a directory".into(),
        });
    }
    match language {
        Some(l) => Ok(l),
        None => detect(dir),
    }
}

/// The language of the project in `dir`, from the files it holds.
pub fn detect(dir: &Path) -> Result<Language, BuildError> {
    let found: Vec<Language> = [
        (Language::Rust, dir.join("Cargo.toml").is_file()),
        (Language::Python, dir.join(python::ENTRY).is_file()),
        (Language::Js, js::entry(dir).is_some()),
        (Language::C, !c::sources(dir)?.is_empty()),
    ]
    .into_iter()
    .filter_map(|(l, present)| present.then_some(l))
    .collect();
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(BuildError::NotAProject {
            dir: dir.to_path_buf(),
            reason: format!(
                "it holds no Cargo.toml (Rust), {} (Python), package.json or {} (JavaScript), \
                 or .c files (C); `eddy new <rust|python|js|c> NAME` creates a project",
                python::ENTRY,
                js::DEFAULT_ENTRY
            ),
        }),
        many => Err(BuildError::NotAProject {
            dir: dir.to_path_buf(),
            reason: format!(
                "it looks like a project in several languages ({}); pick one with --lang",
                many.iter()
                    .map(|l| l.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

/// The component's file name: the project's name made safe for a file name.
fn output_path(dir: &Path, name: &str) -> PathBuf {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let clean = if clean.trim_matches('-').is_empty() {
        "operator".to_string()
    } else {
        clean
    };
    dir.join(format!("{clean}.wasm"))
}

/// The project's name when it declares none: its directory's name.
fn dir_name(dir: &Path) -> String {
    let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    abs.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "operator".into())
}

/// Where generated files (WIT, SDK copies, bindings) go inside a project.
fn work_dir(dir: &Path) -> Result<PathBuf, BuildError> {
    let work = dir.join(".eddy");
    std::fs::create_dir_all(&work).map_err(|e| BuildError::io(&work, e))?;
    Ok(work)
}
