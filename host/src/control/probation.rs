//! When a probation ends and how: the rule a single server's watcher and a cluster's
//! judge share.
//!
//! A new version passes once it handled `probation_records` records over all its tasks
//! and `probation_ms` passed, without a trap, a `fail`-policy error, or more rejected
//! records than `probation_max_error_rate` (or the old version's rate) allows. Time
//! alone never passes it: without traffic it waits, until `probation_timeout` (when set)
//! rolls it back or accepts it unexercised. A user may end it at any time.

use crate::model::{OnProbationTimeout, Settings, UpgradeDecision, UpgradeResult};
use crate::task::ProbationTotals;
use std::time::Duration;

/// How a probation ended.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Outcome {
    /// The new version stays: `Succeeded`, or `SucceededUnexercised` with why.
    Accept {
        result: UpgradeResult,
        note: Option<String>,
    },
    /// The old version comes back, for this reason.
    RollBack(String),
}

/// Where a probation stands.
pub(super) struct Progress<'a> {
    pub totals: &'a ProbationTotals,
    pub elapsed: Duration,
    /// Every server running the pipeline reported (always, on a single server).
    pub reports_in: bool,
    pub decision: Option<UpgradeDecision>,
}

/// The probation's outcome, once there is one.
pub(super) fn outcome(settings: &Settings, p: &Progress) -> Option<Outcome> {
    let t = p.totals;
    let records = format!(
        "{} of {} records (settings.probation_records)",
        t.processed, settings.probation_records
    );
    let exercised = t.processed >= settings.probation_records;
    match p.decision {
        Some(UpgradeDecision::RollBack) => {
            return Some(Outcome::RollBack(format!(
                "rolled back by request after {records}"
            )));
        }
        Some(UpgradeDecision::Promote) => {
            return Some(Outcome::Accept {
                result: if exercised {
                    UpgradeResult::Succeeded
                } else {
                    UpgradeResult::SucceededUnexercised
                },
                note: Some(format!("promoted by request after {records}")),
            });
        }
        None => {}
    }
    let done =
        exercised && p.elapsed >= Duration::from_millis(settings.probation_ms) && p.reports_in;
    let max_rate = settings.probation_max_error_rate.map(|r| r.0);
    if let Some(reason) = t.rejected(max_rate, done) {
        return Some(Outcome::RollBack(reason));
    }
    if done {
        return Some(Outcome::Accept {
            result: UpgradeResult::Succeeded,
            note: None,
        });
    }
    let timeout = settings.probation_timeout?.0;
    if p.elapsed < timeout {
        return None;
    }
    let after = humantime::format_duration(Duration::from_secs(timeout.as_secs()));
    match settings.on_probation_timeout.unwrap_or_default() {
        OnProbationTimeout::RollBack => Some(Outcome::RollBack(format!(
            "the probation timed out after {after} (settings.probation_timeout) with {records}: too little traffic to judge the new version by"
        ))),
        OnProbationTimeout::Accept => {
            // The records it did handle are judged all the same.
            if let Some(reason) = t.rejected(max_rate, true) {
                return Some(Outcome::RollBack(reason));
            }
            Some(Outcome::Accept {
                result: UpgradeResult::SucceededUnexercised,
                note: Some(format!(
                    "accepted when the probation timed out after {after} with {records} (settings.on_probation_timeout = \"accept\")"
                )),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DurationText;

    fn judge(
        settings: &Settings,
        processed: u64,
        errors: u64,
        secs: u64,
        decision: Option<UpgradeDecision>,
    ) -> Option<Outcome> {
        let totals = ProbationTotals {
            processed,
            errors,
            first_error: (errors > 0).then(|| "partition 0, offset 7: bad".to_string()),
            baseline_errors: 0,
            baseline_records: 100,
        };
        outcome(
            settings,
            &Progress {
                totals: &totals,
                elapsed: Duration::from_secs(secs),
                reports_in: true,
                decision,
            },
        )
    }

    const PASSED: Outcome = Outcome::Accept {
        result: UpgradeResult::Succeeded,
        note: None,
    };

    #[test]
    fn a_probation_needs_its_records_and_its_time() {
        let s = Settings::default(); // 1000 records, 5 s, no timeout
        assert_eq!(
            judge(&s, 0, 0, 86_400, None),
            None,
            "time alone never passes"
        );
        assert_eq!(judge(&s, 999, 0, 60, None), None);
        assert_eq!(judge(&s, 5000, 0, 4, None), None, "records alone neither");
        assert_eq!(judge(&s, 1000, 0, 5, None), Some(PASSED));
    }

    #[test]
    fn a_timeout_rolls_back_or_accepts_unexercised() {
        let mut s = Settings {
            probation_timeout: Some(DurationText(Duration::from_secs(600))),
            ..Settings::default()
        };
        assert_eq!(judge(&s, 3, 0, 599, None), None);
        let Some(Outcome::RollBack(why)) = judge(&s, 3, 0, 600, None) else {
            panic!("rolls back by default")
        };
        assert!(
            why.contains("timed out after 10m") && why.contains("3 of 1000"),
            "{why}"
        );
        s.on_probation_timeout = Some(OnProbationTimeout::Accept);
        let Some(Outcome::Accept { result, note }) = judge(&s, 3, 0, 600, None) else {
            panic!("accepts")
        };
        assert_eq!(result, UpgradeResult::SucceededUnexercised);
        assert!(note.unwrap().contains("3 of 1000"));
        // Rejected records still count when a timeout accepts.
        s.probation_max_error_rate = Some(crate::model::settings::Rate(0.1));
        let Some(Outcome::RollBack(why)) = judge(&s, 3, 1, 600, None) else {
            panic!("1 of 3 rejected is over 10%")
        };
        assert!(why.contains("offset 7"), "{why}");
    }

    #[test]
    fn a_request_ends_a_probation_at_once() {
        let s = Settings::default();
        let Some(Outcome::RollBack(why)) = judge(&s, 10, 0, 1, Some(UpgradeDecision::RollBack))
        else {
            panic!("rolls back")
        };
        assert!(why.contains("by request after 10 of 1000"), "{why}");
        for (processed, result) in [
            (10, UpgradeResult::SucceededUnexercised),
            (1000, UpgradeResult::Succeeded),
        ] {
            let Some(Outcome::Accept { result: r, .. }) =
                judge(&s, processed, 0, 1, Some(UpgradeDecision::Promote))
            else {
                panic!("promotes")
            };
            assert_eq!(r, result);
        }
    }

    #[test]
    fn a_rejected_record_where_none_may_be_rolls_back_before_the_records() {
        let s = Settings::default();
        let Some(Outcome::RollBack(why)) = judge(&s, 1, 1, 0, None) else {
            panic!("the old version rejected none")
        };
        assert!(why.contains("partition 0, offset 7: bad"), "{why}");
    }
}
