//! One identity per email: addresses equal under Unicode NFKC and full case folding
//! (fullwidth letters, Greek final sigma, the Kelvin sign, ß) are one account, for
//! registration, login and racing registrations, on new databases and on the FastAPI
//! service's, whose rows get their keys at start without failing on look-alikes already there.

use std::sync::{Arc, Barrier};
use std::thread;

use serde_json::{json, Value};

use crate::helpers::{
    assert_unauthorized, assert_validation_error, count_users, spawn_app, spawn_app_on,
    spawn_app_on_fastapi_fixture, spawn_app_with, spawn_instance_sharing, valid_registration,
    FreshDb, TestApp, TestDb,
};
use crate::log_capture;

/// Pairs of spellings of one identity: the first as a user would type it plainly, the
/// second its look-alike.
const LOOK_ALIKES: [(&str, &str); 7] = [
    ("ann@example.com", "ａｎｎ@example.com"),
    ("ΟΔΟΣ@example.gr", "οδοσ@example.gr"),
    ("οδος@example.com", "ΟΔΟΣ@example.com"),
    ("kelvin@example.com", "\u{212A}elvin@example.com"),
    ("strasse@example.de", "straße@example.de"),
    ("GROẞ@example.de", "gross@example.de"),
    ("ﬁle@example.com", "FILE@example.com"),
];

/// Logs in and returns the user's id from the response; panics unless it gets 200.
fn id_after_login(app: &TestApp, email: &str, password: &str) -> i64 {
    let login = app.login(email, password);
    assert_eq!(login.status, 200, "login as {email:?}: {}", login.text);
    let token = login.json["access_token"].as_str().expect("token");
    let me = app.me(token);
    assert_eq!(me.status, 200, "{}", me.text);
    me.json["id"].as_i64().expect("id")
}

fn assert_email_taken(app: &TestApp, email: &str) {
    let response = app.register(&valid_registration(email, "another password"));
    assert_eq!(
        response.status, 409,
        "registering {email:?}: {}",
        response.text
    );
    assert_eq!(
        response.json,
        json!({ "detail": "Email already registered" })
    );
}

#[test]
fn a_look_alike_of_a_registered_email_gets_409_in_either_order() {
    let app = spawn_app();
    for (plain, look_alike) in LOOK_ALIKES {
        for (first, second) in [(plain, look_alike), (look_alike, plain)] {
            let app = if first == plain { &app } else { &spawn_app() };
            app.register_user(first, "correct horse");
            assert_email_taken(app, second);
        }
    }
    assert_eq!(count_users(&app), LOOK_ALIKES.len() as i64);
}

#[test]
fn either_spelling_of_an_email_logs_into_the_one_account() {
    let app = spawn_app();
    for (plain, look_alike) in LOOK_ALIKES {
        let id = app.register_user(look_alike, "correct horse")["id"]
            .as_i64()
            .expect("id");
        assert_eq!(id_after_login(&app, plain, "correct horse"), id);
        assert_eq!(id_after_login(&app, look_alike, "correct horse"), id);
        let form = app.login_form(plain, "correct horse");
        assert_eq!(form.status, 200, "{}", form.text);
        assert_eq!(form.json["user"]["id"], json!(id));
    }
}

#[test]
fn the_stored_email_is_the_typed_one_trimmed_and_lower_cased_as_before() {
    let app = spawn_app();
    let user = app.register_user("  ΟΔΟΣ@Example.GR ", "correct horse");
    // to_lowercase, as before: a final capital sigma becomes ς in the API's `email`.
    assert_eq!(user["email"], json!("οδος@example.gr"));
    let user = app.register_user("ＡＮＮ@example.com", "correct horse");
    assert_eq!(user["email"], json!("ａｎｎ@example.com"));
}

#[test]
fn turkish_dotless_i_is_its_own_letter_and_dotted_capital_i_is_refused_as_before() {
    // Default (not Turkic) case folding: `ı` stays `ı`, so `ınci` and `inci` are two
    // accounts, and `INCI` is `inci`.
    let app = spawn_app();
    app.register_user("inci@example.com", "correct horse");
    app.register_user("ınci@example.com", "correct horse");
    assert_email_taken(&app, "INCI@example.com");
    assert_email_taken(&app, "ＩＮＣＩ@example.com");
    // `İ` lower-cases (and folds) to `i` + U+0307, a combining mark, which the email rule has
    // always refused before the @-sign: 422, as before this change.
    for email in ["İnci@example.com", "i\u{307}nci@example.com"] {
        let response = app.register(&valid_registration(email, "correct horse"));
        assert_eq!(assert_validation_error(&response), vec!["email".to_owned()]);
    }
    assert_eq!(count_users(&app), 2);
}

#[test]
fn an_address_whose_normalised_form_is_not_an_address_gets_422() {
    let app = spawn_app();
    // ⒈ is a number as typed and "1." once normalised: a period right before the @-sign.
    let response = app.register(&valid_registration("ann⒈@example.com", "correct horse"));
    assert_eq!(assert_validation_error(&response), vec!["email".to_owned()]);
    // ﷺ is one character and 18 letters once normalised: four of them overflow the local part.
    let long = format!("{}@example.com", "ﷺ".repeat(4));
    let response = app.register(&valid_registration(&long, "correct horse"));
    assert_eq!(response.status, 422, "{}", response.text);
    assert_eq!(count_users(&app), 0);
}

#[test]
fn sixteen_concurrent_registrations_of_look_alikes_create_one_user() {
    // Sixteen sign-ups from one address: past the per-address limit, which is not the subject.
    let app = Arc::new(spawn_app_with(&[("RATE_LIMITS", "off")]));
    let spellings = [
        "straße@example.de",
        "STRASSE@example.de",
        "strasse@example.de",
        "ＳＴＲＡẞＥ@example.de",
    ];
    let statuses = register_all_at_once((0..16).map(|i| (app.clone(), spellings[i % 4])).collect());
    assert_eq!(
        (
            statuses.iter().filter(|&&s| s == 201).count(),
            statuses.iter().filter(|&&s| s == 409).count()
        ),
        (1, 15),
        "{statuses:?}"
    );
    assert_eq!(count_users(&app), 1);
}

#[test]
fn two_instances_racing_for_look_alikes_create_one_user() {
    let first = Arc::new(spawn_app());
    let second = Arc::new(spawn_instance_sharing(&first, &[]));
    let statuses = register_all_at_once(
        (0..16)
            .map(|i| {
                let app = if i % 2 == 0 { &first } else { &second };
                let email = if i % 4 < 2 {
                    "ΟΔΟΣ@example.gr"
                } else {
                    "οδος@ｅｘａｍｐｌｅ.gr"
                };
                (app.clone(), email)
            })
            .collect(),
    );
    assert_eq!(
        statuses.iter().filter(|&&s| s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(count_users(&first), 1);
}

/// Registers each email on its app, all released at once by a barrier; the statuses in order.
fn register_all_at_once(clients: Vec<(Arc<TestApp>, &'static str)>) -> Vec<u16> {
    let barrier = Arc::new(Barrier::new(clients.len()));
    let handles: Vec<_> = clients
        .into_iter()
        .map(|(app, email)| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                app.register(&valid_registration(email, "correct horse"))
                    .status
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("client thread"))
        .collect()
}

// ---- the FastAPI service's database ----

/// The fixture's users and their passwords (tests/fixtures/README.md).
const FIXTURE_USERS: [(&str, &str); 4] = [
    ("ann@example.com", "correct horse battery"),
    ("ivan@example.ru", "пароль-надёжный-1"),
    ("li.wei@example.cn", "li-wei-password"),
    ("zoe@example.ie", "Zoë-secret-2024"),
];

#[test]
fn fastapi_users_log_in_with_their_emails_and_with_look_alikes() {
    let app = spawn_app_on_fastapi_fixture();
    for (id, (email, password)) in (1..).zip(FIXTURE_USERS) {
        assert_eq!(id_after_login(&app, email, password), id);
        let fullwidth: String = email
            .chars()
            .map(|c| match c {
                'a'..='z' => char::from_u32(c as u32 - 'a' as u32 + 0xFF41).expect("fullwidth"),
                _ => c,
            })
            .collect();
        assert_eq!(id_after_login(&app, &fullwidth, password), id);
        assert_email_taken(&app, &fullwidth);
        assert_email_taken(&app, &email.to_uppercase());
    }
    assert_eq!(app.db.scalar::<i64>("SELECT count(*) FROM email_keys"), 4);
}

/// Adds a user straight into the database, as the FastAPI service (or an older version of
/// this one) could have, with a bcrypt hash of `password`.
fn insert_legacy_user(fresh: &FreshDb, email: &str, password: &str) {
    let hash = bcrypt::hash(password, 4).expect("hash");
    let inserted = fresh.db.execute(&format!(
        "INSERT INTO users (name, phone, email, password_hash) \
         VALUES ('Legacy', '+1 555 0199', '{email}', '{hash}')"
    ));
    assert_eq!(inserted, 1);
}

#[test]
fn starting_on_a_database_whose_rows_collide_keeps_the_lowest_id_and_logs_the_ids() {
    log_capture::start();
    let fresh = FreshDb::with_fastapi_users();
    // The fixture's hashes are cost 12; cost 4 keeps this test's logins quick.
    let ann = bcrypt::hash("correct horse battery", 4).expect("hash");
    fresh.db.execute(&format!(
        "UPDATE users SET password_hash = '{ann}' WHERE id = 1"
    ));
    insert_legacy_user(&fresh, "ANN@EXAMPLE.COM", "ids five"); // 5, collides with 1
    insert_legacy_user(&fresh, "ａｎｎ@example.com", "ids six"); // 6, collides with 1
    insert_legacy_user(&fresh, "straße@example.de", "ids seven"); // 7
    insert_legacy_user(&fresh, "STRASSE@example.de", "ids eight"); // 8, collides with 7
    let app = spawn_app_on(fresh, &[]);

    // Every spelling is user 1's, with user 1's password; the later rows cannot sign in.
    for email in ["ann@example.com", "ANN@EXAMPLE.COM", "ａｎｎ@example.com"] {
        assert_eq!(id_after_login(&app, email, "correct horse battery"), 1);
    }
    assert_unauthorized(
        &app.login("ANN@EXAMPLE.COM", "ids five"),
        "Incorrect email or password",
    );
    assert_eq!(id_after_login(&app, "strasse@example.de", "ids seven"), 7);
    assert_eq!(id_after_login(&app, "STRASSE@example.de", "ids seven"), 7);
    assert_email_taken(&app, "Straße@example.de");

    for (owner, id) in [(1, 5), (1, 6), (7, 8)] {
        let needle = format!("users {owner} and {id} have emails");
        assert_eq!(log_capture::lines_containing(&needle).len(), 1, "{needle}");
    }
    let rows: Vec<Value> = app
        .db
        .stored_users()
        .into_iter()
        .map(|u| json!(u.email))
        .collect();
    assert_eq!(rows.len(), 8, "no row was changed or removed: {rows:?}");

    // A second start on the same database (the collisions still there) starts too.
    let again = spawn_instance_sharing(&app, &[]);
    assert_eq!(
        id_after_login(&again, "ＡＮＮ@example.com", "correct horse battery"),
        1
    );
}

#[test]
fn a_user_deleted_and_written_again_by_another_writer_signs_in_before_any_restart() {
    // The FastAPI service, sharing the database, deletes a user (on SQLite without foreign
    // keys, so the key stays behind) and writes the address again as a new row, with no key.
    let app = spawn_app();
    app.register_user("ann@example.com", "first password");
    app.register_user("bob@example.com", "correct horse");
    let delete = "DELETE FROM users WHERE id = 1";
    match &app.db {
        // Python's sqlite3 leaves foreign keys off (our bundled SQLite turns them on).
        TestDb::Sqlite(path) => {
            let conn = rusqlite::Connection::open(path).expect("open the database");
            conn.execute_batch("PRAGMA foreign_keys = OFF")
                .expect("foreign keys off");
            assert_eq!(conn.execute(delete, []).expect("delete"), 1);
        }
        TestDb::Postgres { .. } => assert_eq!(app.db.execute(delete), 1),
    }
    let hash = bcrypt::hash("second password", 4).expect("hash");
    app.db.execute(&format!(
        "INSERT INTO users (name, phone, email, password_hash) \
         VALUES ('Ann', '+1 555 0100', 'Ann@Example.com', '{hash}')"
    ));
    let id = id_after_login(&app, "ann@example.com", "second password");
    assert_eq!(id, 3);
    assert_unauthorized(
        &app.login("ann@example.com", "first password"),
        "Incorrect email or password",
    );
    assert_email_taken(&app, "ANN@example.com");
    // At the next start the new row gets the key; the stale one is gone.
    let again = spawn_instance_sharing(&app, &[]);
    assert_eq!(
        id_after_login(&again, "ａｎｎ@example.com", "second password"),
        3
    );
}
