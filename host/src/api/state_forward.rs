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

/// The most another server's answer may hold: a page of at most 1000 entries.
const MAX_ANSWER: usize = 256 << 20;

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
        // The caller's token goes to the server the catalog names and nowhere else: no
        // redirects followed, no proxy from the environment.
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
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
    let mut response = request
        .send()
        .await
        .map_err(|e| unavailable(format!("did not answer ({})", without_url(&e))))?;
    let status = response.status();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| unavailable(format!("broke off its answer ({})", without_url(&e))))?
    {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(unavailable(format!(
                "answered more than {} MiB",
                MAX_ANSWER >> 20
            )));
        }
        body.extend_from_slice(&chunk);
    }
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
        let room = limit - entries.len();
        let page = read(p, after_key, room).await?;
        if page.entries.len() > room || (page.more && page.entries.is_empty()) {
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "bad answer",
                format!("the server of partition {p} answered a page that does not fit the scan"),
            ));
        }
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

/// Whether a request came from another server (and must be answered here). One that
/// came from this very server went round: the address another server published reaches
/// this one (a server listening on every interface without `--advertise-url`).
pub fn forwarded(headers: &HeaderMap, me: Option<&str>) -> Result<bool, ApiError> {
    let Some(from) = headers.get(FORWARDED) else {
        return Ok(false);
    };
    if me.is_some_and(|me| from.as_bytes() == me.as_bytes()) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "partition unavailable",
            "this server forwarded the query to an address that reaches itself: the server that runs the partition published a wrong address (give it --advertise-url)",
        ));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::state::decode_continuation;

    fn view(partition: u32, key: &str) -> StateEntryView {
        StateEntryView {
            partition,
            key: Some(key.into()),
            key_b64: None,
            value: None,
            value_b64: None,
            number: None,
            server: None,
        }
    }

    /// Reads partition `p` of `data` as a server would: keys after `after`, up to `room`.
    fn reader(
        data: &[Vec<&'static str>],
        p: u32,
        after: Option<Vec<u8>>,
        room: usize,
    ) -> PartitionPage {
        let keys: Vec<&str> = data[p as usize]
            .iter()
            .copied()
            .filter(|k| after.as_ref().is_none_or(|a| k.as_bytes() > a.as_slice()))
            .collect();
        PartitionPage {
            more: keys.len() > room,
            entries: keys.into_iter().take(room).map(|k| view(p, k)).collect(),
        }
    }

    /// Every page of a scan over `data` with `limit`, following the continuations.
    async fn pages(data: &[Vec<&'static str>], limit: usize) -> Vec<Vec<String>> {
        let (mut after, mut out) = (None, Vec::new());
        loop {
            let (entries, next) = scan_page(0..data.len() as u32, after, limit, |p, a, room| {
                let page = reader(data, p, a, room);
                async move { Ok(page) }
            })
            .await
            .unwrap();
            out.push(entries.into_iter().map(|e| e.key.unwrap()).collect());
            match next {
                Some(c) => after = Some(decode_continuation(&c).unwrap()),
                None => return out,
            }
        }
    }

    #[tokio::test]
    async fn pages_cross_partitions_as_one_server_pages_them() {
        let data = vec![vec!["a", "b"], vec![], vec!["c", "d", "e"], vec!["f"]];
        // A partition that fills the page exactly goes on after its last key; empty
        // partitions are passed over; the last partition's end ends the scan.
        assert_eq!(pages(&data, 2).await, [["a", "b"], ["c", "d"], ["e", "f"]]);
        let one: Vec<Vec<String>> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .map(|k| vec![k.to_string()])
            .collect();
        assert_eq!(pages(&data, 1).await, one);
        assert_eq!(pages(&data, 100).await, [["a", "b", "c", "d", "e", "f"]]);
    }

    #[tokio::test]
    async fn a_page_that_does_not_fit_is_refused() {
        // More entries than asked, or "more" with none: not a page of this scan.
        for bad in [
            PartitionPage {
                entries: vec![view(0, "a"), view(0, "b")],
                more: false,
            },
            PartitionPage {
                entries: Vec::new(),
                more: true,
            },
        ] {
            let mut bad = Some(bad);
            let e = scan_page(0..2, None, 1, |_, _, _| {
                let page = bad.take().unwrap();
                async move { Ok(page) }
            })
            .await
            .unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_GATEWAY, "{}", e.detail);
        }
    }
}
