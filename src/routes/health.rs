//! `GET /health`: whether the service and its database answer.

use super::Reply;
use crate::error::{ApiError, ErrorResponse, Result};
use crate::http::{ApiResponse, HttpRequest};
use crate::state::AppState;

/// `GET /health` when the database answers.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct HealthResponse {
    /// Always `ok`.
    #[schema(example = "ok", value_type = String)]
    status: &'static str,
}

/// Whether the service and its database answer.
///
/// `GET /health` → `200 {"status": "ok"}` when the database answers a query, `503` when not.
#[utoipa::path(
    get,
    path = "", // the route table gives the path
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
        &HealthResponse { status: "ok" },
    )))
}
