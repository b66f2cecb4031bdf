//! Where a factory's tasks read and write: their readers (embedded or Kafka), their
//! sinks, and with a Kafka sink the restore of their state from Kafka first.

use super::{StageIo, StartError, TaskFactory};
use crate::io::{Sink, TaskSource};
use crate::kafka::{self, Connection, KafkaError};
use crate::log::{TopicSink, TopicSource};
use crate::model::{InputKind, PipelineRecord, Stage};
use crate::state::TaskId;
use crate::task::{Inputs, TaskSourceInfo};
use std::sync::Arc;

impl TaskFactory {
    /// Before a shared pipeline's first stage restores: the stages of a partition share
    /// its positions partition, so a restore of stage 0 waits on any transaction a later
    /// stage's task left open there (a killed server's); fencing those tasks' producers
    /// has the broker abort them at once instead of at `transaction.timeout.ms`.
    pub(super) fn fence_later_stages(
        &self,
        record: &PipelineRecord,
        stages: &[Stage],
        only: Option<&[u32]>,
    ) -> Result<(), StartError> {
        let names = kafka::KafkaNames::of(record);
        for stage in stages.iter().skip(1) {
            let Some(conn) = self.stage_sink(record, stage)? else {
                continue;
            };
            let partitions = self.stage_partitions(&record.spec, stage)?;
            let wanted: Vec<u32> = (0..partitions)
                .filter(|p| only.is_none_or(|o| o.contains(p)))
                .collect();
            crate::task::side_by_side(&wanted, crate::task::startup_width(), |&p| {
                kafka::fence_tasks(&conn, &names, stage.index, &[p])
            })
            .map_err(StartError::Sink)?;
        }
        Ok(())
    }

    /// The sources and sink of each of a stage's tasks `wanted`. With a Kafka sink each
    /// task first restores its state from the changelogs, mostly waiting on the broker:
    /// several partitions do that at once (see `startup.rs`).
    pub(super) fn stage_endpoints(
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
        crate::task::side_by_side(wanted, crate::task::startup_width(), |&p| one(p))
    }

    /// A stage's inputs with their partition counts (empty after a repartition). The
    /// stream and table inputs must have the stage's partitions: task `p` reads
    /// partition `p` of each.
    pub(super) fn stage_inputs(
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
        // A repartition topic is read committed whatever the source's properties say
        // (its records come from transactions that may abort).
        let internal = !stage.is_first();
        let mut kafka_reader = |i: usize, conn: Connection, topic: &str, q: u32, owner: bool| {
            let reader = match internal {
                true => conn.without("isolation.level"),
                false => conn.clone(),
            };
            let s = kafka::KafkaSource::new(&reader, &group, topic, q)?;
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
                let s = if io.last {
                    s
                } else {
                    s.with_watermark_records()
                };
                let s = match stage.is_first() || io.source.is_none() {
                    true => s,
                    false => s.with_upstream_watermarks(),
                };
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
}

/// A Kafka source a task owns: its offset goes to the pipeline's group.
pub(super) struct KafkaOffset {
    conn: Connection,
    consumer: Arc<rdkafka::consumer::BaseConsumer<crate::kafka::EndIsExpected>>,
    /// The source's index in the task, its topic and partition.
    offset: (usize, String, u32),
}

/// The sources of task `p` of a stage of `tasks` tasks with `inputs`: partition `p` of
/// each stream and table input, every partition of each broadcast or repartitioned input.
pub(super) fn task_sources(
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
pub(super) type TaskEnds = (Vec<TaskSourceInfo>, Inputs, Box<dyn Sink + Send>);
