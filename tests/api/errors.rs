//! Errors shaped as FastAPI shapes them: 404, 405 with `Allow`, 413 before the body is read,
//! 431 for oversized headers, and 422 for bodies that are not the JSON object expected.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{
    assert_invalid_fields, assert_validation_error, count_users, destroy_database, raw_json,
    raw_status, spawn_app, valid_registration,
};

/// The generous deadline for answers read off raw connections.
const DEADLINE: Duration = Duration::from_secs(5);

#[test]
fn an_unknown_path_gets_404_not_found() {
    let app = spawn_app();
    for path in [
        "/",
        "/nope",
        "/auth",
        "/auth/me/extra",
        "/health/x",
        "/AUTH/ME",
    ] {
        let response = app.get(path, &[]);
        assert_eq!(response.status, 404, "{path}: {}", response.text);
        assert_eq!(response.json, json!({ "detail": "Not Found" }), "{path}");
        assert_eq!(response.header("Content-Type"), Some("application/json"));
    }
    let post = app.post_json("/auth/signup", &json!({}));
    assert_eq!(post.status, 404, "{}", post.text);
    assert_eq!(post.json, json!({ "detail": "Not Found" }));
}

#[test]
fn a_query_string_does_not_change_the_route() {
    let app = spawn_app();
    let response = app.get("/health?verbose=1", &[]);
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.json, json!({ "status": "ok" }));
}

#[test]
fn a_wrong_method_on_a_post_route_gets_405_with_allow_post() {
    let app = spawn_app();
    for path in ["/auth/register", "/auth/login"] {
        let response = app.get(path, &[]);
        assert_eq!(response.status, 405, "{path}: {}", response.text);
        assert_eq!(response.json, json!({ "detail": "Method Not Allowed" }));
        assert_eq!(response.header("Allow"), Some("POST"), "{path}");
    }
}

#[test]
fn a_wrong_method_on_a_get_route_gets_405_with_allow_get() {
    let app = spawn_app();
    for path in ["/auth/me", "/health"] {
        let response = app.post_json(path, &json!({}));
        assert_eq!(response.status, 405, "{path}: {}", response.text);
        assert_eq!(response.json, json!({ "detail": "Method Not Allowed" }));
        let allow = response.header("Allow").unwrap_or_default();
        assert!(
            allow.split(',').any(|m| m.trim() == "GET"),
            "{path}: Allow lists GET: {allow:?}"
        );
        assert!(
            !allow.split(',').any(|m| m.trim() == "POST"),
            "{path}: Allow does not list POST: {allow:?}"
        );
    }
}

#[test]
fn other_methods_get_405_with_allow() {
    let app = spawn_app();
    for (method, path, allow) in [
        ("PUT", "/auth/me", "GET, HEAD, PATCH, DELETE"),
        ("DELETE", "/auth/sessions", "GET, HEAD"),
        ("PUT", "/auth/register", "POST"),
        ("PATCH", "/auth/login", "POST"),
    ] {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let answer = app.raw_exchange(request.as_bytes(), DEADLINE);
        assert_eq!(raw_status(&answer), Some(405), "{method} {path}: {answer}");
        let allow_line = answer
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("allow:"))
            .unwrap_or_else(|| panic!("{method} {path}: no Allow header: {answer}"));
        assert!(allow_line.contains(allow), "{method} {path}: {allow_line}");
        assert_eq!(raw_json(&answer), json!({ "detail": "Method Not Allowed" }));
    }
}

#[test]
fn a_content_length_over_64_kib_gets_413_without_the_body_being_sent() {
    let app = spawn_app();
    // Only the headers: a server that waited for the body would never answer.
    let request = b"POST /auth/register HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 10485760\r\n\r\n";
    let answer = app.raw_exchange(request, DEADLINE);
    assert_eq!(raw_status(&answer), Some(413), "answer: {answer:?}");
    let detail = raw_json(&answer)["detail"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(detail.contains("65536"), "the limit is named: {answer}");
    assert_eq!(count_users(&app), 0);
    // The server is still serving.
    assert_eq!(app.get("/health", &[]).status, 200);
}

#[test]
fn a_body_of_exactly_64_kib_is_read_and_one_byte_more_gets_413() {
    let app = spawn_app();
    let mut body = valid_registration("ada@example.com", "correct horse").to_string();
    let padding = 64 * 1024 - body.len();
    body.insert_str(1, &" ".repeat(padding));
    assert_eq!(body.len(), 65536);
    let accepted = app.post_raw("/auth/register", Some("application/json"), body.as_bytes());
    assert_eq!(accepted.status, 201, "{}", accepted.text);

    let mut over = valid_registration("bob@example.com", "correct horse").to_string();
    let padding = 64 * 1024 + 1 - over.len();
    over.insert_str(1, &" ".repeat(padding));
    assert_eq!(over.len(), 65537);
    let refused = app.post_raw("/auth/register", Some("application/json"), over.as_bytes());
    assert_eq!(refused.status, 413, "{}", refused.text);
    assert!(refused.json["detail"].is_string(), "{}", refused.text);
    assert_eq!(count_users(&app), 1);
}

#[test]
fn a_chunked_body_over_64_kib_gets_413() {
    let app = spawn_app();
    let mut request = b"POST /auth/login HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let chunk = vec![b' '; 16 * 1024];
    for _ in 0..5 {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(&chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let answer = app.raw_exchange(&request, DEADLINE);
    assert_eq!(raw_status(&answer), Some(413), "answer: {answer:?}");
}

#[test]
fn a_header_line_over_8_kib_gets_431() {
    let app = spawn_app();
    let request = format!(
        "GET /health HTTP/1.1\r\nHost: test\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(16 * 1024)
    );
    let answer = app.raw_exchange(request.as_bytes(), DEADLINE);
    assert_eq!(raw_status(&answer), Some(431), "answer: {answer:?}");
    assert_eq!(app.get("/health", &[]).status, 200, "still serving");
}

#[test]
fn more_than_100_headers_get_431() {
    let app = spawn_app();
    let mut request = String::from("GET /health HTTP/1.1\r\nHost: test\r\n");
    for i in 0..150 {
        request.push_str(&format!("X-Header-{i}: {i}\r\n"));
    }
    request.push_str("\r\n");
    let answer = app.raw_exchange(request.as_bytes(), DEADLINE);
    assert_eq!(raw_status(&answer), Some(431), "answer: {answer:?}");
}

#[test]
fn malformed_json_gets_422_with_a_body_location() {
    let app = spawn_app();
    for body in [
        &b"{\"name\": \"Ada\", "[..],
        b"{name: 'Ada'}",
        b"{\"name\": \"Ada\"} trailing",
        b"\xff\xfe not utf-8",
    ] {
        let response = app.post_raw("/auth/register", Some("application/json"), body);
        assert_validation_error(&response);
    }
    assert_eq!(count_users(&app), 0);
}

#[test]
fn json_that_is_not_an_object_gets_422() {
    let app = spawn_app();
    for body in ["[]", "[1, 2]", "\"ada@example.com\"", "42", "null", "true"] {
        let response = app.post_raw("/auth/register", Some("application/json"), body.as_bytes());
        assert_validation_error(&response);
    }
    assert_eq!(count_users(&app), 0);
}

#[test]
fn an_unsupported_content_type_gets_422() {
    let app = spawn_app();
    let body = valid_registration("ada@example.com", "correct horse").to_string();
    for content_type in [
        "text/plain",
        "application/xml",
        "multipart/form-data; boundary=x",
    ] {
        let response = app.post_raw("/auth/register", Some(content_type), body.as_bytes());
        assert_validation_error(&response);
    }
    assert_eq!(count_users(&app), 0);
}

#[test]
fn a_registration_sent_as_a_form_gets_422() {
    let app = spawn_app();
    let response = app.post_raw(
        "/auth/register",
        Some("application/x-www-form-urlencoded"),
        b"name=Ada&phone=12345678&email=ada%40example.com&password=correct+horse",
    );
    assert_validation_error(&response);
    assert_eq!(count_users(&app), 0);
}

#[test]
fn a_missing_body_gets_422() {
    let app = spawn_app();
    let response = app.post_raw("/auth/register", None, b"");
    assert_validation_error(&response);
    let response = app.post_raw("/auth/register", Some("application/json"), b"");
    assert_validation_error(&response);
    assert_eq!(count_users(&app), 0);
}

#[test]
fn an_empty_json_object_lists_the_missing_fields() {
    let app = spawn_app();
    let response = app.post_raw("/auth/register", Some("application/json"), b"{}");
    assert_invalid_fields(&response, &["email", "name", "password", "phone"]);
}

#[test]
fn a_database_failure_answers_500_internal_server_error_without_the_cause() {
    let app = spawn_app();
    let token = app.token_for_new_user("ada@example.com", "correct horse");
    destroy_database(&app);
    let response = app.me(&token);
    assert_eq!(response.status, 500, "{}", response.text);
    assert_eq!(response.json, json!({ "detail": "Internal Server Error" }));
}
