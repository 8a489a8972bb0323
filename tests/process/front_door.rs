//! The front door as the kernel sees it: what refused connections and connections past the
//! limit leave behind in the process (threads, descriptors), measured from `/proc` of the real
//! binary, which is why these are process tests rather than tests/api ones.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::harness::{exchange, settles, start, start_with, steady_usage, HEALTH, NOISE, SECRET};

/// How long an answer to a refused or turned-away connection may take.
const PROMPTLY: Duration = Duration::from_secs(1);

/// How long the threads and descriptors of connections just closed may take to go.
const SETTLING: Duration = Duration::from_secs(5);

#[test]
fn ten_thousand_http_2_requests_leave_threads_and_descriptors_where_they_were() {
    let running = start(None);
    // The first connection may allocate what every later one reuses.
    assert_eq!(refuse_http_2(running.addr, 0).0, 505);
    let before = steady_usage(&running);

    let mut slowest = Duration::ZERO;
    for attempt in 1..=10_000 {
        let (status, took) = refuse_http_2(running.addr, attempt);
        assert!(
            status == 505 || status == 400,
            "request {attempt} got {status}"
        );
        slowest = slowest.max(took);
    }

    let threads = settles(|| running.usage().threads, before.threads, SETTLING);
    let descriptors = settles(|| running.usage().descriptors, before.descriptors, SETTLING);
    eprintln!(
        "10,000 refused HTTP/2.0 requests (slowest {slowest:?}): threads {} -> {threads}, \
         descriptors {} -> {descriptors}",
        before.threads, before.descriptors
    );
    assert!(
        threads <= before.threads + NOISE,
        "threads grew from {} to {threads}",
        before.threads
    );
    assert!(
        descriptors <= before.descriptors + NOISE,
        "descriptors grew from {} to {descriptors}",
        before.descriptors
    );
}

/// Sends one HTTP/2.0 request on a new connection and reads until the server closes it,
/// within [`PROMPTLY`]. Returns the status and how long the whole answer took.
fn refuse_http_2(addr: SocketAddr, attempt: usize) -> (u16, Duration) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(PROMPTLY))
        .expect("read timeout");
    let sent = Instant::now();
    stream
        .write_all(b"GET / HTTP/2.0\r\n\r\n")
        .expect("send the request");
    let mut answer = Vec::new();
    // The server shuts its side after a refusal, so the whole answer ends with EOF.
    if let Err(err) = stream.read_to_end(&mut answer) {
        panic!(
            "request {attempt}: no complete answer within {PROMPTLY:?} ({err}), got {:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    let took = sent.elapsed();
    assert!(
        took < PROMPTLY,
        "request {attempt} was answered in {took:?}"
    );
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("request {attempt}: not an HTTP/1.1 answer: {text:?}"));
    (status, took)
}

#[test]
fn by_default_connections_past_the_limit_are_answered_503_before_descriptors_run_out() {
    // MAX_CONNECTIONS is unset, so the limit is what 256 descriptors leave after the reserve
    // and the database's share: the server must turn connections away while it still has a
    // descriptor to answer them with, rather than leave them in the listen queue. (Every
    // connection here comes from one address, so the per-client limit, half of that by
    // default, is lifted.)
    let limit = 256;
    let running = start_with(
        Some(limit),
        &[
            ("JWT_SECRET", SECRET),
            ("RUST_LOG", "info,access=off"),
            ("MAX_CONNECTIONS_PER_CLIENT", "100000"),
        ],
    );
    let mut held = Vec::new();
    let mut turned_away = 0;
    let mut peak = running.usage();
    // Bounded: the default limit is below 256, so this many attempts must meet it.
    for attempt in 0..400 {
        let mut stream = TcpStream::connect(running.addr).expect("connect");
        let asked = Instant::now();
        let answer = match exchange(&mut stream, HEALTH, PROMPTLY) {
            Ok(answer) => answer,
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!(
                    "connection {attempt} ({} held) was left waiting unanswered",
                    held.len()
                )
            }
            Err(err) => panic!("connection {attempt} ({} held) failed: {err}", held.len()),
        };
        let took = asked.elapsed();
        assert!(took < PROMPTLY, "connection {attempt} answered in {took:?}");
        if answer.starts_with("HTTP/1.1 200") {
            held.push(stream);
            peak = running.usage();
            continue;
        }
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("Retry-After: 1"), "{answer}");
        turned_away += 1;
        // Several in a row show the limit holds, not a passing shortage.
        if turned_away == 20 {
            break;
        }
    }
    eprintln!(
        "under {limit} descriptors: {} connections held, using {} descriptors and {} threads, \
         then {turned_away} turned away with 503",
        held.len(),
        peak.descriptors,
        peak.threads
    );
    assert_eq!(turned_away, 20, "the limit was never met");
    assert!(
        peak.descriptors < limit as usize,
        "{} descriptors in use at the peak: the limit was met only by running out",
        peak.descriptors
    );
    let log = running.log_so_far();
    assert!(
        !log.iter().any(|line| line.contains("Error accepting")),
        "accept failed, so descriptors ran out: {log:#?}"
    );

    // Closing held connections makes room; their threads notice the close at once, but allow
    // a moment before a new connection must be served.
    held.drain(..10);
    running.wait_until_served(SETTLING);
}

#[test]
fn sigterm_answers_the_request_in_flight_and_exits_promptly_whatever_else_is_connected() {
    let mut running = start_with(
        None,
        &[
            ("JWT_SECRET", SECRET),
            ("RUST_LOG", "info,access=off"),
            ("BODY_TIMEOUT", "2"),
        ],
    );
    let addr = running.addr;
    // Idle connections, slowloris heads, trickled bodies, and a client that pipelines answers
    // it never reads: none of them may keep the process from exiting.
    let mut hostile = stalled(addr, 200, b"");
    hostile.extend(stalled(
        addr,
        20,
        b"GET /health HTTP/1.1\r\nHost: test\r\nX-Slow: ",
    ));
    hostile.extend(stalled(
        addr,
        4,
        b"POST /auth/login HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n{",
    ));
    hostile.extend(stalled(
        addr,
        1,
        &b"GET /openapi.json HTTP/1.1\r\nHost: test\r\n\r\n".repeat(2000),
    ));

    // A registration whose body is still arriving when the signal comes must be answered.
    let body = r#"{"name":"Ada","phone":"+44 20 7946 0958","email":"ada@example.com","password":"analytical-engine"}"#;
    let (first, rest) = body.split_at(40);
    let mut in_flight = TcpStream::connect(addr).expect("connect");
    write!(
        in_flight,
        "POST /auth/register HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{first}",
        body.len()
    )
    .expect("send the start");
    std::thread::sleep(Duration::from_millis(300));

    let signalled = Instant::now();
    running.terminate();
    std::thread::sleep(Duration::from_millis(200));
    let answer = exchange(&mut in_flight, rest.as_bytes(), Duration::from_secs(5)).expect("answer");
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");

    // The tricklers may hold the shutdown until their BODY_TIMEOUT (2 s), and no longer.
    let exit = running.wait_for_exit(signalled + Duration::from_secs(5));
    eprintln!(
        "exited {:?} after SIGTERM with {} hostile connections open",
        signalled.elapsed(),
        hostile.len()
    );
    assert_eq!(exit.code(), Some(0));
}

/// Opens `count` connections that each send `bytes` (perhaps nothing) and then stall.
fn stalled(addr: SocketAddr, count: usize, bytes: &[u8]) -> Vec<TcpStream> {
    (0..count)
        .map(|_| {
            let mut stream = TcpStream::connect(addr).expect("connect");
            stream.write_all(bytes).expect("send");
            stream
        })
        .collect()
}
