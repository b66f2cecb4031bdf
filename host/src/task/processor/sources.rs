//! A task that reads several sources (the partitions of a pipeline's inputs): where it
//! stands in each, and the task's watermark as the lowest of its stream sources'.
//!
//! The task's `TaskPosition` keeps the first source's offset (the one that numbers the
//! task) and the task's watermark, as for one source; [`Sources`] keeps every source's
//! offset and own watermark, committed beside it in the same write.

use super::Task;
use crate::io::{Sink, SourceBatch};
use crate::log::partitioner::partition_for_key;
use crate::record::batch::EventBatch;
use crate::state::{SourcePosition, TaskPosition};
use crate::task::config::TaskSourceInfo;
use crate::task::{SourceStatus, TaskError};
use std::ops::Range;
use std::sync::Arc;

/// Every source's position, with what the watermark rule needs.
#[derive(Debug, Clone)]
pub(crate) struct Sources {
    pub(super) positions: Vec<SourcePosition>,
    /// Whether each source's event times move the task's watermark (streams do).
    holds: Vec<bool>,
    /// Sources without input for the idle timeout: they do not hold the watermark back.
    idle: Vec<bool>,
    /// Per source, `Some(n)` when it is a partition of a repartitioned input: with its
    /// partition number, the task keeps only the records whose key is its own of `n`.
    repartition: Vec<Option<(u32, u32)>>,
    /// Each source's bootstrap end, once decided (`None` before the first read).
    bootstrap: Option<Vec<Option<u64>>>,
}

impl Sources {
    /// The sources `infos` describe, resuming from `saved` (matched by topic and
    /// partition; a source not saved starts at offset 0) and from `primary`, the task's
    /// own position, for the first.
    pub(super) fn new(
        infos: &[TaskSourceInfo],
        saved: Vec<SourcePosition>,
        primary: TaskPosition,
    ) -> Self {
        let positions = infos
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let found = saved
                    .iter()
                    .find(|p| p.topic == s.topic && p.partition == s.partition);
                SourcePosition {
                    topic: s.topic.clone(),
                    partition: s.partition,
                    // The task's own position holds the first source's offset, unless the
                    // sources were saved (the first input may have changed since).
                    offset: match (i, found) {
                        (_, Some(p)) => p.offset,
                        (0, None) if saved.is_empty() => primary.offset,
                        (_, None) => 0,
                    },
                    watermark: found.map_or(i64::MIN, |p| p.watermark),
                    bootstrap_to: found.and_then(|p| p.bootstrap_to),
                }
            })
            .collect();
        Sources {
            positions,
            holds: infos.iter().map(|s| s.kind.holds_watermark()).collect(),
            idle: vec![false; infos.len()],
            repartition: infos
                .iter()
                .map(|s| s.repartition.map(|n| (s.partition, n)))
                .collect(),
            bootstrap: None,
        }
    }

    /// The task's watermark were source `src` at `watermark`: the lowest of the stream
    /// sources that are not idle (`None` when every one is idle).
    fn low_with(&self, src: usize, watermark: i64) -> Option<i64> {
        (0..self.positions.len())
            .filter(|&i| self.holds[i] && (i == src || !self.idle[i]))
            .map(|i| {
                if i == src {
                    watermark
                } else {
                    self.positions[i].watermark
                }
            })
            .min()
    }
}

impl Task {
    /// Where each source's bootstrap ends (`None`: it is not read ahead of the streams).
    /// Decided at the first read: a table or broadcast source the task never read
    /// (offset 0) is read up to `end(i)`, its end now, before any stream; a bootstrap a
    /// stop or crash interrupted goes on to the end it had (kept with the positions).
    pub fn bootstrap_targets(&mut self, end: &dyn Fn(usize) -> u64) -> Vec<Option<u64>> {
        let Some(s) = &mut self.sources else {
            return vec![None];
        };
        if s.bootstrap.is_none() {
            let targets = (0..s.positions.len())
                .map(|i| {
                    let p = &s.positions[i];
                    match (s.holds[i], p.bootstrap_to) {
                        (true, _) => None,
                        (false, Some(kept)) => Some(kept),
                        (false, None) if p.offset == 0 => Some(end(i)),
                        (false, None) => None,
                    }
                })
                .collect();
            s.bootstrap = Some(targets);
        }
        let targets = s.bootstrap.as_mut().expect("decided");
        for (i, t) in targets.iter_mut().enumerate() {
            if t.is_some_and(|end| s.positions[i].offset >= end) {
                *t = None; // done
            }
            s.positions[i].bootstrap_to = *t;
        }
        targets.clone()
    }

    /// Whether the bootstrap is decided (always, with one source).
    pub fn bootstrap_decided(&self) -> bool {
        self.sources.as_ref().is_none_or(|s| s.bootstrap.is_some())
    }

    /// Back to the committed source positions (a bootstrap decided since still holds).
    pub(super) fn discard_sources(&mut self) {
        if let Some(s) = &mut self.sources {
            s.positions = self.committed_sources.clone();
            if let Some(targets) = &s.bootstrap {
                for (p, t) in s.positions.iter_mut().zip(targets) {
                    p.bootstrap_to = *t;
                }
            }
        }
    }

    /// The next offset to read in each source (one entry for a task with one source).
    pub fn source_offsets(&self) -> Vec<u64> {
        match &self.sources {
            Some(s) => s.positions.iter().map(|p| p.offset).collect(),
            None => vec![self.position.offset],
        }
    }

    /// The committed offset in each source.
    pub fn committed_offsets(&self) -> Vec<u64> {
        match &self.sources {
            Some(_) => self.committed_sources.iter().map(|p| p.offset).collect(),
            None => vec![self.committed.offset],
        }
    }

    /// Marks which sources had no input for the idle timeout; when that lets the
    /// watermark move (the idle sources held it back), moves it, fires the timers due
    /// and commits. Tells whether it moved.
    pub fn set_idle_sources(
        &mut self,
        idle: &[bool],
        sink: &mut dyn Sink,
    ) -> Result<bool, TaskError> {
        let Some(s) = &mut self.sources else {
            return Ok(false);
        };
        if s.idle == idle {
            return Ok(false);
        }
        s.idle.copy_from_slice(idle);
        match self.released_watermark() {
            Some(to) => self.advance_watermark(to, sink),
            None => Ok(false),
        }
    }

    /// The next offset to read in source `src`.
    pub(super) fn source_offset(&self, src: usize) -> u64 {
        match &self.sources {
            Some(s) => s.positions[src].offset,
            None => self.position.offset,
        }
    }

    /// Moves source `src` past offset `end - 1` (late events at the end of a batch).
    pub(super) fn skip_to(&mut self, src: usize, end: u64) {
        if let Some(s) = &mut self.sources {
            let p = &mut s.positions[src];
            p.offset = p.offset.max(end);
        }
        if src == 0 {
            self.position.offset = self.position.offset.max(end);
        }
    }

    /// Whether an event of source `src` can be late: events of tables and broadcast
    /// inputs are row versions, never late.
    pub(super) fn can_be_late(&self, src: usize) -> bool {
        self.sources.as_ref().is_none_or(|s| s.holds[src])
    }

    /// The watermark after an event at `timestamp` of source `src` arrived, the task's
    /// at `watermark` and the source's own at `own` (both updated).
    pub(super) fn watermark_after_in(
        &self,
        src: usize,
        own: &mut i64,
        watermark: i64,
        timestamp: i64,
    ) -> i64 {
        let Some(s) = &self.sources else {
            return self.watermark_after(watermark, timestamp);
        };
        if !s.holds[src] {
            return watermark;
        }
        *own = (*own).max(timestamp.saturating_sub(self.config.watermark_delay));
        s.low_with(src, *own)
            .map_or(watermark, |low| watermark.max(low))
    }

    /// The source's own watermark now (the task's, with one source).
    pub(super) fn own_watermark(&self, src: usize) -> i64 {
        match &self.sources {
            Some(s) => s.positions[src].watermark,
            None => self.position.watermark,
        }
    }

    /// The position after `range` of `source` was handled; with several sources, the
    /// source's own position moves too.
    pub(super) fn advance(&mut self, source: &SourceBatch, range: &Range<usize>) {
        let src = source.source;
        let next = source.offsets[range.end - 1] + 1;
        let Some(s) = &self.sources else {
            self.position = self.position_after(source, range);
            return;
        };
        let mut own = s.positions[src].watermark;
        let mut watermark = self.position.watermark;
        if s.holds[src] {
            for e in &source.events.events[range.clone()] {
                watermark = self.watermark_after_in(src, &mut own, watermark, e.timestamp);
            }
        }
        let s = self.sources.as_mut().expect("several sources");
        s.positions[src].offset = next;
        s.positions[src].watermark = own;
        self.position.watermark = watermark;
        if src == 0 {
            self.position.offset = next;
        }
    }

    /// The watermark now that idle sources no longer hold it back (`None`: no move).
    fn released_watermark(&self) -> Option<i64> {
        let s = self.sources.as_ref()?;
        let low = s.low_with(usize::MAX, i64::MIN)?;
        (low > self.position.watermark).then_some(low)
    }

    /// Whether the sources moved since the last commit.
    pub(super) fn sources_moved(&self) -> bool {
        self.sources
            .as_ref()
            .is_some_and(|s| s.positions != self.committed_sources)
    }

    /// Each source as committed, against its end offset in `ends`.
    pub fn source_statuses(&self, ends: &[u64]) -> Vec<SourceStatus> {
        if self.sources.is_none() {
            return Vec::new();
        }
        self.committed_sources
            .iter()
            .zip(&self.config.sources)
            .zip(ends)
            .map(|((p, info), &end)| {
                let end = end.max(p.offset);
                SourceStatus {
                    input: info.input.to_string(),
                    topic: p.topic.clone(),
                    partition: p.partition,
                    committed_offset: p.offset,
                    end_offset: end,
                    lag: end - p.offset,
                    watermark: (p.watermark != i64::MIN).then_some(p.watermark),
                }
            })
            .collect()
    }

    /// Whether source `src` is a partition of a repartitioned input.
    pub(super) fn repartitioned(&self, src: usize) -> bool {
        self.sources
            .as_ref()
            .is_some_and(|s| s.repartition[src].is_some())
    }

    /// Whether the event `i` of a batch of source `src` belongs to another task (a
    /// repartitioned input's record whose key is not this task's).
    pub(super) fn foreign(&self, src: usize, events: &EventBatch, i: usize) -> bool {
        let Some(Some((from, partitions))) = self.sources.as_ref().map(|s| s.repartition[src])
        else {
            return false;
        };
        let key = events.events[i].key.get(&events.data);
        !keeps(key, from, self.id.partition, partitions)
    }

    /// Moves source `src`'s own watermark (and the task's) over events at `timestamps`
    /// that another task handles: they show the source's time all the same.
    pub(super) fn pass_over(&mut self, src: usize, timestamps: impl Iterator<Item = i64>) {
        let Some(s) = &self.sources else { return };
        if !s.holds[src] {
            return;
        }
        let mut own = s.positions[src].watermark;
        let mut watermark = self.position.watermark;
        for ts in timestamps {
            watermark = self.watermark_after_in(src, &mut own, watermark, ts);
        }
        let s = self.sources.as_mut().expect("several sources");
        s.positions[src].watermark = own;
        self.position.watermark = watermark;
    }

    /// The name operators see for the input of source `src`.
    pub(super) fn input_name(&self, src: usize) -> Option<Arc<str>> {
        self.config.sources.get(src).map(|s| Arc::clone(&s.input))
    }
}

/// Whether task `task` of `partitions` keeps a record with `key` read from partition
/// `from` of a repartitioned input: the task its key hashes to (as the embedded log and
/// Kafka's producers place keys); a keyless record, the task of the partition it came
/// from. So each record has exactly one task.
pub fn keeps(key: Option<&[u8]>, from: u32, task: u32, partitions: u32) -> bool {
    let owner = match key {
        Some(k) => partition_for_key(k, partitions),
        None => from % partitions,
    };
    owner == task
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::io::AfterCommit;
    use crate::model::InputKind;
    use crate::record::batch;
    use crate::state::{Db, DbOptions, TaskId};
    use crate::task::TaskConfig;

    /// A task reading a stream (`orders`) and a table (`customers`).
    pub(crate) fn config() -> TaskConfig {
        let source = |input: &str, kind| TaskSourceInfo {
            input: Arc::from(input),
            kind,
            topic: input.to_string(),
            partition: 0,
            repartition: None,
        };
        TaskConfig {
            sources: vec![
                source("orders", InputKind::Stream),
                source("customers", InputKind::Table),
            ],
            ..TaskConfig::default()
        }
    }

    fn rows(from: u64, n: u64) -> SourceBatch {
        let mut events = batch::empty();
        for i in 0..n {
            batch::push(&mut events, Some(b"k"), b"row", 1_000 + i as i64, &[]);
        }
        SourceBatch {
            events,
            offsets: (from..from + n).collect(),
            source: 1,
        }
    }

    #[test]
    fn each_record_of_a_repartitioned_input_has_exactly_one_task() {
        for n in 1..6 {
            for k in 0..200 {
                let key = format!("c{k}");
                let owners: Vec<u32> = (0..n)
                    .filter(|&t| keeps(Some(key.as_bytes()), k % 4, t, n))
                    .collect();
                assert_eq!(
                    owners,
                    [partition_for_key(key.as_bytes(), n)],
                    "{key} of {n}"
                );
            }
            for from in 0..7 {
                let owners: Vec<u32> = (0..n).filter(|&t| keeps(None, from, t, n)).collect();
                assert_eq!(owners, [from % n], "keyless from {from}");
            }
        }
    }

    #[test]
    fn a_bootstrap_cut_short_goes_on_to_the_same_end_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(&dir.path().join("db"), &DbOptions::default()).unwrap());
        let id = TaskId::new("p", 0);
        let mut sink = AfterCommit(|_| Ok(()));
        let mut task = Task::new(id.clone(), Vec::new(), config(), Arc::clone(&db)).unwrap();
        // A first read: the table (never read) goes to its end now, 100.
        let ends = [5, 100];
        assert_eq!(task.bootstrap_targets(&|i| ends[i]), [None, Some(100)]);
        // A failed batch does not forget the decision.
        task.process(&rows(0, 10), &mut sink).unwrap();
        task.discard_uncommitted();
        assert_eq!(task.bootstrap_targets(&|_| 999), [None, Some(100)]);
        task.process(&rows(0, 40), &mut sink).unwrap();
        task.flush(&mut sink).unwrap();
        drop(task);
        // Restarted mid-bootstrap, with the table grown: the same end.
        let mut task = Task::new(id.clone(), Vec::new(), config(), Arc::clone(&db)).unwrap();
        assert_eq!(task.source_offsets(), [0, 40]);
        assert_eq!(task.bootstrap_targets(&|_| 500), [None, Some(100)]);
        task.process(&rows(40, 60), &mut sink).unwrap();
        assert_eq!(
            task.bootstrap_targets(&|_| 500),
            [None, None],
            "done at 100"
        );
        task.flush(&mut sink).unwrap();
        drop(task);
        // A later start merges by time: no bootstrap again.
        let mut task = Task::new(id, Vec::new(), config(), db).unwrap();
        assert_eq!(task.bootstrap_targets(&|_| 500), [None, None]);
    }
}
