//! Fair shares of the workers between pipelines: the pool counts the worker time each
//! pipeline's tasks spend working — a step still running counts as it runs — and a
//! pipeline more than [`QUANTUM`] ahead of the least served pipeline with work waits its
//! turn; nor may a pipeline run steps on more than its share of the workers while other
//! pipelines have work. So a pipeline with many tasks, or with slow calls (a loop until
//! the call deadline), gets no more of the workers than a pipeline with one quick task.

use rustc_hash::{FxHashMap, FxHashSet};
use std::time::{Duration, Instant};

/// How far a pipeline may run ahead of the least served one before its tasks wait.
const QUANTUM: Duration = Duration::from_millis(20);

/// A pipeline that worked this recently keeps a worker between its inputs from a
/// neighbour whose steps are slow ...
const RECENT: Duration = Duration::from_secs(5);

/// ... a step this long (a loop until the call deadline), running or finished in the
/// last [`SLOW_FOR`], makes its pipeline slow.
const SLOW_STEP: Duration = Duration::from_millis(250);
const SLOW_FOR: Duration = Duration::from_secs(60);

/// What one pipeline with work used.
#[derive(Debug, Default)]
struct Account {
    /// Worker time of finished steps, counted from a floor common to all pipelines.
    used: Duration,
    /// When its steps that still run started.
    running: Vec<Instant>,
    /// It worked (or waited its turn) in this round or the last: it has work, and takes
    /// a share of the workers.
    active: bool,
}

impl Account {
    fn at(&self, now: Instant) -> Duration {
        self.used
            + self
                .running
                .iter()
                .map(|s| now.saturating_duration_since(*s))
                .sum::<Duration>()
    }
}

#[derive(Debug)]
pub(super) struct FairShare {
    accounts: FxHashMap<String, Account>,
    /// When each pipeline last finished a step that worked (within [`RECENT`]).
    worked_at: FxHashMap<String, Instant>,
    /// When each pipeline last finished a slow step (within [`SLOW_FOR`]).
    slow_at: FxHashMap<String, Instant>,
    workers: usize,
}

impl FairShare {
    pub(super) fn new(workers: usize) -> Self {
        FairShare {
            accounts: FxHashMap::default(),
            worked_at: FxHashMap::default(),
            slow_at: FxHashMap::default(),
            workers: workers.max(1),
        }
    }

    fn least(&self, now: Instant) -> Duration {
        self.accounts
            .values()
            .map(|a| a.at(now))
            .min()
            .unwrap_or_default()
    }

    /// Whether a task of `pipeline` may step now.
    pub(super) fn may_run(&self, pipeline: &str, now: Instant) -> bool {
        let Some(a) = self.accounts.get(pipeline) else {
            return true;
        };
        // Pipelines with work split the workers; one that worked in the last seconds
        // keeps at least one worker between its inputs from a slow pipeline.
        let active = self
            .accounts
            .iter()
            .filter(|(p, a)| a.active && p.as_str() != pipeline)
            .count();
        let recent = self
            .worked_at
            .iter()
            .filter(|(p, at)| {
                p.as_str() != pipeline && now.saturating_duration_since(**at) < RECENT
            })
            .count();
        let slow = self.slow_at.contains_key(pipeline)
            || a.running
                .iter()
                .any(|s| now.saturating_duration_since(*s) >= SLOW_STEP);
        let mut share = self.workers / (active + 1);
        if slow {
            share = share.min(self.workers.saturating_sub(recent));
        }
        let share = share.max(1);
        a.running.len() < share && a.at(now) <= self.least(now) + QUANTUM
    }

    /// A task of `pipeline` starts a step at `now` (a pipeline new to the count starts
    /// even with the least served, with no credit for the time it had no work).
    pub(super) fn start(&mut self, pipeline: &str, now: Instant) {
        if !self.accounts.contains_key(pipeline) {
            let used = self.least(now);
            self.accounts.insert(
                pipeline.to_string(),
                Account {
                    used,
                    running: Vec::new(),
                    active: false,
                },
            );
        }
        if let Some(a) = self.accounts.get_mut(pipeline) {
            a.running.push(now);
        }
    }

    /// The step of `pipeline` that started at `started` ended: it `worked` (had input),
    /// and it counts when `costly`, with `extra` for the work it left to others
    /// (RocksDB's flushes and compactions).
    pub(super) fn finish(
        &mut self,
        pipeline: &str,
        started: Instant,
        worked: bool,
        costly: bool,
        extra: Duration,
    ) {
        if let Some(a) = self.accounts.get_mut(pipeline) {
            if let Some(i) = a.running.iter().position(|s| *s == started) {
                a.running.swap_remove(i);
            }
            if costly {
                a.used += started.elapsed() + extra;
            }
            a.active |= worked;
        }
        if started.elapsed() >= SLOW_STEP {
            self.slow_at.insert(pipeline.to_string(), Instant::now());
        }
        if worked {
            match self.worked_at.get_mut(pipeline) {
                Some(at) => *at = Instant::now(),
                None => {
                    self.worked_at.insert(pipeline.to_string(), Instant::now());
                }
            }
        }
    }

    /// The end of a round over the tasks: pipelines that had nothing to do in it (and no
    /// step running) leave the count, and the others' counts move down together.
    pub(super) fn end_round(&mut self, busy: &FxHashSet<String>) {
        self.accounts.retain(|p, a| {
            a.active = busy.contains(p);
            a.active || !a.running.is_empty()
        });
        self.worked_at.retain(|_, at| at.elapsed() < RECENT);
        self.slow_at.retain(|_, at| at.elapsed() < SLOW_FOR);
        let least = self
            .accounts
            .values()
            .map(|a| a.used)
            .min()
            .unwrap_or_default();
        for a in self.accounts.values_mut() {
            a.used -= least;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Rounds over a slow pipeline (100 ms steps) and a quick one (1 ms), simulated
    /// one after the other: the quick one gets about half of the time, not 1%.
    #[test]
    fn a_pipeline_with_slow_steps_gets_no_more_than_its_share() {
        let mut fair = FairShare::new(4);
        let mut time = FxHashMap::<&str, Duration>::default();
        let base = Instant::now();
        let mut clock = Duration::ZERO;
        for _ in 0..2000 {
            let mut busy = FxHashSet::default();
            for (p, took) in [("slow", 100 * MS), ("quick", MS)] {
                busy.insert(p.to_string());
                let now = base + clock;
                if fair.may_run(p, now) {
                    fair.start(p, now);
                    // A finished step counts its length (set it as `used` directly: the
                    // test's clock is simulated).
                    let a = fair.accounts.get_mut(p).unwrap();
                    a.running.clear();
                    a.used += took;
                    clock += took;
                    *time.entry(p).or_default() += took;
                }
            }
            fair.end_round(&busy);
        }
        let share = time["quick"].as_secs_f64() / (time["quick"] + time["slow"]).as_secs_f64();
        assert!(
            (0.4..=0.6).contains(&share),
            "the quick pipeline got {share:.2}"
        );
    }

    /// A pipeline between two inputs keeps a worker: a neighbour alone with work gets
    /// the others while the first worked in the last seconds.
    #[test]
    fn a_pipeline_that_worked_recently_keeps_its_share() {
        let mut fair = FairShare::new(2);
        let t0 = Instant::now();
        fair.start("healthy", t0);
        fair.finish("healthy", t0, true, true, Duration::ZERO);
        fair.end_round(&FxHashSet::default());
        // A quick neighbour may use both workers; one with a step running long may not.
        fair.start("looping", t0);
        assert!(fair.may_run("looping", t0));
        let later = t0 + SLOW_STEP;
        assert!(!fair.may_run("looping", later));
        assert!(fair.may_run("healthy", later));
    }

    /// A step that runs long (a loop until the deadline) counts while it runs: the
    /// pipeline's other tasks wait, others go on.
    #[test]
    fn a_running_step_counts_while_it_runs() {
        let mut fair = FairShare::new(4);
        let t0 = Instant::now();
        fair.start("looping", t0);
        fair.start("healthy", t0);
        fair.finish("healthy", t0, true, true, Duration::ZERO);
        let later = t0 + 500 * MS;
        assert!(!fair.may_run("looping", later));
        assert!(fair.may_run("healthy", later));
    }

    /// With two pipelines with work, neither runs steps on more than half the workers.
    #[test]
    fn a_pipeline_runs_on_no_more_than_its_share_of_the_workers() {
        let mut fair = FairShare::new(4);
        let t0 = Instant::now();
        fair.start("other", t0);
        fair.finish("other", t0, true, true, Duration::ZERO);
        fair.start("greedy", t0);
        fair.start("greedy", t0);
        assert!(!fair.may_run("greedy", t0));
        assert!(fair.may_run("other", t0));
        // Once the other has had nothing to do for a while (`RECENT`), it may use every
        // worker; looking for input and finding none takes no share.
        fair.end_round(&["greedy".to_string()].into_iter().collect());
        fair.worked_at.remove("other");
        fair.start("other", t0);
        fair.finish("other", t0, false, false, Duration::ZERO);
        assert!(fair.may_run("greedy", t0));
    }

    #[test]
    fn an_idle_pipeline_leaves_the_count_and_comes_back_without_credit() {
        let mut fair = FairShare::new(4);
        let t0 = Instant::now();
        fair.start("a", t0);
        fair.accounts.get_mut("a").unwrap().running.clear();
        fair.accounts.get_mut("a").unwrap().used = 500 * MS;
        fair.end_round(&["a".to_string()].into_iter().collect());
        fair.end_round(&FxHashSet::default());
        assert!(fair.accounts.is_empty());
        fair.start("a", t0);
        fair.start("b", t0);
        assert_eq!(fair.accounts["a"].used, fair.accounts["b"].used);
    }
}
