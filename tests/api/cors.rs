//! CORS (`CORS_ORIGINS`): preflights and answers as a browser on another origin sees them, and
//! as a page on an origin that is not allowed, or an attacker forging `Origin`, sees them.
//!
//! Requests go over raw sockets, so that any `Origin` can be sent, control characters included,
//! and every header of the answer is seen as written.

use std::io::Write;
use std::time::Duration;

use serde_json::json;

use crate::helpers::{
    read_response, send_and_read, spawn_app, spawn_app_with, valid_registration, RawResponse,
    TestApp,
};

const APP: &str = "https://app.example.com";
const DEV: &str = "http://localhost:3000";

fn listed() -> TestApp {
    spawn_app_with(&[(
        "CORS_ORIGINS",
        "https://app.example.com, http://localhost:3000",
    )])
}

/// Sends one request with `headers` (and a JSON `body`, if any) and reads its answer.
fn exchange(
    app: &TestApp,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> RawResponse {
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    } else {
        request.push_str("\r\n");
    }
    let mut stream = app.connect();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(request.as_bytes()).expect("send");
    read_response(&mut stream).expect("an answer")
}

/// A preflight from `origin` for `method path`, as Chromium sends it.
fn preflight(app: &TestApp, path: &str, origin: &str, method: &str) -> RawResponse {
    exchange(
        app,
        "OPTIONS",
        path,
        &[
            ("Origin", origin),
            ("Access-Control-Request-Method", method),
            (
                "Access-Control-Request-Headers",
                "authorization,content-type",
            ),
        ],
        None,
    )
}

fn cors_headers(response: &RawResponse) -> Vec<String> {
    let mut names: Vec<String> = response
        .headers
        .keys()
        .filter(|name| name.starts_with("access-control-"))
        .cloned()
        .collect();
    names.sort();
    names
}

fn header<'a>(response: &'a RawResponse, name: &str) -> Option<&'a str> {
    response.headers.get(name).map(String::as_str)
}

#[test]
fn a_preflight_from_a_listed_origin_gets_204_with_the_paths_methods_and_headers() {
    let app = listed();
    for (path, wanted, methods) in [
        ("/auth/login", "POST", "POST"),
        ("/auth/register", "POST", "POST"),
        ("/auth/me", "GET", "GET, HEAD, PATCH, DELETE"),
        ("/auth/me", "PATCH", "GET, HEAD, PATCH, DELETE"),
        ("/auth/password", "POST", "POST"),
        ("/auth/refresh", "POST", "POST"),
        ("/auth/logout", "POST", "POST"),
        ("/auth/sessions", "GET", "GET, HEAD"),
        ("/auth/sessions/3q2-7wK9Rz1xYb4Vn0Tg8A", "DELETE", "DELETE"),
        // A method the path lacks is not refused here: the browser sees it missing.
        ("/auth/login", "DELETE", "POST"),
    ] {
        for origin in [APP, DEV] {
            let answer = preflight(&app, path, origin, wanted);
            assert_eq!(answer.status, 204, "{wanted} {path} from {origin}");
            assert!(answer.body.is_empty());
            assert_eq!(header(&answer, "access-control-allow-origin"), Some(origin));
            assert_eq!(header(&answer, "vary"), Some("Origin"));
            assert_eq!(
                header(&answer, "access-control-allow-methods"),
                Some(methods)
            );
            let allowed = header(&answer, "access-control-allow-headers").unwrap_or_default();
            for needed in ["authorization", "content-type"] {
                assert!(allowed.to_ascii_lowercase().contains(needed), "{allowed}");
            }
            assert_eq!(header(&answer, "access-control-max-age"), Some("600"));
            assert_eq!(header(&answer, "access-control-allow-credentials"), None);
        }
    }
}

#[test]
fn a_preflight_from_any_other_origin_is_routed_as_before_with_no_cors_header() {
    let app = listed();
    for origin in [
        "https://evil.test",
        "https://app.example.com.evil.test",
        "https://evil.test/https://app.example.com",
        "https://app.example.co",
        "http://app.example.com",
        "https://app.example.com:443",
        "https://APP.example.com",
        "https://app.example.com, https://evil.test",
        "null",
        "*",
        "",
    ] {
        let answer = preflight(&app, "/auth/login", origin, "POST");
        assert_eq!(answer.status, 405, "{origin:?}");
        assert_eq!(header(&answer, "allow"), Some("POST"), "{origin:?}");
        assert_eq!(answer.json(), json!({ "detail": "Method Not Allowed" }));
        assert_eq!(cors_headers(&answer), Vec::<String>::new(), "{origin:?}");
    }
}

#[test]
fn without_cors_origins_no_answer_carries_a_cors_header() {
    let app = spawn_app();
    let answer = preflight(&app, "/auth/login", APP, "POST");
    assert_eq!(answer.status, 405);
    assert_eq!(header(&answer, "allow"), Some("POST"));
    assert_eq!(cors_headers(&answer), Vec::<String>::new());
    assert_eq!(header(&answer, "vary"), None);

    let body = valid_registration("ada@example.com", "correct horse").to_string();
    let registered = exchange(
        &app,
        "POST",
        "/auth/register",
        &[("Origin", APP)],
        Some(&body),
    );
    assert_eq!(registered.status, 201);
    for path in ["/health", "/auth/me", "/nowhere"] {
        let answer = exchange(&app, "GET", path, &[("Origin", APP)], None);
        assert_eq!(cors_headers(&answer), Vec::<String>::new(), "{path}");
        assert_eq!(header(&answer, "vary"), None, "{path}");
    }
}

#[test]
fn answers_to_a_listed_origin_name_it_and_expose_retry_after_and_www_authenticate() {
    let app = listed();
    let origin = [("Origin", APP)];
    let body = valid_registration("ada@example.com", "correct horse").to_string();
    let registered = exchange(&app, "POST", "/auth/register", &origin, Some(&body));
    let credentials = json!({ "email": "ada@example.com", "password": "correct horse" });
    // Answered by the hashing pool, after the request has been handed over.
    let login = exchange(
        &app,
        "POST",
        "/auth/login",
        &origin,
        Some(&credentials.to_string()),
    );
    assert_eq!(login.status, 200);
    let token = login.json()["access_token"]
        .as_str()
        .expect("a token")
        .to_owned();
    let bearer = format!("Bearer {token}");
    let me = exchange(
        &app,
        "GET",
        "/auth/me",
        &[("Origin", APP), ("Authorization", &bearer)],
        None,
    );
    assert_eq!(me.json()["email"], "ada@example.com");
    let refused = exchange(&app, "GET", "/auth/me", &origin, None);
    assert_eq!(refused.status, 401);
    let missing = exchange(&app, "GET", "/nowhere", &origin, None);
    assert_eq!(missing.status, 404);

    for (what, answer) in [
        ("register", &registered),
        ("login", &login),
        ("me", &me),
        ("401", &refused),
        ("404", &missing),
    ] {
        assert_eq!(
            header(answer, "access-control-allow-origin"),
            Some(APP),
            "{what}"
        );
        assert_eq!(header(answer, "vary"), Some("Origin"), "{what}");
        assert_eq!(
            header(answer, "access-control-expose-headers"),
            Some("Retry-After, WWW-Authenticate"),
            "{what}"
        );
        assert_eq!(
            cors_headers(answer),
            [
                "access-control-allow-origin",
                "access-control-expose-headers"
            ],
            "{what}: no credentials, nothing else"
        );
    }

    // Another origin is answered as before (the server does not guess who is asking), but
    // nothing in the answer lets its page read it.
    let other = exchange(
        &app,
        "GET",
        "/auth/me",
        &[("Origin", "https://evil.test"), ("Authorization", &bearer)],
        None,
    );
    assert_eq!(other.status, 200);
    assert_eq!(cors_headers(&other), Vec::<String>::new());
    assert_eq!(header(&other, "vary"), Some("Origin"));
    let no_origin = exchange(&app, "GET", "/health", &[], None);
    assert_eq!(cors_headers(&no_origin), Vec::<String>::new());
    assert_eq!(header(&no_origin, "vary"), Some("Origin"));
}

#[test]
fn star_allows_every_origin_without_credentials_or_vary() {
    let app = spawn_app_with(&[("CORS_ORIGINS", "*")]);
    for origin in ["https://anything.test", "http://127.0.0.1:9999", "null"] {
        let answer = preflight(&app, "/auth/sessions", origin, "GET");
        assert_eq!(answer.status, 204, "{origin}");
        assert_eq!(header(&answer, "access-control-allow-origin"), Some("*"));
        assert_eq!(
            header(&answer, "access-control-allow-methods"),
            Some("GET, HEAD")
        );
        assert_eq!(header(&answer, "access-control-allow-credentials"), None);
        assert_eq!(header(&answer, "vary"), None);

        let actual = exchange(&app, "GET", "/auth/me", &[("Origin", origin)], None);
        assert_eq!(actual.status, 401);
        assert_eq!(header(&actual, "access-control-allow-origin"), Some("*"));
        assert_eq!(
            header(&actual, "access-control-expose-headers"),
            Some("Retry-After, WWW-Authenticate")
        );
        assert_eq!(header(&actual, "access-control-allow-credentials"), None);
    }
}

#[test]
fn a_hostile_origin_is_never_echoed() {
    // Long ones that fit in a header line (8 KiB) and reach the handler, and one that does not;
    // control characters, which the front door refuses with 400; and look-alikes that start
    // with the allowed origin.
    let long = format!("{APP}{}", "a".repeat(8000));
    let longer = format!("{APP}.{}", "a".repeat(16 * 1024));
    let hostile: [&[u8]; 8] = [
        long.as_bytes(),
        longer.as_bytes(),
        b"https://app.example.com\x01",
        b"https://evil.test\x7f",
        b"https://app.example.com\x00https://evil.test",
        b"https://app.example.com\xff\xfe",
        b"https://app.example.com\tx",
        b"https://app.example.com https://evil.test",
    ];
    for setting in ["https://app.example.com", "*"] {
        let app = spawn_app_with(&[("CORS_ORIGINS", setting)]);
        for origin in hostile {
            for method in ["OPTIONS", "GET"] {
                let mut request =
                    format!("{method} /auth/me HTTP/1.1\r\nHost: api.test\r\n").into_bytes();
                request.extend_from_slice(b"Access-Control-Request-Method: GET\r\nOrigin: ");
                request.extend_from_slice(origin);
                request.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
                let received = send_and_read(&app, &request, Duration::from_secs(5));
                let answer = String::from_utf8_lossy(&received.bytes);
                let shown = String::from_utf8_lossy(origin);
                assert!(
                    answer.starts_with("HTTP/1.1 "),
                    "{setting}, {method}, {shown:?}: {answer}"
                );
                assert!(
                    !answer.starts_with("HTTP/1.1 5"),
                    "{setting}, {method}, {shown:?}: {answer}"
                );
                assert!(
                    !received.bytes.windows(origin.len()).any(|w| w == origin),
                    "{setting}, {method}: the origin came back: {answer}"
                );
                if setting != "*" {
                    assert!(
                        !answer.to_ascii_lowercase().contains("access-control-"),
                        "{setting}, {method}, {shown:?}: {answer}"
                    );
                }
            }
        }
    }
}

#[test]
fn an_options_request_that_is_not_a_preflight_is_answered_as_before() {
    let app = listed();
    // No Access-Control-Request-Method: an ordinary OPTIONS, which a listed origin may read.
    let plain = exchange(&app, "OPTIONS", "/auth/login", &[("Origin", APP)], None);
    assert_eq!(plain.status, 405);
    assert_eq!(header(&plain, "allow"), Some("POST"));
    assert_eq!(header(&plain, "access-control-allow-methods"), None);
    assert_eq!(header(&plain, "access-control-allow-origin"), Some(APP));
    // No Origin: not from a browser's CORS machinery at all.
    let bare = exchange(
        &app,
        "OPTIONS",
        "/auth/login",
        &[("Access-Control-Request-Method", "POST")],
        None,
    );
    assert_eq!(bare.status, 405);
    assert_eq!(cors_headers(&bare), Vec::<String>::new());
    // A preflight to a path no route has is routed: there is nothing to call there.
    let nowhere = preflight(&app, "/nowhere", APP, "GET");
    assert_eq!(nowhere.status, 404);
    assert_eq!(header(&nowhere, "access-control-allow-methods"), None);
}
