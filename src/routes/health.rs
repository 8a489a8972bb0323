//! `GET /health`: whether the service and its database answer.

use super::Reply;
use crate::error::{ApiError, Result};
use crate::http::{ApiResponse, HttpRequest};
use crate::state::AppState;

/// `GET /health` → `200 {"status": "ok"}` when the database answers a query, `503` when not.
pub fn health(state: &AppState, _request: &HttpRequest<'_>) -> Result<Reply> {
    state.db.ping().map_err(|err| {
        log::warn!("health check failed: {err}");
        ApiError::Unavailable {
            detail: "Service Unavailable: the database is not answering",
            retry_after: Some(1),
        }
    })?;
    Ok(Reply::Now(ApiResponse::json(
        200,
        &serde_json::json!({ "status": "ok" }),
    )))
}
