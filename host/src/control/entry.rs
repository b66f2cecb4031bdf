//! What the controller keeps per pipeline: its record, the handles of the tasks it runs
//! here, who is working on it, and (shared pipelines) its part in the cluster.

use super::error::ControlError;
use crate::cluster::Membership;
use crate::model::PipelineRecord;
use crate::task::TaskHandle;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What a pipeline is busy with while its operators start, or its tasks stop: the
/// table's lock is not held meanwhile, so status calls answer (`starting`, `stopping`).
pub(super) const STARTING: &str = "starting";
pub(super) const STOPPING: &str = "stopping";

pub(super) struct Entry {
    pub(super) record: PipelineRecord,
    /// The tasks of the current (or last) run.
    pub(super) tasks: Vec<Arc<TaskHandle>>,
    /// Set while a savepoint, restore or upgrade works on the pipeline.
    pub(super) busy: Option<&'static str>,
    /// A pipeline shared across a cluster: this server's membership in its assignment
    /// group (`tasks` then holds the partitions the group gave this server).
    pub(super) member: Option<Member>,
    /// While recovering: when to try again.
    pub(super) retry: Option<Retry>,
    /// Partitions the group just gave this server whose tasks start (and restore their
    /// state) outside the table's lock: status calls answer meanwhile, changes wait.
    pub(super) arriving: Vec<u32>,
    /// Tasks of partitions the group took from this server, committing and stopping
    /// outside the table's lock: the status shows them `moving` meanwhile.
    pub(super) leaving: Vec<Arc<TaskHandle>>,
}

impl Entry {
    /// A pipeline that runs no tasks (yet).
    pub(super) fn idle(record: PipelineRecord) -> Self {
        Entry {
            record,
            tasks: Vec::new(),
            busy: None,
            member: None,
            retry: None,
            arriving: Vec::new(),
            leaving: Vec::new(),
        }
    }

    pub(super) fn name(&self) -> &str {
        &self.record.spec.name
    }

    /// Refuses to change a pipeline a savepoint, restore or upgrade is working on.
    pub(super) fn check_idle(&self) -> Result<(), ControlError> {
        match self.busy {
            Some(with) => Err(ControlError::Busy {
                pipeline: self.name().to_string(),
                with,
            }),
            None => Ok(()),
        }
    }

    /// The partitions this server runs (each once, whatever its stages), in task order.
    pub(super) fn partitions(&self) -> Vec<u32> {
        let mut out: Vec<u32> = Vec::new();
        for t in &self.tasks {
            if !out.contains(&t.id.partition) {
                out.push(t.id.partition);
            }
        }
        out
    }
}

/// This server's part in a shared pipeline. The membership lasts as long as the pipeline
/// exists here (or the server runs), stopped or not: a stop and start then need no
/// rebalance, and the group never empties and refills (which leaves some brokers, Tansu
/// among them, electing a departed member as the group's leader, so no assignment ever
/// comes).
pub(super) struct Member {
    pub(super) membership: Membership,
    /// Cleared when this server leaves the group: assignments arriving late are ignored.
    pub(super) active: Arc<AtomicBool>,
    /// The source's partition count when the membership began.
    pub(super) partitions: u32,
    /// The partitions the group gives this server now, whether the pipeline runs or not.
    pub(super) assigned: Arc<Mutex<Vec<u32>>>,
}

impl Member {
    pub(super) fn leave(&self) {
        self.active.store(false, Ordering::Release);
        self.membership.leave();
    }

    pub(super) fn assigned(&self) -> Vec<u32> {
        self.assigned.lock().expect("assignment lock").clone()
    }
}

/// When a recovering pipeline tries next, and how many attempts it made.
pub(super) struct Retry {
    pub(super) next: Instant,
    pub(super) attempt: u32,
}
