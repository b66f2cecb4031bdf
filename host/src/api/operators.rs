//! `/v1/operators`: upload, list, describe, download and delete operator versions.

use super::extract::LimitedBody;
use super::{ApiError, AppState, ErrorBody, blocking};
use crate::registry::OperatorVersion;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Serialize;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/operators", get(list))
        .route(
            "/operators/{name}",
            put(upload).get(describe).delete(delete_all),
        )
        .route(
            "/operators/{name}/versions/{version}",
            get(version).delete(delete_version),
        )
        .route("/operators/{name}/versions", get(describe))
        .route("/operators/{name}/latest", get(latest))
}

/// An operator and its versions.
#[derive(Serialize, utoipa::ToSchema)]
pub struct OperatorSummary {
    pub name: String,
    pub latest: u32,
    pub versions: Vec<OperatorVersion>,
}

fn summary(name: String, versions: Vec<OperatorVersion>) -> OperatorSummary {
    OperatorSummary {
        name,
        latest: versions.last().map_or(0, |v| v.version),
        versions,
    }
}

/// Uploads a component as the next version of `name`.
#[utoipa::path(put, operation_id = "operators_upload", path = "/v1/operators/{name}", tag = "operators",
    params(("name" = String, Path, description = "Operator name: 1 to 64 characters from A-Z a-z 0-9 . _ -, not starting with a dot")),
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "The component binary"),
    responses(
        (status = 201, description = "Stored as a new version", body = OperatorVersion),
        (status = 200, description = "These bytes were already stored under this name", body = OperatorVersion),
        (status = 400, description = "Not a valid operator component", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)))]
async fn upload(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: LimitedBody,
) -> Result<Response, ApiError> {
    match body.content_type.as_deref() {
        Some("application/wasm" | "application/octet-stream") | None => {}
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported media type",
                format!(
                    "upload the component's bytes with Content-Type: application/wasm (got {other})"
                ),
            ));
        }
    }
    if body.bytes.is_empty() {
        return Err(ApiError::bad_request(
            "empty body",
            "send the .wasm file as the request body",
        ));
    }
    let controller = state.controller.clone();
    let (v, created) = blocking(move || Ok(controller.push_operator(&name, &body.bytes)?)).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(v)).into_response())
}

/// Every operator with its versions.
#[utoipa::path(get, operation_id = "operators_list", path = "/v1/operators", tag = "operators",
    responses((status = 200, body = Vec<OperatorSummary>)))]
async fn list(State(state): State<AppState>) -> Result<Json<Vec<OperatorSummary>>, ApiError> {
    let registry = state.controller.registry().clone();
    let all = blocking(move || Ok(registry.list()?)).await?;
    Ok(Json(all.into_iter().map(|(n, v)| summary(n, v)).collect()))
}

/// One operator and its versions.
#[utoipa::path(get, operation_id = "operators_describe", path = "/v1/operators/{name}", tag = "operators",
    params(("name" = String, Path)),
    responses((status = 200, body = OperatorSummary), (status = 404, body = ErrorBody)))]
async fn describe(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<OperatorSummary>, ApiError> {
    let registry = state.controller.registry().clone();
    let n = name.clone();
    let versions = blocking(move || Ok(registry.versions(&n)?)).await?;
    Ok(Json(summary(name, versions)))
}

/// The latest version's metadata.
#[utoipa::path(get, operation_id = "operators_latest", path = "/v1/operators/{name}/latest", tag = "operators",
    params(("name" = String, Path)),
    responses((status = 200, body = OperatorVersion), (status = 404, body = ErrorBody)))]
async fn latest(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<OperatorVersion>, ApiError> {
    let registry = state.controller.registry().clone();
    Ok(Json(
        blocking(move || Ok(registry.resolve(&name, None)?)).await?,
    ))
}

/// One version: its metadata, or with `Accept: application/wasm` its binary.
#[utoipa::path(get, operation_id = "operators_version", path = "/v1/operators/{name}/versions/{version}", tag = "operators",
    params(("name" = String, Path), ("version" = u32, Path)),
    responses(
        (status = 200, description = "Metadata (JSON) or the binary (application/wasm)", body = OperatorVersion),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let version: u32 = version.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid version",
            format!("{version:?} is not a version number"),
        )
    })?;
    let wants_binary = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/wasm"));
    let registry = state.controller.registry().clone();
    blocking(move || {
        let v = registry.version(&name, version)?;
        if wants_binary {
            let bytes = registry.blob(&v)?;
            Ok(([(header::CONTENT_TYPE, "application/wasm")], bytes).into_response())
        } else {
            Ok(Json(v).into_response())
        }
    })
    .await
}

/// Deletes every version of an operator (refused while a pipeline uses one).
#[utoipa::path(delete, operation_id = "operators_delete_all", path = "/v1/operators/{name}", tag = "operators",
    params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_all(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let controller = state.controller.clone();
    blocking(move || Ok(controller.delete_operator(&name, None)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes one version (refused while a pipeline uses it).
#[utoipa::path(delete, operation_id = "operators_delete_version", path = "/v1/operators/{name}/versions/{version}", tag = "operators",
    params(("name" = String, Path), ("version" = u32, Path)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let version: u32 = version.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid version",
            format!("{version:?} is not a version number"),
        )
    })?;
    let controller = state.controller.clone();
    blocking(move || Ok(controller.delete_operator(&name, Some(version))?)).await?;
    Ok(StatusCode::NO_CONTENT)
}
