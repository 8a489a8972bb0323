//! The bounded hashing queue: logins beyond what it can hold are refused at once with 503 and
//! `Retry-After`, and none waits past its deadline.

use std::sync::{Arc, Barrier};
use std::time::Instant;

use crate::helpers::{cost_taking, spawn_app_with, TestApp, TestResponse};

/// Sends `n` logins at the same moment and returns their responses.
fn concurrent_logins(app: &Arc<TestApp>, n: usize) -> Vec<TestResponse> {
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (app, barrier) = (app.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                app.login("ada@example.com", "correct horse")
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("client thread"))
        .collect()
}

fn assert_busy(response: &TestResponse, message: &str) {
    assert_eq!(response.status, 503, "{}", response.text);
    assert_eq!(response.header("retry-after"), Some("1"));
    assert!(
        response.json["detail"]
            .as_str()
            .is_some_and(|d| d.contains(message)),
        "{}",
        response.text
    );
}

#[test]
fn logins_beyond_a_full_hashing_queue_get_503_with_retry_after() {
    // One hashing thread and no queue: a login finds the thread free or is refused at once.
    let app = Arc::new(spawn_app_with(&[
        ("HASH_THREADS", "1"),
        ("HASH_QUEUE_SIZE", "0"),
        ("BCRYPT_COST", "8"),
        // One address logging in to one account many times at once is what the rate limits
        // stop (tests/api/throttle.rs); here it stands for many clients.
        ("RATE_LIMITS", "off"),
    ]));
    app.register_user("ada@example.com", "correct horse");
    let responses = concurrent_logins(&app, 8);
    let refused: Vec<_> = responses.iter().filter(|r| r.status == 503).collect();
    assert!(
        !refused.is_empty(),
        "8 logins at once should overflow one free thread"
    );
    for response in &refused {
        assert_busy(response, "too many logins in progress");
    }
    assert!(
        responses.iter().any(|r| r.status == 200),
        "the login that found the thread free succeeds"
    );
    assert!(responses.iter().all(|r| r.status == 200 || r.status == 503));
}

#[test]
fn a_login_that_waits_past_the_queue_timeout_gets_503_instead_of_a_late_answer() {
    let app = Arc::new(spawn_app_with(&[
        ("HASH_THREADS", "1"),
        ("HASH_QUEUE_SIZE", "100"),
        ("HASH_QUEUE_TIMEOUT", "2"),
        ("BCRYPT_COST", &cost_taking(0.25)),
        ("RATE_LIMITS", "off"),
    ]));
    app.register_user("ada@example.com", "correct horse");
    // Enough logins that, one hash at a time, the last ones cannot be answered in two seconds.
    let started = Instant::now();
    assert_eq!(app.login("ada@example.com", "correct horse").status, 200);
    let one_hash = started.elapsed().as_secs_f64().max(0.001);
    let n = ((5.0 / one_hash).ceil() as usize).clamp(4, 64);

    let responses = concurrent_logins(&app, n);
    let late: Vec<_> = responses.iter().filter(|r| r.status == 503).collect();
    assert!(
        !late.is_empty(),
        "{n} logins of {one_hash:.3}s each: some must time out"
    );
    for response in &late {
        assert_busy(response, "waited too long");
    }
    assert!(responses.iter().any(|r| r.status == 200));
    assert!(responses.iter().all(|r| r.status == 200 || r.status == 503));
}

#[test]
fn a_registration_answered_503_at_its_deadline_is_not_stored_when_its_hash_ends() {
    // A hash of about three seconds here, three times the timeout.
    let mut app = spawn_app_with(&[
        ("HASH_THREADS", "1"),
        ("HASH_QUEUE_TIMEOUT", "1"),
        ("BCRYPT_COST", &cost_taking(3.0)),
    ]);
    let response = app.register(&crate::helpers::valid_registration(
        "late@example.com",
        "correct horse",
    ));
    assert_busy(&response, "waited too long");
    // Stopping waits for the hash in progress to end; only then is the outcome final.
    app.stop();
    assert_eq!(crate::helpers::count_users(&app), 0);
}

#[test]
fn a_login_answered_503_at_its_deadline_opens_no_session() {
    let mut app = spawn_app_with(&[("HASH_THREADS", "1"), ("HASH_QUEUE_TIMEOUT", "1")]);
    app.register_user("late@example.com", "correct horse");
    // A stored hash that takes about three seconds to check, three times the timeout.
    let cost: u32 = cost_taking(3.0).parse().expect("a cost");
    let slow = backnd_api::hash_password("correct horse", cost).expect("hash");
    app.db
        .execute(&format!("UPDATE users SET password_hash = '{slow}'"));
    let response = app.login("late@example.com", "correct horse");
    assert_busy(&response, "waited too long");
    // Stopping waits for the check in progress to end; only then is the outcome final.
    app.stop();
    assert_eq!(app.db.scalar::<i64>("SELECT count(*) FROM sessions"), 0);
}
