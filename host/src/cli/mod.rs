//! The `eddy` command line.

mod bench;
mod run;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Eddy: a stream-processing host for WebAssembly operators.
#[derive(Parser)]
#[command(name = "eddy", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline once over a bounded file of JSON events, with no server.
    Run(run::RunArgs),
    /// Measure word count through the host: Wasm, native, and raw RocksDB.
    Bench(bench::BenchArgs),
}

/// Parses the command line, runs it, and turns any error into one clear line on stderr
/// and a non-zero exit.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EDDY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,wasmtime=warn,cranelift=warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
