//! The record a Kafka-sink task writes to its pipeline's positions topic in every
//! transaction: where its committed outputs reach. One source: `offset,watermark`. A
//! task reading several sources (input partitions) appends every source's position:
//! `offset,watermark;[sources as JSON]`.

use crate::state::{SourcePosition, TaskPosition};

/// A task's position as its last committed transaction recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedPosition {
    pub position: TaskPosition,
    /// Every source's position (empty for a task with one source).
    pub sources: Vec<SourcePosition>,
}

impl RecordedPosition {
    pub fn encode(&self) -> String {
        let head = format!("{},{}", self.position.offset, self.position.watermark);
        if self.sources.is_empty() {
            return head;
        }
        let sources = serde_json::to_string(&self.sources).expect("positions serialize");
        format!("{head};{sources}")
    }

    /// `None` for a record that is not a position.
    pub fn decode(text: &str) -> Option<Self> {
        let (head, sources) = match text.split_once(';') {
            Some((head, sources)) => (head, serde_json::from_str(sources).ok()?),
            None => (text, Vec::new()),
        };
        let (offset, watermark) = head.split_once(',')?;
        Some(RecordedPosition {
            position: TaskPosition {
                offset: offset.parse().ok()?,
                watermark: watermark.parse().ok()?,
            },
            sources,
        })
    }

    /// How far the task has read, as one number that grows with every commit that read
    /// something: the offset, or with several sources the sum of their offsets. A
    /// transaction's changelog records carry it (see `POSITION_HEADER`), so a restore
    /// can tell the changes of a transaction beyond the recorded position apart.
    pub fn progress(&self) -> u64 {
        progress(self.position, &self.sources)
    }
}

/// See [`RecordedPosition::progress`].
pub fn progress(position: TaskPosition, sources: &[SourcePosition]) -> u64 {
    if sources.is_empty() {
        position.offset
    } else {
        sources
            .iter()
            .fold(0u64, |sum, s| sum.saturating_add(s.offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(topic: &str, offset: u64) -> SourcePosition {
        SourcePosition {
            topic: topic.into(),
            partition: 1,
            offset,
            watermark: 7,
            bootstrap_to: (offset == 3).then_some(9),
        }
    }

    #[test]
    fn one_source_keeps_the_old_format() {
        let r = RecordedPosition {
            position: TaskPosition {
                offset: 42,
                watermark: -5,
            },
            sources: Vec::new(),
        };
        assert_eq!(r.encode(), "42,-5");
        assert_eq!(RecordedPosition::decode("42,-5"), Some(r.clone()));
        assert_eq!(r.progress(), 42);
    }

    #[test]
    fn several_sources_round_trip_and_progress_is_their_sum() {
        let r = RecordedPosition {
            position: TaskPosition {
                offset: 10,
                watermark: i64::MIN,
            },
            sources: vec![source("orders", 10), source("customers", 3)],
        };
        let text = r.encode();
        assert_eq!(RecordedPosition::decode(&text), Some(r.clone()));
        assert_eq!(r.progress(), 13);
    }

    #[test]
    fn garbage_is_not_a_position() {
        for bad in ["", "1", "a,b", "1,2;", "1,2;[{]", "1;2,3"] {
            assert_eq!(RecordedPosition::decode(bad), None, "{bad:?}");
        }
    }
}
