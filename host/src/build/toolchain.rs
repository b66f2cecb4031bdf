//! Finding and running the external tools a build needs.

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{} is not an operator project: {reason}", dir.display())]
    NotAProject { dir: PathBuf, reason: String },
    #[error("{tool} is not installed (needed to build {what}); install it with: {install}")]
    ToolMissing {
        tool: String,
        what: &'static str,
        install: String,
    },
    #[error("{tool} failed ({status}); its message is above")]
    ToolFailed { tool: String, status: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Project(String),
    #[error("cannot make a component of the compiled module: {0:#}")]
    Component(anyhow::Error),
}

impl BuildError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        BuildError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A tool to run: `env` overrides the program (a path or a name on PATH).
pub(crate) struct Tool {
    pub name: &'static str,
    pub env: &'static str,
    pub install: &'static str,
}

impl Tool {
    /// The tool's program, or an error saying how to install it to build `what`.
    pub fn find(&self, what: &'static str) -> Result<PathBuf, BuildError> {
        let program = std::env::var_os(self.env)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(self.name));
        resolve(&program).ok_or_else(|| BuildError::ToolMissing {
            tool: program.display().to_string(),
            what,
            install: format!("{} (or point {} at it)", self.install, self.env),
        })
    }

    /// Runs `command` with its output on our stderr, so the toolchain's own messages (a
    /// syntax error, say) reach the user as it wrote them.
    pub fn run(&self, command: &mut Command) -> Result<(), BuildError> {
        tracing::debug!(?command, "running");
        // Our stdout is the component's path alone, so scripts can capture it.
        command.stdout(std::io::stderr());
        let status = command.status().map_err(|e| BuildError::ToolFailed {
            tool: self.name.into(),
            status: format!("could not start: {e}"),
        })?;
        if status.success() {
            Ok(())
        } else {
            Err(BuildError::ToolFailed {
                tool: self.name.into(),
                status: status.to_string(),
            })
        }
    }
}

/// `program` as an executable path: itself when it has a directory part, else the first
/// match on PATH.
fn resolve(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.is_file().then(|| program.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Writes `contents` to `path` unless it already holds exactly that (keeps mtimes stable
/// for toolchains that rebuild on change).
pub(crate) fn write_if_changed(path: &Path, contents: &[u8]) -> Result<(), BuildError> {
    if std::fs::read(path).ok().as_deref() == Some(contents) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| BuildError::io(parent, e))?;
    }
    std::fs::write(path, contents).map_err(|e| BuildError::io(path, e))
}
