//! Shadow runs, task side: another version of one operator runs beside the live one on
//! the same input, on its own copy of the state. Each batch goes to both; when their
//! outputs match, every record of it counts as the same, and otherwise both versions
//! handle it again record by record, so each difference is pinned to its input. The
//! live version's outputs and state are never touched by the shadow's: the shadow's
//! state, its outputs (to `<pipeline>.shadow`) and the report commit with the task's
//! own work, so a crash takes them back to the same point.

mod compare;
mod report;

pub use compare::PORT_HEADER;
pub use report::{Difference, Outcome, ShadowCounts, Shown, TaskReport};

use super::operator::OperatorTemplate;
use super::{Operator, swap::migrate};
use crate::record::Record;
use crate::record::batch::{self, EventBatch, OutputBatch};
use crate::runtime::{CallError, Interrupt, TrapKind};
use crate::state::{Commit, Db, OperatorState, StateError, TaskId, load_shadow_report};
use report::{Compared, Handled};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Traps after which a task's shadow stops: a version that traps on every record would
/// otherwise cost the live pipeline a fresh instance per record. A call that runs to its
/// deadline stops it at once.
const MAX_TRAPS: u32 = 20;
/// Timers fired per look at the shadow's due timers.
const TIMERS_PER_LOOK: usize = 1024;
/// Timers the shadow may fire in one round beyond the live version's: one that keeps
/// setting due timers from its `on-timer` would otherwise never end the round.
const EXTRA_TIMERS_MAX: usize = 1_000_000;

/// What a task needs to run a shadow of one of its operators.
#[derive(Clone)]
pub struct ShadowPlan {
    /// The stage the operator runs in, and its index within the stage's chain.
    pub stage: u32,
    pub local: usize,
    /// How to start the shadowed version (its config included).
    pub template: OperatorTemplate,
    /// Partitions of the stage (what the operator's `context` reports).
    pub partitions: u32,
    pub db: Arc<Db>,
    /// Which run (its `started_ms`): a report of another run is not resumed.
    pub run: i64,
}

/// A timer: when, and its key.
type TimerKey = (i64, Vec<u8>);
/// What a fired timer emitted, or why it failed.
type Fired = Result<OutputBatch, String>;

/// The shadow's work on the current attempt, settled when the attempt is accepted.
enum Pending {
    /// The outputs matched: the shadow's writes stand, its outputs go out.
    Same { records: u64, shadow: OutputBatch },
    /// They did not: the live version ran record by record (`live[i]` is record `i`'s
    /// output); the shadow runs the same way at acceptance.
    PerRecord {
        input: EventBatch,
        live: Vec<OutputBatch>,
    },
}

/// A shadow running in one task.
pub struct ShadowLane {
    /// The shadowed operator's index in the task's chain.
    local: usize,
    op: Box<dyn Operator>,
    partition: u32,
    report: TaskReport,
    committed: TaskReport,
    pending: Option<Pending>,
    /// The input of a record the live version failed on, for the shadow to try.
    rejected: Option<EventBatch>,
    /// Source offsets of the attempt being accepted (when the operator reads the source).
    offsets: Option<Vec<u64>>,
    /// Live timers fired by the attempt in flight, and by accepted attempts since the
    /// shadow last fired its own: `(at, key) -> outputs`.
    attempt_timers: Vec<(TimerKey, Fired)>,
    round_timers: Vec<(TimerKey, Fired)>,
    traps: u32,
    /// The live operator's watermark in the attempt in flight.
    watermark: i64,
    /// Set when the task is stopping: the shadow's timer round ends early.
    interrupt: Option<Interrupt>,
}

impl ShadowLane {
    /// Starts the plan's shadow of `live` in task `task`, whose committed position is
    /// `offset`. `fresh`: a new shadow, from a copy of the live state (migrated when the
    /// formats differ); otherwise the one the task committed goes on (or starts fresh if
    /// the task has none of this run).
    pub fn start(
        task: &TaskId,
        live: &mut dyn Operator,
        plan: &ShadowPlan,
        fresh: bool,
        offset: u64,
    ) -> Result<Self, String> {
        let db = &plan.db;
        let scope = live.state().scope().shadow();
        let saved = if fresh {
            None
        } else {
            load_shadow_report(db, task).map_err(|e| e.to_string())?
        };
        let report = match saved {
            Some(bytes) => Some(serde_json::from_slice::<TaskReport>(&bytes).map_err(|e| {
                format!("the shadow's report in the state database is unreadable: {e}")
            })?),
            None => None,
        }
        .filter(|r| r.run == plan.run);
        if let Some(r) = &report
            && r.offset != offset
        {
            // With a Kafka sink the transaction commits before the local write: a crash
            // between them leaves the shadow's state a commit behind the live state,
            // which was caught up from Kafka.
            return Err(format!(
                "the shadow's state is at offset {} and the task at {offset} (the server stopped between a Kafka transaction and its local commit): start a new shadow",
                r.offset
            ));
        }
        let copied = report.is_none();
        if copied {
            let mut copy = Commit::new(Arc::clone(db));
            copy.copy_task_state(live.state().scope(), &scope)
                .and_then(|_| copy.write())
                .map_err(|e| format!("copying the live state: {e}"))?;
        }
        let started = Self::start_on_copy(task, live, plan, report, offset);
        if started.is_err() && copied {
            // A refused start leaves no copy behind (best effort: a later start or a
            // discard deletes it too).
            let mut undo = Commit::new(Arc::clone(db));
            if undo.delete_task_state(&scope).is_ok() {
                let _ = undo.write();
            }
        }
        started
    }

    fn start_on_copy(
        task: &TaskId,
        live: &mut dyn Operator,
        plan: &ShadowPlan,
        report: Option<TaskReport>,
        offset: u64,
    ) -> Result<Self, String> {
        let db = &plan.db;
        let scope = live.state().scope().shadow();
        let state = OperatorState::new(Arc::clone(db), scope, plan.template.cache_bytes)
            .map_err(|e| e.to_string())?;
        let mut op: Box<dyn Operator> = match plan.template.start_on(state, plan.partitions) {
            Ok(op) => Box::new(op),
            Err((e, _)) => return Err(e.to_string()),
        };
        let report = match report {
            Some(r) => r,
            None => {
                let from = live.state_version();
                if op.state_version() != from {
                    migrate(op.as_mut(), db, from)?;
                }
                // The copy, its migration and an empty report land together.
                let report = TaskReport {
                    run: plan.run,
                    offset,
                    ..TaskReport::default()
                };
                let mut commit = Commit::new(Arc::clone(db));
                op.state().stage(&mut commit, None);
                commit.put_shadow_report(task, &encode(&report));
                commit.write().map_err(|e| e.to_string())?;
                op.state().committed();
                report
            }
        };
        op.state().count_timers().map_err(|e| e.to_string())?;
        Ok(ShadowLane {
            local: plan.local,
            op,
            partition: task.partition,
            committed: report.clone(),
            report,
            pending: None,
            rejected: None,
            offsets: None,
            attempt_timers: Vec::new(),
            round_timers: Vec::new(),
            traps: 0,
            watermark: i64::MIN,
            interrupt: None,
        })
    }

    /// Lets `flag` end the shadow's timer round early when the task is stopping (its
    /// calls are not interrupted: they would leave the shadow behind the live work).
    pub fn set_interrupt(&mut self, flag: Interrupt) {
        self.interrupt = Some(flag);
    }

    /// The shadowed operator's index in the chain.
    pub fn local(&self) -> usize {
        self.local
    }

    /// The report as of the last commit.
    pub fn committed_report(&self) -> &TaskReport {
        &self.committed
    }

    fn active(&self) -> bool {
        self.report.failure.is_none()
    }

    /// Whether anything of the shadow awaits a commit.
    pub fn has_pending(&mut self) -> bool {
        self.report != self.committed || self.op.state().has_pending()
    }

    /// The live version handled `input` with `out` in an attempt: the shadow handles it
    /// too. Returns the live output for the chain (the same records; when the versions
    /// differ, the live version's record-by-record output).
    pub fn on_process(
        &mut self,
        live: &mut dyn Operator,
        input: &EventBatch,
        out: Result<OutputBatch, CallError>,
    ) -> Result<OutputBatch, CallError> {
        self.rejected = None;
        if !self.active() {
            return out;
        }
        self.watermark = live.state().watermark;
        // The shadow sees the batch's input as the live operator does.
        self.op.state().input = live.state().input.clone();
        let out = match out {
            Ok(out) => out,
            Err(e) => {
                // If the policy rejects it, the shadow is given the same input.
                self.rejected = Some(input.clone());
                return Err(e);
            }
        };
        if input.events.is_empty() {
            return Ok(out);
        }
        self.op.state().watermark = self.watermark;
        let shadow = self.op.process(input).and_then(super::batch::checked);
        match shadow {
            Ok(s) if compare::same_outputs(&out, &s) => {
                self.pending = Some(Pending::Same {
                    records: input.events.len() as u64,
                    shadow: s,
                });
                return Ok(out);
            }
            Ok(_) => {}
            Err(e) => self.note_error(&e),
        }
        self.op.state().discard_batch();
        if input.events.len() == 1 || !self.active() {
            // One record is pinned already (and a shadow that just stopped compares
            // nothing more): the live output stands as it is.
            if self.active() {
                self.pending = Some(Pending::PerRecord {
                    input: input.clone(),
                    live: vec![out.clone()],
                });
            }
            return Ok(out);
        }
        live.state().discard_batch();
        let mut outputs = Vec::with_capacity(input.events.len());
        for i in 0..input.events.len() {
            let one = batch::slice(input, i..i + 1);
            match live.process(&one).and_then(super::batch::checked) {
                Ok(o) => outputs.push(o),
                Err(CallError::Rejected { error, .. }) => {
                    self.rejected = Some(one);
                    return Err(CallError::Rejected {
                        index: i as u32,
                        error,
                    });
                }
                Err(e) => return Err(e),
            }
        }
        let merged = compare::concat(&outputs);
        self.pending = Some(Pending::PerRecord {
            input: input.clone(),
            live: outputs,
        });
        Ok(merged)
    }

    /// A live timer of the shadowed operator fired with `out` in the attempt in flight.
    pub fn on_live_timer(&mut self, key: &[u8], at: i64, out: &OutputBatch) {
        if self.active() {
            self.attempt_timers
                .push(((at, key.to_vec()), Ok(out.clone())));
        }
    }

    /// A live timer of the shadowed operator failed on its own (`error`); its policy
    /// consumed it.
    pub fn on_live_timer_failed(&mut self, key: &[u8], at: i64, error: String) {
        if self.active() {
            self.round_timers.push(((at, key.to_vec()), Err(error)));
        }
    }

    /// The attempt failed: the shadow's share of it goes too.
    pub fn on_discard(&mut self) {
        if self.pending.take().is_some() {
            self.op.state().discard_batch();
        }
        self.attempt_timers.clear();
    }

    /// The source offsets of the records the next accepted attempt handled.
    pub fn set_offsets(&mut self, offsets: &[u64]) {
        if self.active() && self.local == 0 {
            self.offsets = Some(offsets.to_vec());
        }
    }

    /// The attempt was accepted: settles the shadow's share and adds its records to
    /// `to`, for the shadow topic.
    pub fn on_accept(&mut self, to: &mut EventBatch) {
        let offsets = self.offsets.take();
        self.rejected = None;
        self.round_timers.append(&mut self.attempt_timers);
        self.op.state().watermark = self.watermark;
        let mut out = Vec::new();
        match self.pending.take() {
            None => {}
            Some(Pending::Same { records, shadow }) => {
                self.op.state().end_batch();
                let n = &mut self.report.counts;
                n.compared += records;
                n.same += records;
                n.shadow_outputs += shadow.outputs.len() as u64;
                compare::append_batch(to, shadow);
            }
            Some(Pending::PerRecord { input, live }) => {
                let offsets = offsets.filter(|o| o.len() == input.events.len());
                for (i, live_out) in live.iter().enumerate() {
                    if !self.active() {
                        break;
                    }
                    let one = batch::slice(&input, i..i + 1);
                    let shadow = self.call(|op| op.process(&one));
                    let message;
                    let shadow = match shadow {
                        Ok(s) => Handled::Emitted(compare::records(&s)),
                        Err(e) => {
                            message = e;
                            Handled::Failed(&message)
                        }
                    };
                    if let Handled::Emitted(s) = &shadow {
                        out.extend(s.iter().cloned());
                    }
                    self.report.count(Compared {
                        partition: self.partition,
                        offset: offsets.as_ref().map(|o| o[i]),
                        input: Some(batch::record(&input, i)),
                        timer: None,
                        live: Handled::Emitted(compare::records(live_out)),
                        shadow,
                    });
                }
            }
        }
        self.emitted(out, to)
    }

    /// The live version failed on record `offset` (`error`), which its policy skipped or
    /// dead-lettered: the shadow is given it too (its records go to `to`).
    pub fn on_live_rejected(&mut self, offset: u64, error: &str, to: &mut EventBatch) {
        let Some(input) = self.rejected.take() else {
            return;
        };
        if !self.active() {
            return;
        }
        self.op.state().watermark = self.watermark;
        let shadow = self.call(|op| op.process(&input));
        let message;
        let (shadow, out) = match shadow {
            Ok(s) => {
                let r = compare::records(&s);
                (Handled::Emitted(r.clone()), r)
            }
            Err(e) => {
                message = e;
                (Handled::Failed(&message), Vec::new())
            }
        };
        self.report.count(Compared {
            partition: self.partition,
            offset: (self.local == 0).then_some(offset),
            input: Some(batch::record(&input, 0)),
            timer: None,
            live: Handled::Failed(error),
            shadow,
        });
        self.emitted(out, to)
    }

    /// The shadow fires its own due timers at `watermark` and each timer either version
    /// fired is compared: at the end of the live version's round (`round_end`) all of
    /// them; before a commit in the middle of a round, those up to the last one the live
    /// version fired (both fire in time and key order), so each commit holds both sides
    /// of its timers.
    pub fn fire_timers(
        &mut self,
        watermark: i64,
        round_end: bool,
        to: &mut EventBatch,
    ) -> Result<(), StateError> {
        self.attempt_timers.clear();
        if !self.active() {
            self.round_timers.clear();
            return Ok(());
        }
        let upto = match self.round_timers.iter().map(|(k, _)| k).max() {
            _ if round_end => None,
            None => return Ok(()),
            Some(last) => Some(last.clone()),
        };
        self.op.state().watermark = watermark;
        self.op.state().input = None;
        let mut fired: BTreeMap<TimerKey, Fired> = BTreeMap::new();
        let most = self.round_timers.len() + EXTRA_TIMERS_MAX;
        'round: loop {
            let due = self.op.state().due_timers(watermark, TIMERS_PER_LOOK)?;
            if due.is_empty() {
                break;
            }
            for (at, key) in due {
                if upto.as_ref().is_some_and(|u| (at, &key) > (u.0, &u.1)) {
                    break 'round;
                }
                if !self.op.state().fired_timer(key.clone(), at) {
                    continue;
                }
                let r = self.call(|op| op.on_timer(&key, at));
                if r.is_err() {
                    // Consumed anyway, as the live version's policy consumes it.
                    self.op.state().delete_timer(key.clone(), at)?;
                    self.op.state().end_batch();
                }
                fired.insert((at, key), r);
                if fired.len() > most {
                    self.report.failure = Some(format!(
                        "the shadow fired over {EXTRA_TIMERS_MAX} timers more than the live version in one round in partition {}: its timers keep coming due",
                        self.partition
                    ));
                }
                if !self.active() || self.interrupted() {
                    break 'round;
                }
            }
        }
        // Each timer either version fired, with what each did (a timer one of them did
        // not have emitted nothing there).
        let live = std::mem::take(&mut self.round_timers);
        let mut pairs: Vec<(TimerKey, Option<Fired>, Option<Fired>)> = live
            .into_iter()
            .map(|(k, l)| {
                let s = fired.remove(&k);
                (k, Some(l), s)
            })
            .collect();
        pairs.extend(fired.into_iter().map(|(k, s)| (k, None, Some(s))));
        let mut out = Vec::new();
        for ((at, key), live, shadow) in &pairs {
            let shadow = handled(shadow.as_ref());
            if let Handled::Emitted(r) = &shadow {
                out.extend(r.iter().cloned());
            }
            let live = handled(live.as_ref());
            self.report.count(Compared {
                partition: self.partition,
                offset: None,
                input: None,
                timer: Some((key.clone(), *at)),
                live,
                shadow,
            });
        }
        self.emitted(out, to);
        Ok(())
    }

    fn interrupted(&self) -> bool {
        self.interrupt
            .as_ref()
            .is_some_and(|f| f.load(std::sync::atomic::Ordering::Acquire))
    }

    /// A call of the shadow failed: traps count towards [`MAX_TRAPS`], and a call that
    /// ran to its deadline stops the shadow at once.
    fn note_error(&mut self, e: &CallError) {
        let CallError::Trap { kind, .. } = e else {
            return;
        };
        self.traps += 1;
        if *kind == TrapKind::Deadline {
            self.report.failure = Some(format!(
                "the shadow ran to its call deadline in partition {}: {e}",
                self.partition
            ));
        } else if self.traps >= MAX_TRAPS {
            self.report.failure = Some(format!(
                "the shadow trapped {MAX_TRAPS} times in partition {}; the last: {e}",
                self.partition
            ));
        }
    }

    /// Runs one call of the shadow on its own: its writes stand when it succeeds and go
    /// when it fails (a failure is the shadow's error, counted by the caller).
    fn call(
        &mut self,
        f: impl FnOnce(&mut dyn Operator) -> Result<OutputBatch, CallError>,
    ) -> Result<OutputBatch, String> {
        match f(self.op.as_mut()).and_then(super::batch::checked) {
            Ok(out) => {
                self.op.state().end_batch();
                Ok(out)
            }
            Err(e) => {
                self.op.state().discard_batch();
                self.note_error(&e);
                Err(e.to_string())
            }
        }
    }

    /// Counts the shadow's records and adds them to `to`, for its topic.
    fn emitted(&mut self, out: Vec<(Record, Option<String>)>, to: &mut EventBatch) {
        self.report.counts.shadow_outputs += out.len() as u64;
        compare::append_records(to, out);
    }

    /// Adds the shadow's state and report to the task's commit, which moves the task
    /// to `offset`.
    pub fn stage(&mut self, commit: &mut Commit, task: &TaskId, offset: u64) {
        self.op.state().stage(commit, None);
        self.report.offset = offset;
        if self.report != self.committed {
            commit.put_shadow_report(task, &encode(&self.report));
        }
    }

    /// The commit with [`ShadowLane::stage`]'s writes landed.
    pub fn committed(&mut self) {
        self.op.state().committed();
        self.committed = self.report.clone();
    }

    /// Back to the last commit, as the task goes.
    pub fn reset(&mut self) {
        self.op.state().reset();
        self.report = self.committed.clone();
        self.pending = None;
        self.rejected = None;
        self.offsets = None;
        self.attempt_timers.clear();
        self.round_timers.clear();
    }

    /// Ends the shadow in its task: its state goes (its committed report stays).
    pub fn end(mut self) -> Result<(), StateError> {
        let scope = self.op.state().scope().clone();
        let mut commit = Commit::new(Arc::clone(self.op.state().db()));
        commit.delete_task_state(&scope)?;
        commit.write()
    }
}

/// Deletes what a shadow keeps in a task that runs none (its pipeline is stopped, or its
/// lane ended): its state, and its report. `live` is the shadowed operator's scope.
pub fn delete_task_shadow(
    db: &Arc<Db>,
    task: &TaskId,
    live: &crate::state::StateScope,
) -> Result<(), StateError> {
    let mut commit = Commit::new(Arc::clone(db));
    commit.delete_task_state(&live.shadow())?;
    commit.delete_shadow_report(task);
    commit.write()
}

/// A timer's firing (none: it emitted nothing) as compared.
fn handled(fired: Option<&Fired>) -> Handled<'_> {
    match fired {
        None => Handled::Emitted(Vec::new()),
        Some(Ok(out)) => Handled::Emitted(compare::records(out)),
        Some(Err(e)) => Handled::Failed(e),
    }
}

fn encode(report: &TaskReport) -> Vec<u8> {
    serde_json::to_vec(report).expect("a report serializes")
}
