//! What is reported about pipelines: their status with their tasks' (here, stored, or
//! as other servers of a cluster last told), and the gauges computed from them.

use super::controller::Controller;
use super::entry::{Entry, STARTING, STOPPING};
use super::error::ControlError;
use super::history::{HISTORY_INTERVAL_MS, HistorySample, PipelineHistory, TaskSample};
use super::topics::all_topics;
use crate::kafka;
use crate::memory::MemoryUsage;
use crate::model::{
    Canary, InputKind, PinnedOperator, PipelineSpec, PipelineState, Stage, UpgradeRecord,
};
use crate::record::now_ms;
use crate::state::{TaskId, load_position, load_source_positions};
use crate::task::{RestoreStatus, StandbyStatus, TaskHandle, TaskState, TaskStatus};
use serde::Serialize;
use std::sync::Arc;

/// A task on another server whose server has said nothing of it for this long shows as
/// `silent` (servers report every second; the group's session timeout is 6 s).
pub(super) const SILENT_AFTER_MS: u64 = 3_000;

/// The server as the API reports it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ServerStatus {
    /// Worker threads running tasks.
    pub workers: usize,
    /// The memory budget (`eddy serve --memory-budget`) and where it goes.
    pub memory: MemoryUsage,
}

/// A pipeline as the API reports it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PipelineStatus {
    pub name: String,
    pub state: PipelineState,
    pub reason: Option<String>,
    pub source: String,
    pub sink: String,
    pub operators: Vec<PinnedOperator>,
    /// The operators between two repartitions, in order, with what each stage reads and
    /// writes: the pipeline's topology.
    pub stages: Vec<StageView>,
    /// One per source partition, while the pipeline runs (or after it stopped or failed).
    pub tasks: Vec<TaskStatus>,
    /// The spec the pipeline was created with.
    #[schema(value_type = Object)]
    pub spec: PipelineSpec,
    /// Upgrades, oldest first.
    pub upgrades: Vec<UpgradeRecord>,
    /// Partitions that run a canary version of one operator, if any.
    pub canary: Option<Canary>,
    /// The pipeline's shadow run, if it has one (`GET /v1/pipelines/{name}/shadow` has
    /// its report).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<crate::model::ShadowRun>,
    /// What the pipeline's internal Kafka names start with (its changelog and positions
    /// topics, consumer group, transactional ids): the cluster's name when it was created
    /// in one; absent, they start with the pipeline's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// A stage as the status reports it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StageView {
    pub index: u32,
    /// The topic whose partitions number the stage's tasks: the primary input's, or the
    /// repartition topic the stage reads.
    pub source: String,
    /// The first stage's inputs (empty for a stage after a repartition).
    pub inputs: Vec<StageInput>,
    /// Ids of the operators the stage chains, in order.
    pub operators: Vec<String>,
    /// Where the stage writes: the next repartition topic, or the pipeline's sink.
    pub sink: String,
}

/// An input of the first stage.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StageInput {
    pub name: String,
    pub topic: String,
    /// `stream`, `table` or `broadcast`.
    #[schema(value_type = String)]
    pub kind: InputKind,
    /// Whether the topic lives in Kafka.
    pub kafka: bool,
}

impl StageView {
    fn of(spec: &PipelineSpec, stage: &Stage) -> StageView {
        StageView {
            index: stage.index,
            source: stage.source.clone(),
            inputs: stage
                .inputs
                .iter()
                .map(|i| StageInput {
                    name: i.name.clone(),
                    topic: i.topic.topic.clone(),
                    kind: i.kind,
                    kafka: i.topic.is_kafka(),
                })
                .collect(),
            operators: stage
                .ops
                .iter()
                .map(|&i| spec.operators[i].id().to_string())
                .collect(),
            sink: stage.sink.clone(),
        }
    }
}

impl Controller {
    /// One pipeline's status.
    pub fn status(&self, name: &str) -> Result<PipelineStatus, ControlError> {
        self.with_entry(name, |entry| Ok(self.describe(entry)))
    }

    /// Every pipeline's status, by name.
    pub fn list(&self) -> Vec<PipelineStatus> {
        let pipelines = self.table();
        pipelines.values().map(|e| self.describe(e)).collect()
    }

    fn describe(&self, entry: &Entry) -> PipelineStatus {
        let r = &entry.record;
        let topic = |t: &Option<crate::model::TopicRef>| {
            t.as_ref().map(|t| t.topic.clone()).unwrap_or_default()
        };
        let stages = kafka::stages_of(r);
        let mut tasks = if shared_running(entry) {
            self.cluster_tasks(entry)
        } else if entry.tasks.is_empty() {
            self.stored_tasks(&r.spec, &stages)
        } else {
            entry.tasks.iter().map(|t| t.status()).collect()
        };
        // Lag against each stage's source as it is now, not as the task last saw it.
        let kafka_source = r.spec.primary_source().is_some_and(|s| s.kafka.is_some());
        let several = r.spec.inputs.len() > 1;
        for t in &mut tasks {
            if t.stage == 0 && several {
                // Offsets and lag are sums over the task's sources.
                // Kafka sources report their ends themselves.
                let embedded = |input: &str| {
                    r.spec
                        .inputs
                        .iter()
                        .any(|i| i.name == input && !i.topic.is_kafka())
                };
                for src in t.sources.iter_mut().filter(|s| embedded(&s.input)) {
                    if let Ok(topic) = self.log().topic(&src.topic) {
                        src.end_offset = topic.end_offset(src.partition).max(src.committed_offset);
                        src.lag = src.end_offset - src.committed_offset;
                    }
                }
                if let Some(end) = self.sources_end(&stages[0], t.partition) {
                    t.end_offset = end.max(t.committed_offset);
                    t.lag = t.end_offset - t.committed_offset;
                }
                continue;
            }
            if t.stage == 0 && kafka_source {
                continue; // the task reports its Kafka partition's end itself
            }
            let Some(topic) = stages
                .get(t.stage as usize)
                .and_then(|s| self.log().topic(&s.source).ok())
            else {
                continue;
            };
            if t.partition < topic.partition_count() {
                t.end_offset = topic.end_offset(t.partition).max(t.committed_offset);
                t.lag = t.end_offset - t.committed_offset;
            }
        }
        if let Some(c) = &r.canary {
            let i = r.operators.iter().position(|o| o.id == c.operator.id);
            let stage = stages
                .iter()
                .find(|s| i.is_some_and(|i| s.ops.contains(&i)));
            for t in &mut tasks {
                if stage.is_some_and(|s| s.index == t.stage) && c.covers(t.partition) {
                    t.canary = Some(format!("{}@{}", c.operator.id, c.operator.version));
                }
            }
        }
        PipelineStatus {
            name: r.spec.name.clone(),
            state: match entry.busy {
                Some(STARTING) => PipelineState::Starting,
                Some(STOPPING) => PipelineState::Stopping,
                _ if !entry.arriving.is_empty() || !entry.leaving.is_empty() => {
                    PipelineState::Rebalancing
                }
                _ => r.state,
            },
            reason: r.reason.clone(),
            source: topic(&r.spec.primary_source().cloned()),
            sink: topic(&r.spec.sink),
            operators: r.operators.clone(),
            stages: stages.iter().map(|s| StageView::of(&r.spec, s)).collect(),
            tasks,
            spec: r.spec.clone(),
            upgrades: r.upgrades.clone(),
            canary: r.canary.clone(),
            shadow: r.shadow.clone(),
            namespace: r.namespace.clone(),
            created_ms: r.created_ms,
            updated_ms: r.updated_ms,
        }
    }

    /// Task statuses of a pipeline that is not running: its committed positions.
    fn stored_tasks(&self, spec: &PipelineSpec, stages: &[Stage]) -> Vec<TaskStatus> {
        let mut out = Vec::new();
        for stage in stages {
            let Ok(partitions) = self.stage_partitions(spec, stage) else {
                continue;
            };
            let topic = self.log().topic(&stage.source).ok();
            out.extend((0..partitions).map(|p| {
                let id = TaskId {
                    pipeline: spec.name.clone(),
                    stage: stage.index,
                    partition: p,
                };
                let committed = match load_source_positions(self.db(), &id) {
                    Ok(sources) if !sources.is_empty() => sources.iter().map(|s| s.offset).sum(),
                    _ => load_position(self.db(), &id)
                        .map(|pos| pos.offset)
                        .unwrap_or(0),
                };
                // A Kafka source's end is not asked for here (the lag of a stopped
                // pipeline shows once it runs).
                let end = topic
                    .as_ref()
                    .map_or(committed, |t| t.end_offset(p))
                    .max(committed);
                TaskStatus::at(stage.index, p, TaskState::Stopped, committed, end)
            }));
        }
        out
    }

    /// The summed end offsets of the embedded topic partitions task `p` of a stage with
    /// several inputs reads (partition `p` of streams and tables, all of broadcasts).
    fn sources_end(&self, stage: &Stage, p: u32) -> Option<u64> {
        let mut end = 0;
        for input in &stage.inputs {
            if input.topic.is_kafka() {
                return None; // the task reports its sources' ends itself
            }
            let topic = self.log().topic(&input.topic.topic).ok()?;
            let whole = input.kind == InputKind::Broadcast || input.repartition;
            end += if whole {
                (0..topic.partition_count())
                    .map(|q| topic.end_offset(q))
                    .sum()
            } else {
                topic.end_offset(p)
            };
        }
        Some(end)
    }

    /// The tasks of a shared pipeline: this server's, and the others' as the catalog
    /// last heard.
    fn cluster_tasks(&self, entry: &Entry) -> Vec<TaskStatus> {
        let (Some(link), Some(member)) = (self.cluster.get(), &entry.member) else {
            return Vec::new();
        };
        let me = link.me().to_string();
        let owners = link.catalog.owners(entry.name());
        let reports = link.catalog.reports(entry.name());
        let standbys = self.standbys_of(entry.name());
        let now = now_ms();
        // Where a stage's partition stood when a server last reported it: (age,
        // committed, end).
        let reported = |server: Option<&String>, stage: u32, p: u32| {
            reports
                .iter()
                .filter(|(s, _)| server.is_none_or(|owner| owner == *s))
                .filter_map(|(_, (heard, tasks))| {
                    let t = tasks
                        .iter()
                        .find(|t| t.stage == stage && t.partition == p)?;
                    Some((*heard, t.committed_offset, t.end_offset))
                })
                .max_by_key(|(heard, ..)| *heard)
                .map(|(heard, c, e)| ((now - heard).max(0) as u64, c, e))
        };
        let mut tasks: Vec<TaskStatus> = entry
            .tasks
            .iter()
            .map(|t| TaskStatus {
                server: Some(me.clone()),
                ..t.status()
            })
            .collect();
        // A partition's tasks of every stage run on the server the group gives it to.
        let stages = kafka::stages_of(&entry.record).len() as u32;
        for (stage, p) in (0..stages).flat_map(|s| (0..member.partitions).map(move |p| (s, p))) {
            if tasks.iter().any(|t| t.stage == stage && t.partition == p) {
                continue;
            }
            let here = |t: &&Arc<TaskHandle>| t.id.stage == stage && t.id.partition == p;
            if let Some(t) = entry.leaving.iter().find(here) {
                tasks.push(TaskStatus {
                    server: Some(me.clone()),
                    state: TaskState::Moving,
                    ..t.status()
                });
                continue;
            }
            let id = TaskId {
                pipeline: entry.name().to_string(),
                stage,
                partition: p,
            };
            if entry.arriving.contains(&p) {
                let restore = self.factory.restore_progress(&id);
                // Where the server that ran it last said it stood: the backlog it takes.
                let (_, committed, end) = reported(None, stage, p).unwrap_or_default();
                tasks.push(TaskStatus {
                    server: Some(me.clone()),
                    restore: restore.map(|(restored, to_restore)| RestoreStatus {
                        restored,
                        to_restore,
                    }),
                    ..TaskStatus::at(stage, p, TaskState::Restoring, committed, end)
                });
                continue;
            }
            let owner = owners.get(&p).filter(|s| **s != me).cloned();
            let report = owner.as_ref().and_then(|s| reported(Some(s), stage, p));
            let (age, committed, end) = report.unwrap_or_default();
            let state = if owner.is_none() {
                // No server says it runs it: between two (or not given out yet).
                TaskState::Moving
            } else if report.is_some_and(|(age, ..)| age > SILENT_AFTER_MS) {
                TaskState::Silent
            } else {
                TaskState::Remote
            };
            let standby = standbys.get(&p).map(|&caught_up_ms| {
                let offset = load_position(self.db(), &id).map_or(0, |at| at.offset);
                StandbyStatus {
                    offset,
                    lag: committed.saturating_sub(offset),
                    caught_up_ms,
                }
            });
            tasks.push(TaskStatus {
                server: owner,
                report_age_ms: report.map(|_| age),
                standby,
                ..TaskStatus::at(stage, p, state, committed, end)
            });
        }
        tasks.sort_by_key(|t| (t.stage, t.partition));
        tasks
    }

    /// The pipeline (if any) that runs `name@version`.
    pub fn operator_in_use(&self, name: &str, version: u32) -> Option<String> {
        let pipelines = self.table();
        pipelines
            .values()
            .find(|e| {
                e.record
                    .operators
                    .iter()
                    .any(|o| o.name == name && o.version == version)
            })
            .map(|e| e.name().to_string())
    }

    /// The pipeline (if any) that reads or writes `topic`.
    pub fn topic_in_use(&self, topic: &str) -> Option<String> {
        let pipelines = self.table();
        pipelines
            .values()
            .find(|e| {
                all_topics(self.log(), &e.record.spec)
                    .iter()
                    .any(|t| t == topic)
            })
            .map(|e| e.name().to_string())
    }

    /// Updates the gauges computed from pipeline records and state sizes.
    /// The server's workers and memory.
    pub fn server_status(&self) -> ServerStatus {
        let db = self.db();
        ServerStatus {
            workers: self.factory.workers(),
            memory: db.budget().usage(db.memory_usage()),
        }
    }

    pub fn refresh_gauges(&self) {
        let m = self.server_status().memory;
        for (part, bytes) in [
            ("budget", m.budget_bytes),
            ("rocksdb_limit", m.rocksdb_limit_bytes),
            ("rocksdb", m.rocksdb_bytes),
            ("wasm", m.wasm_bytes),
            ("state", m.state_bytes),
        ] {
            let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
            self.metrics().memory.with_label_values(&[part]).set(bytes);
        }
        let pipelines = self.table();
        for state in ["created", "running", "stopped", "failed", "recovering"] {
            self.metrics().pipelines.with_label_values(&[state]).set(0);
        }
        for e in pipelines.values() {
            let state = serde_json::to_value(e.record.state)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            self.metrics().pipelines.with_label_values(&[&state]).inc();
            self.shadow_gauges(e);
            if let Ok(bytes) = self.db().pipeline_state_bytes(e.name()) {
                self.metrics()
                    .state_bytes
                    .with_label_values(&[e.name()])
                    .set(bytes as i64);
            }
        }
    }

    /// The shadow gauges of a pipeline: its running shadow's counts, summed over its
    /// tasks (gone when it runs none).
    fn shadow_gauges(&self, e: &Entry) {
        let m = &self.metrics().shadow;
        let running = e
            .record
            .shadow
            .as_ref()
            .is_some_and(|s| s.state == crate::model::ShadowState::Running);
        let mut total = crate::task::shadow::ShadowCounts::default();
        for t in &e.tasks {
            if let Some(c) = &t.status().shadow {
                total.add(c);
            }
        }
        for (outcome, n) in [
            ("compared", total.compared),
            ("same", total.same),
            ("different", total.different),
            ("only_live", total.only_live),
            ("only_shadow", total.only_shadow),
            ("errors", total.errors),
        ] {
            if running {
                m.with_label_values(&[e.name(), outcome]).set(n as i64);
            } else {
                let _ = m.remove_label_values(&[e.name(), outcome]);
            }
        }
    }
}

impl Controller {
    /// Samples every pipeline's tasks (the server calls it every second).
    pub fn sample_history(&self) {
        let at = now_ms();
        let pipelines = self.table();
        let samples = pipelines
            .values()
            .map(|entry| {
                let r = &entry.record;
                // Only tasks that run move counters: a pipeline without any here is
                // sampled as its state alone, not read from its stored state (for a
                // Kafka pipeline, a trip to the brokers) every second.
                let sample = match shared_running(entry) || !entry.tasks.is_empty() {
                    true => sample_of(&self.describe(entry), at),
                    false => HistorySample {
                        at_ms: at,
                        state: r.state,
                        tasks: Vec::new(),
                    },
                };
                (r.spec.name.clone(), sample)
            })
            .collect();
        self.history.record(samples);
    }

    /// A pipeline's samples, oldest first.
    pub fn history(&self, name: &str) -> Result<PipelineHistory, ControlError> {
        self.with_entry(name, |_| Ok(()))?;
        Ok(PipelineHistory {
            pipeline: name.to_string(),
            interval_ms: HISTORY_INTERVAL_MS,
            samples: self.history.samples(name),
        })
    }
}

/// A shared pipeline that runs: its tasks are spread over the cluster's servers.
fn shared_running(entry: &Entry) -> bool {
    entry.member.is_some()
        && matches!(
            entry.record.state,
            PipelineState::Running | PipelineState::Recovering
        )
}

fn sample_of(s: &PipelineStatus, at_ms: i64) -> HistorySample {
    HistorySample {
        at_ms,
        state: s.state,
        tasks: s
            .tasks
            .iter()
            .map(|t| TaskSample {
                stage: t.stage,
                partition: t.partition,
                events_in: t.events_in,
                events_out: t.events_out,
                errors: t.errors,
                lag: t.lag,
                committed_offset: t.committed_offset,
            })
            .collect(),
    }
}
