//! The record a Kafka-sink task writes to its pipeline's positions topic in every
//! transaction: where its committed outputs reach. One source: `offset,watermark`. A
//! task reading several sources (input partitions) appends every source's position:
//! `offset,watermark;[sources as JSON]`. A task after a repartition through Kafka also
//! keeps the watermark of each upstream task: `offset,watermark;[sources];[watermarks]`.

use crate::state::{SourcePosition, TaskPosition};

/// A task's position as its last committed transaction recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedPosition {
    pub position: TaskPosition,
    /// Every source's position (empty for a task with one source).
    pub sources: Vec<SourcePosition>,
    /// The upstream tasks' watermarks (empty but for a task after a Kafka repartition).
    pub upstream: Vec<i64>,
}

impl RecordedPosition {
    pub fn encode(&self) -> String {
        let head = format!("{},{}", self.position.offset, self.position.watermark);
        if self.sources.is_empty() && self.upstream.is_empty() {
            return head;
        }
        let sources = serde_json::to_string(&self.sources).expect("positions serialize");
        if self.upstream.is_empty() {
            return format!("{head};{sources}");
        }
        let upstream = serde_json::to_string(&self.upstream).expect("watermarks serialize");
        format!("{head};{sources};{upstream}")
    }

    /// `None` for a record that is not a position.
    pub fn decode(text: &str) -> Option<Self> {
        let mut parts = text.splitn(3, ';');
        let head = parts.next()?;
        let sources = match parts.next() {
            Some(sources) => serde_json::from_str(sources).ok()?,
            None => Vec::new(),
        };
        let upstream = match parts.next() {
            Some(upstream) => serde_json::from_str(upstream).ok()?,
            None => Vec::new(),
        };
        let (offset, watermark) = head.split_once(',')?;
        Some(RecordedPosition {
            position: TaskPosition {
                offset: offset.parse().ok()?,
                watermark: watermark.parse().ok()?,
            },
            sources,
            upstream,
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
            upstream: Vec::new(),
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
            upstream: Vec::new(),
        };
        let text = r.encode();
        assert_eq!(RecordedPosition::decode(&text), Some(r.clone()));
        assert_eq!(r.progress(), 13);
    }

    #[test]
    fn upstream_watermarks_round_trip_after_the_sources() {
        let r = RecordedPosition {
            position: TaskPosition {
                offset: 8,
                watermark: 3,
            },
            sources: Vec::new(),
            upstream: vec![3, i64::MIN, 12],
        };
        let text = r.encode();
        assert_eq!(text, format!("8,3;[];[3,{},12]", i64::MIN));
        assert_eq!(RecordedPosition::decode(&text), Some(r.clone()));
        assert_eq!(r.progress(), 8);
    }

    #[test]
    fn garbage_is_not_a_position() {
        for bad in ["", "1", "a,b", "1,2;", "1,2;[{]", "1;2,3", "1,2;[];[x]"] {
            assert_eq!(RecordedPosition::decode(bad), None, "{bad:?}");
        }
    }
}
