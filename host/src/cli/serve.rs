//! `eddy serve`.

use crate::api::ApiConfig;
use crate::control::ArchiveLimits;
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
    /// Require `Authorization: Bearer <token>` on every call but /healthz.
    #[arg(long, env = "EDDY_API_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
    /// A second token that may only read (GET); the --api-token may do everything.
    #[arg(
        long,
        env = "EDDY_READ_TOKEN",
        hide_env_values = true,
        requires = "api_token"
    )]
    read_token: Option<String>,
    /// Let anyone read (GET) without a token; changes still need the --api-token.
    #[arg(long, requires = "api_token")]
    public_read: bool,
    /// Worker threads running tasks (default: twice the number of cores).
    #[arg(long)]
    workers: Option<usize>,
    /// Largest request body in MiB (operator uploads, produced records, savepoint uploads).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    max_body_mb: u64,
    /// Most bytes an uploaded savepoint archive may unpack to, in MiB.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
    savepoint_max_mb: u64,
    /// Most files and folders an uploaded savepoint archive may hold.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    savepoint_max_files: u64,
    /// Kafka bootstrap servers for pipelines whose topics live in Kafka (HOST:PORT,...).
    #[arg(long, env = "EDDY_KAFKA_BROKERS")]
    kafka_brokers: Option<String>,
    /// Share Kafka pipelines and operators with every server started with the same
    /// cluster name and brokers; they split each pipeline's partitions.
    #[arg(long, env = "EDDY_CLUSTER", requires = "kafka_brokers")]
    cluster: Option<String>,
    /// This server's name in the cluster: 1 to 64 of `A-Z a-z 0-9 . _ -`, not starting with
    /// a dot (default: generated once, kept in the data dir).
    #[arg(long, env = "EDDY_SERVER_NAME")]
    server_name: Option<String>,
    /// Where the other servers of the cluster reach this one's HTTP API, to forward state
    /// queries of the partitions it runs (default: http://<the address it listens on>,
    /// none when that is every interface).
    #[arg(long, env = "EDDY_ADVERTISE_URL", value_parser = parse_url, requires = "cluster")]
    advertise_url: Option<String>,
    /// Memory the server may use: RocksDB's cache and memtables take a quarter, operator
    /// instances and the tasks' cached state share the rest (`4GiB`, `512MiB`; default:
    /// half of the machine's memory).
    #[arg(long, env = "EDDY_MEMORY_BUDGET", value_parser = parse_budget)]
    memory_budget: Option<u64>,
    /// Added to the nice value of the threads that answer state queries, so that clients
    /// reading state as fast as they can get the CPU the pipelines leave (0: the server's
    /// own priority).
    #[arg(long, env = "EDDY_QUERY_NICE", default_value_t = 10, value_parser = clap::value_parser!(i32).range(0..=19))]
    query_nice: i32,
}

fn parse_url(text: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    // Servers call each other over plain HTTP (a TLS-terminating proxy in front of a
    // server is for its users, not for its peers).
    if url.scheme() != "http" || url.host().is_none() {
        return Err(format!("{text:?} must be an http:// URL with a host"));
    }
    Ok(text.trim_end_matches('/').to_string())
}

fn parse_budget(text: &str) -> Result<u64, String> {
    let bytes = crate::memory::parse_size(text)?;
    if bytes < crate::memory::MIN_BUDGET {
        return Err(format!(
            "{text:?} is too small: a server needs at least {} MiB",
            crate::memory::MIN_BUDGET >> 20
        ));
    }
    Ok(bytes)
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let token = args.api_token.filter(|t| !t.is_empty());
    if token.is_none() && (args.read_token.is_some() || args.public_read) {
        // (An empty EDDY_API_TOKEN satisfies `requires`: the server would run open.)
        anyhow::bail!(
            "--read-token and --public-read need a non-empty --api-token (or EDDY_API_TOKEN)"
        );
    }
    let workers = args.workers.unwrap_or_else(crate::server::default_workers);
    let config = ServerConfig {
        data_dir: args.data_dir,
        workers,
        api: ApiConfig {
            token,
            read_token: args.read_token.filter(|t| !t.is_empty()),
            public_read: args.public_read,
            max_body_bytes: (args.max_body_mb << 20) as usize,
            query_nice: args.query_nice,
        },
        kafka_brokers: args.kafka_brokers.filter(|b| !b.trim().is_empty()),
        cluster: args.cluster.filter(|c| !c.trim().is_empty()),
        server_name: args.server_name,
        savepoint_limits: ArchiveLimits {
            max_bytes: args.savepoint_max_mb << 20,
            max_entries: args.savepoint_max_files,
        },
        memory_budget: args.memory_budget,
        advertise_url: args.advertise_url,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(config, args.listen))?;
    Ok(())
}
