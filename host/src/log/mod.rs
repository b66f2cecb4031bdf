//! Topics: the embedded log (the default, in RocksDB) and the sink that writes task
//! outputs into it atomically with the task's commit.

mod changelogs;
pub mod codec;
mod compaction;
mod embedded;
pub mod partitioner;
mod signal;
mod sink;
mod source;
mod topic;

pub use changelogs::{ReplayError, Replayed, catch_up, changelog_topics};
pub use embedded::{Appends, Log, LogError, PARTITIONS_MAX};
pub use signal::Signal;
pub use sink::TopicSink;
pub use source::TopicSource;
pub use topic::{Topic, TopicConfig, TopicMeta};
