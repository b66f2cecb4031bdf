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
    "eddy/__init__.py", "eddy/_api.py", "eddy/_export.py", "eddy/_flat.py", "eddy/_host.py");

/// The JavaScript package `eddy`.
pub const JS: Files = embed!("guest-sdk/js":
    "package.json", "src/index.js", "src/api.js", "src/errors.js", "src/export.js", "src/flat.js", "src/utf8.js");

/// The C helper.
pub const C: Files = embed!("guest-sdk/c": "eddy.h", "eddy.c");

/// Writes `files` under `dir`.
pub fn write(files: Files, dir: &Path) -> Result<(), BuildError> {
    for (name, contents) in files {
        write_if_changed(&dir.join(name), contents.as_bytes())?;
    }
    Ok(())
}
