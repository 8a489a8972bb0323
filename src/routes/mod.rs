//! The route table: which handler answers which method and path.

pub mod auth;
pub mod docs;
pub mod health;

use crate::error::{ApiError, Result};
use crate::http::{ApiResponse, HttpRequest};
use crate::state::AppState;

pub use crate::hashing::{Claim, Deferred};

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

/// One route: a path (or, ending in `/`, every path below it), the methods it answers, and the
/// `Allow` header listing them.
struct Route {
    path: &'static str,
    allow: &'static str,
    handlers: &'static [(&'static str, Handler)],
    /// Whether the handlers read a body (only then is one read from the socket).
    takes_body: bool,
}

static ROUTES: &[Route] = &[
    Route {
        path: "/auth/register",
        allow: "POST",
        handlers: &[("POST", auth::register)],
        takes_body: true,
    },
    Route {
        path: "/auth/login",
        allow: "POST",
        handlers: &[("POST", auth::login)],
        takes_body: true,
    },
    Route {
        path: "/auth/me",
        allow: "GET, HEAD",
        handlers: &[("GET", auth::me), ("HEAD", auth::me)],
        takes_body: false,
    },
    Route {
        path: "/health",
        allow: "GET, HEAD",
        handlers: &[("GET", health::health), ("HEAD", health::health)],
        takes_body: false,
    },
    Route {
        path: "/openapi.json",
        allow: "GET, HEAD",
        handlers: &[("GET", docs::openapi_json), ("HEAD", docs::openapi_json)],
        takes_body: false,
    },
    Route {
        path: "/docs",
        allow: "GET, HEAD",
        handlers: &[("GET", docs::docs_redirect), ("HEAD", docs::docs_redirect)],
        takes_body: false,
    },
    Route {
        path: docs::DOCS_PREFIX,
        allow: "GET, HEAD",
        handlers: &[("GET", docs::swagger_ui), ("HEAD", docs::swagger_ui)],
        takes_body: false,
    },
];

impl Route {
    fn matches(&self, path: &str) -> bool {
        if self.path.ends_with('/') {
            path.starts_with(self.path)
        } else {
            path == self.path
        }
    }
}

/// A matched route: the handler and whether it needs the body.
pub struct Matched {
    /// The function that answers.
    pub handler: Handler,
    /// Read the body before calling the handler.
    pub takes_body: bool,
}

/// Finds the handler for `method` and `path`: 404 for an unknown path, 405 (with `Allow`) for a
/// known path and another method.
pub fn find(method: &str, path: &str) -> Result<Matched> {
    let route = ROUTES
        .iter()
        .find(|r| r.matches(path))
        .ok_or(ApiError::NotFound)?;
    route
        .handlers
        .iter()
        .find(|(m, _)| *m == method)
        .map(|(_, handler)| Matched {
            handler: *handler,
            takes_body: route.takes_body,
        })
        .ok_or(ApiError::MethodNotAllowed { allow: route.allow })
}
