//! Events a task passes over instead of handing them to its operators: late events (by
//! the `late_events` policy) and, from a repartitioned input, records another task keeps.
//! Both are decided record by record in order, so a replay after a crash, with other
//! batch boundaries, decides the same.

use super::{LATE_PORT, Task};
use crate::io::{Outputs, Sink, SourceBatch};
use crate::model::LateEvents;
use crate::record::batch;
use crate::task::TaskError;

/// Why an event is passed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    /// Below the watermark as it stood when the event arrived.
    Late,
    /// Another task's record of a repartitioned input.
    Foreign,
}

impl Task {
    /// Processes events (no watermark records among them): runs of events for the
    /// operators, and between them runs of events passed over. A passed-over event's
    /// count and side output join the commit that moves the position past it, so a
    /// batch cut short (a trap, a stop) neither loses nor repeats them.
    pub(super) fn process_events(
        &mut self,
        source: &SourceBatch,
        sink: &mut dyn Sink,
    ) -> Result<(), TaskError> {
        let skips = self.skips(source);
        if skips.is_empty() {
            return self.process_on_time(source, sink);
        }
        let (n, src) = (source.offsets.len(), source.source);
        let mut skips = skips.into_iter().peekable();
        let mut start = 0;
        while start < n {
            let end = skips.peek().map_or(n, |&(i, _)| i);
            if end > start {
                self.process_on_time(&source.slice(start..end), sink)?;
                if self.halted() || self.source_offset(src) <= source.offsets[end - 1] {
                    return Ok(()); // stopped inside the run: the rest is read again
                }
            }
            let mut outputs = Outputs::empty();
            let mut next = end;
            let watermark = self.position.watermark;
            while let Some((_, why)) = skips.next_if(|&(i, _)| i == next) {
                match why {
                    Skip::Late => {
                        if self.config.late_events == LateEvents::SideOutput {
                            let record = batch::record(&source.events, next);
                            outputs.side.push((LATE_PORT.to_string(), record));
                        }
                        self.uncommitted_late += 1;
                        self.uncommitted_in += 1;
                    }
                    Skip::Foreign => {
                        let at = source.events.events[next].timestamp;
                        self.pass_over(src, std::iter::once(at));
                    }
                }
                next += 1;
            }
            if next > end {
                self.skip_to(src, source.offsets[next - 1] + 1);
                self.accept(outputs, self.position);
                if self.position.watermark > watermark {
                    self.fire_timers_on_probation(sink)?;
                    if self.halted() {
                        return Ok(());
                    }
                }
            }
            start = next;
        }
        self.maybe_commit(sink)
    }

    /// The events of `source` to pass over, in order, with why: walking the events from
    /// the task's watermark, a foreign event moves the source's time without being
    /// handled, and a kept one below the watermark is late (unless the policy processes
    /// late events).
    fn skips(&self, source: &SourceBatch) -> Vec<(usize, Skip)> {
        let src = source.source;
        let late_counts = self.config.late_events != LateEvents::Process && self.can_be_late(src);
        let rekeyed = self.repartitioned(src);
        if !late_counts && !rekeyed {
            return Vec::new();
        }
        let mut watermark = self.position.watermark;
        let mut own = self.own_watermark(src);
        let mut skips = Vec::new();
        for (i, e) in source.events.events.iter().enumerate() {
            if rekeyed && self.foreign(src, &source.events, i) {
                skips.push((i, Skip::Foreign));
            } else if late_counts && e.timestamp < watermark {
                skips.push((i, Skip::Late));
                continue;
            }
            watermark = self.watermark_after_in(src, &mut own, watermark, e.timestamp);
        }
        skips
    }
}
