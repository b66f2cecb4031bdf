//! `/v1/topics`: create, list, describe and delete embedded topics; produce and consume
//! records, and follow a topic over server-sent events.

use super::extract::{ApiJson, ApiQuery, LimitedBody};
use super::number;
use super::{ApiError, AppState, ErrorBody, blocking};
use crate::log::{Log, Topic, TopicConfig};
use crate::record::{self, Record};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// Most records one consume call returns.
const CONSUME_LIMIT_MAX: usize = 10_000;
const DEFAULT_RETENTION_MS: u64 = 7 * 24 * 3600 * 1000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/topics", get(list).post(create))
        .route("/topics/{topic}", get(describe).delete(remove))
        .route("/topics/{topic}/records", get(consume).post(produce))
}

/// A topic to create.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTopic {
    /// 1 to 249 of `A-Z a-z 0-9 . _ -`, not `.` or `..` (as Kafka allows).
    #[schema(
        min_length = 1,
        max_length = 249,
        pattern = r"^([A-Za-z0-9_-][A-Za-z0-9._-]*|\.[A-Za-z0-9_-][A-Za-z0-9._-]*|\.\.[A-Za-z0-9._-]+)$"
    )]
    pub name: String,
    /// Number of partitions (1 to 1024); default 1.
    #[serde(default, deserialize_with = "number::whole")]
    #[schema(minimum = 1, maximum = 1024)]
    pub partitions: Option<u32>,
    /// Delete records older than this; default 7 days, 0 keeps them forever.
    #[serde(default, deserialize_with = "number::whole")]
    #[schema(minimum = 0, maximum = 9223372036854775807_i64)]
    pub retention_ms: Option<u64>,
    /// Keep at most about this many bytes per partition; default (and 0) unlimited.
    #[serde(default, deserialize_with = "number::whole")]
    #[schema(minimum = 0, maximum = 9223372036854775807_i64)]
    pub retention_bytes: Option<u64>,
}

/// Offsets of one partition.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PartitionInfo {
    pub partition: u32,
    /// The first offset still stored.
    pub start_offset: u64,
    /// The next offset to be written.
    pub end_offset: u64,
    /// Approximate bytes stored (tracked when the topic has a size retention).
    pub bytes: u64,
}

/// A topic and its partitions.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TopicInfo {
    pub name: String,
    pub partitions: u32,
    pub retention_ms: Option<u64>,
    pub retention_bytes: Option<u64>,
    pub created_ms: i64,
    pub partition_offsets: Vec<PartitionInfo>,
}

fn info(t: &Topic) -> TopicInfo {
    TopicInfo {
        name: t.meta.name.clone(),
        partitions: t.meta.partitions,
        retention_ms: t.meta.retention_ms,
        retention_bytes: t.meta.retention_bytes,
        created_ms: t.meta.created_ms,
        partition_offsets: (0..t.partition_count())
            .map(|p| PartitionInfo {
                partition: p,
                start_offset: t.start_offset(p),
                end_offset: t.end_offset(p),
                bytes: t.bytes(p),
            })
            .collect(),
    }
}

/// Creates a topic.
#[utoipa::path(post, operation_id = "topics_create", path = "/v1/topics", tag = "topics", request_body = CreateTopic,
    responses((status = 201, body = TopicInfo), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 415, body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CreateTopic>,
) -> Result<(StatusCode, Json<TopicInfo>), ApiError> {
    for (field, value) in [
        ("retention_ms", req.retention_ms),
        ("retention_bytes", req.retention_bytes),
    ] {
        if value.is_some_and(|v| v > i64::MAX as u64) {
            return Err(ApiError::bad_request(
                "invalid topic",
                format!("{field} must be at most {}", i64::MAX),
            ));
        }
    }
    let config = TopicConfig {
        partitions: req.partitions.unwrap_or(1),
        retention_ms: match req.retention_ms {
            None => Some(DEFAULT_RETENTION_MS),
            Some(0) => None,
            Some(ms) => Some(ms),
        },
        retention_bytes: req.retention_bytes.filter(|b| *b > 0),
    };
    let log = state.controller.log().clone();
    let topic = blocking(move || Ok(log.create_topic(&req.name, &config)?)).await?;
    Ok((StatusCode::CREATED, Json(info(&topic))))
}

/// Every topic.
#[utoipa::path(get, operation_id = "topics_list", path = "/v1/topics", tag = "topics", responses((status = 200, body = Vec<TopicInfo>)))]
async fn list(State(state): State<AppState>) -> Json<Vec<TopicInfo>> {
    Json(
        state
            .controller
            .log()
            .topics()
            .iter()
            .map(|t| info(t))
            .collect(),
    )
}

/// One topic with its partition offsets.
#[utoipa::path(get, operation_id = "topics_describe", path = "/v1/topics/{topic}", tag = "topics", params(("topic" = String, Path)),
    responses((status = 200, body = TopicInfo), (status = 404, body = ErrorBody)))]
async fn describe(
    State(state): State<AppState>,
    Path(topic): Path<String>,
) -> Result<Json<TopicInfo>, ApiError> {
    let t = state.controller.log().topic(&topic)?;
    Ok(Json(info(&t)))
}

/// Deletes a topic and its records (refused while a pipeline reads or writes it).
#[utoipa::path(delete, operation_id = "topics_remove", path = "/v1/topics/{topic}", tag = "topics", params(("topic" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn remove(
    State(state): State<AppState>,
    Path(topic): Path<String>,
) -> Result<StatusCode, ApiError> {
    if let Some(p) = state.controller.topic_in_use(&topic) {
        return Err(ApiError::conflict(
            "topic in use",
            format!("pipeline {p:?} uses topic {topic:?}; delete the pipeline first"),
        ));
    }
    let log = state.controller.log().clone();
    blocking(move || Ok(log.delete_topic(&topic)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Where one produced record went.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Placement {
    pub partition: u32,
    pub offset: u64,
}

/// The result of a produce call.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Produced {
    pub count: usize,
    pub offsets: Vec<Placement>,
}

/// Parses a produce body: a JSON array (Content-Type: application/json) or JSON lines.
fn parse_events(
    body: &[u8],
    content_type: Option<&str>,
) -> Result<Vec<(Record, Option<u32>)>, ApiError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        ApiError::bad_request("invalid body", format!("the body is not UTF-8: {e}"))
    })?;
    let now = record::now_ms();
    let array = text.trim_start().starts_with('[');
    if content_type == Some("application/json") && !array {
        return Err(ApiError::bad_request(
            "invalid body",
            "Content-Type application/json wants a JSON array of events ([{\"value\": \"a\"}, {\"value\": \"b\"}]); for one event per line send Content-Type application/x-ndjson",
        ));
    }
    let out = if array {
        record::parse_array(text, now)?
    } else {
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            out.push(record::parse_line(line, now).map_err(|e| {
                ApiError::bad_request("invalid event", format!("line {}: {e}", i + 1))
            })?);
        }
        out
    };
    if out.is_empty() {
        return Err(ApiError::bad_request(
            "no events",
            "the body holds no events: send one JSON event per line ({\"value\": \"…\"}) or a JSON array of them",
        ));
    }
    Ok(out)
}

/// Appends records: JSON lines, or a JSON array with Content-Type: application/json.
/// Records go to their explicit `partition`, else by key (Kafka's partitioner), else
/// round-robin.
#[utoipa::path(post, operation_id = "topics_produce", path = "/v1/topics/{topic}/records", tag = "topics", params(("topic" = String, Path)),
    request_body(content = String, content_type = "application/x-ndjson",
        description = r#"One event per line: {"key": "k", "value": "v", "timestamp": 1700000000000, "headers": {"h": "v"}, "partition": 0}"#),
    responses((status = 200, body = Produced), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
async fn produce(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    body: LimitedBody,
) -> Result<Json<Produced>, ApiError> {
    let events = parse_events(&body.bytes, body.content_type.as_deref())?;
    let log = state.controller.log().clone();
    let placed = blocking(move || {
        let t = log.topic(&topic)?;
        Ok(log.produce(&t, &events)?)
    })
    .await?;
    Ok(Json(Produced {
        count: placed.len(),
        offsets: placed
            .into_iter()
            .map(|(partition, offset)| Placement { partition, offset })
            .collect(),
    }))
}

/// Where and how much to consume.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ConsumeQuery {
    /// Read only this partition (default: all).
    pub partition: Option<u32>,
    /// First offset to read in each partition (default: the start).
    #[param(minimum = 0, maximum = 9223372036854775807_i64)]
    pub offset: Option<u64>,
    /// Where to begin when no offset is given (default `start`).
    #[param(inline)]
    pub from: Option<StartAt>,
    /// Most records to return (default 100, at most 10000); ignored when following.
    #[param(minimum = 0, maximum = 10000)]
    pub limit: Option<usize>,
    /// Keep the connection open and stream records as server-sent events.
    pub follow: Option<bool>,
}

/// Where a read without an offset begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// The oldest record still stored.
    Start,
    /// The next record to be written (with `follow`: only new records).
    End,
}

/// Consumed records, and where to continue.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Consumed {
    /// Events in the documented JSON format plus `partition` and `offset`.
    #[schema(value_type = Vec<Object>)]
    pub records: Vec<serde_json::Value>,
    /// The next offset to read in each partition, by partition number (as text: JSON
    /// keys are strings).
    #[schema(value_type = BTreeMap<String, u64>)]
    pub next_offsets: BTreeMap<u32, u64>,
}

fn consumed_json(partition: u32, offset: u64, r: &Record) -> serde_json::Value {
    let mut v = record::to_json(r);
    if let Some(obj) = v.as_object_mut() {
        obj.insert("partition".into(), partition.into());
        obj.insert("offset".into(), offset.into());
    }
    v
}

/// The partitions to read and their first offsets.
fn starting_points(t: &Topic, q: &ConsumeQuery) -> Result<BTreeMap<u32, u64>, ApiError> {
    if q.limit.is_some_and(|l| l > CONSUME_LIMIT_MAX) {
        return Err(ApiError::bad_request(
            "invalid query",
            format!("limit must be at most {CONSUME_LIMIT_MAX} (read on from `next_offsets`)"),
        ));
    }
    if q.offset.is_some_and(|o| o > i64::MAX as u64) {
        return Err(ApiError::bad_request(
            "invalid query",
            format!("offset must be at most {}", i64::MAX),
        ));
    }
    let partitions: Vec<u32> = match q.partition {
        Some(p) if p >= t.partition_count() => {
            return Err(ApiError::not_found(
                "no such partition",
                format!(
                    "topic {:?} has {} partition(s); partition {p} does not exist",
                    t.name(),
                    t.partition_count()
                ),
            ));
        }
        Some(p) => vec![p],
        None => (0..t.partition_count()).collect(),
    };
    let from_end = q.from == Some(StartAt::End);
    Ok(partitions
        .into_iter()
        .map(|p| {
            let at = match q.offset {
                Some(o) => o,
                None if from_end => t.end_offset(p),
                None => t.start_offset(p),
            };
            (p, at)
        })
        .collect())
}

fn read_some(
    log: &Log,
    t: &Topic,
    next: &mut BTreeMap<u32, u64>,
    limit: usize,
) -> Result<Vec<serde_json::Value>, ApiError> {
    let mut records = Vec::new();
    for (p, at) in next.iter_mut() {
        if records.len() >= limit {
            break;
        }
        for (offset, r, _) in log.read(t, *p, *at, limit - records.len())? {
            records.push(consumed_json(*p, offset, &r));
            *at = offset + 1;
        }
    }
    Ok(records)
}

/// Reads records by partition and offset; `follow=true` streams them as server-sent
/// events (one JSON event per `data:` line) as they are appended.
#[utoipa::path(get, operation_id = "topics_consume", path = "/v1/topics/{topic}/records", tag = "topics", params(("topic" = String, Path), ConsumeQuery),
    responses(
        (status = 200, description = "The records; with `follow=true` a stream of server-sent events, one record (JSON) per `data:` line",
            content((Consumed = "application/json"), (String = "text/event-stream"))),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn consume(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    ApiQuery(q): ApiQuery<ConsumeQuery>,
) -> Result<Response, ApiError> {
    let log = state.controller.log().clone();
    let t = log.topic(&topic)?;
    let mut next = starting_points(&t, &q)?;
    if q.follow.unwrap_or(false) {
        return Ok(follow(log, t, next).into_response());
    }
    let limit = q.limit.unwrap_or(100).clamp(1, CONSUME_LIMIT_MAX);
    let records = read_some(&log, &t, &mut next, limit)?;
    Ok(Json(Consumed {
        records,
        next_offsets: next,
    })
    .into_response())
}

fn follow(
    log: Arc<Log>,
    t: Arc<Topic>,
    mut next: BTreeMap<u32, u64>,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    let mut changes = log.signal().subscribe();
    let stream = async_stream::stream! {
        loop {
            match read_some(&log, &t, &mut next, 1000) {
                Ok(records) if !records.is_empty() => {
                    for r in records {
                        yield Ok(Event::default().data(r.to_string()));
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    yield Ok(Event::default().event("error").data(e.detail));
                    break;
                }
            }
            // Wait for appends (or re-check now and then: the topic may be gone).
            let _ = tokio::time::timeout(Duration::from_secs(5), changes.changed()).await;
        }
    };
    Sse::new(stream).keep_alive(KeepAlive::default())
}
