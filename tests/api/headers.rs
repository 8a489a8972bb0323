//! The headers that keep a browser and the caches between it and us safe, read off the wire:
//! `X-Content-Type-Options: nosniff` on every answer (the front door's own refusals included),
//! no `Server` header naming what we run on, `Cache-Control: no-store` on what carries a token
//! or a user (and on everything that does not opt in to caching), and no framing of any page.
//!
//! Each answer is read as raw bytes, so a header sent twice, or by the wrong layer, shows.

use std::io::Write;
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use crate::helpers::{
    read_until_closed, send_and_read, spawn_app, spawn_app_with, valid_registration, Received,
    TestApp,
};

/// How long any of these answers may take.
const PROMPTLY: Duration = Duration::from_secs(5);

/// One answer as sent: its status and every header line in order.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    head: String,
}

impl Answer {
    /// Every value sent for `name` (case-insensitive).
    fn values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Asserts `name` was sent exactly once, with `value`.
    fn assert_once(&self, name: &str, value: &str, case: &str) {
        assert_eq!(
            self.values(name),
            [value],
            "{case}: {name} in\n{}",
            self.head
        );
    }
}

/// Reads the first answer's head out of what a connection received.
fn first_answer(received: &Received, case: &str) -> Answer {
    let text = received.text();
    let (head, _) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{case}: no complete answer in {text:?}"));
    let head = head.to_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.get(9..12))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("{case}: no status line in {head:?}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        head,
    }
}

/// Sends one request on a connection of its own and reads its answer.
fn exchange(app: &TestApp, request: &[u8], case: &str) -> Answer {
    first_answer(&send_and_read(app, request, PROMPTLY), case)
}

/// A complete request that closes its connection after the answer.
fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        text.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    text.push_str("\r\n");
    text.push_str(body);
    text.into_bytes()
}

fn json_post(path: &str, body: &serde_json::Value) -> Vec<u8> {
    request(
        "POST",
        path,
        &[("Content-Type", "application/json")],
        &body.to_string(),
    )
}

/// Asserts what every answer carries, whoever wrote it: `nosniff` once, and no `Server`.
fn assert_nosniff_and_no_server(answer: &Answer, case: &str) {
    answer.assert_once("X-Content-Type-Options", "nosniff", case);
    assert!(
        answer.values("Server").is_empty(),
        "{case}: a Server header tells what we run on:\n{}",
        answer.head
    );
}

/// Asserts what every answer of the application carries beyond that: not stored, not framed.
fn assert_private_and_unframed(answer: &Answer, case: &str) {
    assert_nosniff_and_no_server(answer, case);
    answer.assert_once("Cache-Control", "no-store", case);
    answer.assert_once("Content-Security-Policy", "frame-ancestors 'none'", case);
    answer.assert_once("X-Frame-Options", "DENY", case);
}

#[test]
fn answers_carrying_a_token_or_a_user_are_never_stored() {
    let app = spawn_app();
    let registration = valid_registration("ada@example.com", "correct horse");
    let registered = exchange(
        &app,
        &json_post("/auth/register", &registration),
        "register",
    );
    assert_eq!(registered.status, 201, "{}", registered.head);
    registered.assert_once("Cache-Control", "no-store", "register");

    let credentials =
        serde_json::json!({ "email": "ada@example.com", "password": "correct horse" });
    let logged_in = exchange(&app, &json_post("/auth/login", &credentials), "login");
    assert_eq!(logged_in.status, 200, "{}", logged_in.head);
    logged_in.assert_once("Cache-Control", "no-store", "login");

    let form = request(
        "POST",
        "/auth/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "username=ada%40example.com&password=correct+horse",
    );
    let logged_in = exchange(&app, &form, "login with the form");
    assert_eq!(logged_in.status, 200, "{}", logged_in.head);
    logged_in.assert_once("Cache-Control", "no-store", "login with the form");

    let token = app.token_for_new_user("bob@example.com", "correct horse");
    let bearer = format!("Bearer {token}");
    let me = exchange(
        &app,
        &request("GET", "/auth/me", &[("Authorization", &bearer)], ""),
        "me",
    );
    assert_eq!(me.status, 200, "{}", me.head);
    me.assert_once("Cache-Control", "no-store", "me");
}

#[test]
fn every_answer_of_the_service_is_unsniffable_unstored_and_unframed() {
    let app = spawn_app();
    app.register_user("ada@example.com", "correct horse");
    let token = app.token_for_new_user("bob@example.com", "correct horse");
    let bearer = format!("Bearer {token}");
    let wrong = serde_json::json!({ "email": "ada@example.com", "password": "wrong horse" });
    let taken = valid_registration("ada@example.com", "correct horse");
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("health", request("GET", "/health", &[], ""), 200),
        ("HEAD health", request("HEAD", "/health", &[], ""), 200),
        (
            "openapi.json",
            request("GET", "/openapi.json", &[], ""),
            200,
        ),
        (
            "register",
            json_post(
                "/auth/register",
                &valid_registration("cy@example.com", "correct horse"),
            ),
            201,
        ),
        (
            "me",
            request("GET", "/auth/me", &[("Authorization", &bearer)], ""),
            200,
        ),
        (
            "me without a token",
            request("GET", "/auth/me", &[], ""),
            401,
        ),
        (
            "me with a bad token",
            request("GET", "/auth/me", &[("Authorization", "Bearer x.y.z")], ""),
            401,
        ),
        ("a wrong password", json_post("/auth/login", &wrong), 401),
        ("an email taken", json_post("/auth/register", &taken), 409),
        (
            "an invalid body",
            json_post("/auth/register", &serde_json::json!({})),
            422,
        ),
        ("an unknown path", request("GET", "/nowhere", &[], ""), 404),
        ("another method", request("DELETE", "/health", &[], ""), 405),
    ];
    for (case, message, status) in cases {
        let answer = exchange(&app, &message, case);
        assert_eq!(answer.status, status, "{case}: {}", answer.head);
        assert_private_and_unframed(&answer, case);
    }
}

#[test]
fn the_front_doors_own_answers_say_nosniff_and_name_no_server() {
    let app = spawn_app_with(&[("HEADER_TIMEOUT", "1")]);
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000));
    let big_head = format!(
        "GET /health HTTP/1.1\r\nHost: t\r\n{}\r\n",
        "X-Filler: 0123456789\r\n".repeat(101)
    );
    let cases: Vec<(&str, &[u8], u16)> = vec![
        ("a bare LF", b"GET /health HTTP/1.1\nHost: t\n\n", 400),
        (
            "a body over 64 KiB",
            b"POST /auth/login HTTP/1.1\r\nHost: t\r\nContent-Length: 10485760\r\n\r\n",
            413,
        ),
        ("a 9,000-byte target", long_target.as_bytes(), 414),
        (
            "Expect: 200-ok",
            b"POST /auth/login HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\
              Expect: 200-ok\r\n\r\n{}",
            417,
        ),
        ("101 headers", big_head.as_bytes(), 431),
        (
            "gzip before chunked",
            b"POST /auth/login HTTP/1.1\r\nHost: t\r\n\
              Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            501,
        ),
        ("HTTP/2.0", b"GET / HTTP/2.0\r\n", 505),
    ];
    for (case, message, status) in cases {
        let answer = exchange(&app, message, case);
        assert_eq!(answer.status, status, "{case}: {}", answer.head);
        assert_nosniff_and_no_server(&answer, case);
    }

    // A head that never ends: 408 at HEADER_TIMEOUT.
    let mut stream = app.connect();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        .expect("send");
    let answer = first_answer(&read_until_closed(&mut stream, PROMPTLY), "a stalled head");
    assert_eq!(answer.status, 408, "{}", answer.head);
    assert_nosniff_and_no_server(&answer, "a stalled head");
}

#[test]
fn a_connection_over_the_limit_is_turned_away_with_nosniff_and_no_server() {
    let app = spawn_app_with(&[
        ("MAX_CONNECTIONS", "1"),
        ("MAX_CONNECTIONS_PER_CLIENT", "1"),
    ]);
    let _held: TcpStream = app.connect();
    // Let the server accept the first before the second arrives.
    thread::sleep(Duration::from_millis(200));
    let mut turned_away = app.connect();
    let answer = first_answer(
        &read_until_closed(&mut turned_away, PROMPTLY),
        "over MAX_CONNECTIONS",
    );
    assert_eq!(answer.status, 503, "{}", answer.head);
    assert_nosniff_and_no_server(&answer, "over MAX_CONNECTIONS");
}

#[cfg(feature = "docs")]
#[test]
fn the_docs_refuse_to_be_framed_and_their_files_stay_cacheable() {
    let app = spawn_app();
    let redirect = exchange(&app, &request("GET", "/docs", &[], ""), "/docs");
    assert_eq!(redirect.status, 308, "{}", redirect.head);
    assert_private_and_unframed(&redirect, "/docs");
    for path in [
        "/docs/",
        "/docs/index.html",
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-ui.css",
        "/docs/swagger-initializer.js",
    ] {
        let answer = exchange(&app, &request("GET", path, &[], ""), path);
        assert_eq!(answer.status, 200, "{path}: {}", answer.head);
        assert_nosniff_and_no_server(&answer, path);
        answer.assert_once("Content-Security-Policy", "frame-ancestors 'none'", path);
        answer.assert_once("X-Frame-Options", "DENY", path);
        // Swagger UI's files are the same for everyone: they keep their own caching.
        answer.assert_once("Cache-Control", "public, max-age=3600", path);
    }
}
