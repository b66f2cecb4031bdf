//! State queries in a cluster: a partition another server runs is read from that server
//! (its committed state is there, not here), with the caller's token; a scan over every
//! partition reads each one where it runs and answers one page, as a single server would.

use super::ApiError;
use super::state::{StateEntryView, StateRead, encode_continuation, entry_key};
use crate::control::{KeyRange, PartitionOwner};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::sync::OnceLock;
use std::time::Duration;

/// Marks a query one server sent another: it is answered where it lands, never sent on
/// (two servers whose views of the assignment differ for a moment cannot loop).
pub const FORWARDED: &str = "x-eddy-forwarded";

/// What a query reads, for the server it is sent to.
pub struct Target<'a> {
    pub pipeline: &'a str,
    pub operator: &'a str,
    pub store: &'a str,
    /// The caller's `Authorization` header, passed on as it came.
    pub auth: Option<&'a HeaderValue>,
    /// This server's name, sent in [`FORWARDED`].
    pub me: &'a str,
}

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client without TLS settings builds")
    })
}

/// Asks `owner` for the query `params` (already in the form every server reads) and
/// gives its answer: the page, or its refusal as it gave it.
pub async fn ask(
    owner: &PartitionOwner,
    target: &Target<'_>,
    params: &[(&str, String)],
) -> Result<StateRead, ApiError> {
    let unavailable = |detail: String| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "partition unavailable",
            format!(
                "server {} runs the partition this query reads, and {detail}; try again",
                owner.server
            ),
        )
    };
    let mut url = reqwest::Url::parse(&owner.url)
        .map_err(|e| unavailable(format!("told an unusable address ({e})")))?;
    url.path_segments_mut()
        .map_err(|()| unavailable("told an unusable address".into()))?
        .pop_if_empty()
        .extend([
            "v1",
            "pipelines",
            target.pipeline,
            "state",
            target.operator,
            target.store,
        ]);
    url.query_pairs_mut().extend_pairs(params);
    let mut request = client().get(url).header(FORWARDED, target.me);
    if let Some(auth) = target.auth {
        request = request.header(header::AUTHORIZATION, auth);
    }
    let response = request
        .send()
        .await
        .map_err(|e| unavailable(format!("did not answer ({})", without_url(&e))))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| unavailable(format!("broke off its answer ({})", without_url(&e))))?;
    if status.is_success() {
        return serde_json::from_slice(&body)
            .map_err(|e| unavailable(format!("answered what is not a page ({e})")));
    }
    if status.is_client_error() {
        // Its refusal is the caller's (a missing value, a wrong token): say it as it did.
        let error: super::ErrorBody = serde_json::from_slice(&body)
            .map_err(|e| unavailable(format!("answered {status} without a reason ({e})")))?;
        return Err(ApiError::new(status, error.error, error.detail));
    }
    Err(unavailable(format!("answered {status}")))
}

fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "its address");
    }
    text
}

/// A key read's parameters: the key as base64 and its partition, so the other server
/// reads exactly the partition this one chose.
pub fn key_params(key: &[u8], partition: u32) -> Vec<(&'static str, String)> {
    vec![
        ("key_b64", URL_SAFE_NO_PAD.encode(key)),
        ("partition", partition.to_string()),
    ]
}

/// One partition's part of a scan page: its range, how many entries fit, and where the
/// page before stopped in it.
pub fn scan_params(
    range: &KeyRange,
    partition: u32,
    room: usize,
    after: Option<&[u8]>,
) -> Vec<(&'static str, String)> {
    let mut params = vec![
        ("partition", partition.to_string()),
        ("limit", room.to_string()),
    ];
    if !range.start.is_empty() {
        params.push(("start_b64", URL_SAFE_NO_PAD.encode(&range.start)));
    }
    if let Some(end) = &range.end {
        params.push(("end_b64", URL_SAFE_NO_PAD.encode(end)));
    }
    if let Some(key) = after {
        params.push(("continuation", encode_continuation(partition, key)));
    }
    params
}

/// One partition's entries as read (here or by its server), and whether it holds more.
pub struct PartitionPage {
    pub entries: Vec<StateEntryView>,
    pub more: bool,
}

/// Fills one page of a scan partition by partition, the way a single server does:
/// a partition with more than fits ends the page there, a full page before the last
/// partition goes on after its last key. `read(p, after, room)` reads one partition.
pub async fn scan_page<F, Fut>(
    partitions: std::ops::Range<u32>,
    after: Option<(u32, Vec<u8>)>,
    limit: usize,
    mut read: F,
) -> Result<(Vec<StateEntryView>, Option<String>), ApiError>
where
    F: FnMut(u32, Option<Vec<u8>>, usize) -> Fut,
    Fut: std::future::Future<Output = Result<PartitionPage, ApiError>>,
{
    let from = match &after {
        Some((p, _)) => (*p).max(partitions.start),
        None => partitions.start,
    };
    let mut entries: Vec<StateEntryView> = Vec::new();
    for p in from..partitions.end {
        let after_key = after
            .as_ref()
            .filter(|(ap, _)| *ap == p)
            .map(|(_, k)| k.clone());
        let page = read(p, after_key, limit - entries.len()).await?;
        entries.extend(page.entries);
        let full = entries.len() == limit;
        if page.more || (full && p + 1 < partitions.end) {
            let next = entries
                .last()
                .map(|e| entry_key(e).map(|k| encode_continuation(p, &k)))
                .transpose()?;
            return Ok((entries, next));
        }
    }
    Ok((entries, None))
}

/// Whether a request came from another server (and must be answered here).
pub fn forwarded(headers: &HeaderMap) -> bool {
    headers.contains_key(FORWARDED)
}
