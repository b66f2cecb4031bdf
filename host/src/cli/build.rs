//! `eddy build DIR`: an operator project in any language to a component.

use crate::build::{self, Language};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct BuildArgs {
    /// The project directory (Cargo.toml, app.py, package.json/app.js or .c files).
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// The project's language, when its files do not say.
    #[arg(long, value_enum)]
    lang: Option<Language>,
}

/// Builds, then prints the component's path alone on stdout (for `$(eddy build DIR)`).
pub fn run(args: BuildArgs) -> anyhow::Result<()> {
    let built = build::build(&args.dir, args.lang)?;
    eprintln!(
        "built a {} operator: {} ({:.1} KiB)",
        built.language,
        built.path.display(),
        built.size as f64 / 1024.0
    );
    println!("{}", built.path.display());
    Ok(())
}
