//! Running a pipeline on this server and stopping it: its tasks come from the task
//! factory (a shared pipeline's, for the partitions its group gives this server), and
//! stop at a batch boundary after they commit.

use super::controller::Controller;
use super::entry::Entry;
use super::error::RunError;
use std::time::Duration;

/// How long a stop waits for tasks to commit and end.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

impl Controller {
    /// Runs a pipeline here: all its tasks, or for a shared pipeline, the partitions its
    /// assignment group gives this server.
    pub(super) fn run_entry(&self, entry: &mut Entry) -> Result<(), RunError> {
        // A restore that did not finish is finished before anything runs on its state.
        let record = &entry.record;
        self.finish_restore(&record.spec.name, &record.spec, &record.operators)
            .map_err(RunError::UnfinishedRestore)?;
        if !self.distributed(&entry.record.spec) {
            entry.tasks = self.factory.start(&mut entry.record, None)?;
            return Ok(());
        }
        match &entry.member {
            Some(member) => {
                // Still in the group: run what it gives this server now (later
                // assignments start their tasks as they come).
                let assigned = member.assigned();
                entry.tasks = self.factory.start(&mut entry.record, Some(&assigned))?;
                self.announce_tasks(&entry.record.spec.name, &entry.partitions());
                Ok(())
            }
            None => self.join_group(entry),
        }
    }

    /// Stops a pipeline's tasks at a batch boundary, after they commit.
    pub(super) fn stop_tasks(&self, entry: &Entry) {
        for t in &entry.tasks {
            t.request_stop();
        }
        for t in &entry.tasks {
            if !t.wait(STOP_TIMEOUT) {
                tracing::warn!(task = %t.id, "task did not stop within {STOP_TIMEOUT:?}");
            }
        }
    }

    /// Stops a pipeline's tasks here; a shared pipeline stays in its assignment group
    /// (see `entry::Member`).
    pub(super) fn halt_entry(&self, entry: &mut Entry) {
        self.stop_tasks(entry);
        if entry.member.is_some() {
            entry.tasks.clear();
            self.announce_tasks(&entry.record.spec.name, &[]);
        }
    }

    /// Leaves a shared pipeline's assignment group (the pipeline is going away here).
    pub(super) fn leave_group(&self, entry: &mut Entry) {
        if let Some(m) = entry.member.take() {
            m.leave();
        }
    }
}
