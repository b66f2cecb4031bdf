//! What a shadow run found: counts of how the two versions' outputs compared per input
//! record (or timer), and a bounded sample of the differences with their inputs.

use crate::record::Record;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Differences kept per task, and outputs shown per version in one.
const SAMPLE_PER_TASK: usize = 10;
const OUTPUTS_SHOWN: usize = 5;
/// Bytes of a key or value shown.
const BYTES_SHOWN: usize = 512;

/// How the versions compared, over input records and timers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ShadowCounts {
    /// Inputs (records and fired timers) both versions were given.
    pub compared: u64,
    /// Both emitted the same records (in the same order), or both nothing.
    pub same: u64,
    /// Both emitted something, not the same.
    pub different: u64,
    /// Only the live version emitted something.
    pub only_live: u64,
    /// Only the shadow emitted something.
    pub only_shadow: u64,
    /// Inputs either version failed on (each also counts below).
    pub errors: u64,
    pub live_errors: u64,
    pub shadow_errors: u64,
    /// Records the shadow emitted (to `<pipeline>.shadow`).
    pub shadow_outputs: u64,
}

impl ShadowCounts {
    pub fn add(&mut self, o: &ShadowCounts) {
        self.compared += o.compared;
        self.same += o.same;
        self.different += o.different;
        self.only_live += o.only_live;
        self.only_shadow += o.only_shadow;
        self.errors += o.errors;
        self.live_errors += o.live_errors;
        self.shadow_errors += o.shadow_errors;
        self.shadow_outputs += o.shadow_outputs;
    }
}

/// How one input compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Same,
    Different,
    OnlyLive,
    OnlyShadow,
    Error,
}

/// A record as a report shows it: UTF-8 text as is, other bytes as `base64:…`, both cut
/// to 512 bytes (`…` marks a cut).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Shown {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub value: String,
    pub timestamp: i64,
    /// The side-output port, for a side output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
}

impl Shown {
    pub fn of(r: &Record, port: Option<&str>) -> Self {
        Shown {
            key: r.key.as_deref().map(text),
            value: text(&r.value),
            timestamp: r.timestamp,
            port: port.map(str::to_string),
        }
    }
}

fn text(bytes: &[u8]) -> String {
    let cut = bytes.len() > BYTES_SHOWN;
    let shown = &bytes[..bytes.len().min(BYTES_SHOWN)];
    let mut s = match std::str::from_utf8(shown) {
        Ok(t) => t.to_string(),
        // A cut may split a character: show what is valid up to it.
        Err(e) if cut && e.error_len().is_none() => {
            String::from_utf8_lossy(&shown[..e.valid_up_to()]).into_owned()
        }
        Err(_) => format!(
            "base64:{}",
            base64::engine::general_purpose::STANDARD.encode(shown)
        ),
    };
    if cut {
        s.push('…');
    }
    s
}

/// One input the versions disagreed on (or failed on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Difference {
    pub partition: u32,
    pub outcome: Outcome,
    /// The input record's source offset, when the operator is the first of its stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The input record (absent for a timer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Shown>,
    /// The timer, for a timer's outputs: `key` (as shown) and time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timer: Option<Shown>,
    /// Up to 5 records each version emitted.
    pub live: Vec<Shown>,
    pub shadow: Vec<Shown>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_error: Option<String>,
}

/// One task's report, committed with its work.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskReport {
    /// Which run (its `started_ms`).
    #[serde(default)]
    pub run: i64,
    /// The task's position (the next source offset) as of the commit that wrote it.
    #[serde(default)]
    pub offset: u64,
    pub counts: ShadowCounts,
    pub sample: Vec<Difference>,
    /// Why the shadow stopped in this task, when it did on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// What one version did with one input.
pub(super) enum Handled<'a> {
    Emitted(Vec<(Record, Option<String>)>),
    Failed(&'a str),
}

/// One compared input: what it was, and what each version did with it.
pub(super) struct Compared<'a> {
    pub partition: u32,
    pub offset: Option<u64>,
    pub input: Option<Record>,
    pub timer: Option<(Vec<u8>, i64)>,
    pub live: Handled<'a>,
    pub shadow: Handled<'a>,
}

impl TaskReport {
    /// Counts one input; a difference joins the sample while it has room.
    pub(super) fn count(&mut self, c: Compared<'_>) {
        use Handled::*;
        let n = &mut self.counts;
        n.compared += 1;
        let outcome = match (&c.live, &c.shadow) {
            (Failed(_), Failed(_)) => {
                n.live_errors += 1;
                n.shadow_errors += 1;
                Outcome::Error
            }
            (Failed(_), _) => {
                n.live_errors += 1;
                Outcome::Error
            }
            (_, Failed(_)) => {
                n.shadow_errors += 1;
                Outcome::Error
            }
            (Emitted(l), Emitted(s)) if l == s => Outcome::Same,
            (Emitted(l), Emitted(s)) if l.is_empty() || s.is_empty() => {
                if s.is_empty() {
                    Outcome::OnlyLive
                } else {
                    Outcome::OnlyShadow
                }
            }
            _ => Outcome::Different,
        };
        match outcome {
            Outcome::Same => n.same += 1,
            Outcome::Different => n.different += 1,
            Outcome::OnlyLive => n.only_live += 1,
            Outcome::OnlyShadow => n.only_shadow += 1,
            Outcome::Error => n.errors += 1,
        }
        if outcome == Outcome::Same || self.sample.len() >= SAMPLE_PER_TASK {
            return;
        }
        let shown = |r: &Handled<'_>| match r {
            Emitted(v) => v
                .iter()
                .take(OUTPUTS_SHOWN)
                .map(|(r, port)| Shown::of(r, port.as_deref()))
                .collect(),
            Failed(_) => Vec::new(),
        };
        let error = |r: &Handled<'_>| match r {
            Failed(e) => Some(e.to_string()),
            Emitted(_) => None,
        };
        self.sample.push(Difference {
            partition: c.partition,
            outcome,
            offset: c.offset,
            input: c.input.as_ref().map(|r| Shown::of(r, None)),
            timer: c.timer.as_ref().map(|(key, at)| Shown {
                key: Some(text(key)),
                value: String::new(),
                timestamp: *at,
                port: None,
            }),
            live: shown(&c.live),
            shadow: shown(&c.shadow),
            live_error: error(&c.live),
            shadow_error: error(&c.shadow),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(v: &str) -> (Record, Option<String>) {
        (
            Record {
                key: None,
                value: v.as_bytes().to_vec(),
                timestamp: 0,
                headers: Vec::new(),
            },
            None,
        )
    }

    fn compared<'a>(live: Handled<'a>, shadow: Handled<'a>) -> Compared<'a> {
        Compared {
            partition: 1,
            offset: Some(7),
            input: Some(rec("in").0),
            timer: None,
            live,
            shadow,
        }
    }

    #[test]
    fn each_input_counts_once_in_its_outcome_and_the_sample_stays_bounded() {
        use Handled::*;
        let mut r = TaskReport::default();
        r.count(compared(Emitted(vec![rec("a")]), Emitted(vec![rec("a")])));
        r.count(compared(Emitted(vec![]), Emitted(vec![])));
        r.count(compared(Emitted(vec![rec("a")]), Emitted(vec![rec("b")])));
        r.count(compared(Emitted(vec![rec("a")]), Emitted(vec![])));
        r.count(compared(Emitted(vec![]), Emitted(vec![rec("b")])));
        r.count(compared(Failed("bad"), Emitted(vec![rec("b")])));
        r.count(compared(Failed("bad"), Failed("worse")));
        let c = &r.counts;
        assert_eq!(
            (
                c.compared,
                c.same,
                c.different,
                c.only_live,
                c.only_shadow,
                c.errors
            ),
            (7, 2, 1, 1, 1, 2)
        );
        assert_eq!((c.live_errors, c.shadow_errors), (2, 1));
        let outcomes: Vec<Outcome> = r.sample.iter().map(|d| d.outcome).collect();
        assert_eq!(
            outcomes,
            [
                Outcome::Different,
                Outcome::OnlyLive,
                Outcome::OnlyShadow,
                Outcome::Error,
                Outcome::Error
            ]
        );
        assert_eq!(r.sample[3].live_error.as_deref(), Some("bad"));
        assert_eq!(r.sample[3].shadow[0].value, "b");
        for _ in 0..100 {
            r.count(compared(Emitted(vec![rec("a")]), Emitted(vec![rec("b")])));
        }
        assert_eq!(r.sample.len(), SAMPLE_PER_TASK);
        assert_eq!(r.counts.different, 101);
    }

    #[test]
    fn bytes_show_as_text_or_base64_and_are_cut() {
        assert_eq!(text(b"plain"), "plain");
        assert_eq!(text(&[0xff, 0x00]), "base64:/wA=");
        let long = "é".repeat(BYTES_SHOWN);
        let shown = text(long.as_bytes());
        assert!(
            shown.ends_with('…') && shown.len() <= BYTES_SHOWN + 3,
            "{shown}"
        );
    }
}
