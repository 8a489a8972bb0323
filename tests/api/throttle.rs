//! Throttled guessing and sign-ups, as an attacker meets them: lock-outs per account and
//! address that grow, a per-account budget shared by every instance, the owner never locked
//! out, registrations per address, a fair share of the hashing pool, and client addresses
//! believed from trusted proxies only. Limits are set small, windows to seconds.
//!
//! Other addresses are the other loopback addresses (127.0.0.2, …): a client binds one before
//! connecting, as another machine would be.

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{
    connect_from, cost_taking, read_response, spawn_app_with, spawn_instance_sharing,
    valid_registration, RawResponse, TestApp,
};

const TOO_MANY_LOGINS: &str = "Too many failed logins, try again later";

/// Sends `POST path` with a JSON body and extra headers on `stream` (kept alive).
fn post_on(
    stream: &mut TcpStream,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> RawResponse {
    let body = body.to_string();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    stream.write_all(request.as_bytes()).expect("send");
    read_response(stream).expect("an answer")
}

/// Logs in from `source` with extra request headers.
fn login_from(
    app: &TestApp,
    source: &str,
    headers: &[(&str, &str)],
    email: &str,
    password: &str,
) -> RawResponse {
    let mut stream = connect_from(source, app);
    post_on(
        &mut stream,
        "/auth/login",
        headers,
        &json!({ "email": email, "password": password }),
    )
}

/// Registers from `source`.
fn register_from(app: &TestApp, source: &str, email: &str) -> RawResponse {
    let mut stream = connect_from(source, app);
    post_on(
        &mut stream,
        "/auth/register",
        &[],
        &valid_registration(email, "correct horse"),
    )
}

/// Asserts that the owner, at 127.0.0.2, logs in to ada@example.com with the right password.
fn assert_the_owner_gets_in(app: &TestApp) {
    let owner = login_from(app, "127.0.0.2", &[], "ada@example.com", "correct horse");
    assert_eq!(
        owner.status,
        200,
        "{}",
        String::from_utf8_lossy(&owner.body)
    );
}

/// The status, and for a 429 its `Retry-After` in seconds.
fn outcome(response: &RawResponse) -> (u16, Option<u64>) {
    let retry = response
        .headers
        .get("retry-after")
        .and_then(|v| v.parse().ok());
    (response.status, retry)
}

/// Asserts a login was refused as throttled: 429, the one message, a `Retry-After`.
fn assert_throttled(response: &RawResponse) -> u64 {
    assert_eq!(
        response.status,
        429,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(response.json(), json!({ "detail": TOO_MANY_LOGINS }));
    response
        .headers
        .get("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in seconds")
}

#[test]
fn failed_logins_past_the_limit_get_429_with_retry_after_and_no_bcrypt() {
    // One hashing thread and no queue: while it hashes, a login that needed a hash would be
    // refused 503, so a 429 then is proof that none was asked for.
    let app = Arc::new(spawn_app_with(&[
        ("BCRYPT_COST", &cost_taking(2.0)),
        ("HASH_THREADS", "1"),
        ("HASH_QUEUE_SIZE", "0"),
        ("HASH_QUEUE_TIMEOUT", "30"),
        ("LOGIN_LOCK_AFTER", "2"),
        ("LOGIN_LOCK_SECONDS", "60"),
    ]));
    app.register_user("ada@example.com", "correct horse");
    for _ in 0..2 {
        let response = login_from(&app, "127.0.0.1", &[], "ada@example.com", "wrong guess");
        assert_eq!(response.status, 401);
    }
    let busy = {
        let app = app.clone();
        thread::spawn(move || register_from(&app, "127.0.0.3", "busy@example.com").status)
    };
    thread::sleep(Duration::from_millis(300));
    // The control: a login that does want a hash finds the pool busy.
    let control = login_from(&app, "127.0.0.2", &[], "ada@example.com", "correct horse");
    assert_eq!(
        control.status,
        503,
        "{}",
        String::from_utf8_lossy(&control.body)
    );
    let refused = login_from(&app, "127.0.0.1", &[], "ada@example.com", "wrong guess");
    let retry = assert_throttled(&refused);
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    // The right password is refused too while locked: the lock is not an oracle.
    assert_throttled(&login_from(
        &app,
        "127.0.0.1",
        &[],
        "ada@example.com",
        "correct horse",
    ));
    assert_eq!(busy.join().expect("registration"), 201);
}

#[test]
fn each_further_failure_doubles_the_lock() {
    let app = spawn_app_with(&[
        ("LOGIN_LOCK_AFTER", "2"),
        ("LOGIN_LOCK_SECONDS", "1"),
        ("LOGIN_LOCK_MAX_SECONDS", "60"),
    ]);
    app.register_user("ada@example.com", "correct horse");
    let guess = || login_from(&app, "127.0.0.1", &[], "ada@example.com", "wrong guess");
    assert_eq!(guess().status, 401);
    assert_eq!(guess().status, 401);
    let mut waits = Vec::new();
    for _ in 0..3 {
        let wait = assert_throttled(&guess());
        waits.push(wait);
        thread::sleep(Duration::from_millis(wait * 1000 + 100));
        assert_eq!(guess().status, 401, "one guess after the lock ends");
    }
    assert_eq!(waits, [1, 2, 4]);
}

#[test]
fn an_unknown_email_is_throttled_exactly_as_a_registered_one() {
    let app = spawn_app_with(&[("LOGIN_LOCK_AFTER", "3"), ("LOGIN_LOCK_SECONDS", "30")]);
    app.register_user("ada@example.com", "correct horse");
    let mut seen = Vec::new();
    for email in ["ada@example.com", "nobody@example.com"] {
        let answers: Vec<(u16, Option<u64>, Vec<u8>)> = (0..5)
            .map(|_| {
                let r = login_from(&app, "127.0.0.1", &[], email, "wrong guess");
                let (status, retry) = outcome(&r);
                (status, retry, r.body)
            })
            .collect();
        seen.push(answers);
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(
        seen[0].iter().map(|a| a.0).collect::<Vec<_>>(),
        [401, 401, 401, 429, 429]
    );
}

#[test]
fn the_owner_at_another_address_logs_in_while_one_address_sprays() {
    let app = spawn_app_with(&[("LOGIN_LOCK_AFTER", "3"), ("LOGIN_LOCK_SECONDS", "30")]);
    app.register_user("ada@example.com", "correct horse");
    let mut statuses = Vec::new();
    for i in 0..8 {
        let guess = format!("guess {i}");
        statuses.push(login_from(&app, "127.0.0.1", &[], "ada@example.com", &guess).status);
        if i % 4 == 3 {
            assert_the_owner_gets_in(&app);
        }
    }
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 3);
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
}

#[test]
fn a_spent_account_budget_stops_new_addresses_but_not_the_owner_at_a_known_one() {
    // Lock-outs far away: only the per-account budget (10, one kept for known addresses).
    let app = spawn_app_with(&[
        ("LOGIN_LOCK_AFTER", "1000"),
        ("LOGIN_LOCK_AFTER_PER_CLIENT", "1000"),
        ("LOGIN_FAILURES_PER_ACCOUNT", "10"),
    ]);
    app.register_user("ada@example.com", "correct horse");
    // The owner has logged in from 127.0.0.2 before.
    assert_eq!(
        login_from(&app, "127.0.0.2", &[], "ada@example.com", "correct horse").status,
        200
    );
    // A botnet: many addresses, one guess after another.
    let mut failures = 0;
    for i in 0..20 {
        let source = format!("127.0.1.{}", i % 5 + 1);
        let response = login_from(&app, &source, &[], "ada@example.com", "wrong guess");
        match response.status {
            401 => failures += 1,
            429 => {
                assert_throttled(&response);
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(failures, 9, "new addresses stop at 9 of 10 failures");
    // Even the right password from a new address is not checked now.
    assert_throttled(&login_from(
        &app,
        "127.0.0.3",
        &[],
        "ada@example.com",
        "correct horse",
    ));
    // The owner, from the address that logged in before, still gets in.
    assert_the_owner_gets_in(&app);
    // One more failure from there is the tenth and last the hour allows.
    let typo = login_from(&app, "127.0.0.2", &[], "ada@example.com", "typo");
    assert_eq!(typo.status, 401);
    assert_throttled(&login_from(
        &app,
        "127.0.0.2",
        &[],
        "ada@example.com",
        "typo",
    ));
}

/// Starts the app with `limits` (and a per-client share of the hashing pool too large to
/// matter), registers ada@example.com, and sends her `clients` wrong guesses from 127.0.0.1 at
/// the same moment, each on a connection opened beforehand. Returns the statuses, each asserted
/// to be a 401 or a 429.
fn burst_of_guesses(limits: &[(&str, &str)], clients: usize) -> Vec<u16> {
    let mut vars = limits.to_vec();
    vars.push(("HASH_JOBS_PER_CLIENT", "100"));
    let app = Arc::new(spawn_app_with(&vars));
    app.register_user("ada@example.com", "correct horse");
    let barrier = Arc::new(std::sync::Barrier::new(clients));
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let (app, barrier) = (app.clone(), barrier.clone());
            thread::spawn(move || {
                let mut stream = connect_from("127.0.0.1", &app);
                barrier.wait();
                let body = json!({ "email": "ada@example.com", "password": format!("g{i}") });
                post_on(&mut stream, "/auth/login", &[], &body).status
            })
        })
        .collect();
    let statuses: Vec<u16> = threads
        .into_iter()
        .map(|t| t.join().expect("client"))
        .collect();
    assert!(
        statuses.iter().all(|s| [401, 429].contains(s)),
        "{statuses:?}"
    );
    statuses
}

#[test]
fn a_burst_of_concurrent_guesses_never_passes_the_account_budget() {
    let statuses = burst_of_guesses(
        &[
            ("LOGIN_LOCK_AFTER", "1000"),
            ("LOGIN_LOCK_AFTER_PER_CLIENT", "1000"),
            ("LOGIN_FAILURES_PER_ACCOUNT", "10"),
        ],
        40,
    );
    let failures = statuses.iter().filter(|s| **s == 401).count();
    assert_eq!(failures, 9, "{statuses:?}");
}

#[test]
fn a_burst_from_one_address_on_one_account_gets_no_more_checks_than_the_lock_allows() {
    let statuses = burst_of_guesses(
        &[("LOGIN_LOCK_AFTER", "3"), ("LOGIN_LOCK_SECONDS", "30")],
        20,
    );
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert!((1..=3).contains(&checked), "{statuses:?}");
}

#[test]
fn two_instances_on_one_database_share_the_account_budget() {
    let limits = [
        ("LOGIN_LOCK_AFTER", "1000"),
        ("LOGIN_LOCK_AFTER_PER_CLIENT", "1000"),
        ("LOGIN_FAILURES_PER_ACCOUNT", "6"),
    ];
    let first = spawn_app_with(&limits);
    let second = spawn_instance_sharing(&first, &limits);
    first.register_user("ada@example.com", "correct horse");
    let mut statuses = Vec::new();
    for i in 0..12 {
        let instance = if i % 2 == 0 { &first } else { &second };
        statuses.push(login_from(instance, "127.0.0.1", &[], "ada@example.com", "wrong").status);
    }
    // Six failures in all, not six on each.
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        6,
        "{statuses:?}"
    );
    assert!(statuses[6..].iter().all(|s| *s == 429), "{statuses:?}");
}

#[test]
fn a_failure_budget_frees_up_once_its_window_has_passed() {
    let app = spawn_app_with(&[
        ("LOGIN_LOCK_AFTER", "1000"),
        ("LOGIN_FAILURES_PER_ACCOUNT", "2"),
        ("LOGIN_FAILURE_WINDOW", "1"),
    ]);
    app.register_user("ada@example.com", "correct horse");
    for _ in 0..2 {
        assert_eq!(
            login_from(&app, "127.0.0.1", &[], "ada@example.com", "w").status,
            401
        );
    }
    let retry = assert_throttled(&login_from(&app, "127.0.0.1", &[], "ada@example.com", "w"));
    assert_eq!(retry, 1);
    thread::sleep(Duration::from_millis(1100));
    let owner = login_from(&app, "127.0.0.1", &[], "ada@example.com", "correct horse");
    assert_eq!(owner.status, 200);
}

#[test]
fn registrations_past_the_limit_from_one_address_get_429_and_others_still_register() {
    let app = spawn_app_with(&[
        ("REGISTRATIONS_PER_CLIENT", "3"),
        ("REGISTRATION_WINDOW", "2"),
    ]);
    for i in 0..3 {
        let response = register_from(&app, "127.0.0.1", &format!("user{i}@example.com"));
        assert_eq!(response.status, 201);
    }
    let refused = register_from(&app, "127.0.0.1", "user3@example.com");
    assert_eq!(refused.status, 429);
    assert_eq!(
        refused.json(),
        json!({ "detail": "Too many registrations from this address, try again later" })
    );
    let retry: u64 = refused.headers["retry-after"].parse().expect("seconds");
    assert!((1..=2).contains(&retry), "{retry}");
    assert_eq!(
        register_from(&app, "127.0.0.2", "other@example.com").status,
        201
    );
    thread::sleep(Duration::from_millis(2100));
    assert_eq!(
        register_from(&app, "127.0.0.1", "user3@example.com").status,
        201
    );
}

/// Sends one prepared request on a kept-alive connection and reads its answer's status, with
/// reads of whole buffers: a flood client that spends its CPU on flooding, not on parsing.
fn exchange_fast(stream: &mut TcpStream, request: &[u8]) -> std::io::Result<u16> {
    use std::io::Read;
    stream.write_all(request)?;
    let mut received = Vec::with_capacity(1024);
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        received.extend_from_slice(&buf[..n]);
        let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if received.len() >= end + 4 + length {
            let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
            return Ok(status);
        }
    }
}

/// Floods the app from 127.0.0.1 over 64 kept-alive connections, connection `i` logging in
/// with `bodies[i % len]` without pause, while a user at 127.0.0.2 logs in ten times in a row;
/// asserts the flood was answered more than 64 times and the user got in at least 9 times.
fn assert_a_user_gets_through_a_flood(app: &Arc<TestApp>, bodies: &[Value]) {
    let stop = Arc::new(AtomicBool::new(false));
    let flood: Vec<_> = (0..64)
        .map(|i| {
            let (app, stop) = (app.clone(), stop.clone());
            let body = bodies[i % bodies.len()].to_string();
            thread::spawn(move || {
                let request = format!(
                    "POST /auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let mut answered = 0;
                while !stop.load(Ordering::SeqCst) {
                    let mut stream = connect_from("127.0.0.1", &app);
                    while !stop.load(Ordering::SeqCst) {
                        match exchange_fast(&mut stream, request.as_bytes()) {
                            Ok(_) => answered += 1,
                            Err(_) => break,
                        }
                    }
                }
                answered
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    let statuses: Vec<u16> = (0..10)
        .map(|_| login_from(app, "127.0.0.2", &[], "ada@example.com", "correct horse").status)
        .collect();
    stop.store(true, Ordering::SeqCst);
    let flooded: usize = flood.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    assert!(flooded > 64, "the flood was answered {flooded} times");
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert!(ok >= 9, "the user got {statuses:?}");
}

/// A small pool (two threads, eight queued) and a cost at which hashing is real work.
const SMALL_POOL: [(&str, &str); 6] = [
    ("BCRYPT_COST", "8"),
    ("HASH_THREADS", "2"),
    ("HASH_QUEUE_SIZE", "8"),
    ("HASH_QUEUE_TIMEOUT", "5"),
    ("WORKERS", "16"),
    ("REGISTRATIONS_PER_CLIENT", "100"),
];

#[test]
fn a_login_flood_from_one_address_leaves_room_for_a_user_at_another() {
    // Every flood request is a right password for an account of its own: each wants a hash,
    // and only the pool's per-client share keeps the flood from filling it.
    let app = Arc::new(spawn_app_with(&SMALL_POOL));
    app.register_user("ada@example.com", "correct horse");
    let bodies: Vec<Value> = (0..64)
        .map(|i| {
            let email = format!("flood{i}@example.com");
            app.register_user(&email, "flood password");
            json!({ "email": email, "password": "flood password" })
        })
        .collect();
    assert_a_user_gets_through_a_flood(&app, &bodies);
}

#[test]
fn a_flood_of_guesses_from_one_address_leaves_room_for_a_user_at_another() {
    // Wrong passwords on one account: after a few checks every answer is a 429.
    let app = Arc::new(spawn_app_with(&SMALL_POOL));
    app.register_user("ada@example.com", "correct horse");
    app.register_user("victim@example.com", "correct horse");
    let guess = json!({ "email": "victim@example.com", "password": "guess" });
    assert_a_user_gets_through_a_flood(&app, &[guess]);
}

#[test]
fn forwarded_addresses_are_believed_only_from_a_trusted_proxy() {
    let limits = [("LOGIN_LOCK_AFTER", "2"), ("LOGIN_LOCK_SECONDS", "30")];
    let mut vars = limits.to_vec();
    vars.push(("TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8"));
    let proxied = spawn_app_with(&vars);
    proxied.register_user("ada@example.com", "correct horse");
    let guess = |headers: &[(&str, &str)]| {
        login_from(&proxied, "127.0.0.1", headers, "ada@example.com", "wrong").status
    };
    let attacker = [("X-Forwarded-For", "6.6.6.6, 203.0.113.7, 10.1.1.1")];
    assert_eq!(guess(&attacker), 401);
    assert_eq!(guess(&attacker), 401);
    assert_eq!(guess(&attacker), 429);
    // The same client named by RFC 7239 `Forwarded` is the same client.
    assert_eq!(guess(&[("Forwarded", "for=203.0.113.7;proto=https")]), 429);
    // Another client behind the same proxy is not locked out; nor is the proxy itself.
    assert_eq!(guess(&[("X-Forwarded-For", "203.0.113.8")]), 401);
    assert_eq!(guess(&[]), 401);

    // From a peer that is not a trusted proxy, the header is the client's own word: ignored,
    // so rotating it does not escape the lock.
    vars.pop();
    vars.push(("TRUSTED_PROXIES", "10.0.0.1"));
    let direct = spawn_app_with(&vars);
    direct.register_user("ada@example.com", "correct horse");
    let statuses: Vec<u16> = (0..4)
        .map(|i| {
            let spoof = format!("198.51.100.{i}");
            login_from(
                &direct,
                "127.0.0.1",
                &[("X-Forwarded-For", &spoof)],
                "ada@example.com",
                "w",
            )
            .status
        })
        .collect();
    assert_eq!(statuses, [401, 401, 429, 429]);
}

#[test]
fn rate_limits_off_turns_every_limit_off() {
    let app = spawn_app_with(&[
        ("RATE_LIMITS", "off"),
        ("LOGIN_LOCK_AFTER", "1"),
        ("LOGIN_FAILURES_PER_ACCOUNT", "1"),
        ("REGISTRATIONS_PER_CLIENT", "1"),
        ("HASH_JOBS_PER_CLIENT", "1"),
    ]);
    for i in 0..3 {
        assert_eq!(
            register_from(&app, "127.0.0.1", &format!("u{i}@example.com")).status,
            201
        );
    }
    for _ in 0..5 {
        assert_eq!(
            login_from(&app, "127.0.0.1", &[], "u0@example.com", "wrong").status,
            401
        );
    }
    assert_eq!(
        login_from(&app, "127.0.0.1", &[], "u0@example.com", "correct horse").status,
        200
    );
}
