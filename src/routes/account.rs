//! `PATCH /auth/me`, `POST /auth/password` and `DELETE /auth/me`: a signed-in user edits their
//! profile, changes their password, and closes their account.
//!
//! Whatever needs the current password (a new email, a new password, deletion) checks it on the
//! hashing pool, counted by the login throttling as a login is, so that a stolen access token
//! is no faster an oracle for the password than the login form. A wrong one is `400`, never
//! `401`, which clients take as "signed out".

use utoipa::ToSchema;

use super::answers::{Always, NotSignedIn, PasswordChecked};
use super::auth::{account_key, authenticate, invalid_credentials, UserResponse};
use super::{Hashed, Reply};
use crate::body::{self, JsonBody, Patch};
use crate::db::{unix_millis, UserChanges, UserRow};
use crate::error::{ApiError, ErrorResponse, Result, ValidationErrorResponse};
use crate::fields;
use crate::http::{ApiResponse, HttpRequest};
use crate::security::{self, PasswordCheck};
use crate::state::AppState;
use crate::throttle::LoginAttempt;

/// The one answer to a missing or wrong current password.
const INCORRECT_PASSWORD: &str = "Incorrect password";

/// `PATCH /auth/me` body: every field may be left out, and only `image_url` may be `null`.
#[derive(Debug, Default, ToSchema)]
pub struct UpdateMeRequest {
    /// A new display name, trimmed.
    #[schema(schema_with = fields::name_schema)]
    name: Option<String>,
    /// A new phone number, trimmed.
    #[schema(schema_with = fields::phone_schema)]
    phone: Option<String>,
    /// A new avatar URL, or `null` to remove it.
    #[schema(schema_with = fields::image_url_schema, required = false)]
    image_url: Patch<String>,
    /// A new email address (it needs `current_password`).
    #[schema(schema_with = fields::email_schema)]
    email: Option<String>,
    /// The current password: needed to change the email, ignored otherwise.
    #[schema(schema_with = fields::password_schema)]
    current_password: Option<String>,
}

impl JsonBody for UpdateMeRequest {
    fn read(fields: &mut body::Fields<'_>) -> Option<Self> {
        let name = fields.if_present("name", fields::name);
        let phone = fields.if_present("phone", fields::phone);
        let image_url = fields.patch("image_url", fields::image_url);
        let email = fields.if_present("email", fields::email);
        let current_password = fields.optional("current_password", fields::password);
        Some(UpdateMeRequest {
            name: name?,
            phone: phone?,
            image_url: image_url?,
            email: email?,
            current_password: current_password?,
        })
    }
}

impl UpdateMeRequest {
    /// The changes to store, with the email only if it is new.
    fn changes<'a>(&'a self, email: Option<&'a str>) -> UserChanges<'a> {
        UserChanges {
            name: self.name.as_deref(),
            phone: self.phone.as_deref(),
            image_url: match &self.image_url {
                Patch::Absent => None,
                Patch::Null => Some(None),
                Patch::Value(url) => Some(Some(url.as_str())),
            },
            email,
        }
    }
}

/// Edit the signed-in user.
///
/// `PATCH /auth/me` with any of `name`, `phone`, `image_url` (`null` removes it), and `email`
/// with `current_password` → `200` with the user. A field left out is unchanged; an empty body
/// changes nothing.
#[utoipa::path(
    patch,
    path = "", // the route table gives the path
    tag = "auth",
    request_body(content = Option<UpdateMeRequest>, content_type = "application/json",
        description = "What changes; no body at all changes nothing, as `{}` does."),
    security(("OAuth2PasswordBearer" = []), ("HTTPBearer" = [])),
    responses(
        (status = 200, description = "The user as changed; `updated_at` moves forward unless nothing was sent.", body = UserResponse),
        (status = 400, description = "A new email without `current_password`, or with a wrong one; nothing was changed.", body = ErrorResponse,
            example = json!({"detail": "Incorrect password"})),
        NotSignedIn,
        (status = 409, description = "The new email is registered to someone else (in any case or look-alike form).", body = ErrorResponse,
            example = json!({"detail": "Email already registered"})),
        (status = 413, description = "The body is over 64 KiB.", body = ErrorResponse),
        (status = 422, description = "Invalid fields, all listed (the rules of registration; `name` and `phone` cannot be null); also malformed JSON or another content type.", body = ValidationErrorResponse),
        PasswordChecked,
        Always,
    )
)]
pub fn update_me(state: &AppState, request: &HttpRequest<'_>) -> Result<Reply> {
    let signed_in = authenticate(state, request)?;
    let mut update: UpdateMeRequest = request.json_or_default()?;
    let user = signed_in.user;
    let new_email = update.email.take().filter(|email| *email != user.email);
    let Some(email) = new_email else {
        let changes = update.changes(None);
        if changes.is_empty() {
            return Ok(Reply::Now(ApiResponse::json(
                200,
                &UserResponse::from(user),
            )));
        }
        let updated = state.db.update_user(user.id, &changes)?;
        return answer_user(updated).map(Reply::Now);
    };
    let Some(password) = update.current_password.take() else {
        return Err(ApiError::BadRequest(INCORRECT_PASSWORD));
    };
    // Answer a taken email before paying for a hash; the update checks again, atomically.
    if let Some(holder) = state.db.find_user_by_email(&email)? {
        if holder.id != user.id {
            return Err(ApiError::Conflict("Email already registered"));
        }
    }
    with_password(state, request, user, password, move |_, attempt, user| {
        Ok(Hashed::Finish(Box::new(move |state: &AppState| {
            attempt.succeeded();
            let updated = state
                .db
                .update_user(user.id, &update.changes(Some(&email)))?;
            answer_user(updated)
        })))
    })
}

/// `POST /auth/password` body.
#[derive(ToSchema)]
pub struct ChangePasswordRequest {
    /// The password now.
    #[schema(schema_with = fields::password_schema)]
    current_password: String,
    /// The new password, exactly as it will be typed.
    #[schema(schema_with = fields::new_password_schema)]
    new_password: String,
}

impl JsonBody for ChangePasswordRequest {
    fn read(fields: &mut body::Fields<'_>) -> Option<Self> {
        let current_password = fields.required("current_password", fields::password);
        let new_password = fields.required("new_password", fields::new_password);
        Some(ChangePasswordRequest {
            current_password: current_password?,
            new_password: new_password?,
        })
    }
}

/// Change the signed-in user's password.
///
/// `POST /auth/password` with `{current_password, new_password}` → `204`. Every other session
/// of the user ends (other devices must log in again); this one goes on.
#[utoipa::path(
    post,
    path = "", // the route table gives the path
    tag = "auth",
    request_body(content = ChangePasswordRequest, content_type = "application/json"),
    security(("OAuth2PasswordBearer" = []), ("HTTPBearer" = [])),
    responses(
        (status = 204, description = "Changed. Every other session of the user has ended, and so has any access token from before sessions; this session goes on."),
        (status = 400, description = "The current password is wrong; nothing was changed.", body = ErrorResponse,
            example = json!({"detail": "Incorrect password"})),
        NotSignedIn,
        (status = 413, description = "The body is over 64 KiB.", body = ErrorResponse),
        (status = 422, description = "A missing field, or a new password outside the rules of registration (8 characters to 72 bytes).", body = ValidationErrorResponse),
        PasswordChecked,
        Always,
    )
)]
pub fn change_password(state: &AppState, request: &HttpRequest<'_>) -> Result<Reply> {
    let signed_in = authenticate(state, request)?;
    let body: ChangePasswordRequest = request.json()?;
    let session = signed_in.session;
    let new_password = body.new_password;
    with_password(
        state,
        request,
        signed_in.user,
        body.current_password,
        move |state, attempt, user| {
            let hash = security::hash_password(&new_password, state.bcrypt_cost)
                .map_err(ApiError::internal)?;
            Ok(Hashed::Finish(Box::new(move |state: &AppState| {
                attempt.succeeded();
                if !state
                    .db
                    .change_password(user.id, &hash, session.as_deref(), unix_millis())?
                {
                    return Err(invalid_credentials());
                }
                log::info!("user {}: password changed; other sessions ended", user.id);
                Ok(ApiResponse::no_content())
            })))
        },
    )
}

/// `DELETE /auth/me` body.
#[derive(ToSchema)]
pub struct DeleteMeRequest {
    /// The password, to confirm.
    #[schema(schema_with = fields::password_schema)]
    password: String,
}

impl JsonBody for DeleteMeRequest {
    fn read(fields: &mut body::Fields<'_>) -> Option<Self> {
        let password = fields.required("password", fields::password)?;
        Some(DeleteMeRequest { password })
    }
}

/// Delete the signed-in user's account.
///
/// `DELETE /auth/me` with `{"password": …}` → `204`: the user and all their sessions are gone,
/// their tokens stop working, and the email can be registered again.
#[utoipa::path(
    delete,
    path = "", // the route table gives the path
    tag = "auth",
    request_body(content = DeleteMeRequest, content_type = "application/json"),
    security(("OAuth2PasswordBearer" = []), ("HTTPBearer" = [])),
    responses(
        (status = 204, description = "Deleted, with every session; the email is free again."),
        (status = 400, description = "The password is wrong; nothing was deleted.", body = ErrorResponse,
            example = json!({"detail": "Incorrect password"})),
        NotSignedIn,
        (status = 413, description = "The body is over 64 KiB.", body = ErrorResponse),
        (status = 422, description = "No password, a malformed body or another content type.", body = ValidationErrorResponse),
        PasswordChecked,
        Always,
    )
)]
pub fn delete_me(state: &AppState, request: &HttpRequest<'_>) -> Result<Reply> {
    let signed_in = authenticate(state, request)?;
    let body: DeleteMeRequest = request.json()?;
    with_password(
        state,
        request,
        signed_in.user,
        body.password,
        |_, attempt, user| {
            Ok(Hashed::Finish(Box::new(move |state: &AppState| {
                // Gives back the reserved failure; the account's counts go with it below.
                drop(attempt);
                if !state.db.delete_user(user.id, &account_key(&user.email))? {
                    return Err(invalid_credentials());
                }
                log::info!("user {}: account deleted", user.id);
                Ok(ApiResponse::no_content())
            })))
        },
    )
}

/// Checks `password` against `user`'s on the hashing pool, counted by the login throttling as
/// a login to the user's account from this client is, then hands `then` the attempt (to record
/// as a success, or drop) and the user. A wrong password is `400`, and a failed login.
fn with_password(
    state: &AppState,
    request: &HttpRequest<'_>,
    user: UserRow,
    password: String,
    then: impl FnOnce(&AppState, LoginAttempt, UserRow) -> Result<Hashed> + Send + 'static,
) -> Result<Reply> {
    let mut attempt =
        state
            .throttle
            .begin_login(&state.db, &account_key(&user.email), request.client())?;
    Ok(Reply::Deferred(Box::new(move |state: &AppState, _| {
        attempt.reserve()?;
        match security::verify_password(&password, Some(&user.password_hash), state.bcrypt_cost) {
            PasswordCheck::Match { .. } => then(state, attempt, user),
            PasswordCheck::Mismatch => {
                attempt.failed();
                Err(ApiError::BadRequest(INCORRECT_PASSWORD))
            }
            PasswordCheck::Unreadable(why) => {
                attempt.failed();
                log::error!(
                    "user {}: the stored password hash cannot be checked ({why})",
                    user.id
                );
                Err(ApiError::BadRequest(INCORRECT_PASSWORD))
            }
        }
    })))
}

/// `200` with the updated user, or `401` when the user was deleted meanwhile.
fn answer_user(updated: Option<UserRow>) -> Result<ApiResponse> {
    let user = updated.ok_or_else(invalid_credentials)?;
    Ok(ApiResponse::json(200, &UserResponse::from(user)))
}
