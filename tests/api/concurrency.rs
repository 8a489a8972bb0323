//! Many clients at once: racing registrations of one email, a burst of keep-alive
//! connections, and cheap requests answered while logins hash.

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{count_users, read_response, spawn_app, spawn_app_with, valid_registration};

/// Runs `f(i)` on `n` threads released at the same moment, and collects the results in order.
fn all_at_once<T: Send + 'static>(
    n: usize,
    f: impl Fn(usize) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let barrier = Arc::new(Barrier::new(n));
    let f = Arc::new(f);
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (barrier, f) = (barrier.clone(), f.clone());
            thread::spawn(move || {
                barrier.wait();
                f(i)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("client thread"))
        .collect()
}

/// An app without rate limits: these tests send many requests from one address at once to
/// test concurrency, which the per-client limits (tests/api/throttle.rs) would cut short.
fn unlimited_app(vars: &[(&str, &str)]) -> crate::helpers::TestApp {
    let mut vars = vars.to_vec();
    vars.push(("RATE_LIMITS", "off"));
    spawn_app_with(&vars)
}

#[test]
fn sixteen_concurrent_registrations_of_one_email_get_exactly_one_201_and_fifteen_409() {
    let app = Arc::new(unlimited_app(&[]));
    let client = app.clone();
    let responses = all_at_once(16, move |_| {
        client.register(&valid_registration("race@example.com", "correct horse"))
    });
    let created: Vec<_> = responses.iter().filter(|r| r.status == 201).collect();
    let conflicts: Vec<_> = responses.iter().filter(|r| r.status == 409).collect();
    assert_eq!(
        (created.len(), conflicts.len()),
        (1, 15),
        "statuses: {:?}",
        responses
            .iter()
            .map(|r| (r.status, &r.text))
            .collect::<Vec<_>>()
    );
    for conflict in conflicts {
        assert_eq!(
            conflict.json,
            json!({ "detail": "Email already registered" })
        );
    }
    assert_eq!(created[0].json["email"], json!("race@example.com"));
    assert_eq!(count_users(&app), 1);
}

#[test]
fn sixteen_concurrent_registrations_of_one_email_in_different_cases_create_one_user() {
    let app = Arc::new(unlimited_app(&[]));
    let client = app.clone();
    let responses = all_at_once(16, move |i| {
        let email = match i % 4 {
            0 => "race@example.com",
            1 => "RACE@EXAMPLE.COM",
            2 => "Race@Example.com",
            _ => "  race@EXAMPLE.com ",
        };
        client.register(&valid_registration(email, "correct horse"))
    });
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&s| s == 409).count(),
        15,
        "{statuses:?}"
    );
    assert_eq!(count_users(&app), 1);
}

#[test]
fn concurrent_registrations_of_different_emails_all_succeed_with_distinct_ids() {
    let app = Arc::new(unlimited_app(&[]));
    let client = app.clone();
    let responses = all_at_once(16, move |i| {
        client.register(&valid_registration(
            &format!("user{i}@example.com"),
            "correct horse",
        ))
    });
    let mut ids: Vec<i64> = responses
        .iter()
        .map(|r| {
            assert_eq!(r.status, 201, "{}", r.text);
            r.json["id"].as_i64().expect("id")
        })
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=16).collect::<Vec<i64>>());
}

#[test]
fn sixty_four_keep_alive_clients_connecting_at_once_are_all_answered() {
    let app = spawn_app();
    // Every connection is open before any request is sent, and none is closed before all
    // have been answered: each holds its place as a keep-alive client would.
    let mut streams: Vec<TcpStream> = (0..64)
        .map(|i| TcpStream::connect(app.addr).unwrap_or_else(|e| panic!("connect {i}: {e}")))
        .collect();
    for (i, stream) in streams.iter_mut().enumerate() {
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
            .unwrap_or_else(|e| panic!("send on {i}: {e}"));
    }
    // A generous liveness deadline for all 64 together.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut unanswered = Vec::new();
    for (i, stream) in streams.iter_mut().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("timeout");
        match read_response(stream) {
            Ok(response) => {
                assert_eq!(response.status, 200, "connection {i}");
                assert_eq!(response.json(), json!({ "status": "ok" }), "connection {i}");
                assert_eq!(
                    response.headers.get("content-type").map(String::as_str),
                    Some("application/json"),
                    "connection {i}"
                );
            }
            Err(err) => unanswered.push((i, err.to_string())),
        }
    }
    assert!(
        unanswered.is_empty(),
        "{} of 64 keep-alive connections were not answered within 5 s: {unanswered:?}",
        unanswered.len()
    );
    // Still open and still served: a second request on each of a few of them.
    for stream in streams.iter_mut().take(4) {
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
            .expect("send again");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        assert_eq!(read_response(stream).expect("second answer").status, 200);
    }
}

#[test]
fn health_is_answered_while_logins_are_hashing() {
    // At cost 10 each login takes a noticeable share of a core (a quarter of what production's
    // 12 costs), so sixteen of them keep every core busy for a while, yet finish well inside
    // the server's 10 s queueing deadline even on a loaded machine.
    let app = Arc::new(unlimited_app(&[("BCRYPT_COST", "10")]));
    app.register_user("ada@example.com", "correct horse");
    let logins = 16;
    let done = Arc::new(AtomicUsize::new(0));

    let (client, finished) = (app.clone(), done.clone());
    let login_threads = thread::spawn(move || {
        all_at_once(logins, move |_| {
            let response = client.login("ada@example.com", "correct horse");
            finished.fetch_add(1, Ordering::SeqCst);
            response.status
        })
    });
    // Once the first login is answered the rest are with the server, hashing or queued.
    let deadline = Instant::now() + Duration::from_secs(30);
    while done.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "no login was answered within 30 s"
        );
        thread::sleep(Duration::from_millis(5));
    }

    let mut answered_during_logins = 0;
    for _ in 0..10 {
        let response = app.get("/health", &[]);
        assert_eq!(response.status, 200, "{}", response.text);
        assert_eq!(response.json, json!({ "status": "ok" }));
        if done.load(Ordering::SeqCst) < logins {
            answered_during_logins += 1;
        }
    }
    let statuses = login_threads.join().expect("login threads");
    assert!(
        statuses.iter().all(|&s| s == 200),
        "every login succeeds: {statuses:?}"
    );
    assert!(
        answered_during_logins > 0,
        "no /health answer came back while logins were still in flight"
    );
}
