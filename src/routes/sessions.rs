//! `/auth/refresh`, `/auth/logout` and `/auth/sessions`: keeping a session alive, ending it,
//! and seeing them all. What a session is, and the rules of its refresh tokens, are in
//! [`crate::sessions`]; logins open sessions through [`open`].

use utoipa::ToSchema;

use super::answers::{Always, DatabaseDown, NotSignedIn};
use super::auth::{authenticate, TokenResponse, UserResponse};
use super::Reply;
use crate::body::{self, FormBody, FormFields, JsonBody, JsonOrForm};
use crate::db::{unix_millis, NewSession, Rotated, Rotation, SessionRow, UserRow};
use crate::error::{ApiError, ErrorResponse, FieldError, Result, ValidationErrorResponse};
use crate::fields;
use crate::http::{ApiResponse, HttpRequest};
use crate::sessions::{self as rules, RefreshToken};
use crate::state::AppState;

/// The one answer to any refresh token that does not buy a new pair, whatever the reason
/// (unknown, spent, ended), so that an answer tells a thief nothing.
const INVALID_REFRESH: &str = "Invalid refresh token";

/// The client a session is opened or refreshed from, as `GET /auth/sessions` shows it.
pub struct Device {
    user_agent: Option<String>,
    address: String,
}

impl Device {
    /// The request's `User-Agent` (cleaned and cut) and client address.
    pub fn of(request: &HttpRequest<'_>) -> Device {
        Device {
            user_agent: rules::user_agent(request.header("User-Agent")),
            address: request.client().to_string(),
        }
    }
}

/// Opens a session for `user`, who has just proved their password, and answers the login
/// with its tokens.
pub fn open(state: &AppState, user: UserRow, device: &Device) -> Result<ApiResponse> {
    let id = rules::new_session_id().map_err(ApiError::internal)?;
    let refresh = RefreshToken::generate().map_err(ApiError::internal)?;
    let now = unix_millis();
    state.db.open_session(&NewSession {
        id: &id,
        user_id: user.id,
        family_hash: &refresh.family_hash(),
        token_hash: &refresh.secret_hash(),
        user_agent: device.user_agent.as_deref(),
        client: &device.address,
        now_ms: now,
        expires_ms: now.saturating_add(state.sessions.lifetime_ms),
    })?;
    tokens(state, user, &id, &refresh)
}

/// The body of a login or refresh: a new access token for `session` and its refresh token.
fn tokens(
    state: &AppState,
    user: UserRow,
    session: &str,
    refresh: &RefreshToken,
) -> Result<ApiResponse> {
    let access_token = state
        .tokens
        .issue(user.id, session)
        .map_err(ApiError::internal)?;
    Ok(ApiResponse::json(
        200,
        &TokenResponse {
            access_token,
            token_type: "bearer",
            expires_in: state.tokens.lifetime_seconds(),
            refresh_token: refresh.encode(),
            refresh_expires_in: state.sessions.lifetime_ms / 1000,
            user: UserResponse::from(user),
        },
    ))
}

/// `POST /auth/refresh` body as JSON.
#[derive(ToSchema)]
pub struct RefreshRequest {
    #[schema(schema_with = fields::refresh_token_schema)]
    refresh_token: String,
}

impl JsonBody for RefreshRequest {
    fn read(fields: &mut body::Fields<'_>) -> Option<Self> {
        let refresh_token = fields.required("refresh_token", fields::refresh_token)?;
        Some(RefreshRequest { refresh_token })
    }
}

/// `POST /auth/refresh` body as the OAuth2 refresh form (RFC 6749 section 6), so that stock
/// OAuth2 clients can refresh.
#[derive(ToSchema)]
#[allow(dead_code)] // grant_type and scope are read only to be checked and documented
pub struct RefreshForm {
    /// Must be `refresh_token`.
    #[schema(pattern = "^refresh_token$", example = "refresh_token")]
    grant_type: String,
    #[schema(schema_with = fields::refresh_token_schema)]
    refresh_token: String,
    /// Accepted and ignored: a refresh keeps the session's access.
    scope: Option<String>,
}

impl FormBody for RefreshForm {
    fn read(form: &mut FormFields) -> Option<Self> {
        let grant_type = form.required_exactly("grant_type", "refresh_token");
        let refresh_token = form.required("refresh_token");
        Some(RefreshForm {
            grant_type: grant_type?,
            refresh_token: refresh_token?,
            scope: form.optional("scope"),
        })
    }
}

/// Refresh: trade a refresh token for a new access token and a new refresh token.
///
/// `POST /auth/refresh` with JSON `{refresh_token}` or the OAuth2 form
/// `grant_type=refresh_token&refresh_token=…`.
///
/// → `200` as a login, with the session's next refresh token; the one sent is spent. `401`
/// for a token that is unknown, spent or of an ended session. A token spent more than
/// `REFRESH_REUSE_GRACE` seconds ago is taken as stolen: its whole session ends.
#[utoipa::path(
    post,
    path = "", // the route table gives the path
    tag = "auth",
    request_body(content(
        (RefreshRequest = "application/json"),
        (RefreshForm = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "A new access token and refresh token for the same session; the refresh token sent is spent. The session now ends `refresh_expires_in` seconds from now unless refreshed again.", body = TokenResponse),
        (status = 401, description = "The refresh token is unknown, spent, or of a session that has ended. A token spent more than `REFRESH_REUSE_GRACE` seconds ago ends its whole session, since someone else holds a copy.", body = ErrorResponse,
            headers(("WWW-Authenticate" = String, description = "Always `Bearer`")),
            example = json!({"detail": "Invalid refresh token"})),
        (status = 413, description = "The body is over 64 KiB.", body = ErrorResponse),
        (status = 422, description = "No refresh_token, a grant_type other than `refresh_token` in the form, a malformed body or another content type.", body = ValidationErrorResponse),
        Always,
        DatabaseDown,
    )
)]
pub fn refresh(state: &AppState, request: &HttpRequest<'_>) -> Result<Reply> {
    let presented = match body::json_or_form::<RefreshRequest, RefreshForm>(
        &request.body,
        request.header("Content-Type"),
    )
    .map_err(ApiError::Validation)?
    {
        JsonOrForm::Json(body) => body.refresh_token,
        JsonOrForm::Form(form) => form.refresh_token,
    };
    let invalid = || ApiError::Unauthorized(INVALID_REFRESH);
    let token = RefreshToken::parse(&presented).ok_or_else(invalid)?;
    let next = token.rotated().map_err(ApiError::internal)?;
    let device = Device::of(request);
    let now = unix_millis();
    let outcome = state.db.rotate_refresh_token(&Rotation {
        family_hash: &token.family_hash(),
        presented: &token.secret_hash(),
        new_hash: &next.secret_hash(),
        now_ms: now,
        expires_ms: now.saturating_add(state.sessions.lifetime_ms),
        grace_ms: state.sessions.reuse_grace_ms,
        user_agent: device.user_agent.as_deref(),
        client: &device.address,
    })?;
    match outcome {
        Rotated::Done { session_id, user } => {
            tokens(state, *user, &session_id, &next).map(Reply::Now)
        }
        Rotated::Refused => Err(invalid()),
        Rotated::Revoked {
            session_id,
            user_id,
        } => {
            log::warn!(
                "user {user_id}: a spent refresh token of session {session_id} was presented \
                 again from {}; the session is ended, as its tokens have been copied",
                device.address
            );
            Err(invalid())
        }
    }
}

/// Which sessions `POST /auth/logout` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum LogoutScope {
    /// The session of the access token sent (the default).
    Current,
    /// Every session of the user, and the user's access tokens from before sessions.
    All,
}

impl LogoutScope {
    /// Reads `?scope=`: absent is `current`; anything but `current` or `all` is FastAPI's 422
    /// for a `Literal` query parameter.
    fn of(request: &HttpRequest<'_>) -> Result<LogoutScope> {
        match request.query("scope").as_deref() {
            None | Some("current") => Ok(LogoutScope::Current),
            Some("all") => Ok(LogoutScope::All),
            Some(_) => Err(ApiError::Validation(vec![FieldError::new(
                vec![serde_json::json!("query"), serde_json::json!("scope")],
                "Input should be 'current' or 'all'",
                "literal_error",
            )
            .with_ctx(serde_json::json!({ "expected": "'current' or 'all'" }))])),
        }
    }
}

/// Log out: end this session, or every session.
///
/// `POST /auth/logout` with the access token → `204`. The session's refresh token and access
/// tokens stop working at once, on every instance: the next request with them gets `401`.
/// `?scope=all` ends every session of the user, and any access token of theirs from before
/// sessions (issued by the FastAPI service).
#[utoipa::path(
    post,
    path = "", // the route table gives the path
    tag = "auth",
    params(
        ("scope" = inline(Option<LogoutScope>), Query, description = "`current` (the default): this session; `all`: every session of the user."),
    ),
    security(("OAuth2PasswordBearer" = []), ("HTTPBearer" = [])),
    responses(
        (status = 204, description = "Logged out: the session (or every session) has ended."),
        NotSignedIn,
        (status = 413, description = "The body is over 64 KiB.", body = ErrorResponse),
        (status = 422, description = "A scope other than `current` or `all`.", body = ValidationErrorResponse),
        Always,
        DatabaseDown,
    )
)]
pub fn logout(state: &AppState, request: &HttpRequest<'_>) -> Result<Reply> {
    let signed_in = authenticate(state, request)?;
    let scope = LogoutScope::of(request)?;
    let (user, now) = (signed_in.user.id, unix_millis());
    match (scope, signed_in.session) {
        (LogoutScope::All, _) => {
            state.db.revoke_sessions(user, None, now)?;
        }
        (LogoutScope::Current, Some(session)) => {
            state.db.revoke_session(user, &session, now)?;
        }
        // A token from before sessions cannot be ended alone: end every such token of the
        // user's. They all expire within JWT_ACCESS_TOKEN_EXPIRE_MINUTES anyway.
        (LogoutScope::Current, None) => state.db.cut_off_sessionless_tokens(user, now)?,
    }
    Ok(Reply::Now(ApiResponse::no_content()))
}

/// A live session, as `GET /auth/sessions` lists it.
#[derive(Debug, Clone, serde::Serialize, ToSchema)]
pub struct SessionResponse {
    /// The session's id: `DELETE /auth/sessions/{id}` ends it.
    #[schema(example = "3q2-7wK9Rz1xYb4Vn0Tg8A")]
    pub id: String,
    /// When the login that opened it happened, RFC 3339 in UTC.
    #[schema(format = DateTime, example = "2026-11-28T09:10:25.193Z")]
    pub created_at: String,
    /// When it was last opened or refreshed, RFC 3339 in UTC.
    #[schema(format = DateTime, example = "2026-11-28T10:05:11.020Z")]
    pub last_used_at: String,
    /// When it ends unless refreshed before, RFC 3339 in UTC.
    #[schema(format = DateTime, example = "2026-12-28T10:05:11.020Z")]
    pub expires_at: String,
    /// The `User-Agent` of its last login or refresh, cut to 256 characters.
    #[schema(example = "Mozilla/5.0 (X11; Linux x86_64)")]
    pub user_agent: Option<String>,
    /// The client address of its last login or refresh.
    #[schema(example = "203.0.113.7")]
    pub ip_address: String,
    /// Whether this is the session of the access token the list was asked with.
    pub current: bool,
}

impl SessionResponse {
    fn of(row: SessionRow, current: Option<&str>) -> SessionResponse {
        let time = |ms: i64| {
            chrono::DateTime::from_timestamp_millis(ms)
                .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .unwrap_or_default()
        };
        SessionResponse {
            current: current == Some(row.id.as_str()),
            created_at: time(row.created_ms),
            last_used_at: time(row.last_used_ms),
            expires_at: time(row.expires_ms),
            id: row.id,
            user_agent: row.user_agent,
            ip_address: row.client,
        }
    }
}

/// The signed-in user's sessions.
///
/// `GET /auth/sessions` → `200` with the user's live sessions, most recently used first, the
/// one asking marked `current`.
#[utoipa::path(
    get,
    path = "", // the route table gives the path
    tag = "auth",
    security(("OAuth2PasswordBearer" = []), ("HTTPBearer" = [])),
    responses(
        (status = 200, description = "The user's live sessions, most recently used first.", body = Vec<SessionResponse>),
        NotSignedIn,
        Always,
        DatabaseDown,
    )
)]
pub fn list(state: &AppState, request: &HttpRequest<'_>) -> Result<Reply> {
    let signed_in = authenticate(state, request)?;
    let current = signed_in.session.as_deref();
    let sessions: Vec<SessionResponse> = state
        .db
        .list_sessions(signed_in.user.id, unix_millis())?
        .into_iter()
        .map(|row| SessionResponse::of(row, current))
        .collect();
    Ok(Reply::Now(ApiResponse::json(200, &sessions)))
}

/// End one of the signed-in user's sessions.
///
/// `DELETE /auth/sessions/{id}` → `204`; its tokens stop working at once. `404` for an id that
/// is not one of the user's live sessions (another user's included).
#[utoipa::path(
    delete,
    path = "", // the route table gives the path
    tag = "auth",
    params(("id" = String, Path, description = "The session's id, from `GET /auth/sessions`.")),
    security(("OAuth2PasswordBearer" = []), ("HTTPBearer" = [])),
    responses(
        (status = 204, description = "The session has ended."),
        NotSignedIn,
        (status = 404, description = "No live session of this user has this id.", body = ErrorResponse,
            example = json!({"detail": "Session not found"})),
        (status = 413, description = "The body is over 64 KiB.", body = ErrorResponse),
        Always,
        DatabaseDown,
    )
)]
pub fn end(state: &AppState, request: &HttpRequest<'_>) -> Result<Reply> {
    let signed_in = authenticate(state, request)?;
    let not_found = ApiError::NotFound("Session not found");
    let id = request.param("id").unwrap_or_default();
    if !rules::is_session_id(id) {
        return Err(not_found);
    }
    if !state
        .db
        .revoke_session(signed_in.user.id, id, unix_millis())?
    {
        return Err(not_found);
    }
    Ok(Reply::Now(ApiResponse::no_content()))
}
