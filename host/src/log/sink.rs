//! The sink of a task whose outputs go to embedded topics: main outputs to the pipeline's
//! sink topic, side outputs to `<pipeline>.<port>` (or the topic `[outputs]` names for the
//! port), dead letters to `<pipeline>.dlq` (the port `dlq`),
//! all in the same RocksDB write as the task's state and position.

use super::codec;
use super::embedded::{Appends, Log};
use super::partitioner::partition_for_key;
use super::topic::{Topic, TopicConfig};
use crate::io::{IoError, Outputs, Sink, watermark_record};
use crate::model::PortTopics;
use crate::record::batch;
use crate::record::{Record, now_ms};
use crate::state::TaskPosition;
use crate::state::changelog::{OperatorChanges, changelog_topic, marker_key};
use crate::state::{Commit, StateScope};
use std::collections::HashMap;
use std::sync::Arc;

pub struct TopicSink {
    log: Arc<Log>,
    pipeline: String,
    /// Partitions of the task's source: its changelog topics get as many.
    state_partitions: u32,
    /// The source partition of the task: keyless outputs go to the same partition number
    /// (modulo), so a replay after a crash puts them where the first run did.
    partition: u32,
    main: Arc<Topic>,
    /// The topic of each side-output port.
    ports: PortTopics,
    side: HashMap<String, Arc<Topic>>,
    changelogs: HashMap<String, Arc<Topic>>,
    /// Into a repartition topic: the watermark to mark in every partition at the next
    /// commit, and the last one marked.
    watermarks: Option<(i64, i64)>,
}

impl TopicSink {
    /// The sink of task `partition` (of `state_partitions`) of `pipeline`, writing its
    /// main output to `main`.
    pub fn new(
        log: Arc<Log>,
        pipeline: &str,
        partition: u32,
        state_partitions: u32,
        main: Arc<Topic>,
    ) -> Self {
        TopicSink {
            log,
            pipeline: pipeline.to_string(),
            state_partitions,
            partition,
            main,
            ports: PortTopics::derived(pipeline),
            side: HashMap::new(),
            changelogs: HashMap::new(),
            watermarks: None,
        }
    }

    /// Side outputs go to the topics `ports` names.
    pub fn with_ports(mut self, ports: PortTopics) -> Self {
        self.ports = ports;
        self
    }

    /// The main topic is a repartition topic: every commit that moves the task's
    /// watermark appends a watermark record to each of its partitions, after the
    /// outputs, for the next stage's tasks.
    pub fn with_watermark_records(mut self) -> Self {
        self.watermarks = Some((i64::MIN, i64::MIN));
        self
    }

    fn changelog(&mut self, operator: &str, store: &str) -> Result<Arc<Topic>, IoError> {
        let name = changelog_topic(&self.pipeline, operator, store);
        if let Some(t) = self.changelogs.get(&name) {
            return Ok(Arc::clone(t));
        }
        let config = TopicConfig::kept(self.state_partitions);
        let t = self
            .log
            .ensure_topic(&name, &config)
            .map_err(|e| IoError::Sink(format!("topic {name}: {e}")))?;
        self.changelogs.insert(name, Arc::clone(&t));
        Ok(t)
    }

    fn side_topic(&mut self, port: &str) -> Result<Arc<Topic>, IoError> {
        if let Some(t) = self.side.get(port) {
            return Ok(Arc::clone(t));
        }
        let name = self.ports.topic(port);
        let config = TopicConfig {
            partitions: self.main.partition_count(),
            ..TopicConfig::default()
        };
        let t = self
            .log
            .ensure_topic(&name, &config)
            .map_err(|e| IoError::Sink(format!("topic {name}: {e}")))?;
        self.side.insert(port.to_string(), Arc::clone(&t));
        Ok(t)
    }

    fn partition(&self, topic: &Topic, key: Option<&[u8]>) -> u32 {
        match key {
            Some(k) => partition_for_key(k, topic.partition_count()),
            None => self.partition % topic.partition_count(),
        }
    }

    fn push_record(&self, appends: &mut Appends, topic: &Arc<Topic>, r: &Record, now: i64) {
        appends.push(
            topic,
            self.partition(topic, r.key.as_deref()),
            &codec::encode_record(r, now),
        );
    }
}

impl Sink for TopicSink {
    fn position(&mut self, position: TaskPosition) {
        if let Some((next, _)) = &mut self.watermarks {
            *next = position.watermark;
        }
    }

    fn commit(
        &mut self,
        commit: Commit,
        outputs: Vec<Outputs>,
        changes: Vec<OperatorChanges>,
    ) -> Result<(), IoError> {
        let now = now_ms();
        let mut appends = Appends::default();
        for o in &outputs {
            for i in 0..o.main.events.len() {
                let (key, value, ts, headers) = batch::parts(&o.main, i);
                let p = self.partition(&self.main, key);
                appends.push_with(&self.main, p, |buf| {
                    codec::encode_into(buf, key, value, ts, &headers, now)
                });
            }
            for (port, r) in &o.side {
                let t = self.side_topic(port)?;
                self.push_record(&mut appends, &t, r, now);
            }
            for r in &o.dead {
                let t = self.side_topic("dlq")?;
                self.push_record(&mut appends, &t, r, now);
            }
            if !o.shadow.events.is_empty() {
                let t = self.side_topic(crate::io::SHADOW_PORT)?;
                for i in 0..o.shadow.events.len() {
                    let (key, value, ts, headers) = batch::parts(&o.shadow, i);
                    let p = self.partition(&t, key);
                    appends.push_with(&t, p, |buf| {
                        codec::encode_into(buf, key, value, ts, &headers, now)
                    });
                }
            }
        }
        for op in &changes {
            let scope = StateScope {
                pipeline: self.pipeline.clone(),
                operator: op.operator.clone(),
                partition: self.partition,
            };
            for store in &op.stores {
                let topic = self.changelog(&op.operator, &store.store)?;
                for change in &store.changes {
                    appends.push(
                        &topic,
                        self.partition,
                        &codec::encode_record(&change.to_record(), now),
                    );
                }
                appends.mark_end(&topic, self.partition, marker_key(&scope, &store.store));
            }
        }
        let marked = match self.watermarks {
            Some((next, marked)) if next != marked && next != i64::MIN => {
                let record = codec::encode_record(&watermark_record(self.partition, next), now);
                for p in 0..self.main.partition_count() {
                    appends.push(&self.main, p, &record);
                }
                Some(next)
            }
            _ => None,
        };
        self.log
            .commit(commit, appends)
            .map_err(|e| IoError::Sink(e.to_string()))?;
        if let (Some(next), Some((_, last))) = (marked, &mut self.watermarks) {
            *last = next;
        }
        Ok(())
    }
}
