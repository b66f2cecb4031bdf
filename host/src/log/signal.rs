//! Wakes whoever waits for new records: worker threads (blocking) and followers over
//! SSE (async).

use std::sync::{Condvar, Mutex};
use std::time::Duration;

pub struct Signal {
    generation: Mutex<u64>,
    cond: Condvar,
    watch: tokio::sync::watch::Sender<u64>,
}

impl Default for Signal {
    fn default() -> Self {
        Signal {
            generation: Mutex::new(0),
            cond: Condvar::new(),
            watch: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl Signal {
    /// Announces new records.
    pub fn notify(&self) {
        let mut g = self.generation.lock().expect("signal lock");
        *g += 1;
        self.cond.notify_all();
        self.watch.send_replace(*g);
    }

    /// The current generation, to wait for a later one.
    pub fn generation(&self) -> u64 {
        *self.generation.lock().expect("signal lock")
    }

    /// Blocks until the generation moves past `seen` or `timeout` passes.
    pub fn wait(&self, seen: u64, timeout: Duration) {
        let g = self.generation.lock().expect("signal lock");
        let _ = self.cond.wait_timeout_while(g, timeout, |g| *g == seen);
    }

    /// A receiver for async waiters.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.watch.subscribe()
    }
}
