//! The one place tasks are built: from a pipeline record, each stage's tasks with their
//! sources and sinks (embedded topics or Kafka), their local state caught up (from the
//! embedded changelogs, or from Kafka), and their operators started; then handed to the
//! worker pool. The control plane gets back only handles.

use super::clock::StageClock;
use super::operator::{OperatorStartError, OperatorTemplate};
use super::shadow::ShadowPlan;
use super::swap::{ConfigChange, SwapPlan, Version};
use super::{Operator, Task, TaskConfig, TaskError, TaskHandle, TaskRunner, WorkerPool};
use crate::kafka::{self, Connection, KafkaError};
use crate::log::{Log, LogError, ReplayError, TopicConfig, catch_up};
use crate::metrics::Metrics;
use crate::model::{
    Canary, OnError, PinnedOperator, PipelineRecord, PipelineSpec, ShadowState, Stage, TopicRef,
    stages, topology::stage_of,
};
use crate::registry::{OperatorVersion, Registry, RegistryError};
use crate::runtime::Limits;
use crate::state::{Db, TaskId};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};

mod endpoints;

/// Why a pipeline's tasks could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("rebuilding state from changelogs: {0}")]
    Replay(#[from] ReplayError),
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error("source: {0}")]
    Source(KafkaError),
    #[error("sink: {0}")]
    Sink(KafkaError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("restoring task {partition} from Kafka: {error}")]
    Restore { partition: u32, error: KafkaError },
    #[error("{label}: {error}")]
    Registry { label: String, error: RegistryError },
    #[error(transparent)]
    Operator(#[from] OperatorStartError),
    #[error(transparent)]
    Task(#[from] TaskError),
    #[error("{0}")]
    Inputs(String),
}

/// Makes the operators of one task: `(stage, partition, partitions of the stage)`.
pub type MakeOperators<'a> =
    dyn FnMut(&Stage, u32, u32) -> Result<Vec<Box<dyn Operator>>, StartError> + 'a;

/// Builds tasks and runs them on its worker pool.
pub struct TaskFactory {
    db: Arc<Db>,
    log: Arc<Log>,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    pool: WorkerPool,
    /// The server's default Kafka bootstrap servers.
    kafka_brokers: Option<String>,
    /// Per pipeline stage, its tasks' watermarks on this server (for idle partitions),
    /// kept while any of its tasks runs.
    clocks: Mutex<HashMap<(String, u32), Weak<StageClock>>>,
    /// The restores from Kafka under way, for the status to show.
    restores: Mutex<HashMap<TaskId, Arc<kafka::RestoreProgress>>>,
    /// One restore of a task's local state at a time (a task's start, a standby's
    /// refresh, a savepoint's gathering).
    restore_locks: Mutex<HashMap<TaskId, Arc<Mutex<()>>>>,
}

impl TaskFactory {
    /// A factory whose tasks run on `workers` threads.
    pub fn new(
        db: Arc<Db>,
        log: Arc<Log>,
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
        workers: usize,
    ) -> Self {
        let pool = WorkerPool::new(workers, Arc::clone(log.signal()));
        TaskFactory {
            db,
            log,
            registry,
            metrics,
            pool,
            kafka_brokers: None,
            clocks: Mutex::default(),
            restores: Mutex::default(),
            restore_locks: Mutex::default(),
        }
    }

    /// How far the restore of task `id` is (restored, to restore, in changelog
    /// offsets), while it runs.
    pub fn restore_progress(&self, id: &TaskId) -> Option<(u64, u64)> {
        let restores = self.restores.lock().expect("restores lock");
        restores.get(id).map(|p| p.get())
    }

    /// Held while a task's local state is brought up to Kafka: one restore at a time.
    pub fn restore_lock(&self, id: &TaskId) -> Arc<Mutex<()>> {
        let mut locks = self.restore_locks.lock().expect("restore locks");
        Arc::clone(locks.entry(id.clone()).or_default())
    }

    /// Pipelines whose topic references name no brokers use these.
    pub fn with_kafka_brokers(mut self, brokers: Option<String>) -> Self {
        self.kafka_brokers = brokers;
        self
    }

    pub fn workers(&self) -> usize {
        self.pool.threads()
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

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The Kafka connection of a topic reference, when it lives in Kafka.
    pub fn kafka(&self, topic: &TopicRef) -> Result<Option<Connection>, KafkaError> {
        match &topic.kafka {
            None => Ok(None),
            Some(endpoint) => {
                Connection::resolve(endpoint, &topic.topic, self.kafka_brokers.as_deref()).map(Some)
            }
        }
    }

    /// The Kafka cluster where a stage's tasks commit (their changelogs, positions and
    /// outputs), when it is in Kafka: the sink's for the last stage, the source's for an
    /// earlier one that repartitions through Kafka.
    pub fn stage_sink(
        &self,
        record: &PipelineRecord,
        stage: &Stage,
    ) -> Result<Option<Connection>, KafkaError> {
        let spec = &record.spec;
        let last = stage.index + 1 == stages(spec).len() as u32;
        let end = match last {
            true => spec.sink.as_ref(),
            false if record.repartitions_in_kafka() => spec.primary_source(),
            false => None,
        };
        end.map_or(Ok(None), |t| self.kafka(t))
    }

    /// How many partitions (= tasks) a stage has: its source topic's, in Kafka or here.
    /// (A repartition topic in Kafka has the source's: it is created with them.)
    pub fn stage_partitions(&self, spec: &PipelineSpec, stage: &Stage) -> Result<u32, StartError> {
        if let Some(source) = spec.primary_source()
            && let Some(conn) = self.kafka(source)?
            && (stage.is_first() || self.log.topic(&stage.source).is_err())
        {
            return kafka::partition_count(&conn, &source.topic).map_err(StartError::Source);
        }
        Ok(self.log.topic(&stage.source)?.partition_count())
    }

    /// The stage of the pipeline's shadow, while one runs, and how to run it in its
    /// tasks (`Err`: why it cannot). The partitions are the stage's, set per task.
    #[allow(clippy::type_complexity)]
    fn shadow_plan(&self, record: &PipelineRecord) -> Option<(u32, Result<ShadowPlan, String>)> {
        let run = record.shadow.as_ref()?;
        if run.state != ShadowState::Running {
            return None;
        }
        let pinned = &run.operator;
        let i = record.operators.iter().position(|o| o.id == pinned.id)?;
        let (stage, local) = stage_of(&record.spec, i).expect("every operator is in a stage");
        let plan = self
            .template_of(record, i, pinned, run.config.as_ref())
            .map(|template| ShadowPlan {
                stage: stage.index,
                local,
                template,
                partitions: 0,
                db: Arc::clone(&self.db),
                run: run.started_ms,
            });
        Some((stage.index, plan.map_err(|e| e.to_string())))
    }

    /// How to start every operator of a pipeline (by its index in the spec).
    fn templates(&self, record: &PipelineRecord) -> Result<Vec<OperatorTemplate>, StartError> {
        record
            .operators
            .iter()
            .enumerate()
            .map(|(i, pinned)| self.template_of(record, i, pinned, None))
            .collect()
    }

    /// How to start version `pinned` of operator `i` (by its index in the spec) with
    /// `config` (the spec's when `None`).
    fn template_of(
        &self,
        record: &PipelineRecord,
        i: usize,
        pinned: &PinnedOperator,
        config: Option<&BTreeMap<String, String>>,
    ) -> Result<OperatorTemplate, StartError> {
        let version = self
            .registry
            .version(&pinned.name, pinned.version)
            .map_err(|error| registry_error(pinned, error))?;
        let config = match config {
            Some(c) => c.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            None => record.spec.operators[i].config_pairs(),
        };
        self.template(record, pinned, &version, config)
    }

    /// How to start the canary's operator in its partitions, if the pipeline has one:
    /// the operator's index in the spec, the canary, and the template.
    fn canary_template<'r>(
        &self,
        record: &'r PipelineRecord,
    ) -> Result<Option<(usize, &'r Canary, OperatorTemplate)>, StartError> {
        let Some(canary) = &record.canary else {
            return Ok(None);
        };
        let pinned = &canary.operator;
        let Some(i) = record.operators.iter().position(|o| o.id == pinned.id) else {
            return Ok(None);
        };
        let template = self.template_of(record, i, pinned, canary.config.as_ref())?;
        Ok(Some((i, canary, template)))
    }

    fn template(
        &self,
        record: &PipelineRecord,
        pinned: &PinnedOperator,
        version: &OperatorVersion,
        config: Vec<(String, String)>,
    ) -> Result<OperatorTemplate, StartError> {
        let settings = &record.spec.settings;
        let component = self
            .registry
            .component(version)
            .map_err(|error| registry_error(pinned, error))?;
        Ok(OperatorTemplate::new(
            component,
            &record.spec.name,
            &pinned.id,
            version.version,
            config,
            Limits::from_settings(settings),
            (settings.state_cache_mb as usize) << 20,
        ))
    }

    /// Starts each operator of a pipeline being created once, to learn the state format
    /// its `init` declares, and pins it.
    pub fn probe_state_versions(&self, record: &mut PipelineRecord) -> Result<(), StartError> {
        let templates = self.templates(record)?;
        for (pinned, template) in record.operators.iter_mut().zip(templates) {
            let template = OperatorTemplate {
                cache_bytes: 1 << 20,
                ..template
            };
            pinned.state_version = template.start(&self.db, 0, 1)?.state_version();
        }
        Ok(())
    }

    /// Builds the tasks of a pipeline (all its partitions, or `only` these) with its
    /// registered operators and starts them; all or none. The record's operators get
    /// the state versions their `init` declared.
    pub fn start(
        &self,
        record: &mut PipelineRecord,
        only: Option<&[u32]>,
    ) -> Result<Vec<Arc<TaskHandle>>, StartError> {
        if only.is_some_and(<[u32]>::is_empty) {
            return Ok(Vec::new());
        }
        let templates = self.templates(record)?;
        let canary = self.canary_template(record)?;
        let mut versions = Vec::new();
        let handles = self.start_with(record, only, &mut |stage, partition, partitions| {
            let mut ops: Vec<Box<dyn Operator>> = Vec::new();
            for &i in &stage.ops {
                let template = match &canary {
                    Some((at, c, t)) if *at == i && c.covers(partition) => t,
                    _ => &templates[i],
                };
                let op = template.start(&self.db, partition, partitions)?;
                versions.push((i, op.state_version()));
                ops.push(Box::new(op));
            }
            Ok(ops)
        })?;
        for (i, v) in versions {
            record.operators[i].state_version = v;
        }
        Ok(handles)
    }

    /// Like [`TaskFactory::start`], with the operators `make` builds (a benchmark runs
    /// native operators through the server's task path this way).
    pub fn start_with(
        &self,
        record: &PipelineRecord,
        only: Option<&[u32]>,
        make: &mut MakeOperators<'_>,
    ) -> Result<Vec<Arc<TaskHandle>>, StartError> {
        let runners = self.build(record, only, make)?;
        let handles = runners.iter().map(|r| Arc::clone(r.handle())).collect();
        for r in runners {
            self.pool.spawn(r);
        }
        Ok(handles)
    }

    fn build(
        &self,
        record: &PipelineRecord,
        only: Option<&[u32]>,
        make: &mut MakeOperators<'_>,
    ) -> Result<Vec<TaskRunner>, StartError> {
        let spec = &record.spec;
        // State that is behind its changelogs (lost, wiped) is rebuilt before anything runs.
        let ids: Vec<&str> = spec.operators.iter().map(|o| o.id()).collect();
        let replayed = catch_up(&self.db, &self.log, &spec.name, &ids)?;
        if replayed.records > 0 {
            tracing::info!(pipeline = %spec.name, "replayed {} changelog records into {} stores", replayed.records, replayed.stores);
        }
        let stages = kafka::stages_of(record);
        // A shared pipeline's stages meet in Kafka, on the source's cluster (so the first
        // stage's source offsets go into its transactions).
        let between = record.repartitions_in_kafka();
        let ends = Ends {
            source: self.kafka(spec.primary_source().unwrap_or(&TopicRef::embedded("")))?,
            sink: self.kafka(spec.sink.as_ref().unwrap_or(&TopicRef::embedded("")))?,
        };
        if spec.settings.on_error == OnError::DeadLetter && ends.sink.is_none() {
            let last = stages.last().expect("at least one stage");
            let config = TopicConfig {
                partitions: self.log.topic(&last.sink)?.partition_count(),
                ..TopicConfig::default()
            };
            self.log
                .ensure_topic(&spec.port_topics().topic("dlq"), &config)?;
        }
        let shadow = self.shadow_plan(record);
        let names = kafka::KafkaNames::of(record);
        if between && spec.settings.exactly_once {
            self.fence_later_stages(record, &stages, only)?;
        }
        let mut runners = Vec::new();
        // A later stage's watermark comes from the previous stage's tasks.
        let mut upstream_partitions = None;
        for stage in &stages {
            let last = stage.index + 1 == stages.len() as u32;
            let io = StageIo {
                source: ends.source.as_ref().filter(|_| stage.is_first() || between),
                sink: match last {
                    true => ends.sink.as_ref(),
                    false => ends.source.as_ref().filter(|_| between),
                },
                last,
            };
            let partitions = match io.source {
                Some(conn) => {
                    kafka::partition_count(conn, &stage.source).map_err(StartError::Source)?
                }
                None => self.log.topic(&stage.source)?.partition_count(),
            };
            let inputs = self.stage_inputs(stage, partitions)?;
            let sink_partitions = match io.sink {
                Some(conn) => {
                    if !last {
                        // Like Kafka Streams' `-repartition` topics: the stage's partitions,
                        // and kept until read (records carry event times, which a time
                        // retention would take for their age).
                        let n = kafka::ensure_topic_with(
                            conn,
                            &stage.sink,
                            partitions,
                            &[("retention.ms", "-1")],
                        )
                        .map_err(StartError::Sink)?;
                        if n != partitions {
                            return Err(StartError::Inputs(format!(
                                "the repartition topic {} has {n} partition(s) and the pipeline's source {partitions}: delete the topic (it holds nothing a stopped pipeline needs once its later stages caught up) or give the source as many",
                                stage.sink
                            )));
                        }
                    }
                    kafka::prepare(conn, &names, &stage.sink, partitions)
                        .map_err(StartError::Sink)?
                }
                None => 0,
            };
            let wanted: Vec<u32> = (0..partitions)
                .filter(|p| only.is_none_or(|o| o.contains(p)))
                .collect();
            let counts = (partitions, sink_partitions);
            let ends = self.stage_endpoints(record, stage, &io, &wanted, counts, &inputs)?;
            for (p, (sources, source, sink)) in wanted.into_iter().zip(ends) {
                let id = TaskId {
                    pipeline: spec.name.clone(),
                    stage: stage.index,
                    partition: p,
                };
                let config = TaskConfig {
                    changelog: true,
                    upstream_partitions,
                    sources,
                    ..TaskConfig::from_settings(&spec.settings)
                };
                let ops = make(stage, p, partitions)?;
                let mut task = Task::new(id.clone(), ops, config, Arc::clone(&self.db))?;
                // A shadow that cannot go on says why; the task runs without it.
                let shadow_failure = match shadow.as_ref().filter(|s| s.0 == stage.index) {
                    Some((_, Ok(plan))) => task
                        .start_shadow(
                            &ShadowPlan {
                                partitions,
                                ..plan.clone()
                            },
                            false,
                        )
                        .err(),
                    Some((_, Err(reason))) => Some(reason.clone()),
                    None => None,
                };
                let handle = Arc::new(TaskHandle::new(
                    id,
                    task.committed_position().offset,
                    Arc::clone(self.log.signal()),
                ));
                if let Some(reason) = shadow_failure {
                    handle.update(|s| s.shadow_failure = Some(reason));
                }
                let metrics_name = match stage.index {
                    0 => spec.name.clone(),
                    s => format!("{}/{s}", spec.name),
                };
                runners.push(
                    TaskRunner::new(task, source, sink, handle)
                        .with_metrics(self.metrics.task(&metrics_name, p))
                        .with_clock(self.stage_clock(&spec.name, stage.index)),
                );
            }
            upstream_partitions = Some(partitions);
        }
        Ok(runners)
    }

    /// How to move operator `i` of a pipeline from `old` to `target` in its tasks, and
    /// from one config to another when `changes` says (both versions compiled before
    /// anything moves).
    pub fn swap_plan(
        &self,
        record: &PipelineRecord,
        i: usize,
        old: &PinnedOperator,
        target: &OperatorVersion,
        changes: &ConfigChange,
    ) -> Result<SwapPlan, StartError> {
        let pairs = |c: &BTreeMap<String, String>| -> Vec<(String, String)> {
            c.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        let spec_config = &record.spec.operators[i].config;
        let config = pairs(changes.old.as_ref().unwrap_or(spec_config));
        let new_config = pairs(changes.new.as_ref().unwrap_or(spec_config));
        let old_version = self
            .registry
            .version(&old.name, old.version)
            .map_err(|error| registry_error(old, error))?;
        let old_template = self.template(record, old, &old_version, config.clone())?;
        let new_pinned = PinnedOperator {
            id: old.id.clone(),
            name: target.name.clone(),
            version: target.version,
            digest: target.digest.clone(),
            state_version: old.state_version,
        };
        let new_template = self.template(record, &new_pinned, target, new_config)?;
        let (stage, local) = stage_of(&record.spec, i).expect("every operator is in a stage");
        Ok(SwapPlan {
            stage: stage.index,
            local,
            old: Version {
                template: old_template,
                pinned: old.clone(),
            },
            new: Version {
                template: new_template,
                pinned: new_pinned,
            },
            partitions: self.stage_partitions(&record.spec, &stage)?,
            db: Arc::clone(&self.db),
        })
    }

    /// The watermarks of a pipeline stage's tasks on this server, shared by its runners.
    fn stage_clock(&self, pipeline: &str, stage: u32) -> Arc<StageClock> {
        let mut clocks = self.clocks.lock().expect("clocks lock");
        clocks.retain(|_, c| c.strong_count() > 0);
        let key = (pipeline.to_string(), stage);
        if let Some(c) = clocks.get(&key).and_then(Weak::upgrade) {
            return c;
        }
        let c = Arc::new(StageClock::default());
        clocks.insert(key, Arc::downgrade(&c));
        c
    }

    /// The clock of a stage with tasks on this server, if any.
    pub fn clock(&self, pipeline: &str, stage: u32) -> Option<Arc<StageClock>> {
        self.clocks
            .lock()
            .expect("clocks lock")
            .get(&(pipeline.to_string(), stage))
            .and_then(Weak::upgrade)
    }

    /// Every stage clock with tasks on this server: `(pipeline, stage)` and the clock.
    pub fn clocks(&self) -> Vec<((String, u32), Arc<StageClock>)> {
        self.clocks
            .lock()
            .expect("clocks lock")
            .iter()
            .filter_map(|(k, c)| Some((k.clone(), c.upgrade()?)))
            .collect()
    }
}

/// A pipeline's ends in Kafka (`None`: an embedded topic).
struct Ends {
    source: Option<Connection>,
    sink: Option<Connection>,
}

/// Where one stage reads and writes.
struct StageIo<'a> {
    /// The stage reads Kafka: the pipeline's source, or a repartition topic there.
    source: Option<&'a Connection>,
    /// The stage writes Kafka: the pipeline's sink, or a repartition topic there.
    sink: Option<&'a Connection>,
    /// The last stage (an earlier one writes a repartition topic).
    last: bool,
}

fn registry_error(pinned: &PinnedOperator, error: RegistryError) -> StartError {
    StartError::Registry {
        label: format!("operator {}@{}", pinned.id, pinned.version),
        error,
    }
}
