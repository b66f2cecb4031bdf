//! `eddy new`: a buildable operator project in any supported language, with a pipeline
//! spec and test input, so `eddy build` and `eddy run` work at once.

use crate::build::{self, BuildError, Language};
use std::path::{Path, PathBuf};

type Template = &'static [(&'static str, &'static str)];

macro_rules! template {
    ($($dest:literal => $src:literal),* $(,)?) => {
        &[$(($dest, include_str!(concat!("templates/", $src)))),*]
    };
}

const COMMON: Template = template!(
    "pipeline.toml" => "common/pipeline.toml",
    "input.jsonl" => "common/input.jsonl",
    ".gitignore" => "common/gitignore",
);
const RUST: Template =
    template!("Cargo.toml" => "rust/Cargo.toml", "src/lib.rs" => "rust/src/lib.rs");
const PYTHON: Template =
    template!("app.py" => "python/app.py", "test_app.py" => "python/test_app.py");
const JS: Template = template!(
    "app.js" => "js/app.js",
    "app.test.js" => "js/app.test.js",
    "package.json" => "js/package.json",
);
const C: Template = template!("operator.c" => "c/operator.c");

/// Creates the project `dir` (which must not exist or be empty); its last path
/// component is the operator's name.
pub fn create(language: Language, dir: &Path) -> Result<PathBuf, BuildError> {
    let name = dir.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        BuildError::Project(format!("{} does not end in a project name", dir.display()))
    })?;
    crate::model::spec::check_name("operator", name).map_err(|e| {
        BuildError::Project(format!(
            "`{name}` cannot name an operator: {e} (use letters, digits, - and _)"
        ))
    })?;
    if dir.exists()
        && std::fs::read_dir(dir)
            .map_err(|e| BuildError::io(dir, e))?
            .next()
            .is_some()
    {
        return Err(BuildError::Project(format!(
            "{} already exists and is not empty",
            dir.display()
        )));
    }
    let files = match language {
        Language::Rust => RUST,
        Language::Python => PYTHON,
        Language::Js => JS,
        Language::C => C,
    };
    let crate_name = name.replace('-', "_");
    for (dest, text) in COMMON.iter().chain(files) {
        let text = text
            .replace("{{name}}", name)
            .replace("{{crate}}", &crate_name);
        let path = dir.join(dest);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| BuildError::io(parent, e))?;
        }
        std::fs::write(&path, text).map_err(|e| BuildError::io(&path, e))?;
    }
    // So the tests (`cargo test`, `python3 -m unittest`, `npm test`) and editors see the
    // SDK before the first `eddy build`.
    build::write_sdk(dir, Some(language))?;
    Ok(dir.to_path_buf())
}
