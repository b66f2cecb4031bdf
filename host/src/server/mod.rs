//! `eddy serve`: one process holding the embedded log, the operator registry, the
//! pipelines and their state under one data directory, behind the HTTP API.

use crate::api::{self, ApiConfig, AppState, Gate};
use crate::control::{ArchiveLimits, ControlError, Controller, Savepoints};
use crate::log::{Log, LogError};
use crate::memory::MemoryBudget;
use crate::metrics::Metrics;
use crate::record::now_ms;
use crate::registry::{Registry, RegistryError};
use crate::runtime::{Runtime, RuntimeConfig, RuntimeError};
use crate::state::{Db, DbOptions, StateError};
use crate::task::TaskFactory;
use bytesize::ByteSize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often failed tasks are turned into failed pipelines.
const SUPERVISE_EVERY: Duration = Duration::from_millis(100);
/// Changelog partitions are compacted once they grew by this many records.
const COMPACT_AFTER: u64 = 10_000;
/// How often topic retention (and changelog compaction) runs.
const RETENTION_EVERY: Duration = Duration::from_secs(30);

/// The default size of the worker pool: twice the cores. A task with a Kafka sink holds
/// its worker while its transaction commits (a broker round trip), so a pool of one
/// worker per core leaves cores idle under Kafka pipelines (measured: exactly-once
/// Kafka word count 0.46–0.66 of a plain pipe with 2 workers on 2 cores, 0.74–0.93 with
/// 4); CPU-bound embedded pipelines run as fast either way.
pub fn default_workers() -> usize {
    2 * std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Where and how a server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    /// Worker threads running tasks.
    pub workers: usize,
    pub api: ApiConfig,
    /// Default bootstrap servers for pipelines with Kafka topics.
    pub kafka_brokers: Option<String>,
    /// The cluster this server shares Kafka pipelines and operators with.
    pub cluster: Option<String>,
    /// This server's name in the cluster (default: made up once, kept in the data dir).
    pub server_name: Option<String>,
    /// What an uploaded savepoint archive may unpack to.
    pub savepoint_limits: ArchiveLimits,
    /// The server's memory budget in bytes (default: half of the machine's memory).
    pub memory_budget: Option<u64>,
    /// Where other servers of the cluster reach this one's HTTP API (to forward state
    /// queries); `serve` defaults it to the address it listens on.
    pub advertise_url: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data_dir: PathBuf::from("./eddy-data"),
            workers: default_workers(),
            api: ApiConfig::default(),
            kafka_brokers: None,
            cluster: None,
            server_name: None,
            savepoint_limits: ArchiveLimits::default(),
            memory_budget: None,
            advertise_url: None,
        }
    }
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("data directory {path}: {detail}")]
    DataDir { path: String, detail: String },
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("cluster: {0}")]
    Cluster(String),
    #[error("cannot listen on {addr}: {detail}")]
    Listen { addr: String, detail: String },
}

/// Everything a server runs, without the HTTP listener (tests drive it through
/// [`App::state`] and `api::router`).
pub struct App {
    pub controller: Arc<Controller>,
    pub metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
    background: Option<JoinHandle<()>>,
}

impl App {
    /// Opens (or creates) the data directory, resumes the pipelines that were running,
    /// and starts the background loops.
    pub fn open(config: &ServerConfig) -> Result<Self, ServerError> {
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir).map_err(|e| ServerError::DataDir {
            path: dir.display().to_string(),
            detail: e.to_string(),
        })?;
        let budget = Arc::new(match config.memory_budget {
            Some(bytes) => MemoryBudget::new(bytes),
            None => MemoryBudget::machine_default(),
        });
        tracing::info!(
            "memory budget {} (RocksDB {}); opening the database in {}",
            ByteSize::b(budget.limit()).display().iec(),
            ByteSize::b(budget.rocksdb_share()).display().iec(),
            dir.display()
        );
        let options = DbOptions {
            budget,
            ..DbOptions::default()
        };
        let db = match Db::open(&dir.join("db"), &options) {
            Ok(db) => Arc::new(db),
            Err(StateError::Open { source, .. }) if source.to_string().contains("lock") => {
                return Err(ServerError::DataDir {
                    path: dir.display().to_string(),
                    detail:
                        "another eddy server is using it; stop that one or pick another --data-dir"
                            .into(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let runtime = Runtime::new(RuntimeConfig {
            cache_dir: Some(dir.join("compiled")),
            ..RuntimeConfig::default()
        })?;
        tracing::info!("opening the embedded log and the operator registry");
        let log = Arc::new(Log::open(Arc::clone(&db))?);
        let registry = Arc::new(Registry::open(
            Arc::clone(&db),
            dir.join("operators"),
            runtime,
        )?);
        let metrics = Arc::new(Metrics::new());
        let savepoints = Savepoints::open(dir.join("savepoints"), config.savepoint_limits)
            .map_err(|e| ServerError::DataDir {
                path: dir.display().to_string(),
                detail: e.to_string(),
            })?;
        let factory = TaskFactory::new(db, log, registry, Arc::clone(&metrics), config.workers)
            .with_kafka_brokers(config.kafka_brokers.clone());
        let controller = Arc::new(Controller::new(factory, savepoints));
        if let Some(cluster) = &config.cluster {
            let brokers = config.kafka_brokers.clone().ok_or_else(|| {
                ServerError::Cluster(
                    "--cluster needs --kafka-brokers HOST:PORT (the cluster shares its catalog through Kafka)".into(),
                )
            })?;
            // It becomes part of topic names, group ids and transactional ids.
            crate::model::spec::check_name("cluster", cluster)
                .map_err(|e| ServerError::Cluster(e.to_string()))?;
            let name =
                crate::cluster::server_name(config.server_name.as_deref(), dir).map_err(|e| {
                    ServerError::DataDir {
                        path: dir.display().to_string(),
                        detail: e.to_string(),
                    }
                })?;
            let conn = crate::kafka::Connection {
                brokers,
                properties: Vec::new(),
            };
            let url = config.advertise_url.clone();
            let catalog = crate::cluster::Catalog::open(&conn, cluster, &name, url)
                .map_err(|e| ServerError::Cluster(e.to_string()))?;
            tracing::info!(%cluster, server = %name, "joined the cluster");
            controller.join_cluster(cluster, catalog);
        }
        tracing::info!("resuming the pipelines that were running");
        controller.boot()?;
        controller.follow_cluster()?;
        let stop = Arc::new(AtomicBool::new(false));
        let background = {
            let (controller, stop) = (Arc::clone(&controller), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("eddy-supervisor".into())
                .spawn(move || background_loop(&controller, &stop))
                .map_err(|e| ServerError::DataDir {
                    path: dir.display().to_string(),
                    detail: format!("cannot start a thread: {e}"),
                })?
        };
        Ok(App {
            controller,
            metrics,
            stop,
            background: Some(background),
        })
    }

    /// The state the API handlers share.
    pub fn state(&self, api: ApiConfig) -> AppState {
        AppState {
            controller: Arc::clone(&self.controller),
            metrics: Arc::clone(&self.metrics),
            queries: Arc::new(crate::api::QueryPool::new(api.query_nice)),
            config: Arc::new(api),
        }
    }

    /// Commits and stops every task; pipelines stay marked running, to resume at the next
    /// start.
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.background.take() {
            let _ = t.join();
        }
        self.controller.shutdown();
        self.controller.leave_cluster();
    }
}

fn background_loop(controller: &Controller, stop: &AtomicBool) {
    let mut last_retention = Instant::now();
    let sample_every = Duration::from_millis(crate::control::HISTORY_INTERVAL_MS);
    let mut last_sample = Instant::now();
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(SUPERVISE_EVERY);
        controller.supervise();
        if last_sample.elapsed() >= sample_every {
            last_sample = Instant::now();
            controller.sample_history();
        }
        if last_retention.elapsed() >= RETENTION_EVERY {
            last_retention = Instant::now();
            match controller.log().apply_retention(now_ms()) {
                Ok(0) => {}
                Ok(n) => tracing::info!("retention deleted {n} records"),
                Err(e) => tracing::error!("retention failed: {e}"),
            }
            match controller.compact_changelogs(COMPACT_AFTER) {
                Ok(0) => {}
                Ok(n) => tracing::info!("changelog compaction dropped {n} superseded records"),
                Err(e) => tracing::error!("changelog compaction failed: {e}"),
            }
        }
    }
}

/// Runs a server until SIGINT or SIGTERM, then commits every task and exits.
///
/// The address answers from the start: `/healthz` says `starting` while the server opens
/// its data (see `api::Gate`), and the log says what it is doing.
pub async fn serve(mut config: ServerConfig, listen: SocketAddr) -> Result<(), ServerError> {
    let listen_error = |e: std::io::Error| ServerError::Listen {
        addr: listen.to_string(),
        detail: e.to_string(),
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(listen_error)?;
    let bound = listener.local_addr().map_err(listen_error)?;
    tracing::info!("http://{bound} answers /healthz while the server starts");
    if config.advertise_url.is_none() {
        if bound.ip().is_unspecified() {
            // 0.0.0.0 reaches whoever connects to it: the other servers would ask
            // themselves.
            if config.cluster.is_some() {
                tracing::warn!(
                    "listening on every interface: other servers of the cluster cannot forward state queries here without --advertise-url"
                );
            }
        } else {
            config.advertise_url = Some(format!("http://{bound}"));
        }
    }
    let gate = Gate::default();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let served = tokio::spawn(
        axum::serve(listener, gate.router())
            .with_graceful_shutdown(async move {
                let mut stopped = stopped;
                let _ = stopped.wait_for(|s| *s).await;
            })
            .into_future(),
    );
    let app = match tokio::task::block_in_place(|| App::open(&config)) {
        Ok(app) => app,
        Err(e) => {
            let _ = stop.send(true);
            let _ = served.await;
            return Err(e);
        }
    };
    gate.open(api::router(app.state(config.api.clone())));
    // Scripts and tests read this line to find the port of a server that is up.
    println!(
        "eddy listening on http://{bound} (data in {})",
        config.data_dir.display()
    );
    shutdown_signal().await;
    tracing::info!("shutting down: committing every task");
    let _ = stop.send(true);
    let served = served.await;
    tokio::task::block_in_place(|| app.shutdown());
    match served {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(listen_error(e)),
        Err(e) => Err(ServerError::Listen {
            addr: bound.to_string(),
            detail: e.to_string(),
        }),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
