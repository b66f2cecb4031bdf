//! A fixed pool of worker threads running tasks. Each task lives on one worker, which
//! steps its tasks in turn and sleeps when none has input (new records or a stop
//! request wake it).

use super::runner::{Step, TaskRunner};
use crate::log::Signal;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Longest a worker sleeps with idle tasks: bounds how late an idle task commits.
const IDLE_WAIT: Duration = Duration::from_millis(20);

struct Worker {
    inbox: Mutex<Vec<TaskRunner>>,
    load: AtomicUsize,
}

pub struct WorkerPool {
    workers: Vec<Arc<Worker>>,
    signal: Arc<Signal>,
    shutdown: Arc<AtomicBool>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl WorkerPool {
    /// Starts `threads` workers, woken by `signal`.
    pub fn new(threads: usize, signal: Arc<Signal>) -> Self {
        let shutdown = Arc::new(AtomicBool::new(false));
        let workers: Vec<Arc<Worker>> = (0..threads.max(1))
            .map(|_| {
                Arc::new(Worker {
                    inbox: Mutex::new(Vec::new()),
                    load: AtomicUsize::new(0),
                })
            })
            .collect();
        let handles = workers
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let (w, signal, shutdown) =
                    (Arc::clone(w), Arc::clone(&signal), Arc::clone(&shutdown));
                std::thread::Builder::new()
                    .name(format!("eddy-worker-{i}"))
                    .spawn(move || run(&w, &signal, &shutdown))
                    .expect("spawn a worker thread")
            })
            .collect();
        WorkerPool {
            workers,
            signal,
            shutdown,
            threads: Mutex::new(handles),
        }
    }

    /// Hands a task to the least loaded worker.
    pub fn spawn(&self, runner: TaskRunner) {
        let w = self
            .workers
            .iter()
            .min_by_key(|w| w.load.load(Ordering::Relaxed))
            .expect("at least one worker");
        w.load.fetch_add(1, Ordering::Relaxed);
        w.inbox.lock().expect("inbox lock").push(runner);
        self.signal.notify();
    }

    /// Wakes every worker (after a stop request, say).
    pub fn wake(&self) {
        self.signal.notify();
    }

    pub fn threads(&self) -> usize {
        self.workers.len()
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

fn run(worker: &Worker, signal: &Signal, shutdown: &AtomicBool) {
    let mut tasks: Vec<TaskRunner> = Vec::new();
    while !shutdown.load(Ordering::Acquire) {
        let seen = signal.generation();
        tasks.append(&mut worker.inbox.lock().expect("inbox lock"));
        let mut worked = false;
        tasks.retain_mut(|t| match t.step() {
            Step::Worked => {
                worked = true;
                true
            }
            Step::Idle => true,
            Step::Finished => {
                worker.load.fetch_sub(1, Ordering::Relaxed);
                false
            }
        });
        if !worked {
            signal.wait(seen, IDLE_WAIT);
        }
    }
}
