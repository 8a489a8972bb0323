//! `GET /health`: 200 while the database answers, 503 once it does not.

use serde_json::json;

use crate::helpers::{destroy_database, spawn_app};

#[test]
fn health_returns_200_status_ok() {
    let app = spawn_app();
    let response = app.get("/health", &[]);
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.json, json!({ "status": "ok" }));
    assert_eq!(response.header("Content-Type"), Some("application/json"));
}

#[test]
fn health_needs_no_authorization_and_ignores_a_bad_token() {
    let app = spawn_app();
    let response = app.get("/health", &[("Authorization", "Bearer not-a-token")]);
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.json, json!({ "status": "ok" }));
}

#[test]
fn health_returns_503_when_the_database_file_is_destroyed() {
    let app = spawn_app();
    let token = app.token_for_new_user("ada@example.com", "correct horse");
    assert_eq!(app.get("/health", &[]).status, 200, "healthy before");

    destroy_database(&app);

    // Precondition: the database really is broken for the service's own queries.
    let me = app.me(&token);
    assert!(
        me.status >= 500,
        "a query on the destroyed database still worked: {} {}",
        me.status,
        me.text
    );
    assert!(
        !me.text.to_ascii_lowercase().contains("sqlite"),
        "no cause sent to the client: {}",
        me.text
    );

    let response = app.get("/health", &[]);
    assert_eq!(
        response.status, 503,
        "/health must not report ok while the database fails (/auth/me got {} {}): {}",
        me.status, me.text, response.text
    );
    assert!(response.json["detail"].is_string(), "{}", response.text);
    assert!(
        response
            .header("Retry-After")
            .is_some_and(|s| s.parse::<u32>().is_ok_and(|s| s > 0)),
        "503 says when to retry: {:?}",
        response.headers
    );
    assert_ne!(response.json, json!({ "status": "ok" }));
}
