//! Topic metadata and creation.

use super::{Connection, KafkaError, Quiet, REQUEST_TIMEOUT};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

fn metadata_client(conn: &Connection) -> Result<BaseConsumer<Quiet>, KafkaError> {
    conn.config(&[])
        .create_with_context(Quiet)
        .map_err(|e| conn.error(e))
}

/// The partition count of `topic` as `client` sees it: `None` when it does not exist.
fn partitions_of(
    client: &BaseConsumer<Quiet>,
    conn: &Connection,
    topic: &str,
) -> Result<Option<u32>, KafkaError> {
    let metadata = client
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(|e| conn.error(format!("cannot read metadata of topic {topic:?}: {e}")))?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.partitions().len() as u32))
}

/// The partition count of `topic`, or why it cannot be known.
pub fn partition_count(conn: &Connection, topic: &str) -> Result<u32, KafkaError> {
    partitions_of(&metadata_client(conn)?, conn, topic)?.ok_or_else(|| KafkaError::MissingTopic {
        topic: topic.to_string(),
        brokers: conn.brokers.clone(),
    })
}

/// Creates `topic` with `partitions` unless it exists (`compacted` for changelogs);
/// returns its partition count.
pub fn ensure_topic(
    conn: &Connection,
    topic: &str,
    partitions: u32,
    compacted: bool,
) -> Result<u32, KafkaError> {
    let compact: &[(&str, &str)] = &[("cleanup.policy", "compact")];
    ensure_topic_with(
        conn,
        topic,
        partitions,
        if compacted { compact } else { &[] },
    )
}

/// Creates `topic` with `partitions` and the topic configs `configs` unless it exists;
/// returns its partition count.
pub fn ensure_topic_with(
    conn: &Connection,
    topic: &str,
    partitions: u32,
    configs: &[(&str, &str)],
) -> Result<u32, KafkaError> {
    let client = metadata_client(conn)?;
    if let Some(n) = partitions_of(&client, conn, topic)? {
        return Ok(n);
    }
    let admin: AdminClient<Quiet> = conn
        .config(&[])
        .create_with_context(Quiet)
        .map_err(|e| conn.error(e))?;
    let mut new = NewTopic::new(topic, partitions as i32, TopicReplication::Fixed(-1));
    for (k, v) in configs {
        new = new.set(k, v);
    }
    let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
    let results = futures::executor::block_on(admin.create_topics([&new], &options))
        .map_err(|e| conn.error(format!("cannot create topic {topic:?}: {e}")))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => {
                return Err(conn.error(format!("cannot create topic {topic:?}: {code}")));
            }
        }
    }
    // Metadata lags creation a little; wait until the topic is visible.
    for _ in 0..50 {
        if let Some(n) = partitions_of(&client, conn, topic)? {
            return Ok(n);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Err(conn.error(format!(
        "topic {topic:?} was created but does not show in metadata"
    )))
}
