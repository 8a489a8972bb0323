//! Answers that many operations document alike, declared once for their `#[utoipa::path]`
//! `responses(...)` lists: an operation names the group beside its own answers.

use utoipa::IntoResponses;

use crate::error::ErrorResponse;

/// What every operation may answer: another method on its path, or a failure of our own.
#[derive(IntoResponses)]
#[allow(dead_code)] // a declaration for the document; the error type builds these answers
pub enum Always {
    /// This path with another method; `Allow` lists the methods it takes.
    #[response(
        status = 405,
        headers(("Allow" = String, description = "The methods this path accepts"))
    )]
    MethodNotAllowed(ErrorResponse),
    /// A failure of the service's own; the cause is logged, never sent.
    #[response(status = 500)]
    Internal(ErrorResponse),
}

/// What a signed-in operation answers without a valid session.
#[derive(IntoResponses)]
#[allow(dead_code)] // a declaration for the document; `auth::authenticate` builds this answer
pub enum NotSignedIn {
    /// No token, or one that is not valid, or whose session or user is gone.
    #[response(
        status = 401,
        description = "No token, or one that is malformed, tampered with, expired, not valid yet, signed otherwise, marked `crit`, whose session has ended (logout, revoked), or whose user is gone.",
        headers(("WWW-Authenticate" = String, description = "Always `Bearer`")),
        example = json!({"detail": "Could not validate credentials"})
    )]
    Unauthorized(ErrorResponse),
}

/// What an operation that only reads or writes the database answers when it cannot.
#[derive(IntoResponses)]
#[allow(dead_code)] // a declaration for the document; `ApiError::database_unavailable` builds it
pub enum DatabaseDown {
    /// The database is not answering; try again shortly.
    #[response(
        status = 503,
        headers(("Retry-After" = u32, description = "Seconds to wait before trying again"))
    )]
    Unavailable(ErrorResponse),
}

/// What an operation that checks the current password on the hashing pool answers when it
/// cannot: too many wrong passwords (counted with failed logins), or no room to hash.
#[derive(IntoResponses)]
#[allow(dead_code)] // a declaration for the document; the throttle and the pool build these
pub enum PasswordChecked {
    /// Too many wrong passwords, counted with failed logins.
    #[response(
        status = 429,
        headers(("Retry-After" = u32, description = "Seconds to wait before trying again"))
    )]
    TooManyRequests(ErrorResponse),
    /// The database is not answering or too many password checks are hashing; try again shortly.
    #[response(
        status = 503,
        headers(("Retry-After" = u32, description = "Seconds to wait before trying again"))
    )]
    Busy(ErrorResponse),
}
