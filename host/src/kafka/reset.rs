//! Making Kafka agree with a savepoint restored into a pipeline with a Kafka sink. Each
//! task's changelog partitions get a wipe (a delete-range over every key) followed by the
//! restored entries, its position record the savepoint's position, and the pipeline's
//! group the savepoint's offsets ("seek the group"). A replay from any earlier point then
//! ends in the restored state, and a restart resumes at the savepoint.

use super::position::RecordedPosition;
use super::{Connection, KafkaError, Quiet, REQUEST_TIMEOUT, ensure_topic};
use crate::state::changelog::{Change, marker_key};
use crate::state::{Cf, Db, StateScope, TaskId};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use rocksdb::WriteBatch;
use std::collections::{BTreeMap, BTreeSet};

/// What to reset: a pipeline's last stage (the one with the Kafka sink).
pub struct ResetPlan<'a> {
    pub pipeline: &'a str,
    /// The pipeline's internal names in Kafka.
    pub names: &'a super::KafkaNames,
    /// The stage's operator ids.
    pub operators: &'a [&'a str],
    /// Every task of the stage with its restored position.
    pub tasks: &'a [(TaskId, RecordedPosition)],
    /// The group offsets to set: the restored offset of each Kafka source partition a
    /// task owns, as (topic, partition, offset).
    pub group_offsets: &'a [(String, u32, u64)],
}

/// Rewrites Kafka after the local state of `plan`'s tasks became a savepoint's; returns
/// the changelog records written.
pub fn reset_to_savepoint(
    db: &Db,
    conn: &Connection,
    plan: &ResetPlan<'_>,
) -> Result<u64, KafkaError> {
    let partitions = plan.tasks.len() as u32;
    let state = db.dump_pipeline(plan.pipeline).map_err(|e| conn.error(e))?;
    // The stores to rewrite: those with a changelog in Kafka and those in the savepoint.
    let client: BaseConsumer<Quiet> = conn
        .config(&[])
        .create_with_context(Quiet)
        .map_err(|e| conn.error(e))?;
    let metadata = client
        .fetch_metadata(None, REQUEST_TIMEOUT)
        .map_err(|e| conn.error(e))?;
    let mut stores: BTreeSet<(String, String)> = metadata
        .topics()
        .iter()
        .filter_map(|t| plan.names.changelog_store(plan.operators, t.name()))
        .map(|(op, store)| (op.to_string(), store))
        .collect();
    stores.extend(
        state
            .keys()
            .filter(|(op, ..)| plan.operators.contains(&op.as_str()))
            .map(|(op, store, ..)| (op.clone(), store.clone())),
    );
    for (op, store) in &stores {
        ensure_topic(conn, &plan.names.changelog(op, store), partitions, true)?;
    }
    let positions = plan.names.positions();
    ensure_topic(conn, &positions, partitions, true)?;

    let producer: FutureProducer<Quiet> = conn
        .config(&[("enable.idempotence", "true"), ("linger.ms", "5")])
        .create_with_context(Quiet)
        .map_err(|e| conn.error(e))?;
    let mut deliveries = Vec::new();
    let mut written = 0u64;
    for (task, pos) in plan.tasks {
        let position = pos.progress().to_string();
        let p = task.partition;
        for (op, store) in &stores {
            let topic = plan.names.changelog(op, store);
            let wipe = Change::DeleteRange {
                start: Vec::new(),
                end: None,
            };
            let entries = state
                .range((op.clone(), store.clone(), p, Vec::new())..)
                .take_while(|((o, s, q, _), _)| o == op && s == store && *q == p)
                .map(|((_, _, _, key), value)| Change::Put {
                    key: key.clone(),
                    value: value.clone(),
                });
            for change in std::iter::once(wipe).chain(entries) {
                let r = change.to_record();
                let mut headers = OwnedHeaders::new();
                for (k, v) in &r.headers {
                    headers = headers.insert(Header {
                        key: k,
                        value: Some(v),
                    });
                }
                headers = headers.insert(Header {
                    key: super::POSITION_HEADER,
                    value: Some(&position),
                });
                let key = r.key.clone().unwrap_or_default();
                let record = FutureRecord::to(&topic)
                    .partition(p as i32)
                    .key(&key)
                    .payload(&r.value)
                    .headers(headers);
                let delivery = producer
                    .send_result(record)
                    .map_err(|(e, _)| conn.error(format!("{topic}: {e}")))?;
                deliveries.push((Some((op.clone(), store.clone(), p)), delivery));
                written += 1;
            }
        }
        let key = super::position_key(task.stage, p);
        let value = pos.encode();
        let record = FutureRecord::to(&positions)
            .partition(p as i32)
            .key(&key)
            .payload(&value);
        let delivery = producer
            .send_result(record)
            .map_err(|(e, _)| conn.error(format!("{positions}: {e}")))?;
        deliveries.push((None, delivery));
    }
    // The changelog offset each restored store partition now reflects.
    let mut ends: BTreeMap<(String, String, u32), i64> = BTreeMap::new();
    for (store, delivery) in deliveries {
        let offset = match futures::executor::block_on(delivery) {
            Ok(Ok(delivered)) => delivered.offset,
            Ok(Err((e, _))) => return Err(conn.error(format!("restoring into Kafka: {e}"))),
            Err(_) => return Err(conn.error("restoring into Kafka: the producer went away")),
        };
        if let Some(store) = store {
            let end = ends.entry(store).or_default();
            *end = (*end).max(offset + 1);
        }
    }
    if !plan.group_offsets.is_empty() {
        let consumer: BaseConsumer<Quiet> = conn
            .config(&[
                ("group.id", &plan.names.group()),
                ("enable.auto.commit", "false"),
            ])
            .create_with_context(Quiet)
            .map_err(|e| conn.error(e))?;
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, offset) in plan.group_offsets {
            tpl.add_partition_offset(topic, *partition as i32, Offset::Offset(*offset as i64))
                .map_err(|e| conn.error(e))?;
        }
        consumer
            .commit(&tpl, CommitMode::Sync)
            .map_err(|e| conn.error(format!("cannot set group offsets: {e}")))?;
    }
    let mut wb = WriteBatch::default();
    for ((operator, store, partition), end) in ends {
        let scope = StateScope {
            pipeline: plan.pipeline.to_string(),
            operator,
            partition,
        };
        wb.put_cf(
            db.cf(Cf::Meta),
            marker_key(&scope, &store),
            (end as u64).to_be_bytes(),
        );
    }
    db.write(wb).map_err(|e| conn.error(e))?;
    Ok(written)
}
