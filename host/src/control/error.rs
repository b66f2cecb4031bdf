//! Why a control-plane call failed: one variant per thing that was missing, refused or
//! in the way, so the API maps each to its answer in one place (`api/error.rs`).

use super::manifest::SavepointError;
use crate::kafka::KafkaError;
use crate::log::{LogError, ReplayError};
use crate::model::SpecError;
use crate::registry::RegistryError;
use crate::state::StateError;
use crate::task::{OperatorStartError, StartError};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("pipeline {0:?} does not exist")]
    NotFound(String),
    #[error("pipeline {0:?} already exists; delete it or pick another name")]
    Exists(String),

    // The request cannot work as given.
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("add a source: [source] topic = \"<topic>\" (a server pipeline reads a topic)")]
    NoSource,
    #[error("add a sink: [sink] topic = \"<topic>\" (a server pipeline writes a topic)")]
    NoSink,
    #[error("the sink topic must differ from the source topic")]
    SinkIsSource,
    #[error(
        "{what} of a pipeline whose stages meet in Kafka (a cluster's pipeline that repartitions) is not supported yet: the records between its stages, in its repartition topics, are not part of a savepoint"
    )]
    SharedRepartition { what: &'static str },
    #[error(
        "input topic {0:?} does not exist; create it first (eddy topic create {0} --partitions N)"
    )]
    NoSourceTopic(String),
    /// A Kafka topic reference that cannot be used (no brokers to reach it).
    #[error(transparent)]
    KafkaEndpoint(KafkaError),
    /// The pipeline's Kafka source or sink refused what the pipeline needs of it.
    #[error("{end}: {error}")]
    KafkaTopic {
        end: &'static str,
        error: KafkaError,
    },
    #[error(
        "operator {0:?} is not in the registry; push it first (eddy operator push {0} FILE.wasm)"
    )]
    UnknownOperator(String),
    /// The operator is registered, but not in the version asked for.
    #[error(transparent)]
    UnknownVersion(RegistryError),
    #[error("pipeline {pipeline:?} has no operator {operator:?} (it has {ids:?})")]
    NoSuchOperator {
        pipeline: String,
        operator: String,
        ids: Vec<String>,
    },
    #[error("from_savepoint = {0:?}: no such savepoint here (eddy savepoint list)")]
    NoSuchSavepoint(String),
    /// An operator of a pipeline being created could not start.
    #[error(transparent)]
    Start(StartError),
    #[error("pipeline {pipeline:?} cannot start: {reason}")]
    CannotStart { pipeline: String, reason: String },

    // The request conflicts with the pipeline's state (or the cluster's).
    /// A savepoint, restore, upgrade or recovery works on the pipeline now.
    #[error("pipeline {pipeline:?} is busy with {with}; try again when it is done")]
    Busy {
        pipeline: String,
        with: &'static str,
    },
    #[error("pipeline {pipeline:?} is running; stop it before {before}")]
    Running {
        pipeline: String,
        before: &'static str,
    },
    #[error("pipeline {0:?} is not running; start it, then upgrade")]
    NotRunning(String),
    #[error("pipeline {0:?} has no upgrade on probation, and no canary, to promote or roll back")]
    NoProbation(String),
    #[error("{0}")]
    BadCanary(String),
    #[error(
        "the upgrade of pipeline {pipeline:?} is judged by server {judge:?}: ask it there to promote, roll back or stop"
    )]
    NotTheJudge { pipeline: String, judge: String },
    #[error(
        "pipeline {pipeline:?} runs a canary of {operator} on partitions {partitions:?}: promote it or roll it back first (eddy pipeline upgrade {pipeline} --promote | --rollback)"
    )]
    CanaryRuns {
        pipeline: String,
        operator: String,
        partitions: Vec<u32>,
    },
    #[error(
        "pipeline {pipeline:?} runs a shadow of {operator}: promote or discard it first (eddy pipeline shadow {pipeline} --promote | --discard)"
    )]
    ShadowRuns { pipeline: String, operator: String },
    #[error(
        "pipeline {pipeline:?} keeps the report of a shadow run of {operator} that ended: promote or discard it first (eddy pipeline shadow {pipeline} --promote | --discard)"
    )]
    ShadowKept { pipeline: String, operator: String },
    #[error(
        "pipeline {0:?} has no shadow run; start one with eddy pipeline upgrade {0} --operator <id>@<version> --shadow"
    )]
    NoShadow(String),
    #[error(
        "pipeline {0:?} is shared across the cluster: shadow runs are for pipelines on one server (use a canary: eddy pipeline upgrade --partitions)"
    )]
    SharedShadow(String),
    #[error("{0}")]
    BadShadow(String),
    /// A task could not start or end its share of a shadow run.
    #[error("{0}")]
    ShadowTask(String),
    #[error("operator {operator} already runs {name}@{version}")]
    AlreadyRuns {
        operator: String,
        name: String,
        version: u32,
    },
    /// A stage's source cannot be read now (its Kafka topic does not answer).
    #[error(transparent)]
    Stage(StartError),
    /// The tasks could not be brought to one batch boundary.
    #[error("{0}")]
    Pause(String),
    #[error("savepoint export failed: {0}")]
    Export(String),
    #[error("{0} panicked")]
    Panicked(&'static str),
    #[error("rebuilding {pipeline:?}: {error}")]
    Rebuild {
        pipeline: String,
        error: ReplayError,
    },
    /// A restore failed after it began to replace state (the pipeline is failed with
    /// this reason until a restore finishes).
    #[error("{0}")]
    RestoreUnfinished(String),
    #[error(
        "savepoint {id:?} is being restored into pipeline {pipeline:?} (the restore did not finish); restore that pipeline first"
    )]
    SavepointInRestore { id: String, pipeline: String },
    #[error("the Kafka sink does not answer ({0}); nothing was restored, try again once it does")]
    SinkDown(KafkaError),
    #[error("Kafka could not be brought to it ({0})")]
    KafkaReset(KafkaError),

    // A pipeline shared across a cluster.
    #[error(
        "pipeline {pipeline:?} is shared across the cluster: stop it first (`eddy pipeline stop {pipeline}` stops it on every server), then take {what}"
    )]
    StopSharedFirst {
        pipeline: String,
        what: &'static str,
    },
    #[error("reading partition {partition}'s state from Kafka: {error}")]
    KafkaState { partition: u32, error: KafkaError },
    #[error(
        "servers {servers:?} still report tasks of pipeline {pipeline:?}; try again once they stopped (an at-least-once pipeline cannot fence them)"
    )]
    ServersStillRunning {
        servers: Vec<String>,
        pipeline: String,
    },
    #[error("fencing the pipeline's tasks: {0}")]
    Fence(KafkaError),
    #[error("cannot hold the pipeline: {0}")]
    Hold(KafkaError),
    #[error(
        "partitions {missing:?} of pipeline {pipeline:?} were not held within {waited:?} (a server is slow or gone); try again"
    )]
    NotHeld {
        missing: Vec<u32>,
        pipeline: String,
        waited: Duration,
    },
    #[error("pipeline {0:?} still runs tasks here")]
    StillRunsHere(String),
    /// The cluster catalog could not be read or written.
    #[error(transparent)]
    Catalog(KafkaError),
    #[error("operator stored here but not shared with the cluster: {0}")]
    OperatorNotShared(KafkaError),
    #[error("deleted here, but not on the other servers: {0}")]
    DeletionNotShared(KafkaError),
    #[error(
        "restored, but the other servers were not told ({0}); restore again before starting the pipeline"
    )]
    RestoreNotShared(KafkaError),
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),

    // What lies below.
    #[error(transparent)]
    Savepoint(#[from] SavepointError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    State(#[from] StateError),
}

impl ControlError {
    /// A task-building error about an existing pipeline: what lies below keeps its own
    /// answer (a missing topic, an unknown operator version, unreachable brokers); a
    /// Kafka source that does not answer conflicts with the request.
    pub(super) fn stage(e: StartError) -> Self {
        match e {
            StartError::Log(e) => ControlError::Log(e),
            StartError::Registry { error, .. } => ControlError::Registry(error),
            StartError::Kafka(e) => ControlError::KafkaEndpoint(e),
            other => ControlError::Stage(other),
        }
    }

    /// A task-building error about a pipeline being created: an operator that does not
    /// start makes the request invalid; the registry and the storage keep their answers.
    pub(super) fn start(e: StartError) -> Self {
        match e {
            StartError::Registry { error, .. } => ControlError::Registry(error),
            StartError::Operator(OperatorStartError::State { error, .. }) => {
                ControlError::State(error)
            }
            other => ControlError::Start(other),
        }
    }
}

/// Why a pipeline could not run here (its reason when it fails or recovers).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Start(#[from] StartError),
    /// A restore that did not finish could not be finished now.
    #[error("{0}")]
    UnfinishedRestore(String),
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error("source: {0}")]
    Source(KafkaError),
    #[error("operator {id}: {error}")]
    Operator { id: String, error: RegistryError },
    /// A pipeline made outside a cluster keeps its repartition topics in this server's
    /// embedded log: the cluster's other servers could not read them.
    #[error(
        "the pipeline repartitions through this server's embedded log (it was created outside a cluster), so the cluster cannot share it; create it again on a server of the cluster (its repartition topics then live in Kafka)"
    )]
    LocalRepartition,
}
