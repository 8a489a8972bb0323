//! The OpenAPI 3.1 document (`/openapi.json`) and the Swagger UI that renders it (`/docs`).
//!
//! Response bodies are the very types the handlers serialise (they derive `ToSchema`), each
//! operation is declared on its handler with `#[utoipa::path]`, and the request field limits
//! come from the constants the validators in `schemas` enforce, so document and server cannot
//! drift apart. Swagger UI's files are compiled into the binary: `/docs` works with no network.

use std::sync::{Arc, OnceLock};

use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{
    Flow, HttpAuthScheme, HttpBuilder, OAuth2, Password, Scopes, SecurityScheme,
};
use utoipa::openapi::{Object, RefOr, Schema};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::schemas::{
    image_url_pattern, name_pattern, phone_pattern, EMAIL_MAX_BYTES, NAME_MAX_CHARS,
    PASSWORD_MAX_BYTES, PASSWORD_MIN_CHARS, PHONE_MAX_CHARS, PHONE_MAX_DIGITS, PHONE_MIN_DIGITS,
    URL_MAX_CHARS,
};

/// The name of the bearer-token security scheme, as FastAPI's `OAuth2PasswordBearer` names it.
pub const SECURITY_SCHEME: &str = "OAuth2PasswordBearer";

/// The same token described as plain HTTP bearer authentication, for clients (and test tools)
/// that do not speak OAuth2 flows.
pub const BEARER_SCHEME: &str = "HTTPBearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "backnd-api",
        description = "User registration and login. Errors are `{\"detail\": \"...\"}`, or for \
            validation a list of `{loc, msg, type}` naming every bad field. Logins hash on a \
            bounded queue: when it is full they are refused at once with 503 and `Retry-After`. \
            Bodies over 64 KiB get 413 before they are read."
    ),
    paths(
        crate::routes::auth::register,
        crate::routes::auth::login,
        crate::routes::auth::me,
        crate::routes::health::health,
    ),
    components(schemas(
        RegisterRequest,
        LoginRequest,
        LoginForm,
        crate::schemas::UserResponse,
        crate::schemas::TokenResponse,
        ErrorResponse,
        ValidationErrorResponse,
        ValidationErrorItem,
        HealthResponse,
    )),
    modifiers(&BearerSecurity),
    tags((name = "auth", description = "Register, log in, and who am I"))
)]
struct ApiDoc;

/// Adds the OAuth2 password flow whose token URL is `/auth/login`, as FastAPI describes it, so
/// Swagger UI's Authorize button logs in through the API itself.
struct BearerSecurity;

impl Modify for BearerSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            SECURITY_SCHEME,
            SecurityScheme::OAuth2(OAuth2::new([Flow::Password(Password::new(
                "/auth/login",
                Scopes::new(),
            ))])),
        );
        components.add_security_scheme(
            BEARER_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("The access_token from POST /auth/login."))
                    .build(),
            ),
        );
    }
}

/// Returns the OpenAPI document as JSON, built once.
pub fn document_json() -> &'static [u8] {
    static JSON: OnceLock<Vec<u8>> = OnceLock::new();
    JSON.get_or_init(|| {
        let mut doc = ApiDoc::openapi();
        doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
        // Serialising a document built from our own types cannot fail.
        doc.to_pretty_json()
            .map(String::into_bytes)
            .unwrap_or_default()
    })
}

/// Serves a Swagger UI file for the part of the path after `/docs/` (`""` is the page itself).
/// Returns the bytes, the content type and whether the bytes are gzip-compressed.
pub fn swagger_file(tail: &str) -> Option<(std::borrow::Cow<'static, [u8]>, String, bool)> {
    static CONFIG: OnceLock<Arc<utoipa_swagger_ui::Config<'static>>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        Arc::new(
            utoipa_swagger_ui::Config::from("/openapi.json")
                // Off: Swagger UI would otherwise fetch a badge from validator.swagger.io,
                // sending the document's address out, on any host but localhost.
                .validator_url("none")
                .persist_authorization(true)
                .try_it_out_enabled(true),
        )
    });
    match utoipa_swagger_ui::serve(tail, config.clone()) {
        Ok(Some(file)) => Some((file.bytes, file.content_type, file.gzpipped)),
        Ok(None) => None,
        Err(err) => {
            log::error!("cannot serve Swagger UI file {tail}: {err}");
            None
        }
    }
}

fn string_schema(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
}

fn name_schema() -> Object {
    string_schema(&format!(
        "Display name: surrounding whitespace is trimmed, then 1 to {NAME_MAX_CHARS} characters."
    ))
    .pattern(Some(name_pattern()))
    .examples(["Ada Lovelace"])
    .build()
}

fn phone_schema() -> Object {
    string_schema(&format!(
        "Phone number: {PHONE_MIN_DIGITS} to {PHONE_MAX_DIGITS} digits, with an optional \
         leading '+', and spaces, dashes, dots or parentheses between them; at most \
         {PHONE_MAX_CHARS} characters. Stored as given."
    ))
    .max_length(Some(PHONE_MAX_CHARS))
    .pattern(Some(phone_pattern()))
    .examples(["+44 20 7946 0958"])
    .build()
}

fn email_schema() -> Object {
    string_schema("Email address: trimmed, compared without regard to case, stored lower-case.")
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
            utoipa::openapi::KnownFormat::Email,
        )))
        .max_length(Some(EMAIL_MAX_BYTES))
        .examples(["ada@example.com"])
        .build()
}

fn new_password_schema() -> Object {
    string_schema(&format!(
        "At least {PASSWORD_MIN_CHARS} characters and at most {PASSWORD_MAX_BYTES} bytes of \
         UTF-8 (bcrypt's limit: longer passwords are refused, never truncated). Not trimmed."
    ))
    .min_length(Some(PASSWORD_MIN_CHARS))
    .max_length(Some(PASSWORD_MAX_BYTES))
    .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
        utoipa::openapi::KnownFormat::Password,
    )))
    .examples(["analytical-engine"])
    .build()
}

fn image_url_schema() -> Schema {
    let url = string_schema(&format!(
        "Avatar: an absolute http or https URL of at most {URL_MAX_CHARS} characters with a \
         plain ASCII host name, or null. Surrounding whitespace is trimmed."
    ))
    .max_length(Some(URL_MAX_CHARS))
    .pattern(Some(image_url_pattern()))
    .build();
    Schema::OneOf(
        utoipa::openapi::schema::OneOfBuilder::new()
            .item(url)
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .build(),
    )
}

fn login_password_schema() -> Object {
    string_schema("The password.")
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
            utoipa::openapi::KnownFormat::Password,
        )))
        .build()
}

/// `POST /auth/register` body (JSON). Unknown fields are ignored.
#[derive(ToSchema)]
#[allow(dead_code)] // describes the wire format; `schemas::parse_register` reads it
pub struct RegisterRequest {
    #[schema(schema_with = name_schema)]
    name: String,
    #[schema(schema_with = phone_schema)]
    phone: String,
    #[schema(schema_with = email_schema)]
    email: String,
    #[schema(schema_with = new_password_schema)]
    password: String,
    #[schema(schema_with = image_url_schema)]
    image_url: Option<String>,
}

/// `POST /auth/login` body as JSON.
#[derive(ToSchema)]
#[allow(dead_code)] // describes the wire format; `schemas::parse_login` reads it
pub struct LoginRequest {
    /// The email the user registered with, in any case.
    email: String,
    #[schema(schema_with = login_password_schema)]
    password: String,
}

/// `POST /auth/login` body as the OAuth2 password form (FastAPI's `OAuth2PasswordRequestForm`).
#[derive(ToSchema)]
#[allow(dead_code)] // describes the wire format; `schemas::parse_login` reads it
pub struct LoginForm {
    /// The email the user registered with, in any case.
    username: String,
    #[schema(schema_with = login_password_schema)]
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

/// Every error but validation: `{"detail": "..."}`.
#[derive(ToSchema)]
#[allow(dead_code)] // built by `error::ApiError::into_response`
pub struct ErrorResponse {
    /// What went wrong, for people.
    detail: String,
}

/// A 422: every invalid field at once.
#[derive(ToSchema)]
#[allow(dead_code)] // built by `error::ApiError::into_response`
pub struct ValidationErrorResponse {
    detail: Vec<ValidationErrorItem>,
}

/// One invalid field, as pydantic describes it.
#[derive(ToSchema)]
#[allow(dead_code)] // the shape of `schemas::FieldError`
pub struct ValidationErrorItem {
    /// Where: `["body"]`, `["body", "<field>"]`, or `["body", <byte offset>]` for bad JSON.
    #[schema(schema_with = loc_schema)]
    loc: Vec<String>,
    /// What is wrong, for people.
    msg: String,
    /// pydantic's error type, such as `missing` or `string_too_short`.
    #[schema(rename = "type")]
    kind: String,
    /// The rule's parameters, where there are some.
    ctx: Option<serde_json::Value>,
}

fn loc_schema() -> utoipa::openapi::schema::Array {
    let item = utoipa::openapi::schema::OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(ObjectBuilder::new().schema_type(Type::Integer))
        .build();
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(RefOr::T(Schema::OneOf(item)))
        .build()
}

/// `GET /health` when the database answers.
#[derive(ToSchema)]
#[allow(dead_code)] // built by `routes::health::health`
pub struct HealthResponse {
    /// Always `ok`.
    #[schema(example = "ok")]
    status: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_named_and_versioned_from_cargo() {
        let doc: serde_json::Value =
            serde_json::from_slice(document_json()).expect("the document is JSON");
        assert!(doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")));
        assert_eq!(doc["info"]["title"], "backnd-api");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        let flow = &doc["components"]["securitySchemes"][SECURITY_SCHEME]["flows"]["password"];
        assert_eq!(flow["tokenUrl"], "/auth/login");
    }
}
