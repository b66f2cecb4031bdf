//! The one place tasks are built: from a pipeline record, each stage's tasks with their
//! sources and sinks (embedded topics or Kafka), their local state caught up (from the
//! embedded changelogs, or from Kafka), and their operators started; then handed to the
//! worker pool. The control plane gets back only handles.

use super::clock::StageClock;
use super::operator::{OperatorStartError, OperatorTemplate};
use super::shadow::ShadowPlan;
use super::swap::{ConfigChange, SwapPlan, Version};
use super::{
    Inputs, Operator, Task, TaskConfig, TaskError, TaskHandle, TaskRunner, TaskSourceInfo,
    WorkerPool,
};
use crate::io::{Sink, TaskSource};
use crate::kafka::{self, Connection, KafkaError};
use crate::log::{Log, LogError, ReplayError, TopicConfig, TopicSink, TopicSource, catch_up};
use crate::metrics::Metrics;
use crate::model::{
    Canary, InputKind, OnError, PinnedOperator, PipelineRecord, PipelineSpec, ShadowState, Stage,
    TopicRef, stages, topology::stage_of,
};
use crate::registry::{OperatorVersion, Registry, RegistryError};
use crate::runtime::Limits;
use crate::state::{Db, TaskId};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};

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

    /// How far the restores of `pipeline`'s tasks of `partition` are (restored, to
    /// restore, in changelog offsets), while any runs.
    pub fn restore_progress(&self, pipeline: &str, partition: u32) -> Option<(u64, u64)> {
        let restores = self.restores.lock().expect("restores lock");
        restores
            .iter()
            .filter(|(id, _)| id.pipeline == pipeline && id.partition == partition)
            .map(|(_, p)| p.get())
            .reduce(|a, b| (a.0 + b.0, a.1 + b.1))
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

    /// How many partitions (= tasks) a stage has: its source topic's, in Kafka or here.
    pub fn stage_partitions(&self, spec: &PipelineSpec, stage: &Stage) -> Result<u32, StartError> {
        if stage.is_first()
            && let Some(source) = spec.primary_source()
            && let Some(conn) = self.kafka(source)?
        {
            return kafka::partition_count(&conn, &stage.source).map_err(StartError::Source);
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
        let stages = stages(spec);
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
        let mut runners = Vec::new();
        // A later stage's watermark comes from the previous stage's tasks.
        let mut upstream_partitions = None;
        for stage in &stages {
            let last = stage.index + 1 == stages.len() as u32;
            let io = StageIo {
                source: ends.source.as_ref().filter(|_| stage.is_first()),
                sink: ends.sink.as_ref().filter(|_| last),
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
                Some(conn) => kafka::prepare(conn, &names, &stage.sink, partitions)
                    .map_err(StartError::Sink)?,
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

    /// The sources and sink of each of a stage's tasks `wanted`. With a Kafka sink each
    /// task first restores its state from the changelogs, mostly waiting on the broker:
    /// several partitions do that at once (see `startup.rs`).
    fn stage_endpoints(
        &self,
        record: &PipelineRecord,
        stage: &Stage,
        io: &StageIo<'_>,
        wanted: &[u32],
        (partitions, sink_partitions): (u32, u32),
        inputs: &[(crate::model::InputSpec, u32)],
    ) -> Result<Vec<TaskEnds>, StartError> {
        let one = |p: u32| -> Result<TaskEnds, StartError> {
            let id = TaskId {
                pipeline: record.spec.name.clone(),
                stage: stage.index,
                partition: p,
            };
            let sources = task_sources(inputs, p, partitions);
            let (source, sink) = self.endpoints(
                record,
                stage,
                io,
                &id,
                (partitions, sink_partitions),
                &sources,
            )?;
            Ok((sources, source, sink))
        };
        if io.sink.is_none() {
            return wanted.iter().map(|&p| one(p)).collect();
        }
        super::side_by_side(wanted, super::startup_width(), |&p| one(p))
    }

    /// A stage's inputs with their partition counts (empty after a repartition). The
    /// stream and table inputs must have the stage's partitions: task `p` reads
    /// partition `p` of each.
    fn stage_inputs(
        &self,
        stage: &Stage,
        partitions: u32,
    ) -> Result<Vec<(crate::model::InputSpec, u32)>, StartError> {
        let mut out = Vec::new();
        for input in &stage.inputs {
            let n = match self.kafka(&input.topic)? {
                Some(conn) => {
                    kafka::partition_count(&conn, &input.topic.topic).map_err(StartError::Source)?
                }
                None => self.log.topic(&input.topic.topic)?.partition_count(),
            };
            if input.kind != InputKind::Broadcast && !input.repartition && n != partitions {
                return Err(StartError::Inputs(format!(
                    "input {:?} (topic {}) has {n} partition(s) and the pipeline's tasks read {partitions} (input {:?}): stream and table inputs must be co-partitioned (same partition count, records keyed alike), so that task p reads partition p of each; give the topics the same partition count, or set `repartition = true` on the input (every task then reads all of it and keeps its own keys), or make a small input `kind = \"broadcast\"`",
                    input.name, input.topic.topic, stage.inputs[0].name
                )));
            }
            out.push((input.clone(), n));
        }
        Ok(out)
    }

    /// The readers of a task's sources, with the Kafka sources whose offsets the pipeline's
    /// group records (broadcast partitions have no one owner, so none of theirs).
    fn readers(
        &self,
        record: &PipelineRecord,
        stage: &Stage,
        io: &StageIo<'_>,
        p: u32,
        sources: &[TaskSourceInfo],
    ) -> Result<(Inputs, Vec<KafkaOffset>), StartError> {
        let group = kafka::KafkaNames::of(record).group();
        let mut owned = Vec::new();
        let mut kafka_reader = |i: usize, conn: Connection, topic: &str, q: u32, owner: bool| {
            let s = kafka::KafkaSource::new(&conn, &group, topic, q)?;
            if owner {
                owned.push(KafkaOffset {
                    conn,
                    consumer: s.consumer(),
                    offset: (i, topic.to_string(), q),
                });
            }
            Ok::<_, KafkaError>(Box::new(s) as Box<dyn TaskSource>)
        };
        if sources.len() < 2 {
            // One source: the stage's (the input, or the previous stage's topic).
            let reader: Box<dyn TaskSource> = match io.source {
                None => Box::new(TopicSource::new(
                    Arc::clone(&self.log),
                    self.log.topic(&stage.source)?,
                    p,
                )),
                Some(conn) => kafka_reader(0, conn.clone(), &stage.source, p, true)?,
            };
            return Ok((Inputs::one(reader), owned));
        }
        let mut readers = Vec::new();
        for (i, s) in sources.iter().enumerate() {
            let input = stage
                .inputs
                .iter()
                .find(|input| *input.name == *s.input)
                .expect("a task's sources come from its stage's inputs");
            let reader: Box<dyn TaskSource> = match self.kafka(&input.topic)? {
                None => Box::new(TopicSource::new(
                    Arc::clone(&self.log),
                    self.log.topic(&s.topic)?,
                    s.partition,
                )),
                Some(conn) => {
                    // Broadcast and repartitioned partitions are read by every task.
                    let owner = s.kind != InputKind::Broadcast && s.repartition.is_none();
                    kafka_reader(i, conn, &s.topic, s.partition, owner)
                        .map_err(StartError::Source)?
                }
            };
            readers.push((reader, s.kind));
        }
        Ok((Inputs::new(readers), owned))
    }

    /// The sources and sink of one task; with a Kafka sink, the task's local state is
    /// first caught up with what Kafka holds.
    fn endpoints(
        &self,
        record: &PipelineRecord,
        stage: &Stage,
        io: &StageIo<'_>,
        id: &TaskId,
        (partitions, sink_partitions): (u32, u32),
        sources: &[TaskSourceInfo],
    ) -> Result<(Inputs, Box<dyn Sink + Send>), StartError> {
        let spec = &record.spec;
        let p = id.partition;
        let (readers, owned) = self.readers(record, stage, io, p, sources)?;
        // A Kafka sink's producer fences the task's previous owner (a crashed process,
        // another server) before anything is read back from Kafka.
        let sink: Box<dyn Sink + Send> = match io.sink {
            None => {
                let s = TopicSink::new(
                    Arc::clone(&self.log),
                    &spec.name,
                    p,
                    partitions,
                    self.log.topic(&stage.sink)?,
                )
                .with_ports(spec.port_topics());
                Box::new(if io.last {
                    s
                } else {
                    s.with_watermark_records()
                })
            }
            Some(conn) => {
                let names = kafka::KafkaNames::of(record);
                let task = kafka::SinkTask {
                    pipeline: &spec.name,
                    names: &names,
                    stage: stage.index,
                    partition: p,
                    state_partitions: partitions,
                    main: &stage.sink,
                    main_partitions: sink_partitions,
                };
                // Offsets go into the transaction when their group lives on the sink's cluster.
                let owned: Vec<KafkaOffset> =
                    owned.into_iter().filter(|o| o.conn == *conn).collect();
                let offsets = owned.first().map(|first| kafka::SourceOffsets {
                    consumer: Arc::clone(&first.consumer),
                    sources: owned.iter().map(|o| o.offset.clone()).collect(),
                });
                let s = kafka::KafkaSink::new(conn, &task, spec.settings.exactly_once, offsets)?
                    .with_ports(spec.port_topics());
                // Local state may be behind the changelogs and offsets in Kafka (a crash
                // after a transaction committed, an empty data dir, a partition another
                // server ran): catch up first.
                let ops: Vec<&str> = stage.ops.iter().map(|&i| spec.operators[i].id()).collect();
                let progress = Arc::new(kafka::RestoreProgress::default());
                let restores = || self.restores.lock().expect("restores lock");
                let lock = self.restore_lock(id);
                let held = lock.lock().expect("restore lock");
                restores().insert(id.clone(), Arc::clone(&progress));
                let report = kafka::restore_task(&self.db, conn, (id, &names), &ops, &progress);
                drop(held);
                restores().remove(id);
                // A failed restore counts too: what it covered is in RocksDB (the next
                // attempt goes on from there).
                self.metrics
                    .restored
                    .with_label_values(&[&spec.name])
                    .inc_by(progress.get().0);
                let report = report.map_err(|error| StartError::Restore {
                    partition: p,
                    error,
                })?;
                if report.records > 0 || report.advanced_to.is_some() {
                    tracing::info!(pipeline = %spec.name, partition = p, ?report, "restored from Kafka");
                }
                Box::new(s)
            }
        };
        Ok((readers, sink))
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

/// A Kafka source a task owns: its offset goes to the pipeline's group.
struct KafkaOffset {
    conn: Connection,
    consumer: Arc<rdkafka::consumer::BaseConsumer<crate::kafka::EndIsExpected>>,
    /// The source's index in the task, its topic and partition.
    offset: (usize, String, u32),
}

/// The sources of task `p` of a stage of `tasks` tasks with `inputs`: partition `p` of
/// each stream and table input, every partition of each broadcast or repartitioned input.
fn task_sources(
    inputs: &[(crate::model::InputSpec, u32)],
    p: u32,
    tasks: u32,
) -> Vec<TaskSourceInfo> {
    let mut out = Vec::new();
    for (input, partitions) in inputs {
        let name: Arc<str> = Arc::from(input.name.as_str());
        let whole = input.kind == InputKind::Broadcast || input.repartition;
        let read = if whole {
            (0..*partitions).collect()
        } else {
            vec![p]
        };
        for q in read {
            out.push(TaskSourceInfo {
                input: Arc::clone(&name),
                kind: input.kind,
                topic: input.topic.topic.clone(),
                partition: q,
                repartition: input.repartition.then_some(tasks),
            });
        }
    }
    out
}

/// A task's sources (as named in its config), its readers and its sink.
type TaskEnds = (Vec<TaskSourceInfo>, Inputs, Box<dyn Sink + Send>);

/// A pipeline's ends in Kafka (`None`: an embedded topic).
struct Ends {
    source: Option<Connection>,
    sink: Option<Connection>,
}

/// Where one stage reads and writes.
struct StageIo<'a> {
    /// The stage reads the pipeline's Kafka source.
    source: Option<&'a Connection>,
    /// The stage writes the pipeline's Kafka sink.
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
