//! What the HTTP API answers while the server is still opening its data (state,
//! operators, pipelines to resume): `/healthz` says `starting`, `/readyz` and every
//! other call answer 503; once the server is up, every request goes to the API.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use tower::ServiceExt;

use super::error::ApiError;

/// Holds the API's router once the server is up.
#[derive(Clone, Default)]
pub struct Gate(Arc<OnceLock<Router>>);

impl Gate {
    /// The router to serve from the start.
    pub fn router(&self) -> Router {
        Router::new().fallback(pass).with_state(self.clone())
    }

    /// The server is up: requests go to `api` from now on.
    pub fn open(&self, api: Router) {
        let _ = self.0.set(api);
    }
}

async fn pass(State(gate): State<Gate>, req: Request) -> Response {
    if let Some(api) = gate.0.get() {
        let answer: Result<Response, Infallible> = api.clone().oneshot(req).await;
        return match answer {
            Ok(response) => response,
            Err(never) => match never {},
        };
    }
    let starting = serde_json::json!({ "status": "starting" });
    match req.uri().path() {
        // Alive, not ready: a liveness probe passes, a readiness probe waits.
        "/healthz" => axum::Json(starting).into_response(),
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, axum::Json(starting)).into_response(),
        _ => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting",
            "the server is still opening its data (its log says what it is doing); try again when GET /readyz answers 200",
        )
        .into_response(),
    }
}
