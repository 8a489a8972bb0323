//! Clients that try to hold the service: trickling heads and bodies, idling, pipelining without
//! ever reading, asking to switch protocols, and opening more connections than allowed.
//!
//! Each test runs the server with two workers and one-second limits, so that a client able to
//! hold a worker, or to outlast a deadline, shows at once.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use crate::helpers::{
    connect_from, read_response, read_until_closed, spawn_app_with, valid_registration, TestApp,
};

/// Small limits, so that tests of them take seconds.
const LIMITS: &[(&str, &str)] = &[
    ("WORKERS", "2"),
    ("HEADER_TIMEOUT", "1"),
    ("BODY_TIMEOUT", "1"),
    ("WRITE_TIMEOUT", "1"),
    ("IDLE_TIMEOUT", "1"),
];

/// How long `/health` may take while attackers hold connections: far more than it needs, far
/// less than the attacks last.
const HEALTHY: Duration = Duration::from_millis(500);

fn spawn_limited_app(extra: &[(&str, &str)]) -> TestApp {
    let mut vars = LIMITS.to_vec();
    vars.extend_from_slice(extra);
    spawn_app_with(&vars)
}

/// Asserts `/health` answers 200, `times` times in a row, each within [`HEALTHY`].
fn assert_health_stays_fast(app: &TestApp, times: usize) {
    for _ in 0..times {
        let started = Instant::now();
        let response = app.get("/health", &[]);
        assert_eq!(response.status, 200, "{}", response.text);
        assert!(
            started.elapsed() < HEALTHY,
            "/health took {:?} while attackers held connections",
            started.elapsed()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `head` at once, then `body` one byte every 100 ms, until the server answers; returns
/// the status it answered with, how long after the head, and whether it then closed.
fn trickle(app: &TestApp, head: &[u8], body: &[u8]) -> (u16, Duration, bool) {
    let mut stream = app.connect();
    stream.write_all(head).expect("send the head");
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    for byte in body.iter().cycle() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no answer 10 s into a trickled body"
        );
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                // A `100 Continue` is not the answer.
                if !answer.starts_with(b"HTTP/1.1 100 ") || answer.len() > 25 {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("the trickled connection failed: {e}"),
        }
        if stream.write_all(std::slice::from_ref(byte)).is_err() {
            break;
        }
    }
    let elapsed = started.elapsed();
    let mut rest = read_until_closed(&mut stream, Duration::from_secs(5));
    answer.append(&mut rest.bytes);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let text = text.trim_start_matches("HTTP/1.1 100 Continue\r\n\r\n");
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an answer: {text:?}"));
    (status, elapsed, rest.closed)
}

#[test]
fn trickled_bodies_get_408_at_the_body_deadline_and_never_hold_a_worker() {
    let app = spawn_limited_app(&[]);
    let body = valid_registration("slow@example.com", "correct horse").to_string();
    let length_head = format!(
        "POST /auth/register HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    let continue_head = format!(
        "POST /auth/register HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    let upgrade_head = format!(
        "POST /auth/register HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Connection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let chunked_head =
        "POST /auth/register HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
                        Transfer-Encoding: chunked\r\n\r\n"
            .to_owned();
    let chunked_body = format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
    // Eight at once against two workers: if bodies were read on workers, /health would wait.
    let kinds = [
        (length_head, body.clone()),
        (continue_head, body.clone()),
        (upgrade_head, body.clone()),
        (chunked_head, chunked_body),
    ];
    thread::scope(|scope| {
        let tricklers: Vec<_> = kinds
            .iter()
            .chain(kinds.iter())
            .map(|(head, body)| scope.spawn(|| trickle(&app, head.as_bytes(), body.as_bytes())))
            .collect();
        thread::sleep(Duration::from_millis(200));
        assert_health_stays_fast(&app, 5);
        for trickler in tricklers {
            let (status, elapsed, closed) = trickler.join().expect("trickler");
            assert_eq!(status, 408);
            assert!(closed, "the connection is closed after 408");
            assert!(
                elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3),
                "408 after {elapsed:?}, with BODY_TIMEOUT=1"
            );
        }
    });
    assert_eq!(crate::helpers::count_users(&app), 0);
}

#[test]
fn a_trickled_head_gets_408_at_the_header_deadline() {
    let app = spawn_limited_app(&[]);
    let head = b"GET /health HTTP/1.1\r\nHost: t\r\nX-Slow: ";
    let (status, elapsed, closed) = trickle(&app, head, b"abcdefghijklmnopqrstuvwxyz");
    assert_eq!(status, 408);
    assert!(closed);
    assert!(
        elapsed < Duration::from_secs(3),
        "408 after {elapsed:?}, with HEADER_TIMEOUT=1"
    );
}

#[test]
fn an_idle_connection_is_closed_silently_after_the_idle_timeout() {
    let app = spawn_limited_app(&[]);
    let mut stream = app.connect();
    // One request first: the timeout applies between requests as before the first.
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("send");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    assert_eq!(read_response(&mut stream).expect("answer").status, 200);
    let started = Instant::now();
    let received = read_until_closed(&mut stream, Duration::from_secs(5));
    assert!(received.closed, "still open 5 s later with IDLE_TIMEOUT=1");
    assert!(received.bytes.is_empty(), "{}", received.text());
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_client_that_pipelines_and_never_reads_is_dropped_without_holding_a_worker() {
    let app = spawn_limited_app(&[]);
    // Far more answers than socket buffers hold, so writing them must block on the client.
    let request = b"GET /openapi.json HTTP/1.1\r\nHost: t\r\n\r\n";
    let pipelined = request.repeat(2000);
    let answer_size = app.get("/openapi.json", &[]).text.len();
    let mut hoarders: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut stream = app.connect();
            stream.write_all(&pipelined).expect("pipeline");
            stream
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    assert_health_stays_fast(&app, 10);
    // By now (WRITE_TIMEOUT=1) the server has given up on both: what they can still read ends
    // well short of 2,000 answers, with the end of the stream or a reset.
    thread::sleep(Duration::from_secs(2));
    for hoarder in &mut hoarders {
        let received = read_until_closed(hoarder, Duration::from_secs(10));
        assert!(received.closed, "the hoarder's connection is still open");
        assert!(
            received.bytes.len() < 1000 * answer_size,
            "{} bytes sent: the server kept writing",
            received.bytes.len()
        );
    }
    assert_health_stays_fast(&app, 3);
}

#[test]
fn upgrade_is_refused_and_the_connection_stays_plain_http() {
    let app = spawn_limited_app(&[]);
    let mut stream = app.connect();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    for upgrade in ["websocket", "h2c", "TLS/1.2"] {
        let request = format!(
            "GET /health HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\n\
             Upgrade: {upgrade}\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).expect("send");
        let response = read_response(&mut stream).expect("an answer");
        assert_eq!(
            response.status, 200,
            "{upgrade}: no 101, the request is served"
        );
        assert!(!response.headers.contains_key("upgrade"), "{upgrade}");
    }
    // Still HTTP/1.1 on the same connection.
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("send");
    assert_eq!(read_response(&mut stream).expect("answer").status, 200);
}

#[test]
fn past_max_connections_a_new_connection_gets_503_at_once_and_the_others_are_unharmed() {
    // Every connection of a test comes from one address: allow it all of them.
    let app = spawn_limited_app(&[
        ("MAX_CONNECTIONS", "3"),
        ("MAX_CONNECTIONS_PER_CLIENT", "3"),
        ("IDLE_TIMEOUT", "30"),
    ]);
    let mut held: Vec<TcpStream> = (0..3).map(|_| app.connect()).collect();
    // Let the server accept all three before the fourth arrives.
    thread::sleep(Duration::from_millis(200));
    assert_turned_away(app.connect());
    for stream in &mut held {
        assert_served(stream);
    }
    // Once one closes, a new connection is served again.
    drop(held.pop());
    assert_served_again(|| app.connect());
}

#[test]
fn one_client_cannot_take_every_connection() {
    let app = spawn_limited_app(&[
        ("MAX_CONNECTIONS", "10"),
        ("MAX_CONNECTIONS_PER_CLIENT", "3"),
        ("IDLE_TIMEOUT", "30"),
    ]);
    let mut held: Vec<TcpStream> = (0..3).map(|_| connect_from("127.0.0.1", &app)).collect();
    thread::sleep(Duration::from_millis(200));
    // The fourth from the same address is turned away, though the server has room...
    assert_turned_away(connect_from("127.0.0.1", &app));
    // ...for another client, and for what the first one already holds.
    let mut other = connect_from("127.0.0.2", &app);
    assert_served(&mut other);
    for stream in &mut held {
        assert_served(stream);
    }
    // A connection closed is one the client may open again.
    drop(held.pop());
    assert_served_again(|| connect_from("127.0.0.1", &app));
}

/// Asserts a connection is turned away at once: `503` with `Retry-After: 1`, then closed.
fn assert_turned_away(mut stream: TcpStream) {
    let started = Instant::now();
    let received = read_until_closed(&mut stream, Duration::from_secs(2));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(received.closed, "{}", received.text());
    let responses = received.responses();
    assert_eq!(responses.len(), 1, "{}", received.text());
    assert_eq!(responses[0].status, 503);
    assert_eq!(
        responses[0].headers.get("retry-after").map(String::as_str),
        Some("1")
    );
    assert!(responses[0].json()["detail"].is_string());
}

/// Asserts that a new connection made by `connect` is served within 5 s: the room a closed
/// connection leaves is given back a moment after it closes.
fn assert_served_again(connect: impl Fn() -> TcpStream) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut fresh = connect();
        fresh
            .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .expect("send");
        let received = read_until_closed(&mut fresh, Duration::from_secs(2));
        if received.responses().first().map(|r| r.status) == Some(200) {
            return;
        }
        assert!(Instant::now() < deadline, "never served again");
        thread::sleep(Duration::from_millis(50));
    }
}

/// Asserts `/health` is served on this open connection.
fn assert_served(stream: &mut TcpStream) {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("send");
    assert_eq!(read_response(stream).expect("answer").status, 200);
}
