//! The watermarks of one pipeline stage's tasks, so that a task whose partition went
//! quiet can follow the others (Flink's idle sources) instead of holding its timers and
//! windows back for as long as no input comes. In a cluster, the other servers' tasks of
//! the stage count too: each server shares its own through the cluster catalog.

use crate::model::TaskClock;
use crate::record::now_ms;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// A server's report older than this no longer counts (the server stopped reporting:
/// it left, or its tasks moved).
pub const REMOTE_REPORT_TTL_MS: i64 = 10_000;

#[derive(Debug, Default)]
pub struct StageClock {
    /// This server's tasks, per partition: watermark, and whether it is idle.
    tasks: Mutex<BTreeMap<u32, (i64, bool)>>,
    /// Other servers' tasks of the stage: per server, when it reported (ms) and what.
    remote: Mutex<BTreeMap<String, (i64, Vec<TaskClock>)>>,
}

impl StageClock {
    /// Records where task `partition` stands.
    pub fn report(&self, partition: u32, watermark: i64, idle: bool) {
        self.tasks
            .lock()
            .expect("stage clock lock")
            .insert(partition, (watermark, idle));
    }

    /// Forgets a task that stopped: it no longer holds the others back.
    pub fn remove(&self, partition: u32) {
        self.tasks
            .lock()
            .expect("stage clock lock")
            .remove(&partition);
    }

    /// This server's tasks, for the other servers of a cluster.
    pub fn local(&self) -> Vec<TaskClock> {
        self.tasks
            .lock()
            .expect("stage clock lock")
            .iter()
            .map(|(p, (w, idle))| (*p, *w, *idle))
            .collect()
    }

    /// What another server said of its tasks of this stage at `at_ms`.
    pub fn report_remote(&self, server: &str, at_ms: i64, tasks: Vec<TaskClock>) {
        let mut remote = self.remote.lock().expect("stage clock lock");
        if remote.get(server).is_none_or(|(at, _)| *at <= at_ms) {
            remote.insert(server.to_string(), (at_ms, tasks));
        }
    }

    /// The lowest watermark of the stage's active (not idle) tasks other than
    /// `partition`, on this server and, fresh, on others; `None` when every other task
    /// is idle too (nothing to follow).
    pub fn active_low(&self, partition: u32) -> Option<i64> {
        let local = self.tasks.lock().expect("stage clock lock").clone();
        let now = now_ms();
        let remote = self.remote.lock().expect("stage clock lock");
        let others = remote
            .values()
            .filter(|(at, _)| now - at <= REMOTE_REPORT_TTL_MS)
            .flat_map(|(_, tasks)| tasks.iter().copied())
            // A partition that runs here now is known better here.
            .filter(|(p, ..)| !local.contains_key(p));
        local
            .iter()
            .map(|(p, (w, idle))| (*p, *w, *idle))
            .chain(others)
            .filter(|(p, _, idle)| *p != partition && !idle)
            .map(|(_, w, _)| w)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_task_follows_the_slowest_active_one() {
        let clock = StageClock::default();
        clock.report(0, 100, false);
        clock.report(1, 50, false);
        clock.report(2, 10, true);
        // Task 2 is idle: it follows the slowest active task, not its own watermark.
        assert_eq!(clock.active_low(2), Some(50));
        // Idle tasks do not hold active ones back.
        assert_eq!(clock.active_low(0), Some(50));
        clock.report(1, 70, true);
        assert_eq!(clock.active_low(2), Some(100));
        clock.remove(0);
        assert_eq!(clock.active_low(2), None, "every other task is idle");
    }

    #[test]
    fn other_servers_tasks_count_while_their_report_is_fresh() {
        let clock = StageClock::default();
        clock.report(0, 10, true);
        assert_eq!(clock.active_low(0), None);
        let now = now_ms();
        clock.report_remote(
            "b",
            now,
            vec![(1, 300, false), (2, 200, false), (3, 5, true)],
        );
        assert_eq!(clock.active_low(0), Some(200));
        // An older report does not replace a newer one.
        clock.report_remote("b", now - 1, vec![(1, 1, false)]);
        assert_eq!(clock.active_low(0), Some(200));
        // A partition that moved here counts as this server sees it.
        clock.report(2, 400, false);
        assert_eq!(clock.active_low(0), Some(300));
        assert_eq!(clock.local(), [(0, 10, true), (2, 400, false)]);
        // A server that stopped reporting no longer holds anyone back.
        clock.report_remote("c", now - REMOTE_REPORT_TTL_MS - 1, vec![(4, 0, false)]);
        assert_eq!(clock.active_low(0), Some(300));
    }
}
