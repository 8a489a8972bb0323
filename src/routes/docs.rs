//! `/openapi.json` and the Swagger UI at `/docs`, both served from inside the binary (Swagger UI
//! only with the `docs` feature, which the edge build leaves out).

use super::Reply;
#[cfg(feature = "docs")]
use crate::error::ApiError;
use crate::error::Result;
use crate::http::{ApiResponse, HttpRequest};
use crate::openapi;
use crate::state::AppState;

/// Where Swagger UI's page is; its files are at paths below it.
#[cfg(feature = "docs")]
const DOCS_PAGE: &str = "/docs/";

/// `GET /openapi.json` → the OpenAPI 3.1 document.
pub fn openapi_json(_state: &AppState, _request: &HttpRequest<'_>) -> Result<Reply> {
    Ok(Reply::Now(ApiResponse::bytes(
        200,
        "application/json",
        openapi::document_json(super::document),
    )))
}

/// `GET /docs` → a redirect to `/docs/`, so that the page's relative links resolve below it.
#[cfg(feature = "docs")]
pub fn docs_redirect(_state: &AppState, _request: &HttpRequest<'_>) -> Result<Reply> {
    let mut response = ApiResponse::bytes(308, "text/plain; charset=utf-8", Vec::new());
    response.headers.push(("Location", DOCS_PAGE.to_owned()));
    Ok(Reply::Now(response))
}

/// `GET /docs/…` → Swagger UI's page and assets; 404 for any other file.
#[cfg(feature = "docs")]
pub fn swagger_ui(_state: &AppState, request: &HttpRequest<'_>) -> Result<Reply> {
    let tail = request.param("file").unwrap_or_default();
    let (bytes, content_type, gzipped) =
        openapi::swagger_file(tail).ok_or(ApiError::NotFound("Not Found"))?;
    let mut response = ApiResponse::bytes(200, content_type, bytes);
    if gzipped {
        response
            .headers
            .push(("Content-Encoding", "gzip".to_owned()));
    }
    response
        .headers
        .push(("Cache-Control", "public, max-age=3600".to_owned()));
    Ok(Reply::Now(response))
}
