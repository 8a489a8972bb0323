//! The route table: every endpoint the service answers, declared once in [`ROUTES`].
//!
//! From each line come routing (404 for an unknown path, 405 with `Allow` for a known path and
//! another method), `HEAD` for every `GET`, whether a body is read (for the methods that carry
//! one), the paths and methods of the OpenAPI document, and the route list of `--help`. A path
//! may hold parameters: `{name}` matches one non-empty segment, and a trailing `{*name}` the
//! rest of the path (possibly empty); handlers read them with `HttpRequest::param`.

mod account;
mod answers;
mod auth;
mod docs;
mod health;
mod sessions;

/// The key an account's login counts are kept under, for `backnd-api user delete`.
pub(crate) use auth::account_key;

use crate::error::{ApiError, Result};
use crate::http::{ApiResponse, HttpRequest};
use crate::state::AppState;

pub use crate::hashing::{Claim, Deferred, Hashed};

/// What a handler returns.
pub enum Reply {
    /// The response, ready to send.
    Now(ApiResponse),
    /// Slow work (bcrypt) to run on the hashing pool, which sends the response when done, so
    /// that request workers stay free for cheap requests.
    Deferred(Deferred),
}

/// A request handler.
pub type Handler = fn(&AppState, &HttpRequest<'_>) -> Result<Reply>;

/// The methods routes are declared with (`HEAD` comes with every `GET`).
#[allow(dead_code, reason = "no PUT route yet")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`, and `HEAD` with it.
    Get,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
    /// `PATCH`.
    Patch,
    /// `DELETE`.
    Delete,
}

impl Method {
    /// The method's name on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }

    /// Whether a request body is read: for every method but `GET`/`HEAD` (a `DELETE` may carry
    /// a confirmation). Bodies of other requests are never read into memory.
    pub const fn takes_body(self) -> bool {
        !matches!(self, Method::Get)
    }
}

/// How a route's operation is described in the OpenAPI document: the `#[utoipa::path]`
/// declaration on its handler, added under the table's path and method.
pub type Doc = fn(
    &mut Vec<(
        String,
        utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
    )>,
) -> utoipa::openapi::path::Operation;

/// One line of the table.
pub struct Route {
    /// The method it answers.
    pub method: Method,
    /// The path, with `{name}` and trailing `{*name}` parameters.
    pub path: &'static str,
    /// The function that answers.
    pub handler: Handler,
    /// Its OpenAPI operation; `None` for routes that are not part of the API (the docs).
    pub doc: Option<Doc>,
}

const fn route(method: Method, path: &'static str, handler: Handler, doc: Option<Doc>) -> Route {
    Route {
        method,
        path,
        handler,
        doc,
    }
}

/// The operation `#[utoipa::path]` generated for a handler, with its tags, and the schemas it
/// refers to. (The `__dev` traits are how utoipa's own routers read an operation.)
fn doc<P>(
    schemas: &mut Vec<(
        String,
        utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
    )>,
) -> utoipa::openapi::path::Operation
where
    P: utoipa::Path + utoipa::__dev::SchemaReferences + for<'t> utoipa::__dev::Tags<'t>,
{
    P::schemas(schemas);
    let mut operation = P::operation();
    let tags = P::tags().into_iter().map(str::to_owned);
    operation.tags.get_or_insert_with(Vec::new).extend(tags);
    operation
}

use Method::{Delete, Get, Patch, Post};

/// Every route, in the order the OpenAPI document and `--help` list them.
#[rustfmt::skip] // a table reads best with one route to a line
pub static ROUTES: &[Route] = &[
    route(Post, "/auth/register", auth::register, Some(doc::<auth::__path_register>)),
    route(Post, "/auth/login",    auth::login,    Some(doc::<auth::__path_login>)),
    route(Get,  "/auth/me",       auth::me,       Some(doc::<auth::__path_me>)),
    route(Patch, "/auth/me",      account::update_me, Some(doc::<account::__path_update_me>)),
    route(Delete, "/auth/me",     account::delete_me, Some(doc::<account::__path_delete_me>)),
    route(Post, "/auth/password", account::change_password, Some(doc::<account::__path_change_password>)),
    route(Post, "/auth/refresh",  sessions::refresh, Some(doc::<sessions::__path_refresh>)),
    route(Post, "/auth/logout",   sessions::logout,  Some(doc::<sessions::__path_logout>)),
    route(Get,  "/auth/sessions", sessions::list,    Some(doc::<sessions::__path_list>)),
    route(Delete, "/auth/sessions/{id}", sessions::end, Some(doc::<sessions::__path_end>)),
    route(Get,  "/health",        health::health, Some(doc::<health::__path_health>)),
    route(Get,  "/openapi.json",  docs::openapi_json, None),
    #[cfg(feature = "docs")]
    route(Get,  "/docs",          docs::docs_redirect, None),
    #[cfg(feature = "docs")]
    route(Get,  "/docs/{*file}",  docs::swagger_ui, None),
];

/// Path parameters by name, as matched.
pub type Params<'a> = Vec<(&'static str, &'a str)>;

/// A matched route and its path parameters.
pub struct Matched<'a> {
    /// The line of the table.
    pub route: &'static Route,
    /// The values of its path parameters.
    pub params: Params<'a>,
}

/// Finds the route for `method` and `path`: 404 for an unknown path, 405 (with `Allow`) for a
/// known path and another method. `HEAD` is answered by the `GET` route.
pub fn find<'a>(method: &str, path: &'a str) -> Result<Matched<'a>> {
    find_in(ROUTES, method, path)
}

fn find_in<'a>(routes: &'static [Route], method: &str, path: &'a str) -> Result<Matched<'a>> {
    let wanted = if method == "HEAD" { "GET" } else { method };
    let mut path_known = false;
    for route in routes {
        if let Some(params) = match_path(route.path, path) {
            if route.method.as_str() == wanted {
                return Ok(Matched { route, params });
            }
            path_known = true;
        }
    }
    if !path_known {
        return Err(ApiError::NotFound("Not Found"));
    }
    Err(ApiError::MethodNotAllowed {
        allow: allowed_methods(routes, path),
    })
}

/// The methods `path` answers, as [`find`]'s `Allow` header lists them; `None` for a path no
/// route has. A CORS preflight's `Access-Control-Allow-Methods` comes from here.
pub fn methods_of(path: &str) -> Option<String> {
    let methods = allowed_methods(ROUTES, path);
    (!methods.is_empty()).then_some(methods)
}

/// The `Allow` header for a path: its routes' methods in table order, `HEAD` after `GET`.
fn allowed_methods(routes: &[Route], path: &str) -> String {
    let mut methods: Vec<&str> = Vec::new();
    for route in routes.iter().filter(|r| match_path(r.path, path).is_some()) {
        methods.push(route.method.as_str());
        if route.method == Method::Get {
            methods.push("HEAD");
        }
    }
    methods.join(", ")
}

/// Matches `path` against a route's pattern, returning its parameters.
fn match_path<'a>(pattern: &'static str, path: &'a str) -> Option<Params<'a>> {
    let mut params = Params::new();
    let mut rest = Some(path.strip_prefix('/')?);
    for wanted in pattern.strip_prefix('/')?.split('/') {
        if let Some(name) = wanted.strip_prefix("{*").and_then(|w| w.strip_suffix('}')) {
            params.push((name, rest?));
            return Some(params);
        }
        let (segment, after) = match rest?.split_once('/') {
            Some((segment, after)) => (segment, Some(after)),
            None => (rest?, None),
        };
        rest = after;
        match wanted.strip_prefix('{').and_then(|w| w.strip_suffix('}')) {
            Some(name) if !segment.is_empty() => params.push((name, segment)),
            Some(_) => return None,
            None if wanted == segment => {}
            None => return None,
        }
    }
    rest.is_none().then_some(params)
}

/// The routes as `--help` lists them: `METHOD /path`, one per line, without the Swagger UI's
/// files.
pub fn summary() -> String {
    ROUTES
        .iter()
        .filter(|r| !r.path.contains("{*"))
        .map(|r| format!("  {} {}\n", r.method.as_str(), r.path))
        .collect()
}

/// Adds every documented route's operation, and the schemas they refer to, to `openapi`.
pub fn document(openapi: &mut utoipa::openapi::OpenApi) {
    let mut schemas = Vec::new();
    for route in ROUTES {
        let Some(doc) = route.doc else { continue };
        let operation = doc(&mut schemas);
        let method = match route.method {
            Method::Get => utoipa::openapi::HttpMethod::Get,
            Method::Post => utoipa::openapi::HttpMethod::Post,
            Method::Put => utoipa::openapi::HttpMethod::Put,
            Method::Patch => utoipa::openapi::HttpMethod::Patch,
            Method::Delete => utoipa::openapi::HttpMethod::Delete,
        };
        openapi
            .paths
            .add_path_operation(route.path, vec![method], operation);
    }
    let components = openapi.components.get_or_insert_with(Default::default);
    for (name, schema) in schemas {
        components.schemas.entry(name).or_insert(schema);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_paths_match_only_themselves() {
        assert!(match_path("/auth/me", "/auth/me").is_some());
        for other in [
            "/auth/me/",
            "/auth",
            "/auth/me/x",
            "/auth/mex",
            "//auth/me",
            "",
        ] {
            assert!(match_path("/auth/me", other).is_none(), "{other:?}");
        }
    }

    #[test]
    fn a_parameter_matches_one_non_empty_segment() {
        let params = match_path("/auth/sessions/{id}", "/auth/sessions/42");
        assert_eq!(params, Some(vec![("id", "42")]));
        for other in ["/auth/sessions/", "/auth/sessions", "/auth/sessions/4/2"] {
            assert!(
                match_path("/auth/sessions/{id}", other).is_none(),
                "{other:?}"
            );
        }
    }

    #[test]
    fn a_trailing_wildcard_takes_the_rest_of_the_path() {
        let pattern = "/docs/{*file}";
        assert_eq!(match_path(pattern, "/docs/"), Some(vec![("file", "")]));
        assert_eq!(
            match_path(pattern, "/docs/a/b.js"),
            Some(vec![("file", "a/b.js")])
        );
        assert!(match_path(pattern, "/docs").is_none());
    }

    fn answer(_: &AppState, _: &HttpRequest<'_>) -> Result<Reply> {
        Err(ApiError::NotFound("Not Found"))
    }

    /// A table of its own, so these tests hold whatever routes the service gains.
    static TABLE: &[Route] = &[
        route(Get, "/things/{id}", answer, None),
        route(Method::Patch, "/things/{id}", answer, None),
        route(Method::Delete, "/things/{id}", answer, None),
        route(Post, "/things", answer, None),
    ];

    #[test]
    fn allow_lists_the_path_methods_in_table_order_with_head_after_get() {
        assert_eq!(
            allowed_methods(TABLE, "/things/7"),
            "GET, HEAD, PATCH, DELETE"
        );
        assert_eq!(allowed_methods(TABLE, "/things"), "POST");
        let Err(ApiError::MethodNotAllowed { allow }) = find_in(TABLE, "PUT", "/things/7") else {
            panic!("PUT /things/7 is a 405");
        };
        assert_eq!(allow, "GET, HEAD, PATCH, DELETE");
    }

    #[test]
    fn methods_of_a_path_are_its_allow_header_and_none_for_an_unknown_one() {
        assert_eq!(methods_of("/health").as_deref(), Some("GET, HEAD"));
        assert_eq!(methods_of("/nowhere"), None);
    }

    #[test]
    fn head_is_answered_by_get_and_an_unknown_path_is_404() {
        let matched = find_in(TABLE, "HEAD", "/things/7").expect("HEAD takes the GET route");
        assert_eq!(matched.route.method, Get);
        assert_eq!(matched.params, vec![("id", "7")]);
        assert!(matches!(
            find_in(TABLE, "GET", "/nowhere"),
            Err(ApiError::NotFound("Not Found"))
        ));
        assert!(find_in(TABLE, "DELETE", "/things/7").is_ok());
        assert!(find_in(TABLE, "HEAD", "/things").is_err());
    }

    #[test]
    fn only_get_and_head_requests_skip_the_body() {
        assert!(!Get.takes_body());
        for method in [Post, Method::Put, Method::Patch, Method::Delete] {
            assert!(method.takes_body(), "{method:?}");
        }
    }

    #[test]
    fn every_documented_route_of_the_service_is_in_the_document() {
        let mut openapi = utoipa::openapi::OpenApi::default();
        document(&mut openapi);
        for route in ROUTES.iter().filter(|r| r.doc.is_some()) {
            let item = openapi.paths.get_path_item(route.path);
            assert!(item.is_some(), "{} {}", route.method.as_str(), route.path);
        }
        assert!(openapi.paths.get_path_item("/docs").is_none());
    }
}
