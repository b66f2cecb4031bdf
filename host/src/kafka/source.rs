//! A task's source partition in Kafka.

use super::{Connection, KafkaError};
use crate::record::now_ms;
use crate::task::{SourceBatch, TaskError, TaskSource, batch};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// How often the partition's end offset is asked for (it only feeds the lag).
const END_OFFSET_EVERY: Duration = Duration::from_secs(1);

pub struct KafkaSource {
    consumer: Arc<BaseConsumer>,
    conn: Connection,
    topic: String,
    partition: u32,
    /// The offset the consumer reads next, when it is positioned.
    next: Option<u64>,
    /// The partition's end offset as a background thread last heard it: asking the
    /// broker takes a round trip (seconds on a loaded broker), which the worker thread
    /// that runs the task must not wait for.
    end: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Asks for the partition's end offset every [`END_OFFSET_EVERY`] until `stop`.
fn watch_end(
    consumer: Arc<BaseConsumer>,
    topic: String,
    partition: u32,
    end: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Acquire) {
        if let Ok((_, high)) =
            consumer.fetch_watermarks(&topic, partition as i32, Duration::from_secs(5))
        {
            end.fetch_max(high.max(0) as u64, Ordering::Release);
        }
        // Sleep in short steps so a dropped source's thread ends soon.
        let mut slept = Duration::ZERO;
        while slept < END_OFFSET_EVERY && !stop.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(50));
            slept += Duration::from_millis(50);
        }
    }
}

impl KafkaSource {
    /// A consumer of `topic` partition `partition` in the pipeline's group, reading only
    /// committed records of transactional producers.
    pub fn new(
        conn: &Connection,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Self, KafkaError> {
        let consumer: BaseConsumer = conn
            .config(&[
                ("group.id", group),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("isolation.level", "read_committed"),
                ("auto.offset.reset", "earliest"),
                ("enable.partition.eof", "false"),
            ])
            .create()
            .map_err(|e| conn.error(e))?;
        let consumer = Arc::new(consumer);
        // Known before the task runs, so its first status has the true lag.
        let first = consumer
            .fetch_watermarks(topic, partition as i32, Duration::from_secs(5))
            .map_or(0, |(_, high)| high.max(0) as u64);
        let (end, stop) = (
            Arc::new(AtomicU64::new(first)),
            Arc::new(AtomicBool::new(false)),
        );
        let watcher = (
            Arc::clone(&consumer),
            topic.to_string(),
            Arc::clone(&end),
            Arc::clone(&stop),
        );
        std::thread::Builder::new()
            .name(format!("eddy-end-{topic}-{partition}"))
            .spawn(move || watch_end(watcher.0, watcher.1, partition, watcher.2, watcher.3))
            .map_err(|e| conn.error(format!("cannot start a thread: {e}")))?;
        Ok(KafkaSource {
            consumer,
            conn: conn.clone(),
            topic: topic.to_string(),
            partition,
            next: None,
            end,
            stop,
        })
    }

    /// The consumer, for the sink's transactions (its group metadata).
    pub fn consumer(&self) -> Arc<BaseConsumer> {
        Arc::clone(&self.consumer)
    }

    fn seek(&mut self, from: u64) -> Result<(), TaskError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(
            &self.topic,
            self.partition as i32,
            Offset::Offset(from as i64),
        )
        .map_err(|e| TaskError::Source(e.to_string()))?;
        self.consumer
            .assign(&tpl)
            .map_err(|e| TaskError::Source(self.conn.error(e).to_string()))?;
        self.next = Some(from);
        Ok(())
    }
}

impl TaskSource for KafkaSource {
    fn poll(&mut self, from: u64, max: usize) -> Result<SourceBatch, TaskError> {
        if self.next != Some(from) {
            self.seek(from)?;
        }
        let mut events = batch::empty();
        let mut offsets = Vec::new();
        // Wait briefly for the first record only: a worker thread serves many tasks.
        let mut wait = Duration::from_millis(5);
        while offsets.len() < max {
            let Some(result) = self.consumer.poll(wait) else {
                break;
            };
            wait = Duration::ZERO;
            let msg = match result {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(topic = %self.topic, partition = self.partition, "kafka consumer: {e}");
                    break;
                }
            };
            let offset = msg.offset() as u64;
            let headers: Vec<(String, Vec<u8>)> = msg
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default();
            let timestamp = msg.timestamp().to_millis().unwrap_or_else(now_ms);
            batch::push(
                &mut events,
                msg.key(),
                msg.payload().unwrap_or_default(),
                timestamp,
                &headers,
            );
            offsets.push(offset);
            self.next = Some(offset + 1);
        }
        Ok(SourceBatch { events, offsets })
    }

    fn end_offset(&self) -> u64 {
        self.end.load(Ordering::Acquire)
    }
}
