//! Python: componentize-py over the module `app` (which sets `Handler = eddy.export(...)`).

use super::sdk;
use super::toolchain::{BuildError, Tool};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The module componentize-py starts from.
pub const ENTRY: &str = "app.py";

const COMPONENTIZE_PY: Tool = Tool {
    name: "componentize-py",
    env: "EDDY_COMPONENTIZE_PY",
    install: "pip install componentize-py==0.25.*",
};

pub fn build(dir: &Path) -> Result<PathBuf, BuildError> {
    let tool = COMPONENTIZE_PY.find("Python operators")?;
    let work = super::work_dir(dir)?;
    sdk::write(sdk::WIT, &work.join("wit"))?;
    sdk::write(sdk::PYTHON, &work.join("python"))?;
    let out = super::output_path(dir, &super::dir_name(dir));
    COMPONENTIZE_PY.run(
        Command::new(tool)
            // componentize-py is Rust: a backtrace would bury the Python error message.
            .env("RUST_BACKTRACE", "0")
            .env("RUST_LIB_BACKTRACE", "0")
            .arg("-d")
            .arg(work.join("wit"))
            .args(["-w", "operator", "componentize", "app", "-p"])
            .arg(dir)
            .arg("-p")
            .arg(work.join("python"))
            .arg("-o")
            .arg(&out),
    )?;
    Ok(out)
}
