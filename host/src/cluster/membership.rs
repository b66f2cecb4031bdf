//! A server's membership in a shared pipeline's assignment group: Kafka's group
//! coordinator hands each member a share of the source partitions, and moves them when a
//! member joins, leaves or dies. The member consumer only listens for assignments (its
//! partitions are paused); the tasks read their partitions with their own consumers.
//! The group rebalances incrementally (cooperative-sticky): a member that joins or
//! leaves moves only the partitions that must move, and every other partition's task
//! keeps running through the rebalance.

use crate::kafka::{Connection, KafkaError};
use rdkafka::TopicPartitionList;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long the group waits for a silent member before it moves its partitions.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(6);

/// What a server does when the group gives or takes partitions: each call names only
/// the partitions that change hands (never an empty list). Both run on the membership's
/// thread, inside the rebalance: a revocation returns once the tasks committed and
/// stopped, so the next owner starts from their last commit.
pub trait AssignmentHandler: Send + Sync + 'static {
    fn assigned(&self, partitions: Vec<u32>);
    fn revoked(&self, partitions: Vec<u32>);
}

struct MemberContext {
    handler: Arc<dyn AssignmentHandler>,
    leaving: Arc<AtomicBool>,
}

fn partitions(tpl: &TopicPartitionList) -> Vec<u32> {
    let mut out: Vec<u32> = tpl
        .elements()
        .iter()
        .map(|e| e.partition() as u32)
        .collect();
    out.sort_unstable();
    out
}

impl ClientContext for MemberContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        crate::kafka::Quiet.log(level, fac, message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        crate::kafka::Quiet.error(error, reason);
    }
}

impl ConsumerContext for MemberContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // Leaving: whoever made us leave stops the tasks itself.
        if let Rebalance::Revoke(tpl) = rebalance
            && tpl.count() > 0
            && !self.leaving.load(Ordering::Acquire)
        {
            self.handler.revoked(partitions(tpl));
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance
            && tpl.count() > 0
        {
            // This consumer only holds the assignment; the tasks fetch the records.
            if let Err(e) = consumer.pause(tpl) {
                tracing::warn!("cannot pause the assignment consumer: {e}");
            }
            if !self.leaving.load(Ordering::Acquire) {
                self.handler.assigned(partitions(tpl));
            }
        }
    }
}

/// Membership in one assignment group, held by a thread that polls for rebalances.
pub struct Membership {
    leaving: Arc<AtomicBool>,
}

impl Membership {
    /// Joins `group` for `topic`'s partitions.
    pub fn join(
        conn: &Connection,
        group: &str,
        topic: &str,
        handler: Arc<dyn AssignmentHandler>,
    ) -> Result<Self, KafkaError> {
        let leaving = Arc::new(AtomicBool::new(false));
        let context = MemberContext {
            handler,
            leaving: Arc::clone(&leaving),
        };
        let consumer: BaseConsumer<MemberContext> = conn
            .config(&[
                ("group.id", group),
                ("enable.auto.commit", "false"),
                ("enable.partition.eof", "false"),
                ("auto.offset.reset", "latest"),
                ("partition.assignment.strategy", "cooperative-sticky"),
                // A dead server's partitions move after this long.
                (
                    "session.timeout.ms",
                    &SESSION_TIMEOUT.as_millis().to_string(),
                ),
                ("heartbeat.interval.ms", "1000"),
            ])
            .create_with_context(context)
            .map_err(|e| conn.error(e))?;
        consumer
            .subscribe(&[topic])
            .map_err(|e| conn.error(format!("cannot join group {group:?}: {e}")))?;
        let stop = Arc::clone(&leaving);
        let group = group.to_string();
        std::thread::Builder::new()
            .name(format!("eddy-member-{topic}"))
            .spawn(move || {
                // A refusal to join (say, members of an older version with another
                // assignor in the group) is said once, not at every poll.
                let mut last = String::new();
                while !stop.load(Ordering::Acquire) {
                    if let Some(Err(e)) = consumer.poll(Duration::from_millis(100)) {
                        let text = e.to_string();
                        if text != last {
                            tracing::warn!(%group, "assignment consumer: {text}");
                            last = text;
                        }
                    }
                }
                // Dropping the consumer leaves the group, so the others rebalance now
                // rather than after the session timeout.
            })
            .map_err(|e| conn.error(format!("cannot start a thread: {e}")))?;
        Ok(Membership { leaving })
    }

    /// Leaves the group (the thread ends on its own; no callbacks run from now on).
    pub fn leave(&self) {
        self.leaving.store(true, Ordering::Release);
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.leave();
    }
}
