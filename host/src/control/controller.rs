//! The pipeline controller: creates, starts, stops and deletes pipelines, persists their
//! records, and turns a failed task into a failed pipeline. It talks to tasks only through
//! their handles (stop requests in, status out).

use super::changelogs::{Replayed, catch_up, changelog_topics};
use super::pipeline::PipelineStatus;
use super::savepoints::Savepoints;
use super::spec::TopicRef;
use super::{OnError, PipelineSpec};
use crate::kafka;
use crate::log::{Log, LogError, TopicConfig, TopicSink, TopicSource};
use crate::metrics::Metrics;
use crate::model::{PinnedOperator, PipelineRecord, PipelineState};
use crate::record::now_ms;
use crate::registry::{Registry, RegistryError};
use crate::runtime::{Limits, TaskInfo};
use crate::state::{Cf, Db, OperatorState, StateError, StateScope, TaskId, load_position};
use crate::task::{
    Operator, Sink, StageClock, Task, TaskConfig, TaskHandle, TaskRunner, TaskSource, TaskState,
    TaskStatus, WasmOperator, WorkerPool,
};
use rocksdb::WriteBatch;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const RECORD_PREFIX: &[u8] = b"pipeline/";

/// How long a stop waits for tasks to commit and end.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a control-plane call failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("pipeline {0:?} does not exist")]
    NotFound(String),
    #[error("pipeline {0:?} already exists; delete it or pick another name")]
    Exists(String),
    /// The request cannot work as given (bad spec, missing operator or topic).
    #[error("{0}")]
    Invalid(String),
    /// The request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Savepoint(#[from] super::savepoints::SavepointError),
    /// A savepoint, restore, upgrade or recovery works on the pipeline now.
    #[error("pipeline {pipeline:?} is busy with {with}; try again when it is done")]
    Busy {
        pipeline: String,
        with: &'static str,
    },
}

pub(super) struct Entry {
    pub(super) record: PipelineRecord,
    /// The tasks of the current (or last) run.
    pub(super) tasks: Vec<Arc<TaskHandle>>,
    /// Set while a savepoint, restore or upgrade works on the pipeline.
    pub(super) busy: Option<&'static str>,
    /// A pipeline shared across a cluster: this server's membership in its assignment
    /// group (`tasks` then holds the partitions the group gave this server).
    pub(super) member: Option<super::cluster_ops::Member>,
    /// While recovering: when to try again.
    pub(super) retry: Option<super::recovery::Retry>,
}

pub struct Controller {
    /// Per changelog partition, the end offset at its last compaction.
    compacted: Mutex<std::collections::HashMap<(u32, u32), u64>>,
    /// Per pipeline stage, its tasks' watermarks (for idle partitions); in a cluster,
    /// with the other servers' as they share them.
    pub(super) clocks: Mutex<std::collections::HashMap<(String, u32), std::sync::Weak<StageClock>>>,
    /// Per shared pipeline, per server: its tasks in the pipeline's current upgrade.
    pub(super) probation_reports:
        Mutex<std::collections::HashMap<String, BTreeMap<String, crate::model::ProbationReport>>>,
    /// Pipelines whose upgrade this server's tasks are following, and whether the
    /// record changed since the follower last looked.
    pub(super) reconciling: Mutex<std::collections::HashMap<String, bool>>,
    /// Shared pipelines held here for a savepoint.
    pub(super) holds: Mutex<std::collections::HashMap<String, super::Hold>>,
    /// Per shared pipeline, per server: the partitions it holds.
    pub(super) held_reports:
        Mutex<std::collections::HashMap<String, BTreeMap<String, super::Held>>>,
    pub(super) db: Arc<Db>,
    pub(super) log: Arc<Log>,
    pub(super) registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    pub(super) pool: WorkerPool,
    pub(super) pipelines: Mutex<BTreeMap<String, Entry>>,
    pub(super) savepoints: Savepoints,
    /// The server's default Kafka bootstrap servers.
    pub(super) kafka_brokers: Option<String>,
    /// Set once the server joined a cluster.
    pub(super) cluster: std::sync::OnceLock<super::cluster_ops::ClusterLink>,
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
        }
    }
}

fn record_key(name: &str) -> Vec<u8> {
    [RECORD_PREFIX, name.as_bytes()].concat()
}

/// The operators between two repartitions, with the topics they read and write.
pub(super) struct Stage {
    pub(super) index: u32,
    pub(super) source: String,
    pub(super) sink: String,
    /// Indices into the spec's operators.
    pub(super) ops: Vec<usize>,
}

/// Refuses to change a pipeline a savepoint, restore or upgrade is working on.
fn busy(entry: &Entry) -> Result<(), ControlError> {
    match entry.busy {
        Some(with) => Err(ControlError::Busy {
            pipeline: entry.record.spec.name.clone(),
            with,
        }),
        None => Ok(()),
    }
}

/// The internal topic a pipeline repartitions through before operator `id`.
pub fn repartition_topic(pipeline: &str, id: &str) -> String {
    format!("{pipeline}.{id}.repartition")
}

/// Splits a pipeline at its repartitions.
pub(super) fn stages(spec: &PipelineSpec) -> Vec<Stage> {
    let source = spec
        .source
        .as_ref()
        .map(|t| t.topic.clone())
        .unwrap_or_default();
    let sink = spec
        .sink
        .as_ref()
        .map(|t| t.topic.clone())
        .unwrap_or_default();
    let mut stages = Vec::new();
    let mut current = Stage {
        index: 0,
        source,
        sink: String::new(),
        ops: Vec::new(),
    };
    for (i, op) in spec.operators.iter().enumerate() {
        if op.repartition {
            let topic = repartition_topic(&spec.name, op.id());
            current.sink = topic.clone();
            let index = current.index + 1;
            stages.push(std::mem::replace(
                &mut current,
                Stage {
                    index,
                    source: topic,
                    sink: String::new(),
                    ops: Vec::new(),
                },
            ));
        }
        current.ops.push(i);
    }
    current.sink = sink;
    stages.push(current);
    stages
}

/// The topics a pipeline owns: repartition and changelog topics.
fn internal_topics(log: &Log, spec: &PipelineSpec) -> Vec<String> {
    let ids: Vec<&str> = spec.operators.iter().map(|o| o.id()).collect();
    let mut topics: Vec<String> = stages(spec).into_iter().skip(1).map(|s| s.source).collect();
    topics.extend(
        changelog_topics(log, &spec.name, &ids)
            .into_iter()
            .map(|(_, _, t)| t.name().to_string()),
    );
    topics
}

/// Every topic a pipeline reads or writes, internal ones included.
fn topics_of(spec: &PipelineSpec) -> Vec<String> {
    let mut topics: Vec<String> = stages(spec)
        .into_iter()
        .flat_map(|s| [s.source, s.sink])
        .collect();
    topics.dedup();
    topics
}

impl Controller {
    pub fn new(
        db: Arc<Db>,
        log: Arc<Log>,
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
        workers: usize,
        savepoints: Savepoints,
    ) -> Self {
        let pool = WorkerPool::new(workers, Arc::clone(log.signal()));
        Controller {
            compacted: Mutex::default(),
            clocks: Mutex::default(),
            probation_reports: Mutex::default(),
            reconciling: Mutex::default(),
            holds: Mutex::default(),
            held_reports: Mutex::default(),
            db,
            log,
            registry,
            metrics,
            pool,
            pipelines: Mutex::new(BTreeMap::new()),
            savepoints,
            kafka_brokers: None,
            cluster: std::sync::OnceLock::new(),
        }
    }

    /// Pipelines whose topic references name no brokers use these.
    pub fn with_kafka_brokers(mut self, brokers: Option<String>) -> Self {
        self.kafka_brokers = brokers;
        self
    }

    /// The Kafka connection of a topic reference, when it lives in Kafka.
    pub(super) fn kafka(
        &self,
        topic: &TopicRef,
    ) -> Result<Option<kafka::Connection>, kafka::KafkaError> {
        match &topic.kafka {
            None => Ok(None),
            Some(endpoint) => {
                kafka::Connection::resolve(endpoint, &topic.topic, self.kafka_brokers.as_deref())
                    .map(Some)
            }
        }
    }

    /// How many partitions (= tasks) a stage has: its source topic's, in Kafka or here.
    pub(super) fn stage_partitions(
        &self,
        spec: &PipelineSpec,
        stage: &Stage,
    ) -> Result<u32, ControlError> {
        if stage.index == 0
            && let Some(source) = &spec.source
            && let Some(conn) = self
                .kafka(source)
                .map_err(|e| ControlError::Invalid(e.to_string()))?
        {
            return kafka::partition_count(&conn, &stage.source)
                .map_err(|e| ControlError::Conflict(format!("source: {e}")));
        }
        Ok(self.log.topic(&stage.source)?.partition_count())
    }

    pub fn savepoints(&self) -> &Savepoints {
        &self.savepoints
    }

    pub fn db(&self) -> &Arc<Db> {
        &self.db
    }

    pub fn log(&self) -> &Arc<Log> {
        &self.log
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Loads every stored pipeline and starts those that were running (after finishing
    /// any restore a crash interrupted).
    pub fn boot(&self) -> Result<(), ControlError> {
        let mut records = Vec::new();
        for item in self
            .db
            .rocks()
            .prefix_iterator_cf(self.db.cf(Cf::Meta), RECORD_PREFIX)
        {
            let (k, v) = item.map_err(StateError::from)?;
            if !k.starts_with(RECORD_PREFIX) {
                break;
            }
            let record: PipelineRecord =
                serde_json::from_slice(&v).map_err(|e| StateError::Corrupt {
                    what: "pipeline record",
                    detail: e.to_string(),
                })?;
            records.push(record);
        }
        // Restores a crash (or a failure) left half-done are finished first; one that
        // cannot be finished leaves its pipeline failed with the reason, never the boot.
        let journaled = self.journaled_restores()?;
        let mut unfinished = std::collections::BTreeMap::new();
        let mut finished = Vec::new();
        for name in journaled {
            match records.iter().find(|r| r.spec.name == name) {
                None => self.end_journal(&name)?,
                Some(r) => match self.finish_restore(&name, &r.spec, &r.operators) {
                    Ok(_) => finished.push(name),
                    Err(reason) => {
                        tracing::error!(pipeline = %name, "{reason}");
                        unfinished.insert(name, reason);
                    }
                },
            }
        }
        let mut pipelines = self.pipelines.lock().expect("pipelines lock");
        for mut record in records {
            if let Some(reason) = unfinished.remove(&record.spec.name) {
                self.set_state(&mut record, PipelineState::Failed, Some(reason))?;
            } else if finished.contains(&record.spec.name) && record.state == PipelineState::Failed
            {
                // An earlier boot could not finish the restore; this one did.
                self.set_state(&mut record, PipelineState::Stopped, None)?;
            }
            // An upgrade still on probation when the server stopped never committed: the
            // old version resumes from the last commit.
            for u in record
                .upgrades
                .iter_mut()
                .filter(|u| u.result == super::UpgradeResult::Probation)
            {
                u.result = super::UpgradeResult::RolledBack;
                u.reason = Some("the server stopped during the probation; the old version resumed from the last commit".into());
                u.finished_ms = Some(now_ms());
            }
            let name = record.spec.name.clone();
            let mut entry = Entry::idle(record);
            if matches!(
                entry.record.state,
                PipelineState::Running | PipelineState::Recovering
            ) {
                match self.run_entry(&mut entry) {
                    Ok(()) => {
                        self.set_state(&mut entry.record, PipelineState::Running, None)?;
                    }
                    Err(reason) => {
                        tracing::error!(pipeline = %name, "cannot resume: {reason}");
                        self.fail_or_recover(&mut entry, reason);
                    }
                }
            }
            pipelines.insert(name, entry);
        }
        drop(pipelines);
        self.refresh_gauges();
        Ok(())
    }

    /// Creates a pipeline and starts it. Nothing is kept if it cannot start.
    pub fn create(&self, spec: PipelineSpec) -> Result<PipelineStatus, ControlError> {
        spec.validate()
            .map_err(|e| ControlError::Invalid(e.to_string()))?;
        let source = spec.source.as_ref().ok_or_else(|| {
            ControlError::Invalid(
                "add a source: [source] topic = \"<topic>\" (a server pipeline reads a topic)"
                    .into(),
            )
        })?;
        let sink = spec.sink.as_ref().ok_or_else(|| {
            ControlError::Invalid(
                "add a sink: [sink] topic = \"<topic>\" (a server pipeline writes a topic)".into(),
            )
        })?;
        // In a cluster, see every server's uploads and pipelines first.
        self.sync_cluster()?;
        if self.distributed(&spec) && stages(&spec).len() > 1 {
            return Err(ControlError::Invalid(
                "a pipeline shared across a cluster cannot repartition yet (repartition topics live in one server's embedded log); drop `repartition = true` or run it on a server without --cluster".into(),
            ));
        }
        let mut pipelines = self.pipelines.lock().expect("pipelines lock");
        if pipelines.contains_key(&spec.name) {
            return Err(ControlError::Exists(spec.name.clone()));
        }
        let source_kafka = self
            .kafka(source)
            .map_err(|e| ControlError::Invalid(e.to_string()))?;
        let sink_kafka = self
            .kafka(sink)
            .map_err(|e| ControlError::Invalid(e.to_string()))?;
        let partitions = match &source_kafka {
            Some(conn) => kafka::partition_count(conn, &source.topic)
                .map_err(|e| ControlError::Invalid(format!("source: {e}")))?,
            None => self
                .log
                .topic(&source.topic)
                .map_err(|_| {
                    ControlError::Invalid(format!(
                        "source topic {:?} does not exist; create it first (eddy topic create {} --partitions N)",
                        source.topic, source.topic
                    ))
                })?
                .partition_count(),
        };
        let mut operators = Vec::new();
        for op in &spec.operators {
            let v = self.registry.resolve(&op.name, op.version).map_err(|e| match e {
                RegistryError::NotFound(_) => ControlError::Invalid(format!(
                    "operator {:?} is not in the registry; push it first (eddy operator push {} FILE.wasm)",
                    op.name, op.name
                )),
                RegistryError::NoSuchVersion { .. } => ControlError::Invalid(e.to_string()),
                other => other.into(),
            })?;
            operators.push(PinnedOperator {
                id: op.id().to_string(),
                name: v.name,
                version: v.version,
                digest: v.digest,
                state_version: 1,
            });
        }
        if sink.topic == source.topic && source_kafka == sink_kafka {
            return Err(ControlError::Invalid(
                "the sink topic must differ from the source topic".into(),
            ));
        }
        // The sink and any repartition topics get the source's partition count.
        for stage in stages(&spec).iter().skip(1) {
            self.log.ensure_topic(
                &stage.source,
                &TopicConfig {
                    partitions,
                    ..TopicConfig::default()
                },
            )?;
        }
        match &sink_kafka {
            Some(conn) => {
                kafka::ensure_topic(conn, &sink.topic, partitions, false)
                    .map_err(|e| ControlError::Invalid(format!("sink: {e}")))?;
            }
            None => {
                self.log.ensure_topic(
                    &sink.topic,
                    &TopicConfig {
                        partitions,
                        ..TopicConfig::default()
                    },
                )?;
            }
        }
        let now = now_ms();
        let mut record = PipelineRecord {
            spec,
            operators,
            state: PipelineState::Created,
            reason: None,
            created_ms: now,
            updated_ms: now,
            upgrades: Vec::new(),
        };
        if let Some(savepoint) = record.spec.from_savepoint.clone()
            && let Err(e) = self.restore_new(&mut record, &savepoint)
        {
            self.db.delete_pipeline_state(&record.spec.name)?;
            return Err(e);
        }
        let mut entry = Entry::idle(record);
        match self.run_entry(&mut entry) {
            Ok(()) => {}
            Err(reason) => {
                let record = &entry.record;
                // Nothing ran; remove what the attempt may have left (store ids, positions).
                self.db.delete_pipeline_state(&record.spec.name)?;
                return Err(ControlError::Invalid(format!(
                    "pipeline {:?} cannot start: {reason}",
                    record.spec.name
                )));
            }
        };
        self.set_state(&mut entry.record, PipelineState::Running, None)?;
        self.share(&entry.record);
        let name = entry.record.spec.name.clone();
        pipelines.insert(name.clone(), entry);
        drop(pipelines);
        self.refresh_gauges();
        self.status(&name)
    }

    /// Restores a pipeline being created from a savepoint (before anything runs).
    fn restore_new(
        &self,
        record: &mut PipelineRecord,
        savepoint: &str,
    ) -> Result<(), ControlError> {
        // The operators' state versions come from their `init`: start each once.
        for (pinned, op_spec) in record.operators.iter_mut().zip(&record.spec.operators) {
            let version = self.registry.version(&pinned.name, pinned.version)?;
            let component = self.registry.component(&version)?;
            let scope = StateScope {
                pipeline: record.spec.name.clone(),
                operator: pinned.id.clone(),
                partition: 0,
            };
            let state = OperatorState::new(Arc::clone(&self.db), scope, 1 << 20)?;
            let info = TaskInfo {
                pipeline: record.spec.name.clone(),
                operator: pinned.id.clone(),
                version: pinned.version,
                partition: 0,
                partition_count: 1,
            };
            let op = WasmOperator::start(
                component,
                info,
                op_spec.config_pairs(),
                state,
                Limits::from_settings(&record.spec.settings),
            )
            .map_err(|(e, _)| {
                ControlError::Invalid(format!(
                    "operator {}@{}: init failed: {}",
                    pinned.id,
                    pinned.version,
                    e.message()
                ))
            })?;
            pinned.state_version = op.state_version();
        }
        self.restore_created(&record.spec, &record.operators, savepoint)
    }

    /// Builds every task of a pipeline (instantiating and initializing its operators) and
    /// hands them to the workers; all or none.
    pub(super) fn start_tasks(
        &self,
        record: &mut PipelineRecord,
    ) -> Result<Vec<Arc<TaskHandle>>, String> {
        self.start_tasks_on(record, None)
    }

    /// Like [`Controller::start_tasks`], for the given partitions only (`None`: all).
    pub(super) fn start_tasks_on(
        &self,
        record: &mut PipelineRecord,
        only: Option<&[u32]>,
    ) -> Result<Vec<Arc<TaskHandle>>, String> {
        let spec = &record.spec;
        let settings = &spec.settings;
        // State that is behind its changelogs (lost, wiped) is rebuilt before anything runs.
        let ids: Vec<&str> = spec.operators.iter().map(|o| o.id()).collect();
        let replayed = catch_up(&self.db, &self.log, &spec.name, &ids)
            .map_err(|e| format!("rebuilding state from changelogs: {e}"))?;
        if replayed.records > 0 {
            tracing::info!(pipeline = %spec.name, "replayed {} changelog records into {} stores", replayed.records, replayed.stores);
        }
        let stages = stages(spec);
        let source_ref = spec
            .source
            .clone()
            .unwrap_or_else(|| TopicRef::embedded(""));
        let sink_ref = spec.sink.clone().unwrap_or_else(|| TopicRef::embedded(""));
        let source_kafka = self.kafka(&source_ref).map_err(|e| e.to_string())?;
        let sink_kafka = self.kafka(&sink_ref).map_err(|e| e.to_string())?;
        if settings.on_error == OnError::DeadLetter && sink_kafka.is_none() {
            let last_sink = self
                .log
                .topic(&stages.last().expect("at least one stage").sink)
                .map_err(|e| e.to_string())?;
            let dlq = format!("{}.dlq", spec.name);
            let config = TopicConfig {
                partitions: last_sink.partition_count(),
                ..TopicConfig::default()
            };
            self.log
                .ensure_topic(&dlq, &config)
                .map_err(|e| e.to_string())?;
        }
        let limits = Limits::from_settings(settings);
        let mut runners = Vec::new();
        let mut versions = Vec::new();
        // A later stage's watermark comes from the previous stage's tasks.
        let mut upstream_partitions = None;
        for stage in &stages {
            let first = stage.index == 0;
            let last = stage.index + 1 == stages.len() as u32;
            let stage_source_kafka = source_kafka.as_ref().filter(|_| first);
            let stage_sink_kafka = sink_kafka.as_ref().filter(|_| last);
            let source = match stage_source_kafka {
                Some(_) => None,
                None => Some(self.log.topic(&stage.source).map_err(|e| e.to_string())?),
            };
            let sink = match stage_sink_kafka {
                Some(_) => None,
                None => Some(self.log.topic(&stage.sink).map_err(|e| e.to_string())?),
            };
            let partitions = match (&source, stage_source_kafka) {
                (Some(t), _) => t.partition_count(),
                (None, Some(conn)) => kafka::partition_count(conn, &stage.source)
                    .map_err(|e| format!("source: {e}"))?,
                (None, None) => unreachable!("a stage's source is embedded or in Kafka"),
            };
            let sink_partitions = match stage_sink_kafka {
                Some(conn) => kafka::prepare(conn, &spec.name, &stage.sink, partitions)
                    .map_err(|e| format!("sink: {e}"))?,
                None => 0,
            };
            for p in (0..partitions).filter(|p| only.is_none_or(|o| o.contains(p))) {
                let id = TaskId {
                    pipeline: spec.name.clone(),
                    stage: stage.index,
                    partition: p,
                };
                let group = kafka::group_id(&spec.name);
                let mut consumer = None;
                let task_source: Box<dyn TaskSource> = match (&source, stage_source_kafka) {
                    (Some(t), _) => {
                        Box::new(TopicSource::new(Arc::clone(&self.log), Arc::clone(t), p))
                    }
                    (None, Some(conn)) => {
                        let s = kafka::KafkaSource::new(conn, &group, &stage.source, p)
                            .map_err(|e| e.to_string())?;
                        consumer = Some(s.consumer());
                        Box::new(s)
                    }
                    (None, None) => unreachable!("a stage's source is embedded or in Kafka"),
                };
                // A Kafka sink's producer fences the task's previous owner (a crashed
                // process, another server) before anything is read back from Kafka.
                let task_sink: Box<dyn Sink + Send> = match (&sink, stage_sink_kafka) {
                    (Some(t), _) => {
                        let s = TopicSink::new(
                            Arc::clone(&self.log),
                            &spec.name,
                            p,
                            partitions,
                            Arc::clone(t),
                        );
                        Box::new(if last { s } else { s.with_watermark_records() })
                    }
                    (None, Some(conn)) => Box::new(
                        kafka::KafkaSink::new(
                            conn,
                            &kafka::SinkTask {
                                pipeline: &spec.name,
                                stage: stage.index,
                                partition: p,
                                state_partitions: partitions,
                                main: &stage.sink,
                                main_partitions: sink_partitions,
                            },
                            settings.exactly_once,
                            consumer.map(|consumer| kafka::SourceOffsets {
                                consumer,
                                topic: stage.source.clone(),
                            }),
                        )
                        .map_err(|e| e.to_string())?,
                    ),
                    (None, None) => unreachable!("a stage's sink is embedded or in Kafka"),
                };
                if let Some(conn) = stage_sink_kafka {
                    // Local state may be behind the changelogs and offsets in Kafka (a crash
                    // after a transaction committed, an empty data dir, a partition another
                    // server ran): catch up first.
                    let op_ids: Vec<&str> =
                        stage.ops.iter().map(|&i| spec.operators[i].id()).collect();
                    let report = kafka::restore_task(&self.db, conn, &id, &op_ids)
                        .map_err(|e| format!("restoring task {p} from Kafka: {e}"))?;
                    if report.records > 0 || report.advanced_to.is_some() {
                        tracing::info!(pipeline = %spec.name, partition = p, ?report, "restored from Kafka");
                    }
                }
                let mut ops: Vec<Box<dyn Operator>> = Vec::new();
                for &i in &stage.ops {
                    let (pinned, op_spec) = (&record.operators[i], &spec.operators[i]);
                    let label = format!("operator {}@{}", pinned.id, pinned.version);
                    let version = self
                        .registry
                        .version(&pinned.name, pinned.version)
                        .map_err(|e| format!("{label}: {e}"))?;
                    let component = self
                        .registry
                        .component(&version)
                        .map_err(|e| format!("{label}: {e}"))?;
                    let scope = StateScope {
                        pipeline: spec.name.clone(),
                        operator: pinned.id.clone(),
                        partition: p,
                    };
                    let state = OperatorState::new(
                        Arc::clone(&self.db),
                        scope,
                        (settings.state_cache_mb as usize) << 20,
                    )
                    .map_err(|e| format!("{label}: {e}"))?;
                    let info = TaskInfo {
                        pipeline: spec.name.clone(),
                        operator: pinned.id.clone(),
                        version: pinned.version,
                        partition: p,
                        partition_count: partitions,
                    };
                    let op =
                        WasmOperator::start(component, info, op_spec.config_pairs(), state, limits)
                            .map_err(|(e, _)| format!("{label}: init failed: {}", e.message()))?;
                    versions.push((i, op.state_version()));
                    ops.push(Box::new(op));
                }
                let config = TaskConfig {
                    changelog: true,
                    upstream_partitions,
                    ..TaskConfig::from_settings(settings)
                };
                let task = Task::new(id.clone(), ops, config, Arc::clone(&self.db))
                    .map_err(|e| e.to_string())?;
                let handle = Arc::new(TaskHandle::new(id, task.committed_position().offset));
                let metrics_name = if stage.index == 0 {
                    spec.name.clone()
                } else {
                    format!("{}/{}", spec.name, stage.index)
                };
                runners.push(
                    TaskRunner::new(
                        task,
                        task_source,
                        task_sink,
                        settings.batch_size,
                        Arc::clone(&handle),
                        Some(self.metrics.task(&metrics_name, p)),
                    )
                    .with_clock(self.stage_clock(&spec.name, stage.index)),
                );
            }
            upstream_partitions = Some(partitions);
        }
        let handles = runners.iter().map(|r| Arc::clone(r.handle())).collect();
        for r in runners {
            self.pool.spawn(r);
        }
        for (i, v) in versions {
            record.operators[i].state_version = v;
        }
        Ok(handles)
    }

    /// The watermarks of a pipeline stage's tasks on this server, shared by its runners
    /// (kept while any of them runs).
    fn stage_clock(&self, pipeline: &str, stage: u32) -> Arc<StageClock> {
        let mut clocks = self.clocks.lock().expect("clocks lock");
        clocks.retain(|_, c| c.strong_count() > 0);
        let key = (pipeline.to_string(), stage);
        if let Some(c) = clocks.get(&key).and_then(std::sync::Weak::upgrade) {
            return c;
        }
        let c = Arc::new(StageClock::default());
        clocks.insert(key, Arc::downgrade(&c));
        c
    }

    pub(super) fn set_state(
        &self,
        record: &mut PipelineRecord,
        state: PipelineState,
        reason: Option<String>,
    ) -> Result<(), StateError> {
        record.state = state;
        record.reason = reason;
        record.updated_ms = now_ms();
        let mut wb = WriteBatch::default();
        wb.put_cf(
            self.db.cf(Cf::Meta),
            record_key(&record.spec.name),
            serde_json::to_vec(record).expect("records serialize"),
        );
        self.db.write(wb)
    }

    /// Stops a pipeline's tasks at a batch boundary, after they commit.
    pub(super) fn stop_tasks(&self, entry: &Entry) {
        for t in &entry.tasks {
            t.request_stop();
        }
        self.pool.wake();
        for t in &entry.tasks {
            if !t.wait(STOP_TIMEOUT) {
                tracing::warn!(task = %t.id, "task did not stop within {STOP_TIMEOUT:?}");
            }
        }
    }

    /// Starts a stopped, created or failed pipeline from its committed positions.
    pub fn start(&self, name: &str) -> Result<PipelineStatus, ControlError> {
        // In a cluster, first hear of everything other servers did: a restore made on
        // another server just now must drop this server's local state of the pipeline
        // before its tasks run here.
        if self.cluster.get().is_some() {
            self.sync_cluster()?;
        }
        // A restore that did not finish is finished here, outside the pipelines' lock
        // (it reads every file of the savepoint); the pipeline is claimed meanwhile.
        if self.unfinished_restore(name).is_some() {
            let _claim = self.claim_guard(name, "a restore")?;
            let record = self.record_and_tasks(name)?.0;
            self.finish_restore(name, &record.spec, &record.operators)
                .map_err(|reason| {
                    ControlError::Invalid(format!("pipeline {name:?} cannot start: {reason}"))
                })?;
        }
        let mut pipelines = self.pipelines.lock().expect("pipelines lock");
        let entry = pipelines
            .get_mut(name)
            .ok_or_else(|| ControlError::NotFound(name.to_string()))?;
        busy(entry)?;
        if entry.record.state != PipelineState::Running {
            self.run_entry(entry).map_err(|reason| {
                ControlError::Invalid(format!("pipeline {name:?} cannot start: {reason}"))
            })?;
            self.set_state(&mut entry.record, PipelineState::Running, None)?;
            self.share(&entry.record);
        }
        drop(pipelines);
        self.refresh_gauges();
        self.status(name)
    }

    /// Stops a running pipeline; its tasks commit first, so a start resumes exactly there.
    pub fn stop(&self, name: &str) -> Result<PipelineStatus, ControlError> {
        let mut pipelines = self.pipelines.lock().expect("pipelines lock");
        let entry = pipelines
            .get_mut(name)
            .ok_or_else(|| ControlError::NotFound(name.to_string()))?;
        busy(entry)?;
        if entry.record.state == PipelineState::Running {
            self.halt_entry(entry);
            self.set_state(&mut entry.record, PipelineState::Stopped, None)?;
            self.share(&entry.record);
        } else if entry.record.state == PipelineState::Recovering {
            // No more attempts.
            entry.retry = None;
            self.set_state(&mut entry.record, PipelineState::Stopped, None)?;
        }
        drop(pipelines);
        self.refresh_gauges();
        self.status(name)
    }

    /// Stops (if needed) and deletes a pipeline with all its state. Its topics stay.
    pub fn delete(&self, name: &str) -> Result<(), ControlError> {
        let shared = self.delete_here(name)?;
        if shared {
            self.share_deleted(name);
        }
        Ok(())
    }

    /// Deletes a pipeline on this server; `true` when it was shared with a cluster.
    pub(super) fn delete_here(&self, name: &str) -> Result<bool, ControlError> {
        let mut pipelines = self.pipelines.lock().expect("pipelines lock");
        let entry = pipelines
            .get_mut(name)
            .ok_or_else(|| ControlError::NotFound(name.to_string()))?;
        busy(entry)?;
        let shared = self.distributed(&entry.record.spec);
        self.leave_group(entry);
        self.halt_entry(entry);
        self.db.delete_pipeline_state(name)?;
        let mut wb = WriteBatch::default();
        wb.delete_cf(self.db.cf(Cf::Meta), record_key(name));
        self.db.write(wb)?;
        self.end_journal(name)?;
        // Repartition and changelog topics are the pipeline's own; its source, sink and
        // outputs stay.
        for topic in internal_topics(&self.log, &entry.record.spec) {
            match self.log.delete_topic(&topic) {
                Ok(()) | Err(LogError::NoSuchTopic(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let partitions = entry
            .tasks
            .iter()
            .map(|t| t.id.partition + 1)
            .max()
            .unwrap_or(0);
        pipelines.remove(name);
        drop(pipelines);
        self.metrics.remove_pipeline(name, partitions);
        self.refresh_gauges();
        Ok(shared)
    }

    /// Rebuilds a stopped pipeline's state from its changelogs: its stores and timers are
    /// wiped and replayed; positions stay.
    pub fn rebuild_state(&self, name: &str) -> Result<Replayed, ControlError> {
        let pipelines = self.pipelines.lock().expect("pipelines lock");
        let entry = pipelines
            .get(name)
            .ok_or_else(|| ControlError::NotFound(name.to_string()))?;
        if entry.record.state == PipelineState::Running {
            return Err(ControlError::Conflict(format!(
                "pipeline {name:?} is running; stop it before rebuilding its state"
            )));
        }
        self.db.delete_pipeline_stores(name)?;
        let ids: Vec<&str> = entry.record.spec.operators.iter().map(|o| o.id()).collect();
        catch_up(&self.db, &self.log, name, &ids)
            .map_err(|e| ControlError::Conflict(format!("rebuilding {name:?}: {e}")))
    }

    /// One pipeline's status.
    pub fn status(&self, name: &str) -> Result<PipelineStatus, ControlError> {
        let pipelines = self.pipelines.lock().expect("pipelines lock");
        let entry = pipelines
            .get(name)
            .ok_or_else(|| ControlError::NotFound(name.to_string()))?;
        Ok(self.describe(entry))
    }

    /// Every pipeline's status, by name.
    pub fn list(&self) -> Vec<PipelineStatus> {
        let pipelines = self.pipelines.lock().expect("pipelines lock");
        pipelines.values().map(|e| self.describe(e)).collect()
    }

    pub(super) fn describe(&self, entry: &Entry) -> PipelineStatus {
        let r = &entry.record;
        let source = r
            .spec
            .source
            .as_ref()
            .map(|t| t.topic.clone())
            .unwrap_or_default();
        let stages = stages(&r.spec);
        let shared_running = entry.member.is_some()
            && matches!(r.state, PipelineState::Running | PipelineState::Recovering);
        let mut tasks = if shared_running {
            self.cluster_tasks(entry)
        } else if entry.tasks.is_empty() {
            self.stored_tasks(&r.spec, &stages)
        } else {
            entry.tasks.iter().map(|t| t.status()).collect()
        };
        // Lag against each stage's source as it is now, not as the task last saw it.
        let kafka_source = r.spec.source.as_ref().is_some_and(|s| s.kafka.is_some());
        for t in &mut tasks {
            if t.stage == 0 && kafka_source {
                continue; // the task reports its Kafka partition's end itself
            }
            let Some(topic) = stages
                .get(t.stage as usize)
                .and_then(|s| self.log.topic(&s.source).ok())
            else {
                continue;
            };
            if t.partition < topic.partition_count() {
                t.end_offset = topic.end_offset(t.partition).max(t.committed_offset);
                t.lag = t.end_offset - t.committed_offset;
            }
        }
        PipelineStatus {
            name: r.spec.name.clone(),
            state: r.state,
            reason: r.reason.clone(),
            source,
            sink: r
                .spec
                .sink
                .as_ref()
                .map(|t| t.topic.clone())
                .unwrap_or_default(),
            operators: r.operators.clone(),
            tasks,
            spec: r.spec.clone(),
            upgrades: r.upgrades.clone(),
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
            let topic = self.log.topic(&stage.source).ok();
            out.extend((0..partitions).map(|p| {
                let id = TaskId {
                    pipeline: spec.name.clone(),
                    stage: stage.index,
                    partition: p,
                };
                let committed = load_position(&self.db, &id)
                    .map(|pos| pos.offset)
                    .unwrap_or(0);
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

    /// Turns a failed task into a failed pipeline (its other tasks stop after committing).
    /// Call periodically.
    pub fn supervise(&self) {
        let mut changed = false;
        let mut pipelines = self.pipelines.lock().expect("pipelines lock");
        for entry in pipelines.values_mut() {
            if entry.record.state != PipelineState::Running {
                continue;
            }
            let failure = entry.tasks.iter().find_map(|t| {
                let s = t.status();
                (s.state == TaskState::Failed)
                    .then(|| format!("{}: {}", t.id, s.failure.unwrap_or_default()))
            });
            if let Some(reason) = failure {
                self.halt_entry(entry);
                self.fail_or_recover(entry, reason);
                changed = true;
            }
        }
        drop(pipelines);
        if changed {
            self.refresh_gauges();
        }
        self.retry_recovering();
    }

    /// Stops every task after it commits, leaving pipelines marked as they are so the next
    /// boot resumes them (server shutdown).
    pub fn shutdown(&self) {
        let mut pipelines = self.pipelines.lock().expect("pipelines lock");
        for entry in pipelines.values_mut() {
            // Leaving the groups first, so no assignment starts tasks behind our back.
            self.leave_group(entry);
            for t in &entry.tasks {
                t.request_stop();
            }
        }
        self.pool.wake();
        for entry in pipelines.values() {
            for t in &entry.tasks {
                t.wait(STOP_TIMEOUT);
            }
        }
    }

    /// The pipeline (if any) that runs `name@version`.
    pub fn operator_in_use(&self, name: &str, version: u32) -> Option<String> {
        let pipelines = self.pipelines.lock().expect("pipelines lock");
        pipelines
            .values()
            .find(|e| {
                e.record
                    .operators
                    .iter()
                    .any(|o| o.name == name && o.version == version)
            })
            .map(|e| e.record.spec.name.clone())
    }

    /// The pipeline (if any) that reads or writes `topic`.
    pub fn topic_in_use(&self, topic: &str) -> Option<String> {
        let pipelines = self.pipelines.lock().expect("pipelines lock");
        pipelines
            .values()
            .find(|e| {
                topics_of(&e.record.spec)
                    .iter()
                    .chain(&internal_topics(&self.log, &e.record.spec))
                    .any(|t| t == topic)
            })
            .map(|e| e.record.spec.name.clone())
    }

    /// Compacts changelog partitions that grew by at least `min_growth` records since their
    /// last compaction, below the offset their local state reflects. Returns how many
    /// records went.
    pub fn compact_changelogs(&self, min_growth: u64) -> Result<u64, ControlError> {
        let specs: Vec<PipelineSpec> = self
            .pipelines
            .lock()
            .expect("pipelines lock")
            .values()
            .map(|e| e.record.spec.clone())
            .collect();
        let mut removed = 0;
        for spec in specs {
            let ids: Vec<&str> = spec.operators.iter().map(|o| o.id()).collect();
            for (operator, store, topic) in changelog_topics(&self.log, &spec.name, &ids) {
                for p in 0..topic.partition_count() {
                    let end = topic.end_offset(p);
                    let key = (topic.meta.id, p);
                    let last = self
                        .compacted
                        .lock()
                        .expect("compaction lock")
                        .get(&key)
                        .copied()
                        .unwrap_or(0);
                    if end < last + min_growth {
                        continue;
                    }
                    let scope = StateScope {
                        pipeline: spec.name.clone(),
                        operator: operator.clone(),
                        partition: p,
                    };
                    let below = crate::state::changelog::load_marker(&self.db, &scope, &store)?
                        .unwrap_or(end);
                    removed += self.log.compact_partition(&topic, p, below)?;
                    self.compacted
                        .lock()
                        .expect("compaction lock")
                        .insert(key, end);
                }
            }
        }
        Ok(removed)
    }

    /// Updates the gauges computed from pipeline records and state sizes.
    pub fn refresh_gauges(&self) {
        let pipelines = self.pipelines.lock().expect("pipelines lock");
        for state in ["created", "running", "stopped", "failed", "recovering"] {
            self.metrics.pipelines.with_label_values(&[state]).set(0);
        }
        for e in pipelines.values() {
            let state = serde_json::to_value(e.record.state)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            self.metrics.pipelines.with_label_values(&[&state]).inc();
            if let Ok(bytes) = self.db.pipeline_state_bytes(&e.record.spec.name) {
                self.metrics
                    .state_bytes
                    .with_label_values(&[&e.record.spec.name])
                    .set(bytes as i64);
            }
        }
    }
}
