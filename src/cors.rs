//! Cross-origin requests (CORS): which web pages on other origins may call the API from a
//! browser, and the headers that tell the browser so.
//!
//! Off by default: with `CORS_ORIGINS` unset no response carries a CORS header, so a browser
//! lets no page of another origin read an answer, and a preflight (`OPTIONS` with
//! `Access-Control-Request-Method`) is routed like any other `OPTIONS`: `405` with `Allow`.
//! With a list of origins, a preflight from one of them is answered `204` with the path's
//! methods (from the route table) and the request headers we accept, and every other answer to
//! it names that origin in `Access-Control-Allow-Origin`. Other origins are answered exactly as
//! if CORS were off: nothing tells them which origins are allowed, and nothing they send is
//! echoed. `*` allows every origin, which suits the API: tokens travel in `Authorization`, not in
//! cookies, so no response ever sends `Access-Control-Allow-Credentials`.
//!
//! CORS is the browser's rule, not ours: the server answers every request as it would without
//! it, and only tells the browser which pages may read the answer. Requests a browser sends
//! without a preflight (a form-encoded login, say) still run; what an other origin cannot do is
//! read the token they return.

use std::net::Ipv6Addr;

use crate::http::{header_value, ApiResponse};

/// The request headers a page may send: the bearer token and a JSON or form body's type.
const ALLOWED_HEADERS: &str = "Authorization, Content-Type";

/// The response headers a page may read beyond the CORS-safelisted ones: when to try again
/// after a `429` or `503`, and the scheme a `401` asks for.
const EXPOSED_HEADERS: &str = "Retry-After, WWW-Authenticate";

/// How long a browser may reuse a preflight's answer, in seconds. Ten minutes is short enough
/// that a change of `CORS_ORIGINS` reaches browsers soon, and long enough that a page does not
/// send a preflight before every call. (Chromium caps it at two hours.)
const MAX_AGE_SECONDS: u32 = 600;

/// Which origins may call the API from a browser (`CORS_ORIGINS`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CorsOrigins {
    /// None: no CORS headers at all (the default).
    #[default]
    None,
    /// Every origin (`*`), without credentials.
    Any,
    /// These origins, each as a browser serialises it in `Origin` (`https://app.example.com`,
    /// `http://localhost:3000`): scheme and host in lower case, no default port.
    List(Vec<String>),
}

impl CorsOrigins {
    /// Parses `CORS_ORIGINS`: `*`, or a comma-separated list of origins
    /// (`scheme://host[:port]`, nothing after the port).
    ///
    /// Each origin is stored as browsers send it, so `https://App.Example.com:443` matches
    /// `https://app.example.com`. Refused: a path (even a lone `/`), a query, user info,
    /// wildcards inside a host, non-ASCII hosts (give the punycode form), `null` (the origin of
    /// sandboxed frames and local files, which any page can take on), and `*` in a list. The
    /// message says which entry is wrong and why.
    pub fn parse(value: &str) -> Result<CorsOrigins, String> {
        let entries: Vec<&str> = value
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .collect();
        if entries == ["*"] {
            return Ok(CorsOrigins::Any);
        }
        if entries.contains(&"*") {
            return Err(
                "'*' allows every origin, so it stands alone rather than in a list".to_owned(),
            );
        }
        let mut origins: Vec<String> = Vec::new();
        for entry in entries {
            let origin = origin(entry).map_err(|reason| {
                format!(
                    "{} is not an origin: {reason}; write each as scheme://host[:port], such as \
                     https://app.example.com, separated by commas, or * for any",
                    crate::config::quote(entry)
                )
            })?;
            if !origins.contains(&origin) {
                origins.push(origin);
            }
        }
        Ok(if origins.is_empty() {
            CorsOrigins::None
        } else {
            CorsOrigins::List(origins)
        })
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`, if it is allowed.
    /// The value is ours (`*` or the configured origin), never the request's bytes.
    fn allow(&self, origin: Option<&str>) -> Option<&str> {
        match self {
            CorsOrigins::None => None,
            CorsOrigins::Any => Some("*"),
            CorsOrigins::List(list) => {
                let origin = origin?;
                list.iter().map(String::as_str).find(|o| *o == origin)
            }
        }
    }
}

/// Checks one configured origin and returns it as browsers serialise it.
fn origin(entry: &str) -> Result<String, &'static str> {
    if entry.eq_ignore_ascii_case("null") {
        return Err(
            "'null' is the origin of sandboxed frames and local files, which any page \
                    can take on, so it cannot be allowed",
        );
    }
    let Some((scheme, rest)) = entry.split_once("://") else {
        return Err("it has no scheme (https://)");
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return Err("its scheme is not a URL scheme");
    }
    if rest.contains('/') {
        return Err("it has a path, and an origin ends after the host and port (no /)");
    }
    if rest.contains(['?', '#']) {
        return Err("it has a query or fragment");
    }
    if rest.contains('@') {
        return Err("it has user information (user@)");
    }
    let (host, port) = split_port(rest)?;
    let host = if let Some(literal) = host.strip_prefix('[') {
        let address = literal
            .strip_suffix(']')
            .and_then(|a| a.parse::<Ipv6Addr>().ok())
            .ok_or("its host is not an IPv6 address in brackets")?;
        // As browsers write it: compressed, lower case.
        format!("[{address}]")
    } else {
        if host.contains('*') {
            return Err("wildcards are not supported: list each origin");
        }
        if !host.is_ascii() {
            return Err("its host is not ASCII: give its punycode form (xn--…), as browsers send");
        }
        let valid = !host.is_empty()
            && !host.starts_with(['.', '-'])
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'));
        if !valid {
            return Err("its host is not a host name or address");
        }
        host.to_ascii_lowercase()
    };
    let scheme = scheme.to_ascii_lowercase();
    let port = match (scheme.as_str(), port) {
        // A browser leaves a scheme's default port out of `Origin`.
        ("http", Some(80)) | ("https", Some(443)) | (_, None) => String::new(),
        (_, Some(port)) => format!(":{port}"),
    };
    Ok(format!("{scheme}://{host}{port}"))
}

/// Splits `host[:port]` (the host possibly an IPv6 literal in brackets).
fn split_port(authority: &str) -> Result<(&str, Option<u16>), &'static str> {
    let colon = match authority.rfind(']') {
        Some(end) => authority[end..].find(':').map(|i| end + i),
        None => authority.rfind(':'),
    };
    let Some(colon) = colon else {
        return Ok((authority, None));
    };
    let port = authority[colon + 1..]
        .parse::<u16>()
        .ok()
        .filter(|port| *port != 0 && authority[colon + 1..].bytes().all(|b| b.is_ascii_digit()))
        .ok_or("its port is not a number from 1 to 65535")?;
    Ok((&authority[..colon], Some(port)))
}

/// What CORS adds to the answer to one request, decided from the request's headers before it
/// is handled (a deferred answer is sent after the request is gone).
pub(crate) struct Cors {
    /// `Access-Control-Allow-Origin`, when the request's origin may read the answer.
    allow_origin: Option<String>,
    /// Whether the answer depends on `Origin` (a list is configured), so that a cache never
    /// hands one origin's answer to another.
    vary: bool,
    /// For a preflight from an allowed origin to a known path: that path's methods.
    preflight_methods: Option<String>,
}

impl Cors {
    /// Decides CORS for a request to `method path`, under the configured `origins`.
    pub(crate) fn for_request(
        origins: &CorsOrigins,
        request: &tiny_http::Request,
        method: &str,
        path: &str,
    ) -> Cors {
        let origin = header_value(request, "Origin");
        let allow_origin = origins.allow(origin).map(str::to_owned);
        let is_preflight = method == "OPTIONS"
            && origin.is_some()
            && header_value(request, "Access-Control-Request-Method").is_some();
        let preflight_methods = if is_preflight && allow_origin.is_some() {
            // An unknown path is left to routing (404): there is nothing to call there.
            crate::routes::methods_of(path)
        } else {
            None
        };
        Cors {
            allow_origin,
            vary: matches!(origins, CorsOrigins::List(_)),
            preflight_methods,
        }
    }

    /// The answer to a preflight from an allowed origin: `204` with the path's methods, the
    /// headers a page may send, and how long the browser may remember that. `None` for any
    /// other request, which is routed as usual (an `OPTIONS` then gets `405` with `Allow`).
    ///
    /// A method the path does not have is not refused here: the browser sees it missing from
    /// `Access-Control-Allow-Methods` and refuses to send the request.
    pub(crate) fn preflight(&self) -> Option<ApiResponse> {
        let methods = self.preflight_methods.as_ref()?;
        let mut response = ApiResponse::bytes(204, "application/json", Vec::new());
        response.headers.extend([
            ("Access-Control-Allow-Methods", methods.clone()),
            ("Access-Control-Allow-Headers", ALLOWED_HEADERS.to_owned()),
            ("Access-Control-Max-Age", MAX_AGE_SECONDS.to_string()),
        ]);
        Some(response)
    }

    /// Adds the CORS headers to a response (the preflight's own included): the allowed origin,
    /// the headers a page may read, and `Vary: Origin` whenever the answer depends on it.
    pub(crate) fn apply(&self, mut response: ApiResponse) -> ApiResponse {
        if self.vary {
            response.headers.push(("Vary", "Origin".to_owned()));
        }
        if let Some(origin) = &self.allow_origin {
            response
                .headers
                .push(("Access-Control-Allow-Origin", origin.clone()));
            if self.preflight_methods.is_none() {
                response
                    .headers
                    .push(("Access-Control-Expose-Headers", EXPOSED_HEADERS.to_owned()));
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(value: &str) -> Vec<String> {
        match CorsOrigins::parse(value) {
            Ok(CorsOrigins::List(list)) => list,
            other => panic!("{value:?} should be a list, got {other:?}"),
        }
    }

    fn refusal(value: &str) -> String {
        match CorsOrigins::parse(value) {
            Ok(origins) => panic!("{value:?} should be refused, got {origins:?}"),
            Err(message) => message,
        }
    }

    #[test]
    fn origins_are_kept_as_browsers_send_them() {
        assert_eq!(
            list("https://app.example.com, http://localhost:3000"),
            ["https://app.example.com", "http://localhost:3000"]
        );
        assert_eq!(
            list("HTTPS://App.Example.COM:443,http://x.test:80,https://x.test:80"),
            [
                "https://app.example.com",
                "http://x.test",
                "https://x.test:80"
            ]
        );
        assert_eq!(
            list("http://[0:0:0:0:0:0:0:1]:8080,http://127.0.0.1:5173"),
            ["http://[::1]:8080", "http://127.0.0.1:5173"]
        );
        assert_eq!(list("capacitor://localhost"), ["capacitor://localhost"]);
        assert_eq!(
            list("https://a.test,https://a.test,"),
            ["https://a.test"],
            "duplicates and empty entries are dropped"
        );
    }

    #[test]
    fn a_star_alone_allows_any_origin_and_nothing_allows_none() {
        assert_eq!(CorsOrigins::parse("*"), Ok(CorsOrigins::Any));
        assert_eq!(CorsOrigins::parse(" * "), Ok(CorsOrigins::Any));
        assert_eq!(CorsOrigins::parse(","), Ok(CorsOrigins::None));
        assert_eq!(CorsOrigins::default(), CorsOrigins::None);
    }

    #[test]
    fn anything_but_an_origin_is_refused_with_the_reason() {
        for (value, reason) in [
            ("https://app.example.com/", "has a path"),
            ("https://app.example.com/app", "has a path"),
            ("https://app.example.com?x=1", "query"),
            ("https://user@app.example.com", "user information"),
            ("app.example.com", "no scheme"),
            ("://app.example.com", "not a URL scheme"),
            ("1http://x.test", "not a URL scheme"),
            ("https://", "not a host"),
            ("https://a b.test", "not a host"),
            ("https://.test", "not a host"),
            ("https://*.example.com", "wildcards"),
            ("https://bücher.example", "punycode"),
            ("https://x.test:0", "port"),
            ("https://x.test:65536", "port"),
            ("https://x.test:+80", "port"),
            ("https://x.test:", "port"),
            ("https://[::1", "IPv6"),
            ("https://[nothing]:80", "IPv6"),
            ("null", "sandboxed"),
            ("NULL", "sandboxed"),
            ("*, https://a.test", "stands alone"),
            ("https://a.test, https://a.test/x", "has a path"),
        ] {
            let message = refusal(value);
            assert!(message.contains(reason), "{value:?}: {message}");
        }
        assert!(refusal("https://x.test/").contains("'https://x.test/'"));
        assert!(refusal("https://x.test/").contains("https://app.example.com"));
    }

    #[test]
    fn a_refusal_escapes_control_characters() {
        let message = refusal("https://x.test/\u{1b}[31m");
        assert!(!message.contains('\u{1b}'), "{message}");
    }

    #[test]
    fn only_a_configured_origin_is_allowed_and_the_value_is_ours() {
        let origins = CorsOrigins::List(vec!["https://app.example.com".to_owned()]);
        assert_eq!(
            origins.allow(Some("https://app.example.com")),
            Some("https://app.example.com")
        );
        for other in [
            "https://app.example.com.evil.test",
            "https://evil.test/https://app.example.com",
            "https://app.example.co",
            "http://app.example.com",
            "https://app.example.com:443",
            "null",
            "",
        ] {
            assert_eq!(origins.allow(Some(other)), None, "{other:?}");
        }
        assert_eq!(origins.allow(None), None);
        assert_eq!(CorsOrigins::Any.allow(Some("https://evil.test")), Some("*"));
        assert_eq!(CorsOrigins::None.allow(Some("https://evil.test")), None);
    }
}
