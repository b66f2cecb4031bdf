//! `/v1/pipelines/{name}/state/{operator}/{store}`: interactive queries of an operator's
//! committed state, by key or by range (prefix, or start and end), with continuations.

use super::extract::ApiQuery;
use super::state_forward as forward;
use super::{ApiError, AppState, ErrorBody};
use crate::control::{KeyRange, PartitionOwner, QueriedStore, StateEntry, StatePage, StoreRef};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Entries a scan page holds unless `limit` says otherwise, and at most.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1_000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/pipelines/{name}/state", get(stores))
        .route("/pipelines/{name}/state/{operator}/{store}", get(query))
}

/// A store an operator of the pipeline has written.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoreView {
    /// The operator's id in the pipeline.
    pub operator: String,
    pub store: String,
}

/// The stores the pipeline's operators have written, by operator and name: what the
/// queries below can read.
#[utoipa::path(get, operation_id = "pipelines_state_stores", path = "/v1/pipelines/{name}/state", tag = "pipelines",
    params(("name" = String, Path)),
    responses((status = 200, body = Vec<StoreView>), (status = 404, body = ErrorBody)))]
async fn stores(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Vec<StoreView>>, ApiError> {
    let controller = state.controller.clone();
    let found = state
        .queries
        .run(async move { Ok(controller.state_stores(&name)?) })
        .await?;
    Ok(Json(
        found
            .into_iter()
            .map(|(operator, store)| StoreView { operator, store })
            .collect(),
    ))
}

/// How a query names keys: as text, or as base64 (`_b64`) for any bytes. `key` (or
/// `key_b64`) reads one key; otherwise the query scans `prefix`, or `start` to `end`, or
/// the whole store.
/// Each key comes as text or as base64, not both; a key is not given with a scan's
/// parameters, nor a prefix with start or end (a 400 says which).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StateParams {
    /// The key to read (UTF-8).
    pub key: Option<String>,
    /// The key to read, base64.
    pub key_b64: Option<String>,
    /// The partition to read; by default a key's own (murmur2 over the operator's
    /// partitions, as records are partitioned) and every one for a scan.
    pub partition: Option<u32>,
    /// Scan the keys that start with this.
    pub prefix: Option<String>,
    pub prefix_b64: Option<String>,
    /// Scan from this key on (included).
    pub start: Option<String>,
    pub start_b64: Option<String>,
    /// Scan up to this key (excluded).
    pub end: Option<String>,
    pub end_b64: Option<String>,
    /// Entries per page (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// The `continuation` of the page before.
    pub continuation: Option<String>,
}

/// Entries of a store and, for a scan with more to read, where the next page goes on.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StateRead {
    pub pipeline: String,
    pub operator: String,
    pub store: String,
    pub entries: Vec<StateEntryView>,
    /// Pass as `continuation` for the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub continuation: Option<String>,
    /// The server that answered (in a cluster).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

/// One committed entry: key and value as text when they are UTF-8, base64 otherwise; a
/// value of 8 bytes (a counter of `increment`) also as the number it holds.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StateEntryView {
    pub partition: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_b64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_b64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<i64>,
    /// In a cluster's scan, the server that read the entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

impl From<StateEntry> for StateEntryView {
    fn from(e: StateEntry) -> Self {
        let (key, key_b64) = text_or_b64(e.key);
        let number = <[u8; 8]>::try_from(e.value.as_slice())
            .ok()
            .map(i64::from_le_bytes);
        let (value, value_b64) = text_or_b64(e.value);
        StateEntryView {
            partition: e.partition,
            key,
            key_b64,
            value,
            value_b64,
            number,
            server: None,
        }
    }
}

/// An entry's key as bytes again (a page's last key continues the scan).
pub(super) fn entry_key(e: &StateEntryView) -> Result<Vec<u8>, ApiError> {
    match (&e.key, &e.key_b64) {
        (Some(text), _) => Ok(text.clone().into_bytes()),
        (None, Some(b64)) => STANDARD.decode(b64).map_err(|_| {
            ApiError::new(
                axum::http::StatusCode::BAD_GATEWAY,
                "bad answer",
                "another server answered a key that is not base64",
            )
        }),
        (None, None) => Err(ApiError::new(
            axum::http::StatusCode::BAD_GATEWAY,
            "bad answer",
            "another server answered an entry without a key",
        )),
    }
}

/// Text when the bytes are UTF-8 without control characters (but tabs and line ends),
/// base64 otherwise (a counter's 8 bytes are UTF-8, but not text).
fn text_or_b64(bytes: Vec<u8>) -> (Option<String>, Option<String>) {
    match String::from_utf8(bytes) {
        Ok(s)
            if !s
                .chars()
                .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')) =>
        {
            (Some(s), None)
        }
        Ok(s) => (None, Some(STANDARD.encode(s.into_bytes()))),
        Err(e) => (None, Some(STANDARD.encode(e.into_bytes()))),
    }
}

/// The value under a key, or a page of a scan, of an operator's store: committed state
/// only, read beside the running tasks (or from a stopped pipeline's stored state). In a
/// cluster, a partition another server runs is read from that server.
#[utoipa::path(get, operation_id = "pipelines_state", path = "/v1/pipelines/{name}/state/{operator}/{store}", tag = "pipelines",
    params(("name" = String, Path), ("operator" = String, Path, description = "The operator's id in the pipeline"),
        ("store" = String, Path), StateParams),
    responses(
        (status = 200, body = StateRead),
        (status = 400, description = "A bad key encoding, conflicting parameters, a partition out of range, a bad continuation", body = ErrorBody),
        (status = 404, description = "No such pipeline, operator or store; for a key, no value under it", body = ErrorBody),
        (status = 503, description = "In a cluster: the server that runs a partition the query reads did not answer", body = ErrorBody)))]
async fn query(
    State(state): State<AppState>,
    Path((name, operator, store)): Path<(String, String, String)>,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<StateParams>,
) -> Result<Json<StateRead>, ApiError> {
    let queries = Arc::clone(&state.queries);
    let answer = answer(state, (name, operator, store), headers, params);
    Ok(Json(queries.run(answer).await?))
}

/// A query's answer, worked out on the query threads.
async fn answer(
    state: AppState,
    (name, operator, store): (String, String, String),
    headers: HeaderMap,
    params: StateParams,
) -> Result<StateRead, ApiError> {
    let controller = state.controller.clone();
    let me = state.controller.server_name().map(str::to_string);
    let sent_here = forward::forwarded(&headers, me.as_deref())?;
    let at = (name.clone(), operator.clone(), store.clone());
    // Read here what this server holds; what another server runs comes back as what to
    // ask it.
    let plan = move || {
        let (name, operator, store) = at;
        // What the query names is looked up first: a missing one is a 404 whatever the
        // parameters.
        let at = StoreRef {
            pipeline: &name,
            operator: &operator,
            store: &store,
        };
        let found = controller.state_store(at)?;
        // A query another server sent is answered here, never sent on.
        let owners = |parts: std::ops::Range<u32>| match sent_here {
            true => Ok(BTreeMap::new()),
            false => controller.state_owners(&name, parts),
        };
        match Form::of(&params)? {
            Form::Key(key) => {
                let p = controller.state_partition(found, &key, params.partition)?;
                if let Some(owner) = owners(p..p + 1)?.remove(&p) {
                    return Ok(Planned::Ask(owner, forward::key_params(&key, p)));
                }
                if !found.is_here() {
                    return Err(controller.state_missing_store(at).into());
                }
                let (partition, value) = controller.state_get(found, &key, Some(p))?;
                let Some(value) = value else {
                    return Err(ApiError::not_found(
                        "no value",
                        format!(
                            "no committed value under {} in partition {partition} of {operator}/{store}",
                            shown(&key)
                        ),
                    ));
                };
                let entry = StateEntry {
                    partition,
                    key,
                    value,
                };
                Ok(Planned::Read(vec![entry.into()], None))
            }
            Form::Scan {
                range,
                after,
                limit,
            } => {
                let parts = controller.state_partitions(found, params.partition)?;
                if let Some((p, _)) = &after
                    // Out of range: the operator's partitions say so; else not this scan's.
                    && !controller.state_partitions(found, Some(*p))?.is_empty()
                    && !parts.contains(p)
                {
                    return Err(ApiError::bad_request(
                        "bad continuation",
                        format!(
                            "the continuation is in partition {p}, which this scan does not read"
                        ),
                    ));
                }
                let owners = owners(parts.clone())?;
                if !owners.is_empty() {
                    return Ok(Planned::Spread(Spread {
                        found,
                        range,
                        after,
                        limit,
                        parts,
                        owners,
                    }));
                }
                if !found.is_here() {
                    return Err(controller.state_missing_store(at).into());
                }
                let StatePage { entries, next } =
                    controller.state_scan(found, &range, params.partition, after, limit)?;
                let entries = entries.into_iter().map(StateEntryView::from).collect();
                Ok(Planned::Read(
                    entries,
                    next.map(|(p, k)| encode_continuation(p, &k)),
                ))
            }
        }
    };
    let planned = plan()?;
    let target = forward::Target {
        pipeline: &name,
        operator: &operator,
        store: &store,
        auth: headers.get(header::AUTHORIZATION),
        me: me.as_deref().unwrap_or(""),
    };
    let (entries, continuation) = match planned {
        Planned::Ask(owner, params) => return forward::ask(&owner, &target, &params).await,
        Planned::Read(entries, continuation) => (entries, continuation),
        Planned::Spread(spread) => spread.read(&state, &target, me.clone()).await?,
    };
    Ok(StateRead {
        pipeline: name,
        operator,
        store,
        entries,
        continuation,
        server: me,
    })
}

/// What a query comes to once this server looked at it.
enum Planned {
    /// Answered here: the entries and the continuation.
    Read(Vec<StateEntryView>, Option<String>),
    /// A key another server holds: ask it.
    Ask(PartitionOwner, Vec<(&'static str, String)>),
    /// A scan over partitions of several servers.
    Spread(Spread),
}

/// A scan some of whose partitions other servers run.
struct Spread {
    found: QueriedStore,
    range: KeyRange,
    after: Option<(u32, Vec<u8>)>,
    limit: usize,
    parts: std::ops::Range<u32>,
    owners: BTreeMap<u32, PartitionOwner>,
}

impl Spread {
    /// One page, each partition read where it runs, each entry naming its server.
    async fn read(
        self,
        state: &AppState,
        target: &forward::Target<'_>,
        me: Option<String>,
    ) -> Result<(Vec<StateEntryView>, Option<String>), ApiError> {
        let Spread {
            found,
            range,
            after,
            limit,
            parts,
            owners,
        } = self;
        let range = Arc::new(range);
        forward::scan_page(parts, after, limit, |p, after_key, room| {
            let (range, controller, owners, me) = (
                Arc::clone(&range),
                state.controller.clone(),
                &owners,
                me.clone(),
            );
            async move {
                if let Some(owner) = owners.get(&p) {
                    let params = forward::scan_params(&range, p, room, after_key.as_deref());
                    let page = forward::ask(owner, target, &params).await?;
                    let more = page.continuation.is_some();
                    let server = Some(owner.server.clone());
                    let entries = page
                        .entries
                        .into_iter()
                        .map(|e| StateEntryView {
                            server: server.clone(),
                            ..e
                        })
                        .collect();
                    return Ok(forward::PartitionPage { entries, more });
                }
                let after = after_key.map(|k| (p, k));
                let page = controller.state_scan(found, &range, Some(p), after, room)?;
                let entries = page
                    .entries
                    .into_iter()
                    .map(|e| StateEntryView {
                        server: me.clone(),
                        ..StateEntryView::from(e)
                    })
                    .collect();
                Ok(forward::PartitionPage {
                    entries,
                    more: page.next.is_some(),
                })
            }
        })
        .await
    }
}

/// What a query asks, its parameters checked.
enum Form {
    Key(Vec<u8>),
    Scan {
        range: KeyRange,
        after: Option<(u32, Vec<u8>)>,
        limit: usize,
    },
}

impl Form {
    fn of(p: &StateParams) -> Result<Self, ApiError> {
        let key = bytes("key", &p.key, &p.key_b64)?;
        let prefix = bytes("prefix", &p.prefix, &p.prefix_b64)?;
        let start = bytes("start", &p.start, &p.start_b64)?;
        let end = bytes("end", &p.end, &p.end_b64)?;
        if let Some(key) = key {
            if prefix.is_some() || start.is_some() || end.is_some() {
                return Err(conflict("key reads one key; prefix, start and end scan"));
            }
            if p.limit.is_some() || p.continuation.is_some() {
                return Err(conflict("limit and continuation page a scan, not a key"));
            }
            return Ok(Form::Key(key));
        }
        let range = match (prefix, start, end) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(conflict("scan a prefix, or from start to end, not both"));
            }
            (Some(prefix), None, None) => KeyRange::prefix(&prefix),
            (None, start, end) => KeyRange {
                start: start.unwrap_or_default(),
                end,
            },
        };
        let limit = p.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::bad_request(
                "invalid query",
                format!("limit must be 1 to {MAX_LIMIT}, not {limit}"),
            ));
        }
        let after = p
            .continuation
            .as_deref()
            .map(decode_continuation)
            .transpose()?;
        Ok(Form::Scan {
            range,
            after,
            limit,
        })
    }
}

fn conflict(detail: &str) -> ApiError {
    ApiError::bad_request("invalid query", detail)
}

/// A key given as text (`name`) or as base64 (`name_b64`), not both.
fn bytes(
    name: &str,
    text: &Option<String>,
    b64: &Option<String>,
) -> Result<Option<Vec<u8>>, ApiError> {
    match (text, b64) {
        (Some(_), Some(_)) => Err(conflict(&format!("give {name} or {name}_b64, not both"))),
        (Some(t), None) => Ok(Some(t.as_bytes().to_vec())),
        (None, Some(b)) => STANDARD
            .decode(b)
            .or_else(|_| URL_SAFE_NO_PAD.decode(b))
            .map(Some)
            .map_err(|e| {
                ApiError::bad_request("bad key encoding", format!("{name}_b64 is not base64: {e}"))
            }),
        (None, None) => Ok(None),
    }
}

/// A continuation: the partition (4 bytes, big-endian) and the last key read, base64url.
pub(super) fn encode_continuation(partition: u32, key: &[u8]) -> String {
    let mut raw = partition.to_be_bytes().to_vec();
    raw.extend_from_slice(key);
    URL_SAFE_NO_PAD.encode(raw)
}

pub(super) fn decode_continuation(token: &str) -> Result<(u32, Vec<u8>), ApiError> {
    let bad = || {
        ApiError::bad_request(
            "bad continuation",
            "continuation must be the `continuation` of an earlier page, as it was",
        )
    };
    let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let (p, key) = raw.split_first_chunk::<4>().ok_or_else(bad)?;
    Ok((u32::from_be_bytes(*p), key.to_vec()))
}

/// A key as an error message shows it: quoted text, or base64.
fn shown(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) => format!("key {s:?}"),
        Err(_) => format!("key_b64 {}", STANDARD.encode(key)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuations_round_trip_and_refuse_garbage() {
        let token = encode_continuation(3, b"\xffkey");
        assert_eq!(
            decode_continuation(&token).unwrap(),
            (3, b"\xffkey".to_vec())
        );
        for bad in ["", "AAA", "not base64!", "%%"] {
            assert_eq!(decode_continuation(bad).unwrap_err().status, 400, "{bad}");
        }
    }

    #[test]
    fn entries_show_text_bytes_and_counters() {
        let v: StateEntryView = StateEntry {
            partition: 1,
            key: b"word".to_vec(),
            value: 42i64.to_le_bytes().to_vec(),
        }
        .into();
        assert_eq!(v.key.as_deref(), Some("word"));
        assert_eq!(v.number, Some(42));
        assert!(v.value.is_none() && v.value_b64.is_some());
        let v: StateEntryView = StateEntry {
            partition: 0,
            key: vec![0xff, 0],
            value: b"{\"n\":1}".to_vec(),
        }
        .into();
        assert_eq!(v.key_b64.as_deref(), Some("/wA="));
        assert_eq!(v.value.as_deref(), Some("{\"n\":1}"));
        assert_eq!(v.number, None);
    }
}
