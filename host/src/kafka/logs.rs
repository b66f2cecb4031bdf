//! librdkafka's own log lines and errors, in the server's log without flooding it. A
//! broker that is down or slow makes every client repeat the same line (a request timed
//! out, a connection refused) every second; each kind of line is written at most once a
//! minute, with how many like it were left out. Request timeouts of the offset lookups a
//! source makes in the background go to debug: the source asks again by itself.

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How often one kind of line is written at most.
const EVERY: Duration = Duration::from_secs(60);
/// Kinds remembered at most (the oldest are forgotten first).
const KINDS: usize = 256;

/// The context for Eddy's Kafka clients: librdkafka's lines and errors, rate-limited.
pub struct Quiet;

impl ClientContext for Quiet {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log(level, fac, message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self::error(&error, reason);
    }
}

impl ConsumerContext for Quiet {}

impl rdkafka::producer::ProducerContext for Quiet {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: ()) {}
}

/// Writes a librdkafka log line, unless one of its kind was written within a minute.
pub(crate) fn log(level: RDKafkaLogLevel, fac: &str, message: &str) {
    use RDKafkaLogLevel::*;
    let handled = fac == "REQTMOUT" && message.contains("ListOffsetsRequest");
    if handled || matches!(level, Debug | Info | Notice) {
        tracing::debug!(target: "librdkafka", "{fac}: {message}");
        return;
    }
    let Some(left_out) = admit(&format!("{fac} {message}"), Instant::now()) else {
        return;
    };
    let more = more(left_out);
    match level {
        Warning => tracing::warn!(target: "librdkafka", "{fac}: {message}{more}"),
        _ => tracing::error!(target: "librdkafka", "{fac}: {message}{more}"),
    }
}

/// Writes an error a librdkafka client reported, unless one of its kind was written
/// within a minute.
pub(crate) fn error(error: &rdkafka::error::KafkaError, reason: &str) {
    if let Some(left_out) = admit(&format!("{error} {reason}"), Instant::now()) {
        tracing::error!(target: "librdkafka", "{error}: {reason}{}", more(left_out));
    }
}

fn more(left_out: u64) -> String {
    match left_out {
        0 => String::new(),
        n => format!(" ({n} more like it since the last one left out)"),
    }
}

/// Whether a line of `text`'s kind may be written at `now`, and how many of its kind
/// were left out since the last one written.
fn admit(text: &str, now: Instant) -> Option<u64> {
    static SEEN: OnceLock<Mutex<Limiter>> = OnceLock::new();
    let seen = SEEN.get_or_init(|| Mutex::new(Limiter::default()));
    seen.lock()
        .expect("log limiter lock")
        .admit(&kind(text), now)
}

/// A line's kind: its text with every word that holds a digit left out (addresses,
/// counts, times and generated ids differ between lines that say the same).
fn kind(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_inclusive(|c: char| !c.is_ascii_alphanumeric()) {
        let (body, sep) = match word.char_indices().last() {
            Some((i, c)) if !c.is_ascii_alphanumeric() => word.split_at(i),
            _ => (word, ""),
        };
        if body.bytes().any(|b| b.is_ascii_digit()) {
            out.push('#');
        } else {
            out.push_str(body);
        }
        out.push_str(sep);
    }
    out
}

/// Per kind of line: when one was last written, and how many were left out since.
#[derive(Default)]
struct Limiter {
    kinds: HashMap<String, (Instant, u64)>,
}

impl Limiter {
    fn admit(&mut self, kind: &str, now: Instant) -> Option<u64> {
        if let Some((last, left_out)) = self.kinds.get_mut(kind) {
            if now.duration_since(*last) < EVERY {
                *left_out += 1;
                return None;
            }
            let n = *left_out;
            *last = now;
            *left_out = 0;
            return Some(n);
        }
        if self.kinds.len() >= KINDS
            && let Some(oldest) = self
                .kinds
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone())
        {
            self.kinds.remove(&oldest);
        }
        self.kinds.insert(kind.to_string(), (now, 0));
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_of_line_is_written_once_a_minute_with_what_was_left_out() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        let a = kind("REQTMOUT 127.0.0.1:9092/1: Timed out 1 in-flight (after 30001ms)");
        let b = kind("REQTMOUT 127.0.0.1:9093/2: Timed out 3 in-flight (after 30017ms)");
        assert_eq!(a, b, "numbers do not make another kind");
        assert_eq!(
            kind("FAIL rdkafka-4f3c9a1e-77b2: Disconnected"),
            kind("FAIL rdkafka-a81d2c0b-19fe: Disconnected"),
            "nor generated ids"
        );
        assert_ne!(kind("FAIL Disconnected"), kind("FAIL Connection refused"));
        assert_eq!(l.admit(&a, t0), Some(0));
        for s in 1..=5 {
            assert_eq!(l.admit(&b, t0 + Duration::from_secs(s)), None);
        }
        assert_eq!(
            l.admit("FAIL other", t0),
            Some(0),
            "another kind is written"
        );
        assert_eq!(l.admit(&a, t0 + EVERY), Some(5));
        assert_eq!(l.admit(&a, t0 + EVERY + Duration::from_secs(1)), None);
    }

    #[test]
    fn the_limiter_forgets_the_oldest_kinds_beyond_its_bound() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        for i in 0..KINDS + 10 {
            let kind = format!("kind {}", "x".repeat(i));
            assert_eq!(
                l.admit(&kind, t0 + Duration::from_millis(i as u64)),
                Some(0)
            );
        }
        assert_eq!(l.kinds.len(), KINDS);
        assert!(!l.kinds.contains_key("kind "), "the oldest went first");
    }
}
