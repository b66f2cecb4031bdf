//! Bringing a running pipeline to one consistent batch boundary: every task commits and
//! waits. Later stages are paused only after they drained what earlier (already paused)
//! stages wrote to the repartition topics, so nothing is in flight between stages.

use crate::log::Log;
use crate::task::{Command, TaskHandle, TaskState};
use std::sync::Arc;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

/// Longest a pause may take (a task finishing a long batch, a stage draining).
const PAUSE_TIMEOUT: Duration = Duration::from_secs(60);

/// Pauses `tasks` stage by stage; `sources[s]` is stage `s`'s source topic in the embedded
/// log, drained first (`None`: not drained; a repartition topic in Kafka is written by
/// other servers' tasks too, which pause on their own). On failure the tasks already
/// paused are resumed.
pub(super) fn pause(
    log: &Log,
    tasks: &[Arc<TaskHandle>],
    sources: &[Option<String>],
) -> Result<(), String> {
    let mut paused: Vec<&Arc<TaskHandle>> = Vec::new();
    let result = (|| {
        for (stage, source) in sources.iter().enumerate() {
            let stage_tasks: Vec<&Arc<TaskHandle>> = tasks
                .iter()
                .filter(|t| t.id.stage == stage as u32)
                .collect();
            if let Some(source) = source.as_ref().filter(|_| stage > 0) {
                drain(log, &stage_tasks, source)?;
            }
            let acks: Vec<_> = stage_tasks
                .iter()
                .map(|t| (t, t.request(Command::Pause)))
                .collect();
            for (t, rx) in acks {
                match rx.recv_timeout(PAUSE_TIMEOUT) {
                    Ok(Ok(())) => paused.push(t),
                    Ok(Err(e)) => return Err(format!("task {} could not commit: {e}", t.id)),
                    Err(RecvTimeoutError::Disconnected) => {
                        return Err(format!("task {} ended before it paused", t.id));
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        return Err(format!(
                            "task {} did not pause within {PAUSE_TIMEOUT:?}",
                            t.id
                        ));
                    }
                }
            }
        }
        Ok(())
    })();
    if result.is_err() {
        for t in paused {
            t.send(Command::Resume);
        }
    }
    result
}

/// Waits until every task of a stage has committed everything in its source.
fn drain(log: &Log, tasks: &[&Arc<TaskHandle>], source: &str) -> Result<(), String> {
    let topic = log.topic(source).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + PAUSE_TIMEOUT;
    loop {
        let mut done = true;
        for t in tasks {
            let s = t.status();
            if s.state == TaskState::Failed {
                return Err(format!(
                    "task {} failed: {}",
                    t.id,
                    s.failure.unwrap_or_default()
                ));
            }
            if s.committed_offset < topic.end_offset(t.id.partition) {
                done = false;
            }
        }
        if done {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "stage reading {source} did not catch up within {PAUSE_TIMEOUT:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Lets paused tasks go on.
pub(super) fn resume(tasks: &[Arc<TaskHandle>]) {
    for t in tasks {
        t.send(Command::Resume);
    }
}
