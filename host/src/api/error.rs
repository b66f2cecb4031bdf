//! The one error type of the HTTP API: a status and a JSON body `{error, detail}` that
//! says what was wrong and how to fix it.

use crate::control::{ControlError, QueryError, SpecError};
use crate::log::LogError;
use crate::record::JsonError;
use crate::registry::RegistryError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An API error: `{"error": "...", "detail": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: String,
    pub detail: String,
}

/// The body of every error response.
#[derive(Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, in a few words.
    pub error: String,
    /// The details, and how to fix it.
    pub detail: String,
}

impl ApiError {
    pub fn new(status: StatusCode, error: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            error: error.into(),
            detail: detail.into(),
        }
    }

    pub fn bad_request(error: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error, detail)
    }

    pub fn not_found(error: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, error, detail)
    }

    pub fn conflict(error: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, error, detail)
    }

    /// A server-side failure: logged here, answered with a generic message.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!("internal error: {cause}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error",
            "the server failed; see its log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: self.error,
                detail: self.detail,
            }),
        )
            .into_response()
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::NotFound(_) => ApiError::not_found("pipeline not found", e.to_string()),
            ControlError::NoShadow(_) => ApiError::not_found("no shadow", e.to_string()),
            ControlError::Exists(_) => ApiError::conflict("pipeline exists", e.to_string()),
            ControlError::Spec(_)
            | ControlError::NoSource
            | ControlError::NoSink
            | ControlError::SinkIsSource
            | ControlError::SharedRepartition { .. }
            | ControlError::NoSourceTopic(_)
            | ControlError::KafkaEndpoint(_)
            | ControlError::KafkaTopic { .. }
            | ControlError::UnknownOperator(_)
            | ControlError::UnknownVersion(_)
            | ControlError::NoSuchOperator { .. }
            | ControlError::NoSuchSavepoint(_)
            | ControlError::BadCanary(_)
            | ControlError::BadShadow(_)
            | ControlError::Start(_)
            | ControlError::CannotStart { .. } => {
                ApiError::bad_request("invalid pipeline", e.to_string())
            }
            ControlError::Busy { .. } => ApiError::conflict("busy", e.to_string()),
            ControlError::Running { .. }
            | ControlError::NotRunning(_)
            | ControlError::AlreadyRuns { .. }
            | ControlError::NoProbation(_)
            | ControlError::CanaryRuns { .. }
            | ControlError::ShadowRuns { .. }
            | ControlError::ShadowKept { .. }
            | ControlError::SharedShadow(_)
            | ControlError::ShadowTask(_)
            | ControlError::NotTheJudge { .. }
            | ControlError::Stage(_)
            | ControlError::Pause(_)
            | ControlError::Export(_)
            | ControlError::Panicked(_)
            | ControlError::Rebuild { .. }
            | ControlError::RestoreUnfinished(_)
            | ControlError::SavepointInRestore { .. }
            | ControlError::SinkDown(_)
            | ControlError::KafkaReset(_)
            | ControlError::StopSharedFirst { .. }
            | ControlError::KafkaState { .. }
            | ControlError::ServersStillRunning { .. }
            | ControlError::Fence(_)
            | ControlError::Hold(_)
            | ControlError::NotHeld { .. }
            | ControlError::StillRunsHere(_)
            | ControlError::Catalog(_)
            | ControlError::OperatorNotShared(_)
            | ControlError::DeletionNotShared(_)
            | ControlError::RestoreNotShared(_)
            | ControlError::Thread(_) => ApiError::conflict("conflict", e.to_string()),
            ControlError::Log(e) => e.into(),
            ControlError::Registry(e) => e.into(),
            ControlError::Savepoint(e) => e.into(),
            ControlError::State(e) => ApiError::internal(e),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::NotFound(_) | RegistryError::NoSuchVersion { .. } => {
                ApiError::not_found("operator not found", e.to_string())
            }
            RegistryError::InvalidName(_) => {
                ApiError::bad_request("invalid operator name", e.to_string())
            }
            RegistryError::Invalid(_) => ApiError::bad_request("invalid component", e.to_string()),
            RegistryError::InUse { .. } => ApiError::conflict("operator in use", e.to_string()),
            RegistryError::Io(_) | RegistryError::State(_) => ApiError::internal(e),
        }
    }
}

impl From<LogError> for ApiError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::NoSuchTopic(_) => ApiError::not_found("topic not found", e.to_string()),
            LogError::TopicExists(_) => ApiError::conflict("topic exists", e.to_string()),
            LogError::NoSuchPartition { .. } => {
                ApiError::bad_request("no such partition", e.to_string())
            }
            LogError::Invalid(_) => ApiError::bad_request("invalid topic", e.to_string()),
            LogError::State(_) | LogError::Codec(_) => ApiError::internal(e),
        }
    }
}

impl From<SpecError> for ApiError {
    fn from(e: SpecError) -> Self {
        ApiError::bad_request("invalid pipeline spec", e.to_string())
    }
}

impl From<JsonError> for ApiError {
    fn from(e: JsonError) -> Self {
        ApiError::bad_request("invalid event", e.to_string())
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Control(e) => e.into(),
            QueryError::UnknownOperator { .. } => {
                ApiError::not_found("operator not found", e.to_string())
            }
            QueryError::UnknownStore { .. } => {
                ApiError::not_found("store not found", e.to_string())
            }
            QueryError::Partition { .. } => ApiError::bad_request("invalid query", e.to_string()),
            QueryError::NoOwner { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "partition unavailable",
                e.to_string(),
            ),
            QueryError::State(e) => ApiError::internal(e),
        }
    }
}
