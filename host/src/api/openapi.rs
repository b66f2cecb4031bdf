//! The OpenAPI document, generated from the handlers and types.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Eddy", description = "Stream processing with WebAssembly operators. When the server has an API token, every call but /healthz and /readyz needs `Authorization: Bearer <token>` (reads may also use the read token, or need none with --public-read)."),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    paths(
        super::operators::upload, super::operators::list, super::operators::describe, super::operators::latest,
        super::operators::version, super::operators::delete_all, super::operators::delete_version,
        super::topics::create, super::topics::list, super::topics::describe, super::topics::remove,
        super::topics::produce, super::topics::consume,
        super::pipelines::create, super::pipelines::list, super::pipelines::status, super::pipelines::history, super::pipelines::stop,
        super::pipelines::start, super::pipelines::remove, super::pipelines::rebuild_state, super::pipelines::upgrade, super::pipelines::promote, super::pipelines::rollback, super::state::stores, super::state::query,
        super::shadow::start, super::shadow::report, super::shadow::promote, super::shadow::discard,
        super::savepoints::take, super::savepoints::list_for, super::savepoints::list, super::savepoints::describe,
        super::savepoints::remove, super::savepoints::archive, super::savepoints::upload, super::savepoints::restore,
        super::system::health, super::system::ready, super::system::metrics, super::system::server,
    ),
    components(schemas(super::ErrorBody)),
    tags((name = "operators"), (name = "topics"), (name = "pipelines"), (name = "savepoints"), (name = "system"))
)]
pub struct ApiDoc;

/// The bearer token scheme every operation but `/healthz` uses, and its answers: 401
/// without the token (on every such operation), 403 for a change with the read token.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        let error = |what: &str| {
            ResponseBuilder::new()
                .description(what)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for (path, item) in doc.paths.paths.iter_mut() {
            if super::OPEN_PATHS.contains(&path.as_str()) {
                continue;
            }
            let reads = [&mut item.get, &mut item.head];
            for op in reads.into_iter().flatten() {
                op.responses
                    .responses
                    .entry("401".into())
                    .or_insert_with(|| error("Missing or wrong token").into());
            }
            let changes = [
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in changes.into_iter().flatten() {
                op.responses
                    .responses
                    .entry("401".into())
                    .or_insert_with(|| error("Missing or wrong token").into());
                op.responses
                    .responses
                    .entry("403".into())
                    .or_insert_with(|| error("The read-only token cannot change anything").into());
            }
        }
    }
}

/// `GET /v1/openapi.json`.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
