//! The probes (`/healthz`, `/readyz`), `/metrics`, and the server's own status.

use super::AppState;
use crate::control::ServerStatus;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/v1/server", get(server))
}

/// Liveness: `ok`, or `starting` while the server opens its data.
#[utoipa::path(get, operation_id = "system_health", path = "/healthz", tag = "system", security(()), responses((status = 200, description = "The server is alive: `{\"status\": \"ok\"}`, or `\"starting\"` while it opens its data")))]
async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: 200 once the server has opened its data and answers every call.
#[utoipa::path(get, operation_id = "system_ready", path = "/readyz", tag = "system", security(()), responses((status = 200, description = "The server answers every call"), (status = 503, description = "The server is still opening its data")))]
async fn ready() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Prometheus metrics.
#[utoipa::path(get, operation_id = "system_metrics", path = "/metrics", tag = "system", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let controller = state.controller.clone();
    // State sizes and memory use are computed at scrape time.
    let _ = tokio::task::spawn_blocking(move || controller.refresh_gauges()).await;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// The server: its memory budget and where it goes.
#[utoipa::path(get, operation_id = "system_server", path = "/v1/server", tag = "system", responses((status = 200, body = ServerStatus)))]
async fn server(State(state): State<AppState>) -> Json<ServerStatus> {
    Json(state.controller.server_status())
}
