//! The HTTP vocabulary shared by the server and the handlers: the request a handler sees, the
//! response it returns, and the request body's size limit.

use std::borrow::Cow;
use std::net::IpAddr;

/// The largest request body accepted, in bytes. Larger ones are refused with 413 by the
/// connection (tiny_http's `Limits`) before they are read.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What a handler sees of a request: the parts it needs, already read.
pub struct HttpRequest<'a> {
    raw: &'a tiny_http::Request,
    /// The body, at most [`MAX_BODY_BYTES`] long; empty for methods without one.
    pub body: Vec<u8>,
    /// The route's path parameters, by name.
    #[cfg_attr(
        not(feature = "docs"),
        allow(dead_code, reason = "read by Swagger UI's route")
    )]
    params: Vec<(&'static str, &'a str)>,
    /// The client's address (see [`HttpRequest::client`]).
    client: IpAddr,
}

impl<'a> HttpRequest<'a> {
    /// Wraps a tiny_http request whose body has already been read, with the path parameters
    /// its route matched and the client's address as the server worked it out.
    pub(crate) fn new(
        raw: &'a tiny_http::Request,
        body: Vec<u8>,
        params: Vec<(&'static str, &'a str)>,
        client: IpAddr,
    ) -> HttpRequest<'a> {
        HttpRequest {
            raw,
            body,
            params,
            client,
        }
    }

    /// The client's address: the TCP peer's, or behind a proxy in `TRUSTED_PROXIES` the one it
    /// forwarded (`client::client_address`). Per-client limits count under it.
    pub fn client(&self) -> IpAddr {
        self.client
    }

    /// Returns the path parameter `name` (as in `/auth/sessions/{id}`), as it appeared in the
    /// path (not percent-decoded).
    #[cfg_attr(
        not(feature = "docs"),
        allow(dead_code, reason = "read by Swagger UI's route")
    )]
    pub fn param(&self, name: &str) -> Option<&'a str> {
        self.params
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| *value)
    }

    /// Returns the first value of the query parameter `name`, percent-decoded, if present.
    pub fn query(&self, name: &str) -> Option<String> {
        let (_, query) = self.raw.url().split_once('?')?;
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }

    /// Returns the first value of the named header (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        header_value(self.raw, name)
    }
}

/// Returns the first value of the named header of `request` (case-insensitive).
pub(crate) fn header_value<'r>(request: &'r tiny_http::Request, name: &str) -> Option<&'r str> {
    request
        .headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

/// Returns every value of the named header of `request` (case-insensitive), in order.
pub(crate) fn header_values<'r>(request: &'r tiny_http::Request, name: &str) -> Vec<&'r str> {
    request
        .headers()
        .iter()
        .filter(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
        .collect()
}

/// Returns the request path without its query string, which is all that routing and the access
/// log use (a query string may carry secrets).
pub(crate) fn path_of(request: &tiny_http::Request) -> &str {
    let url = request.url();
    url.split_once('?').map_or(url, |(path, _)| path)
}

/// Headers every response of the service carries unless it sets its own (tiny_http adds
/// `X-Content-Type-Options: nosniff` to every response, its own refusals included):
///
/// - `Cache-Control: no-store`: tokens and users must never be kept by a browser or a proxy, and
///   a response that forgot to say so would be; so nothing is stored unless a response opts in,
///   as Swagger UI's files do.
/// - `Content-Security-Policy: frame-ancestors 'none'`, with `X-Frame-Options: DENY` for
///   browsers that predate it: no page of ours may be framed by another site, which could
///   otherwise dress `/docs` up and trick a user into clicking in it (clickjacking).
const COMMON_HEADERS: [(&str, &str); 3] = [
    ("Cache-Control", "no-store"),
    ("Content-Security-Policy", "frame-ancestors 'none'"),
    ("X-Frame-Options", "DENY"),
];

/// A response about to be written: status, body and extra headers.
#[derive(Debug)]
pub struct ApiResponse {
    /// The HTTP status code.
    pub status: u16,
    /// The body: serialised JSON for every API response. Static files (the OpenAPI document,
    /// Swagger UI) are borrowed, not copied, so a slow reader of a large one costs no memory.
    pub body: Cow<'static, [u8]>,
    /// The body's media type: `application/json` but for the documentation pages.
    pub content_type: String,
    /// Headers beyond `Content-Type` and `Content-Length`, which are always set.
    pub headers: Vec<(&'static str, String)>,
}

impl ApiResponse {
    /// Builds a JSON response with the given status.
    pub fn json<T: serde::Serialize + ?Sized>(status: u16, body: &T) -> ApiResponse {
        // Serialising our own plain structs and `serde_json::Value`s cannot fail: they have only
        // string keys and no non-finite floats.
        let body = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
        ApiResponse::bytes(status, "application/json", body)
    }

    /// `204 No Content`: no body, and no `Content-Type`.
    pub fn no_content() -> ApiResponse {
        ApiResponse::bytes(204, "", Vec::new())
    }

    /// Builds a response with a body of any media type.
    pub fn bytes(
        status: u16,
        content_type: impl Into<String>,
        body: impl Into<Cow<'static, [u8]>>,
    ) -> ApiResponse {
        ApiResponse {
            status,
            body: body.into(),
            content_type: content_type.into(),
            headers: Vec::new(),
        }
    }

    /// Converts into tiny_http's response type, adding the [`COMMON_HEADERS`] it does not set.
    pub(crate) fn into_tiny(self) -> tiny_http::Response<std::io::Cursor<Cow<'static, [u8]>>> {
        let length = self.body.len();
        let mut response = tiny_http::Response::new(
            tiny_http::StatusCode(self.status),
            Vec::new(),
            std::io::Cursor::new(self.body),
            Some(length),
            None,
        );
        let own = |name: &str| {
            self.headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
        };
        let common = COMMON_HEADERS.into_iter().filter(|(name, _)| !own(name));
        let headers = [("Content-Type", self.content_type.as_str())]
            .into_iter()
            .filter(|(_, value)| !value.is_empty())
            .chain(
                self.headers
                    .iter()
                    .map(|(name, value)| (*name, value.as_str())),
            )
            .chain(common);
        for (name, value) in headers {
            // Names and values are ours and ASCII; one that is not is a bug, dropped not sent.
            match tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
                Ok(header) => response.add_header(header),
                Err(()) => log::error!("dropped an invalid response header {name:?}"),
            }
        }
        response
    }
}
