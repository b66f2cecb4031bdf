//! Request extractors whose rejections are [`ApiError`]s, so malformed requests get the
//! same JSON answer as every other error.

use super::{ApiError, AppState};
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use bytes::Bytes;
use serde::de::DeserializeOwned;

/// A JSON body.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported media type",
                "send the body as JSON with Content-Type: application/json",
            )),
            Err(JsonRejection::JsonDataError(e)) => {
                Err(ApiError::bad_request("invalid JSON body", e.body_text()))
            }
            Err(JsonRejection::JsonSyntaxError(e)) => {
                Err(ApiError::bad_request("invalid JSON body", e.body_text()))
            }
            Err(e) => Err(ApiError::bad_request("unreadable body", e.body_text())),
        }
    }
}

/// A raw body of at most the server's size limit for uploads, with its content type.
pub struct LimitedBody {
    pub bytes: Bytes,
    pub content_type: Option<String>,
}

impl FromRequest<AppState> for LimitedBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let limit = state.config.max_body_bytes;
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_ascii_lowercase());
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body too large",
                format!(
                    "the body exceeds the server's limit of {limit} bytes (eddy serve --max-body-mb)"
                ),
            )
        };
        let declared = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        match axum::body::to_bytes(req.into_body(), limit).await {
            Ok(bytes) => Ok(LimitedBody {
                bytes,
                content_type,
            }),
            Err(e) => {
                let inner = e.into_inner();
                let mut source: Option<&(dyn std::error::Error + 'static)> = Some(inner.as_ref());
                while let Some(s) = source {
                    if s.is::<http_body_util::LengthLimitError>() {
                        return Err(too_large());
                    }
                    source = s.source();
                }
                Err(ApiError::bad_request("unreadable body", inner.to_string()))
            }
        }
    }
}

/// Query parameters.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::bad_request("invalid query", e.body_text()))
    }
}
