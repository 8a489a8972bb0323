//! `GET /health`: whether the service and its database answer.

use super::answers::{Always, DatabaseDown};
use super::Reply;
use crate::error::{ApiError, Result};
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
        Always,
        DatabaseDown,
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
