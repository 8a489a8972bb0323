//! The test harness: each test starts the real server in-process on an ephemeral port, with a
//! fresh database of its own (see `testdb`: SQLite, or PostgreSQL with `TEST_BACKEND=postgres`),
//! and talks to it over real HTTP.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use backnd_api::{Config, Server};

pub use crate::testdb::{FreshDb, StoredUser, TestDb};
use serde_json::{json, Value};

/// A JWT secret for tests (at least 32 bytes, as the service requires).
pub const TEST_SECRET: &str = "test-secret-0123456789abcdef0123456789abcdef";

/// A running server with its own database, stopped and deleted when dropped.
pub struct TestApp {
    /// The server's address.
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// Direct access to the server's database.
    pub db: TestDb,
    /// The `DATABASE_URL` the server was started with.
    pub database_url: String,
    /// Where `METRICS_ADDR` is served, when the test set it.
    pub metrics_addr: Option<SocketAddr>,
    agent: ureq::Agent,
    // Field order matters: the server must stop before its database is removed.
    server: Option<Server>,
    _fresh: Option<FreshDb>,
}

/// A response as a test sees it.
#[derive(Debug)]
pub struct TestResponse {
    /// HTTP status code.
    pub status: u16,
    /// Headers, names lower-cased; the first value of each.
    pub headers: HashMap<String, String>,
    /// The body parsed as JSON (`Value::Null` when empty or not JSON).
    pub json: Value,
    /// The body as text.
    pub text: String,
}

impl TestResponse {
    /// Returns a header's value, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// Starts a server with the test defaults: fresh database, port 0, bcrypt cost 4.
pub fn spawn_app() -> TestApp {
    spawn_app_with(&[])
}

/// Starts a server with the test defaults overridden by `vars` (configuration variables).
pub fn spawn_app_with(vars: &[(&str, &str)]) -> TestApp {
    spawn_app_on(FreshDb::new(), vars)
}

/// Starts a server on the FastAPI service's database: a copy of its SQLite file, or on
/// PostgreSQL the table its SQLAlchemy models create there, holding the same users.
pub fn spawn_app_on_fastapi_fixture() -> TestApp {
    spawn_app_on(FreshDb::with_fastapi_users(), &[])
}

/// Starts another server on `app`'s database, with the same secret: a second instance of a
/// deployment. Its database outlives it (`app` owns it).
pub fn spawn_instance_sharing(app: &TestApp, vars: &[(&str, &str)]) -> TestApp {
    start(app.db.clone(), app.database_url.clone(), None, vars)
}

/// Starts a server on a database the test has prepared (see [`FreshDb`]), which it then owns.
pub fn spawn_app_on(fresh: FreshDb, vars: &[(&str, &str)]) -> TestApp {
    let (db, url) = (fresh.db.clone(), fresh.database_url.clone());
    start(db, url, Some(fresh), vars)
}

fn start(
    db: TestDb,
    database_url: String,
    fresh: Option<FreshDb>,
    vars: &[(&str, &str)],
) -> TestApp {
    let mut env: HashMap<String, String> = [
        ("DATABASE_URL", database_url.as_str()),
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("BCRYPT_COST", "4"),
        ("JWT_SECRET", TEST_SECRET),
        ("WORKERS", "4"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, v) in vars {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    let config = Config::from_lookup(|name| env.get(name).cloned()).expect("valid test config");
    let server = backnd_api::spawn(&config).expect("server starts");
    let addr = server.local_addr();
    let metrics_addr = server.metrics_addr();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    TestApp {
        addr,
        base_url: format!("http://{addr}"),
        db,
        database_url,
        metrics_addr,
        agent,
        server: Some(server),
        _fresh: fresh,
    }
}

fn to_test_response(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> TestResponse {
    let mut response = response.expect("the server answers");
    let status = response.status().as_u16();
    let mut headers = HashMap::new();
    for (name, value) in response.headers() {
        headers
            .entry(name.as_str().to_ascii_lowercase())
            .or_insert_with(|| value.to_str().unwrap_or_default().to_owned());
    }
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    TestResponse {
        status,
        headers,
        json,
        text,
    }
}

impl TestApp {
    /// Builds a full URL for `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// `GET path` with optional extra headers.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> TestResponse {
        let mut request = self.agent.get(&self.url(path));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        to_test_response(request.call())
    }

    /// `POST path` with a raw body and the given content type (None: no Content-Type header).
    pub fn post_raw(&self, path: &str, content_type: Option<&str>, body: &[u8]) -> TestResponse {
        let mut request = self.agent.post(&self.url(path));
        if let Some(ct) = content_type {
            request = request.header("Content-Type", ct);
        }
        to_test_response(request.send(body))
    }

    /// `POST path` with a JSON body.
    pub fn post_json(&self, path: &str, body: &Value) -> TestResponse {
        self.post_raw(path, Some("application/json"), body.to_string().as_bytes())
    }

    /// `method path`, signed in with `token` if given, with a JSON body if given: any route, so
    /// a new one needs no helper of its own.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> TestResponse {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(self.url(path));
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        if body.is_some() {
            request = request.header("Content-Type", "application/json");
        }
        let body = body.map(Value::to_string).unwrap_or_default();
        let request = request.body(body).expect("a well-formed request");
        to_test_response(self.agent.run(request))
    }

    /// `POST /auth/register` with a JSON body.
    pub fn register(&self, body: &Value) -> TestResponse {
        self.post_json("/auth/register", body)
    }

    /// `POST /auth/login` with a JSON body `{email, password}`.
    pub fn login(&self, email: &str, password: &str) -> TestResponse {
        self.post_json(
            "/auth/login",
            &json!({ "email": email, "password": password }),
        )
    }

    /// `POST /auth/login` with the OAuth2 password form.
    pub fn login_form(&self, username: &str, password: &str) -> TestResponse {
        to_test_response(
            self.agent
                .post(&self.url("/auth/login"))
                .send_form([("username", username), ("password", password)]),
        )
    }

    /// `GET /auth/me` with `Authorization: Bearer <token>`.
    pub fn me(&self, token: &str) -> TestResponse {
        self.call("GET", "/auth/me", Some(token), None)
    }

    /// `POST /auth/refresh` with a JSON body `{refresh_token}`.
    pub fn refresh(&self, refresh_token: &str) -> TestResponse {
        self.post_json("/auth/refresh", &json!({ "refresh_token": refresh_token }))
    }

    /// Registers a valid user with this email and password; panics unless it gets 201.
    pub fn register_user(&self, email: &str, password: &str) -> Value {
        let response = self.register(&valid_registration(email, password));
        assert_eq!(
            response.status, 201,
            "registration failed: {}",
            response.text
        );
        response.json
    }

    /// Registers and logs in a user, returning the access token.
    pub fn token_for_new_user(&self, email: &str, password: &str) -> String {
        self.register_user(email, password);
        let response = self.login(email, password);
        assert_eq!(response.status, 200, "login failed: {}", response.text);
        response.json["access_token"]
            .as_str()
            .expect("access_token is a string")
            .to_owned()
    }

    /// Sends raw bytes on a new connection and returns everything the server sends back before
    /// it closes the connection or `timeout` passes.
    pub fn raw_exchange(&self, request: &[u8], timeout: Duration) -> String {
        let mut stream = TcpStream::connect(self.addr).expect("connect");
        stream.set_read_timeout(Some(timeout)).expect("timeout");
        stream.write_all(request).expect("send");
        let mut received = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&received).into_owned()
    }

    /// Stops the server gracefully (as a signal would), keeping the database for inspection.
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
    }
}

/// A registration body that passes every rule.
pub fn valid_registration(email: &str, password: &str) -> Value {
    json!({
        "name": "Ada Lovelace",
        "phone": "+44 20 7946 0958",
        "email": email,
        "password": password,
    })
}

/// Returns the `loc[1]` (field name) of every entry in a 422 body's `detail`.
pub fn error_fields(body: &Value) -> Vec<String> {
    body["detail"]
        .as_array()
        .expect("detail is a list")
        .iter()
        .map(|e| match &e["loc"][1] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Tokens: reading the claims of a token the server issued, and forging tokens of every kind.
// ---------------------------------------------------------------------------------------------

const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Encodes bytes as unpadded base64url, as JWTs carry them.
pub fn base64url_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(BASE64URL[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Decodes unpadded base64url; panics on anything else (the server's tokens must be well-formed).
pub fn base64url_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in text.bytes() {
        let v = BASE64URL
            .iter()
            .position(|&x| x == c)
            .unwrap_or_else(|| panic!("not base64url: {text:?}")) as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Returns a JWT's header and payload as JSON, without checking the signature.
pub fn jwt_parts(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT has three parts: {token}");
    let header = serde_json::from_slice(&base64url_decode(parts[0])).expect("header is JSON");
    let payload = serde_json::from_slice(&base64url_decode(parts[1])).expect("payload is JSON");
    (header, payload)
}

/// Builds a token by hand from a header and payload, with the given signature part (which may
/// be empty, as in an `alg: none` token).
pub fn jwt_by_hand(header: &Value, payload: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{}",
        base64url_encode(header.to_string().as_bytes()),
        base64url_encode(payload.to_string().as_bytes()),
        signature
    )
}

/// Builds a token by hand from any header and payload, signed with HS256 and `secret` as any
/// holder of the secret could: for headers `jsonwebtoken` would not write (`"crit": null`).
pub fn sign_by_hand(header: &Value, payload: &Value, secret: &[u8]) -> String {
    use hmac::Mac;
    let unsigned = jwt_by_hand(header, payload, "");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(unsigned.trim_end_matches('.').as_bytes());
    let signature = base64url_encode(&mac.finalize().into_bytes());
    format!("{unsigned}{signature}")
}

/// Signs `claims` with `secret` and `algorithm`, as any holder of the secret could.
pub fn forge_token(claims: &Value, algorithm: jsonwebtoken::Algorithm, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(algorithm),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .expect("encode a token")
}

/// The current Unix time in seconds.
pub fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Claims for `sub`, issued now and valid for an hour.
pub fn fresh_claims(sub: &str) -> Value {
    let now = unix_now();
    json!({ "sub": sub, "iat": now, "exp": now + 3600 })
}

/// The bcrypt cost whose hash takes about `seconds` on this machine, in this build (8 to 16).
pub fn cost_taking(seconds: f64) -> String {
    let started = std::time::Instant::now();
    backnd_api::hash_password("calibration", 8).expect("hash");
    let cost_8 = started.elapsed().as_secs_f64().max(1e-4);
    (8 + (seconds / cost_8).log2().round().max(0.0) as u32)
        .clamp(8, 16)
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP: for what an HTTP client library hides (keep-alive, interim responses, limits).
// ---------------------------------------------------------------------------------------------

/// One response read off a raw connection.
#[derive(Debug)]
pub struct RawResponse {
    /// Status code from the status line.
    pub status: u16,
    /// Headers, names lower-cased; the first value of each.
    pub headers: HashMap<String, String>,
    /// The body (empty for 1xx responses).
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The body parsed as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Reads exactly one response (status line, headers, `Content-Length` body) from `stream`,
/// leaving anything after it unread. The caller sets the read timeout.
pub fn read_response(stream: &mut TcpStream) -> std::io::Result<RawResponse> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "connection closed after {:?}",
                    String::from_utf8_lossy(&head)
                ),
            ));
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {status_line:?}"));
    let mut headers = HashMap::new();
    for line in lines.filter(|l| !l.is_empty()) {
        if let Some((name, value)) = line.split_once(':') {
            headers
                .entry(name.trim().to_ascii_lowercase())
                .or_insert_with(|| value.trim().to_owned());
        }
    }
    let length = if (100..200).contains(&status) {
        0
    } else {
        headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body)?;
    Ok(RawResponse {
        status,
        headers,
        body,
    })
}

/// Returns the status code at the start of a raw exchange's answer, if it has one.
pub fn raw_status(answer: &str) -> Option<u16> {
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
}

/// Returns the body of a raw exchange's answer (after the blank line) parsed as JSON.
pub fn raw_json(answer: &str) -> Value {
    answer
        .split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str(body).ok())
        .unwrap_or(Value::Null)
}

/// Asserts that `access` no longer signs anyone in: `GET /auth/me` gets the invalid-token 401.
pub fn assert_signed_out(app: &TestApp, access: &str) {
    assert_unauthorized(&app.me(access), "Could not validate credentials");
}

/// Asserts the 401 every refused credential gets: this detail and `WWW-Authenticate: Bearer`.
pub fn assert_unauthorized(response: &TestResponse, detail: &str) {
    assert_eq!(response.status, 401, "{}", response.text);
    assert_eq!(
        response.json,
        json!({ "detail": detail }),
        "{}",
        response.text
    );
    assert_eq!(
        response.header("WWW-Authenticate"),
        Some("Bearer"),
        "headers: {:?}",
        response.headers
    );
}

/// Asserts a 422 in FastAPI's shape and returns the field names it lists.
pub fn assert_validation_error(response: &TestResponse) -> Vec<String> {
    assert_eq!(response.status, 422, "{}", response.text);
    let detail = response.json["detail"]
        .as_array()
        .unwrap_or_else(|| panic!("detail is a list: {}", response.text));
    assert!(
        !detail.is_empty(),
        "detail lists the errors: {}",
        response.text
    );
    for entry in detail {
        let loc = entry["loc"]
            .as_array()
            .unwrap_or_else(|| panic!("loc is a list: {entry}"));
        assert_eq!(
            loc.first(),
            Some(&json!("body")),
            "loc starts with body: {entry}"
        );
        assert!(
            entry["msg"].as_str().is_some_and(|m| !m.is_empty()),
            "msg is a message: {entry}"
        );
        assert!(
            entry["type"].as_str().is_some_and(|t| !t.is_empty()),
            "type is named: {entry}"
        );
    }
    error_fields(&response.json)
}

/// Asserts a 422 that lists exactly these fields (in any order).
pub fn assert_invalid_fields(response: &TestResponse, expected: &[&str]) {
    let mut fields = assert_validation_error(response);
    fields.sort();
    fields.dedup();
    let mut expected: Vec<String> = expected.iter().map(|f| (*f).to_owned()).collect();
    expected.sort();
    assert_eq!(fields, expected, "{}", response.text);
}

/// Asserts that `text` is an RFC 3339 timestamp in UTC written with `Z`, and returns it.
pub fn assert_rfc3339_utc(text: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    let text = text
        .as_str()
        .unwrap_or_else(|| panic!("timestamp is a string: {text}"));
    assert!(text.ends_with('Z'), "UTC written with Z: {text}");
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("not RFC 3339: {text}: {e}"))
}

/// Counts the users stored in the app's database.
pub fn count_users(app: &TestApp) -> i64 {
    app.db.count_users()
}

/// Breaks the database under the running server (see [`TestDb::destroy`]).
pub fn destroy_database(app: &TestApp) {
    app.db.destroy();
}

// ---------------------------------------------------------------------------------------------
// Raw connections: for the tests of the front door, where HTTP itself is the subject.
// ---------------------------------------------------------------------------------------------

/// What a raw connection received, and whether the server closed it.
#[derive(Debug)]
pub struct Received {
    /// Every byte the server sent.
    pub bytes: Vec<u8>,
    /// True when the server closed the connection (end of stream or reset) within the wait.
    pub closed: bool,
}

impl Received {
    /// The responses in `bytes`, parsed strictly (see [`parse_responses`]).
    pub fn responses(&self) -> Vec<RawResponse> {
        parse_responses(&self.bytes)
    }

    /// The bytes as text, for failure messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

impl TestApp {
    /// Opens a raw connection to the server.
    pub fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).expect("connect")
    }
}

/// Connects to the app from `source`, one of the many loopback addresses (127.0.0.2, …), as
/// another client would. Reads time out after 30 s, so that a server that never answers fails
/// the test instead of hanging it.
pub fn connect_from(source: &str, app: &TestApp) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("a socket");
    let source: SocketAddr = format!("{source}:0").parse().expect("an address");
    socket
        .bind(&source.into())
        .expect("bind the source address");
    socket.connect(&app.addr.into()).expect("connect");
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    stream
}

/// Reads from `stream` until the server closes it or `within` passes.
pub fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Received {
    let deadline = std::time::Instant::now() + within;
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Received {
                bytes,
                closed: false,
            };
        }
        stream.set_read_timeout(Some(left)).expect("read timeout");
        match stream.read(&mut buf) {
            Ok(0) => {
                return Received {
                    bytes,
                    closed: true,
                }
            }
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Received {
                    bytes,
                    closed: false,
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // A reset is the server closing too (it may come instead of the end of stream when
            // the server closed with our bytes unread).
            Err(_) => {
                return Received {
                    bytes,
                    closed: true,
                }
            }
        }
    }
}

/// Sends `bytes` on a new connection, shuts the sending side (the client has nothing more to
/// say, so the server never has to wait out a timeout), and reads until the server closes or
/// `within` passes.
pub fn send_and_read(app: &TestApp, bytes: &[u8], within: Duration) -> Received {
    let mut stream = app.connect();
    // The server may answer and close before it has read everything: a failed write is part
    // of what is being tested, not an error of the test.
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    read_until_closed(&mut stream, within)
}

/// Splits what a server sent into responses. Each must be a well-formed HTTP/1.x response whose
/// body is delimited by `Content-Length` or chunked; panics on anything else, so a test cannot
/// miss a malformed answer.
pub fn parse_responses(mut bytes: &[u8]) -> Vec<RawResponse> {
    let mut responses = Vec::new();
    while !bytes.is_empty() {
        let end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("an incomplete response head: {:?}", lossy(bytes)));
        let head = std::str::from_utf8(&bytes[..end]).expect("the head is text");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        assert!(
            status_line.starts_with("HTTP/1.1 ") || status_line.starts_with("HTTP/1.0 "),
            "bad status line {status_line:?}"
        );
        let status: u16 = status_line[9..12]
            .parse()
            .unwrap_or_else(|_| panic!("bad status line {status_line:?}"));
        let mut headers = HashMap::new();
        for line in lines {
            let (name, value) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("bad header line {line:?}"));
            headers
                .entry(name.trim().to_ascii_lowercase())
                .or_insert_with(|| value.trim().to_owned());
        }
        bytes = &bytes[end + 4..];
        let body = if (100..200).contains(&status) {
            Vec::new()
        } else if headers
            .get("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            let mut body = Vec::new();
            loop {
                let line_end = bytes
                    .windows(2)
                    .position(|w| w == b"\r\n")
                    .expect("a chunk size line");
                let size = usize::from_str_radix(
                    std::str::from_utf8(&bytes[..line_end]).expect("hex"),
                    16,
                )
                .expect("a chunk size");
                bytes = &bytes[line_end + 2..];
                if size == 0 {
                    assert!(bytes.starts_with(b"\r\n"), "no trailers are sent");
                    bytes = &bytes[2..];
                    break body;
                }
                body.extend_from_slice(&bytes[..size]);
                assert_eq!(&bytes[size..size + 2], b"\r\n", "a chunk ends with CRLF");
                bytes = &bytes[size + 2..];
            }
        } else {
            let length: usize = headers
                .get("content-length")
                .map(|v| v.parse().expect("a numeric Content-Length"))
                .unwrap_or_else(|| panic!("a response without a length: {head}"));
            assert!(
                bytes.len() >= length,
                "a truncated body: {length} bytes announced, {} sent",
                bytes.len()
            );
            let body = bytes[..length].to_vec();
            bytes = &bytes[length..];
            body
        };
        responses.push(RawResponse {
            status,
            headers,
            body,
        });
    }
    responses
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
