//! Pipelines that stopped because Kafka could not be reached (brokers down, a topic
//! missing) try again by themselves, with a growing delay, until they run or a user
//! stops them; anything else fails the pipeline for a user to look at.

use super::controller::Controller;
use super::entry::{Entry, Retry};
use crate::model::PipelineState;
use std::time::{Duration, Instant};

/// The longest wait between two attempts.
const MAX_DELAY: Duration = Duration::from_secs(30);

/// Whether `reason` is Kafka being out of reach rather than a fault of the pipeline:
/// the Kafka errors render as `Kafka (<brokers>): ...` and `Kafka topic ... does not exist`.
fn kafka_trouble(reason: &str) -> bool {
    reason.contains("Kafka (") || reason.contains("Kafka topic ")
}

impl Controller {
    /// Whether a pipeline that could not run for `reason` recovers by itself: it uses
    /// Kafka and Kafka was out of reach (or a restore waits for an undecided transaction).
    pub(super) fn recovers(spec: &crate::model::PipelineSpec, reason: &str) -> bool {
        let uses_kafka = spec.sink.iter().any(|t| t.kafka.is_some())
            || spec.input_specs().iter().any(|i| i.topic.kafka.is_some());
        uses_kafka && kafka_trouble(reason)
    }

    /// Marks a pipeline that could not run: recovering (retried by itself) when Kafka
    /// was out of reach, failed otherwise.
    pub(super) fn fail_or_recover(&self, entry: &mut Entry, reason: String) {
        let (state, reason) = if Self::recovers(&entry.record.spec, &reason) {
            let attempt = entry.retry.as_ref().map_or(0, |r| r.attempt) + 1;
            let delay = Duration::from_secs(1 << (attempt - 1).min(5)).min(MAX_DELAY);
            entry.retry = Some(Retry {
                next: Instant::now() + delay,
                attempt,
            });
            tracing::warn!(pipeline = %entry.record.spec.name, attempt, "cannot run until Kafka answers, retrying in {delay:?}: {reason}");
            (
                PipelineState::Recovering,
                format!(
                    "{reason} (retrying by itself: attempt {attempt} in {} s; `eddy pipeline stop` to give up)",
                    delay.as_secs()
                ),
            )
        } else {
            entry.retry = None;
            tracing::error!(pipeline = %entry.record.spec.name, "pipeline failed: {reason}");
            (PipelineState::Failed, reason)
        };
        if let Err(e) = self.store.set_state(&mut entry.record, state, Some(reason)) {
            tracing::error!("cannot record a pipeline's state: {e}");
        }
    }

    /// Tries again to run the recovering pipelines whose delay is over (outside the
    /// pipelines lock: reaching Kafka may take its request timeout).
    pub(super) fn retry_recovering(&self) {
        let (due, members): (Vec<Entry>, Vec<String>) = {
            let mut pipelines = self.table();
            let ready = |e: &Entry| {
                e.record.state == PipelineState::Recovering
                    && e.busy.is_none()
                    && e.arriving.is_empty()
                    && e.retry.as_ref().is_none_or(|r| r.next <= Instant::now())
            };
            // A shared pipeline still in its group starts what the group gave it again.
            let members = pipelines
                .values()
                .filter(|e| ready(e) && e.member.is_some())
                .map(|e| e.record.spec.name.clone())
                .collect();
            let due = pipelines
                .values_mut()
                .filter(|e| ready(e) && e.member.is_none())
                .map(|e| {
                    e.busy = Some("a recovery");
                    Entry::idle(e.record.clone())
                })
                .collect();
            (due, members)
        };
        for name in members {
            self.resume_assigned(&name);
        }
        for mut attempt in due {
            let name = attempt.record.spec.name.clone();
            let result = self.run_entry(&mut attempt);
            let mut pipelines = self.table();
            let Some(entry) = pipelines.get_mut(&name) else {
                self.halt_entry(&mut attempt);
                continue;
            };
            entry.busy = None;
            match result {
                Ok(()) => {
                    tracing::info!(pipeline = %name, "Kafka is back: the pipeline runs again");
                    // A shared pipeline may have been given partitions already.
                    entry.tasks.extend(attempt.tasks);
                    entry.member = attempt.member.take();
                    entry.record.operators = attempt.record.operators.clone();
                    entry.retry = None;
                    if let Err(e) =
                        self.store
                            .set_state(&mut entry.record, PipelineState::Running, None)
                    {
                        tracing::error!("cannot record a pipeline's state: {e}");
                    }
                }
                Err(reason) => self.fail_or_recover(entry, reason.to_string()),
            }
            drop(pipelines);
            self.refresh_gauges();
        }
    }
}
