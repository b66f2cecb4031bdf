//! A task's sink in Kafka. With exactly-once, each commit is one Kafka transaction:
//! the outputs, the changelog records of the state changes, and (with a Kafka source)
//! the source offset; the RocksDB write (state, position, changelog markers) follows
//! only once the transaction committed, so local state never holds uncommitted data.
//! A crash between the two leaves local state behind Kafka; the next start replays the
//! changelog tail (see `restore`), which the transaction made durable.

use super::position::{RecordedPosition, progress};
use super::{Connection, KafkaError, REQUEST_TIMEOUT, admin};
use crate::io::{IoError, Outputs, Sink, watermark_record};
use crate::log::partitioner::partition_for_key;
use crate::model::PortTopics;
use crate::record::Record;
use crate::record::batch;
use crate::state::changelog::{Change, OperatorChanges};
use crate::state::{Commit, SourcePosition, StateScope, TaskPosition};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Records delivery results: the first error, and the highest offset per partition.
#[derive(Default)]
pub struct Deliveries {
    state: Mutex<DeliveryState>,
}

#[derive(Default)]
struct DeliveryState {
    error: Option<String>,
    /// Per topic, per partition. (Nested so that a delivery looks its topic up by `&str`
    /// without allocating: this runs once per produced record.)
    last: HashMap<String, HashMap<i32, i64>>,
}

impl ClientContext for Deliveries {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        super::logs::log(level, fac, message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        super::logs::error(&error, reason);
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        let mut s = self.state.lock().expect("delivery lock");
        match result {
            Ok(m) => {
                let topic = m.topic();
                let partitions = match s.last.get_mut(topic) {
                    Some(p) => p,
                    None => s.last.entry(topic.to_string()).or_default(),
                };
                let e = partitions.entry(m.partition()).or_insert(-1);
                *e = (*e).max(m.offset());
            }
            Err((e, _)) => {
                s.error.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// Where a task's source offsets go in its transactions: the pipeline group's offsets of
/// the Kafka sources the task owns (on the sink's cluster).
pub struct SourceOffsets {
    /// A consumer in the group (its metadata goes with the offsets).
    pub consumer: Arc<BaseConsumer<super::EndIsExpected>>,
    /// Each source as (its index in the task, topic, partition).
    pub sources: Vec<(usize, String, u32)>,
}

/// Which task a sink serves, and where its main output goes.
pub struct SinkTask<'a> {
    pub pipeline: &'a str,
    /// The pipeline's internal names in Kafka.
    pub names: &'a super::KafkaNames,
    pub stage: u32,
    pub partition: u32,
    /// Partitions of the task's source: its changelog topics get as many.
    pub state_partitions: u32,
    pub main: &'a str,
    pub main_partitions: u32,
}

/// What every task of a stage with a Kafka sink needs, done once: the positions topic
/// exists; returns the sink topic's partition count.
pub fn prepare(
    conn: &Connection,
    names: &super::KafkaNames,
    sink: &str,
    state_partitions: u32,
) -> Result<u32, KafkaError> {
    admin::ensure_topic(conn, &names.positions(), state_partitions, true)?;
    admin::partition_count(conn, sink)
}

/// Fences every transactional producer of a stage's tasks, wherever they run: each
/// task's next commit fails, so none can write after a restore rewrote Kafka.
pub fn fence(
    conn: &Connection,
    names: &super::KafkaNames,
    stage: u32,
    partitions: u32,
) -> Result<(), KafkaError> {
    let all: Vec<u32> = (0..partitions).collect();
    fence_tasks(conn, names, stage, &all)
}

/// Fences the transactional producers of a stage's tasks of `partitions`: the broker
/// aborts whatever transaction they left open.
pub fn fence_tasks(
    conn: &Connection,
    names: &super::KafkaNames,
    stage: u32,
    partitions: &[u32],
) -> Result<(), KafkaError> {
    for &p in partitions {
        let id = names.transactional_id(stage, p);
        let producer: BaseProducer<super::Quiet> = conn
            .config(&[("transactional.id", &id)])
            .create_with_context(super::Quiet)
            .map_err(|e| conn.error(e))?;
        producer
            .init_transactions(REQUEST_TIMEOUT)
            .map_err(|e| conn.error(format!("cannot fence the producer {id}: {e}")))?;
    }
    Ok(())
}

pub struct KafkaSink {
    conn: Connection,
    producer: BaseProducer<Deliveries>,
    transactional: bool,
    pipeline: String,
    names: super::KafkaNames,
    partition: u32,
    state_partitions: u32,
    main: String,
    main_partitions: u32,
    /// The topic of each side-output port.
    ports: PortTopics,
    source: Option<SourceOffsets>,
    /// Where each commit records the task's position (see [`super::KafkaNames::positions`]).
    positions: String,
    position_key: String,
    /// Topics known to exist, with their partition counts.
    topics: HashMap<String, u32>,
    position: TaskPosition,
    /// Every source's position, for a task with several sources.
    sources: Vec<SourcePosition>,
    /// The upstream tasks' watermarks, for a task after a repartition through Kafka
    /// (`None`: not recorded; local state keeps them).
    upstream: Option<Vec<i64>>,
    /// Into a repartition topic: the watermark last marked in every partition.
    marked: Option<i64>,
}

fn sink_error(e: impl std::fmt::Display) -> IoError {
    IoError::Sink(e.to_string())
}

impl KafkaSink {
    /// The sink of one task. With `exactly_once`, a transactional producer with the
    /// task's own id (fencing any zombie of the same task). Call [`prepare`] once per
    /// pipeline stage first.
    pub fn new(
        conn: &Connection,
        task: &SinkTask<'_>,
        exactly_once: bool,
        source: Option<SourceOffsets>,
    ) -> Result<Self, KafkaError> {
        let mut defaults = vec![
            ("enable.idempotence", "true"),
            ("linger.ms", "5"),
            ("message.timeout.ms", "60000"),
            ("partitioner", "murmur2_random"),
        ];
        let transactional_id = task.names.transactional_id(task.stage, task.partition);
        if exactly_once {
            defaults.push(("transactional.id", &transactional_id));
            defaults.push(("transaction.timeout.ms", "60000"));
        }
        let producer: BaseProducer<Deliveries> = conn
            .config(&defaults)
            .create_with_context(Deliveries::default())
            .map_err(|e| conn.error(e))?;
        if exactly_once {
            producer.init_transactions(REQUEST_TIMEOUT).map_err(|e| {
                conn.error(format!(
                    "cannot start the transactional producer {transactional_id}: {e}"
                ))
            })?;
        }
        Ok(KafkaSink {
            positions: task.names.positions(),
            position_key: super::position_key(task.stage, task.partition),
            conn: conn.clone(),
            producer,
            transactional: exactly_once,
            pipeline: task.pipeline.to_string(),
            names: task.names.clone(),
            partition: task.partition,
            state_partitions: task.state_partitions,
            main: task.main.to_string(),
            main_partitions: task.main_partitions,
            ports: PortTopics::derived(task.pipeline),
            source,
            topics: HashMap::from([(task.main.to_string(), task.main_partitions)]),
            position: TaskPosition::START,
            sources: Vec::new(),
            upstream: None,
            marked: None,
        })
    }

    /// The task reads a repartition topic in Kafka: its position records the upstream
    /// tasks' watermarks too, so a task that takes it over elsewhere resumes with them.
    pub fn with_upstream_watermarks(mut self) -> Self {
        self.upstream = Some(Vec::new());
        self
    }

    /// The main topic is a repartition topic: every commit that moves the task's
    /// watermark appends a watermark record to each of its partitions, after the
    /// outputs and in the same transaction, for the next stage's tasks.
    pub fn with_watermark_records(mut self) -> Self {
        self.marked = Some(i64::MIN);
        self
    }

    /// The watermark to mark in every partition of the main topic with this commit.
    fn watermark_to_mark(&self) -> Option<i64> {
        let w = self.position.watermark;
        self.marked.filter(|m| *m != w && w != i64::MIN).map(|_| w)
    }

    /// Side outputs go to the topics `ports` names.
    pub fn with_ports(mut self, ports: PortTopics) -> Self {
        self.ports = ports;
        self
    }

    /// Partitions of a derived topic, created when missing (changelogs compacted, with
    /// one partition per task; side outputs like the sink).
    fn topic(&mut self, name: &str, changelog: bool) -> Result<u32, IoError> {
        if let Some(n) = self.topics.get(name) {
            return Ok(*n);
        }
        let partitions = if changelog {
            self.state_partitions
        } else {
            self.main_partitions
        };
        let n = admin::ensure_topic(&self.conn, name, partitions, changelog).map_err(sink_error)?;
        self.topics.insert(name.to_string(), n);
        Ok(n)
    }

    fn send(
        &self,
        topic: &str,
        partition: u32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp: i64,
        headers: &[(&str, &[u8])],
    ) -> Result<(), IoError> {
        let mut record: BaseRecord<'_, [u8], [u8], ()> = BaseRecord::to(topic)
            .partition(partition as i32)
            .timestamp(timestamp);
        // librdkafka allocates a header list even when empty: most records have none.
        if !headers.is_empty() {
            let mut h = OwnedHeaders::new_with_capacity(headers.len());
            for (name, v) in headers {
                h = h.insert(Header {
                    key: name,
                    value: Some(*v),
                });
            }
            record = record.headers(h);
        }
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(v) = value {
            record = record.payload(v);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((e, r)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    self.producer.poll(std::time::Duration::from_millis(10));
                    record = r;
                }
                Err((e, _)) => {
                    return Err(sink_error(
                        self.conn.error(format!("producing to {topic}: {e}")),
                    ));
                }
            }
        }
    }

    fn partition_of(&self, key: Option<&[u8]>, partitions: u32) -> u32 {
        match key {
            Some(k) => partition_for_key(k, partitions),
            None => self.partition % partitions,
        }
    }

    fn send_record(&mut self, topic: &str, r: &Record) -> Result<(), IoError> {
        let n = self.topic(topic, false)?;
        let headers: Vec<(&str, &[u8])> = r
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        self.send(
            topic,
            self.partition_of(r.key.as_deref(), n),
            r.key.as_deref(),
            Some(&r.value),
            r.timestamp,
            &headers,
        )
    }

    /// Produces everything of one commit; returns the changelog topics written.
    fn produce(
        &mut self,
        outputs: &[Outputs],
        changes: &[OperatorChanges],
    ) -> Result<Vec<(String, String, String)>, IoError> {
        for o in outputs {
            for i in 0..o.main.events.len() {
                let (key, value, ts, headers) = batch::parts(&o.main, i);
                let headers: Vec<(&str, &[u8])> = headers
                    .iter()
                    .map(|(k, v)| (std::str::from_utf8(k).unwrap_or("?"), *v))
                    .collect();
                let p = self.partition_of(key, self.main_partitions);
                self.send(&self.main, p, key, Some(value), ts, &headers)?;
            }
            for (port, r) in &o.side {
                self.send_record(&self.ports.topic(port), r)?;
            }
            for r in &o.dead {
                self.send_record(&self.ports.topic("dlq"), r)?;
            }
            if !o.shadow.events.is_empty() {
                let topic = format!("{}.{}", self.pipeline, crate::io::SHADOW_PORT);
                let n = self.topic(&topic, false)?;
                for i in 0..o.shadow.events.len() {
                    let (key, value, ts, headers) = batch::parts(&o.shadow, i);
                    let headers: Vec<(&str, &[u8])> = headers
                        .iter()
                        .map(|(k, v)| (std::str::from_utf8(k).unwrap_or("?"), *v))
                        .collect();
                    let p = self.partition_of(key, n);
                    self.send(&topic, p, key, Some(value), ts, &headers)?;
                }
            }
        }
        if let Some(w) = self.watermark_to_mark() {
            let r = watermark_record(self.partition, w);
            let headers: Vec<(&str, &[u8])> = r
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_slice()))
                .collect();
            for p in 0..self.main_partitions {
                self.send(&self.main, p, None, Some(&r.value), r.timestamp, &headers)?;
            }
        }
        // Each change names the position of its transaction, so a restore can tell the
        // changes of a transaction that never recorded its position (aborted) apart.
        let position = progress(self.position, &self.sources).to_string();
        let mut written = Vec::new();
        for op in changes {
            for store in &op.stores {
                let topic = self.names.changelog(&op.operator, &store.store);
                self.topic(&topic, true)?;
                for change in &store.changes {
                    let at = (super::POSITION_HEADER, position.as_bytes());
                    if let Change::Put { key, value } = change {
                        // The common case, sent without copying key or value.
                        self.send(&topic, self.partition, Some(key), Some(value), 0, &[at])?;
                        continue;
                    }
                    let r = change.to_record();
                    // A deletion is a tombstone (null value), so compaction drops the key.
                    let value = if matches!(change, Change::Delete { .. }) {
                        None
                    } else {
                        Some(r.value.as_slice())
                    };
                    let mut headers: Vec<(&str, &[u8])> = r
                        .headers
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_slice()))
                        .collect();
                    headers.push(at);
                    self.send(
                        &topic,
                        self.partition,
                        r.key.as_deref(),
                        value,
                        r.timestamp,
                        &headers,
                    )?;
                }
                written.push((op.operator.clone(), store.store.clone(), topic));
            }
        }
        Ok(written)
    }

    /// Waits until every produced record is acknowledged. (librdkafka's flush sleeps in
    /// 100 ms steps between checks; polling in 1 ms steps answers much sooner.)
    fn drain(&self) -> Result<(), IoError> {
        let deadline = std::time::Instant::now() + REQUEST_TIMEOUT;
        while self.producer.in_flight_count() > 0 {
            if std::time::Instant::now() > deadline {
                return Err(sink_error(
                    self.conn
                        .error("records not acknowledged within the request timeout"),
                ));
            }
            self.producer.poll(std::time::Duration::from_millis(1));
        }
        Ok(())
    }

    fn take_deliveries(&self) -> DeliveryState {
        std::mem::take(&mut *self.producer.context().state.lock().expect("delivery lock"))
    }

    fn offsets(
        &self,
    ) -> Result<Option<(TopicPartitionList, rdkafka::consumer::ConsumerGroupMetadata)>, IoError>
    {
        let Some(src) = &self.source else {
            return Ok(None);
        };
        let mut tpl = TopicPartitionList::new();
        for (i, topic, partition) in &src.sources {
            let offset = match self.sources.get(*i) {
                Some(s) => s.offset,
                None => self.position.offset,
            };
            tpl.add_partition_offset(topic, *partition as i32, Offset::Offset(offset as i64))
                .map_err(sink_error)?;
        }
        let meta = src
            .consumer
            .group_metadata()
            .ok_or_else(|| sink_error("the source consumer has no group metadata"))?;
        Ok(Some((tpl, meta)))
    }
}

impl Sink for KafkaSink {
    fn position(&mut self, position: TaskPosition) {
        self.position = position;
    }

    fn sources(&mut self, sources: &[SourcePosition]) {
        self.sources.clear();
        self.sources.extend_from_slice(sources);
    }

    fn upstream(&mut self, watermarks: &[i64]) {
        if let Some(up) = &mut self.upstream {
            up.clear();
            up.extend_from_slice(watermarks);
        }
    }

    fn commit(
        &mut self,
        mut commit: Commit,
        outputs: Vec<Outputs>,
        changes: Vec<OperatorChanges>,
    ) -> Result<(), IoError> {
        self.take_deliveries();
        if self.transactional {
            self.producer
                .begin_transaction()
                .map_err(|e| sink_error(self.conn.error(e)))?;
        }
        let result = self.produce(&outputs, &changes).and_then(|written| {
            // The position goes last, once everything else is on the broker: a restart
            // that sees it also sees all it accounts for, even on a broker that shows
            // aborted transactions to read_committed consumers (Tansu does).
            self.drain()?;
            let value = RecordedPosition {
                position: self.position,
                sources: self.sources.clone(),
                upstream: self.upstream.clone().unwrap_or_default(),
            }
            .encode();
            let (topic, key) = (self.positions.clone(), self.position_key.clone());
            self.send(
                &topic,
                self.partition,
                Some(key.as_bytes()),
                Some(value.as_bytes()),
                0,
                &[],
            )?;
            // Acknowledged before the transaction calls, whose own flush waits in 100 ms steps.
            self.drain()?;
            if self.transactional {
                if let Some((tpl, meta)) = self.offsets()? {
                    self.producer
                        .send_offsets_to_transaction(&tpl, &meta, REQUEST_TIMEOUT)
                        .map_err(|e| sink_error(self.conn.error(e)))?;
                }
                self.producer
                    .commit_transaction(REQUEST_TIMEOUT)
                    .map_err(|e| sink_error(self.conn.error(e)))?;
            } else if let (Some(src), Some((tpl, _))) = (&self.source, self.offsets()?) {
                src.consumer
                    .commit(&tpl, rdkafka::consumer::CommitMode::Sync)
                    .map_err(|e| sink_error(self.conn.error(e)))?;
            }
            Ok(written)
        });
        let written = match result {
            Ok(w) => w,
            Err(e) => {
                if self.transactional {
                    let _ = self.producer.abort_transaction(REQUEST_TIMEOUT);
                }
                return Err(e);
            }
        };
        let delivered = self.take_deliveries();
        if let Some(e) = delivered.error {
            return Err(sink_error(
                self.conn.error(format!("a record was not delivered: {e}")),
            ));
        }
        if let Some(w) = self.watermark_to_mark() {
            self.marked = Some(w);
        }
        // The changelog offsets the state now reflects, for a later restore's start.
        for (operator, store, topic) in written {
            if let Some(last) = delivered
                .last
                .get(&topic)
                .and_then(|p| p.get(&(self.partition as i32)))
            {
                let scope = StateScope {
                    pipeline: self.pipeline.clone(),
                    operator,
                    partition: self.partition,
                };
                commit.put_changelog_marker(&scope, &store, (*last + 1) as u64);
            }
        }
        commit.write().map_err(sink_error)?;
        Ok(())
    }
}
