//! Savepoints of running shared pipelines. The server taking the savepoint holds the
//! pipeline on every server: it writes a hold into the catalog (`hold/<pipeline>`), each
//! server commits and pauses its tasks of the pipeline and reports which partitions it
//! holds (`held/<pipeline>/<server>`). Once every partition is held, no transaction is
//! open anywhere and Kafka has each partition's state and position as of one commit,
//! so the server reads the partitions it does not run from Kafka and exports as for a
//! stopped pipeline; then it releases the hold. A hold ends by itself after
//! [`HOLD_FOR`] (the server taking the savepoint went away).

use super::controller::Controller;
use super::error::ControlError;
use super::pause::{pause, resume};
use crate::model::{Held, Hold, PipelineState, stages};
use crate::record::now_ms;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest a hold lasts without its release.
const HOLD_FOR: Duration = Duration::from_secs(60);
/// How long the savepoint waits for every partition to be held.
const HOLD_WAIT: Duration = Duration::from_secs(30);

impl Controller {
    /// Holds a running shared pipeline on every server (see the module documentation);
    /// `None` for any other pipeline.
    pub(super) fn hold_shared(self: &Arc<Self>, name: &str) -> Result<Option<i64>, ControlError> {
        let Some(link) = self.cluster.get() else {
            return Ok(None);
        };
        self.sync_cluster()?;
        let (record, _) = self.record_and_tasks(name)?;
        if !self.distributed(&record.spec) || record.state != PipelineState::Running {
            return Ok(None);
        }
        let stage = stages(&record.spec).remove(0);
        let partitions = self.stage_partitions(&record.spec, &stage)?;
        let hold = Hold {
            id: now_ms(),
            until_ms: now_ms() + HOLD_FOR.as_millis() as i64,
        };
        link.catalog
            .publish_hold(name, &hold)
            .map_err(ControlError::Hold)?;
        self.apply_hold(name, hold.clone());
        let deadline = Instant::now() + HOLD_WAIT;
        loop {
            let held: Vec<u32> = link
                .held
                .of(name)
                .into_iter()
                .filter(|(_, h)| h.id == hold.id)
                .flat_map(|(_, h)| h.partitions)
                .collect();
            let missing: Vec<u32> = (0..partitions).filter(|p| !held.contains(p)).collect();
            if missing.is_empty() {
                return Ok(Some(hold.id));
            }
            if Instant::now() >= deadline {
                self.release_hold(name, hold.id);
                return Err(ControlError::NotHeld {
                    missing,
                    pipeline: name.to_string(),
                    waited: HOLD_WAIT,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Ends hold `id` everywhere.
    pub(super) fn release_hold(self: &Arc<Self>, name: &str, id: i64) {
        let release = Hold { id, until_ms: 0 };
        if let Some(link) = self.cluster.get()
            && let Err(e) = link.catalog.publish_hold(name, &release)
        {
            tracing::error!(pipeline = %name, "cannot release the hold (it ends by itself within {HOLD_FOR:?}): {e}");
        }
        self.apply_hold(name, release);
    }

    /// The hold of `name` on here, if any.
    pub(super) fn hold_here(&self, name: &str) -> Option<Hold> {
        self.cluster
            .get()?
            .holds
            .lock()
            .expect("holds lock")
            .get(name)
            .filter(|h| h.until_ms > now_ms())
            .cloned()
    }

    /// A hold or its release: pauses or resumes this server's tasks of the pipeline.
    pub(super) fn apply_hold(self: &Arc<Self>, name: &str, hold: Hold) {
        let Some(link) = self.cluster.get() else {
            return;
        };
        let on = hold.until_ms > now_ms();
        {
            let mut holds = link.holds.lock().expect("holds lock");
            if on {
                holds.insert(name.to_string(), hold.clone());
            } else if holds.get(name).is_some_and(|h| h.id == hold.id) {
                holds.remove(name);
            } else {
                return;
            }
        }
        let this = Arc::clone(self);
        let name = name.to_string();
        let spawned = std::thread::Builder::new()
            .name("eddy-hold".into())
            .spawn(move || {
                if !on {
                    this.resume_here(&name);
                    return;
                }
                this.pause_here(&name, hold.id);
                let left = (hold.until_ms - now_ms()).max(0) as u64;
                std::thread::sleep(Duration::from_millis(left));
                let expired = {
                    let Some(link) = this.cluster.get() else {
                        return;
                    };
                    let mut holds = link.holds.lock().expect("holds lock");
                    let mine = holds.get(&name).is_some_and(|h| h.id == hold.id);
                    if mine {
                        holds.remove(&name);
                    }
                    mine
                };
                if expired {
                    tracing::warn!(pipeline = %name, "a hold for a savepoint ended without its release");
                    this.resume_here(&name);
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot apply a hold: {e}");
        }
    }

    /// Commits and pauses this server's tasks of a held pipeline, and says which.
    fn pause_here(&self, name: &str, id: i64) {
        let Ok((record, tasks)) = self.record_and_tasks(name) else {
            return;
        };
        let tasks: Vec<_> = tasks.into_iter().filter(|t| !t.is_finished()).collect();
        // A shared pipeline's later stages read Kafka, fed by every server: not drained.
        let sources: Vec<Option<String>> = stages(&record.spec)
            .into_iter()
            .map(|s| (!record.repartitions_in_kafka()).then_some(s.source))
            .collect();
        if let Err(e) = pause(self.log(), &tasks, &sources) {
            tracing::error!(pipeline = %name, "cannot hold the pipeline's tasks: {e}");
            return;
        }
        let partitions = tasks.iter().map(|t| t.id.partition).collect();
        self.report_held(name, Held { id, partitions });
    }

    fn resume_here(&self, name: &str) {
        if let Ok((_, tasks)) = self.record_and_tasks(name) {
            resume(&tasks);
        }
    }

    /// Keeps this server's held partitions here and tells the server taking the savepoint.
    pub(super) fn report_held(&self, name: &str, held: Held) {
        let Some(link) = self.cluster.get() else {
            return;
        };
        link.held.put(name, link.me(), held.clone());
        if let Err(e) = link.catalog.publish_held(name, &held) {
            tracing::warn!(pipeline = %name, "cannot report the held partitions: {e}");
        }
    }
}
