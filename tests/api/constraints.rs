//! Only the email's unique index means "Email already registered". Any other constraint the
//! database enforces, such as one its operators added that the service knows nothing about,
//! fails a registration with a 500 whose cause is logged, without the row's values.

use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{
    count_users, spawn_app, spawn_app_on_fastapi_fixture, valid_registration, TestApp, TestDb,
    TestResponse,
};
use crate::log_capture;

/// The password of every registration here: no other test uses it, so any log line holding it
/// leaked it from one of these requests.
const PASSWORD: &str = "constraint-test-password";

fn assert_internal_server_error(response: &TestResponse) {
    assert_eq!(response.status, 500, "{}", response.text);
    assert_eq!(response.json, json!({ "detail": "Internal Server Error" }));
}

/// Asserts that the failure was logged naming `constraint`, and that no line the service logged
/// holds the password, nor a line about the failure a bcrypt hash (PostgreSQL's DETAIL of a
/// CHECK failure quotes the whole row, hash included).
fn assert_logged_without_secrets(constraint: &str) {
    let lines = log_capture::lines_containing(constraint);
    assert!(
        lines.iter().any(|line| line.starts_with("ERROR")),
        "no error logged names {constraint}: {lines:?}"
    );
    for line in &lines {
        assert!(!line.contains("$2b$"), "a password hash was logged: {line}");
    }
    assert_eq!(
        log_capture::lines_containing(PASSWORD),
        Vec::<String>::new()
    );
}

#[test]
fn a_unique_index_the_service_does_not_know_gets_500_not_409() {
    log_capture::start();
    let app = spawn_app();
    app.db
        .execute("CREATE UNIQUE INDEX ix_users_phone ON users (phone)");
    app.register_user("ada@example.com", PASSWORD);

    // Another email with the same phone number: the phone's index refuses it, not the email's.
    let response = app.register(&valid_registration("bob@example.com", PASSWORD));
    assert_internal_server_error(&response);
    assert_eq!(count_users(&app), 1);
    // SQLite names an index on plain columns by its columns; PostgreSQL by its name.
    assert_logged_without_secrets(match app.db {
        TestDb::Sqlite(_) => "users.phone",
        TestDb::Postgres { .. } => "ix_users_phone",
    });
}

#[test]
fn a_check_the_service_does_not_know_gets_500_not_409_and_the_row_is_not_logged() {
    log_capture::start();
    let app = spawn_app();
    // Refuse UK phone numbers, which valid_registration uses. SQLite cannot add a CHECK to a
    // table, so there a trigger raises the constraint failure instead.
    app.db.execute(match app.db {
        TestDb::Sqlite(_) => {
            "CREATE TRIGGER users_phone_not_uk BEFORE INSERT ON users \
             WHEN NEW.phone LIKE '+44%' BEGIN SELECT RAISE(ABORT, 'users_phone_not_uk'); END"
        }
        TestDb::Postgres { .. } => {
            "ALTER TABLE users ADD CONSTRAINT users_phone_not_uk CHECK (phone NOT LIKE '+44%')"
        }
    });

    let response = app.register(&valid_registration("ada@example.com", PASSWORD));
    assert_internal_server_error(&response);
    assert_eq!(count_users(&app), 0);
    assert_logged_without_secrets("users_phone_not_uk");
}

/// Registers an email while another writer, one that does not take the service's lock, holds
/// an uncommitted row with that email. The service's check cannot see the row, so its insert
/// waits on the email's unique index and fails there once the writer commits: the index's
/// violation, not the check, must answer 409.
fn race_a_writer_that_skips_the_lock(app: &TestApp) {
    let before = count_users(app);
    let mut writer = app.db.postgres();
    let mut writer_tx = writer.transaction().expect("begin");
    writer_tx
        .execute(
            "INSERT INTO users (name, phone, email, password_hash) \
             VALUES ('Eve', '+1 555 0100', 'race@example.com', 'not a hash')",
            &[],
        )
        .expect("the writer's row");
    let writer_pid: i32 = writer_tx
        .query_one("SELECT pg_backend_pid()", &[])
        .expect("the writer's process id")
        .get(0);
    let mut watcher = app.db.postgres();

    thread::scope(|scope| {
        let request =
            scope.spawn(|| app.register(&valid_registration("race@example.com", PASSWORD)));
        let deadline = Instant::now() + Duration::from_secs(10);
        let waiting_on_writer = loop {
            let waiting: bool = watcher
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_stat_activity \
                                    WHERE $1 = ANY (pg_blocking_pids(pid)))",
                    &[&writer_pid],
                )
                .expect("read pg_stat_activity")
                .get(0);
            if waiting || request.is_finished() || Instant::now() > deadline {
                break waiting;
            }
            thread::sleep(Duration::from_millis(20));
        };
        assert!(
            waiting_on_writer,
            "the registration never waited on the writer's row"
        );
        writer_tx.commit().expect("commit the writer's row");

        let response = request.join().expect("the request thread");
        assert_eq!(response.status, 409, "{}", response.text);
        assert_eq!(
            response.json,
            json!({ "detail": "Email already registered" })
        );
    });
    assert_eq!(count_users(app), before + 1);
}

#[test]
#[ignore = "needs PostgreSQL: runs in the PostgreSQL pass of make test"]
fn an_email_caught_by_the_unique_index_in_a_race_gets_409_on_our_schema() {
    let app = spawn_app();
    let TestDb::Postgres { .. } = app.db else {
        panic!("this test needs TEST_BACKEND=postgres and a PostgreSQL server")
    };
    race_a_writer_that_skips_the_lock(&app);
}

#[test]
#[ignore = "needs PostgreSQL: runs in the PostgreSQL pass of make test"]
fn an_email_caught_by_the_unique_index_in_a_race_gets_409_on_the_fastapi_schema() {
    let app = spawn_app_on_fastapi_fixture();
    let TestDb::Postgres { .. } = app.db else {
        panic!("this test needs TEST_BACKEND=postgres and a PostgreSQL server")
    };
    race_a_writer_that_skips_the_lock(&app);
}
