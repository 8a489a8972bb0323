//! The front door, tried as an attacker would over raw sockets: message framing that two
//! parsers could read differently (request smuggling), malformed heads, protocol versions we
//! do not speak, and the valid forms that must keep working.
//!
//! Every refused message gets one FastAPI-shaped answer and a closed connection, so no byte
//! after it is ever run as a request: each case hides a registration after the message and
//! checks that nobody was registered.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{
    count_users, read_until_closed, send_and_read, spawn_app, valid_registration, RawResponse,
    Received, TestApp,
};

/// How long any of these answers may take: they need no timeout to pass.
const PROMPTLY: Duration = Duration::from_secs(5);

/// A registration request, hidden after a message whose framing is in question.
fn smuggled_registration() -> Vec<u8> {
    let body = valid_registration("smuggled@example.com", "correct horse").to_string();
    format!(
        "POST /auth/register HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Asserts the one answer of a refused message: `status`, a `{"detail": string}` JSON body,
/// `Connection: close`, and then the connection closed, nothing more sent.
fn assert_refused_and_closed(received: &Received, status: u16, case: &str) -> RawResponse {
    assert!(
        received.closed,
        "{case}: the connection stays open after {:?}",
        received.text()
    );
    let mut responses = received.responses();
    assert_eq!(
        responses.len(),
        1,
        "{case}: exactly one answer, got {:?}",
        received.text()
    );
    let response = responses.remove(0);
    assert_eq!(response.status, status, "{case}: {:?}", received.text());
    assert_eq!(
        response.headers.get("content-type").map(String::as_str),
        Some("application/json"),
        "{case}"
    );
    assert_eq!(
        response.headers.get("connection").map(String::as_str),
        Some("close"),
        "{case}"
    );
    // As every answer: see tests/api/headers.rs.
    assert_eq!(
        response
            .headers
            .get("x-content-type-options")
            .map(String::as_str),
        Some("nosniff"),
        "{case}"
    );
    assert!(
        response.json()["detail"].is_string(),
        "{case}: {:?}",
        received.text()
    );
    response
}

/// Sends `message` followed by the hidden registration, and checks the refusal.
fn assert_smuggling_refused(app: &TestApp, message: &[u8], status: u16, case: &str) {
    let mut bytes = message.to_vec();
    bytes.extend_from_slice(&smuggled_registration());
    let received = send_and_read(app, &bytes, PROMPTLY);
    assert_refused_and_closed(&received, status, case);
}

#[test]
fn conflicting_or_malformed_lengths_are_refused_and_what_follows_never_runs() {
    let app = spawn_app();
    let cases: &[(&str, &str, &str, u16)] = &[
        (
            "Content-Length then Transfer-Encoding",
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
            "0\r\n\r\n",
            400,
        ),
        (
            "Transfer-Encoding then Content-Length",
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
            "0\r\n\r\n",
            400,
        ),
        (
            "two different lengths",
            "Content-Length: 5\r\nContent-Length: 0\r\n",
            "hello",
            400,
        ),
        (
            "the same length twice",
            "Content-Length: 5\r\nContent-Length: 5\r\n",
            "hello",
            400,
        ),
        (
            "a list of lengths",
            "Content-Length: 5, 5\r\n",
            "hello",
            400,
        ),
        ("a negative length", "Content-Length: -1\r\n", "", 400),
        ("a signed length", "Content-Length: +2\r\n", "{}", 400),
        ("an exponent", "Content-Length: 1e3\r\n", "", 400),
        ("a hexadecimal length", "Content-Length: 0x10\r\n", "", 400),
        ("a fractional length", "Content-Length: 2.0\r\n", "{}", 400),
        ("an empty length", "Content-Length: \r\n", "", 400),
        (
            "a length one past 64 bits",
            "Content-Length: 18446744073709551616\r\n",
            "",
            400,
        ),
        (
            "a length of 26 digits",
            "Content-Length: 99999999999999999999999999\r\n",
            "",
            400,
        ),
        (
            "a coding that is not chunked",
            "Transfer-Encoding: gzip\r\n",
            "",
            400,
        ),
        ("identity", "Transfer-Encoding: identity\r\n", "", 400),
        (
            "chunked not last",
            "Transfer-Encoding: chunked, identity\r\n",
            "0\r\n\r\n",
            400,
        ),
        (
            "a look-alike of chunked",
            "Transfer-Encoding: xchunked\r\n",
            "0\r\n\r\n",
            400,
        ),
        (
            "an empty coding",
            "Transfer-Encoding: chunked,\r\n",
            "0\r\n\r\n",
            400,
        ),
        (
            "a space before the colon",
            "Transfer-Encoding : chunked\r\n",
            "0\r\n\r\n",
            400,
        ),
        (
            "a coding we do not implement before chunked",
            "Transfer-Encoding: gzip, chunked\r\n",
            "0\r\n\r\n",
            501,
        ),
        (
            "chunked twice",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            "0\r\n\r\n",
            501,
        ),
    ];
    for (case, headers, body, status) in cases {
        let message = format!(
            "POST /auth/register HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
             {headers}\r\n{body}"
        );
        assert_smuggling_refused(&app, message.as_bytes(), *status, case);
    }
    let message = b"POST /auth/register HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_smuggling_refused(&app, message, 400, "Transfer-Encoding in HTTP/1.0");
    assert_eq!(count_users(&app), 0, "a hidden registration ran");
    assert_eq!(app.get("/health", &[]).status, 200, "still serving");
}

#[test]
fn malformed_chunked_bodies_are_refused_and_what_follows_never_runs() {
    let app = spawn_app();
    let long_extension = format!("1;{}\r\na\r\n0\r\n\r\n", "x".repeat(300));
    let endless_size = "1".repeat(64 * 1024);
    let long_trailer = format!("0\r\nX-Trailer: {}\r\n\r\n", "t".repeat(5000));
    let cases: &[(&str, &str, u16)] = &[
        ("a size that is not hexadecimal", "zz\r\n\r\n0\r\n\r\n", 400),
        ("a negative size", "-1\r\na\r\n0\r\n\r\n", 400),
        ("a signed size", "+5\r\nhello\r\n0\r\n\r\n", 400),
        ("a 0x prefix", "0x5\r\nhello\r\n0\r\n\r\n", 400),
        ("an empty size", "\r\nhello\r\n0\r\n\r\n", 400),
        ("a size over 64 bits", "11111111111111111\r\n", 400),
        ("a space inside the size", "1 0\r\n", 400),
        ("size lines ending in bare LF", "5\nhello\n0\n\n", 400),
        (
            "a size line ending in bare CR",
            "5\rhello\r\n0\r\n\r\n",
            400,
        ),
        ("data not followed by CRLF", "5\r\nhelloXX0\r\n\r\n", 400),
        ("data longer than its size", "2\r\nhello\r\n0\r\n\r\n", 400),
        ("an extension past the line bound", &long_extension, 400),
        ("a size line that never ends", &endless_size, 400),
        ("trailers past their bound", &long_trailer, 400),
        (
            "a trailer that is not a field",
            "0\r\nnot a field\r\n\r\n",
            400,
        ),
        (
            "a trailer with a control byte",
            "0\r\nX-T: a\x01b\r\n\r\n",
            400,
        ),
        ("a size over the body limit", "ffffffffffffffff\r\n", 413),
        ("chunks adding up past the body limit", "10001\r\n", 413),
    ];
    for (case, body, status) in cases {
        let message = format!(
            "POST /auth/register HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\n\r\n{body}"
        );
        assert_smuggling_refused(&app, message.as_bytes(), *status, case);
    }
    assert_eq!(count_users(&app), 0, "a hidden registration ran");
}

#[test]
fn malformed_heads_are_refused_with_400() {
    let app = spawn_app();
    let cases: &[(&str, &[u8])] = &[
        (
            "NUL in a value",
            b"GET /health HTTP/1.1\r\nHost: t\r\nX-A: a\0b\r\n\r\n",
        ),
        (
            "bare CR in a value",
            b"GET /health HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n",
        ),
        (
            "a bare LF line end",
            b"GET /health HTTP/1.1\r\nHost: t\nX-A: b\r\n\r\n",
        ),
        (
            "a bare LF request line",
            b"GET /health HTTP/1.1\nHost: t\r\n\r\n",
        ),
        (
            "a control byte in a value",
            b"GET /health HTTP/1.1\r\nHost: t\r\nX-A: \x01\r\n\r\n",
        ),
        (
            "DEL in a value",
            b"GET /health HTTP/1.1\r\nHost: t\r\nX-A: a\x7fb\r\n\r\n",
        ),
        (
            "a control byte in a name",
            b"GET /health HTTP/1.1\r\nHost: t\r\nX\x01A: b\r\n\r\n",
        ),
        (
            "a space before the colon",
            b"GET /health HTTP/1.1\r\nHost: t\r\nX-A : b\r\n\r\n",
        ),
        (
            "a space inside a name",
            b"GET /health HTTP/1.1\r\nHost: t\r\nX A: b\r\n\r\n",
        ),
        (
            "an empty name",
            b"GET /health HTTP/1.1\r\nHost: t\r\n: b\r\n\r\n",
        ),
        (
            "obs-fold",
            b"GET /health HTTP/1.1\r\nHost: t\r\nX-A: b\r\n  c\r\n\r\n",
        ),
        (
            "a value that is not ASCII",
            "GET /health HTTP/1.1\r\nHost: t\r\nX-A: é\r\n\r\n".as_bytes(),
        ),
        (
            "HTTP/1.1 without Host",
            b"GET /health HTTP/1.1\r\nX-A: b\r\n\r\n",
        ),
        (
            "two Host headers",
            b"GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        ),
        (
            "two spaces in the request line",
            b"GET  /health HTTP/1.1\r\nHost: t\r\n\r\n",
        ),
        (
            "a request line without a target",
            b"GET HTTP/1.1\r\nHost: t\r\n\r\n",
        ),
        (
            "a method that is not a token",
            b"GE(T /health HTTP/1.1\r\nHost: t\r\n\r\n",
        ),
    ];
    for (case, message) in cases {
        let received = send_and_read(&app, message, PROMPTLY);
        assert_refused_and_closed(&received, 400, case);
    }
    assert_eq!(app.get("/health", &[]).status, 200, "still serving");
}

#[test]
fn versions_we_do_not_speak_are_answered_within_a_second_and_closed() {
    let app = spawn_app();
    let cases: &[(&str, &[u8], u16)] = &[
        // Only the request line: a client speaking another version may wait for an answer
        // before it sends anything more, so the answer must not wait for a full head.
        ("HTTP/2.0", b"GET / HTTP/2.0\r\n", 505),
        (
            "the HTTP/2 preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            505,
        ),
        ("HTTP/1.2", b"GET / HTTP/1.2\r\n", 505),
        ("HTTP/3", b"GET / HTTP/3\r\n", 505),
        ("HTTP/0.9", b"GET / HTTP/0.9\r\n", 505),
        (
            "a TLS client hello",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            400,
        ),
        ("binary garbage", b"\x00\xff\xfe\x13\x37", 400),
        ("words", b"hello there\r\n", 400),
    ];
    for (case, bytes, status) in cases {
        // The sending side stays open: the server must answer on its own, not on our EOF.
        let mut stream = app.connect();
        stream.write_all(bytes).expect("send");
        let started = Instant::now();
        let received = read_until_closed(&mut stream, Duration::from_secs(1));
        assert_refused_and_closed(&received, *status, case);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{case}: answered after {:?}",
            started.elapsed()
        );
    }
    assert_eq!(app.get("/health", &[]).status, 200, "still serving");
}

#[test]
fn a_chunked_registration_with_extensions_and_trailers_is_accepted() {
    let app = spawn_app();
    let body = valid_registration("ada@example.com", "correct horse").to_string();
    let (first, second) = body.split_at(10);
    let message = format!(
        "POST /auth/register HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:X};name=value\r\n{first}\r\n{:x} ; flag\r\n{second}\r\n\
         0\r\nX-Checksum: none\r\n\r\n",
        first.len(),
        second.len()
    );
    let received = send_and_read(&app, message.as_bytes(), PROMPTLY);
    let responses = received.responses();
    assert_eq!(responses.len(), 1, "{}", received.text());
    assert_eq!(responses[0].status, 201, "{}", received.text());
    assert_eq!(responses[0].json()["email"], json!("ada@example.com"));
    assert_eq!(count_users(&app), 1);
}

#[test]
fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let app = spawn_app();
    let registration = valid_registration("ada@example.com", "correct horse").to_string();
    let login = json!({ "email": "ada@example.com", "password": "correct horse" }).to_string();
    let mut bytes = b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n".to_vec();
    bytes.extend_from_slice(
        format!(
            "POST /auth/register HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{registration}",
            registration.len()
        )
        .as_bytes(),
    );
    bytes.extend_from_slice(
        format!(
            "POST /auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{login}\r\n0\r\n\r\n",
            login.len()
        )
        .as_bytes(),
    );
    bytes.extend_from_slice(b"GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n");
    bytes.extend_from_slice(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let received = send_and_read(&app, &bytes, PROMPTLY);
    assert!(received.closed, "Connection: close is honoured");
    let statuses: Vec<u16> = received.responses().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 201, 200, 404, 200], "{}", received.text());
}

#[test]
fn bodies_may_hold_any_bytes_however_they_are_framed() {
    let app = spawn_app();
    // Pretty-printed JSON has bare LFs, and arrives in one write with its head: they are body
    // bytes, not line ends, whether the body is framed by length or chunked.
    let pretty =
        serde_json::to_string_pretty(&valid_registration("ada@example.com", "a\rb\nc\r\nd!"))
            .expect("JSON");
    assert!(pretty.contains('\n'));
    let by_length = format!(
        "POST /auth/register HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{pretty}",
        pretty.len()
    );
    let received = send_and_read(&app, by_length.as_bytes(), PROMPTLY);
    assert_eq!(received.responses()[0].status, 201, "{}", received.text());

    let pretty = pretty.replace("ada@", "bob@");
    let chunked = format!(
        "POST /auth/register HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{pretty}\r\n0\r\n\r\n",
        pretty.len()
    );
    let received = send_and_read(&app, chunked.as_bytes(), PROMPTLY);
    assert_eq!(received.responses()[0].status, 201, "{}", received.text());
    // And the password with CR and LF in it is the one that works.
    assert_eq!(app.login("bob@example.com", "a\rb\nc\r\nd!").status, 200);
    assert_eq!(count_users(&app), 2);
}

#[test]
fn empty_lines_before_a_request_are_ignored_and_http_1_0_is_served_then_closed() {
    let app = spawn_app();
    let received = send_and_read(
        &app,
        b"\r\n\r\nGET /health HTTP/1.1\r\nHost: t\r\n\r\n",
        PROMPTLY,
    );
    assert_eq!(received.responses()[0].status, 200, "{}", received.text());

    // HTTP/1.0 needs no Host, and its connection closes after the answer.
    let mut stream = app.connect();
    stream
        .write_all(b"GET /health HTTP/1.0\r\n\r\n")
        .expect("send");
    let received = read_until_closed(&mut stream, PROMPTLY);
    assert!(
        received.closed,
        "an HTTP/1.0 connection is closed after its answer"
    );
    let responses = received.responses();
    assert_eq!(responses.len(), 1, "{}", received.text());
    assert_eq!(responses[0].status, 200);
}

#[test]
fn an_expectation_other_than_100_continue_gets_417() {
    let app = spawn_app();
    let message = b"POST /auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
        Content-Length: 2\r\nExpect: 200-ok\r\n\r\n{}";
    let received = send_and_read(&app, message, PROMPTLY);
    assert_refused_and_closed(&received, 417, "Expect: 200-ok");
}

#[test]
fn an_oversized_body_announced_with_100_continue_is_refused_without_inviting_it() {
    let app = spawn_app();
    let mut stream = app.connect();
    stream
        .write_all(
            b"POST /auth/register HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
              Content-Length: 10485760\r\nExpect: 100-continue\r\n\r\n",
        )
        .expect("send the head");
    let received = read_until_closed(&mut stream, PROMPTLY);
    // The first and only answer is the refusal: no `100 Continue` invites the 10 MiB.
    assert_refused_and_closed(&received, 413, "Content-Length: 10 MiB with 100-continue");
}

#[test]
fn over_long_request_lines_get_414_and_over_large_heads_get_431() {
    let app = spawn_app();
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000));
    let received = send_and_read(&app, long_target.as_bytes(), PROMPTLY);
    assert_refused_and_closed(&received, 414, "a 9,000-byte target");

    // Each line is within 8 KiB and there are fewer than 100, but together over 32 KiB: refused
    // whether the head arrives in one write (so one read can bring in both the limit and the
    // end of the head) or in small pieces.
    for total in [33_297, 36_000, 40_000] {
        let mut head = String::from("GET /health HTTP/1.1\r\nHost: t\r\n");
        while head.len() + 1000 < total {
            head.push_str(&format!("X-{:04}: {}\r\n", head.len(), "w".repeat(990)));
        }
        head.push_str(&format!(
            "X-Last: {}\r\n\r\n",
            "w".repeat(total - head.len() - 12)
        ));
        assert_eq!(head.len(), total);
        let received = send_and_read(&app, head.as_bytes(), PROMPTLY);
        assert_refused_and_closed(&received, 431, &format!("a {total}-byte head in one write"));

        let mut stream = app.connect();
        for piece in head.as_bytes().chunks(1000) {
            if stream.write_all(piece).is_err() {
                break;
            }
        }
        let received = read_until_closed(&mut stream, PROMPTLY);
        assert_refused_and_closed(&received, 431, &format!("a {total}-byte head in pieces"));
    }
}
