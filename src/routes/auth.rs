//! `/auth/register`, `/auth/login` and `/auth/me`: the FastAPI service's `routers/auth.py`.

use std::time::Instant;

use utoipa::ToSchema;

use super::answers::{Always, DatabaseDown, NotSignedIn};
use super::sessions::{self, Device};
use super::{Claim, Hashed, Reply};
use crate::body::{self, FormBody, FormFields, JsonBody, JsonOrForm};
use crate::db::{NewUserRow, UserRow};
use crate::error::{ApiError, ErrorResponse, Result, ValidationErrorResponse};
use crate::fields;
use crate::http::{ApiResponse, HttpRequest};
use crate::security::{self, PasswordCheck};
use crate::state::AppState;

/// The message for any failed login: it must not tell an unknown email from a wrong password.
const BAD_CREDENTIALS: &str = "Incorrect email or password";

/// `POST /auth/register` body (JSON). Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, ToSchema)]
pub struct RegisterRequest {
    /// The display name, trimmed.
    #[schema(schema_with = fields::name_schema)]
    pub name: String,
    /// The phone number, trimmed but otherwise as the user typed it.
    #[schema(schema_with = fields::phone_schema)]
    pub phone: String,
    /// The email address, trimmed and lower-cased.
    #[schema(schema_with = fields::email_schema)]
    pub email: String,
    /// The password exactly as sent.
    #[schema(schema_with = fields::new_password_schema)]
    pub password: String,
    /// An absolute http(s) URL, trimmed, if one was given.
    #[schema(schema_with = fields::image_url_schema)]
    pub image_url: Option<String>,
}

impl JsonBody for RegisterRequest {
    fn read(fields: &mut body::Fields<'_>) -> Option<Self> {
        let name = fields.required("name", fields::name);
        let phone = fields.required("phone", fields::phone);
        let email = fields.required("email", fields::email);
        let password = fields.required("password", fields::new_password);
        let image_url = fields.optional("image_url", fields::image_url);
        Some(RegisterRequest {
            name: name?,
            phone: phone?,
            email: email?,
            password: password?,
            image_url: image_url?,
        })
    }
}

/// `POST /auth/login` body as JSON.
#[derive(ToSchema)]
pub struct LoginRequest {
    /// The email the user registered with, in any case.
    email: String,
    #[schema(schema_with = fields::password_schema)]
    password: String,
}

impl JsonBody for LoginRequest {
    fn read(fields: &mut body::Fields<'_>) -> Option<Self> {
        let email = fields.required("email", fields::login_email);
        let password = fields.required("password", fields::password);
        Some(LoginRequest {
            email: email?,
            password: password?,
        })
    }
}

/// `POST /auth/login` body as the OAuth2 password form (FastAPI's `OAuth2PasswordRequestForm`).
#[derive(ToSchema)]
#[allow(dead_code)] // the ignored fields are read only to be documented
pub struct LoginForm {
    /// The email the user registered with, in any case.
    username: String,
    #[schema(schema_with = fields::password_schema)]
    password: String,
    /// Accepted and ignored (`password` if sent).
    grant_type: Option<String>,
    /// Accepted and ignored.
    scope: Option<String>,
    /// Accepted and ignored.
    client_id: Option<String>,
    /// Accepted and ignored.
    client_secret: Option<String>,
}

impl FormBody for LoginForm {
    fn read(form: &mut FormFields) -> Option<Self> {
        let username = form.required("username");
        let password = form.required("password");
        Some(LoginForm {
            username: username?,
            password: password?,
            grant_type: form.optional("grant_type"),
            scope: form.optional("scope"),
            client_id: form.optional("client_id"),
            client_secret: form.optional("client_secret"),
        })
    }
}

/// Login credentials from either encoding: the email normalised as registration stores it, the
/// password exactly as sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Credentials {
    /// The email address (`username` in the OAuth2 form), trimmed and lower-cased.
    pub email: String,
    /// The password exactly as sent.
    pub password: String,
}

impl From<JsonOrForm<LoginRequest, LoginForm>> for Credentials {
    fn from(body: JsonOrForm<LoginRequest, LoginForm>) -> Credentials {
        match body {
            JsonOrForm::Json(LoginRequest { email, password }) => Credentials { email, password },
            JsonOrForm::Form(form) => Credentials {
                email: fields::normalise_email(&form.username),
                password: form.password,
            },
        }
    }
}

/// Reads login credentials from JSON (`email`, `password`) or an OAuth2 password form
/// (`username`, `password`), returning every problem found.
pub fn parse_login(
    body: &[u8],
    content_type: Option<&str>,
) -> std::result::Result<Credentials, Vec<crate::error::FieldError>> {
    body::json_or_form::<LoginRequest, LoginForm>(body, content_type).map(Credentials::from)
}

/// A user as the API returns it: never the password hash.
#[derive(Debug, Clone, serde::Serialize, ToSchema)]
pub struct UserResponse {
    /// The user's id.
    #[schema(example = 1)]
    pub id: i64,
    /// Display name.
    #[schema(example = "Ada Lovelace")]
    pub name: String,
    /// Phone number, as given.
    #[schema(example = "+44 20 7946 0958")]
    pub phone: String,
    /// Avatar URL, or null.
    pub image_url: Option<String>,
    /// Email address, lower-case.
    #[schema(example = "ada@example.com")]
    pub email: String,
    /// Creation time, RFC 3339 in UTC.
    #[schema(format = DateTime, example = "2026-11-26T05:10:49.193102Z")]
    pub created_at: String,
    /// Last change, RFC 3339 in UTC.
    #[schema(format = DateTime, example = "2026-11-26T05:10:49.193102Z")]
    pub updated_at: String,
}

impl From<UserRow> for UserResponse {
    fn from(row: UserRow) -> UserResponse {
        UserResponse {
            id: row.id,
            name: row.name,
            phone: row.phone,
            image_url: row.image_url,
            email: row.email,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// The body of a successful login or refresh.
#[derive(Debug, Clone, serde::Serialize, ToSchema)]
pub struct TokenResponse {
    /// The signed JWT: send it as `Authorization: Bearer <token>`.
    pub access_token: String,
    /// Always `"bearer"`.
    #[schema(example = "bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    #[schema(example = 3600)]
    pub expires_in: i64,
    /// Trades for a new pair at `POST /auth/refresh`, once: each refresh returns the next one.
    #[schema(example = "mJ3Yq0kq4l8mYpQ2x1d9Zr0Vtq6o8Xb3sN7cA2eF5gH1iJ4kL7mN0oP3qR6sT9uV")]
    pub refresh_token: String,
    /// Seconds until the session ends unless refreshed (`JWT_REFRESH_TOKEN_EXPIRE_DAYS`).
    #[schema(example = 2_592_000)]
    pub refresh_expires_in: i64,
    /// The user who logged in.
    pub user: UserResponse,
}

/// Register a user.
///
/// `POST /auth/register` with `{name, phone, email, password, image_url?}` (JSON).
///
/// → `201` with the new user; `409 {"detail": "Email already registered"}` when the email (in
/// any case) is taken, also when two requests race for it; `422` listing every invalid field.
/// The hash is computed on the hashing pool.
#[utoipa::path(
    post,
    path = "", // the route table gives the path
    tag = "auth",
    request_body(content = RegisterRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Registered: the new user.", body = UserResponse),
        (status = 409, description = "The email is registered already (in any case).", body = ErrorResponse,
            example = json!({"detail": "Email already registered"})),
        (status = 413, description = "The body is over 64 KiB.", body = ErrorResponse),
        (status = 422, description = "Invalid fields, all listed; also malformed JSON or another content type.", body = ValidationErrorResponse),
        (status = 429, description = "Too many registrations from this address (`REGISTRATIONS_PER_CLIENT`).", body = ErrorResponse,
            headers(("Retry-After" = u32, description = "Seconds to wait before trying again")),
            example = json!({"detail": "Too many registrations from this address, try again later"})),
        Always,
        (status = 503, description = "The database is not answering or too many registrations are hashing; try again shortly.", body = ErrorResponse,
            headers(("Retry-After" = u32, description = "Seconds to wait before trying again"))),
    )
)]
pub fn register(state: &AppState, request: &HttpRequest<'_>) -> Result<Reply> {
    let new: RegisterRequest = request.json()?;
    // Answer a taken email before paying for a hash; the insert checks again, atomically.
    if state.db.find_user_by_email(&new.email)?.is_some() {
        return Err(ApiError::Conflict("Email already registered"));
    }
    // Counted once it would cost a hash: invalid bodies and taken emails cost next to nothing.
    state.throttle.begin_registration(request.client())?;
    Ok(Reply::Deferred(Box::new(
        move |state: &AppState, _: &dyn Claim| {
            let hash = security::hash_password(&new.password, state.bcrypt_cost)
                .map_err(ApiError::internal)?;
            // Stored off the hashing thread, and only if the client is still waiting: one told
            // 503 while this hash ran must not be registered behind its back.
            Ok(Hashed::Finish(Box::new(move |state: &AppState| {
                let user = state.db.insert_user(&NewUserRow {
                    name: &new.name,
                    phone: &new.phone,
                    image_url: new.image_url.as_deref(),
                    email: &new.email,
                    password_hash: &hash,
                })?;
                Ok(ApiResponse::json(201, &UserResponse::from(user)))
            })))
        },
    )))
}

/// Log in: open a session.
///
/// `POST /auth/login` with JSON `{email, password}` or the OAuth2 password form
/// (`username`, `password`).
///
/// → `200 {access_token, token_type: "bearer", expires_in, refresh_token, refresh_expires_in,
/// user}`: a new session, whose access token lasts `JWT_ACCESS_TOKEN_EXPIRE_MINUTES` and whose
/// refresh token `POST /auth/refresh` trades for the next pair; `401` with
/// `WWW-Authenticate: Bearer` and the same message and cost for an unknown email and a wrong
/// password; `422` for a body without the fields.
//
// A stored hash that cannot be checked is that same 401 (and an error in the log); a stored
// hash of another cost or bcrypt variant is replaced on success (`upgrade_hash`).
#[utoipa::path(
    post,
    path = "", // the route table gives the path
    tag = "auth",
    request_body(content(
        (LoginRequest = "application/json"),
        (LoginForm = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "Logged in: a new session's access and refresh tokens, and the user.", body = TokenResponse),
        (status = 401, description = "Unknown email or wrong password (the same answer for both).", body = ErrorResponse,
            headers(("WWW-Authenticate" = String, description = "Always `Bearer`")),
            example = json!({"detail": "Incorrect email or password"})),
        (status = 413, description = "The body is over 64 KiB.", body = ErrorResponse),
        (status = 422, description = "Missing fields, wrong types, malformed body or another content type.", body = ValidationErrorResponse),
        (status = 429, description = "Too many failed logins for this email from this address, from this address overall, or for this email from everywhere; the same answer for registered and unknown emails. No password was checked.", body = ErrorResponse,
            headers(("Retry-After" = u32, description = "Seconds to wait before trying again")),
            example = json!({"detail": "Too many failed logins, try again later"})),
        Always,
        (status = 503, description = "The database is not answering or too many logins are hashing; try again shortly.", body = ErrorResponse,
            headers(("Retry-After" = u32, description = "Seconds to wait before trying again"))),
    )
)]
pub fn login(state: &AppState, request: &HttpRequest<'_>) -> Result<Reply> {
    let credentials =
        parse_login(&request.body, request.header("Content-Type")).map_err(ApiError::Validation)?;
    // Before the hash is queued, so that a refused guess costs no bcrypt; keyed by the email's
    // identity (look-alike spellings share one count) whether or not it is registered, so a
    // 429 says nothing about that.
    let account = account_key(&credentials.email);
    let mut attempt = state
        .throttle
        .begin_login(&state.db, &account, request.client())?;
    let user = state.db.find_user_by_email(&credentials.email)?;
    let device = Device::of(request);
    Ok(Reply::Deferred(Box::new(
        move |state: &AppState, claim: &dyn Claim| {
            // The account's budget, shared by every instance, is taken just before the hash.
            attempt.reserve()?;
            let stored_hash = user.as_ref().map(|u| u.password_hash.as_str());
            let started = Instant::now();
            let check =
                security::verify_password(&credentials.password, stored_hash, state.bcrypt_cost);
            let user = match (user, check) {
                (Some(user), PasswordCheck::Match { outdated }) => {
                    if outdated {
                        upgrade_hash(state, claim, &user, &credentials.password, started)?;
                    }
                    user
                }
                (Some(user), PasswordCheck::Unreadable(why)) => {
                    attempt.failed();
                    // The user cannot log in until an operator fixes the row; the client sees
                    // what any failed login sees. The hash itself is never logged.
                    log::error!(
                        "user {}: the stored password hash cannot be checked ({why}); \
                         login refused",
                        user.id
                    );
                    return Err(ApiError::Unauthorized(BAD_CREDENTIALS));
                }
                _ => {
                    attempt.failed();
                    return Err(ApiError::Unauthorized(BAD_CREDENTIALS));
                }
            };
            // The success is recorded and the session written off the hashing thread, and only
            // if the client is still waiting: one told 503 while the hash ran did not log in
            // (its dropped attempt gives its reserved failure back).
            Ok(Hashed::Finish(Box::new(move |state: &AppState| {
                attempt.succeeded();
                sessions::open(state, user, &device)
            })))
        },
    )))
}

/// The account a password check is counted under by the login throttling: the email's
/// identity key (look-alike spellings share one count), or the email itself when it has none.
pub fn account_key(email: &str) -> String {
    match fields::email_key(email) {
        key if key.is_empty() => email.to_owned(),
        key => key,
    }
}

/// Replaces `user`'s outdated hash (another cost or variant) with a `$2b$` one at the current
/// cost, after a login proved the password, so that the account's logins cost what everyone
/// else's do. `verified_at` is when checking the old hash began, to estimate the new one's cost.
///
/// The login succeeds whatever happens here, but within `HASH_QUEUE_TIMEOUT`: when the new
/// hash would likely not fit in the time left it is put off to a later login; when it did not
/// fit after all the client has been answered 503 and nothing is stored. A failure to store is
/// a warning; the new hash only replaces the one that was checked (a password changed
/// meanwhile stays).
fn upgrade_hash(
    state: &AppState,
    claim: &dyn Claim,
    user: &UserRow,
    password: &str,
    verified_at: Instant,
) -> Result<()> {
    let old_cost = user
        .password_hash
        .get(4..6)
        .and_then(|cost| cost.parse::<i32>().ok())
        .unwrap_or(4);
    // bcrypt's time doubles with each step of cost; allow twice the estimate for a busy machine.
    let scale = 2f64.powi(i32::try_from(state.bcrypt_cost).unwrap_or(31) - old_cost);
    let estimate = verified_at.elapsed().mul_f64((2.0 * scale).min(1e6));
    if estimate > claim.time_left() {
        log::info!(
            "user {}: password hash outdated; not replaced this time, too little time left",
            user.id
        );
        return Ok(());
    }
    let new_hash = match security::hash_password(password, state.bcrypt_cost) {
        Ok(hash) => hash,
        Err(err) => {
            log::warn!("user {}: could not hash the password again: {err}", user.id);
            return Ok(());
        }
    };
    if !claim.claim() {
        // The client was told 503 while this hash ran: this login did not happen.
        return Err(ApiError::too_late());
    }
    match state
        .db
        .update_password_hash(user.id, &user.password_hash, &new_hash)
    {
        Ok(true) => log::info!(
            "user {}: password hash replaced by one at cost {}",
            user.id,
            state.bcrypt_cost
        ),
        Ok(false) => log::info!(
            "user {}: password hash not replaced: it changed during the login",
            user.id
        ),
        Err(err) => log::warn!(
            "user {}: could not store the replaced password hash: {err}",
            user.id
        ),
    }
    Ok(())
}

/// The current user.
///
/// `GET /auth/me` with `Authorization: Bearer <token>` → `200` with the token's user.
///
/// `401` with `WWW-Authenticate: Bearer` when the header is missing ("Not authenticated") or
/// the token is not valid or its user is gone ("Could not validate credentials").
#[utoipa::path(
    get,
    path = "", // the route table gives the path
    tag = "auth",
    security(("OAuth2PasswordBearer" = []), ("HTTPBearer" = [])),
    responses(
        (status = 200, description = "The user the token was issued for.", body = UserResponse),
        NotSignedIn,
        Always,
        DatabaseDown,
    )
)]
pub fn me(state: &AppState, request: &HttpRequest<'_>) -> Result<Reply> {
    let signed_in = authenticate(state, request)?;
    Ok(Reply::Now(ApiResponse::json(
        200,
        &UserResponse::from(signed_in.user),
    )))
}

/// Who signs a request: the user, and the session the access token belongs to (`None` for a
/// token the FastAPI service issued, which has none).
pub struct Authenticated {
    /// The token's user.
    pub user: UserRow,
    /// The token's session.
    pub session: Option<String>,
}

/// The user (and session) whose bearer token signs the request, for every route that needs
/// one: `401` with "Not authenticated" without a token, "Could not validate credentials" for a
/// token that is not valid, whose session has ended, or whose user is gone. One indexed lookup.
pub fn authenticate(state: &AppState, request: &HttpRequest<'_>) -> Result<Authenticated> {
    let token = request
        .header("Authorization")
        .and_then(bearer_token)
        .ok_or(ApiError::Unauthorized("Not authenticated"))?;
    let token = state.tokens.verify(token).ok_or_else(invalid_credentials)?;
    let user = match &token.session {
        Some(session) => {
            state
                .db
                .find_session_user(token.user_id, session, crate::db::unix_millis())?
        }
        None => state
            .db
            .find_user_for_sessionless_token(token.user_id, token.issued_at)?,
    };
    Ok(Authenticated {
        user: user.ok_or_else(invalid_credentials)?,
        session: token.session,
    })
}

/// The `401` for a token that is not valid, whose session has ended, or whose user is gone
/// (also when the user goes while a request of theirs is being answered).
pub fn invalid_credentials() -> ApiError {
    ApiError::Unauthorized("Could not validate credentials")
}

/// Extracts the token from an `Authorization` value: the scheme `Bearer` in any case, as
/// FastAPI's `OAuth2PasswordBearer` accepts it.
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
#[path = "auth_bodies_test.rs"]
mod bodies_test;

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
