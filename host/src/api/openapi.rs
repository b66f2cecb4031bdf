//! The OpenAPI document, generated from the handlers and types.

use axum::Json;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "Eddy", description = "Stream processing with WebAssembly operators. Every change needs `Authorization: Bearer <token>` when the server has one."),
    paths(
        super::operators::upload, super::operators::list, super::operators::describe, super::operators::latest,
        super::operators::version, super::operators::delete_all, super::operators::delete_version,
        super::topics::create, super::topics::list, super::topics::describe, super::topics::remove,
        super::topics::produce, super::topics::consume,
        super::pipelines::create, super::pipelines::list, super::pipelines::status, super::pipelines::stop,
        super::pipelines::start, super::pipelines::remove, super::pipelines::rebuild_state, super::pipelines::upgrade,
        super::savepoints::take, super::savepoints::list_for, super::savepoints::list, super::savepoints::describe,
        super::savepoints::remove, super::savepoints::archive, super::savepoints::upload, super::savepoints::restore,
        super::system::health, super::system::metrics,
    ),
    components(schemas(super::ErrorBody)),
    tags((name = "operators"), (name = "topics"), (name = "pipelines"), (name = "savepoints"), (name = "system"))
)]
pub struct ApiDoc;

/// `GET /v1/openapi.json`.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
