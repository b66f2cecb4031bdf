//! Guest stdout and stderr, line by line into the host log, with a cap on how much one
//! instance may log per second. The last stderr lines are kept to explain a trap (a Rust
//! guest prints its panic message there just before it aborts).

use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Lines per second one operator of a pipeline may log (over all its tasks and
/// instances); the rest are counted and dropped.
pub(crate) const LOG_LINES_PER_SECOND: u32 = 100;

/// How long a repeated stderr line stays silent (a trapping operator prints the same
/// panic message for every record it fails on).
const REPEATS_FORGOTTEN_AFTER: Duration = Duration::from_secs(60);
/// Distinct stderr lines remembered per operator, at most.
const REMEMBERED_LINES: usize = 1024;

/// Limits the log lines of one operator of a pipeline (guest `log` calls and stdio
/// alike). Shared by every instance of the operator, so a trap (which starts a new
/// instance) does not start a new budget.
#[derive(Debug)]
pub(crate) struct LogBudget {
    window: Instant,
    used: u32,
    dropped: u64,
    /// Stderr lines logged lately (by hash), and when the set was started.
    seen: HashSet<u64>,
    seen_since: Instant,
    repeated: u64,
}

/// One budget, shared by the instances of one operator.
pub(crate) type SharedBudget = Arc<Mutex<LogBudget>>;

impl LogBudget {
    pub(crate) fn new() -> Self {
        LogBudget {
            window: Instant::now(),
            used: 0,
            dropped: 0,
            seen: HashSet::new(),
            seen_since: Instant::now(),
            repeated: 0,
        }
    }

    /// Whether one more line may be logged now; when a new window opens, says how many
    /// lines the last one dropped.
    pub(crate) fn admit(&mut self, tag: &str) -> bool {
        if self.window.elapsed() >= Duration::from_secs(1) {
            if self.dropped > 0 {
                tracing::warn!(
                    operator = tag,
                    dropped = self.dropped,
                    "{} guest log lines dropped (over {LOG_LINES_PER_SECOND}/s)",
                    self.dropped
                );
            }
            self.window = Instant::now();
            self.used = 0;
            self.dropped = 0;
        }
        if self.used < LOG_LINES_PER_SECOND {
            self.used += 1;
            true
        } else {
            self.dropped += 1;
            false
        }
    }

    /// Like [`LogBudget::admit`], for a stderr line: a line logged lately is not logged
    /// again (it is counted, and the count reported when the lines are forgotten).
    pub(crate) fn admit_once(&mut self, tag: &str, line: &str) -> bool {
        if self.seen_since.elapsed() >= REPEATS_FORGOTTEN_AFTER
            || self.seen.len() >= REMEMBERED_LINES
        {
            if self.repeated > 0 {
                tracing::warn!(
                    operator = tag,
                    repeated = self.repeated,
                    "{} repeated guest stderr lines not logged again",
                    self.repeated
                );
            }
            self.seen.clear();
            self.seen_since = Instant::now();
            self.repeated = 0;
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        line.hash(&mut hasher);
        if !self.seen.insert(hasher.finish()) {
            self.repeated += 1;
            return false;
        }
        self.admit(tag)
    }
}

/// The budgets of every operator of every pipeline, by `pipeline/operator`, while any
/// instance of it lives.
#[derive(Default)]
pub(crate) struct LogBudgets(Mutex<HashMap<String, Weak<Mutex<LogBudget>>>>);

impl LogBudgets {
    /// The budget of one operator of a pipeline.
    pub(crate) fn of(&self, pipeline: &str, operator: &str) -> SharedBudget {
        let mut all = self.0.lock().expect("log budgets lock");
        all.retain(|_, b| b.strong_count() > 0);
        let key = format!("{pipeline}/{operator}");
        if let Some(b) = all.get(&key).and_then(Weak::upgrade) {
            return b;
        }
        let b = Arc::new(Mutex::new(LogBudget::new()));
        all.insert(key, Arc::downgrade(&b));
        b
    }
}

struct Shared {
    tag: String,
    stream: &'static str,
    partial: Vec<u8>,
    /// The last lines written since [`GuestOutput::clear_recent`], to explain a trap.
    recent: std::collections::VecDeque<String>,
    budget: SharedBudget,
}

/// Lines kept to explain a trap.
const RECENT_LINES: usize = 6;

/// One guest output stream (stdout or stderr).
#[derive(Clone)]
pub(crate) struct GuestOutput(Arc<Mutex<Shared>>);

impl GuestOutput {
    pub(crate) fn new(tag: String, stream: &'static str, budget: SharedBudget) -> Self {
        GuestOutput(Arc::new(Mutex::new(Shared {
            tag,
            stream,
            partial: Vec::new(),
            recent: std::collections::VecDeque::new(),
            budget,
        })))
    }

    /// Forgets what was written so far (called before each call into the guest).
    pub(crate) fn clear_recent(&self) {
        let mut s = self.0.lock().expect("guest output lock");
        s.recent.clear();
        s.partial.clear();
    }

    /// What the guest wrote since the last [`GuestOutput::clear_recent`], on one line,
    /// without Rust's hint about backtraces.
    pub(crate) fn recent(&self) -> String {
        let s = self.0.lock().expect("guest output lock");
        let mut lines: Vec<String> = s.recent.iter().cloned().collect();
        if !s.partial.is_empty() {
            lines.push(String::from_utf8_lossy(&s.partial).trim_end().to_string());
        }
        lines.retain(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"));
        lines.join(" ")
    }

    fn write(&self, bytes: &[u8]) {
        let mut s = self.0.lock().expect("guest output lock");
        s.partial.extend_from_slice(bytes);
        while let Some(nl) = s.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = s.partial.drain(..=nl).collect();
            let line = String::from_utf8_lossy(&line[..line.len() - 1])
                .trim_end()
                .to_string();
            let admitted = {
                let mut budget = s.budget.lock().expect("log budget lock");
                match s.stream {
                    "stderr" => budget.admit_once(&s.tag, &line),
                    _ => budget.admit(&s.tag),
                }
            };
            if admitted {
                tracing::info!(operator = %s.tag, stream = s.stream, "{line}");
            }
            if s.recent.len() == RECENT_LINES {
                s.recent.pop_front();
            }
            s.recent.push_back(line);
        }
        // A guest that never writes a newline must not grow the buffer without bound.
        if s.partial.len() > 64 << 10 {
            let line = String::from_utf8_lossy(&s.partial).into_owned();
            s.partial.clear();
            if s.recent.len() == RECENT_LINES {
                s.recent.pop_front();
            }
            s.recent.push_back(line);
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        GuestOutput::write(self, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 << 10)
    }
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        GuestOutput::write(&self, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_shared_by_the_instances_of_one_operator_and_drops_repeats() {
        let budgets = LogBudgets::default();
        let a = budgets.of("p", "op");
        let b = budgets.of("p", "op");
        assert!(Arc::ptr_eq(&a, &b), "a new instance gets the same budget");
        assert!(!Arc::ptr_eq(&a, &budgets.of("p", "other")));
        let admitted = (0..150)
            .filter(|i| a.lock().unwrap().admit_once("p/op", &format!("line {i}")))
            .count();
        assert_eq!(admitted, LOG_LINES_PER_SECOND as usize);
        assert!(
            !b.lock().unwrap().admit("p/op"),
            "the other instance is over too"
        );
        let mut fresh = LogBudget::new();
        assert!(fresh.admit_once("t", "panicked at lib.rs:3"));
        assert!(!fresh.admit_once("t", "panicked at lib.rs:3"));
        assert!(fresh.admit_once("t", "another message"));
        assert_eq!(fresh.repeated, 1);
        drop((a, b));
        assert_eq!(
            budgets.0.lock().unwrap().len(),
            2,
            "not pruned until the next lookup"
        );
        budgets.of("q", "op");
        assert_eq!(budgets.0.lock().unwrap().len(), 1, "only q/op lives");
    }
}
