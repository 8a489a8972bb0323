//! Sessions: the refresh token a login returns, its rotation and reuse detection, logout (of one
//! session or all), the list of sessions, access tokens from before sessions, and the bounds
//! on what one account can store.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{
    assert_signed_out, assert_unauthorized, base64url_decode, forge_token, jwt_parts,
    read_response, spawn_app, spawn_app_with, spawn_instance_sharing, unix_now, TestApp,
    TestResponse, TEST_SECRET,
};
use crate::log_capture;

/// What a login or refresh hands a client.
#[derive(Debug, Clone)]
struct Session {
    access: String,
    refresh: String,
}

impl Session {
    fn of(response: &TestResponse) -> Session {
        assert_eq!(response.status, 200, "{}", response.text);
        let text = |name: &str| {
            response.json[name]
                .as_str()
                .unwrap_or_else(|| panic!("{name} in {}", response.text))
                .to_owned()
        };
        Session {
            access: text("access_token"),
            refresh: text("refresh_token"),
        }
    }

    /// The session id the access token carries.
    fn sid(&self) -> String {
        let (_, claims) = jwt_parts(&self.access);
        claims["sid"].as_str().expect("sid").to_owned()
    }
}

fn register_and_log_in(app: &TestApp, email: &str) -> Session {
    app.register_user(email, "correct horse");
    Session::of(&app.login(email, "correct horse"))
}

fn log_in(app: &TestApp, email: &str) -> Session {
    Session::of(&app.login(email, "correct horse"))
}

fn refresh_form(app: &TestApp, body: &str) -> TestResponse {
    app.post_raw(
        "/auth/refresh",
        Some("application/x-www-form-urlencoded"),
        body.as_bytes(),
    )
}

fn logout(app: &TestApp, access: &str, query: &str) -> TestResponse {
    app.call("POST", &format!("/auth/logout{query}"), Some(access), None)
}

fn sessions(app: &TestApp, access: &str) -> Vec<Value> {
    let response = app.call("GET", "/auth/sessions", Some(access), None);
    assert_eq!(response.status, 200, "{}", response.text);
    response.json.as_array().expect("a list").clone()
}

/// An access token for user 1 as the FastAPI service issued it: no `sid`, and `iat` if given.
fn sessionless_token(issued_at: Option<i64>) -> String {
    let mut claims = json!({ "sub": "1", "exp": unix_now() + 3600 });
    if let Some(iat) = issued_at {
        claims["iat"] = json!(iat);
    }
    forge_token(
        &claims,
        jsonwebtoken::Algorithm::HS256,
        TEST_SECRET.as_bytes(),
    )
}

fn assert_refused(response: &TestResponse) {
    assert_unauthorized(response, "Invalid refresh token");
}

#[test]
fn a_login_opens_a_session_with_an_opaque_refresh_token_of_256_bits_or_more() {
    let app = spawn_app();
    let user = app.register_user("ada@example.com", "correct horse");
    for response in [
        app.login("ada@example.com", "correct horse"),
        app.login_form("ada@example.com", "correct horse"),
    ] {
        let session = Session::of(&response);
        assert_eq!(response.json["refresh_expires_in"], json!(30 * 86_400));
        let bytes = base64url_decode(&session.refresh);
        assert!(bytes.len() * 8 >= 256, "{} bytes", bytes.len());
        assert!(session
            .refresh
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        let (_, claims) = jwt_parts(&session.access);
        assert_eq!(
            claims["sub"],
            json!(user["id"].as_i64().unwrap().to_string())
        );
        assert!(claims["sid"].as_str().is_some_and(|sid| sid.len() == 22));
        assert_eq!(app.me(&session.access).json, user);
    }
    let both = sessions(&app, &log_in(&app, "ada@example.com").access);
    assert_eq!(both.len(), 3, "each login is a session of its own");
}

#[test]
fn the_database_keeps_only_hashes_of_refresh_tokens() {
    let app = spawn_app();
    let session = register_and_log_in(&app, "ada@example.com");
    let bytes = base64url_decode(&session.refresh);
    let stored: String = app.db.scalar(
        "SELECT id || ' ' || family_hash || ' ' || token_hash || ' ' || client FROM sessions",
    );
    assert!(!stored.contains(&session.refresh));
    // Neither part of the token appears, in any encoding a careless store would use.
    for part in [&bytes[..16], &bytes[16..]] {
        let hex: String = part.iter().map(|b| format!("{b:02x}")).collect();
        assert!(!stored.contains(&hex), "{stored}");
    }
    let hashes: Vec<&str> = stored.split(' ').skip(1).take(2).collect();
    for hash in hashes {
        assert_eq!(hash.len(), 64, "SHA-256 in hex: {hash}");
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}

#[test]
fn a_refresh_rotates_the_pair_and_a_retry_within_the_grace_changes_nothing() {
    let app = spawn_app();
    let first = register_and_log_in(&app, "ada@example.com");
    let response = app.refresh(&first.refresh);
    let second = Session::of(&response);
    assert_eq!(response.json["token_type"], json!("bearer"));
    assert_eq!(response.json["expires_in"], json!(3600));
    assert_eq!(response.json["refresh_expires_in"], json!(30 * 86_400));
    assert_eq!(response.json["user"]["email"], json!("ada@example.com"));
    assert_ne!(second.refresh, first.refresh);
    assert_eq!(second.sid(), first.sid(), "the same session goes on");
    assert_eq!(app.me(&second.access).status, 200);

    // The spent token again, at once: a retry. Refused, and the session is untouched.
    assert_refused(&app.refresh(&first.refresh));
    assert_eq!(app.me(&first.access).status, 200);
    let third = Session::of(&app.refresh(&second.refresh));
    assert_eq!(app.me(&third.access).status, 200);
}

#[test]
fn the_oauth2_refresh_form_works_and_checks_its_grant_type() {
    let app = spawn_app();
    let first = register_and_log_in(&app, "ada@example.com");
    let second = Session::of(&refresh_form(
        &app,
        &format!(
            "grant_type=refresh_token&refresh_token={}&scope=",
            first.refresh
        ),
    ));
    assert_eq!(app.me(&second.access).status, 200);

    let wrong = refresh_form(
        &app,
        &format!("grant_type=password&refresh_token={}", second.refresh),
    );
    assert_eq!(wrong.status, 422, "{}", wrong.text);
    assert_eq!(
        wrong.json["detail"][0],
        json!({
            "loc": ["body", "grant_type"],
            "msg": "String should match pattern '^refresh_token$'",
            "type": "string_pattern_mismatch",
            "ctx": { "pattern": "^refresh_token$" },
        })
    );
    let missing = refresh_form(&app, "");
    assert_eq!(missing.status, 422);
    let locs: Vec<&Value> = missing.json["detail"]
        .as_array()
        .expect("list")
        .iter()
        .map(|e| &e["loc"])
        .collect();
    assert_eq!(
        locs,
        [
            &json!(["body", "grant_type"]),
            &json!(["body", "refresh_token"])
        ]
    );
    // Neither refusal spent the token.
    assert_eq!(app.refresh(&second.refresh).status, 200);
}

#[test]
fn a_refresh_without_a_token_is_422_and_anything_but_a_live_token_is_the_same_401() {
    let app = spawn_app();
    let session = register_and_log_in(&app, "ada@example.com");
    let missing = app.post_json("/auth/refresh", &json!({}));
    assert_eq!(missing.status, 422, "{}", missing.text);
    assert_eq!(
        missing.json["detail"][0]["loc"],
        json!(["body", "refresh_token"])
    );
    let not_a_string = app.post_json("/auth/refresh", &json!({ "refresh_token": 7 }));
    assert_eq!(not_a_string.status, 422);

    let mut forged = session.refresh.clone().into_bytes();
    forged[40] = if forged[40] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("ASCII");
    for token in [
        String::new(),
        "null".to_owned(),
        session.access.clone(),
        session.refresh[..63].to_owned(),
        format!("{}A", session.refresh),
        format!("{}+", &session.refresh[..63]),
        "A".repeat(64),
        "é".repeat(32),
        "A".repeat(60_000),
    ] {
        assert_refused(&app.refresh(&token));
    }
    // A forged secret on the real session: someone who saw a token of it. That is reuse: the
    // session ends, since a token of it has been copied.
    assert_refused(&app.refresh(&forged));
    assert_signed_out(&app, &session.access);
    assert_refused(&app.refresh(&session.refresh));
}

#[test]
fn sixteen_concurrent_refreshes_with_one_token_give_exactly_one_new_pair() {
    let app = Arc::new(spawn_app());
    let session = register_and_log_in(&app, "ada@example.com");
    let barrier = Arc::new(Barrier::new(16));
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let (app, barrier, token) = (app.clone(), barrier.clone(), session.refresh.clone());
            std::thread::spawn(move || {
                barrier.wait();
                app.refresh(&token)
            })
        })
        .collect();
    let responses: Vec<TestResponse> = handles
        .into_iter()
        .map(|h| h.join().expect("no panic"))
        .collect();
    let winners: Vec<&TestResponse> = responses.iter().filter(|r| r.status == 200).collect();
    assert_eq!(winners.len(), 1, "{responses:?}");
    for loser in responses.iter().filter(|r| r.status != 200) {
        assert_refused(loser);
    }
    // The losers were retries within the grace: the winner's pair goes on working.
    let next = Session::of(winners[0]);
    assert_eq!(app.me(&next.access).status, 200);
    assert_eq!(app.refresh(&next.refresh).status, 200);
}

#[test]
fn a_spent_token_presented_after_the_grace_ends_the_whole_session() {
    log_capture::start();
    let app = spawn_app_with(&[("REFRESH_REUSE_GRACE", "1")]);
    let stolen = register_and_log_in(&app, "ada@example.com");
    let other_device = log_in(&app, "ada@example.com");
    let current = Session::of(&app.refresh(&stolen.refresh));
    std::thread::sleep(Duration::from_millis(1100));

    assert_refused(&app.refresh(&stolen.refresh));
    for access in [&stolen.access, &current.access] {
        assert_signed_out(&app, access);
    }
    assert_refused(&app.refresh(&current.refresh));
    // The user's other session is not touched.
    assert_eq!(app.me(&other_device.access).status, 200);
    assert_eq!(app.refresh(&other_device.refresh).status, 200);

    let warned = log_capture::lines_containing(&stolen.sid());
    assert!(
        warned
            .iter()
            .any(|l| l.starts_with("WARN") && l.contains("presented again")),
        "{warned:?}"
    );
    for secret in [&stolen.refresh, &current.refresh] {
        assert!(log_capture::lines_containing(secret).is_empty());
    }
}

#[test]
fn a_token_older_than_the_last_one_spent_is_theft_even_within_the_grace() {
    let app = spawn_app();
    let first = register_and_log_in(&app, "ada@example.com");
    let second = Session::of(&app.refresh(&first.refresh));
    let third = Session::of(&app.refresh(&second.refresh));
    assert_refused(&app.refresh(&first.refresh));
    assert_signed_out(&app, &third.access);
    assert_refused(&app.refresh(&third.refresh));
}

#[test]
fn with_no_grace_even_an_immediate_retry_ends_the_session() {
    let app = spawn_app_with(&[("REFRESH_REUSE_GRACE", "0")]);
    let first = register_and_log_in(&app, "ada@example.com");
    let second = Session::of(&app.refresh(&first.refresh));
    assert_refused(&app.refresh(&first.refresh));
    assert_signed_out(&app, &second.access);
}

#[test]
fn logout_ends_this_session_at_once_and_answers_204_without_a_body() {
    let app = spawn_app();
    let phone = register_and_log_in(&app, "ada@example.com");
    let laptop = log_in(&app, "ada@example.com");

    // Over a raw connection: a 204 has no body and no Content-Length (RFC 9110 section 8.6),
    // and the connection goes on to the next request.
    let mut stream = app.connect();
    let request = format!(
        "POST /auth/logout HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Length: 0\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        phone.access
    );
    std::io::Write::write_all(&mut stream, request.as_bytes()).expect("send");
    let answer = read_response(&mut stream).expect("the logout's answer");
    assert_eq!(answer.status, 204, "{answer:?}");
    assert!(answer.body.is_empty());
    assert_eq!(answer.headers.get("content-length"), None, "{answer:?}");
    assert_eq!(answer.headers.get("content-type"), None, "{answer:?}");
    let health = read_response(&mut stream).expect("the next answer on the connection");
    assert_eq!(health.status, 200);

    assert_signed_out(&app, &phone.access);
    assert_refused(&app.refresh(&phone.refresh));
    assert_unauthorized(
        &logout(&app, &phone.access, ""),
        "Could not validate credentials",
    );
    // The other session goes on.
    assert_eq!(app.me(&laptop.access).status, 200);
    assert_eq!(app.refresh(&laptop.refresh).status, 200);
}

#[test]
fn logout_of_every_session_ends_them_all() {
    let app = spawn_app();
    let phone = register_and_log_in(&app, "ada@example.com");
    let laptop = log_in(&app, "ada@example.com");
    let bob = register_and_log_in(&app, "bob@example.com");
    let response = logout(&app, &phone.access, "?scope=all");
    assert_eq!(response.status, 204, "{}", response.text);
    for session in [&phone, &laptop] {
        assert_signed_out(&app, &session.access);
        assert_refused(&app.refresh(&session.refresh));
    }
    assert_eq!(app.me(&bob.access).status, 200, "another user's session");
    // Logging in again works as ever.
    let again = log_in(&app, "ada@example.com");
    assert_eq!(app.me(&again.access).status, 200);
}

#[test]
fn logout_refuses_an_unknown_scope_and_a_missing_token() {
    let app = spawn_app();
    let session = register_and_log_in(&app, "ada@example.com");
    for query in ["?scope=everything", "?scope=", "?scope=ALL"] {
        let response = logout(&app, &session.access, query);
        assert_eq!(response.status, 422, "{query}: {}", response.text);
        assert_eq!(
            response.json["detail"][0],
            json!({
                "loc": ["query", "scope"],
                "msg": "Input should be 'current' or 'all'",
                "type": "literal_error",
                "ctx": { "expected": "'current' or 'all'" },
            })
        );
    }
    assert_eq!(app.me(&session.access).status, 200, "nothing was ended");
    assert_unauthorized(
        &app.call("POST", "/auth/logout", None, None),
        "Not authenticated",
    );
    let scoped = logout(&app, &session.access, "?scope=current");
    assert_eq!(scoped.status, 204);
    assert_signed_out(&app, &session.access);
}

#[test]
fn a_logout_on_one_instance_is_seen_by_the_next_request_on_another() {
    let first = spawn_app();
    let second = spawn_instance_sharing(&first, &[]);
    let session = register_and_log_in(&first, "ada@example.com");
    let other = log_in(&second, "ada@example.com");
    assert_eq!(second.me(&session.access).status, 200);
    let refreshed = Session::of(&second.refresh(&session.refresh));

    assert_eq!(logout(&first, &refreshed.access, "").status, 204);
    assert_signed_out(&second, &refreshed.access);
    assert_refused(&second.refresh(&refreshed.refresh));
    assert_eq!(second.me(&other.access).status, 200);

    assert_eq!(logout(&second, &other.access, "?scope=all").status, 204);
    assert_signed_out(&first, &other.access);
}

#[test]
fn the_session_list_shows_each_live_session_and_marks_the_current_one() {
    let app = spawn_app();
    app.register_user("ada@example.com", "correct horse");
    let login_as = |agent: &str| {
        let mut stream = app.connect();
        let body = r#"{"email":"ada@example.com","password":"correct horse"}"#;
        let request = format!(
            "POST /auth/login HTTP/1.1\r\nHost: x\r\nUser-Agent: {agent}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        std::io::Write::write_all(&mut stream, request.as_bytes()).expect("send");
        let answer = read_response(&mut stream).expect("answer");
        assert_eq!(answer.status, 200, "{answer:?}");
        let json = answer.json();
        Session {
            access: json["access_token"].as_str().expect("token").to_owned(),
            refresh: json["refresh_token"].as_str().expect("token").to_owned(),
        }
    };
    let phone = login_as("Phone/1.0");
    let laptop = login_as("Laptop/2.0\t(X11)");
    let ended = login_as("Old/0.1");
    assert_eq!(logout(&app, &ended.access, "").status, 204);
    let bob = register_and_log_in(&app, "bob@example.com");

    let list = sessions(&app, &laptop.access);
    assert_eq!(list.len(), 2, "{list:?}");
    let by_id = |sid: &str| {
        list.iter()
            .find(|s| s["id"] == json!(sid))
            .unwrap_or_else(|| panic!("{sid} in {list:?}"))
    };
    let (phone_row, laptop_row) = (by_id(&phone.sid()), by_id(&laptop.sid()));
    assert_eq!(laptop_row["current"], json!(true));
    assert_eq!(phone_row["current"], json!(false));
    assert_eq!(phone_row["user_agent"], json!("Phone/1.0"));
    assert_eq!(
        laptop_row["user_agent"],
        json!("Laptop/2.0(X11)"),
        "control characters dropped"
    );
    assert_eq!(phone_row["ip_address"], json!("127.0.0.1"));
    assert_eq!(
        list[0]["id"],
        json!(laptop.sid()),
        "most recently used first"
    );
    let mut keys: Vec<&String> = phone_row.as_object().expect("object").keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "created_at",
            "current",
            "expires_at",
            "id",
            "ip_address",
            "last_used_at",
            "user_agent"
        ]
    );
    for field in ["created_at", "last_used_at", "expires_at"] {
        crate::helpers::assert_rfc3339_utc(&phone_row[field]);
    }
    let created = chrono::DateTime::parse_from_rfc3339(phone_row["created_at"].as_str().unwrap())
        .expect("time");
    let expires = chrono::DateTime::parse_from_rfc3339(phone_row["expires_at"].as_str().unwrap())
        .expect("time");
    assert_eq!((expires - created).num_days(), 30);
    assert!(
        !list.iter().any(|s| s["id"] == json!(bob.sid())),
        "another user's session is never listed"
    );

    // A refresh moves the session to the top, with its new last use.
    let phone = Session::of(&app.refresh(&phone.refresh));
    let list = sessions(&app, &phone.access);
    assert_eq!(list[0]["id"], json!(phone.sid()));
    assert_eq!(list[0]["current"], json!(true));
    assert!(list[0]["last_used_at"].as_str() > list[0]["created_at"].as_str());
}

#[test]
fn a_user_ends_one_of_their_sessions_but_never_anyone_elses() {
    let app = spawn_app();
    let phone = register_and_log_in(&app, "ada@example.com");
    let laptop = log_in(&app, "ada@example.com");
    let bob = register_and_log_in(&app, "bob@example.com");
    let end = |access: &str, id: &str| {
        app.call(
            "DELETE",
            &format!("/auth/sessions/{id}"),
            Some(access),
            None,
        )
    };

    let someone_elses = end(&phone.access, &bob.sid());
    assert_eq!(someone_elses.status, 404, "{}", someone_elses.text);
    assert_eq!(someone_elses.json, json!({ "detail": "Session not found" }));
    assert_eq!(app.me(&bob.access).status, 200, "bob's session goes on");

    for id in [
        "AAAAAAAAAAAAAAAAAAAAAA",
        "1",
        "..%2F..%2Fetc",
        &"A".repeat(5000),
    ] {
        let response = end(&phone.access, id);
        assert_eq!(response.status, 404, "{id:.40}: {}", response.text);
    }

    let response = end(&phone.access, &laptop.sid());
    assert_eq!(response.status, 204, "{}", response.text);
    assert_signed_out(&app, &laptop.access);
    assert_refused(&app.refresh(&laptop.refresh));
    assert_eq!(app.me(&phone.access).status, 200);
    assert_eq!(
        end(&phone.access, &laptop.sid()).status,
        404,
        "ended already"
    );

    assert_unauthorized(
        &app.call(
            "DELETE",
            &format!("/auth/sessions/{}", phone.sid()),
            None,
            None,
        ),
        "Not authenticated",
    );
    // Ending the current session is a logout.
    assert_eq!(end(&phone.access, &phone.sid()).status, 204);
    assert_signed_out(&app, &phone.access);
}

#[test]
fn access_tokens_from_before_sessions_are_accepted_until_logout_of_every_session() {
    let app = spawn_app();
    let session = register_and_log_in(&app, "ada@example.com");
    // As the FastAPI service issued them: no sid, and with or without iat.
    let legacy = sessionless_token(Some(unix_now() - 60));
    let without_iat = sessionless_token(None);
    for token in [&legacy, &without_iat] {
        let me = app.me(token);
        assert_eq!(me.status, 200, "{}", me.text);
        assert_eq!(me.json["email"], json!("ada@example.com"));
    }
    let list = sessions(&app, &legacy);
    assert_eq!(list.len(), 1);
    assert_eq!(
        list[0]["current"],
        json!(false),
        "a legacy token has no session"
    );

    assert_eq!(logout(&app, &session.access, "?scope=all").status, 204);
    assert_signed_out(&app, &legacy);
    assert_signed_out(&app, &without_iat);
}

#[test]
fn logging_out_with_a_token_from_before_sessions_ends_such_tokens_only() {
    let app = spawn_app();
    let session = register_and_log_in(&app, "ada@example.com");
    let legacy = sessionless_token(Some(unix_now() - 60));
    assert_eq!(logout(&app, &legacy, "").status, 204);
    assert_signed_out(&app, &legacy);
    assert_eq!(app.me(&session.access).status, 200, "sessions go on");
}

#[test]
fn a_signed_token_naming_a_session_that_is_not_the_users_is_refused() {
    let app = spawn_app();
    let ada = register_and_log_in(&app, "ada@example.com");
    let bob = register_and_log_in(&app, "bob@example.com");
    let now = unix_now();
    // Even someone holding the secret cannot borrow another user's session, or make one up.
    for (sub, sid) in [
        ("1", bob.sid()),
        ("2", ada.sid()),
        ("1", "AAAAAAAAAAAAAAAAAAAAAA".into()),
    ] {
        let token = forge_token(
            &json!({ "sub": sub, "sid": sid, "iat": now, "exp": now + 3600 }),
            jsonwebtoken::Algorithm::HS256,
            TEST_SECRET.as_bytes(),
        );
        assert_signed_out(&app, &token);
    }
}

#[test]
fn an_expired_session_is_refused_and_pruned_by_a_later_login() {
    let app = spawn_app();
    let old = register_and_log_in(&app, "ada@example.com");
    let ended = log_in(&app, "ada@example.com");
    assert_eq!(logout(&app, &ended.access, "").status, 204);
    app.db.execute(&format!(
        "UPDATE sessions SET expires_at = 1000 WHERE id = '{}'",
        old.sid()
    ));
    assert_signed_out(&app, &old.access);
    assert_refused(&app.refresh(&old.refresh));
    // Revoked sessions are kept a day for an operator to see, then pruned too.
    app.db.execute(&format!(
        "UPDATE sessions SET revoked_at = 1000 WHERE id = '{}'",
        ended.sid()
    ));
    assert_eq!(app.db.scalar::<i64>("SELECT count(*) FROM sessions"), 2);
    let new = log_in(&app, "ada@example.com");
    assert_eq!(app.db.scalar::<i64>("SELECT count(*) FROM sessions"), 1);
    let left: String = app.db.scalar("SELECT min(id) FROM sessions");
    assert_eq!(left, new.sid(), "only the new session is left");
}

#[test]
fn an_account_holds_at_most_100_sessions_and_the_least_recently_used_ends_first() {
    let app = spawn_app_with(&[("RATE_LIMITS", "off")]);
    let first = register_and_log_in(&app, "ada@example.com");
    let second = log_in(&app, "ada@example.com");
    // The first is used again, so the second is now the least recently used.
    let first = Session::of(&app.refresh(&first.refresh));
    let mut last = None;
    for _ in 0..99 {
        last = Some(log_in(&app, "ada@example.com"));
    }
    let last = last.expect("logged in");
    assert_eq!(sessions(&app, &last.access).len(), 100);
    assert_signed_out(&app, &second.access);
    assert_refused(&app.refresh(&second.refresh));
    assert_eq!(app.me(&first.access).status, 200);
    let live: i64 = app
        .db
        .scalar("SELECT count(*) FROM sessions WHERE revoked_at IS NULL");
    assert_eq!(live, 100);
}

#[test]
fn a_deleted_user_leaves_no_session_behind() {
    let app = spawn_app();
    let session = register_and_log_in(&app, "ada@example.com");
    app.db.execute("DELETE FROM users");
    assert_eq!(app.db.scalar::<i64>("SELECT count(*) FROM sessions"), 0);
    assert_signed_out(&app, &session.access);
    assert_refused(&app.refresh(&session.refresh));
}

#[test]
fn no_token_of_a_session_is_ever_logged() {
    log_capture::start();
    let app = spawn_app_with(&[("REFRESH_REUSE_GRACE", "0")]);
    let first = register_and_log_in(&app, "ada@example.com");
    let second = Session::of(&refresh_form(
        &app,
        &format!("grant_type=refresh_token&refresh_token={}", first.refresh),
    ));
    assert_refused(&app.refresh(&first.refresh));
    let _ = logout(&app, &second.access, "?scope=all");
    for secret in [
        &first.refresh,
        &first.access,
        &second.refresh,
        &second.access,
    ] {
        assert!(log_capture::lines_containing(secret).is_empty());
        assert!(log_capture::lines_containing(&secret[secret.len() - 20..]).is_empty());
    }
    assert!(
        log_capture::lines_containing("scope=all").is_empty(),
        "the access log shows no query strings"
    );
}

#[test]
fn each_login_prunes_a_bounded_number_of_ended_sessions() {
    let app = spawn_app();
    register_and_log_in(&app, "ada@example.com");
    // 250 sessions that ended long ago, as after a long pause in logins.
    let rows: Vec<String> = (0..250)
        .map(|i| format!("('old{i}', 1, 'family{i}', 'hash', 1000, 1000, 2000, '127.0.0.1')"))
        .collect();
    app.db.execute(&format!(
        "INSERT INTO sessions (id, user_id, family_hash, token_hash, created_at, last_used_at, \
         expires_at, client) VALUES {}",
        rows.join(", ")
    ));
    let count = || app.db.scalar::<i64>("SELECT count(*) FROM sessions");
    assert_eq!(count(), 251);
    log_in(&app, "ada@example.com");
    assert_eq!(count(), 152, "100 pruned, one added");
    log_in(&app, "ada@example.com");
    log_in(&app, "ada@example.com");
    assert_eq!(count(), 4, "all the ended ones gone, the live ones kept");
}

#[test]
fn a_user_keeps_at_most_100_revoked_sessions_however_often_they_log_out() {
    let app = spawn_app();
    register_and_log_in(&app, "ada@example.com");
    let now_ms = unix_now() * 1000;
    // 150 sessions revoked in the last minute, as a login-and-logout loop would leave.
    let rows: Vec<String> = (0..150)
        .map(|i| {
            format!(
                "('gone{i}', 1, 'family{i}', 'hash', {t}, {t}, {e}, '127.0.0.1', {t})",
                t = now_ms - 60_000 + i,
                e = now_ms + 86_400_000
            )
        })
        .collect();
    app.db.execute(&format!(
        "INSERT INTO sessions (id, user_id, family_hash, token_hash, created_at, last_used_at, \
         expires_at, client, revoked_at) VALUES {}",
        rows.join(", ")
    ));
    let revoked = || {
        app.db
            .scalar::<i64>("SELECT count(*) FROM sessions WHERE revoked_at IS NOT NULL")
    };
    assert_eq!(revoked(), 150);
    let session = log_in(&app, "ada@example.com");
    assert_eq!(revoked(), 100);
    let oldest_kept: String = app
        .db
        .scalar("SELECT id FROM sessions WHERE revoked_at IS NOT NULL ORDER BY revoked_at LIMIT 1");
    assert_eq!(oldest_kept, "gone50", "the most recently revoked are kept");
    assert_eq!(app.me(&session.access).status, 200);
}
