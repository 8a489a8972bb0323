//! backnd-api patch: reading one request off a connection, strictly, within deadlines.
//!
//! Upstream tiny_http parsed heads line by line with its own lenient parser and left bodies to be
//! read later by whoever held the request, through readers that trusted `Content-Length` and
//! `Transfer-Encoding` as they found them. That let conflicting framing through (request
//! smuggling) and let a slow body hold an application worker. Here the connection's own thread
//! reads the whole message, head and body, before anything else sees it:
//!
//! - the head is parsed by `httparse` (the parser under hyper) and then checked against RFC 9112:
//!   CRLF line endings only, `Host` on HTTP/1.1, and message framing by section 6 (one plain
//!   `Content-Length`, or `Transfer-Encoding` ending in `chunked` and never both);
//! - the body is read in full, up to the configured limit, by length or by a strict chunked
//!   decoder with bounded chunk-size lines and trailers;
//! - every wait has a deadline for the whole head or the whole body, not for each byte.
//!
//! Anything that does not pass is a [`Refusal`]: the caller answers it and closes the
//! connection, so no byte after a refused message is ever read as a request.

use std::convert::TryFrom;
use std::io::{self, ErrorKind, Read};
use std::time::{Duration, Instant};

use ascii::AsciiString;

use crate::common::{HTTPVersion, Header, HeaderField, Method};
use crate::util::refined_tcp_stream::Stream;

/// The largest request head (request line and header lines) accepted.
pub(crate) const MAX_HEAD_BYTES: usize = 32 * 1024;

/// The longest request line, or header line, accepted.
pub(crate) const MAX_LINE_BYTES: usize = 8 * 1024;

/// The most header lines accepted in one request.
pub(crate) const MAX_HEADERS: usize = 100;

/// The longest chunk-size line (with its extensions) accepted in a chunked body.
pub(crate) const MAX_CHUNK_LINE_BYTES: usize = 256;

/// The most bytes of trailer fields accepted after the last chunk.
pub(crate) const MAX_TRAILER_BYTES: usize = 4 * 1024;

/// How much is read from the socket at a time.
const READ_CHUNK: usize = 4 * 1024;

/// The least read at a time, and all that is read for the start of a request: most requests
/// fit, and an idle connection holds no more than this while it waits.
const FIRST_READ: usize = 1024;

/// Why a message is refused: the status and `detail` its answer carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: u16,
    pub(crate) detail: String,
}

impl Refusal {
    fn new(status: u16, detail: impl Into<String>) -> Refusal {
        Refusal {
            status,
            detail: detail.into(),
        }
    }

    fn bad(detail: impl Into<String>) -> Refusal {
        Refusal::new(400, detail)
    }

    fn timeout() -> Refusal {
        Refusal::new(408, "Request Timeout")
    }
}

/// How reading a message ended, when it did not give a message.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The peer closed, reset, or stayed silent between requests: close without an answer.
    Closed,
    /// The message is refused: answer it, then close.
    Refused(Refusal),
}

impl From<Refusal> for Stop {
    fn from(refusal: Refusal) -> Stop {
        Stop::Refused(refusal)
    }
}

/// How a request's body is delimited (RFC 9112 section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// The chunked transfer coding.
    Chunked,
}

/// A request head that passed every check.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) method: Method,
    pub(crate) target: String,
    pub(crate) version: HTTPVersion,
    pub(crate) headers: Vec<Header>,
    pub(crate) framing: Framing,
    /// The client sent `Expect: 100-continue` and waits for `100 Continue` before its body.
    pub(crate) expects_continue: bool,
    /// The client wants the connection closed after this request (or speaks HTTP/1.0).
    pub(crate) close: bool,
}

/// How far past its deadline a wait on the socket may run. The socket's timeout set for one wait
/// then serves the next ones as long as it is within this of the time left: otherwise each
/// keep-alive request would cost two more system calls, to set the read and write timeouts.
const TIMEOUT_SLACK: Duration = Duration::from_millis(100);

/// A connection's socket with the bytes read from it but not yet used.
pub(crate) struct Wire {
    stream: Stream,
    buffered: Vec<u8>,
    /// The socket's read and write timeouts as last set.
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

impl Wire {
    pub(crate) fn new(stream: Stream) -> Wire {
        Wire {
            stream,
            buffered: Vec::new(),
            read_timeout: None,
            write_timeout: None,
        }
    }

    pub(crate) fn stream(&mut self) -> &mut Stream {
        &mut self.stream
    }

    /// Makes the next write on the socket give up at `deadline` (within [`TIMEOUT_SLACK`]).
    pub(crate) fn write_deadline(&mut self, deadline: Instant) -> io::Result<()> {
        let timeout = time_left(deadline, self.write_timeout)?;
        if let Some(timeout) = timeout {
            self.stream.set_write_timeout(Some(timeout))?;
            self.write_timeout = Some(timeout);
        }
        Ok(())
    }

    /// Reads more bytes, waiting no later than `deadline`. `Ok(0)` is the end of the stream.
    fn fill(&mut self, deadline: Instant) -> io::Result<usize> {
        if let Some(timeout) = time_left(deadline, self.read_timeout)? {
            self.stream.set_read_timeout(Some(timeout))?;
            self.read_timeout = Some(timeout);
        }
        // Read straight into the buffer, not through an array on the stack: every idle
        // connection's thread waits in here, and each stack page it touches stays resident
        // for as long as the thread lives. A connection between requests reads little.
        // Read about as much as has arrived so far: a head trickling in keeps a buffer the
        // size of what it sent, not of the largest read.
        let start = self.buffered.len();
        let want = start.clamp(FIRST_READ, READ_CHUNK);
        self.buffered.reserve_exact(want);
        self.buffered.resize(start + want, 0);
        let read = loop {
            match self.stream.read(&mut self.buffered[start..]) {
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match read {
            Ok(n) => {
                self.buffered.truncate(start + n);
                Ok(n)
            }
            Err(e) => {
                self.buffered.truncate(start);
                if e.kind() == ErrorKind::WouldBlock {
                    Err(ErrorKind::TimedOut.into())
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Drops the first `n` buffered bytes, and lets go of memory a large message needed.
    fn consume(&mut self, n: usize) {
        self.buffered.drain(..n);
        if self.buffered.capacity() > 2 * READ_CHUNK && self.buffered.len() <= READ_CHUNK {
            self.buffered.shrink_to(READ_CHUNK);
        }
    }

    /// Reads the next request head. Waits up to `idle` for its first byte, then up to
    /// `header_timeout` from that byte for the whole head.
    pub(crate) fn read_head(
        &mut self,
        idle: Duration,
        header_timeout: Duration,
    ) -> Result<Head, Stop> {
        if self.buffered.is_empty() {
            // Nothing is pending: an idle connection keeps no buffer.
            self.buffered = Vec::new();
        }
        let mut deadline = Instant::now() + idle;
        let mut started = false;
        // How far the line-ending scan and the searches for the request line's end and the
        // head's end have got, so that a head trickling in a byte at a time is not searched
        // again from its start on every read.
        let mut scanned = 0;
        let mut line_searched = 0;
        let mut head_searched = 0;
        let mut request_line_checked = false;
        loop {
            // RFC 9112 section 2.2: empty lines before a request line are ignored.
            let leading = leading_empty_lines(&self.buffered);
            if leading > 0 {
                self.consume(leading);
                (scanned, line_searched, head_searched) = (0, 0, 0);
            }
            if !self.buffered.is_empty() && !started {
                started = true;
                deadline = Instant::now() + header_timeout;
            }
            // Only the head is lines: bytes after it (a body, the next request) are not
            // scanned, since a body may hold any bytes.
            let end = find_from(&self.buffered, b"\r\n\r\n", &mut head_searched);
            let head_so_far = end.map_or(self.buffered.len(), |end| end + 4);
            check_line_endings(&self.buffered[..head_so_far], &mut scanned)?;
            if let Some(end) = end {
                // However the bytes arrived: one read can bring both the limit and the end.
                if end + 4 > MAX_HEAD_BYTES {
                    return Err(Refusal::new(431, "Request Header Fields Too Large").into());
                }
                let head = parse_head(&self.buffered[..end + 4])?;
                self.consume(end + 4);
                return Ok(head);
            }
            if !request_line_checked {
                // Refuse a version we do not speak, or garbage, as soon as it shows: a TLS or
                // HTTP/2 client waits for an answer rather than finishing a head.
                match find_from(&self.buffered, b"\r\n", &mut line_searched) {
                    Some(line_end) => {
                        check_request_line(&self.buffered[..line_end + 2])?;
                        request_line_checked = true;
                    }
                    None if self.buffered.len() > MAX_LINE_BYTES => {
                        return Err(Refusal::new(414, "URI Too Long").into());
                    }
                    None => check_request_line(&self.buffered)?,
                }
            }
            if self.buffered.len() > MAX_HEAD_BYTES {
                return Err(Refusal::new(431, "Request Header Fields Too Large").into());
            }
            match self.fill(deadline) {
                Ok(0) => return Err(Stop::Closed),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::TimedOut && started => {
                    return Err(Refusal::timeout().into())
                }
                Err(_) => return Err(Stop::Closed),
            }
        }
    }

    /// Reads the body `framing` describes, of at most `limit` bytes, within `deadline`.
    pub(crate) fn read_body(
        &mut self,
        framing: Framing,
        limit: usize,
        deadline: Instant,
    ) -> Result<Vec<u8>, Stop> {
        match framing {
            Framing::Empty => Ok(Vec::new()),
            Framing::Length(length) => {
                // The head was refused with 413 past the limit, so this fits in memory.
                let length = usize::try_from(length).map_err(|_| too_large(limit))?;
                if length > limit {
                    return Err(too_large(limit).into());
                }
                while self.buffered.len() < length {
                    self.fill_body(deadline)?;
                }
                let body = self.buffered[..length].to_vec();
                self.consume(length);
                Ok(body)
            }
            Framing::Chunked => self.read_chunked(limit, deadline),
        }
    }

    /// Reads more of a body: the end of the stream or a failure closes the connection (nobody
    /// is left to read an answer), the deadline passing is answered 408.
    fn fill_body(&mut self, deadline: Instant) -> Result<(), Stop> {
        match self.fill(deadline) {
            Ok(0) => Err(Stop::Closed),
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::TimedOut => Err(Refusal::timeout().into()),
            Err(_) => Err(Stop::Closed),
        }
    }

    /// Reads one CRLF-terminated line of at most `max` bytes (CRLF included), without its CRLF.
    fn read_line(&mut self, max: usize, deadline: Instant, what: &str) -> Result<Vec<u8>, Stop> {
        let mut scanned = 0;
        loop {
            // Only this line is scanned: chunk data after it may hold any bytes.
            let end = find(&self.buffered, b"\r\n");
            let line_so_far = end.map_or(self.buffered.len(), |end| end + 2);
            check_line_endings(&self.buffered[..line_so_far], &mut scanned)
                .map_err(|_| Refusal::bad(format!("Invalid {what}: lines must end with CRLF")))?;
            if let Some(end) = end {
                if end + 2 > max {
                    break;
                }
                let line = self.buffered[..end].to_vec();
                self.consume(end + 2);
                return Ok(line);
            }
            if self.buffered.len() >= max {
                break;
            }
            self.fill_body(deadline)?;
        }
        Err(Refusal::bad(format!("Invalid {what}: longer than {max} bytes")).into())
    }

    /// The chunked transfer coding (RFC 9112 section 7.1), strictly: hexadecimal sizes without
    /// sign or overflow, extensions of visible characters, CRLF after every chunk, and trailer
    /// fields (read and dropped) within a bound.
    fn read_chunked(&mut self, limit: usize, deadline: Instant) -> Result<Vec<u8>, Stop> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line(MAX_CHUNK_LINE_BYTES, deadline, "chunk size line")?;
            let size = parse_chunk_size(&line)?;
            if size == 0 {
                break;
            }
            let size = usize::try_from(size).map_err(|_| too_large(limit))?;
            if size > limit.saturating_sub(body.len()) {
                return Err(too_large(limit).into());
            }
            while self.buffered.len() < size + 2 {
                self.fill_body(deadline)?;
            }
            if &self.buffered[size..size + 2] != b"\r\n" {
                return Err(Refusal::bad("Invalid chunk: its data must end with CRLF").into());
            }
            body.extend_from_slice(&self.buffered[..size]);
            self.consume(size + 2);
        }
        let mut trailer_bytes = 0;
        loop {
            let room = MAX_TRAILER_BYTES.saturating_sub(trailer_bytes).max(2);
            let line = self.read_line(room, deadline, "trailer section")?;
            if line.is_empty() {
                return Ok(body);
            }
            trailer_bytes += line.len() + 2;
            check_trailer_line(&line)?;
        }
    }
}

/// The socket timeout a wait ending at `deadline` needs: `None` when `current` will do (it ends
/// the wait no earlier than the deadline, and no later than [`TIMEOUT_SLACK`] after it), a
/// `TimedOut` error when the deadline has passed.
fn time_left(deadline: Instant, current: Option<Duration>) -> io::Result<Option<Duration>> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return Err(ErrorKind::TimedOut.into());
    }
    match current {
        Some(current) if current >= remaining && current <= remaining + TIMEOUT_SLACK => Ok(None),
        // A zero duration means "no timeout" to the socket, so never ask for one.
        _ => Ok(Some(remaining.max(Duration::from_millis(1)))),
    }
}

/// The 413 for a body over `limit`, worded as the application words it.
pub(crate) fn too_large(limit: usize) -> Refusal {
    Refusal::new(
        413,
        format!("Request body too large: the limit is {limit} bytes"),
    )
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// [`find`], skipping what an earlier search of the same growing buffer has looked at:
/// `*searched` is where that search stopped, and is moved to where this one does.
fn find_from(haystack: &[u8], needle: &[u8], searched: &mut usize) -> Option<usize> {
    // A match may straddle the old end, so look again at the bytes just before it.
    let from = (*searched + 1).saturating_sub(needle.len());
    let found = find(&haystack[from.min(haystack.len())..], needle).map(|at| from + at);
    *searched = haystack.len();
    found
}

/// How many bytes of empty lines (CRLF pairs) `buffered` starts with.
fn leading_empty_lines(buffered: &[u8]) -> usize {
    let mut at = 0;
    while buffered[at..].starts_with(b"\r\n") {
        at += 2;
    }
    at
}

/// Refuses a bare LF, or a CR not followed by LF, in `buffered[*scanned..]`. Lines end with
/// CRLF and nothing else: a peer that takes a bare LF or CR as a line end would see other
/// header lines than we do.
fn check_line_endings(buffered: &[u8], scanned: &mut usize) -> Result<(), Refusal> {
    let mut at = *scanned;
    while at < buffered.len() {
        match buffered[at] {
            b'\n' if at == 0 || buffered[at - 1] != b'\r' => {
                return Err(Refusal::bad("Invalid line ending: bare LF"))
            }
            b'\r' => match buffered.get(at + 1) {
                // The next byte has not arrived yet: look again once it has.
                None => break,
                Some(b'\n') => {}
                Some(_) => return Err(Refusal::bad("Invalid line ending: bare CR")),
            },
            _ => {}
        }
        at += 1;
    }
    *scanned = at;
    Ok(())
}

/// Checks a request line on its own (`line` ends with CRLF), before the rest of the head.
fn check_request_line(line: &[u8]) -> Result<(), Refusal> {
    if line.len() > MAX_LINE_BYTES {
        return Err(Refusal::new(414, "URI Too Long"));
    }
    let mut no_headers = [];
    let mut request = httparse::Request::new(&mut no_headers);
    match request.parse(line) {
        // Partial: the line was fine and httparse now waits for header lines.
        Ok(_) => Ok(()),
        Err(httparse::Error::TooManyHeaders) => Ok(()),
        Err(err) => Err(parse_refusal(err)),
    }
}

fn parse_refusal(err: httparse::Error) -> Refusal {
    match err {
        httparse::Error::Version => {
            Refusal::new(505, "HTTP Version Not Supported: use HTTP/1.1 or HTTP/1.0")
        }
        httparse::Error::TooManyHeaders => Refusal::new(431, "Request Header Fields Too Large"),
        httparse::Error::HeaderName => Refusal::bad("Invalid header name"),
        httparse::Error::HeaderValue => Refusal::bad("Invalid header value"),
        httparse::Error::NewLine => Refusal::bad("Invalid line ending"),
        httparse::Error::Token => Refusal::bad("Invalid request method"),
        httparse::Error::Status => Refusal::bad("Invalid request line"),
    }
}

/// Parses a complete head (ending with the empty line) and checks what httparse leaves to us.
fn parse_head(bytes: &[u8]) -> Result<Head, Refusal> {
    // On the heap: 3 KiB of stack would stay resident in every connection's thread.
    let mut slots = vec![httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut slots);
    match request.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(Refusal::bad("Invalid request head")),
        Err(err) => return Err(parse_refusal(err)),
    }
    let (Some(method), Some(target), Some(minor)) = (request.method, request.path, request.version)
    else {
        return Err(Refusal::bad("Invalid request line"));
    };
    if method.len() + target.len() + "  HTTP/1.1".len() > MAX_LINE_BYTES {
        return Err(Refusal::new(414, "URI Too Long"));
    }
    let version = HTTPVersion(1, minor);
    if !target.is_ascii() {
        return Err(Refusal::bad("Invalid request target"));
    }
    let method: Method = method
        .parse()
        .map_err(|_| Refusal::bad("Invalid request method"))?;

    let mut headers = Vec::with_capacity(request.headers.len());
    for header in request.headers.iter() {
        if header.name.len() + header.value.len() + 2 > MAX_LINE_BYTES {
            return Err(Refusal::new(431, "Request Header Fields Too Large"));
        }
        // httparse has refused control characters; bytes over 0x7F (obs-text) are refused
        // here, since no header this service reads may carry them.
        let value = AsciiString::from_ascii(trim_whitespace(header.value))
            .map_err(|_| Refusal::bad("Invalid header value: not ASCII"))?;
        let field = HeaderField::from_bytes(header.name.as_bytes())
            .map_err(|_| Refusal::bad("Invalid header name"))?;
        headers.push(Header { field, value });
    }

    let values = |name: &'static str| {
        headers
            .iter()
            .filter(move |h| h.field.equiv(name))
            .map(|h| h.value.as_str())
    };

    // RFC 9112 section 3.2: exactly one Host on HTTP/1.1, at most one on HTTP/1.0.
    match values("Host").count() {
        0 if minor == 1 => return Err(Refusal::bad("Missing Host header")),
        0 | 1 => {}
        _ => return Err(Refusal::bad("More than one Host header")),
    }

    let framing = framing(
        &values("Transfer-Encoding").collect::<Vec<_>>(),
        &values("Content-Length").collect::<Vec<_>>(),
        minor,
    )?;

    let expects_continue = {
        let expect: Vec<&str> = values("Expect").collect();
        match expect.as_slice() {
            [] => false,
            [value] if value.eq_ignore_ascii_case("100-continue") => true,
            _ => return Err(Refusal::new(417, "Expectation Failed")),
        }
    };

    let close = minor == 0
        || values("Connection")
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("close"));

    Ok(Head {
        method,
        target: target.to_owned(),
        version,
        expects_continue: expects_continue && minor == 1 && framing != Framing::Empty,
        headers,
        framing,
        close,
    })
}

/// Decides how the body is delimited, refusing every ambiguous case (RFC 9112 section 6).
fn framing(
    transfer_encoding: &[&str],
    content_length: &[&str],
    minor: u8,
) -> Result<Framing, Refusal> {
    if !transfer_encoding.is_empty() {
        if minor == 0 {
            return Err(Refusal::bad("Transfer-Encoding is not allowed in HTTP/1.0"));
        }
        if !content_length.is_empty() {
            return Err(Refusal::bad(
                "Both Transfer-Encoding and Content-Length: the body length is ambiguous",
            ));
        }
        let codings: Vec<&str> = transfer_encoding
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        if codings.iter().any(|c| c.is_empty()) {
            return Err(Refusal::bad("Invalid Transfer-Encoding"));
        }
        if !codings
            .last()
            .is_some_and(|c| c.eq_ignore_ascii_case("chunked"))
        {
            return Err(Refusal::bad("Transfer-Encoding must end with chunked"));
        }
        if codings.len() > 1 {
            return Err(Refusal::new(
                501,
                "Not Implemented: the only transfer coding accepted is chunked",
            ));
        }
        return Ok(Framing::Chunked);
    }
    match content_length {
        [] => Ok(Framing::Empty),
        [value] => parse_length(value).map(|n| {
            if n == 0 {
                Framing::Empty
            } else {
                Framing::Length(n)
            }
        }),
        _ => Err(Refusal::bad("More than one Content-Length header")),
    }
}

/// A `Content-Length` value: plain decimal digits that fit in 64 bits, nothing else.
fn parse_length(value: &str) -> Result<u64, Refusal> {
    let invalid = || Refusal::bad("Invalid Content-Length");
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    value.parse::<u64>().map_err(|_| invalid())
}

/// A chunk-size line: 1 to 16 hexadecimal digits, then optional extensions (`;name[=value]`,
/// visible characters and blanks only), which are ignored.
fn parse_chunk_size(line: &[u8]) -> Result<u64, Refusal> {
    let invalid = || Refusal::bad("Invalid chunk size");
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(invalid());
    }
    let rest = &line[digits..];
    let after_blanks = rest
        .iter()
        .position(|b| *b != b' ' && *b != b'\t')
        .map_or(&rest[rest.len()..], |at| &rest[at..]);
    if !after_blanks.is_empty() && after_blanks[0] != b';' {
        return Err(invalid());
    }
    if !after_blanks
        .iter()
        .all(|b| b.is_ascii_graphic() || *b == b' ' || *b == b'\t')
    {
        return Err(invalid());
    }
    let hex = std::str::from_utf8(&line[..digits]).map_err(|_| invalid())?;
    u64::from_str_radix(hex, 16).map_err(|_| invalid())
}

/// A trailer field line: a token, a colon, and a value of visible characters and blanks.
fn check_trailer_line(line: &[u8]) -> Result<(), Refusal> {
    let invalid = || Refusal::bad("Invalid trailer field");
    let colon = line.iter().position(|b| *b == b':').ok_or_else(invalid)?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if name.is_empty() || !name.iter().all(|b| is_token_byte(*b)) {
        return Err(invalid());
    }
    if !value
        .iter()
        .all(|b| b.is_ascii_graphic() || *b == b' ' || *b == b'\t' || *b >= 0x80)
    {
        return Err(invalid());
    }
    Ok(())
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn trim_whitespace(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|b| *b != b' ' && *b != b'\t')
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| *b != b' ' && *b != b'\t')
        .map_or(start, |at| at + 1);
    &value[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Result<Head, Refusal> {
        parse_head(text.as_bytes())
    }

    fn status(text: &str) -> u16 {
        match head(text) {
            Ok(_) => 200,
            Err(refusal) => refusal.status,
        }
    }

    #[test]
    fn a_plain_request_parses() {
        let head = head("POST /auth/login HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n")
            .expect("valid");
        assert_eq!(head.method, Method::Post);
        assert_eq!(head.target, "/auth/login");
        assert_eq!(head.framing, Framing::Length(12));
        assert!(!head.close);
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        for (case, expected) in [
            ("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", 400),
            ("Content-Length: 5\r\nContent-Length: 6\r\n", 400),
            ("Content-Length: 5\r\nContent-Length: 5\r\n", 400),
            ("Content-Length: 5, 5\r\n", 400),
            ("Content-Length: -1\r\n", 400),
            ("Content-Length: +2\r\n", 400),
            ("Content-Length: 1e3\r\n", 400),
            ("Content-Length: 0x10\r\n", 400),
            ("Content-Length: 99999999999999999999999\r\n", 400),
            ("Content-Length: \r\n", 400),
            ("Transfer-Encoding: gzip\r\n", 400),
            ("Transfer-Encoding: chunked, gzip\r\n", 400),
            ("Transfer-Encoding: gzip, chunked\r\n", 501),
            (
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                501,
            ),
            ("Transfer-Encoding: chunked,\r\n", 400),
            ("Transfer-Encoding: xchunked\r\n", 400),
            ("Transfer-Encoding: chunked\r\n", 200),
            ("Transfer-Encoding: Chunked\r\n", 200),
            ("Content-Length: 0005\r\n", 200),
        ] {
            let text = format!("POST / HTTP/1.1\r\nHost: a\r\n{case}\r\n");
            assert_eq!(status(&text), expected, "{case:?}");
        }
    }

    #[test]
    fn transfer_encoding_in_http_1_0_is_refused() {
        assert_eq!(
            status("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
    }

    #[test]
    fn header_syntax_is_strict() {
        for case in [
            "X-A: a\0b\r\n",
            "X-A : b\r\n",
            "X A: b\r\n",
            "X-A: b\r\n c\r\n",
            "X-A: \x01\r\n",
            ": empty name\r\n",
        ] {
            let text = format!("GET / HTTP/1.1\r\nHost: a\r\n{case}\r\n");
            assert_eq!(status(&text), 400, "{case:?}");
        }
    }

    #[test]
    fn host_is_required_once_on_http_1_1() {
        assert_eq!(status("GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.0\r\n\r\n"), 200);
    }

    #[test]
    fn versions_other_than_1_0_and_1_1_get_505() {
        for line in [
            "GET / HTTP/2.0\r\n",
            "PRI * HTTP/2.0\r\n",
            "GET / HTTP/1.2\r\n",
            "GET / HTTP/3\r\n",
        ] {
            assert_eq!(
                check_request_line(line.as_bytes()).map_err(|r| r.status),
                Err(505),
                "{line:?}"
            );
        }
        assert_eq!(check_request_line(b"GET / HTTP/1.1\r\n"), Ok(()));
        assert_eq!(
            check_request_line(b"\x16\x03\x01\x02\x00\x01\r\n").map_err(|r| r.status),
            Err(400)
        );
    }

    #[test]
    fn line_endings_must_be_crlf() {
        let mut scanned = 0;
        assert!(check_line_endings(b"GET / HTTP/1.1\nHost: a\r\n", &mut scanned).is_err());
        let mut scanned = 0;
        assert!(check_line_endings(b"GET / HTTP/1.1\r\nHost: a\rb\r\n", &mut scanned).is_err());
        let mut scanned = 0;
        assert!(check_line_endings(b"GET / HTTP/1.1\r\nHost: a\r", &mut scanned).is_ok());
        assert_eq!(
            scanned, 23,
            "stops before a CR whose next byte is still to come"
        );
    }

    #[test]
    fn a_search_resumed_on_a_grown_buffer_finds_a_needle_across_the_old_end() {
        let mut searched = 0;
        assert_eq!(find_from(b"GET / HTTP/1.1\r", b"\r\n", &mut searched), None);
        assert_eq!(searched, 15);
        assert_eq!(
            find_from(b"GET / HTTP/1.1\r\nHost: a\r\n", b"\r\n", &mut searched),
            Some(14)
        );
        let mut searched = 0;
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        for len in 1..head.len() {
            assert_eq!(find_from(&head[..len], b"\r\n\r\n", &mut searched), None);
        }
        assert_eq!(find_from(head, b"\r\n\r\n", &mut searched), Some(23));
    }

    #[test]
    fn chunk_sizes_are_plain_hex_within_64_bits() {
        assert_eq!(parse_chunk_size(b"1a"), Ok(26));
        assert_eq!(parse_chunk_size(b"1A;name=value"), Ok(26));
        assert_eq!(parse_chunk_size(b"1a ; name"), Ok(26));
        assert_eq!(parse_chunk_size(b"0"), Ok(0));
        for bad in [
            &b""[..],
            b"-1",
            b"+1",
            b"0x10",
            b"1 2",
            b"g",
            b"11111111111111111",
            b"1;\x01",
        ] {
            assert!(
                parse_chunk_size(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn the_connection_closes_after_http_1_0_or_connection_close() {
        assert!(head("GET / HTTP/1.0\r\n\r\n").expect("valid").close);
        assert!(
            head("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\n\r\n")
                .expect("valid")
                .close
        );
    }

    #[test]
    fn a_socket_timeout_is_kept_only_while_it_ends_the_wait_on_time() {
        let deadline = Instant::now() + Duration::from_secs(10);
        assert!(time_left(deadline, None).expect("in time").is_some());
        // Ends the wait at the deadline, or a little after: kept.
        let kept = Duration::from_secs(10) + Duration::from_millis(50);
        assert_eq!(time_left(deadline, Some(kept)).expect("in time"), None);
        // Would end it early, or far too late: set anew, to the time left.
        for current in [Duration::from_secs(5), Duration::from_secs(30)] {
            let set = time_left(deadline, Some(current))
                .expect("in time")
                .expect("set anew");
            assert!(set <= Duration::from_secs(10) && set > Duration::from_secs(9));
        }
        let passed = Instant::now() - Duration::from_millis(1);
        assert_eq!(
            time_left(passed, None).map_err(|e| e.kind()),
            Err(ErrorKind::TimedOut)
        );
    }

    #[test]
    fn expect_other_than_100_continue_gets_417() {
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nExpect: 200-ok\r\n\r\n"),
            417
        );
        let head =
            head("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nExpect: 100-Continue\r\n\r\n")
                .expect("valid");
        assert!(head.expects_continue);
    }
}
