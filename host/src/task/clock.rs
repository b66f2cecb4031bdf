//! The watermarks of one pipeline stage's tasks on this server, so that a task whose
//! partition went quiet can follow the others (Flink's idle sources) instead of holding
//! its timers and windows back for as long as no input comes.

use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct StageClock {
    /// Per partition: its watermark, and whether it is idle.
    tasks: Mutex<BTreeMap<u32, (i64, bool)>>,
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

    /// The lowest watermark of the stage's active (not idle) tasks other than
    /// `partition`; `None` when every other task is idle too (nothing to follow).
    pub fn active_low(&self, partition: u32) -> Option<i64> {
        self.tasks
            .lock()
            .expect("stage clock lock")
            .iter()
            .filter(|(p, (_, idle))| **p != partition && !idle)
            .map(|(_, (w, _))| *w)
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
}
