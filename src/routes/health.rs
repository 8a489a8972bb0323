//! `GET /health`: whether the service and its database answer.

use super::Reply;
use crate::error::{ApiError, Result};
use crate::http::{ApiResponse, HttpRequest};
#[allow(unused_imports)] // named in the OpenAPI annotations
use crate::openapi::{ErrorResponse, HealthResponse};
use crate::state::AppState;

/// Whether the service and its database answer.
///
/// `GET /health` → `200 {"status": "ok"}` when the database answers a query, `503` when not.
#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    responses(
        (status = 200, description = "The service and its database answer.", body = HealthResponse),
        (status = 405, description = "This path with another method; `Allow` lists the methods it takes.", body = ErrorResponse,
            headers(("Allow" = String, description = "The methods this path accepts"))),
        (status = 500, description = "A failure of the service's own; the cause is logged, never sent.", body = ErrorResponse),
        (status = 503, description = "The database is not answering; try again shortly.", body = ErrorResponse,
            headers(("Retry-After" = u32, description = "Seconds to wait before trying again"))),
    )
)]
pub fn health(state: &AppState, _request: &HttpRequest<'_>) -> Result<Reply> {
    state.db.ping().map_err(|err| {
        log::warn!("health check failed: {err}");
        ApiError::database_unavailable()
    })?;
    Ok(Reply::Now(ApiResponse::json(
        200,
        &serde_json::json!({ "status": "ok" }),
    )))
}
