//! `/auth/register`, `/auth/login` and `/auth/me`: the FastAPI service's `routers/auth.py`.

use super::{Claim, Reply};
use crate::db::NewUserRow;
use crate::error::{ApiError, Result};
use crate::http::{ApiResponse, HttpRequest};
#[allow(unused_imports)] // named in the OpenAPI annotations
use crate::openapi::{
    ErrorResponse, LoginForm, LoginRequest, RegisterRequest, ValidationErrorResponse,
};
use crate::schemas::{self, TokenResponse, UserResponse};
use crate::security;
use crate::state::AppState;

/// The message for any failed login: it must not tell an unknown email from a wrong password.
const BAD_CREDENTIALS: &str = "Incorrect email or password";

/// Register a user.
///
/// `POST /auth/register` with `{name, phone, email, password, image_url?}` (JSON).
///
/// → `201` with the new user; `409 {"detail": "Email already registered"}` when the email (in
/// any case) is taken, also when two requests race for it; `422` listing every invalid field.
/// The hash is computed on the hashing pool.
#[utoipa::path(
    post,
    path = "/auth/register",
    tag = "auth",
    request_body(content = RegisterRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Registered: the new user.", body = UserResponse),
        (status = 409, description = "The email is registered already (in any case).", body = ErrorResponse,
            example = json!({"detail": "Email already registered"})),
        (status = 413, description = "The body is over 64 KiB.", body = ErrorResponse),
        (status = 422, description = "Invalid fields, all listed; also malformed JSON or another content type.", body = ValidationErrorResponse),
        (status = 405, description = "This path with another method; `Allow` lists the methods it takes.", body = ErrorResponse,
            headers(("Allow" = String, description = "The methods this path accepts"))),
        (status = 500, description = "A failure of the service's own; the cause is logged, never sent.", body = ErrorResponse),
        (status = 503, description = "The database is not answering or too many registrations are hashing; try again shortly.", body = ErrorResponse,
            headers(("Retry-After" = u32, description = "Seconds to wait before trying again"))),
    )
)]
pub fn register(state: &AppState, request: &HttpRequest<'_>) -> Result<Reply> {
    let new = schemas::parse_register(&request.body, request.header("Content-Type"))
        .map_err(ApiError::Validation)?;
    // Answer a taken email before paying for a hash; the insert checks again, atomically.
    if state.db.find_user_by_email(&new.email)?.is_some() {
        return Err(ApiError::Conflict("Email already registered"));
    }
    Ok(Reply::Deferred(Box::new(
        move |state: &AppState, claim: &dyn Claim| {
            let hash = security::hash_password(&new.password, state.bcrypt_cost)
                .map_err(ApiError::internal)?;
            if !claim.claim() {
                // The client was told 503 while this hash ran; it must not be registered now.
                return Err(ApiError::too_late());
            }
            let user = state.db.insert_user(&NewUserRow {
                name: &new.name,
                phone: &new.phone,
                image_url: new.image_url.as_deref(),
                email: &new.email,
                password_hash: &hash,
            })?;
            Ok(ApiResponse::json(201, &UserResponse::from(user)))
        },
    )))
}

/// Log in: get an access token.
///
/// `POST /auth/login` with JSON `{email, password}` or the OAuth2 password form
/// (`username`, `password`).
///
/// → `200 {access_token, token_type: "bearer", expires_in, user}`; `401` with
/// `WWW-Authenticate: Bearer` and the same message and cost for an unknown email and a wrong
/// password; `422` for a body without the fields.
#[utoipa::path(
    post,
    path = "/auth/login",
    tag = "auth",
    request_body(content(
        (LoginRequest = "application/json"),
        (LoginForm = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "Logged in: a bearer token and the user.", body = TokenResponse),
        (status = 401, description = "Unknown email or wrong password (the same answer for both).", body = ErrorResponse,
            headers(("WWW-Authenticate" = String, description = "Always `Bearer`")),
            example = json!({"detail": "Incorrect email or password"})),
        (status = 413, description = "The body is over 64 KiB.", body = ErrorResponse),
        (status = 422, description = "Missing fields, wrong types, malformed body or another content type.", body = ValidationErrorResponse),
        (status = 405, description = "This path with another method; `Allow` lists the methods it takes.", body = ErrorResponse,
            headers(("Allow" = String, description = "The methods this path accepts"))),
        (status = 500, description = "A failure of the service's own; the cause is logged, never sent.", body = ErrorResponse),
        (status = 503, description = "The database is not answering or too many logins are hashing; try again shortly.", body = ErrorResponse,
            headers(("Retry-After" = u32, description = "Seconds to wait before trying again"))),
    )
)]
pub fn login(state: &AppState, request: &HttpRequest<'_>) -> Result<Reply> {
    let credentials = schemas::parse_login(&request.body, request.header("Content-Type"))
        .map_err(ApiError::Validation)?;
    let user = state.db.find_user_by_email(&credentials.email)?;
    Ok(Reply::Deferred(Box::new(
        move |state: &AppState, _claim: &dyn Claim| {
            let stored_hash = user.as_ref().map(|u| u.password_hash.as_str());
            let matches =
                security::verify_password(&credentials.password, stored_hash, state.bcrypt_cost)
                    .map_err(|e| {
                        ApiError::internal(format!("stored password hash unreadable: {e}"))
                    })?;
            let user = match user {
                Some(user) if matches => user,
                _ => return Err(ApiError::Unauthorized(BAD_CREDENTIALS)),
            };
            let access_token = state.tokens.issue(user.id).map_err(ApiError::internal)?;
            Ok(ApiResponse::json(
                200,
                &TokenResponse {
                    access_token,
                    token_type: "bearer",
                    expires_in: state.tokens.lifetime_seconds(),
                    user: UserResponse::from(user),
                },
            ))
        },
    )))
}

/// The current user.
///
/// `GET /auth/me` with `Authorization: Bearer <token>` → `200` with the token's user.
///
/// `401` with `WWW-Authenticate: Bearer` when the header is missing ("Not authenticated") or
/// the token is not valid or its user is gone ("Could not validate credentials").
#[utoipa::path(
    get,
    path = "/auth/me",
    tag = "auth",
    security(("OAuth2PasswordBearer" = []), ("HTTPBearer" = [])),
    responses(
        (status = 200, description = "The user the token was issued for.", body = UserResponse),
        (status = 401, description = "No token, or one that is malformed, tampered with, expired, signed otherwise, or whose user is gone.", body = ErrorResponse,
            headers(("WWW-Authenticate" = String, description = "Always `Bearer`")),
            example = json!({"detail": "Could not validate credentials"})),
        (status = 405, description = "This path with another method; `Allow` lists the methods it takes.", body = ErrorResponse,
            headers(("Allow" = String, description = "The methods this path accepts"))),
        (status = 500, description = "A failure of the service's own; the cause is logged, never sent.", body = ErrorResponse),
        (status = 503, description = "The database is not answering; try again shortly.", body = ErrorResponse,
            headers(("Retry-After" = u32, description = "Seconds to wait before trying again"))),
    )
)]
pub fn me(state: &AppState, request: &HttpRequest<'_>) -> Result<Reply> {
    let token = request
        .header("Authorization")
        .and_then(bearer_token)
        .ok_or(ApiError::Unauthorized("Not authenticated"))?;
    let invalid = || ApiError::Unauthorized("Could not validate credentials");
    let user_id = state.tokens.verify(token).ok_or_else(invalid)?;
    let user = state.db.find_user_by_id(user_id)?.ok_or_else(invalid)?;
    Ok(Reply::Now(ApiResponse::json(
        200,
        &UserResponse::from(user),
    )))
}

/// Extracts the token from an `Authorization` value: the scheme `Bearer` in any case, as
/// FastAPI's `OAuth2PasswordBearer` accepts it.
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_required() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer "), None);
    }
}
