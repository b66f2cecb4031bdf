//! The `eddy` command line.

mod bench;
mod build;
mod client;
mod new;
mod operator;
mod output;
mod pipeline;
mod progress;
mod run;
mod run_inputs;
mod savepoint;
mod serve;
mod shadow;
mod state;
mod topic;
mod upgrade;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Eddy: a stream-processing host for WebAssembly operators.
#[derive(Parser)]
#[command(name = "eddy", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    server: client::ServerArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline once over a bounded file of JSON events, with no server.
    Run(run::RunArgs),
    /// Create an operator project (Rust, Python, JavaScript or C) with a pipeline and test input.
    New(new::NewArgs),
    /// Build an operator project (Rust, Python, JavaScript or C) into a component.
    Build(build::BuildArgs),
    /// Measure throughput against native and raw baselines.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Run the server: embedded topics, operator registry, pipelines, HTTP API.
    Serve(serve::ServeArgs),
    /// Upload and manage operators on a server.
    #[command(subcommand)]
    Operator(operator::OperatorCommand),
    /// Create, inspect, produce to and consume from topics on a server.
    #[command(subcommand)]
    Topic(topic::TopicCommand),
    /// Create and control pipelines on a server.
    #[command(subcommand)]
    Pipeline(pipeline::PipelineCommand),
    /// List, download, upload and delete savepoints on a server.
    #[command(subcommand)]
    Savepoint(savepoint::SavepointCommand),
    /// Read an operator's committed state on a server: one key, or a scan.
    #[command(subcommand)]
    State(state::StateCommand),
}

/// Parses the command line, runs it, and turns any error into one clear line on stderr
/// and a non-zero exit.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    if !matches!(cli.command, Command::Serve(_)) {
        // Printing commands end quietly when their reader goes away (`| head`), as Unix
        // tools do; the server keeps ignoring SIGPIPE.
        #[cfg(unix)]
        // SAFETY: restoring the default disposition of a signal, before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::New(args) => new::run(args),
        Command::Build(args) => build::run(args),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Serve(args) => serve::run(args),
        Command::Operator(cmd) => client_call(operator::run(cmd, &cli.server)),
        Command::Topic(cmd) => client_call(topic::run(cmd, &cli.server)),
        Command::Pipeline(cmd) => client_call(pipeline::run(cmd, &cli.server)),
        Command::Savepoint(cmd) => client_call(savepoint::run(cmd, &cli.server)),
        Command::State(cmd) => client_call(state::run(cmd, &cli.server)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one client command on a small runtime.
fn client_call(f: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EDDY_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,wasmtime=warn,cranelift=warn")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
