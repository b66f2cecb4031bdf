use super::embedded::Log;
use super::topic::Topic;
use crate::io::{IoError, SourceBatch, TaskSource};
use std::sync::Arc;

/// A task's source partition in the embedded log.
pub struct TopicSource {
    log: Arc<Log>,
    topic: Arc<Topic>,
    partition: u32,
}

impl TopicSource {
    pub fn new(log: Arc<Log>, topic: Arc<Topic>, partition: u32) -> Self {
        TopicSource {
            log,
            topic,
            partition,
        }
    }
}

impl TaskSource for TopicSource {
    fn poll(&mut self, from: u64, max: usize) -> Result<SourceBatch, IoError> {
        self.log
            .read_batch(&self.topic, self.partition, from, max)
            .map_err(|e| {
                IoError::Source(format!(
                    "topic {} partition {}: {e}",
                    self.topic.name(),
                    self.partition
                ))
            })
    }

    fn end_offset(&self) -> u64 {
        self.topic.end_offset(self.partition)
    }
}
