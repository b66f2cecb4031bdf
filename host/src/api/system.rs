//! `/healthz` and `/metrics`.

use super::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health))
        .route("/metrics", get(metrics))
}

/// Liveness.
#[utoipa::path(get, operation_id = "system_health", path = "/healthz", tag = "system", security(()), responses((status = 200, description = "The server is up")))]
async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Prometheus metrics.
#[utoipa::path(get, operation_id = "system_metrics", path = "/metrics", tag = "system", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let controller = state.controller.clone();
    // State sizes are computed at scrape time.
    let _ = tokio::task::spawn_blocking(move || controller.refresh_gauges()).await;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
