//! The narrow handle between the control plane and a running task: typed commands in
//! (each with its own reply), status out. Sending a command wakes the workers.

use super::Probation;
use super::shadow::{ShadowCounts, ShadowPlan};
use super::swap::{SwapPlan, SwapReport};
use crate::log::Signal;
use crate::model::UpgradeResult;
use crate::state::TaskId;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    Running,
    /// Committed and waiting (for a savepoint or an upgrade to be taken).
    Paused,
    Stopped,
    Failed,
    /// Runs on another server of the cluster (`server` names it); ask that one for its
    /// figures.
    Remote,
    /// Moving to this server: the task restores its state and position before it runs.
    Restoring,
    /// Moving: on this server, the task commits and stops (the group took its
    /// partition); elsewhere, no server says it runs the partition yet.
    Moving,
    /// Runs on another server of the cluster that has not said anything of its tasks
    /// for a while (`report_age_ms`): it may be gone; the group moves its partitions
    /// once it misses its session timeout.
    Silent,
}

/// Where a task sends its answer to one command.
pub type Reply<T> = Sender<T>;

/// What the control plane can ask of a running task; the task carries it out between
/// two batches.
pub enum Command {
    /// Commit, then process nothing until `Resume`; the reply says when (and whether the
    /// commit worked).
    Pause(Reply<Result<(), String>>),
    Resume,
    /// Swap the plan's operator to its new version (migrating its state when the format
    /// changes) and hold the task's commits on probation.
    Upgrade(Arc<SwapPlan>, Reply<Result<SwapReport, String>>),
    /// The upgrade passed: end the probation, so the held work commits (a task still on
    /// the old version swaps first).
    Accept(Arc<SwapPlan>, Reply<Result<SwapReport, String>>),
    /// The upgrade failed: drop the held work and go back to the old version.
    RollBack(Arc<SwapPlan>, Reply<Result<SwapReport, String>>),
    /// Commit, then start a new shadow of the plan's version beside the live operator,
    /// on a copy of its state.
    Shadow(Arc<ShadowPlan>, Reply<Result<(), String>>),
    /// Commit, then end the shadow and delete its state (its report stays).
    EndShadow(Reply<Result<(), String>>),
}

impl Command {
    /// The command that brings a task to an upgrade's state in the pipeline record (a
    /// cluster's servers follow the record this way).
    pub fn converge(
        plan: Arc<SwapPlan>,
        verdict: UpgradeResult,
    ) -> impl FnOnce(Reply<Result<SwapReport, String>>) -> Command {
        move |reply| match verdict {
            UpgradeResult::Probation => Command::Upgrade(plan, reply),
            UpgradeResult::Succeeded
            | UpgradeResult::SucceededUnexercised
            | UpgradeResult::Canary => Command::Accept(plan, reply),
            UpgradeResult::RolledBack => Command::RollBack(plan, reply),
        }
    }
}

/// What a task reports about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TaskStatus {
    /// The pipeline stage (0 unless the pipeline repartitions).
    pub stage: u32,
    pub partition: u32,
    pub state: TaskState,
    /// The next source offset after the last commit.
    pub committed_offset: u64,
    /// The source partition's end offset when last looked at.
    pub end_offset: u64,
    /// Records in the source partition not committed yet.
    pub lag: u64,
    pub events_in: u64,
    pub events_out: u64,
    /// Records (or timers) an operator failed on.
    pub errors: u64,
    pub last_error: Option<String>,
    /// Why the task failed, when it did.
    pub failure: Option<String>,
    /// Set while an upgraded operator is on probation in this task.
    pub probation: Option<Probation>,
    /// The task's event-time watermark (milliseconds); `null` before the first event.
    pub watermark: Option<i64>,
    /// Committed event-time timers waiting to fire.
    pub timers: u64,
    /// Events that arrived below the watermark and were dropped or set aside.
    pub late: u64,
    /// The partition has had no input for the pipeline's `idle_timeout`: its watermark
    /// follows the stage's active tasks.
    pub idle: bool,
    /// Set while the task waits before its next batch because records ran to their
    /// call deadline (milliseconds left).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_ms: Option<u64>,
    /// Times the task committed early and waited before a batch because the server's
    /// memory budget was short (see `eddy serve --memory-budget`).
    #[serde(skip_serializing_if = "is_zero")]
    pub memory_waits: u64,
    /// In a cluster: the server that runs the task.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The canary version (`operator@version`) the task runs, when a canary covers it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<String>,
    /// While a shadow runs in the task: how it compared so far (committed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowCounts>,
    /// Why the task's shadow stopped on its own, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow_failure: Option<String>,
    /// A task of a pipeline with several inputs: each of its sources (input
    /// partitions); the task's offsets and lag above are their sums.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceStatus>,
    /// While the task restores its state from Kafka (state `restoring`): changelog
    /// offsets covered so far, and to cover.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreStatus>,
    /// A task on another server (`remote`, `silent`): how long ago that server last
    /// told where the task stands (the offsets above are as of then).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report_age_ms: Option<u64>,
    /// A task on another server of which this server keeps a warm copy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub standby: Option<StandbyStatus>,
}

/// How far a task's restore from its changelog topics is, in changelog offsets
/// (records, counting those compaction has removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RestoreStatus {
    pub restored: u64,
    /// Known once the end of every changelog of the task is.
    pub to_restore: u64,
}

/// This server's warm copy (standby replica) of a task another server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StandbyStatus {
    /// The source offset the copy's state reflects.
    pub offset: u64,
    /// Source records the copy is behind the task's last reported commit.
    pub lag: u64,
    /// When the copy last caught up with the task's changelogs (ms since the epoch).
    pub caught_up_ms: i64,
}

/// Where a task with several sources stands in one of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SourceStatus {
    /// The input's name in the spec.
    pub input: String,
    pub topic: String,
    pub partition: u32,
    pub committed_offset: u64,
    pub end_offset: u64,
    pub lag: u64,
    /// The source's own watermark (the task's is the lowest of its stream inputs');
    /// `null` before its first event.
    pub watermark: Option<i64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl TaskStatus {
    /// A task at a position, with no counters yet.
    pub fn at(stage: u32, partition: u32, state: TaskState, committed: u64, end: u64) -> Self {
        TaskStatus {
            stage,
            partition,
            state,
            committed_offset: committed,
            end_offset: end,
            lag: end.saturating_sub(committed),
            events_in: 0,
            events_out: 0,
            errors: 0,
            last_error: None,
            failure: None,
            probation: None,
            watermark: None,
            timers: 0,
            late: 0,
            idle: false,
            backoff_ms: None,
            memory_waits: 0,
            server: None,
            canary: None,
            shadow: None,
            shadow_failure: None,
            sources: Vec::new(),
            restore: None,
            report_age_ms: None,
            standby: None,
        }
    }
}

/// Shared between a task (on a worker thread) and the controller.
pub struct TaskHandle {
    pub id: TaskId,
    /// Set by a stop request; it also interrupts a call the task is in.
    stop: Arc<AtomicBool>,
    status: Mutex<TaskStatus>,
    commands: Mutex<Vec<Command>>,
    done: (Mutex<bool>, Condvar),
    /// Wakes the workers, so a command or a stop is seen at once.
    waker: Arc<Signal>,
}

impl TaskHandle {
    pub fn new(id: TaskId, committed_offset: u64, waker: Arc<Signal>) -> Self {
        TaskHandle {
            waker,
            stop: Arc::new(AtomicBool::new(false)),
            status: Mutex::new(TaskStatus::at(
                id.stage,
                id.partition,
                TaskState::Running,
                committed_offset,
                committed_offset,
            )),
            commands: Mutex::new(Vec::new()),
            done: (Mutex::new(false), Condvar::new()),
            id,
        }
    }

    /// Queues a command for the task's next step and wakes the workers. A task that has
    /// ended drops it (and with it any reply channel, so nobody waits for an answer).
    pub fn send(&self, command: Command) {
        // The commands lock is held across the check, as `finish` holds it: a command
        // is either queued before the task ends (and dropped then) or not at all.
        let mut commands = self.commands.lock().expect("commands lock");
        if self.is_finished() {
            return;
        }
        commands.push(command);
        drop(commands);
        self.waker.notify();
    }

    /// Sends the command `make` builds around a reply channel; the receiver gets the
    /// task's answer (or disconnects when the task ends first).
    pub fn request<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Receiver<T> {
        let (tx, rx) = mpsc::channel();
        self.send(make(tx));
        rx
    }

    /// Whether commands wait for the task.
    pub(crate) fn has_commands(&self) -> bool {
        !self.commands.lock().expect("commands lock").is_empty()
    }

    pub(crate) fn take_commands(&self) -> Vec<Command> {
        std::mem::take(&mut *self.commands.lock().expect("commands lock"))
    }

    /// Asks the task to commit what it has and stop at its next batch boundary.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.waker.notify();
    }

    /// The flag a stop request sets, for the task's operators to interrupt their calls.
    pub(crate) fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    pub fn status(&self) -> TaskStatus {
        self.status.lock().expect("status lock").clone()
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut TaskStatus)) {
        f(&mut self.status.lock().expect("status lock"))
    }

    /// The task has ended (stopped or failed): commands still queued are dropped.
    pub(crate) fn finish(&self) {
        let mut commands = self.commands.lock().expect("commands lock");
        let (lock, cond) = &self.done;
        *lock.lock().expect("done lock") = true;
        cond.notify_all();
        commands.clear();
    }

    pub fn is_finished(&self) -> bool {
        *self.done.0.lock().expect("done lock")
    }

    /// Waits until the task has ended; `false` on timeout.
    pub fn wait(&self, timeout: Duration) -> bool {
        let (lock, cond) = &self.done;
        let guard = lock.lock().expect("done lock");
        let (guard, _) = cond
            .wait_timeout_while(guard, timeout, |done| !*done)
            .expect("done lock");
        *guard
    }
}

/// Sends every task the command `make` builds and collects their answers in order; a
/// task that does not answer within `timeout` (or ended) counts as an error.
pub fn ask_all<T>(
    tasks: &[Arc<TaskHandle>],
    make: impl Fn(Reply<Result<T, String>>) -> Command,
    timeout: Duration,
) -> Vec<Result<T, String>> {
    let replies: Vec<_> = tasks.iter().map(|t| t.request(&make)).collect();
    replies
        .into_iter()
        .map(|rx| {
            rx.recv_timeout(timeout)
                .unwrap_or_else(|_| Err("the task did not answer".into()))
        })
        .collect()
}
