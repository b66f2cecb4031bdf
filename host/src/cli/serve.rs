//! `eddy serve`.

use crate::api::ApiConfig;
use crate::server::{ServerConfig, serve};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Where topics, operators, pipelines and state live.
    #[arg(long, env = "EDDY_DATA_DIR", default_value = "./eddy-data")]
    data_dir: PathBuf,
    /// Address of the HTTP API (port 0 picks a free port; the server prints it).
    #[arg(long, env = "EDDY_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Require `Authorization: Bearer <token>` on every change.
    #[arg(long, env = "EDDY_API_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
    /// Worker threads running tasks (default: twice the number of cores).
    #[arg(long)]
    workers: Option<usize>,
    /// Largest request body in MiB (operator uploads, produced records).
    #[arg(long, default_value_t = 64)]
    max_body_mb: usize,
    /// Kafka bootstrap servers for pipelines whose topics live in Kafka (HOST:PORT,...).
    #[arg(long, env = "EDDY_KAFKA_BROKERS")]
    kafka_brokers: Option<String>,
    /// Share Kafka pipelines and operators with every server started with the same
    /// cluster name and brokers; they split each pipeline's partitions.
    #[arg(long, env = "EDDY_CLUSTER", requires = "kafka_brokers")]
    cluster: Option<String>,
    /// This server's name in the cluster (default: generated once, kept in the data dir).
    #[arg(long, env = "EDDY_SERVER_NAME")]
    server_name: Option<String>,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let workers = args.workers.unwrap_or_else(crate::server::default_workers);
    let config = ServerConfig {
        data_dir: args.data_dir,
        workers,
        api: ApiConfig {
            token: args.api_token.filter(|t| !t.is_empty()),
            max_body_bytes: args.max_body_mb << 20,
        },
        kafka_brokers: args.kafka_brokers.filter(|b| !b.trim().is_empty()),
        cluster: args.cluster.filter(|c| !c.trim().is_empty()),
        server_name: args.server_name,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(config, args.listen))?;
    Ok(())
}
