//! A task's source partition in Kafka.

use super::{Connection, EndIsExpected, KafkaError};
use crate::io::{IoError, SourceBatch, TaskSource};
use crate::record::batch;
use crate::record::now_ms;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the partition's end offset is asked for (it feeds the lag, and tells a task
/// reading several inputs whether records wait to be fetched).
const END_OFFSET_EVERY: Duration = Duration::from_secs(1);
/// How soon a failed ask is made again.
const RETRY_END_OFFSET: Duration = Duration::from_millis(100);

pub struct KafkaSource {
    consumer: Arc<BaseConsumer<EndIsExpected>>,
    conn: Connection,
    topic: String,
    partition: u32,
    /// The offset the consumer reads next, when it is positioned.
    next: Option<u64>,
    /// The partition's end, when to ask for it next, and whether an answer came.
    end: Mutex<(u64, Option<Instant>, bool)>,
    /// The high watermark the consumer had fetched everything up to when it last reported
    /// reaching the partition's end, while no record came since.
    fetched: Option<u64>,
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
        let consumer: BaseConsumer<EndIsExpected> = conn
            .config(&[
                ("group.id", group),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("isolation.level", "read_committed"),
                ("auto.offset.reset", "earliest"),
                // The end reached tells the merge of several inputs that the offsets
                // left are transaction markers, not records still to fetch.
                ("enable.partition.eof", "true"),
                // A broker that holds an empty fetch for the whole wait (Tansu does)
                // adds it to the latency of the next record; Kafka answers at once.
                ("fetch.wait.max.ms", "20"),
            ])
            .create_with_context(EndIsExpected)
            .map_err(|e| conn.error(e))?;
        Ok(KafkaSource {
            consumer: Arc::new(consumer),
            conn: conn.clone(),
            topic: topic.to_string(),
            partition,
            next: None,
            end: Mutex::new((0, None, false)),
            fetched: None,
        })
    }

    /// The consumer, for the sink's transactions (its group metadata).
    pub fn consumer(&self) -> Arc<BaseConsumer<EndIsExpected>> {
        Arc::clone(&self.consumer)
    }

    fn seek(&mut self, from: u64) -> Result<(), IoError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(
            &self.topic,
            self.partition as i32,
            Offset::Offset(from as i64),
        )
        .map_err(|e| IoError::Source(e.to_string()))?;
        self.consumer
            .assign(&tpl)
            .map_err(|e| IoError::Source(self.conn.error(e).to_string()))?;
        self.next = Some(from);
        self.fetched = None;
        Ok(())
    }

    /// The partition's end as the consumer's last fetch saw it (librdkafka's cached high
    /// watermark, no request; rdkafka has no wrapper for it).
    fn fetched_end(&self) -> Option<u64> {
        use rdkafka::bindings::{rd_kafka_get_watermark_offsets, rd_kafka_resp_err_t};
        let topic = std::ffi::CString::new(self.topic.as_str()).ok()?;
        let (mut low, mut high) = (-1i64, -1i64);
        // SAFETY: the handle lives as long as `self.consumer`; the topic is a C string and
        // the out-pointers point at live i64s, for the length of the call.
        let err = unsafe {
            rd_kafka_get_watermark_offsets(
                self.consumer.client().native_ptr(),
                topic.as_ptr(),
                self.partition as i32,
                &mut low,
                &mut high,
            )
        };
        (err == rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some(high as u64)
    }
}

impl TaskSource for KafkaSource {
    fn poll(&mut self, from: u64, max: usize) -> Result<SourceBatch, IoError> {
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
                Err(rdkafka::error::KafkaError::PartitionEOF(_)) => {
                    // Everything up to the end the last fetch saw has been handed over.
                    self.fetched = self.fetched_end();
                    continue;
                }
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
            self.fetched = None;
        }
        Ok(SourceBatch {
            events,
            offsets,
            source: 0,
        })
    }

    fn end_offset(&self) -> u64 {
        let mut end = self.end.lock().expect("end offset lock");
        if end.1.is_none_or(|next| Instant::now() >= next) {
            // Until a first answer, the task waits for it (its merge and bootstrap need
            // the end): ask with more patience, and again soon after a failure.
            let timeout = if end.2 { 200 } else { 1_000 };
            match self.consumer.fetch_watermarks(
                &self.topic,
                self.partition as i32,
                Duration::from_millis(timeout),
            ) {
                Ok((_, high)) => {
                    end.0 = high.max(0) as u64;
                    end.2 = true;
                    end.1 = Some(Instant::now() + END_OFFSET_EVERY);
                }
                Err(_) => end.1 = Some(Instant::now() + RETRY_END_OFFSET),
            }
        }
        end.0
    }

    fn end_known(&self) -> bool {
        self.end.lock().expect("end offset lock").2
    }

    fn fetched_to(&self, end: u64) -> bool {
        self.fetched.is_some_and(|f| end <= f)
    }
}
