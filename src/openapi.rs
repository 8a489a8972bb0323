//! The OpenAPI 3.1 document (`/openapi.json`) and the Swagger UI that renders it (`/docs`).
//!
//! This module holds what is said once for the whole API (title, description, tags, security
//! schemes) and serves Swagger UI's files. The paths come from the route table
//! (`routes::document`): each operation is declared on its handler with `#[utoipa::path]`, and
//! the request and response bodies are the very types the handlers read and serialise, so the
//! document and the server cannot drift apart. Swagger UI's files are compiled into the
//! binary: `/docs` works with no network.

use std::sync::OnceLock;

use utoipa::openapi::security::{
    Flow, HttpAuthScheme, HttpBuilder, OAuth2, Password, Scopes, SecurityScheme,
};
use utoipa::{Modify, OpenApi};

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
    modifiers(&BearerSecurity),
    tags((name = "auth", description = "Register, log in, who am I, and sessions"))
)]
struct ApiDoc;

/// Adds the OAuth2 password flow whose token URL is `/auth/login`, as FastAPI describes it, so
/// Swagger UI's Authorize button logs in through the API itself; its refresh URL is
/// `/auth/refresh`.
struct BearerSecurity;

impl Modify for BearerSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            SECURITY_SCHEME,
            SecurityScheme::OAuth2(OAuth2::new([Flow::Password(Password::with_refresh_url(
                "/auth/login",
                Scopes::new(),
                "/auth/refresh",
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

/// Returns the OpenAPI document as JSON, built once: this module's parts, then the paths and
/// their schemas that `add_paths` (the route table) adds.
pub fn document_json(add_paths: fn(&mut utoipa::openapi::OpenApi)) -> &'static [u8] {
    static JSON: OnceLock<Vec<u8>> = OnceLock::new();
    JSON.get_or_init(|| {
        let mut doc = ApiDoc::openapi();
        doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
        add_paths(&mut doc);
        // Serialising a document built from our own types cannot fail.
        doc.to_pretty_json()
            .map(String::into_bytes)
            .unwrap_or_default()
    })
}

/// Serves a Swagger UI file for the part of the path after `/docs/` (`""` is the page itself).
/// Returns the bytes, the content type and whether the bytes are gzip-compressed.
#[cfg(feature = "docs")]
pub fn swagger_file(tail: &str) -> Option<(std::borrow::Cow<'static, [u8]>, String, bool)> {
    static CONFIG: OnceLock<std::sync::Arc<utoipa_swagger_ui::Config<'static>>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        std::sync::Arc::new(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_named_and_versioned_from_cargo() {
        let doc: serde_json::Value =
            serde_json::from_slice(document_json(|_| {})).expect("the document is JSON");
        assert!(doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")));
        assert_eq!(doc["info"]["title"], "backnd-api");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        let flow = &doc["components"]["securitySchemes"][SECURITY_SCHEME]["flows"]["password"];
        assert_eq!(flow["tokenUrl"], "/auth/login");
        assert_eq!(flow["refreshUrl"], "/auth/refresh");
    }
}
