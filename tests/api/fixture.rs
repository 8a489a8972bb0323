//! A database file written by the FastAPI service works as it is: its users log in with their
//! passwords (passlib `$2b$12$` hashes) and come back unchanged, SQLAlchemy timestamps
//! rendered as RFC 3339 UTC.

use chrono::NaiveDateTime;
use std::path::Path;

use serde_json::{json, Value};

use crate::helpers::{
    assert_rfc3339_utc, assert_unauthorized, spawn_app_on_fastapi_fixture, valid_registration,
    StoredUser, TestApp,
};
use crate::testdb::{stored_users_in, FASTAPI_FIXTURE};

/// The fixture's users and their passwords (tests/fixtures/README.md).
pub const USERS: [(&str, &str); 4] = [
    ("ann@example.com", "correct horse battery"),
    ("ivan@example.ru", "пароль-надёжный-1"),
    ("li.wei@example.cn", "li-wei-password"),
    ("zoe@example.ie", "Zoë-secret-2024"),
];

/// The users as the FastAPI service stored them, read from the pristine fixture.
pub fn fastapi_users() -> Vec<StoredUser> {
    stored_users_in(Path::new(FASTAPI_FIXTURE))
}

fn app_users(app: &TestApp) -> Vec<StoredUser> {
    app.db.stored_users()
}

/// Asserts that an API timestamp is the stored SQLAlchemy one, as RFC 3339 UTC with `Z`.
fn assert_same_instant(api: &Value, stored: &str) {
    let rendered = assert_rfc3339_utc(api);
    let stored_time = NaiveDateTime::parse_from_str(stored, "%Y-%m-%d %H:%M:%S%.f")
        .unwrap_or_else(|e| panic!("stored timestamp {stored:?}: {e}"))
        .and_utc();
    assert_eq!(rendered, stored_time, "{api} is {stored} UTC");
}

/// Asserts that the API's user is the stored row, field for field.
fn assert_user_is_stored_row(api: &Value, row: &StoredUser) {
    assert_eq!(api["id"], json!(row.id), "{api}");
    assert_eq!(api["name"], json!(row.name), "{api}");
    assert_eq!(api["phone"], json!(row.phone), "{api}");
    assert_eq!(api["image_url"], json!(row.image_url), "{api}");
    assert_eq!(api["email"], json!(row.email), "{api}");
    assert_same_instant(&api["created_at"], &row.created_at);
    assert_same_instant(&api["updated_at"], &row.updated_at);
    assert!(api.get("password_hash").is_none(), "{api}");
}

#[test]
fn the_fixture_holds_the_four_users_its_readme_describes() {
    // Guards the tests below against a regenerated fixture that no longer matches.
    let users = fastapi_users();
    let emails: Vec<&str> = users.iter().map(|u| u.email.as_str()).collect();
    assert_eq!(emails, USERS.map(|(email, _)| email));
    assert_eq!(users.iter().map(|u| u.id).collect::<Vec<_>>(), [1, 2, 3, 4]);
    for user in &users {
        assert!(user.password_hash.starts_with("$2b$12$"), "{user:?}");
    }
    assert_eq!(
        users[3].updated_at.len(),
        "YYYY-MM-DD HH:MM:SS.ffffff".len()
    );
    assert_eq!(users[0].created_at.len(), "YYYY-MM-DD HH:MM:SS".len());
}

#[test]
fn each_fastapi_user_logs_in_with_their_password_and_comes_back_unchanged() {
    let app = spawn_app_on_fastapi_fixture();
    let stored = fastapi_users();
    for ((email, password), row) in USERS.iter().zip(&stored) {
        let login = app.login(email, password);
        assert_eq!(login.status, 200, "{email}: {}", login.text);
        assert_eq!(login.json["token_type"], json!("bearer"));
        assert_user_is_stored_row(&login.json["user"], row);

        let token = login.json["access_token"].as_str().expect("token");
        let me = app.me(token);
        assert_eq!(me.status, 200, "{email}: {}", me.text);
        assert_user_is_stored_row(&me.json, row);
        assert_eq!(me.json, login.json["user"]);
    }
}

#[test]
fn fastapi_users_log_in_through_the_oauth2_form_too() {
    let app = spawn_app_on_fastapi_fixture();
    let (email, password) = USERS[1];
    let login = app.login_form(email, password);
    assert_eq!(login.status, 200, "{}", login.text);
    assert_eq!(login.json["user"]["name"], json!("Иван Петров"));
}

#[test]
fn sqlalchemy_timestamps_with_and_without_microseconds_are_rendered_rfc3339_utc() {
    let app = spawn_app_on_fastapi_fixture();
    let (email, password) = USERS[3];
    let login = app.login(email, password);
    assert_eq!(login.status, 200, "{}", login.text);
    let user = &login.json["user"];
    assert_eq!(user["created_at"], json!("2026-11-26T05:06:20Z"), "{user}");
    assert_eq!(
        user["updated_at"],
        json!("2026-11-26T05:06:21.980171Z"),
        "{user}"
    );
}

#[test]
fn a_fastapi_user_with_a_wrong_password_gets_401() {
    let app = spawn_app_on_fastapi_fixture();
    let response = app.login("ann@example.com", "correct horse battery staple");
    assert_unauthorized(&response, "Incorrect email or password");
}

#[test]
fn a_new_user_registers_beside_the_fastapi_users_with_id_5() {
    let app = spawn_app_on_fastapi_fixture();
    let response = app.register(&valid_registration("new@example.com", "new password"));
    assert_eq!(response.status, 201, "{}", response.text);
    assert_eq!(response.json["id"], json!(5));
    assert_rfc3339_utc(&response.json["created_at"]);

    let login = app.login("new@example.com", "new password");
    assert_eq!(login.status, 200, "{}", login.text);
    assert_eq!(login.json["user"], response.json);
    // The old users are still there and still log in.
    let old = app.login(USERS[0].0, USERS[0].1);
    assert_eq!(old.status, 200, "{}", old.text);
    assert_eq!(app_users(&app).len(), 5);
}

#[test]
fn registering_a_fastapi_users_email_in_any_case_gets_409() {
    let app = spawn_app_on_fastapi_fixture();
    for email in ["zoe@example.ie", "ZOE@Example.IE"] {
        let response = app.register(&valid_registration(email, "another password"));
        assert_eq!(response.status, 409, "{email}: {}", response.text);
        assert_eq!(
            response.json,
            json!({ "detail": "Email already registered" })
        );
    }
}

#[test]
fn starting_on_the_fastapi_database_leaves_every_stored_row_unchanged() {
    let app = spawn_app_on_fastapi_fixture();
    let (email, password) = USERS[3];
    assert_eq!(app.login(email, password).status, 200);
    app.register_user("new@example.com", "new password");
    let mut after = app_users(&app);
    let fastapi = fastapi_users();
    // But for one thing: the login replaced its user's `$2b$12$` hash by one at the test's
    // cost (tests/api/rehash.rs).
    assert!(
        after[3].password_hash.starts_with("$2b$04$"),
        "{:?}",
        after[3]
    );
    after[3].password_hash = fastapi[3].password_hash.clone();
    assert_eq!(&after[..4], &fastapi[..], "the FastAPI rows, byte for byte");
}
