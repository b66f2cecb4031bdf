//! How a pipeline runs: its settings, their defaults and their bounds.

use super::spec::SpecError;
use serde::{Deserialize, Deserializer, Serialize};

/// Largest state cache per store and task, in MiB.
pub const STATE_CACHE_MB_MAX: u64 = 4096;

/// What to do with a record an operator cannot handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    /// Stop the task and report the pipeline failed.
    #[default]
    Fail,
    /// Drop the record, count it, log it, go on.
    Skip,
    /// Write the record, with the error in its headers, to `<pipeline>.dlq`.
    DeadLetter,
}

/// What happens to an event whose timestamp is below the task's watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LateEvents {
    /// Hand it to the operators like any other (they can compare with the watermark).
    #[default]
    Process,
    /// Drop it and count it (`late` in the task status).
    Drop,
    /// Write it, unchanged, to the side output `late` (`<pipeline>.late`).
    SideOutput,
}

/// What happens to an upgrade whose probation timed out before the new version handled
/// its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnProbationTimeout {
    /// Go back to the old version (the held work is dropped).
    #[default]
    RollBack,
    /// Keep the new version; the upgrade is recorded as `succeeded_unexercised`.
    Accept,
}

/// A duration written as text (`"5s"`, `"250ms"`, `"1m"`), as in Flink's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationText(pub std::time::Duration);

impl Serialize for DurationText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DurationVisitor)
    }
}

const DURATION_HOW: &str = r#"write it like "5s", "250ms" or "1m""#;

struct DurationVisitor;

impl serde::de::Visitor<'_> for DurationVisitor {
    type Value = DurationText;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "a duration as text ({DURATION_HOW})")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<DurationText, E> {
        humantime::parse_duration(text)
            .map(DurationText)
            .map_err(|e| E::custom(format!("{text:?} is not a duration ({e}): {DURATION_HOW}")))
    }

    // A bare number has no unit: say how to write one rather than guess.
    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<DurationText, E> {
        Err(E::custom(format!(
            "{n} has no unit: durations are text, {DURATION_HOW} (\"{n}ms\" for milliseconds)"
        )))
    }

    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<DurationText, E> {
        self.visit_i64(n.min(i64::MAX as u64) as i64)
    }
}

/// A share from 0 to 1.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Rate(pub f64);

impl PartialEq for Rate {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Rate {}

/// How a pipeline runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Most records per batch (one commit each).
    pub batch_size: usize,
    /// Longest time between commits. Outputs become visible at commits; a crash
    /// re-processes at most this much (exactly once all the same).
    pub commit_interval_ms: u64,
    /// A task that has caught up with its input commits at once, so its outputs are
    /// visible within milliseconds at low load; `false` waits out `commit_interval_ms`
    /// (fewer, larger commits). Under load, batches are full and the interval decides.
    #[serde(skip_serializing_if = "is_true")]
    pub commit_when_caught_up: bool,
    pub on_error: OnError,
    /// Bounded out-of-orderness: the watermark trails the largest event time seen by
    /// this much (`"5s"`). Events below the watermark are late (see `late_events`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_out_of_orderness: Option<DurationText>,
    /// The same bound in milliseconds (the older name; use one of the two).
    pub watermark_delay_ms: i64,
    /// What happens to late events.
    pub late_events: LateEvents,
    /// A task whose partition had no input for this long (`"30s"`) moves its watermark
    /// up to the lowest watermark of the stage's active tasks on this server, so a quiet
    /// partition's windows close too. Unset: a quiet partition's watermark waits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<DurationText>,
    /// Longest one call into an operator may run before it is stopped.
    pub call_timeout_ms: u64,
    /// Most memory one operator instance may use.
    pub memory_limit_mb: u64,
    /// Committed state cached in memory per store and task.
    pub state_cache_mb: u64,
    /// After an upgrade, the new version is on probation until it handled this many
    /// records (over all its tasks) ...
    pub probation_records: u64,
    /// ... and at least this much time passed; time alone never ends a probation. A
    /// trap (or an error under `on_error = "fail"`) during probation rolls the upgrade
    /// back.
    pub probation_ms: u64,
    /// How long a probation may wait for its records (`"10m"`), after which
    /// `on_probation_timeout` decides. Unset: it waits for traffic as long as it takes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probation_timeout: Option<DurationText>,
    /// What a probation that timed out does: `"roll-back"` (the default) or `"accept"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_probation_timeout: Option<OnProbationTimeout>,
    /// The share of its records (0 to 1) the new version may reject on probation (skipped
    /// or dead-lettered) before it is rolled back. Unset: the old version's share in the
    /// same tasks, so a version that rejects records the old one took is rolled back
    /// (at its first rejected record when the old one rejected none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probation_max_error_rate: Option<Rate>,
    /// With a Kafka sink: commit outputs, changelogs and source offsets in one Kafka
    /// transaction per task. `false` gives at-least-once with plain commits.
    pub exactly_once: bool,
    /// Largest state value one `set` may write (MiB).
    pub max_value_mb: u64,
    /// State one call into an operator (a batch, a timer) may write before it fails
    /// (MiB): a batch that writes more is retried record by record, each committed on
    /// its own, and a record that alone writes more fails by the error policy.
    pub max_batch_state_mb: u64,
    /// Largest page one `scan` returns, in key and value bytes (MiB); the rest comes
    /// with the continuation.
    pub max_scan_page_mb: u64,
    /// Output one call may emit (MiB).
    pub max_output_mb: u64,
    /// Stores one operator may open in a task (each has a changelog topic).
    pub max_stores: u64,
    /// Event-time timers one call may set.
    pub max_timers_per_call: u64,
    /// Event-time timers one operator may have waiting in one task.
    pub max_pending_timers: u64,
    /// In a cluster: how many other servers keep a warm copy of each partition's state
    /// (standby replicas, as in Kafka Streams), tailing its changelog topic, so a server
    /// that takes the partition over restores only the tail.
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub num_standby_replicas: u32,
}

/// A setting with bounds: its name, how to read it, the least and most it may be, and
/// why (shown when it is out of bounds).
pub struct Bound {
    pub name: &'static str,
    pub value: fn(&Settings) -> u64,
    pub least: u64,
    pub most: u64,
    pub why: &'static str,
}

const fn bound(
    name: &'static str,
    value: fn(&Settings) -> u64,
    least: u64,
    most: u64,
    why: &'static str,
) -> Bound {
    Bound {
        name,
        value,
        least,
        most,
        why,
    }
}

/// Every bounded setting.
pub const SETTING_BOUNDS: &[Bound] = &[
    bound("batch_size", |s| s.batch_size as u64, 1, 100_000, ""),
    bound(
        "commit_interval_ms",
        |s| s.commit_interval_ms,
        1,
        600_000,
        " (10 minutes)",
    ),
    bound(
        "call_timeout_ms",
        |s| s.call_timeout_ms,
        1,
        60_000,
        " (one minute: a longer call holds a worker others need)",
    ),
    bound("memory_limit_mb", |s| s.memory_limit_mb, 1, 4096, ""),
    bound(
        "state_cache_mb",
        |s| s.state_cache_mb,
        0,
        STATE_CACHE_MB_MAX,
        " (it is per store and task)",
    ),
    bound(
        "probation_records",
        |s| s.probation_records,
        1,
        1_000_000_000,
        "",
    ),
    bound(
        "probation_ms",
        |s| s.probation_ms,
        0,
        86_400_000,
        " (one day)",
    ),
    bound(
        "watermark_delay_ms",
        |s| s.watermark_delay_ms.max(0) as u64,
        0,
        MAX_DELAY_MS,
        " (30 days)",
    ),
    bound(
        "max_value_mb",
        |s| s.max_value_mb,
        1,
        100,
        " (one host call may copy at most 128 MiB from an operator)",
    ),
    bound("max_batch_state_mb", |s| s.max_batch_state_mb, 1, 4096, ""),
    bound("max_scan_page_mb", |s| s.max_scan_page_mb, 1, 64, ""),
    bound("max_output_mb", |s| s.max_output_mb, 1, 4096, ""),
    bound("max_stores", |s| s.max_stores, 1, 10_000, ""),
    bound(
        "num_standby_replicas",
        |s| s.num_standby_replicas as u64,
        0,
        10,
        "",
    ),
    bound(
        "max_timers_per_call",
        |s| s.max_timers_per_call,
        1,
        10_000_000,
        "",
    ),
    bound(
        "max_pending_timers",
        |s| s.max_pending_timers,
        1,
        1_000_000_000,
        "",
    ),
];

/// The longest event-time delay or idle timeout a pipeline may set: 30 days.
pub const MAX_DELAY_MS: u64 = 30 * 86_400_000;

impl Settings {
    /// The watermark's bound on out-of-orderness, in milliseconds.
    pub fn out_of_orderness_ms(&self) -> i64 {
        match self.max_out_of_orderness {
            Some(d) => i64::try_from(d.0.as_millis()).unwrap_or(i64::MAX),
            None => self.watermark_delay_ms,
        }
    }
}

/// Whether a count is at its default (0), which the stored record leaves out so an
/// older Eddy still reads it.
fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

/// Whether a flag is on (its default, which the stored record leaves out so an older
/// Eddy still reads it).
fn is_true(b: &bool) -> bool {
    *b
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            batch_size: 512,
            commit_interval_ms: 100,
            commit_when_caught_up: true,
            on_error: OnError::Fail,
            max_out_of_orderness: None,
            watermark_delay_ms: 0,
            late_events: LateEvents::Process,
            idle_timeout: None,
            call_timeout_ms: 10_000,
            memory_limit_mb: 256,
            state_cache_mb: 32,
            probation_records: 1000,
            probation_ms: 5000,
            probation_timeout: None,
            on_probation_timeout: None,
            probation_max_error_rate: None,
            exactly_once: true,
            max_value_mb: 16,
            max_batch_state_mb: 64,
            max_scan_page_mb: 4,
            max_output_mb: 64,
            max_stores: 100,
            max_timers_per_call: 100_000,
            max_pending_timers: 10_000_000,
            num_standby_replicas: 0,
        }
    }
}

impl Settings {
    /// Checks the ranges the schema cannot.
    pub fn validate(&self) -> Result<(), SpecError> {
        let s = self;
        if s.probation_records == 0 {
            return Err(SpecError::Invalid(
                "settings.probation_records must be at least 1 (a probation that needs no records proves nothing)".into(),
            ));
        }
        if s.probation_max_error_rate
            .is_some_and(|r| !(0.0..=1.0).contains(&r.0))
        {
            return Err(SpecError::Invalid(
                "settings.probation_max_error_rate must be from 0 to 1 (a share of the records)"
                    .into(),
            ));
        }
        if s.call_timeout_ms == 0 {
            return Err(SpecError::Invalid(
                "settings.call_timeout_ms must be above 0".into(),
            ));
        }
        for b in SETTING_BOUNDS {
            let value = (b.value)(s);
            if !(b.least..=b.most).contains(&value) {
                return Err(SpecError::Invalid(format!(
                    "settings.{} = {value} must be {} to {}{}",
                    b.name, b.least, b.most, b.why
                )));
            }
        }
        if s.watermark_delay_ms < 0 {
            return Err(SpecError::Invalid(
                "settings.watermark_delay_ms must not be negative".into(),
            ));
        }
        if s.max_out_of_orderness.is_some() && s.watermark_delay_ms != 0 {
            return Err(SpecError::Invalid(
                "settings.max_out_of_orderness and settings.watermark_delay_ms set the same bound: keep one".into(),
            ));
        }
        if s.idle_timeout.is_some_and(|t| t.0.is_zero()) {
            return Err(SpecError::Invalid(
                "settings.idle_timeout must be above 0 (leave it out to wait for input)".into(),
            ));
        }
        if let Some(t) = s.probation_timeout
            && t.0.as_millis() < u128::from(s.probation_ms)
        {
            return Err(SpecError::Invalid(format!(
                "settings.probation_timeout = {} is shorter than settings.probation_ms = {} (the least a probation lasts)",
                humantime::format_duration(t.0),
                s.probation_ms
            )));
        }
        if s.on_probation_timeout.is_some() && s.probation_timeout.is_none() {
            return Err(SpecError::Invalid(
                "settings.on_probation_timeout needs settings.probation_timeout (without it a probation waits for traffic as long as it takes)".into(),
            ));
        }
        for (name, d) in [
            ("max_out_of_orderness", s.max_out_of_orderness),
            ("idle_timeout", s.idle_timeout),
            ("probation_timeout", s.probation_timeout),
        ] {
            if d.is_some_and(|d| d.0.as_millis() > u128::from(MAX_DELAY_MS)) {
                return Err(SpecError::Invalid(format!(
                    "settings.{name} must be at most 30 days"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PipelineSpec;

    #[test]
    fn every_bounded_setting_is_refused_past_its_bounds() {
        let base = "name = \"p\"\n[[operators]]\nname = \"a\"\n[settings]\n";
        for b in SETTING_BOUNDS {
            let at_most = PipelineSpec::from_toml(&format!("{base}{} = {}", b.name, b.most));
            assert!(at_most.is_ok(), "{} = {}: {at_most:?}", b.name, b.most);
            let over = PipelineSpec::from_toml(&format!("{base}{} = {}", b.name, b.most + 1))
                .unwrap_err()
                .to_string();
            assert!(
                over.contains(&format!("settings.{} = {} must be", b.name, b.most + 1)),
                "{over}"
            );
        }
        for (setting, says) in [
            ("call_timeout_ms = 300000", "must be 1 to 60000"),
            ("max_out_of_orderness = \"31d\"", "at most 30 days"),
            ("idle_timeout = \"40days\"", "at most 30 days"),
        ] {
            let e = PipelineSpec::from_toml(&format!("{base}{setting}"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{setting}: {e}");
        }
    }
}
