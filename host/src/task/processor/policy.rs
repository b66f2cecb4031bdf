//! A record that failed on its own: the pipeline's error policy (fail, skip, or
//! dead-letter it), and what the error says about it.

use super::{Failure, Task};
use crate::io::{Outputs, Sink, SourceBatch};
use crate::model::OnError;
use crate::record::batch;
use crate::runtime::{CallError, TrapKind};
use crate::task::TaskError;

impl Task {
    pub(super) fn record_error(&self, op: usize, offset: u64, error: &CallError) -> TaskError {
        TaskError::Record {
            operator: self.ops[op].label().to_string(),
            partition: self.id.partition,
            offset,
            message: error.to_string(),
        }
    }

    /// Record `i` failed on its own: fail, skip it, or dead-letter it.
    pub(super) fn apply_policy(
        &mut self,
        source: &SourceBatch,
        i: usize,
        f: Failure,
        sink: &mut dyn Sink,
    ) -> Result<(), TaskError> {
        let offset = source.offsets[i];
        let err = self.record_error(f.op, offset, &f.error);
        self.stats.errors += 1;
        self.stats.last_error = Some(err.to_string());
        self.count_rejected(&err, false);
        if let CallError::Trap { kind, .. } = &f.error
            && !matches!(kind, TrapKind::Deadline | TrapKind::Stopped)
        {
            self.stats.traps += 1;
        }
        let mut outputs = Outputs::empty();
        if self.config.policy != OnError::Fail
            && let Some(lane) = self.shadow.as_mut().filter(|l| l.local() == f.op)
        {
            lane.on_live_rejected(offset, &f.error.to_string(), &mut outputs.shadow);
        }
        match self.config.policy {
            OnError::Fail => {
                // What succeeded before the failing record is kept.
                self.flush(sink)?;
                return Err(err);
            }
            OnError::Skip if self.stats.should_log_error() => {
                let n = self.stats.errors;
                tracing::warn!(task = %self.id, "skipped a record ({n} so far): {err}")
            }
            OnError::Skip => {}
            OnError::DeadLetter => {
                let mut r = batch::record(&source.events, i);
                r.headers.extend(self.error_headers(f.op, &f.error));
                r.headers
                    .push(("eddy.offset".into(), offset.to_string().into_bytes()));
                outputs.dead.push(r);
            }
        }
        self.complete(source, i..i + 1, outputs);
        Ok(())
    }

    pub(super) fn error_headers(&self, op: usize, error: &CallError) -> Vec<(String, Vec<u8>)> {
        vec![
            ("eddy.error".into(), error.to_string().into_bytes()),
            (
                "eddy.operator".into(),
                self.ops[op].label().as_bytes().to_vec(),
            ),
            (
                "eddy.partition".into(),
                self.id.partition.to_string().into_bytes(),
            ),
        ]
    }
}
