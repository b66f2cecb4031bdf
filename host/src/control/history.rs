//! Each pipeline's recent history: its tasks' counters sampled every second and kept in
//! memory for ten minutes, for charts of events/s in and out, lag and errors (the web
//! dashboard draws them). A restart starts the history afresh. The controller samples
//! in `status.rs`.

use crate::model::PipelineState;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

/// Samples kept per pipeline: ten minutes at one a second.
pub const HISTORY_SAMPLES: usize = 600;
/// How often the server samples.
pub const HISTORY_INTERVAL_MS: u64 = 1_000;

/// One task's counters at a sample (since the task started on this server).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TaskSample {
    pub stage: u32,
    pub partition: u32,
    pub events_in: u64,
    pub events_out: u64,
    pub errors: u64,
    pub lag: u64,
    pub committed_offset: u64,
}

/// A pipeline at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct HistorySample {
    /// When (milliseconds since the epoch).
    pub at_ms: i64,
    pub state: PipelineState,
    /// Its tasks' counters; none while it has no tasks on this server (its stored
    /// state is not read every second).
    pub tasks: Vec<TaskSample>,
}

/// A pipeline's samples, oldest first.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PipelineHistory {
    pub pipeline: String,
    /// Time between two samples.
    pub interval_ms: u64,
    pub samples: Vec<HistorySample>,
}

/// The rings of every pipeline.
#[derive(Default)]
pub(super) struct History {
    rings: Mutex<BTreeMap<String, VecDeque<HistorySample>>>,
}

impl History {
    /// Adds a sample of each pipeline; forgets the pipelines that are gone.
    pub(super) fn record(&self, samples: Vec<(String, HistorySample)>) {
        let mut rings = self.rings.lock().expect("history lock");
        rings.retain(|name, _| samples.iter().any(|(n, _)| n == name));
        for (name, sample) in samples {
            let ring = rings.entry(name).or_default();
            if ring.len() == HISTORY_SAMPLES {
                ring.pop_front();
            }
            ring.push_back(sample);
        }
    }

    pub(super) fn samples(&self, name: &str) -> Vec<HistorySample> {
        let rings = self.rings.lock().expect("history lock");
        rings
            .get(name)
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: i64, events_in: u64) -> HistorySample {
        let task = TaskSample {
            stage: 0,
            partition: 0,
            events_in,
            events_out: 0,
            errors: 0,
            lag: 0,
            committed_offset: 0,
        };
        HistorySample {
            at_ms,
            state: PipelineState::Running,
            tasks: vec![task],
        }
    }

    #[test]
    fn a_ring_keeps_the_last_ten_minutes_and_forgets_deleted_pipelines() {
        let h = History::default();
        for i in 0..HISTORY_SAMPLES as u64 + 5 {
            let at = i as i64 * 1000;
            h.record(vec![
                ("a".into(), sample(at, i)),
                ("b".into(), sample(at, i)),
            ]);
        }
        let a = h.samples("a");
        assert_eq!(a.len(), HISTORY_SAMPLES);
        assert_eq!(a[0].at_ms, 5_000);
        assert_eq!(
            a.last().unwrap().tasks[0].events_in,
            HISTORY_SAMPLES as u64 + 4
        );
        h.record(vec![("a".into(), sample(0, 0))]);
        assert!(h.samples("b").is_empty());
    }
}
