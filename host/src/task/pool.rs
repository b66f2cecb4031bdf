//! A fixed pool of worker threads running tasks from one shared queue: a worker takes
//! the next task, steps it (one batch, or a look for input), and puts it back. A task
//! that runs a long call holds one worker, not the tasks queued behind it. Each pipeline
//! gets its fair share of the workers (see `fair`); the workers sleep when a whole round
//! over the tasks found no input (new records or a stop request wake them).

use super::fair::FairShare;
use super::runner::{Step, TaskRunner};
use crate::log::Signal;
use rustc_hash::FxHashSet;
use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest the workers sleep with idle tasks: bounds how late an idle task commits.
const IDLE_WAIT: Duration = Duration::from_millis(20);

/// Worker time charged to a pipeline for each MiB its commits write: RocksDB's flushes
/// and compactions of it run on threads of their own, shared by every pipeline, and a
/// pipeline writing big values would otherwise take them for free. (`eddy bench
/// isolation`, word count next to 16 MiB records: 0.32 of its rate alone at 4 ms/MiB,
/// 0.50 at 16 ms/MiB.)
const WRITE_COST_PER_MIB: Duration = Duration::from_millis(16);

/// A step that found no input but took this long still counts for its pipeline.
const COSTLY_STEP: Duration = Duration::from_millis(1);

/// A queued task and the round it last stepped in.
struct Slot {
    runner: TaskRunner,
    round: u64,
}

/// The tasks waiting for a worker, and the rounds over them.
struct Queue {
    slots: VecDeque<Slot>,
    fair: FairShare,
    /// Each task steps at most once a round; a round ends when every queued task did.
    round: u64,
    /// Pipelines that worked (or waited for their turn) in this round.
    busy: FxHashSet<String>,
    /// Some task worked in this round (or waited for its turn) ...
    worked: bool,
    /// ... and a task was taken to step in it.
    taken: bool,
    /// The signal's generation and the time at which a round last found nothing to do:
    /// the next round waits for new input, or for [`IDLE_WAIT`].
    quiet: Option<(u64, Instant)>,
}

impl Queue {
    /// The next task to step and the time its step starts, or `None` when the worker
    /// should sleep.
    fn take(&mut self, seen: u64, now: Instant) -> Option<(Slot, Instant)> {
        if let Some((generation, at)) = self.quiet {
            if generation == seen && now < at + IDLE_WAIT {
                return None;
            }
            self.quiet = None;
        }
        loop {
            let Some(i) = self.slots.iter().position(|s| s.round < self.round) else {
                // The round is over.
                self.fair.end_round(&self.busy);
                self.busy.clear();
                self.round += 1;
                let taken = std::mem::take(&mut self.taken);
                // A task that stepped idle in the round just over and got a command (or
                // a stop) since: it goes in the new round at once, not after IDLE_WAIT
                // (which made an upgrade's pause and swap wait 20 ms each).
                let called = self.slots.iter().any(|s| {
                    let h = s.runner.handle();
                    h.stop_requested() || h.has_commands()
                });
                if !std::mem::take(&mut self.worked) && !called {
                    self.quiet = Some((seen, now));
                    return None;
                }
                if !taken {
                    // Every queued task waited for its turn behind steps still running
                    // elsewhere: look again shortly.
                    return None;
                }
                continue;
            };
            let mut slot = self.slots.remove(i).expect("found");
            slot.round = self.round;
            let handle = slot.runner.handle();
            let pipeline = &handle.id.pipeline;
            // A stop or a command does not wait for the pipeline's turn.
            let called = handle.stop_requested() || handle.has_commands();
            if called || self.fair.may_run(pipeline, now) {
                self.fair.start(pipeline, now);
                self.taken = true;
                return Some((slot, now));
            }
            // Its turn comes when the others caught up (or ran out of work).
            if !self.busy.contains(pipeline) {
                self.busy.insert(pipeline.clone());
            }
            self.worked = true;
            self.slots.push_back(slot);
        }
    }

    /// A step that started at `started` ended with `step`, its commits having written
    /// `written` bytes. A finished task comes back, to be dropped outside the lock (its
    /// Kafka clients may take a while to close).
    fn put_back(
        &mut self,
        mut slot: Slot,
        started: Instant,
        step: Step,
        written: u64,
    ) -> Option<Slot> {
        let pipeline = &slot.runner.handle().id.pipeline;
        let worked = step == Step::Worked;
        let extra = WRITE_COST_PER_MIB.mul_f64(written as f64 / (1 << 20) as f64);
        // A step that found no input still counts when it took long (timers that fired
        // on an idle partition, a commit) or wrote.
        let costly = worked || written > 0 || started.elapsed() >= COSTLY_STEP;
        self.fair.finish(pipeline, started, worked, costly, extra);
        if worked {
            if !self.busy.contains(pipeline) {
                self.busy.insert(pipeline.clone());
            }
            self.worked = true;
            self.taken = true;
            self.quiet = None;
        }
        if step == Step::Finished {
            return Some(slot);
        }
        // Its turn in this round is over: the tasks refused meanwhile go first.
        slot.round = self.round;
        self.slots.push_back(slot);
        None
    }
}

pub struct WorkerPool {
    queue: Arc<Mutex<Queue>>,
    workers: usize,
    signal: Arc<Signal>,
    shutdown: Arc<AtomicBool>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl WorkerPool {
    /// Starts `threads` workers, woken by `signal`.
    pub fn new(threads: usize, signal: Arc<Signal>) -> Self {
        let shutdown = Arc::new(AtomicBool::new(false));
        let workers = threads.max(1);
        let queue = Arc::new(Mutex::new(Queue {
            slots: VecDeque::new(),
            fair: FairShare::new(workers),
            round: 0,
            busy: FxHashSet::default(),
            worked: false,
            taken: false,
            quiet: None,
        }));
        let handles = (0..workers)
            .map(|i| {
                let (queue, signal, shutdown) = (
                    Arc::clone(&queue),
                    Arc::clone(&signal),
                    Arc::clone(&shutdown),
                );
                std::thread::Builder::new()
                    .name(format!("eddy-worker-{i}"))
                    .spawn(move || run(&queue, &signal, &shutdown))
                    .expect("spawn a worker thread")
            })
            .collect();
        WorkerPool {
            queue,
            workers,
            signal,
            shutdown,
            threads: Mutex::new(handles),
        }
    }

    /// Queues a task for the workers.
    pub fn spawn(&self, runner: TaskRunner) {
        self.queue
            .lock()
            .expect("queue lock")
            .slots
            .push_back(Slot { runner, round: 0 });
        self.signal.notify();
    }

    /// Wakes every worker (after a stop request, say).
    pub fn wake(&self) {
        self.signal.notify();
    }

    pub fn threads(&self) -> usize {
        self.workers
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::Release);
        self.signal.notify();
        for t in self.threads.lock().expect("threads lock").drain(..) {
            let _ = t.join();
        }
    }
}

fn run(queue: &Mutex<Queue>, signal: &Signal, shutdown: &AtomicBool) {
    while !shutdown.load(Ordering::Acquire) {
        let seen = signal.generation();
        let next = queue.lock().expect("queue lock").take(seen, Instant::now());
        let Some((mut slot, started)) = next else {
            signal.wait(seen, IDLE_WAIT);
            continue;
        };
        let before = slot.runner.bytes_committed();
        // A panic (a bug in the host) ends its task as failed; the worker goes on.
        let step = match std::panic::catch_unwind(AssertUnwindSafe(|| slot.runner.step())) {
            Ok(step) => step,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic without a message".into());
                slot.runner.end_on_panic(message)
            }
        };
        let written = slot.runner.bytes_committed().saturating_sub(before);
        let finished = queue
            .lock()
            .expect("queue lock")
            .put_back(slot, started, step, written);
        drop(finished);
    }
}
