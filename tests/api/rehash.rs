//! Hashes that age well: a successful login on a hash of another cost or bcrypt variant stores a
//! new `$2b$` hash at `BCRYPT_COST` (as passlib's `CryptContext(deprecated="auto")` does), so an
//! old account stops standing out by how long its logins take; and a stored hash that cannot be
//! read is a plain 401, logged as an error naming the user, never a 500.

use std::time::{Duration, Instant};

use crate::fixture::{fastapi_users, USERS};
use crate::helpers::{
    assert_unauthorized, spawn_app, spawn_app_on_fastapi_fixture, spawn_app_with,
    spawn_instance_sharing, TestApp, TestDb,
};
use crate::log_capture;

const EMAIL: &str = "ada@example.com";
const PASSWORD: &str = "rehash-test-password";

/// The one stored user's hash and `updated_at`.
fn stored_hash(app: &TestApp) -> (String, String) {
    let users = app.db.stored_users();
    assert_eq!(users.len(), 1, "{users:?}");
    (users[0].password_hash.clone(), users[0].updated_at.clone())
}

/// Replaces the stored hash of every user with `hash` (quoted for SQL).
fn set_hash(app: &TestApp, hash: &str) {
    assert_eq!(
        app.db
            .execute(&format!("UPDATE users SET password_hash = '{hash}'")),
        1
    );
}

#[test]
fn a_login_on_a_hash_of_another_cost_or_variant_stores_a_2b_hash_at_the_configured_cost() {
    let app = spawn_app_with(&[("BCRYPT_COST", "5")]);
    app.register_user(EMAIL, PASSWORD);
    let old = bcrypt::hash_with_result(PASSWORD, 4).expect("hash");
    for (what, hash) in [
        ("$2a$ cost 4", old.format_for_version(bcrypt::Version::TwoA)),
        ("$2y$ cost 4", old.format_for_version(bcrypt::Version::TwoY)),
        ("$2b$ cost 4", old.format_for_version(bcrypt::Version::TwoB)),
        (
            "$2a$ cost 5",
            bcrypt::hash_with_result(PASSWORD, 5)
                .expect("hash")
                .format_for_version(bcrypt::Version::TwoA),
        ),
    ] {
        set_hash(&app, &hash);
        let (_, updated_before) = stored_hash(&app);

        let login = app.login(EMAIL, PASSWORD);
        assert_eq!(login.status, 200, "{what}: {}", login.text);
        let (new_hash, updated_after) = stored_hash(&app);
        assert!(new_hash.starts_with("$2b$05$"), "{what}: {new_hash}");
        assert_eq!(bcrypt::verify(PASSWORD, &new_hash).ok(), Some(true));
        // Not a change the user made: the account does not look edited.
        assert_eq!(updated_after, updated_before, "{what}");

        // The new hash works, is kept, and still refuses a wrong password.
        assert_eq!(app.login(EMAIL, PASSWORD).status, 200, "{what}");
        assert_eq!(stored_hash(&app).0, new_hash, "{what}: hashed again");
        assert_unauthorized(
            &app.login(EMAIL, "wrong-password"),
            "Incorrect email or password",
        );
    }
}

#[test]
fn a_wrong_password_never_replaces_an_outdated_hash() {
    let app = spawn_app_with(&[("BCRYPT_COST", "5")]);
    app.register_user(EMAIL, PASSWORD);
    let old = bcrypt::hash_with_result(PASSWORD, 4)
        .expect("hash")
        .format_for_version(bcrypt::Version::TwoA);
    set_hash(&app, &old);
    assert_unauthorized(
        &app.login(EMAIL, "wrong-password"),
        "Incorrect email or password",
    );
    assert_eq!(stored_hash(&app).0, old);
}

#[test]
fn the_fastapi_users_hashes_are_upgraded_to_the_configured_cost_as_they_log_in() {
    // The fixture's hashes are passlib's `$2b$12$`; the test server's cost is 4.
    let app = spawn_app_on_fastapi_fixture();
    let before = fastapi_users();
    let (email, password) = USERS[1];
    let login = app.login(email, password);
    assert_eq!(login.status, 200, "{}", login.text);

    let after = app.db.stored_users();
    for (old, new) in before.iter().zip(&after) {
        if old.email == email {
            assert!(new.password_hash.starts_with("$2b$04$"), "{new:?}");
            assert_eq!(
                bcrypt::verify(password, &new.password_hash).ok(),
                Some(true)
            );
            // Everything else about the row is as the FastAPI service stored it.
            let mut unchanged = new.clone();
            unchanged.password_hash = old.password_hash.clone();
            assert_eq!(&unchanged, old);
        } else {
            assert_eq!(new, old, "only the user who logged in is touched");
        }
    }
    assert_eq!(app.login(email, password).status, 200);
    assert_unauthorized(
        &app.login(email, "not the password"),
        "Incorrect email or password",
    );
}

#[test]
fn a_hash_that_cannot_be_stored_again_does_not_fail_the_login() {
    log_capture::start();
    let app = spawn_app_with(&[("BCRYPT_COST", "5")]);
    app.register_user(EMAIL, PASSWORD);
    let old = bcrypt::hash_with_result(PASSWORD, 4)
        .expect("hash")
        .format_for_version(bcrypt::Version::TwoB);
    set_hash(&app, &old);
    // A database that refuses every update of the users table.
    match app.db {
        TestDb::Sqlite(_) => {
            app.db.execute(
                "CREATE TRIGGER rehash_refused BEFORE UPDATE ON users \
                 BEGIN SELECT RAISE(ABORT, 'rehash_refused'); END",
            );
        }
        TestDb::Postgres { .. } => {
            app.db.execute(
                "CREATE FUNCTION rehash_refused() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'rehash_refused'; END $$",
            );
            app.db.execute(
                "CREATE TRIGGER rehash_refused BEFORE UPDATE ON users \
                 FOR EACH ROW EXECUTE FUNCTION rehash_refused()",
            );
        }
    }

    let login = app.login(EMAIL, PASSWORD);
    assert_eq!(login.status, 200, "{}", login.text);
    assert_eq!(stored_hash(&app).0, old);
    let lines = log_capture::lines_containing("rehash_refused");
    assert!(
        lines.iter().any(|line| line.starts_with("WARN")),
        "the failure is a warning: {lines:?}"
    );
    for line in &lines {
        assert!(!line.contains("$2b$"), "a hash was logged: {line}");
    }
}

/// A stored hash no bcrypt can check, each with a marker that must never reach the log.
fn unreadable_hashes() -> [(&'static str, String); 4] {
    let marker = "UnreadableMarker";
    [
        ("text", format!("not-a-hash-{marker}")),
        ("empty", String::new()),
        // Well-formed but for its cost, which bcrypt refuses (4-31).
        (
            "cost 99",
            format!("$2b$99${marker}{}", "A".repeat(53 - marker.len())),
        ),
        ("truncated", format!("$2b$04${marker}")),
    ]
}

#[test]
fn an_unreadable_stored_hash_is_a_401_and_an_error_naming_the_user_never_the_hash() {
    log_capture::start();
    // Eight refused logins in a row from one address: past the lock-out, not the subject here.
    let app = spawn_app_with(&[("RATE_LIMITS", "off")]);
    app.register_user(EMAIL, PASSWORD);
    for (i, (what, hash)) in unreadable_hashes().into_iter().enumerate() {
        // An id no other test's user has, so the log lines found are this test's.
        let id = 730_001 + i;
        app.db.execute(&format!(
            "UPDATE users SET id = {id}, password_hash = '{hash}'"
        ));

        for response in [
            app.login(EMAIL, PASSWORD),
            app.login_form(EMAIL, "wrong-password"),
        ] {
            assert_unauthorized(&response, "Incorrect email or password");
        }
        let lines = log_capture::lines_containing(&format!("user {id}:"));
        assert!(
            lines.iter().any(|line| line.starts_with("ERROR")),
            "{what}: no error names user {id}: {lines:?}"
        );
        assert_eq!(
            log_capture::lines_containing("UnreadableMarker"),
            Vec::<String>::new(),
            "{what}: the stored hash was logged"
        );
        // Nothing was stored in its place.
        assert_eq!(stored_hash(&app).0, hash, "{what}");
    }
}

/// The bcrypt cost whose check takes about `seconds` in this build.
fn cost_taking(seconds: f64) -> u32 {
    let hash = bcrypt::hash("calibration", 6).expect("hash");
    let started = Instant::now();
    let _ = bcrypt::verify("calibration", &hash);
    let cost_6 = started.elapsed().as_secs_f64().max(1e-4);
    (6 + (seconds / cost_6).log2().round().max(0.0) as u32).clamp(6, 14)
}

fn time_of(login: impl Fn() -> u16) -> Duration {
    let started = Instant::now();
    assert_eq!(login(), 401);
    started.elapsed()
}

#[test]
fn an_unreadable_stored_hash_costs_what_an_unknown_email_costs() {
    let cost = cost_taking(0.1).to_string();
    let app = spawn_app_with(&[("BCRYPT_COST", &cost)]);
    app.register_user(EMAIL, PASSWORD);
    set_hash(&app, "not-a-hash");
    // Least of three, so a busy machine can only make the unreadable hash look slower.
    let least = |email: &str| {
        (0..3)
            .map(|_| time_of(|| app.login(email, PASSWORD).status))
            .min()
            .expect("three")
    };
    let unknown = least("nobody@example.com");
    let unreadable = least(EMAIL);
    assert!(
        unreadable * 2 >= unknown,
        "at cost {cost}: an unreadable hash took {unreadable:?}, an unknown email {unknown:?}"
    );
}

#[test]
fn a_login_whose_upgrade_would_not_fit_in_the_queue_timeout_succeeds_and_the_upgrade_waits() {
    let app = spawn_app();
    app.register_user(EMAIL, PASSWORD);
    let (old, _) = stored_hash(&app);
    assert!(old.starts_with("$2b$04$"), "{old}");
    // Another instance at a cost whose hash alone takes about three times its timeout: the
    // login must not wait for it (it would be answered 503, and the hash dropped).
    let cost = cost_taking(6.0).to_string();
    let slow = spawn_instance_sharing(&app, &[("BCRYPT_COST", &cost), ("HASH_QUEUE_TIMEOUT", "2")]);

    let login = slow.login(EMAIL, PASSWORD);
    assert_eq!(login.status, 200, "at cost {cost}: {}", login.text);
    assert_eq!(stored_hash(&app).0, old, "no upgrade was stored");
}
