//! The account's lifecycle: `PATCH /auth/me` (profile and email), `POST /auth/password` and
//! `DELETE /auth/me`, with the current password checked and throttled as a login is.

use std::sync::{Arc, Barrier};

use serde_json::{json, Value};

use crate::helpers::{
    assert_invalid_fields, assert_rfc3339_utc, assert_signed_out, assert_unauthorized, spawn_app,
    spawn_app_with, valid_registration, TestApp, TestResponse,
};

const PASSWORD: &str = "correct horse";

/// Registers `email` and logs in: the user as registered, an access and a refresh token.
fn signed_up(app: &TestApp, email: &str) -> (Value, String, String) {
    let user = app.register_user(email, PASSWORD);
    let login = app.login(email, PASSWORD);
    assert_eq!(login.status, 200, "{}", login.text);
    let token = |name: &str| login.json[name].as_str().expect(name).to_owned();
    (user, token("access_token"), token("refresh_token"))
}

fn patch(app: &TestApp, token: &str, body: &Value) -> TestResponse {
    app.call("PATCH", "/auth/me", Some(token), Some(body))
}

fn change_password(app: &TestApp, token: &str, current: &str, new: &str) -> TestResponse {
    app.call(
        "POST",
        "/auth/password",
        Some(token),
        Some(&json!({ "current_password": current, "new_password": new })),
    )
}

fn delete_me(app: &TestApp, token: &str, password: &str) -> TestResponse {
    app.call(
        "DELETE",
        "/auth/me",
        Some(token),
        Some(&json!({ "password": password })),
    )
}

fn assert_incorrect_password(response: &TestResponse) {
    assert_eq!(response.status, 400, "{}", response.text);
    assert_eq!(response.json, json!({ "detail": "Incorrect password" }));
    assert_eq!(response.header("www-authenticate"), None, "not a sign-out");
}

#[test]
fn patching_the_profile_changes_only_the_fields_sent_and_moves_updated_at() {
    let app = spawn_app();
    let (user, token, _) = signed_up(&app, "ada@example.com");
    std::thread::sleep(std::time::Duration::from_millis(5));
    let response = patch(
        &app,
        &token,
        &json!({ "name": "  Ada King  ", "image_url": "https://example.com/ada.png" }),
    );
    assert_eq!(response.status, 200, "{}", response.text);
    let changed = &response.json;
    assert_eq!(
        changed["name"],
        json!("Ada King"),
        "trimmed as at registration"
    );
    assert_eq!(changed["image_url"], json!("https://example.com/ada.png"));
    assert_eq!(changed["phone"], user["phone"], "left out, so unchanged");
    assert_eq!(changed["email"], user["email"]);
    assert_eq!(changed["created_at"], user["created_at"]);
    assert!(assert_rfc3339_utc(&changed["updated_at"]) > assert_rfc3339_utc(&user["updated_at"]));
    assert_eq!(app.me(&token).json, *changed, "stored as answered");

    let cleared = patch(
        &app,
        &token,
        &json!({ "image_url": null, "phone": "+1 555 0100" }),
    );
    assert_eq!(cleared.status, 200, "{}", cleared.text);
    assert_eq!(cleared.json["image_url"], Value::Null);
    assert_eq!(cleared.json["phone"], json!("+1 555 0100"));
    assert_eq!(cleared.json["name"], json!("Ada King"));
    assert_eq!(app.login("ada@example.com", PASSWORD).status, 200);
}

#[test]
fn an_empty_patch_changes_nothing_and_answers_the_user() {
    let app = spawn_app();
    let (user, token, _) = signed_up(&app, "ada@example.com");
    for body in [
        json!({}),
        json!({ "unknown": 1, "current_password": "whatever" }),
    ] {
        let response = patch(&app, &token, &body);
        assert_eq!(response.status, 200, "{}", response.text);
        assert_eq!(response.json, user, "updated_at did not move either");
    }
    let no_body = app.call("PATCH", "/auth/me", Some(&token), None);
    assert_eq!(no_body.status, 200, "{}", no_body.text);
    assert_eq!(no_body.json, user);
    let null = app.call("PATCH", "/auth/me", Some(&token), Some(&Value::Null));
    assert_eq!(null.status, 200, "{}", null.text);
    assert_eq!(null.json, user);
}

#[test]
fn a_patch_with_bad_fields_lists_every_one_and_changes_nothing() {
    let app = spawn_app();
    let (user, token, _) = signed_up(&app, "ada@example.com");
    let response = patch(
        &app,
        &token,
        &json!({ "name": "   ", "phone": "call me", "image_url": "ftp://x", "email": "not-an-email" }),
    );
    assert_invalid_fields(&response, &["email", "image_url", "name", "phone"]);
    let nulls = patch(
        &app,
        &token,
        &json!({ "name": null, "phone": null, "email": null }),
    );
    assert_invalid_fields(&nulls, &["email", "name", "phone"]);
    let wrong_type = patch(&app, &token, &json!({ "name": 7 }));
    assert_invalid_fields(&wrong_type, &["name"]);
    assert_eq!(app.me(&token).json, user);
    assert_unauthorized(
        &app.call("PATCH", "/auth/me", None, Some(&json!({ "name": "Eve" }))),
        "Not authenticated",
    );
}

#[test]
fn changing_the_email_needs_the_current_password() {
    let app = spawn_app();
    let (user, token, _) = signed_up(&app, "ada@example.com");
    let missing = patch(&app, &token, &json!({ "email": "ada@new.example" }));
    assert_incorrect_password(&missing);
    let wrong = patch(
        &app,
        &token,
        &json!({ "email": "ada@new.example", "current_password": "wrong horse", "name": "X" }),
    );
    assert_incorrect_password(&wrong);
    assert_eq!(
        app.me(&token).json,
        user,
        "nothing changed, the name neither"
    );

    let changed = patch(
        &app,
        &token,
        &json!({ "email": "  Ada@New.Example ", "current_password": PASSWORD }),
    );
    assert_eq!(changed.status, 200, "{}", changed.text);
    assert_eq!(changed.json["email"], json!("ada@new.example"));
    assert_eq!(app.login("ada@new.example", PASSWORD).status, 200);
    assert_unauthorized(
        &app.login("ada@example.com", PASSWORD),
        "Incorrect email or password",
    );
    assert_eq!(app.me(&token).status, 200, "the session goes on");
    // The old email is free again.
    assert_eq!(
        app.register(&valid_registration("ada@example.com", PASSWORD))
            .status,
        201
    );
}

#[test]
fn an_email_someone_else_holds_in_any_form_is_409_and_nothing_changes() {
    let app = spawn_app();
    let (user, token, _) = signed_up(&app, "ada@example.com");
    app.register_user("bob@example.com", PASSWORD);
    for taken in ["bob@example.com", "BOB@example.com", "ｂｏｂ@example.com"] {
        let response = patch(
            &app,
            &token,
            &json!({ "email": taken, "current_password": PASSWORD }),
        );
        assert_eq!(response.status, 409, "{taken}: {}", response.text);
        assert_eq!(
            response.json,
            json!({ "detail": "Email already registered" })
        );
    }
    assert_eq!(app.me(&token).json, user);
    // Their own email in another spelling is theirs to write.
    let own = patch(
        &app,
        &token,
        &json!({ "email": "ADA@example.com", "current_password": PASSWORD }),
    );
    assert_eq!(own.status, 200, "{}", own.text);
    assert_eq!(own.json["email"], json!("ada@example.com"));
}

#[test]
fn a_password_change_ends_every_other_session_and_keeps_this_one() {
    let app = spawn_app();
    let (_, phone, phone_refresh) = signed_up(&app, "ada@example.com");
    let laptop_login = app.login("ada@example.com", PASSWORD);
    let laptop = laptop_login.json["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let laptop_refresh = laptop_login.json["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let response = change_password(&app, &phone, PASSWORD, "battery staple");
    assert_eq!(response.status, 204, "{}", response.text);
    assert!(response.text.is_empty());
    assert_signed_out(&app, &laptop);
    assert_eq!(app.refresh(&laptop_refresh).status, 401);
    assert_eq!(app.me(&phone).status, 200, "this session goes on");
    assert_eq!(app.refresh(&phone_refresh).status, 200);
    assert_unauthorized(
        &app.login("ada@example.com", PASSWORD),
        "Incorrect email or password",
    );
    assert_eq!(app.login("ada@example.com", "battery staple").status, 200);
}

#[test]
fn a_password_change_refuses_a_wrong_current_password_and_a_new_one_outside_the_rules() {
    let app = spawn_app();
    let (user, token, _) = signed_up(&app, "ada@example.com");
    assert_incorrect_password(&change_password(
        &app,
        &token,
        "wrong horse",
        "battery staple",
    ));
    for bad in ["short", &"a".repeat(73), &"é".repeat(37)] {
        let response = change_password(&app, &token, PASSWORD, bad);
        assert_invalid_fields(&response, &["new_password"]);
    }
    let missing = app.call("POST", "/auth/password", Some(&token), Some(&json!({})));
    assert_invalid_fields(&missing, &["current_password", "new_password"]);
    assert_eq!(
        app.login("ada@example.com", PASSWORD).status,
        200,
        "unchanged"
    );
    assert_eq!(app.me(&token).json, user);
}

#[test]
fn wrong_current_passwords_are_counted_with_failed_logins() {
    let app = spawn_app_with(&[("LOGIN_LOCK_AFTER", "2"), ("LOGIN_LOCK_SECONDS", "30")]);
    let (_, token, _) = signed_up(&app, "ada@example.com");
    assert_incorrect_password(&change_password(&app, &token, "wrong 1!", "battery staple"));
    assert_incorrect_password(&delete_me(&app, &token, "wrong 2!"));
    // Locked now, as two failed logins would have locked it: even the right password waits.
    for response in [
        change_password(&app, &token, PASSWORD, "battery staple"),
        app.login("ada@example.com", PASSWORD),
    ] {
        assert_eq!(response.status, 429, "{}", response.text);
        assert!(response.header("retry-after").is_some());
    }
}

#[test]
fn deleting_the_account_removes_the_user_and_every_session_and_frees_the_email() {
    let app = spawn_app();
    let (user, token, refresh_token) = signed_up(&app, "ada@example.com");
    let other = app.login("ada@example.com", PASSWORD).json["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, bob, _) = signed_up(&app, "bob@example.com");

    assert_incorrect_password(&delete_me(&app, &token, "wrong horse"));
    let no_body = app.call("DELETE", "/auth/me", Some(&token), None);
    assert_eq!(no_body.status, 422, "{}", no_body.text);
    assert_eq!(app.me(&token).json, user, "nothing deleted");

    let response = delete_me(&app, &token, PASSWORD);
    assert_eq!(response.status, 204, "{}", response.text);
    for access in [&token, &other] {
        assert_signed_out(&app, access);
    }
    assert_eq!(app.refresh(&refresh_token).status, 401);
    let left: i64 = app.db.scalar(&format!(
        "SELECT count(*) FROM sessions WHERE user_id = {}",
        user["id"]
    ));
    assert_eq!(left, 0);
    assert_unauthorized(
        &app.login("ada@example.com", PASSWORD),
        "Incorrect email or password",
    );
    assert_eq!(app.me(&bob).status, 200, "another user is untouched");
    let again = app.register(&valid_registration("ADA@example.com", "new password"));
    assert_eq!(again.status, 201, "{}", again.text);
    assert_ne!(again.json["id"], user["id"]);
}

#[test]
fn racing_edits_of_one_user_each_land_whole() {
    let app = Arc::new(spawn_app());
    let (_, token, _) = signed_up(&app, "ada@example.com");
    let barrier = Arc::new(Barrier::new(2));
    let writers: Vec<_> = ["1", "2"]
        .into_iter()
        .map(|digit| {
            let (app, token, barrier) = (app.clone(), token.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for round in 0..25 {
                    let body = json!({
                        "name": format!("Writer {digit} round {round}"),
                        "phone": format!("+{} 555 01{round:02}", digit),
                    });
                    let response = patch(&app, &token, &body);
                    assert_eq!(response.status, 200, "{}", response.text);
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("no panic");
    }
    let user = app.me(&token).json;
    let name = user["name"].as_str().unwrap();
    let phone = user["phone"].as_str().unwrap();
    let (writer, round) = name
        .strip_prefix("Writer ")
        .and_then(|rest| rest.split_once(" round "))
        .expect("a writer's name");
    assert_eq!(
        phone,
        format!("+{writer} 555 01{:02}", round.parse::<u32>().unwrap()),
        "name and phone from one edit"
    );
}

#[test]
fn an_email_change_racing_a_registration_of_that_email_has_one_winner() {
    let app = Arc::new(spawn_app_with(&[("RATE_LIMITS", "off")]));
    let (_, token, _) = signed_up(&app, "ada@example.com");
    for round in 0..6 {
        let email = format!("race{round}@example.com");
        let barrier = Arc::new(Barrier::new(2));
        let (a, b) = (app.clone(), app.clone());
        let (email_a, email_b, token_a) = (email.clone(), email.clone(), token.clone());
        let (barrier_a, barrier_b) = (barrier.clone(), barrier);
        let edit = std::thread::spawn(move || {
            barrier_a.wait();
            patch(
                &a,
                &token_a,
                &json!({ "email": email_a, "current_password": PASSWORD }),
            )
        });
        let registration = std::thread::spawn(move || {
            barrier_b.wait();
            b.register(&valid_registration(&email_b, PASSWORD))
        });
        let (edit, registration) = (edit.join().unwrap(), registration.join().unwrap());
        let statuses = (edit.status, registration.status);
        assert!(
            statuses == (200, 409) || statuses == (409, 201),
            "round {round}: {statuses:?} {} {}",
            edit.text,
            registration.text
        );
        let holders: i64 = app.db.scalar(&format!(
            "SELECT count(*) FROM users WHERE lower(email) = '{email}'"
        ));
        assert_eq!(holders, 1, "round {round}");
    }
}
