//! What a task reads from: one source, or several (the partitions of a pipeline's
//! inputs) merged by event time.
//!
//! With several sources, each step reads ahead in every source and hands the task the
//! events of the one whose next event is the oldest, up to the next event of any other
//! (as Kafka Streams picks the partition with the lowest head timestamp), so events of
//! several inputs arrive in event-time order where their timestamps allow. On a tie a
//! table or broadcast input goes first, so a row is in place before the stream events of
//! the same time. While the task bootstraps a source (a table or broadcast source it
//! had never read, up to the end it had then: `Task::bootstrap_targets`), only
//! bootstrapping sources are read, as Kafka Streams loads a global table first.

use crate::io::{IoError, SourceBatch, TaskSource};
use crate::model::InputKind;
use std::time::{Duration, Instant};

/// A batch for the task, and whether every source is caught up after it.
pub struct Polled {
    pub batch: SourceBatch,
    pub caught_up: bool,
}

impl Polled {
    fn nothing(caught_up: bool) -> Self {
        let batch = SourceBatch {
            events: Default::default(),
            offsets: Vec::new(),
            source: 0,
        };
        Polled { batch, caught_up }
    }
}

pub struct Inputs {
    sources: Vec<Reader>,
}

struct Reader {
    source: Box<dyn TaskSource>,
    kind: InputKind,
    /// Events read and not yet handed over, from the task's offset in this source on;
    /// `short`: the read that got them returned less than asked (the source's end).
    ahead: Option<SourceBatch>,
    short: bool,
    /// The offset `ahead` was read from: it holds every event from there on.
    read_from: u64,
    last_data: Instant,
    /// While the source says it has records beyond what it handed over and its reader has
    /// not fetched them yet (Kafka fetches in the background): its end then, and since
    /// when the merge waits for them.
    hold: Option<(u64, Instant)>,
}

/// How long the merge waits at most for a source's records that its reader has not
/// fetched yet, before the other sources go on without them. As in Kafka Streams, a
/// source with records known to be there is waited for until its reader has them, or
/// says it has everything up to the end (`TaskSource::fetched_to`: the offsets left are
/// transaction markers); this bound, once per end, only keeps a reader that never says
/// so from holding the task forever. A source whose end has not been answered yet is
/// waited for until it is.
const HOLD: Duration = Duration::from_secs(3);

impl Inputs {
    /// A task's one source.
    pub fn one(source: Box<dyn TaskSource>) -> Self {
        Inputs::new(vec![(source, InputKind::Stream)])
    }

    /// A task's sources, in the order of its positions.
    pub fn new(sources: Vec<(Box<dyn TaskSource>, InputKind)>) -> Self {
        let sources = sources
            .into_iter()
            .map(|(source, kind)| Reader {
                source,
                kind,
                ahead: None,
                short: false,
                read_from: 0,
                last_data: Instant::now(),
                hold: None,
            })
            .collect();
        Inputs { sources }
    }

    /// Source `i`'s current end offset.
    pub fn end_offset(&self, i: usize) -> u64 {
        self.sources[i].source.end_offset()
    }

    /// Each source's current end offset.
    pub fn end_offsets(&self) -> Vec<u64> {
        self.sources.iter().map(|r| r.source.end_offset()).collect()
    }

    /// Which sources had no events for `timeout` (events read and waiting their turn
    /// count as events).
    pub fn idle(&self, timeout: Duration) -> Vec<bool> {
        self.sources
            .iter()
            .map(|r| {
                r.ahead.is_none()
                    && !r.holding()
                    && r.source.end_known()
                    && r.last_data.elapsed() >= timeout
            })
            .collect()
    }

    /// Whether every source's end is known (a bootstrap is decided on them).
    pub fn ends_known(&self) -> bool {
        self.sources.iter().all(|r| {
            r.source.end_offset();
            r.source.end_known()
        })
    }

    /// Up to `max` events for a task that stands at `offsets` (one per source), reading
    /// only the sources it bootstraps (`bootstrap`: where each one's ends) while any of
    /// them has events.
    pub fn poll(
        &mut self,
        offsets: &[u64],
        bootstrap: &[Option<u64>],
        max: usize,
    ) -> Result<Polled, IoError> {
        if let [only] = self.sources.as_mut_slice() {
            let batch = only.source.poll(offsets[0], max)?;
            if !batch.offsets.is_empty() {
                only.last_data = Instant::now();
            }
            let caught_up = batch.offsets.len() < max;
            return Ok(Polled { batch, caught_up });
        }
        for (i, r) in self.sources.iter_mut().enumerate() {
            r.fill(offsets[i], max, i)?;
        }
        // A source with records not fetched yet holds the merge: they may come first.
        let mut waiting = false;
        for (i, r) in self.sources.iter_mut().enumerate() {
            waiting |= r.awaits(offsets[i]);
        }
        if waiting {
            return Ok(Polled::nothing(false));
        }
        // A bootstrapping source with nothing to read (retention took what the end
        // promised) does not hold the others back.
        let booting = |i: usize| {
            bootstrap
                .get(i)
                .copied()
                .flatten()
                .is_some_and(|end| offsets[i] < end)
                && self.sources[i].ahead.is_some()
        };
        let bootstrapping = (0..self.sources.len()).any(booting);
        let candidates: Vec<usize> = (0..self.sources.len())
            .filter(|&i| self.sources[i].ahead.is_some())
            .filter(|&i| !bootstrapping || booting(i))
            .collect();
        let Some(&pick) = candidates
            .iter()
            .min_by_key(|&&i| self.sources[i].order(self.sources[i].head_timestamp(), i))
        else {
            let caught_up = self.sources.iter().all(|r| r.ahead.is_none());
            return Ok(Polled::nothing(caught_up));
        };
        // The others' next events bound how far this batch may go: up to the first event
        // that one of them would go before.
        let bound = candidates
            .iter()
            .filter(|&&i| i != pick)
            .map(|&i| self.sources[i].order(self.sources[i].head_timestamp(), i))
            .min();
        let r = &mut self.sources[pick];
        let mut batch = r.ahead.take().expect("a candidate has events");
        if let Some(bound) = bound {
            let n = batch.events.events.len();
            let cut = (1..n)
                .find(|&k| r.order(batch.events.events[k].timestamp, pick) > bound)
                .unwrap_or(n);
            if cut < n {
                let rest = batch.slice(cut..n);
                r.read_from = rest.offsets[0];
                r.ahead = Some(rest);
                batch = batch.slice(0..cut);
            }
        }
        let caught_up = r.short && self.sources.iter().all(|r| r.ahead.is_none());
        Ok(Polled { batch, caught_up })
    }
}

impl Reader {
    /// Makes `ahead` start at `from` (the task's offset in this source): keeps what was
    /// read ahead from there on, or reads.
    fn fill(&mut self, from: u64, max: usize, index: usize) -> Result<(), IoError> {
        // Offsets may have gaps (Kafka's transaction markers): what was read from an
        // earlier offset holds everything from `from` on; after a rollback the task
        // stands before it, and reads again.
        if let Some(a) = self.ahead.take()
            && self.read_from <= from
            && let Some(k) = a.offsets.iter().position(|&o| o >= from)
        {
            self.ahead = Some(if k == 0 {
                a
            } else {
                a.slice(k..a.offsets.len())
            });
            self.read_from = from;
            return Ok(());
        }
        let mut batch = self.source.poll(from, max)?;
        self.read_from = from;
        self.short = batch.offsets.len() < max;
        if batch.offsets.is_empty() {
            return Ok(());
        }
        batch.source = index;
        self.last_data = Instant::now();
        self.hold = None;
        self.ahead = Some(batch);
        Ok(())
    }

    /// Whether the merge is waiting for this source's unfetched records.
    fn holding(&self) -> bool {
        self.hold
            .is_some_and(|(end, since)| since.elapsed() < HOLD && !self.source.fetched_to(end))
    }

    /// Whether the merge waits for this source (standing at `from`): nothing read ahead,
    /// its end beyond `from` and not all fetched, and not yet waited [`HOLD`] for that end.
    fn awaits(&mut self, from: u64) -> bool {
        if self.ahead.is_some() {
            return false;
        }
        let end = self.source.end_offset();
        if !self.source.end_known() {
            return true; // records may be there: wait for the answer
        }
        if end <= from || self.source.fetched_to(end) {
            return false;
        }
        match self.hold {
            Some((e, since)) if e == end => since.elapsed() < HOLD,
            _ => {
                self.hold = Some((end, Instant::now()));
                true
            }
        }
    }

    /// Where an event of this source (the task's source `index`) at `timestamp` goes
    /// in the merge: by time, then tables and broadcast inputs first, then by source.
    fn order(&self, timestamp: i64, index: usize) -> (i64, bool, usize) {
        (timestamp, self.kind == InputKind::Stream, index)
    }

    fn head_timestamp(&self) -> i64 {
        self.ahead
            .as_ref()
            .and_then(|a| a.events.events.first())
            .map_or(i64::MAX, |e| e.timestamp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::batch;

    /// A partition in memory: (timestamp, value) at offsets 0, 1, ...
    struct Mem(Vec<(i64, &'static str)>);

    impl TaskSource for Mem {
        fn poll(&mut self, from: u64, max: usize) -> Result<SourceBatch, IoError> {
            let mut events = batch::empty();
            let mut offsets = Vec::new();
            for (i, (ts, v)) in self.0.iter().enumerate().skip(from as usize).take(max) {
                batch::push(&mut events, None, v.as_bytes(), *ts, &[]);
                offsets.push(i as u64);
            }
            Ok(SourceBatch {
                events,
                offsets,
                source: 0,
            })
        }

        fn end_offset(&self) -> u64 {
            self.0.len() as u64
        }
    }

    /// Polls until nothing is left, moving `offsets` as a task would (bootstrapping
    /// up to `bootstrap`); the values in the order handed over.
    fn drain(
        inputs: &mut Inputs,
        offsets: &mut [u64],
        bootstrap: &[Option<u64>],
        max: usize,
    ) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let p = inputs.poll(offsets, bootstrap, max).unwrap();
            let Some(&last) = p.batch.offsets.last() else {
                return out;
            };
            for i in 0..p.batch.offsets.len() {
                let (_, v, _, _) = batch::parts(&p.batch.events, i);
                out.push(String::from_utf8(v.to_vec()).unwrap());
            }
            offsets[p.batch.source] = last + 1;
        }
    }

    #[test]
    fn sources_merge_by_event_time_with_tables_first_on_a_tie() {
        let stream = Mem(vec![(1, "s1"), (5, "s5"), (6, "s6"), (9, "s9")]);
        let table = Mem(vec![(5, "t5"), (7, "t7")]);
        let mut inputs = Inputs::new(vec![
            (Box::new(stream), InputKind::Stream),
            (Box::new(table), InputKind::Table),
        ]);
        let mut offsets = [0, 0];
        assert_eq!(
            drain(&mut inputs, &mut offsets, &[None, None], 100),
            ["s1", "t5", "s5", "s6", "t7", "s9"]
        );
    }

    #[test]
    fn a_bootstrap_reads_tables_to_their_end_first() {
        let stream = Mem(vec![(1, "s1"), (2, "s2")]);
        let table = Mem(vec![(5, "t5"), (7, "t7")]);
        let mut inputs = Inputs::new(vec![
            (Box::new(stream), InputKind::Stream),
            (Box::new(table), InputKind::Table),
        ]);
        let mut offsets = [0, 0];
        assert_eq!(
            drain(&mut inputs, &mut offsets, &[None, Some(2)], 1),
            ["t5", "t7", "s1", "s2"]
        );
    }

    /// A partition whose reader answers only from its `slow`-th poll on, as a Kafka
    /// consumer answers once its first fetch is back.
    struct Slow(Mem, usize);

    impl TaskSource for Slow {
        fn poll(&mut self, from: u64, max: usize) -> Result<SourceBatch, IoError> {
            if self.1 > 0 {
                self.1 -= 1;
                return self.0.poll(u64::MAX, max);
            }
            self.0.poll(from, max)
        }

        fn end_offset(&self) -> u64 {
            self.0.end_offset()
        }
    }

    #[test]
    fn records_not_fetched_yet_keep_their_turn() {
        let slow = Slow(Mem(vec![(1, "k1"), (4, "k4")]), 3);
        let table = Mem(vec![(2, "t2"), (3, "t3")]);
        let mut inputs = Inputs::new(vec![
            (Box::new(slow), InputKind::Stream),
            (Box::new(table), InputKind::Table),
        ]);
        let mut offsets = [0, 0];
        let mut out = Vec::new();
        for _ in 0..10 {
            out.extend(drain(&mut inputs, &mut offsets, &[None, None], 10));
        }
        assert_eq!(out, ["k1", "t2", "t3", "k4"]);
    }

    /// A partition whose last offset is no record (a transaction's marker), and whose
    /// reader says it has fetched everything.
    struct Marked(Mem);

    impl TaskSource for Marked {
        fn poll(&mut self, from: u64, max: usize) -> Result<SourceBatch, IoError> {
            self.0.poll(from, max)
        }

        fn end_offset(&self) -> u64 {
            self.0.end_offset() + 1
        }

        fn fetched_to(&self, end: u64) -> bool {
            end <= self.end_offset()
        }
    }

    #[test]
    fn a_marker_at_the_end_does_not_hold_the_others() {
        let marked = Marked(Mem(vec![(1, "k1")]));
        let table = Mem(vec![(2, "t2"), (3, "t3")]);
        let mut inputs = Inputs::new(vec![
            (Box::new(marked), InputKind::Stream),
            (Box::new(table), InputKind::Table),
        ]);
        let mut offsets = [0, 0];
        // At once: a reader that has not said so is waited for.
        assert_eq!(
            drain(&mut inputs, &mut offsets, &[None, None], 10),
            ["k1", "t2", "t3"]
        );
        assert_eq!(inputs.idle(Duration::ZERO), [true, true]);
    }

    #[test]
    fn a_task_that_went_back_reads_again() {
        let a = Mem(vec![(1, "a1"), (2, "a2"), (3, "a3")]);
        let b = Mem(vec![(10, "b10")]);
        let mut inputs = Inputs::new(vec![
            (Box::new(a), InputKind::Stream),
            (Box::new(b), InputKind::Stream),
        ]);
        let none = [None, None];
        let p = inputs.poll(&[0, 0], &none, 2).unwrap();
        assert_eq!(p.batch.offsets, [0, 1]);
        // The batch was dropped (a failure, a rollback): the task still stands at 0.
        let p = inputs.poll(&[0, 0], &none, 2).unwrap();
        assert_eq!((p.batch.source, p.batch.offsets.clone()), (0, vec![0, 1]));
        let p = inputs.poll(&[2, 0], &none, 2).unwrap();
        assert_eq!(p.batch.offsets, [2]);
        let p = inputs.poll(&[3, 0], &none, 2).unwrap();
        assert_eq!((p.batch.source, p.caught_up), (1, true));
    }
}
