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
    /// Only write the SDK the project's tests and editor read (ignored by git, so a fresh
    /// clone lacks it), without building or needing the language's toolchain.
    #[arg(long)]
    sdk_only: bool,
}

/// Builds, then prints the component's path alone on stdout (for `$(eddy build DIR)`).
pub fn run(args: BuildArgs) -> anyhow::Result<()> {
    if args.sdk_only {
        let (language, path) = build::write_sdk(&args.dir, args.lang)?;
        eprintln!("wrote the {language} SDK: {}", path.display());
        println!("{}", path.display());
        return Ok(());
    }
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
