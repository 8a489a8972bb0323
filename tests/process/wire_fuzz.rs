//! A fuzz test of the front door on stable Rust, without a fuzzing crate: a seeded generator
//! writes valid requests of many shapes, mutates most of them (bytes, headers, framing,
//! lengths, versions, sizes), sends each case to the real binary on a connection of its own,
//! and checks what comes back against rules that hold whatever was sent.
//!
//! Each case hides a `POST /auth/register` of an email of its own among its bytes: after its
//! messages as a request of its own, inside an ambiguously framed message (CL.TE, TE.CL, two
//! lengths, obfuscated codings), or as the body of a message. The database must hold that user
//! exactly when the client was answered `201` for it, so a request the server ran without
//! answering, or ran past a refusal, shows up as a user nobody was told about.
//!
//! Beyond the rules every answer keeps, a case sent as generated, or with one structural
//! mutation whose effect the documented limits decide (a version, a duplicated `Host`, a head
//! over 32 KiB...), has its answers known in advance: which messages are served and which one
//! is refused.
//!
//! A case is a pure function of the seed and its number, so a failure names both, with the
//! exact bytes sent. `WIRE_FUZZ_CASES` raises the number of cases, `WIRE_FUZZ_SEED` explores
//! another seed.

use std::collections::{BTreeMap, HashSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::harness::{descriptors, settles, start_with, steady_usage, Usage, HEALTH, NOISE};

/// The seed of every default run.
const SEED: u64 = 0x0BAC_4D00_F00D_2026;

/// Cases in a default run: about 30 s of a debug build on 2 cores, half the budget.
const DEFAULT_CASES: u64 = 15_000;

/// Connections sending cases at once: one per core of the machine the budget was set on.
const CLIENTS: usize = 2;

/// How long a connection may stay open once the client has shut its write side. The server has
/// every byte by then, and nothing it does for one case takes a fraction of this.
const CONNECTION_END: Duration = Duration::from_secs(5);

/// The front door's refusals: a connection ends right after any of them.
const REFUSALS: [u16; 8] = [400, 408, 413, 414, 417, 431, 501, 505];

/// How much the server's resident memory may grow over the run.
const RSS_GROWTH_KIB: u64 = 64 * 1024;

#[test]
fn generated_and_mutated_requests_never_break_the_front_doors_rules() {
    let seed = std::env::var("WIRE_FUZZ_SEED").map_or(SEED, |value| {
        let digits = value.trim_start_matches("0x");
        u64::from_str_radix(digits, 16).expect("WIRE_FUZZ_SEED is hexadecimal")
    });
    let cases = std::env::var("WIRE_FUZZ_CASES").map_or(DEFAULT_CASES, |value| {
        value.parse().expect("WIRE_FUZZ_CASES is a number")
    });
    // Hundreds of registrations and failed logins from one address: about the front door's
    // rules, not the rate limits (tests/api/throttle.rs), which would answer them 429.
    let mut running = start_with(None, &[("RATE_LIMITS", "off")]);
    assert!(running
        .ask(HEALTH, Duration::from_secs(5))
        .starts_with("HTTP/1.1 200"));
    let before = steady_usage(&running);
    let pid = running.pid();
    let baseline_descriptors = descriptors(pid);
    let database = running.database();

    let started = Instant::now();
    let run = Run {
        seed,
        cases,
        addr: running.addr,
        next: AtomicU64::new(0),
        ran: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        failures: Mutex::new(Vec::new()),
        answered_201: Mutex::new(HashSet::new()),
        statuses: Mutex::new(BTreeMap::new()),
        known: AtomicU64::new(0),
        peak_rss_kib: AtomicU64::new(before.rss_kib),
    };
    std::thread::scope(|scope| {
        for _ in 0..CLIENTS {
            scope.spawn(|| run.client(pid, &database));
        }
    });
    let ran = run.ran.load(Ordering::SeqCst);
    eprintln!(
        "wire fuzz: {ran} of {cases} cases ({} with answers known in advance), seed {seed:#x}, \
         in {:.1?}; answers by status: {:?}",
        run.known.load(Ordering::SeqCst),
        started.elapsed(),
        run.statuses.lock().expect("no client panicked"),
    );
    let failures = run.failures.into_inner().expect("no client panicked");
    assert!(
        failures.is_empty(),
        "{} failing case(s); the first:\n{}",
        failures.len(),
        failures[0]
    );

    // The process as a whole: alive, serving, quiet, and back where it started.
    assert!(
        running.child.try_wait().expect("wait").is_none(),
        "the server exited"
    );
    let health = running.ask(HEALTH, Duration::from_secs(5));
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let panics: Vec<String> = running
        .log_so_far()
        .into_iter()
        .filter(|line| line.contains("panicked"))
        .collect();
    assert!(panics.is_empty(), "the server panicked: {panics:#?}");
    let peak = run
        .peak_rss_kib
        .load(Ordering::SeqCst)
        .max(Usage::of(pid).rss_kib);
    assert!(
        peak <= before.rss_kib + RSS_GROWTH_KIB,
        "resident memory grew from {} KiB to {peak} KiB",
        before.rss_kib
    );
    let threads = settles(
        || Usage::of(pid).threads,
        before.threads,
        Duration::from_secs(5),
    );
    let sockets = settles(
        || Usage::of(pid).sockets,
        before.sockets,
        Duration::from_secs(5),
    );
    // Descriptors are compared by what they refer to: the SQLite pool may have opened more
    // connections (each with its database and WAL files) for requests that ran at once, and
    // keeps them; any other new descriptor (a socket above all) was left behind.
    let mut unmatched = baseline_descriptors;
    let grown: Vec<String> = descriptors(pid)
        .into_iter()
        .filter(|target| match unmatched.iter().position(|t| t == target) {
            Some(at) => {
                unmatched.swap_remove(at);
                false
            }
            None => true,
        })
        .collect();
    let (database_files, left_behind): (Vec<String>, Vec<String>) = grown
        .into_iter()
        .partition(|target| target.starts_with(&*database.to_string_lossy()));
    eprintln!(
        "wire fuzz: threads {} -> {threads}, sockets {} -> {sockets}, {} more database files, \
         peak RSS {} -> {peak} KiB",
        before.threads,
        before.sockets,
        database_files.len(),
        before.rss_kib
    );
    assert!(
        threads <= before.threads + NOISE,
        "threads grew from {} to {threads}",
        before.threads
    );
    assert!(
        left_behind.len() <= NOISE,
        "descriptors left behind: {left_behind:?}"
    );

    // No user the client was not told about, across every case.
    let answered = run.answered_201.into_inner().expect("no client panicked");
    let unannounced: Vec<String> = users(&open_database(&database))
        .into_iter()
        .filter(|email| !answered.contains(email))
        .collect();
    assert!(
        unannounced.is_empty(),
        "users were created without a 201 answer: {unannounced:?}"
    );
}

/// What the client threads share.
struct Run {
    seed: u64,
    cases: u64,
    addr: SocketAddr,
    next: AtomicU64,
    ran: AtomicU64,
    stop: AtomicBool,
    failures: Mutex<Vec<String>>,
    /// Every email a `201` answer named.
    answered_201: Mutex<HashSet<String>>,
    /// How many final answers of each status the cases got.
    statuses: Mutex<BTreeMap<u16, u64>>,
    /// Cases whose answers were known in advance.
    known: AtomicU64,
    peak_rss_kib: AtomicU64,
}

impl Run {
    /// Takes cases until there are none left or one has failed.
    fn client(&self, pid: u32, database: &Path) {
        let db = open_database(database);
        while !self.stop.load(Ordering::SeqCst) {
            let number = self.next.fetch_add(1, Ordering::SeqCst);
            if number >= self.cases {
                return;
            }
            let case = Case::generate(self.seed, number);
            let outcome = send(self.addr, &case);
            let verdict = check(&case, &outcome, &db);
            self.ran.fetch_add(1, Ordering::SeqCst);
            if case.expected.is_some() {
                self.known.fetch_add(1, Ordering::SeqCst);
            }
            match verdict {
                Ok(answers) => {
                    let mut statuses = self.statuses.lock().expect("not poisoned");
                    for answer in &answers {
                        *statuses.entry(answer.status).or_default() += 1;
                    }
                    drop(statuses);
                    self.answered_201
                        .lock()
                        .expect("not poisoned")
                        .extend(created_users(&answers));
                }
                Err(problem) => {
                    self.stop.store(true, Ordering::SeqCst);
                    let report = report(self.seed, &case, &outcome, &problem);
                    self.failures.lock().expect("not poisoned").push(report);
                }
            }
            if number.is_multiple_of(100) {
                self.peak_rss_kib
                    .fetch_max(Usage::of(pid).rss_kib, Ordering::SeqCst);
            }
        }
    }
}

/// splitmix64: small, fast, and the same on every platform, so a seed names its cases forever.
struct Rng(u64);

impl Rng {
    fn for_case(seed: u64, case: u64) -> Rng {
        let mut rng = Rng(seed ^ case.wrapping_mul(0xD1B5_4A32_D192_ED03));
        rng.next();
        rng
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// A number in `low..=high`.
    fn between(&mut self, low: usize, high: usize) -> usize {
        low + self.below(high - low + 1)
    }

    fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// One HTTP/1.x message as the generator builds it, before it is flattened into bytes.
#[derive(Clone)]
struct Message {
    /// Empty lines before the request line, which RFC 9112 section 2.2 lets a server skip.
    prefix: Vec<u8>,
    /// The request line, without its CRLF.
    line: Vec<u8>,
    /// The header lines, without their CRLFs.
    headers: Vec<Vec<u8>>,
    /// The body as sent: already chunk-encoded when `chunked`.
    body: Vec<u8>,
    chunked: bool,
    /// The connection ends after its answer (`Connection: close`, or HTTP/1.0).
    closes: bool,
    /// The front door must refuse it: a designed smuggling attempt.
    refused: bool,
}

impl Message {
    fn new(method: &str, target: &str, version: &str) -> Message {
        Message {
            prefix: Vec::new(),
            line: format!("{method} {target} {version}").into_bytes(),
            headers: Vec::new(),
            body: Vec::new(),
            chunked: false,
            closes: version == "HTTP/1.0",
            refused: false,
        }
    }

    fn header(mut self, line: impl Into<Vec<u8>>) -> Message {
        self.headers.push(line.into());
        self
    }

    /// Sets `body` as sent, framed by a `Content-Length` of its length.
    fn with_length(mut self, body: &[u8]) -> Message {
        self.headers
            .push(format!("Content-Length: {}", body.len()).into_bytes());
        self.body = body.to_vec();
        self
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = self.prefix.clone();
        out.extend_from_slice(&self.line);
        out.extend_from_slice(b"\r\n");
        for header in &self.headers {
            out.extend_from_slice(header);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }

    /// The index of the first header line named `name`.
    fn find(&self, name: &str) -> Option<usize> {
        self.headers.iter().position(|line| {
            line.len() > name.len()
                && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
                && line[name.len()] == b':'
        })
    }

    fn remove(&mut self, name: &str) {
        while let Some(at) = self.find(name) {
            self.headers.remove(at);
        }
    }
}

/// A well-formed registration of `email`, which the server answers `201` once.
fn register(email: &str) -> Message {
    let body = format!(
        r#"{{"name":"Fuzz","phone":"+1 555 0100","email":"{email}","password":"fuzz-password-1"}}"#
    );
    Message::new("POST", "/auth/register", "HTTP/1.1")
        .header("Host: fuzz")
        .header("Content-Type: application/json")
        .with_length(body.as_bytes())
}

/// A valid request: a route of the service or none, HTTP/1.1 or 1.0, with or without a body
/// framed by length or chunks (with extensions and trailers), `Expect: 100-continue`, and
/// `Connection` either way.
fn valid_message(rng: &mut Rng, case: u64, index: usize) -> Message {
    let version = if rng.one_in(5) {
        "HTTP/1.0"
    } else {
        "HTTP/1.1"
    };
    let (method, target) = rng.pick(&[
        ("GET", "/health"),
        ("HEAD", "/health"),
        ("GET", "/health?probe=1"),
        ("GET", "/openapi.json"),
        ("HEAD", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/no/such/path"),
        ("GET", "/auth/me"),
        ("GET", "/auth/login"),
        ("OPTIONS", "/health"),
        ("DELETE", "/auth/me"),
        ("POST", "/health"),
        ("POST", "/auth/login"),
        ("POST", "/auth/login"),
        ("POST", "/auth/register"),
        ("POST", "/auth/register"),
        ("PUT", "/no/such/path"),
    ]);
    let mut message = Message::new(method, target, version);
    if version == "HTTP/1.1" || rng.one_in(2) {
        let name = rng.pick(&["Host", "host", "HOST"]);
        message = message.header(format!("{name}: fuzz.test"));
    }
    for _ in 0..rng.below(4) {
        message = message.header(rng.pick(&[
            "User-Agent: wire-fuzz/1",
            "Accept: */*",
            "Accept-Encoding: gzip, deflate",
            "Cache-Control: no-cache",
            "Authorization: Bearer not.a.token",
            "X-Forwarded-For: 203.0.113.7",
            "X-Empty:",
            "X-Padded: \t value \t",
        ]));
    }
    match rng.below(6) {
        0 => {
            message = message.header("Connection: close");
            message.closes = true;
        }
        1 => message = message.header("Connection: keep-alive"),
        _ => {}
    }
    let body: Vec<u8> = match (method, target) {
        ("POST", "/auth/login") if rng.one_in(2) => {
            message = message.header("Content-Type: application/x-www-form-urlencoded");
            format!("username=nobody-{case}%40example.com&password=wrong-password").into_bytes()
        }
        ("POST", "/auth/login") => {
            message = message.header("Content-Type: application/json");
            format!(r#"{{"email":"nobody-{case}@example.com","password":"wrong-password"}}"#)
                .into_bytes()
        }
        ("POST", "/auth/register") if rng.one_in(3) => {
            message = message.header("Content-Type: application/json");
            br#"{"name":"","email":"not an email"}"#.to_vec()
        }
        ("POST", "/auth/register") => {
            message = message.header("Content-Type: application/json");
            let email = format!("gen-{case}-{index}-{:06x}@example.com", rng.below(1 << 24));
            format!(
                r#"{{"name":"Gen","phone":"+1 555 0101","email":"{email}","password":"fuzz-password-2"}}"#
            )
            .into_bytes()
        }
        ("POST", _) | ("PUT", _) => b"{\"any\":\"thing\"}".to_vec(),
        _ => Vec::new(),
    };
    if body.is_empty() {
        if rng.one_in(6) {
            message = message.header("Content-Length: 0");
        }
    } else {
        if version == "HTTP/1.1" && rng.one_in(4) {
            message = message.header(rng.pick(&["Expect: 100-continue", "Expect: 100-Continue"]));
        }
        if version == "HTTP/1.1" && rng.one_in(3) {
            message.headers.push(b"Transfer-Encoding: chunked".to_vec());
            message.body = chunk(rng, &body);
            message.chunked = true;
        } else {
            message = message.with_length(&body);
        }
    }
    if rng.one_in(10) {
        message.prefix = b"\r\n".to_vec();
    }
    message
}

/// Encodes `body` in the chunked coding: 1 to 4 chunks, sizes in either case and sometimes
/// with leading zeros, extensions, and sometimes trailer fields.
fn chunk(rng: &mut Rng, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    let pieces = rng.between(1, 4);
    for piece in 0..pieces {
        let size = if piece + 1 == pieces || rest.len() <= 1 {
            rest.len()
        } else {
            rng.between(1, rest.len() - 1)
        };
        if size == 0 {
            break;
        }
        let hex = if rng.one_in(2) {
            format!("{size:x}")
        } else {
            format!("{size:03X}")
        };
        out.extend_from_slice(hex.as_bytes());
        out.extend_from_slice(extension(rng));
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&rest[..size]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[size..];
    }
    out.extend_from_slice(b"0");
    out.extend_from_slice(extension(rng));
    out.extend_from_slice(b"\r\n");
    for _ in 0..rng.below(3) {
        out.extend_from_slice(rng.pick(&[&b"X-Trailer: done\r\n"[..], b"Checksum: 0\r\n"]));
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn extension(rng: &mut Rng) -> &'static [u8] {
    match rng.below(8) {
        0 => b";ext",
        1 => b";name=value",
        2 => b";a=1;b=\"two words\"",
        3 => b" ;padded",
        _ => b"",
    }
}

/// A message that hides `hidden` (a registration) where a parser that frames messages
/// differently from the server would find it as a request of its own. Every one of these is
/// ambiguous or malformed, so the front door must refuse it, and the registration must not
/// run.
fn smuggling_attempt(rng: &mut Rng, hidden: &[u8]) -> Message {
    let post = || {
        Message::new("POST", "/auth/login", "HTTP/1.1")
            .header("Host: fuzz")
            .header("Content-Type: application/json")
    };
    let after_last_chunk = [&b"0\r\n\r\n"[..], hidden].concat();
    let mut message = match rng.below(14) {
        // CL.TE: the length covers the hidden request, the coding ends before it.
        0 => post()
            .header(format!("Content-Length: {}", after_last_chunk.len()))
            .header("Transfer-Encoding: chunked"),
        // TE.CL: the coding covers the hidden request, the length ends before it.
        1 => {
            let size_line = format!("{:x}\r\n", hidden.len());
            let body = [size_line.as_bytes(), hidden, b"\r\n0\r\n\r\n"].concat();
            let mut message = post()
                .header("Transfer-Encoding: chunked")
                .header(format!("Content-Length: {}", size_line.len()));
            message.body = body;
            message.refused = true;
            return message;
        }
        // Codings a lenient parser might take for chunked, or ignore.
        2 => post().header("Transfer-Encoding: xchunked"),
        3 => post().header("Transfer-Encoding: chunked, identity"),
        4 => post().header("Transfer-Encoding: gzip, chunked"),
        5 => post().header("Transfer-Encoding : chunked"),
        6 => post().header("Transfer-Encoding:\r\n chunked"),
        7 => post().header("Transfer-Encoding: chunked\nX: y"),
        8 => post().header("Transfer-Encoding: \x0bchunked"),
        9 => {
            let mut message = Message::new("POST", "/auth/login", "HTTP/1.0")
                .header("Host: fuzz")
                .header("Transfer-Encoding: chunked");
            message.closes = true;
            message
        }
        // Two lengths: one covers the hidden request, the other leaves it as the next one.
        10 => {
            let mut message = post()
                .header("Content-Length: 0")
                .header(format!("Content-Length: {}", hidden.len()));
            if rng.one_in(2) {
                message.headers.swap(2, 3);
            }
            message.body = hidden.to_vec();
            message.refused = true;
            return message;
        }
        11 => {
            let mut message = post().header(format!("Content-Length: 0, {}", hidden.len()));
            message.body = hidden.to_vec();
            message.refused = true;
            return message;
        }
        // Lengths a lenient parser might read as a number.
        12 => {
            let value = rng.pick(&["+0", "-0", "0x0", "0.0", "0e0", " 0 0", "\x000"]);
            let mut message = post().header(format!("Content-Length: {value}"));
            message.body = hidden.to_vec();
            message.refused = true;
            return message;
        }
        // A chunk-size line a lenient decoder would end early.
        _ => {
            let size = rng.pick(&["0\n", "0;\x01", "00000000000000000", "-0", "0x0"]);
            let mut message = post().header("Transfer-Encoding: chunked");
            message.body = [size.as_bytes(), b"\r\n\r\n", hidden].concat();
            message.refused = true;
            return message;
        }
    };
    message.body = after_last_chunk;
    message.refused = true;
    message
}

/// A valid message whose body is `hidden`, so that it is data, never a request.
fn enclosing(rng: &mut Rng, hidden: &[u8]) -> Message {
    let message = Message::new("POST", "/auth/login", "HTTP/1.1")
        .header("Host: fuzz")
        .header("Content-Type: text/plain");
    if rng.one_in(2) {
        message.with_length(hidden)
    } else {
        let mut message = message.header("Transfer-Encoding: chunked");
        message.body = chunk(rng, hidden);
        message.chunked = true;
        message
    }
}

/// What a structural mutation does to its message, as far as the documented rules decide it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// The message stays valid and framed as before: it must be served.
    Served,
    /// The message breaks a rule: it must be refused.
    Refused,
    /// Its framing changed, or it sits within a few bytes of a limit: either is allowed.
    Unknown,
}

/// The verdict on something `size` bytes long against a limit of `limit`: a few bytes either
/// side of the limit are left unknown, so that the test does not pin down whether a limit
/// counts a line's CRLF.
fn against(size: usize, limit: usize) -> Verdict {
    if size + 4 <= limit {
        Verdict::Served
    } else if size > limit + 4 {
        Verdict::Refused
    } else {
        Verdict::Unknown
    }
}

/// A change to one message's structure, named for the report, with its verdict.
fn mutate_message(rng: &mut Rng, message: &mut Message) -> (String, Verdict) {
    let length = message.body.len();
    let http_1_0 = message.line.ends_with(b"HTTP/1.0");
    let framed =
        message.find("Content-Length").is_some() || message.find("Transfer-Encoding").is_some();
    match rng.below(14) {
        0 => {
            let version = rng.pick(&[
                "HTTP/2.0",
                "HTTP/1.2",
                "HTTP/0.9",
                "HTTP/3",
                "HTTP/1.10",
                "http/1.1",
                "HTTP/1",
                "HTTP/1.1 x",
                "HTTP/",
                "",
            ]);
            let end = message
                .line
                .iter()
                .rposition(|b| *b == b' ')
                .map_or(message.line.len(), |at| at + 1);
            message.line.truncate(end);
            message.line.extend_from_slice(version.as_bytes());
            (format!("version {version:?}"), Verdict::Refused)
        }
        1 if !message.headers.is_empty() => {
            let line = message.headers[rng.below(message.headers.len())].clone();
            let at = rng.below(message.headers.len() + 1);
            message.headers.insert(at, line.clone());
            // Twice the same Host, length, coding or expectation is refused; any other field
            // may come twice.
            let name = line.split(|b| *b == b':').next().unwrap_or_default();
            let once = ["Host", "Content-Length", "Transfer-Encoding", "Expect"]
                .iter()
                .any(|field| name.eq_ignore_ascii_case(field.as_bytes()));
            let verdict = if once {
                Verdict::Refused
            } else {
                Verdict::Served
            };
            (
                format!("duplicated {:?}", String::from_utf8_lossy(&line)),
                verdict,
            )
        }
        2 if !message.headers.is_empty() => {
            let line = message.headers.remove(rng.below(message.headers.len()));
            let name = line.split(|b| *b == b':').next().unwrap_or_default();
            let is = |field: &str| name.eq_ignore_ascii_case(field.as_bytes());
            let verdict = if is("Host") && !http_1_0 {
                Verdict::Refused
            } else if is("Content-Length") || is("Transfer-Encoding") || is("Connection") {
                // The body becomes the next request, or the connection stays open.
                Verdict::Unknown
            } else {
                Verdict::Served
            };
            (
                format!("removed {:?}", String::from_utf8_lossy(&line)),
                verdict,
            )
        }
        3 => {
            let line = rng
                .pick(&[
                    "Transfer-Encoding: chunked",
                    "Transfer-Encoding: identity",
                    "Transfer-Encoding: gzip, chunked",
                    "Transfer-Encoding: chunked, chunked",
                    "Transfer-Encoding:chunked",
                    "transfer-encoding: CHUNKED",
                    "Content-Length: 0",
                    "Content-Length: 1",
                    "LENGTH",
                ])
                .replace("LENGTH", &format!("Content-Length: {length}"));
            let at = rng.below(message.headers.len() + 1);
            message.headers.insert(at, line.clone().into_bytes());
            // A second framing header is always ambiguous; a first one reframes the bytes.
            let verdict = if framed {
                Verdict::Refused
            } else {
                Verdict::Unknown
            };
            (format!("added {line:?}"), verdict)
        }
        4 => {
            let template = rng.pick(&[
                "+N",
                "-N",
                "N.0",
                "1e3",
                "0xN",
                "N, N",
                "N N",
                "",
                "99999999999999999999999",
                "18446744073709551615",
                "18446744073709551616",
                "65537",
                "M",
                "0",
            ]);
            let value = template
                .replace('M', &(length + 1).to_string())
                .replace('N', &length.to_string());
            let chunked = message.find("Transfer-Encoding").is_some();
            match message.find("Content-Length") {
                Some(at) => message.headers[at] = format!("Content-Length: {value}").into_bytes(),
                None => message
                    .headers
                    .push(format!("Content-Length: {value}").into_bytes()),
            }
            // Anything but plain digits is refused, and so is a length over the body limit.
            let verdict = if chunked || !matches!(template, "M" | "0") {
                Verdict::Refused
            } else {
                Verdict::Unknown
            };
            (format!("Content-Length {value:?}"), verdict)
        }
        5 if message.chunked => {
            let size = rng.pick(&[
                "-1",
                "+1",
                "0x1",
                "1 1",
                "fffffffffffffffff",
                "ffffffffffffffff",
                "1;\x01",
                "g",
                "",
                "1\n",
                " 1",
            ]);
            let end = find(&message.body, b"\r\n").unwrap_or(0);
            message.body.splice(..end, size.bytes());
            (format!("chunk size {size:?}"), Verdict::Refused)
        }
        6 if message.chunked => {
            // The CRLF after the first chunk's data: dropped or doubled.
            let line_end = find(&message.body, b"\r\n").unwrap_or(0);
            let size = std::str::from_utf8(&message.body[..line_end])
                .ok()
                .and_then(|line| line.split([';', ' ']).next())
                .and_then(|hex| usize::from_str_radix(hex, 16).ok())
                .unwrap_or(0);
            let at = (line_end + 2).saturating_add(size).min(message.body.len());
            let what = if rng.one_in(2) {
                message.body.drain(at..(at + 2).min(message.body.len()));
                "dropped a chunk's CRLF"
            } else {
                message.body.splice(at..at, *b"\r\n");
                "doubled a chunk's CRLF"
            };
            (what.to_owned(), Verdict::Refused)
        }
        7 => huge(rng, message),
        8 => {
            let method = rng.pick(&[
                "G ET", "get", "", "GET\0", "PRI", "CONNECT", "TRACE", "LONG",
            ]);
            let method = method.replace("LONG", &"M".repeat(300));
            let end = message.line.iter().position(|b| *b == b' ').unwrap_or(0);
            message.line.splice(..end, method.bytes());
            // A method is any token: only these three are not one.
            let verdict = if matches!(method.as_str(), "G ET" | "" | "GET\0") {
                Verdict::Refused
            } else {
                Verdict::Served
            };
            (
                format!("method {:?}", &method[..method.len().min(8)]),
                verdict,
            )
        }
        9 if !message.headers.is_empty() => {
            let at = rng.below(message.headers.len());
            message.headers.insert(
                at + 1,
                rng.pick(&[&b" folded"[..], b"\tfolded: x"]).to_vec(),
            );
            ("obs-fold".to_owned(), Verdict::Refused)
        }
        10 if !message.headers.is_empty() => {
            let at = rng.below(message.headers.len());
            let header = &mut message.headers[at];
            if let Some(colon) = header.iter().position(|b| *b == b':') {
                header.insert(colon, rng.pick(b" \t"));
            }
            ("whitespace before a colon".to_owned(), Verdict::Refused)
        }
        11 => {
            *message = Message::new("PRI", "*", "HTTP/2.0");
            message.body = b"SM\r\n\r\n".to_vec();
            ("the HTTP/2 preface".to_owned(), Verdict::Refused)
        }
        12 => {
            let line = rng.pick(&[
                "Expect: 100-continue",
                "Expect: 200-ok",
                "Expect: 100-continue, x",
                "Expect:",
            ]);
            message.headers.push(line.as_bytes().to_vec());
            // Only `100-continue` is expected, once; whether the message had one already is
            // left open.
            let verdict = if line == "Expect: 100-continue" {
                Verdict::Unknown
            } else {
                Verdict::Refused
            };
            (format!("added {line:?}"), verdict)
        }
        _ => {
            let had_host = message.find("Host").is_some();
            if rng.one_in(2) {
                message.remove("Host");
                let verdict = if http_1_0 {
                    Verdict::Served
                } else {
                    Verdict::Refused
                };
                ("removed every Host".to_owned(), verdict)
            } else {
                message.headers.push(b"Host: second.test".to_vec());
                let verdict = if had_host {
                    Verdict::Refused
                } else {
                    Verdict::Served
                };
                ("a second Host".to_owned(), verdict)
            }
        }
    }
}

/// Makes one part of `message` larger than a limit of the front door, or nearly so, with the
/// verdict the limit gives.
fn huge(rng: &mut Rng, message: &mut Message) -> (String, Verdict) {
    let over = rng.between(0, 64);
    let http_1_0 = message.line.ends_with(b"HTTP/1.0");
    match rng.below(7) {
        0 => {
            let line = message.line.clone();
            let at = find(&line, b" /").map_or(0, |at| at + 2);
            message
                .line
                .splice(at..at, std::iter::repeat_n(b'a', 8 * 1024 - 32 + over));
            let size = message.line.len();
            (
                format!("request line of {size} bytes"),
                against(size, 8 * 1024),
            )
        }
        1 => {
            let value = "b".repeat(8 * 1024 - 40 + over);
            let line = format!("X-Huge: {value}");
            let size = line.len();
            message.headers.push(line.into_bytes());
            (
                format!("header line of {size} bytes"),
                against(size, 8 * 1024),
            )
        }
        2 => {
            let count = 97 + over % 8;
            for n in 0..count {
                message.headers.push(format!("X-Many-{n}: v").into_bytes());
            }
            // The documented limit is exact: up to 100 header lines.
            let verdict = if message.headers.len() > 100 {
                Verdict::Refused
            } else {
                Verdict::Served
            };
            (format!("{} header lines", message.headers.len()), verdict)
        }
        3 => {
            let count = 31 + over % 5;
            for n in 0..count {
                message
                    .headers
                    .push(format!("X-Wide-{n:02}: {}", "w".repeat(990)).into_bytes());
            }
            let head = message.bytes().len() - message.prefix.len() - message.body.len();
            (format!("a head of {head} bytes"), against(head, 32 * 1024))
        }
        4 => {
            let length = 64 * 1024 - 8 + over;
            message.remove("Transfer-Encoding");
            message.remove("Content-Length");
            message.chunked = false;
            *message = message.clone().with_length(&vec![b'x'; length]);
            (
                format!("a body of {length} bytes"),
                against(length, 64 * 1024),
            )
        }
        5 => {
            message.remove("Transfer-Encoding");
            message.remove("Content-Length");
            message.headers.push(b"Transfer-Encoding: chunked".to_vec());
            let size = 32 * 1024 - 4 + over;
            let mut body = Vec::new();
            for _ in 0..2 {
                body.extend_from_slice(format!("{size:x}\r\n").as_bytes());
                body.extend(std::iter::repeat_n(b'y', size));
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(b"0\r\n\r\n");
            message.body = body;
            message.chunked = true;
            let verdict = if http_1_0 {
                Verdict::Refused
            } else {
                against(2 * size, 64 * 1024)
            };
            (format!("a chunked body of {} bytes", 2 * size), verdict)
        }
        _ => {
            message.remove("Transfer-Encoding");
            message.remove("Content-Length");
            message.headers.push(b"Transfer-Encoding: chunked".to_vec());
            message.chunked = true;
            let (what, verdict) = if rng.one_in(2) {
                let line = format!("1;{}", "e".repeat(250 + over));
                message.body = format!("{line}\r\nz\r\n0\r\n\r\n").into_bytes();
                (
                    format!("a chunk line of {} bytes", line.len()),
                    against(line.len(), 256),
                )
            } else {
                let line = format!("X-T: {}", "t".repeat(4 * 1024 - 40 + over));
                message.body = format!("0\r\n{line}\r\n\r\n").into_bytes();
                (
                    format!("a trailer of {} bytes", line.len()),
                    against(line.len(), 4 * 1024),
                )
            };
            (what, if http_1_0 { Verdict::Refused } else { verdict })
        }
    }
}

/// A change to the flattened bytes, named for the report. Half of them land in the first
/// 256 bytes, where the request line and headers are.
fn mutate_bytes(rng: &mut Rng, bytes: &mut Vec<u8>) -> String {
    if bytes.is_empty() {
        return "nothing to mutate".to_owned();
    }
    let at = if rng.one_in(2) {
        rng.below(bytes.len().min(256))
    } else {
        rng.below(bytes.len())
    };
    match rng.below(6) {
        0 => {
            let bit = 1u8 << rng.below(8);
            bytes[at] ^= bit;
            format!("flipped bit {bit:#04x} at {at}")
        }
        1 => {
            let byte = rng.pick(&[0u8, b'\r', b'\n', b' ', b'\t', 0x7f, b':', 0x80, 0xff]);
            let byte = if byte == 0x80 {
                0x80 | rng.below(128) as u8
            } else {
                byte
            };
            let count = rng.between(1, 3);
            bytes.splice(at..at, std::iter::repeat_n(byte, count));
            format!("inserted {count} × {byte:#04x} at {at}")
        }
        2 => {
            let end = (at + rng.between(1, 4)).min(bytes.len());
            bytes.drain(at..end);
            format!("deleted {at}..{end}")
        }
        3 => {
            bytes.truncate(at);
            format!("truncated to {at}")
        }
        4 => {
            let from = rng.below(bytes.len());
            let end = (from + rng.between(1, 64)).min(bytes.len());
            let slice = bytes[from..end].to_vec();
            bytes.splice(at..at, slice);
            format!("copied {from}..{end} to {at}")
        }
        _ => {
            let crlfs: Vec<usize> = (0..bytes.len().saturating_sub(1))
                .filter(|i| &bytes[*i..*i + 2] == b"\r\n")
                .collect();
            if crlfs.is_empty() {
                return "no CRLF to change".to_owned();
            }
            let crlf = rng.pick(&crlfs);
            let with = rng.pick(&[&b"\n"[..], b"\r", b"\r\r\n", b"\n\r", b"\r\n\r\n"]);
            bytes.splice(crlf..crlf + 2, with.iter().copied());
            format!(
                "CRLF at {crlf} became {:?}",
                with.escape_ascii().to_string()
            )
        }
    }
}

/// One case: the bytes sent on one connection and what is known of their answers.
struct Case {
    number: u64,
    bytes: Vec<u8>,
    /// The sizes of the writes the bytes are sent in, and whether a pause follows each.
    pieces: Vec<(usize, bool)>,
    /// The email of the registration hidden among the bytes.
    smuggled: String,
    /// What the answers must be, when the mutations (if any) left that known.
    expected: Option<Expected>,
    /// The names of the mutations applied, in order.
    mutations: Vec<String>,
}

/// The answers to a case of valid messages, designed smuggling attempts, and messages that one
/// structural mutation made valid or invalid.
struct Expected {
    /// For each answer in order: whether it is a refusal.
    refusals: Vec<bool>,
    /// Whether the hidden registration is a request of its own that is reached, and so
    /// answered `201`.
    registers: bool,
}

impl Case {
    fn generate(seed: u64, number: u64) -> Case {
        let mut rng = Rng::for_case(seed, number);
        let smuggled = format!("smuggle-{number}-{:08x}@example.com", rng.next() as u32);
        let hidden = register(&smuggled).bytes();
        let mut messages: Vec<Message> = (0..rng.between(1, 4))
            .map(|index| valid_message(&mut rng, number, index))
            .collect();
        // Where the registration hides: after the messages as a request of its own, inside a
        // smuggling attempt, or as a body.
        let appended = match rng.below(20) {
            0..=11 => true,
            12..=16 => {
                messages.push(smuggling_attempt(&mut rng, &hidden));
                false
            }
            _ => {
                messages.push(enclosing(&mut rng, &hidden));
                false
            }
        };
        let mut mutations = Vec::new();
        let (structural, bytewise) = if rng.one_in(3) {
            (0, 0)
        } else {
            let count = rng.between(1, 3);
            let structural = rng.below(count + 1);
            (structural, count - structural)
        };
        // One structural mutation alone has a verdict the documented rules decide, so the
        // answers stay known: a message the rules refuse must be refused, and one they accept
        // served. Past one, or with bytes changed, only the invariants hold.
        let mut known = structural <= 1 && bytewise == 0;
        for _ in 0..structural {
            let index = rng.below(messages.len());
            let was_refused = messages[index].refused;
            let (what, verdict) = mutate_message(&mut rng, &mut messages[index]);
            mutations.push(format!("message {index}: {what} ({verdict:?})"));
            match verdict {
                Verdict::Refused => messages[index].refused = true,
                // A smuggling attempt stays refused only for reasons of its own, which a
                // change may have taken away.
                Verdict::Served if !was_refused => {}
                Verdict::Served | Verdict::Unknown => known = false,
            }
        }
        let mut bytes: Vec<u8> = messages.iter().flat_map(Message::bytes).collect();
        if appended {
            bytes.extend_from_slice(&hidden);
        }
        for _ in 0..bytewise {
            mutations.push(mutate_bytes(&mut rng, &mut bytes));
        }
        let expected = known.then(|| Expected::of(&messages, appended));
        let pieces = pieces(&mut rng, bytes.len());
        Case {
            number,
            bytes,
            pieces,
            smuggled,
            expected,
            mutations,
        }
    }
}

impl Expected {
    fn of(messages: &[Message], appended: bool) -> Expected {
        let mut refusals = Vec::new();
        for message in messages {
            refusals.push(message.refused);
            if message.refused || message.closes {
                return Expected {
                    refusals,
                    registers: false,
                };
            }
        }
        if appended {
            refusals.push(false);
        }
        Expected {
            refusals,
            registers: appended,
        }
    }
}

/// Splits `length` bytes into writes: a few cuts anywhere, sometimes a trickle of single
/// bytes at the start (where the request line is checked as it arrives), and a short pause
/// after some writes so that the server sees them apart.
fn pieces(rng: &mut Rng, length: usize) -> Vec<(usize, bool)> {
    let mut cuts: Vec<usize> = (0..rng.below(6)).map(|_| rng.below(length)).collect();
    if rng.one_in(6) {
        cuts.extend(1..length.min(24));
    }
    cuts.push(length);
    cuts.sort_unstable();
    cuts.dedup();
    let mut pieces = Vec::new();
    let mut at = 0;
    for cut in cuts {
        if cut > at {
            pieces.push((cut - at, rng.one_in(12)));
            at = cut;
        }
    }
    pieces
}

/// What came back on a case's connection.
struct Outcome {
    received: Vec<u8>,
    /// Why sending stopped early, if it did.
    write_error: Option<String>,
    /// How the connection ended: `None` for a clean EOF within [`CONNECTION_END`].
    end_error: Option<String>,
}

/// Sends a case on a new connection, shuts the write side, and reads until EOF.
fn send(addr: SocketAddr, case: &Case) -> Outcome {
    let mut outcome = Outcome {
        received: Vec::new(),
        write_error: None,
        end_error: None,
    };
    let mut stream = match TcpStream::connect(addr) {
        Ok(stream) => stream,
        Err(err) => {
            outcome.end_error = Some(format!("cannot connect: {err}"));
            return outcome;
        }
    };
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(CONNECTION_END));
    let mut at = 0;
    for &(length, pause) in &case.pieces {
        if let Err(err) = stream.write_all(&case.bytes[at..at + length]) {
            outcome.write_error = Some(format!("writing from byte {at} failed: {err}"));
            break;
        }
        at += length;
        if pause {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let _ = stream.shutdown(Shutdown::Write);
    let deadline = Instant::now() + CONNECTION_END;
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            outcome.end_error = Some(format!(
                "still open {CONNECTION_END:?} after the client shut its side"
            ));
            return outcome;
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut buf) {
            Ok(0) => return outcome,
            Ok(n) => outcome.received.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(err) => {
                outcome.end_error = Some(format!("ended with an error, not EOF: {err}"));
                return outcome;
            }
        }
    }
}

/// One response as parsed from the bytes received.
struct Answer {
    status: u16,
    closes: bool,
    body: Vec<u8>,
}

/// Checks every invariant of one case. Returns its final answers.
fn check(case: &Case, outcome: &Outcome, db: &rusqlite::Connection) -> Result<Vec<Answer>, String> {
    if let Some(err) = &outcome.write_error {
        // The server reads and drops up to 1 MiB or 2 s after a refusal, far more than any case
        // sends, so a failed write means it closed early (and its answer may have been reset).
        return Err(format!("sending failed: {err}"));
    }
    if let Some(err) = &outcome.end_error {
        return Err(format!("the connection {err}"));
    }
    let sends_head = contains_ignoring_case(&case.bytes, b"HEAD");
    let mut answers = parse_answers(&outcome.received, sends_head)?;
    let continues = contains_ignoring_case(&case.bytes, b"100-continue");
    let mut finals = Vec::new();
    for (index, answer) in answers.iter().enumerate() {
        if answer.status < 200 {
            if answer.status != 100 || !continues {
                return Err(format!(
                    "interim answer {}: only 100 Continue may come, to `Expect: 100-continue`",
                    answer.status
                ));
            }
            continue;
        }
        let refusal = REFUSALS.contains(&answer.status);
        if refusal && !answer.closes {
            return Err(format!("a {} without `Connection: close`", answer.status));
        }
        if refusal && !answer.body.starts_with(b"{\"detail\":") {
            return Err(format!(
                "a {} without a {{\"detail\": ...}} body",
                answer.status
            ));
        }
        if (refusal || answer.closes) && index + 1 != answers.len() {
            return Err(format!(
                "answer {index} ({}) closes the connection, but {} more followed",
                answer.status,
                answers.len() - index - 1
            ));
        }
        if answer.status == 500 {
            return Err("a 500: a failure of the service's own".to_owned());
        }
        finals.push(answer);
    }

    // Every answer but a refusal (which may come mid-head) answers a whole head, which ends
    // with CRLF CRLF: so mutated bytes cannot earn more answers than they hold of those, plus
    // one. Cases whose answers are known earn exactly what `Expected` says.
    let heads = count(&case.bytes, b"\r\n\r\n") + 1;
    if finals.len() > heads {
        return Err(format!(
            "{} answers to bytes holding at most {heads} requests",
            finals.len()
        ));
    }
    if let Some(expected) = &case.expected {
        let refusals: Vec<bool> = finals
            .iter()
            .map(|answer| REFUSALS.contains(&answer.status))
            .collect();
        if refusals != expected.refusals {
            let statuses: Vec<u16> = finals.iter().map(|answer| answer.status).collect();
            return Err(format!(
                "answers {statuses:?}, where the messages called for these refusals: {:?}",
                expected.refusals
            ));
        }
    }

    // The hidden registration: a user exactly when the client was told `201` about it.
    let announced = finals.iter().any(|answer| {
        answer.status == 201 && find(&answer.body, case.smuggled.as_bytes()).is_some()
    });
    let exists = user_exists(db, &case.smuggled);
    if exists && !announced {
        return Err(format!(
            "the hidden registration of {} ran, but no 201 told the client",
            case.smuggled
        ));
    }
    if announced && !exists {
        return Err(format!("a 201 for {}, but no such user", case.smuggled));
    }
    if let Some(expected) = &case.expected {
        if expected.registers != exists {
            return Err(format!(
                "the registration of {} {} as a request of its own",
                case.smuggled,
                if exists {
                    "ran, though it was not sent"
                } else {
                    "did not run, though it was sent"
                }
            ));
        }
    }
    answers.retain(|answer| answer.status >= 200);
    Ok(answers)
}

/// The emails of the users that `201` answers announced.
fn created_users(answers: &[Answer]) -> Vec<String> {
    answers
        .iter()
        .filter(|answer| answer.status == 201)
        .filter_map(|answer| serde_json::from_slice::<serde_json::Value>(&answer.body).ok())
        .filter_map(|user| user["email"].as_str().map(str::to_owned))
        .collect()
}

/// Parses `bytes` as a sequence of HTTP/1.x responses, each with a `Content-Length` or chunked
/// body. When the case sent `HEAD`, a response whose body is missing (the bytes end, or the
/// next response begins) is taken as the answer to it.
fn parse_answers(bytes: &[u8], sends_head: bool) -> Result<Vec<Answer>, String> {
    let mut answers = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let start = at;
        let fail = |why: String| {
            Err(format!(
                "received bytes at {start} are not a response: {why}"
            ))
        };
        let Some(head_end) = find(&bytes[at..], b"\r\n\r\n").map(|end| at + end) else {
            return fail("no end of head".to_owned());
        };
        let head = &bytes[at..head_end];
        // Lines end with CRLF; a bare CR or LF left inside one fails the checks below.
        let mut lines = split_crlf(head);
        let status_line = lines.next().unwrap_or_default();
        let Some(status) = parse_status_line(status_line) else {
            return fail(format!(
                "status line {:?}",
                status_line.escape_ascii().to_string()
            ));
        };
        let mut length = None;
        let mut chunked = false;
        let mut closes = false;
        let mut lengths = 0;
        for line in lines {
            let Some(colon) = line.iter().position(|b| *b == b':') else {
                return fail(format!("header line {:?}", line.escape_ascii().to_string()));
            };
            let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
            if name.is_empty()
                || !name.iter().all(|b| is_token_byte(*b))
                || !value
                    .iter()
                    .all(|b| b.is_ascii_graphic() || *b == b' ' || *b == b'\t')
            {
                return fail(format!("header line {:?}", line.escape_ascii().to_string()));
            }
            let value = String::from_utf8_lossy(value);
            if name.eq_ignore_ascii_case(b"Content-Length") {
                lengths += 1;
                length = value.parse::<usize>().ok();
                if length.is_none() || !value.bytes().all(|b| b.is_ascii_digit()) {
                    return fail(format!("Content-Length {value:?}"));
                }
            } else if name.eq_ignore_ascii_case(b"Transfer-Encoding") {
                if !value.eq_ignore_ascii_case("chunked") {
                    return fail(format!("Transfer-Encoding {value:?}"));
                }
                chunked = true;
            } else if name.eq_ignore_ascii_case(b"Connection") {
                closes |= value
                    .split(',')
                    .any(|token| token.trim().eq_ignore_ascii_case("close"));
            }
        }
        at = head_end + 4;
        if (100..200).contains(&status) || status == 204 || status == 304 {
            if chunked || length.is_some_and(|n| n > 0) {
                return fail(format!("a {status} with a body"));
            }
            answers.push(Answer {
                status,
                closes,
                body: Vec::new(),
            });
            continue;
        }
        if lengths > 1 || (chunked && lengths > 0) || (!chunked && lengths == 0) {
            return fail("neither one Content-Length nor chunked".to_owned());
        }
        let rest = &bytes[at..];
        let bodiless = sends_head && (rest.is_empty() || rest.starts_with(b"HTTP/1."));
        let body = if bodiless {
            Vec::new()
        } else if chunked {
            match dechunk(rest) {
                Some((body, used)) => {
                    at += used;
                    body
                }
                None => return fail("a broken chunked body".to_owned()),
            }
        } else {
            let length = length.unwrap_or(0);
            if rest.len() < length {
                return fail(format!("{} of {length} body bytes", rest.len()));
            }
            at += length;
            rest[..length].to_vec()
        };
        answers.push(Answer {
            status,
            closes,
            body,
        });
    }
    Ok(answers)
}

/// `HTTP/1.1 200 OK` (or `HTTP/1.0`): the status, if the line is well formed.
fn parse_status_line(line: &[u8]) -> Option<u16> {
    let rest = line
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| line.strip_prefix(b"HTTP/1.0 "))?;
    let (code, reason) = (rest.get(..3)?, rest.get(3..)?);
    if !code.iter().all(u8::is_ascii_digit) || !(reason.is_empty() || reason[0] == b' ') {
        return None;
    }
    if !reason
        .iter()
        .all(|b| b.is_ascii_graphic() || *b == b' ' || *b == b'\t')
    {
        return None;
    }
    std::str::from_utf8(code)
        .ok()?
        .parse()
        .ok()
        .filter(|status| (100..600).contains(status))
}

/// Decodes a chunked body at the start of `bytes`: its data and how many bytes it took.
fn dechunk(bytes: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let line_end = at + find(&bytes[at..], b"\r\n")?;
        let line = std::str::from_utf8(&bytes[at..line_end]).ok()?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        at = line_end + 2;
        if size == 0 {
            // No trailers from this server: the body ends with the empty line.
            return bytes[at..].starts_with(b"\r\n").then_some((body, at + 2));
        }
        body.extend_from_slice(bytes.get(at..at + size)?);
        at += size;
        if bytes.get(at..at + 2)? != b"\r\n" {
            return None;
        }
        at += 2;
    }
}

fn open_database(path: &Path) -> rusqlite::Connection {
    let db = rusqlite::Connection::open(path).expect("open the server's database");
    db.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    db
}

fn user_exists(db: &rusqlite::Connection, email: &str) -> bool {
    db.query_row(
        "SELECT COUNT(*) FROM users WHERE email = ?1",
        [email],
        |row| row.get::<_, i64>(0),
    )
    .expect("query the server's database")
        > 0
}

fn users(db: &rusqlite::Connection) -> Vec<String> {
    let mut statement = db.prepare("SELECT email FROM users").expect("prepare");
    statement
        .query_map([], |row| row.get::<_, String>(0))
        .expect("query the server's database")
        .map(|email| email.expect("an email"))
        .collect()
}

/// The failure report: enough to send the very same bytes again. What was received is cut
/// to its start and end when long (a whole OpenAPI document says nothing).
fn report(seed: u64, case: &Case, outcome: &Outcome, problem: &str) -> String {
    let pieces: Vec<usize> = case.pieces.iter().map(|(length, _)| *length).collect();
    let received = &outcome.received;
    let shown = if received.len() <= 4096 {
        format!("b\"{}\"", received.escape_ascii())
    } else {
        format!(
            "b\"{}\" ... ({} bytes) ... b\"{}\"",
            received[..2048].escape_ascii(),
            received.len() - 4096,
            received[received.len() - 2048..].escape_ascii()
        )
    };
    format!(
        "wire fuzz case {} (seed {seed:#x}): {problem}\n\
         mutations: {:?}\n\
         sent {} bytes in writes of {pieces:?}, then shut the write side:\n\
         b\"{}\"\n\
         received {} bytes:\n\
         {shown}",
        case.number,
        case.mutations,
        case.bytes.len(),
        case.bytes.escape_ascii(),
        received.len(),
    )
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Non-overlapping occurrences of `needle` in `haystack`.
fn count(haystack: &[u8], needle: &[u8]) -> usize {
    let mut count = 0;
    let mut at = 0;
    while let Some(found) = find(&haystack[at..], needle) {
        count += 1;
        at += found + needle.len();
    }
    count
}

fn split_crlf(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(bytes);
    std::iter::from_fn(move || {
        let current = rest?;
        match find(current, b"\r\n") {
            Some(at) => {
                rest = Some(&current[at + 2..]);
                Some(&current[..at])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

fn contains_ignoring_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle))
}

fn trim(value: &[u8]) -> &[u8] {
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

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
