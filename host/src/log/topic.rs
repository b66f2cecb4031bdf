use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// What is stored about a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    /// Key prefix of the topic's records (names are not reused across deletes).
    pub id: u32,
    pub partitions: u32,
    /// Records older than this are deleted (by the time they were appended).
    pub retention_ms: Option<u64>,
    /// Each partition keeps at most about this many bytes (oldest records go first).
    pub retention_bytes: Option<u64>,
    pub created_ms: i64,
}

/// Settings for a new topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    pub partitions: u32,
    pub retention_ms: Option<u64>,
    pub retention_bytes: Option<u64>,
}

impl TopicConfig {
    /// `partitions`, keeping every record (no retention): changelogs, and benchmarks'
    /// topics.
    pub fn kept(partitions: u32) -> Self {
        TopicConfig {
            partitions,
            retention_ms: None,
            retention_bytes: None,
        }
    }
}

impl Default for TopicConfig {
    fn default() -> Self {
        // Kafka's default retention: seven days.
        TopicConfig {
            partitions: 1,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
        }
    }
}

/// Offsets handed out to appends, and the appends not written yet.
#[derive(Debug, Default)]
pub(crate) struct Assigner {
    /// The next offset to hand out.
    pub(crate) next: u64,
    /// Ranges handed out whose write has not finished: start -> length.
    pub(crate) inflight: BTreeMap<u64, u64>,
}

/// Live offsets of one partition.
#[derive(Debug, Default)]
pub(crate) struct PartitionState {
    /// The published end: every offset below it is written (or a hole left by a failed
    /// write), so readers may read up to here.
    pub(crate) end: AtomicU64,
    pub(crate) assigner: Mutex<Assigner>,
    /// The first offset still stored (retention moves it).
    pub(crate) start: AtomicU64,
    /// Approximate bytes stored.
    pub(crate) bytes: AtomicU64,
}

/// A topic: its metadata and live partition offsets.
#[derive(Debug)]
pub struct Topic {
    pub meta: TopicMeta,
    pub(crate) partitions: Vec<PartitionState>,
    /// Round-robin cursor for keyless records.
    pub(crate) next_keyless: AtomicU32,
}

impl Topic {
    pub(crate) fn new(meta: TopicMeta) -> Self {
        let partitions = (0..meta.partitions)
            .map(|_| PartitionState::default())
            .collect();
        Topic {
            meta,
            partitions,
            next_keyless: AtomicU32::new(0),
        }
    }

    pub fn name(&self) -> &str {
        &self.meta.name
    }

    pub fn partition_count(&self) -> u32 {
        self.meta.partitions
    }

    /// The next offset to be read in `partition` (everything below it is written).
    pub fn end_offset(&self, partition: u32) -> u64 {
        self.partitions[partition as usize]
            .end
            .load(Ordering::Acquire)
    }

    /// The first offset still stored in `partition`.
    pub fn start_offset(&self, partition: u32) -> u64 {
        self.partitions[partition as usize]
            .start
            .load(Ordering::Acquire)
    }

    /// Approximate bytes stored in `partition`.
    pub fn bytes(&self, partition: u32) -> u64 {
        self.partitions[partition as usize]
            .bytes
            .load(Ordering::Relaxed)
    }
}
