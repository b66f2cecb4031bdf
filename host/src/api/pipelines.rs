//! `/v1/pipelines`: create (TOML or JSON spec), list, status, stop, start, delete.

use super::extract::{ApiJson, ApiQuery, LimitedBody};
use super::{ApiError, AppState, ErrorBody, blocking};
use crate::control::{
    OperatorConfig, PipelineHistory, PipelineSpec, PipelineStatus, UpgradeDecision, UpgradeRecord,
    UpgradeTo, VersionRef,
};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/pipelines", get(list).post(create))
        .route("/pipelines/{name}", get(status).delete(remove))
        .route("/pipelines/{name}/history", get(history))
        .route("/pipelines/{name}/stop", post(stop))
        .route("/pipelines/{name}/start", post(start))
        .route("/pipelines/{name}/rebuild-state", post(rebuild_state))
        .route("/pipelines/{name}/upgrade", post(upgrade))
        .route("/pipelines/{name}/upgrade/promote", post(promote))
        .route("/pipelines/{name}/upgrade/rollback", post(rollback))
}

/// Reads a spec as JSON (Content-Type: application/json, or a body starting with `{`)
/// or TOML (anything else).
fn parse_spec(body: &[u8], content_type: Option<&str>) -> Result<PipelineSpec, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::bad_request("invalid pipeline spec", format!("not UTF-8: {e}")))?;
    let json = content_type == Some("application/json") || text.trim_start().starts_with('{');
    Ok(if json {
        PipelineSpec::from_json(text)?
    } else {
        PipelineSpec::from_toml(text)?
    })
}

/// Creates a pipeline from its spec and starts it: one task per source partition.
#[utoipa::path(post, operation_id = "pipelines_create", path = "/v1/pipelines", tag = "pipelines",
    request_body(content = String, content_type = "application/toml",
        description = "The pipeline spec, TOML or JSON (the same schema as `eddy run`, operators by name and version)"),
    responses(
        (status = 201, body = PipelineStatus),
        (status = 400, description = "Invalid spec, missing operator or topic, operator init failed", body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    body: LimitedBody,
) -> Result<(StatusCode, Json<PipelineStatus>), ApiError> {
    let spec = parse_spec(&body.bytes, body.content_type.as_deref())?;
    let controller = state.controller.clone();
    let status = blocking(move || Ok(controller.create(spec)?)).await?;
    Ok((StatusCode::CREATED, Json(status)))
}

/// Every pipeline.
#[utoipa::path(get, operation_id = "pipelines_list", path = "/v1/pipelines", tag = "pipelines", responses((status = 200, body = Vec<PipelineStatus>)))]
async fn list(State(state): State<AppState>) -> Json<Vec<PipelineStatus>> {
    Json(state.controller.list())
}

/// A pipeline's state and its tasks' offsets, lag and counters.
#[utoipa::path(get, operation_id = "pipelines_status", path = "/v1/pipelines/{name}", tag = "pipelines", params(("name" = String, Path)),
    responses((status = 200, body = PipelineStatus), (status = 404, body = ErrorBody)))]
async fn status(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<PipelineStatus>, ApiError> {
    Ok(Json(state.controller.status(&name)?))
}

/// The pipeline's tasks' counters (events in and out, errors, lag, committed offset),
/// sampled every second over the last ten minutes, oldest first. The history is kept in
/// memory: it starts afresh when the server starts.
#[utoipa::path(get, operation_id = "pipelines_history", path = "/v1/pipelines/{name}/history", tag = "pipelines", params(("name" = String, Path)),
    responses((status = 200, body = PipelineHistory), (status = 404, body = ErrorBody)))]
async fn history(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<PipelineHistory>, ApiError> {
    Ok(Json(state.controller.history(&name)?))
}

/// Stops a pipeline after its tasks commit.
#[utoipa::path(post, operation_id = "pipelines_stop", path = "/v1/pipelines/{name}/stop", tag = "pipelines", params(("name" = String, Path)),
    responses((status = 200, body = PipelineStatus), (status = 404, body = ErrorBody), (status = 409, description = "Busy with a savepoint, restore or upgrade", body = ErrorBody)))]
async fn stop(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<PipelineStatus>, ApiError> {
    let controller = state.controller.clone();
    Ok(Json(blocking(move || Ok(controller.stop(&name)?)).await?))
}

/// Starts a stopped (or failed) pipeline where it last committed.
#[utoipa::path(post, operation_id = "pipelines_start", path = "/v1/pipelines/{name}/start", tag = "pipelines", params(("name" = String, Path)),
    responses((status = 200, body = PipelineStatus), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "Busy with a savepoint, restore or upgrade", body = ErrorBody)))]
async fn start(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<PipelineStatus>, ApiError> {
    let controller = state.controller.clone();
    Ok(Json(blocking(move || Ok(controller.start(&name)?)).await?))
}

/// Stops and deletes a pipeline with all its state (its topics stay).
#[utoipa::path(delete, operation_id = "pipelines_remove", path = "/v1/pipelines/{name}", tag = "pipelines", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, description = "Busy with a savepoint, restore or upgrade", body = ErrorBody)))]
async fn remove(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let controller = state.controller.clone();
    blocking(move || Ok(controller.delete(&name)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What a rebuild did.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Rebuilt {
    /// Changelog records replayed.
    pub records: u64,
    /// Store partitions rebuilt.
    pub stores: u64,
    pub millis: u64,
}

/// Rebuilds a stopped pipeline's state from its changelogs (its local stores and timers
/// are wiped first).
#[utoipa::path(post, operation_id = "pipelines_rebuild_state", path = "/v1/pipelines/{name}/rebuild-state", tag = "pipelines", params(("name" = String, Path)),
    responses((status = 200, body = Rebuilt), (status = 404, body = ErrorBody), (status = 409, description = "The pipeline is running", body = ErrorBody)))]
async fn rebuild_state(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Rebuilt>, ApiError> {
    let controller = state.controller.clone();
    let started = std::time::Instant::now();
    let r = blocking(move || Ok(controller.rebuild_state(&name)?)).await?;
    Ok(Json(Rebuilt {
        records: r.records,
        stores: r.stores,
        millis: started.elapsed().as_millis() as u64,
    }))
}

/// An upgrade to make.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpgradeRequest {
    /// The operator's id in the pipeline.
    pub operator: String,
    /// A registry version number, or `"latest"` (the default).
    #[serde(default)]
    pub version: Option<VersionRef>,
    /// The operator's new config, whole, handed to the new instances' `init` (values
    /// may be strings, numbers, booleans, arrays or objects). With the version it runs, this is a
    /// reconfigure.
    #[serde(default)]
    pub config: Option<OperatorConfig>,
    /// Only these partitions (of the operator's stage) switch, with probation: a canary,
    /// until `promote` upgrades the others or `rollback` sends it back.
    #[serde(default, deserialize_with = "super::number::whole_list")]
    pub partitions: Option<Vec<u32>>,
}

/// Whether to wait for the probation's end.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UpgradeQuery {
    /// Answer only once the probation ended (with `succeeded` or `rolled_back`).
    pub wait: Option<bool>,
}

/// Hot-upgrades one operator of a running pipeline: savepoint, swap, optional state
/// migration, resume; the new version then runs on probation and is rolled back by
/// itself if it fails. The answer comes once the new version runs (`result: probation`),
/// or with `wait=true` once the probation ended.
#[utoipa::path(post, operation_id = "pipelines_upgrade", path = "/v1/pipelines/{name}/upgrade", tag = "pipelines", params(("name" = String, Path), UpgradeQuery), request_body = UpgradeRequest,
    responses((status = 200, body = UpgradeRecord), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 415, body = ErrorBody)))]
async fn upgrade(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<UpgradeQuery>,
    ApiJson(req): ApiJson<UpgradeRequest>,
) -> Result<Json<UpgradeRecord>, ApiError> {
    let controller = state.controller.clone();
    let wait = q.wait.unwrap_or(false);
    Ok(Json(
        blocking(move || {
            let to = UpgradeTo {
                operator: req.operator,
                version: req.version,
                config: req.config.map(|c| c.0),
                partitions: req.partitions,
            };
            Ok(controller.upgrade(&name, &to, wait)?)
        })
        .await?,
    ))
}

/// Ends the pipeline's upgrade on probation now and keeps the new version (recorded as
/// `succeeded_unexercised` when it had not handled `probation_records` records yet), and
/// answers with the upgrade once it ended; or upgrades the partitions a canary does not
/// cover to its version (answering with that upgrade, on probation).
#[utoipa::path(post, operation_id = "pipelines_upgrade_promote", path = "/v1/pipelines/{name}/upgrade/promote", tag = "pipelines", params(("name" = String, Path)),
    responses((status = 200, body = UpgradeRecord), (status = 404, body = ErrorBody), (status = 409, description = "No upgrade on probation", body = ErrorBody)))]
async fn promote(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<UpgradeRecord>, ApiError> {
    decide(state, name, UpgradeDecision::Promote).await
}

/// Ends the pipeline's upgrade on probation now and goes back to the old version (the
/// new version's held work is dropped), or sends a canary's partitions back to the
/// version the others run. Answers with the upgrade once it ended.
#[utoipa::path(post, operation_id = "pipelines_upgrade_rollback", path = "/v1/pipelines/{name}/upgrade/rollback", tag = "pipelines", params(("name" = String, Path)),
    responses((status = 200, body = UpgradeRecord), (status = 404, body = ErrorBody), (status = 409, description = "No upgrade on probation", body = ErrorBody)))]
async fn rollback(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<UpgradeRecord>, ApiError> {
    decide(state, name, UpgradeDecision::RollBack).await
}

async fn decide(
    state: AppState,
    name: String,
    decision: UpgradeDecision,
) -> Result<Json<UpgradeRecord>, ApiError> {
    let controller = state.controller.clone();
    Ok(Json(
        blocking(move || Ok(controller.end_upgrade(&name, decision)?)).await?,
    ))
}
