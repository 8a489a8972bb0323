//! The one error type handlers return, and the one place it becomes an HTTP response.
//!
//! Every error a client can see is shaped as FastAPI shapes it: `{"detail": "..."}`, or for
//! validation failures `{"detail": [{"loc": [...], "msg": "...", "type": "..."}]}`. Internal
//! causes are logged here and never sent.

use serde_json::Value;

use crate::http::ApiResponse;

/// One invalid field, as pydantic describes it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
// An entry of a 422 body's `detail` list; its doc line above is its OpenAPI description.
#[schema(as = ValidationErrorItem)]
pub struct FieldError {
    /// Where: `["body"]`, `["body", "<field>"]`, or `["body", <byte offset>]` for bad JSON.
    #[schema(schema_with = loc_schema)]
    pub loc: Vec<Value>,
    /// What is wrong, for people.
    pub msg: String,
    /// pydantic's error type, such as `missing` or `string_too_short`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The rule's parameters, where there are some.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ctx: Option<Value>,
}

impl FieldError {
    /// Builds an error without `ctx`.
    pub fn new(loc: Vec<Value>, msg: impl Into<String>, kind: impl Into<String>) -> FieldError {
        FieldError {
            loc,
            msg: msg.into(),
            kind: kind.into(),
            ctx: None,
        }
    }

    /// Returns this error with `ctx` set.
    pub fn with_ctx(mut self, ctx: Value) -> FieldError {
        self.ctx = Some(ctx);
        self
    }
}

/// `loc` holds field names and, for bad JSON, a byte offset.
fn loc_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
    let item = OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(ObjectBuilder::new().schema_type(Type::Integer))
        .build();
    ArrayBuilder::new()
        .items(utoipa::openapi::RefOr::T(Schema::OneOf(item)))
        .build()
}

/// Every error but validation: `{"detail": "..."}`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorResponse {
    /// What went wrong, for people.
    #[schema(value_type = String)]
    detail: &'static str,
}

/// A 422: every invalid field at once.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ValidationErrorResponse<'a> {
    #[schema(value_type = Vec<FieldError>)]
    detail: &'a [FieldError],
}

/// Shorthand for results whose error is an [`ApiError`].
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// Everything that can go wrong while answering a request.
#[derive(Debug)]
pub enum ApiError {
    /// 422: the body failed validation; every bad field is listed.
    Validation(Vec<FieldError>),
    /// 401 with `WWW-Authenticate: Bearer`: the credentials or the token were not accepted.
    Unauthorized(&'static str),
    /// 409: the request conflicts with stored data (an email already taken).
    Conflict(&'static str),
    /// 400: the request is well formed but refused, such as a wrong current password (not
    /// 401, which clients take as "signed out").
    BadRequest(&'static str),
    /// 404: no route has this path ("Not Found"), or what it names does not exist for this
    /// user.
    NotFound(&'static str),
    /// 405 with `Allow`: the path exists but not for this method.
    MethodNotAllowed {
        /// The methods the path does accept, as the `Allow` header lists them.
        allow: String,
    },
    /// 503, optionally with `Retry-After`: a dependency (the database, the hashing pool) cannot
    /// take the request now; trying again later may work.
    Unavailable {
        /// What the client is told.
        detail: &'static str,
        /// Seconds to suggest in `Retry-After`.
        retry_after: Option<u32>,
    },
    /// 429 with `Retry-After`: this client or account has tried too often; see `throttle`.
    TooManyRequests {
        /// What the client is told.
        detail: &'static str,
        /// Seconds until trying again can succeed.
        retry_after: u32,
    },
    /// 500: a failure of ours. The cause is logged and the client only sees
    /// "Internal Server Error".
    Internal(String),
}

impl ApiError {
    /// 503: the database did not answer.
    pub fn database_unavailable() -> ApiError {
        ApiError::Unavailable {
            detail: "Service Unavailable: the database is not answering",
            retry_after: Some(1),
        }
    }

    /// 503: the hashing queue is full.
    pub fn hashing_busy() -> ApiError {
        ApiError::Unavailable {
            detail: "Service Unavailable: too many logins in progress, try again shortly",
            retry_after: Some(1),
        }
    }

    /// 503: the request could not be hashed within `HASH_QUEUE_TIMEOUT`.
    pub fn too_late() -> ApiError {
        ApiError::Unavailable {
            detail: "Service Unavailable: the request waited too long, try again shortly",
            retry_after: Some(1),
        }
    }

    /// Wraps any failure of ours as a 500 whose cause will be logged, not sent.
    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(cause.to_string())
    }

    /// 500 for a handler or deferred work that panicked: the panic's message is the logged
    /// cause.
    pub(crate) fn panicked(panic: &(dyn std::any::Any + Send)) -> ApiError {
        let message = panic
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        ApiError::internal(format!("handler panicked: {message}"))
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::Validation(_) => 422,
            ApiError::Unauthorized(_) => 401,
            ApiError::Conflict(_) => 409,
            ApiError::BadRequest(_) => 400,
            ApiError::NotFound(_) => 404,
            ApiError::MethodNotAllowed { .. } => 405,
            ApiError::Unavailable { .. } => 503,
            ApiError::TooManyRequests { .. } => 429,
            ApiError::Internal(_) => 500,
        }
    }

    /// Turns the error into the response the client sees, logging internal causes.
    pub fn into_response(self) -> ApiResponse {
        let status = self.status();
        let detail = match &self {
            ApiError::Validation(errors) => {
                let body = ValidationErrorResponse { detail: errors };
                let response = ApiResponse::json(status, &body);
                return self.with_headers(response);
            }
            ApiError::Unauthorized(msg)
            | ApiError::Conflict(msg)
            | ApiError::NotFound(msg)
            | ApiError::BadRequest(msg) => *msg,
            ApiError::MethodNotAllowed { .. } => "Method Not Allowed",
            ApiError::Unavailable { detail, .. } | ApiError::TooManyRequests { detail, .. } => {
                *detail
            }
            ApiError::Internal(cause) => {
                log::error!("internal error: {cause}");
                "Internal Server Error"
            }
        };
        let response = ApiResponse::json(status, &ErrorResponse { detail });
        self.with_headers(response)
    }

    /// Adds the headers this error's status calls for.
    fn with_headers(self, mut response: ApiResponse) -> ApiResponse {
        match self {
            ApiError::Unauthorized(_) => {
                response.headers.push(("WWW-Authenticate", "Bearer".into()))
            }
            ApiError::MethodNotAllowed { allow } => response.headers.push(("Allow", allow)),
            ApiError::Unavailable {
                retry_after: Some(seconds),
                ..
            } => response.headers.push(("Retry-After", seconds.to_string())),
            ApiError::TooManyRequests { retry_after, .. } => response
                .headers
                .push(("Retry-After", retry_after.max(1).to_string())),
            _ => {}
        }
        response
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(err: crate::db::DbError) -> ApiError {
        match err {
            crate::db::DbError::EmailTaken => ApiError::Conflict("Email already registered"),
            crate::db::DbError::Unavailable(cause) => {
                log::error!("database unavailable: {cause}");
                ApiError::database_unavailable()
            }
            crate::db::DbError::Other(cause) => ApiError::Internal(format!("database: {cause}")),
        }
    }
}
