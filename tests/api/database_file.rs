//! A SQLite database file pulled from under the running server is noticed: while the path does
//! not hold the file opened at start, registrations, reads and `/health` get 503 (never a 201
//! for a write that would be lost), one error is logged, and service resumes when the same file
//! is back, or after a restart when another file took its place.
//!
//! SQLite only: on PostgreSQL there is no file (these tests return at once there).

use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use crate::helpers::{spawn_app, spawn_instance_sharing, valid_registration, TestApp, TestDb};
use crate::log_capture;
use crate::testdb::{backend, stored_users_in, Backend};

/// The test's SQLite file, or `None` on PostgreSQL, where these tests do not apply.
fn sqlite_app() -> Option<(TestApp, PathBuf)> {
    let Backend::Sqlite = backend() else {
        eprintln!("not applicable on PostgreSQL: there is no database file");
        return None;
    };
    let app = spawn_app();
    let TestDb::Sqlite(path) = app.db.clone() else {
        unreachable!("the SQLite backend gives a file")
    };
    Some((app, path))
}

/// `path` with `suffix` added to its file name.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().expect("file name").to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Asserts the 503 a request that needs the database gets while the file is not in place.
fn assert_refused(app: &TestApp, token: &str, email: &str) {
    for (what, response) in [
        (
            "register",
            app.register(&valid_registration(email, "correct horse")),
        ),
        ("health", app.get("/health", &[])),
        ("me", app.me(token)),
        ("login", app.login("ada@example.com", "correct horse")),
    ] {
        assert_eq!(response.status, 503, "{what}: {}", response.text);
        assert_eq!(
            response.json["detail"], "Service Unavailable: the database is not answering",
            "{what}"
        );
        assert_eq!(response.header("Retry-After"), Some("1"), "{what}");
    }
}

fn error_lines(path: &Path, what: &str) -> Vec<String> {
    log_capture::lines_containing(&path.display().to_string())
        .into_iter()
        .filter(|line| line.starts_with("ERROR") && line.contains(what))
        .collect()
}

#[test]
fn a_deleted_database_file_gets_503_until_it_is_back_and_no_write_is_lost() {
    log_capture::start();
    let Some((app, path)) = sqlite_app() else {
        return;
    };
    let token = app.token_for_new_user("ada@example.com", "correct horse");
    // Deleted, but kept alive under another name so that it can be put back: the path is gone,
    // its write-ahead log and shared-memory files stay, as after `rm db.sqlite3`.
    let kept = beside(&path, ".kept");
    std::fs::hard_link(&path, &kept).expect("keep the file");
    std::fs::remove_file(&path).expect("delete the file");

    assert_refused(&app, &token, "bob@example.com");
    assert_refused(&app, &token, "bob@example.com");
    assert!(!path.exists(), "nothing was created at the path");
    let logged = error_lines(&path, "deleted or moved away");
    assert_eq!(logged.len(), 1, "one error when it happened: {logged:?}");

    std::fs::rename(&kept, &path).expect("put the file back");
    let response = app.register(&valid_registration("bob@example.com", "correct horse"));
    assert_eq!(response.status, 201, "{}", response.text);
    assert_eq!(app.get("/health", &[]).status, 200);
    assert_eq!(app.me(&token).status, 200);

    // Only what was acknowledged is in the file: Ada and Bob, once each.
    let emails: Vec<String> = stored_users_in(&path)
        .into_iter()
        .map(|user| user.email)
        .collect();
    assert_eq!(emails, ["ada@example.com", "bob@example.com"]);
}

#[test]
fn a_database_file_replaced_by_another_gets_503_until_a_restart() {
    log_capture::start();
    let Some((mut app, path)) = sqlite_app() else {
        return;
    };
    let token = app.token_for_new_user("ada@example.com", "correct horse");
    // Another database renamed over it, as `mv other.sqlite3 db.sqlite3` would: an empty file
    // is an empty SQLite database.
    let other = beside(&path, ".other");
    std::fs::write(&other, b"").expect("another file");
    std::fs::rename(&other, &path).expect("replace the file");

    assert_refused(&app, &token, "bob@example.com");
    thread::sleep(Duration::from_millis(300));
    assert_refused(&app, &token, "bob@example.com");
    let logged = error_lines(&path, "restart to use the new file");
    assert_eq!(logged.len(), 1, "one error when it happened: {logged:?}");

    // A restart serves the file now at the path.
    app.stop();
    let restarted = spawn_instance_sharing(&app, &[]);
    let response = restarted.register(&valid_registration("bob@example.com", "correct horse"));
    assert_eq!(response.status, 201, "{}", response.text);
    assert_eq!(restarted.get("/health", &[]).status, 200);
    let emails: Vec<String> = stored_users_in(&path)
        .into_iter()
        .map(|user| user.email)
        .collect();
    assert_eq!(emails, ["bob@example.com"]);
}
