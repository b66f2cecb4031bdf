//! Guest stdout and stderr, line by line into the host log, with a cap on how much one
//! instance may log per second. The last stderr lines are kept to explain a trap (a Rust
//! guest prints its panic message there just before it aborts).

use bytes::Bytes;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Lines per second an instance may log; the rest are counted and dropped.
pub(crate) const LOG_LINES_PER_SECOND: u32 = 100;

/// Limits log lines per second for one instance (guest `log` calls and stdio alike).
#[derive(Debug)]
pub(crate) struct LogBudget {
    window: Instant,
    used: u32,
    dropped: u64,
}

impl LogBudget {
    pub(crate) fn new() -> Self {
        LogBudget {
            window: Instant::now(),
            used: 0,
            dropped: 0,
        }
    }

    /// Whether one more line may be logged now; reports drops when a new window opens.
    pub(crate) fn admit(&mut self, tag: &str) -> bool {
        if self.window.elapsed().as_secs() >= 1 {
            if self.dropped > 0 {
                tracing::warn!(
                    operator = tag,
                    dropped = self.dropped,
                    "guest log lines dropped (over {LOG_LINES_PER_SECOND}/s)"
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
}

struct Shared {
    tag: String,
    stream: &'static str,
    partial: Vec<u8>,
    /// The last lines written since [`GuestOutput::clear_recent`], to explain a trap.
    recent: std::collections::VecDeque<String>,
    budget: LogBudget,
}

/// Lines kept to explain a trap.
const RECENT_LINES: usize = 6;

/// One guest output stream (stdout or stderr).
#[derive(Clone)]
pub(crate) struct GuestOutput(Arc<Mutex<Shared>>);

impl GuestOutput {
    pub(crate) fn new(tag: String, stream: &'static str) -> Self {
        GuestOutput(Arc::new(Mutex::new(Shared {
            tag,
            stream,
            partial: Vec::new(),
            recent: std::collections::VecDeque::new(),
            budget: LogBudget::new(),
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
            let tag = s.tag.clone();
            if s.budget.admit(&tag) {
                tracing::info!(operator = %tag, stream = s.stream, "{line}");
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
