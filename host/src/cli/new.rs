//! `eddy new LANG DIR`: scaffold an operator project.

use crate::build::Language;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct NewArgs {
    /// The operator's language.
    #[arg(value_enum)]
    lang: Language,
    /// The project directory to create; its name is the operator's name.
    dir: PathBuf,
}

pub fn run(args: NewArgs) -> anyhow::Result<()> {
    let dir = crate::scaffold::create(args.lang, &args.dir)?;
    let d = dir.display();
    println!("created a {} operator in {d}", args.lang);
    println!("next:");
    println!("  eddy build {d}");
    println!("  cd {d} && eddy run pipeline.toml --input input.jsonl --output output.jsonl");
    Ok(())
}
