//! Kafka topics in pipelines: sources that read a partition, sinks that commit outputs,
//! changelog records and source offsets in one Kafka transaction, and restoring local
//! state from changelog topics in Kafka.

mod admin;
mod logs;
mod names;
mod position;
mod reset;
mod restore;
mod sink;
mod source;

pub use admin::{ensure_topic, ensure_topic_with, partition_count};
pub use logs::Quiet;
pub use names::{KafkaNames, stages_of};
pub use position::RecordedPosition;
pub use reset::{ResetPlan, reset_to_savepoint};
pub use restore::{RestoreProgress, RestoreReport, catch_up_standby, restore_task};
pub use sink::{KafkaSink, SinkTask, SourceOffsets, fence, fence_tasks, prepare};
pub use source::KafkaSource;

use crate::model::KafkaEndpoint;
use rdkafka::ClientConfig;
use std::time::Duration;

/// How long a metadata or admin request may take before the pipeline reports the
/// broker unreachable.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error(
        "no Kafka brokers for topic {topic:?}: start the server with --kafka-brokers HOST:PORT \
         (or EDDY_KAFKA_BROKERS), or give `brokers` in the pipeline's kafka table"
    )]
    NoBrokers { topic: String },
    #[error("Kafka topic {topic:?} does not exist on {brokers}; create it first")]
    MissingTopic { topic: String, brokers: String },
    #[error("Kafka ({brokers}): {message}")]
    Client { brokers: String, message: String },
}

/// Where a pipeline's Kafka clients connect: the brokers and extra properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub brokers: String,
    pub properties: Vec<(String, String)>,
}

impl Connection {
    /// The connection for a topic reference: its own brokers, else the server's.
    pub fn resolve(
        endpoint: &KafkaEndpoint,
        topic: &str,
        server_brokers: Option<&str>,
    ) -> Result<Self, KafkaError> {
        let brokers = endpoint
            .brokers
            .clone()
            .or_else(|| server_brokers.map(str::to_string))
            .filter(|b| !b.trim().is_empty())
            .ok_or_else(|| KafkaError::NoBrokers {
                topic: topic.to_string(),
            })?;
        Ok(Connection {
            brokers,
            properties: endpoint.properties.clone().into_iter().collect(),
        })
    }

    /// A client configuration with the user's properties applied last, so security
    /// settings (and any tuning) pass through as given.
    pub fn config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        c.set("log_level", "3");
        for (k, v) in defaults {
            c.set(*k, *v);
        }
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    /// The same connection without the user's property `key` (a client that needs its
    /// own default of it).
    pub fn without(&self, key: &str) -> Connection {
        Connection {
            brokers: self.brokers.clone(),
            properties: self
                .properties
                .iter()
                .filter(|(k, _)| k != key)
                .cloned()
                .collect(),
        }
    }

    pub(crate) fn error(&self, message: impl std::fmt::Display) -> KafkaError {
        KafkaError::Client {
            brokers: self.brokers.clone(),
            message: message.to_string(),
        }
    }
}

/// The header on changelog records naming the position their transaction records.
pub const POSITION_HEADER: &str = "eddy.position";

pub fn position_key(stage: u32, partition: u32) -> String {
    format!("{stage}/{partition}")
}

/// The context of consumers that read partitions to their end (a restore, a task's
/// source): librdkafka reports each end reached as an error, which is no news there.
pub struct EndIsExpected;

impl rdkafka::ClientContext for EndIsExpected {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        logs::log(level, fac, message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        if error.rdkafka_error_code() != Some(rdkafka::types::RDKafkaErrorCode::PartitionEOF) {
            logs::error(&error, reason);
        }
    }
}

impl rdkafka::consumer::ConsumerContext for EndIsExpected {}
