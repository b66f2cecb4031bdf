//! `/v1/pipelines/{name}/shadow`: start a shadow run of another operator version beside
//! the live one, read its report, promote it to a hot upgrade or discard it.

use super::extract::{ApiJson, ApiQuery};
use super::pipelines::UpgradeQuery;
use super::{ApiError, AppState, ErrorBody, blocking};
use crate::control::{OperatorConfig, ShadowReport, UpgradeRecord, UpgradeTo, VersionRef};
use crate::model::ShadowLimits;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/pipelines/{name}/shadow", get(report).post(start))
        .route("/pipelines/{name}/shadow/promote", post(promote))
        .route("/pipelines/{name}/shadow/discard", post(discard))
}

/// A shadow run to start.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShadowRequest {
    /// The operator's id in the pipeline.
    pub operator: String,
    /// A registry version number, or `"latest"` (the default).
    #[serde(default)]
    pub version: Option<VersionRef>,
    /// The shadow's config, whole (the live operator's when absent).
    #[serde(default)]
    pub config: Option<OperatorConfig>,
    /// Finish once this many inputs (records and timers) were compared.
    #[serde(default, deserialize_with = "super::number::whole")]
    #[schema(minimum = 1)]
    pub records: Option<u64>,
    /// Finish after this many milliseconds (from 1 s to 30 days).
    #[serde(default, deserialize_with = "super::number::whole")]
    #[schema(minimum = 1000, maximum = 2_592_000_000u64)]
    pub for_ms: Option<u64>,
}

/// Starts a shadow run: the version runs beside the live one in the same tasks, on a
/// copy of the operator's state (migrated when its state format differs), its outputs
/// going to the topic `<pipeline>.shadow`; the tasks compare the two versions' outputs
/// per input record. Never changes the live pipeline's outputs or state.
#[utoipa::path(post, operation_id = "pipelines_shadow_start", path = "/v1/pipelines/{name}/shadow", tag = "pipelines", params(("name" = String, Path)), request_body = ShadowRequest,
    responses((status = 200, body = ShadowReport), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 415, body = ErrorBody)))]
async fn start(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<ShadowRequest>,
) -> Result<Json<ShadowReport>, ApiError> {
    let controller = state.controller.clone();
    Ok(Json(
        blocking(move || {
            let to = UpgradeTo {
                operator: req.operator,
                version: req.version,
                config: req.config.map(|c| c.0),
                partitions: None,
            };
            let limits = ShadowLimits {
                records: req.records,
                for_ms: req.for_ms,
            };
            Ok(controller.start_shadow(&name, &to, limits)?)
        })
        .await?,
    ))
}

/// The pipeline's shadow run and what it found: counts of inputs whose outputs were the
/// same, different, only the live version's or only the shadow's, errors of either, per
/// partition and over all, and a sample of the differences with their inputs.
#[utoipa::path(get, operation_id = "pipelines_shadow_report", path = "/v1/pipelines/{name}/shadow", tag = "pipelines", params(("name" = String, Path)),
    responses((status = 200, body = ShadowReport), (status = 404, description = "No such pipeline, or no shadow run", body = ErrorBody)))]
async fn report(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ShadowReport>, ApiError> {
    let controller = state.controller.clone();
    Ok(Json(
        blocking(move || Ok(controller.shadow_report(&name)?)).await?,
    ))
}

/// Hot-upgrades the operator to the shadowed version and config (from the live state,
/// with probation), after discarding the shadow. Answers like an upgrade.
#[utoipa::path(post, operation_id = "pipelines_shadow_promote", path = "/v1/pipelines/{name}/shadow/promote", tag = "pipelines", params(("name" = String, Path), UpgradeQuery),
    responses((status = 200, body = UpgradeRecord), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn promote(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<UpgradeQuery>,
) -> Result<Json<UpgradeRecord>, ApiError> {
    let controller = state.controller.clone();
    let wait = q.wait.unwrap_or(false);
    Ok(Json(
        blocking(move || Ok(controller.promote_shadow(&name, wait)?)).await?,
    ))
}

/// Drops the shadow run, its state copies and its report; answers with the report as
/// it was.
#[utoipa::path(post, operation_id = "pipelines_shadow_discard", path = "/v1/pipelines/{name}/shadow/discard", tag = "pipelines", params(("name" = String, Path)),
    responses((status = 200, body = ShadowReport), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn discard(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ShadowReport>, ApiError> {
    let controller = state.controller.clone();
    Ok(Json(
        blocking(move || Ok(controller.discard_shadow(&name)?)).await?,
    ))
}
