//! The HTTP API: JSON under `/v1`, errors as `{error, detail}`, an OpenAPI document at
//! `/v1/openapi.json`, Prometheus metrics at `/metrics`, and `/healthz`.
//!
//! [`router`] builds the whole API over an [`AppState`], so tests call it with
//! `tower::ServiceExt::oneshot` and no socket.

mod error;
mod extract;
mod gate;
mod number;
mod openapi;
mod operators;
mod pipelines;
mod query_pool;
mod savepoints;
mod shadow;
mod state;
mod state_forward;
mod system;
mod topics;

pub use error::{ApiError, ErrorBody};
pub use query_pool::QueryPool;

use crate::control::Controller;
use crate::metrics::Metrics;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// When set, every call but `/healthz` needs `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// A second token that may only read (GET and HEAD).
    pub read_token: Option<String>,
    /// Reads need no token (changes still need `token`).
    pub public_read: bool,
    /// Largest request body (operator uploads, produced records).
    pub max_body_bytes: usize,
    /// Added to the nice value of the threads that answer state queries (0 to 19).
    pub query_nice: i32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            token: None,
            read_token: None,
            public_read: false,
            max_body_bytes: 64 << 20,
            query_nice: 10,
        }
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub controller: Arc<Controller>,
    pub metrics: Arc<Metrics>,
    pub config: Arc<ApiConfig>,
    /// Where state queries run.
    pub queries: Arc<QueryPool>,
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .merge(operators::routes())
        .merge(topics::routes())
        .merge(pipelines::routes())
        .merge(shadow::routes())
        .merge(savepoints::routes())
        .merge(state::routes())
        .route("/openapi.json", axum::routing::get(openapi::document));
    Router::new()
        .nest("/v1", v1)
        .merge(system::routes())
        .merge(crate::dashboard::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        // Bodies are read by the handlers with the server's own limit (LimitedBody).
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(
        "no such endpoint",
        format!(
            "{} {} is not part of the API; see /v1/openapi.json",
            req.method(),
            req.uri().path()
        ),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed",
        format!(
            "{} is not supported on {}; see /v1/openapi.json",
            req.method(),
            req.uri().path()
        ),
    )
}

pub use gate::Gate;

/// The probes: they answer without a token.
pub const OPEN_PATHS: [&str; 2] = ["/healthz", "/readyz"];

/// Guards every call but the probes with the bearer token, when one is set: the API
/// token may do everything, the read token (or anyone, with `public_read`) only read.
async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let config = &state.config;
    let Some(token) = &config.token else {
        return next.run(req).await;
    };
    let path = req.uri().path();
    if OPEN_PATHS.contains(&path) || crate::dashboard::PATHS.contains(&path) {
        return next.run(req).await;
    }
    let reading = matches!(*req.method(), Method::GET | Method::HEAD);
    if reading && config.public_read {
        return next.run(req).await;
    }
    let given = match bearer(&req) {
        Ok(given) => given,
        Err(response) => return response,
    };
    let Some(given) = given else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing token",
            "this server requires `Authorization: Bearer <token>` (the CLI reads EDDY_API_TOKEN)",
        )
        .into_response();
    };
    if same_token(given, token) {
        return next.run(req).await;
    }
    if let Some(read) = &config.read_token
        && same_token(given, read)
    {
        if reading {
            return next.run(req).await;
        }
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "read-only token",
            "this token may only read; changes need the server's --api-token",
        )
        .into_response();
    }
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "wrong token",
        "the bearer token does not match the server's",
    )
    .into_response()
}

/// The token of an `Authorization: Bearer <token>` header, exactly as sent (no
/// trimming: `Bearer t ` is not `t`); `Ok(None)` when there is none.
#[allow(clippy::result_large_err)]
fn bearer(req: &Request) -> Result<Option<&[u8]>, Response> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    // The scheme is case-insensitive (RFC 9110); the token is not.
    match bytes.split_at_checked(7) {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case(b"bearer ") => Ok(Some(token)),
        _ => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "wrong token",
            "send the token as `Authorization: Bearer <token>`",
        )
        .into_response()),
    }
}

/// Compares tokens in constant time (over their digests, so not even the length
/// shows in the timing).
fn same_token(given: &[u8], expected: &str) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    let (a, b) = (Sha256::digest(given), Sha256::digest(expected.as_bytes()));
    a.as_slice().ct_eq(b.as_slice()).into()
}

/// Runs blocking work (RocksDB, compilation, waiting for tasks) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
}
