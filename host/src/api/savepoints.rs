//! `/v1/savepoints` and `/v1/pipelines/{name}/savepoints|restore`: take, list, describe,
//! delete, download and upload savepoints; restore pipelines from them.

use super::extract::{ApiJson, LimitedBody};
use super::{ApiError, AppState, ErrorBody, blocking};
use crate::control::{Manifest, Restored, SavepointError};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

/// Savepoint archives built at once (each may be gigabytes on disk).
static DOWNLOADS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/savepoints", get(list).post(upload))
        .route("/savepoints/{id}", get(describe).delete(remove))
        .route("/savepoints/{id}/archive", get(archive))
        .route("/pipelines/{name}/savepoints", get(list_for).post(take))
        .route("/pipelines/{name}/restore", post(restore))
}

impl From<SavepointError> for ApiError {
    fn from(e: SavepointError) -> Self {
        match e {
            SavepointError::NotFound(_) => {
                ApiError::not_found("savepoint not found", e.to_string())
            }
            SavepointError::Exists(_) => ApiError::conflict("savepoint exists", e.to_string()),
            SavepointError::Corrupt(_) => {
                ApiError::bad_request("unusable savepoint", e.to_string())
            }
            SavepointError::Incompatible { .. } => {
                ApiError::bad_request("incompatible savepoint", e.to_string())
            }
            SavepointError::Io(_) => ApiError::internal(e),
        }
    }
}

/// Takes a savepoint of a pipeline. A running pipeline pauses only while a snapshot is
/// taken and keeps running while the files are written.
#[utoipa::path(post, operation_id = "savepoints_take", path = "/v1/pipelines/{name}/savepoints", tag = "savepoints", params(("name" = String, Path)),
    responses((status = 201, body = Manifest), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn take(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<Manifest>), ApiError> {
    let controller = state.controller.clone();
    Ok((
        StatusCode::CREATED,
        Json(blocking(move || Ok(controller.savepoint(&name)?)).await?),
    ))
}

/// The savepoints of one pipeline, oldest first.
#[utoipa::path(get, operation_id = "savepoints_list_for", path = "/v1/pipelines/{name}/savepoints", tag = "savepoints", params(("name" = String, Path)),
    responses((status = 200, body = Vec<Manifest>)))]
async fn list_for(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Vec<Manifest>>, ApiError> {
    let all = state.controller.savepoints().list()?;
    Ok(Json(
        all.into_iter().filter(|m| m.pipeline == name).collect(),
    ))
}

/// Every savepoint, oldest first.
#[utoipa::path(get, operation_id = "savepoints_list", path = "/v1/savepoints", tag = "savepoints", responses((status = 200, body = Vec<Manifest>)))]
async fn list(State(state): State<AppState>) -> Result<Json<Vec<Manifest>>, ApiError> {
    Ok(Json(state.controller.savepoints().list()?))
}

/// A savepoint's manifest.
#[utoipa::path(get, operation_id = "savepoints_describe", path = "/v1/savepoints/{id}", tag = "savepoints", params(("id" = String, Path)),
    responses((status = 200, body = Manifest), (status = 404, body = ErrorBody)))]
async fn describe(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Manifest>, ApiError> {
    Ok(Json(state.controller.savepoints().get(&id)?))
}

/// Deletes a savepoint (in a cluster, on every server).
#[utoipa::path(delete, operation_id = "savepoints_remove", path = "/v1/savepoints/{id}", tag = "savepoints", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let controller = state.controller.clone();
    blocking(move || Ok(controller.delete_savepoint(&id)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The savepoint as one `.tar.gz` archive, to upload to another server.
#[utoipa::path(get, operation_id = "savepoints_archive", path = "/v1/savepoints/{id}/archive", tag = "savepoints", params(("id" = String, Path)),
    responses((status = 200, content_type = "application/gzip", description = "The archive"), (status = 404, body = ErrorBody)))]
async fn archive(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    // An archive is built into a temporary file and streamed from there; a few at a time.
    let _permit = DOWNLOADS.acquire().await.map_err(ApiError::internal)?;
    let controller = state.controller.clone();
    let name = format!("attachment; filename=\"{id}.tar.gz\"");
    let (file, len) = blocking(move || Ok(controller.savepoints().archive(&id)?)).await?;
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(
        tokio::fs::File::from_std(file),
    ));
    Ok((
        [
            (header::CONTENT_TYPE, "application/gzip".to_string()),
            (header::CONTENT_DISPOSITION, name),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        body,
    )
        .into_response())
}

/// Uploads a savepoint archive (from `GET /v1/savepoints/{id}/archive`). It is checked
/// completely (manifest, every file's checksum) before it is kept.
#[utoipa::path(post, operation_id = "savepoints_upload", path = "/v1/savepoints", tag = "savepoints",
    request_body(content = Vec<u8>, content_type = "application/gzip"),
    responses((status = 201, body = Manifest), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
async fn upload(
    State(state): State<AppState>,
    body: LimitedBody,
) -> Result<(StatusCode, Json<Manifest>), ApiError> {
    let controller = state.controller.clone();
    let m = blocking(move || Ok(controller.savepoints().import(&body.bytes)?)).await?;
    Ok((StatusCode::CREATED, Json(m)))
}

/// Which savepoint to restore.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    pub savepoint: String,
}

/// Restores a stopped pipeline's state and source offsets from a savepoint. A corrupt or
/// incompatible savepoint is refused before anything changes.
#[utoipa::path(post, operation_id = "savepoints_restore", path = "/v1/pipelines/{name}/restore", tag = "savepoints", params(("name" = String, Path)), request_body = RestoreRequest,
    responses((status = 200, body = Restored), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 415, body = ErrorBody)))]
async fn restore(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<RestoreRequest>,
) -> Result<Json<Restored>, ApiError> {
    let controller = state.controller.clone();
    Ok(Json(
        blocking(move || Ok(controller.restore(&name, &req.savepoint)?)).await?,
    ))
}
