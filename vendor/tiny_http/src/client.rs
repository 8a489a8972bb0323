//! backnd-api patch: one client connection, served by its own thread from accept to close.
//!
//! Upstream tiny_http read request heads on the connection's thread but left bodies, and every
//! response, to whichever thread held the request, so a client that trickled a body or did not
//! read its answers held an application worker for as long as it liked. Here the connection's
//! thread does all of the connection's I/O, each step under a deadline for the whole of it:
//!
//! 1. wait up to `idle_timeout` for a request to begin, then read its head within
//!    `header_timeout` and its whole body within `body_timeout` (`wire.rs`);
//! 2. hand the complete request to the application (run its handler here, or queue it for
//!    `recv()`) and wait for its response;
//! 3. write the response within `write_timeout`, then go back to 1, or close.
//!
//! So a connection has at most one request with the application at a time (pipelined requests
//! wait in the socket), and the application never blocks on a client. A message that breaks
//! the rules is answered with its 4xx or 5xx and the connection closed, unread bytes and all.

use std::io::{self, BufWriter, ErrorKind, Read, Write};
use std::net::Shutdown;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::common::{HTTPVersion, Header, Method};
use crate::request::{new_request, Reply};
use crate::util::refined_tcp_stream::Stream;
use crate::wire::{too_large, Framing, Refusal, Stop, Wire};
use crate::{Response, ResponseBox, Shared};

/// The most input read and dropped, and for how long, before closing a connection: closing a
/// socket with unread input makes the kernel send a reset, which can destroy the answer that
/// was just written before the client reads it.
const DISCARD_MAX_BYTES: usize = 1024 * 1024;
const DISCARD_MAX_TIME: Duration = Duration::from_secs(2);
const DISCARD_READ_TIMEOUT: Duration = Duration::from_millis(500);

/// How often a connection waiting for its response checks that the server still exists.
const RESPONSE_POLL: Duration = Duration::from_millis(250);

/// Serves one connection until it closes.
pub(crate) fn serve(mut stream: Stream, shared: &Shared) {
    let Ok(remote_addr) = stream.peer_addr() else {
        return;
    };
    let secure = stream.secure();
    let limits = &shared.limits;
    let mut wire = Wire::new(stream);
    loop {
        if shared.closing() {
            return;
        }
        let head = match wire.read_head(limits.idle_timeout, limits.header_timeout) {
            Ok(head) => head,
            Err(Stop::Closed) => return,
            Err(Stop::Refused(refusal)) => return refuse(wire, &refusal, limits.write_timeout),
        };
        // Counted from here until it is answered, so that a graceful shutdown waits for a
        // request whose body is still arriving. Counting before looking at `closing` means the
        // server either waits for this request or this request sees the shutdown.
        let arriving = Counted::begin(&shared.in_progress);
        // A refusal is not waited for by a shutdown (its close may linger for a while).
        if shared.closing() {
            drop(arriving);
            let refusal = Refusal {
                status: 503,
                detail: "Service Unavailable: the server is shutting down".to_owned(),
            };
            return refuse(wire, &refusal, limits.write_timeout);
        }
        if let Framing::Length(length) = head.framing {
            if length > limits.max_body_bytes as u64 {
                // Refused before a byte of it is read, and before `100 Continue` invites it.
                drop(arriving);
                return refuse(
                    wire,
                    &too_large(limits.max_body_bytes),
                    limits.write_timeout,
                );
            }
        }
        if head.expects_continue
            && write_within(
                &mut wire,
                b"HTTP/1.1 100 Continue\r\n\r\n",
                limits.write_timeout,
            )
            .is_err()
        {
            return;
        }
        let body_deadline = Instant::now() + limits.body_timeout;
        let body = match wire.read_body(head.framing, limits.max_body_bytes, body_deadline) {
            Ok(body) => body,
            Err(Stop::Closed) => return,
            Err(Stop::Refused(refusal)) => {
                drop(arriving);
                return refuse(wire, &refusal, limits.write_timeout);
            }
        };

        let (sender, receiver) = mpsc::sync_channel(1);
        let version = head.version.clone();
        let is_head = head.method == Method::Head;
        let client_closes = head.close;
        let request = new_request(
            secure,
            head.method,
            head.target,
            head.version,
            head.headers,
            remote_addr,
            body,
            Reply::Connection(sender),
        );
        match shared.handler.get() {
            // A panic that escapes the handler has dropped the request, which answered 500:
            // write that, rather than lose the connection's thread.
            Some(handler) => {
                let _ = panic::catch_unwind(AssertUnwindSafe(|| handler(request)));
            }
            None => shared.messages.push(request),
        }

        let Some(mut response) = wait_for_response(&receiver, shared) else {
            return;
        };
        let response_closes = closes(&response);
        let close = client_closes || shared.closing() || response_closes;
        if close && !response_closes {
            response.add_header(connection_close());
        }
        // Answered: now counted as an answer being written, which a shutdown waits for only
        // briefly (a client that does not read would hold it until the write deadline).
        let writing = Counted::begin(&shared.writing);
        drop(arriving);
        let written = write_response(&mut wire, response, version, is_head, limits.write_timeout);
        drop(writing);
        if written.is_err() {
            return;
        }
        if close {
            return close_gracefully(wire);
        }
    }
}

/// Counts one in a counter for as long as it lives.
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn begin(counter: &'a AtomicUsize) -> Counted<'a> {
        counter.fetch_add(1, Ordering::SeqCst);
        Counted(counter)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Waits for the application's response. The application always answers (a request dropped
/// unanswered answers 500 itself), but a server dropped with requests still queued never will.
fn wait_for_response(receiver: &Receiver<ResponseBox>, shared: &Shared) -> Option<ResponseBox> {
    loop {
        match receiver.recv_timeout(RESPONSE_POLL) {
            Ok(response) => return Some(response),
            Err(RecvTimeoutError::Timeout) if shared.gone() => return None,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return None,
        }
    }
}

fn closes<R: Read>(response: &Response<R>) -> bool {
    response
        .headers()
        .iter()
        .any(|h| h.field.equiv("Connection") && h.value.as_str().eq_ignore_ascii_case("close"))
}

fn connection_close() -> Header {
    Header::from_bytes(&b"Connection"[..], &b"close"[..]).expect("a valid header")
}

/// Answers a refused message with its status and a `{"detail": ...}` body, then closes.
fn refuse(mut wire: Wire, refusal: &Refusal, write_timeout: Duration) {
    log::debug!("refused a request: {} {}", refusal.status, refusal.detail);
    let response = error_response(refusal.status, &refusal.detail).boxed();
    if write_response(&mut wire, response, HTTPVersion(1, 1), false, write_timeout).is_ok() {
        close_gracefully(wire);
    }
}

/// The FastAPI-shaped error every answer of the service carries, closing the connection.
pub(crate) fn error_response(status: u16, detail: &str) -> Response<io::Cursor<Vec<u8>>> {
    let body = format!("{{\"detail\":\"{}\"}}", json_escape(detail));
    let mut response = Response::from_data(body.into_bytes())
        .with_status_code(status)
        .with_header(
            Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..])
                .expect("a valid header"),
        )
        .with_header(connection_close());
    if status == 503 {
        response.add_header(Header::from_bytes(&b"Retry-After"[..], &b"1"[..]).expect("valid"));
    }
    response
}

fn json_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Writes a whole response within `timeout`; a client that does not take it in time is
/// dropped.
fn write_response(
    wire: &mut Wire,
    response: ResponseBox,
    version: HTTPVersion,
    is_head: bool,
    timeout: Duration,
) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut writer = BufWriter::with_capacity(8 * 1024, DeadlineWriter { wire, deadline });
    response.raw_print(&mut writer, version, &[], is_head, None)?;
    writer.flush()
}

fn write_within(wire: &mut Wire, bytes: &[u8], timeout: Duration) -> io::Result<()> {
    DeadlineWriter {
        wire,
        deadline: Instant::now() + timeout,
    }
    .write_all(bytes)
}

/// A writer that gives up at `deadline`, however the client paces its reading.
struct DeadlineWriter<'a> {
    wire: &'a mut Wire,
    deadline: Instant,
}

impl Write for DeadlineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.wire.write_deadline(self.deadline)?;
        self.wire.stream().write(buf).map_err(|e| {
            if e.kind() == ErrorKind::WouldBlock {
                ErrorKind::TimedOut.into()
            } else {
                e
            }
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        self.wire.stream().flush()
    }
}

/// Stops writing, then reads and drops what the client is still sending, within a byte and
/// time budget, so that closing does not reset an answer the client has yet to read.
fn close_gracefully(mut wire: Wire) {
    let stream = wire.stream();
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(DISCARD_READ_TIMEOUT));
    let deadline = Instant::now() + DISCARD_MAX_TIME;
    let mut discarded = 0;
    let mut buf = vec![0u8; 4096];
    while discarded < DISCARD_MAX_BYTES && Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => discarded += n,
        }
    }
}
