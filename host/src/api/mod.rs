//! The HTTP API: JSON under `/v1`, errors as `{error, detail}`, an OpenAPI document at
//! `/v1/openapi.json`, Prometheus metrics at `/metrics`, and `/healthz`.
//!
//! [`router`] builds the whole API over an [`AppState`], so tests call it with
//! `tower::ServiceExt::oneshot` and no socket.

mod error;
mod extract;
mod openapi;
mod operators;
mod pipelines;
mod savepoints;
mod system;
mod topics;

pub use error::{ApiError, ErrorBody};

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
    /// When set, every mutating call needs `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Largest request body (operator uploads, produced records).
    pub max_body_bytes: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            token: None,
            max_body_bytes: 64 << 20,
        }
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub controller: Arc<Controller>,
    pub metrics: Arc<Metrics>,
    pub config: Arc<ApiConfig>,
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .merge(operators::routes())
        .merge(topics::routes())
        .merge(pipelines::routes())
        .merge(savepoints::routes())
        .route("/openapi.json", axum::routing::get(openapi::document));
    Router::new()
        .nest("/v1", v1)
        .merge(system::routes())
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

/// Guards every mutating call with the bearer token, when one is set.
async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(token) = &state.config.token else {
        return next.run(req).await;
    };
    let mutating = matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::DELETE | Method::PATCH
    );
    if !mutating {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(t) if constant_time_eq(t.as_bytes(), token.as_bytes()) => next.run(req).await,
        Some(_) => ApiError::new(StatusCode::UNAUTHORIZED, "wrong token", "the bearer token does not match the server's --api-token")
            .into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing token",
            "this server requires `Authorization: Bearer <token>` on changes (the CLI reads EDDY_API_TOKEN)",
        )
        .into_response(),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Runs blocking work (RocksDB, compilation, waiting for tasks) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
}
