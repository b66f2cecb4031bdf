//! `eddy bench`: throughput benchmarks that print ratios against a baseline measured in
//! the same run.

mod common;
mod failover;
mod host;
mod isolation;
mod join;
mod kafka;
mod languages;
mod latency;
mod latency_kafka;
mod queries;
mod restore;
mod server;
mod state;

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// One task, in-memory input: Wasm vs native vs raw RocksDB.
    Host(host::HostArgs),
    /// The server path: embedded topics, one task per partition, the worker pool.
    Server(server::ServerArgs),
    /// Kafka -> Wasm word count -> Kafka with exactly-once, against a plain consumer/producer pipe.
    Kafka(kafka::KafkaArgs),
    /// The same word count in several languages: events/s, size, start-up cost.
    Languages(languages::LanguagesArgs),
    /// End-to-end latency at a fixed rate, and throughput at saturation, on the embedded log.
    Latency(latency::LatencyArgs),
    /// Savepoint, restore, changelog rebuild and upgrade pause with many keys of state.
    State(state::StateArgs),
    /// The word count alone and next to a hostile pipeline (loops, traps, big writes).
    Isolation(isolation::IsolationArgs),
    /// Orders ⋈ customers (two inputs, a stream–table join) through the server path.
    Join(join::JoinArgs),
    /// The word count alone and while clients read its counts through the state query API.
    Queries(queries::QueriesArgs),
    /// A task's state rebuilt from its changelog topic in Kafka, against a plain consumer.
    Restore(restore::RestoreArgs),
    /// Two cluster servers, one killed: how long its partitions stand still, with and
    /// without a standby replica.
    Failover(failover::FailoverArgs),
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Host(args) => host::run(args),
        BenchCommand::Server(args) => server::run(args),
        BenchCommand::State(args) => state::run(args),
        BenchCommand::Languages(args) => languages::run(args),
        BenchCommand::Latency(args) => latency::run(args),
        BenchCommand::Kafka(args) => kafka::run(args),
        BenchCommand::Isolation(args) => isolation::run(args),
        BenchCommand::Join(args) => join::run(args),
        BenchCommand::Queries(args) => queries::run(args),
        BenchCommand::Restore(args) => restore::run(args),
        BenchCommand::Failover(args) => failover::run(args),
    }
}
