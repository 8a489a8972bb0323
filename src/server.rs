//! The running service: the listener, routing each request to its handler, the responses and
//! the access log, and graceful shutdown.
//!
//! tiny_http gives each connection a thread, which reads whole requests and writes their
//! answers (see vendor/tiny_http/PATCHES.md). Everything cheap is answered right there, on the
//! connection's thread, at most `WORKERS` requests at once; work that needs bcrypt is handed to
//! the [`HashPool`], which answers it through `respond` like any other.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::client::{self, TrustedProxies};
use crate::config::{Config, DatabaseConfig};
use crate::cors::{Cors, CorsOrigins};
use crate::db::{Db, DbError, PoolOptions};
use crate::error::{ApiError, Result};
use crate::hashing::{HashPool, Hashed};
use crate::http::{self, ApiResponse, HttpRequest};
use crate::metrics::{self, Metrics, Snapshot};
use crate::routes::{self, Reply};
use crate::security::TokenKeys;
use crate::state::{AppState, SessionRules};
use crate::throttle::Throttle;
#[cfg(feature = "tls")]
use crate::tls::Certificates;

/// How often a stopping server looks whether its last requests have been answered.
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// Connections the kernel may queue for accepting (it caps this at `net.core.somaxconn`).
const LISTEN_BACKLOG: i32 = 4096;

/// How long a throttled client waits for its 429. Its request cost no hash, but answering it
/// at once would let a client looping on 429s spend the CPU the hashing threads (at a lower
/// priority) need; waiting on its connection's thread costs nothing, and slows such a loop to
/// one request a second per connection (and connections per client are limited).
const THROTTLED_ANSWER_DELAY: Duration = Duration::from_secs(1);

/// How long a graceful shutdown waits for requests still arriving or being answered.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long a graceful shutdown then waits for answers still being written. A client that
/// reads takes milliseconds; one that does not would hold the exit until `WRITE_TIMEOUT`.
const SHUTDOWN_WRITE_GRACE: Duration = Duration::from_secs(1);

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    /// The database could not be opened or its schema applied.
    Database(DbError),
    /// The address could not be bound.
    Bind {
        /// `host:port` as configured.
        address: String,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// Anything else (a thread could not be started, tiny_http refused the listener).
    Other(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Database(err) => write!(f, "cannot open the database: {err}"),
            StartError::Bind { address, source } => {
                write!(f, "cannot listen on {address}: {source}")
            }
            StartError::Other(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for StartError {}

/// The HTTPS certificate of a server serving HTTPS. A build without the `tls` feature has none
/// to hold: its configuration refuses `TLS_CERT_FILE` and `TLS_KEY_FILE`.
#[cfg(feature = "tls")]
type Tls = Arc<Certificates>;
#[cfg(not(feature = "tls"))]
type Tls = std::convert::Infallible;

/// What the access log line and the request metrics need, captured before the request is
/// consumed.
struct AccessLog {
    method: String,
    path: String,
    /// The pattern of the route that matched, or [`metrics::UNMATCHED`].
    route: &'static str,
    started: Instant,
    /// The client's address, worked out once for every handler and limit.
    client: IpAddr,
}

/// What the connection threads' handler shares.
struct Shared {
    http: tiny_http::Server,
    state: Arc<AppState>,
    /// Requests being handled at once, at most `WORKERS`.
    handling: Permits,
    /// Where requests that need bcrypt are handed over.
    hashing: HashPool,
    /// Which origins' pages may call the API (`CORS_ORIGINS`).
    cors: CorsOrigins,
    /// Whose `X-Forwarded-For` and `Forwarded` headers are believed.
    trusted_proxies: TrustedProxies,
    /// Request counts and latencies, and the rendering of `/metrics`.
    metrics: Metrics,
    /// Whether `/metrics` is answered on the API's own port (`METRICS=on`).
    metrics_here: bool,
    /// The listener of `METRICS_ADDR`, when set.
    metrics_http: Option<tiny_http::Server>,
    /// `MAX_CONNECTIONS` as applied.
    max_connections: usize,
}

/// A counting semaphore: how many requests may be handled at once. Connections are many and
/// each has a thread; this keeps the handlers (and so the database pool) to `WORKERS` at a
/// time, the rest waiting their turn.
struct Permits {
    free: Mutex<usize>,
    released: Condvar,
}

impl Permits {
    fn new(count: usize) -> Permits {
        Permits {
            free: Mutex::new(count),
            released: Condvar::new(),
        }
    }

    /// Runs `work` once a permit is free, and frees it after (a panic included).
    fn run<T>(&self, work: impl FnOnce() -> T) -> T {
        struct Held<'a>(&'a Permits);
        impl Drop for Held<'_> {
            fn drop(&mut self) {
                *self.0.lock() += 1;
                self.0.released.notify_one();
            }
        }
        let mut free = self.lock();
        while *free == 0 {
            free = self.released.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        drop(free);
        let _held = Held(self);
        work()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, usize> {
        // A count is sound whatever panicked while it was held.
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running backnd-api server. Dropping it shuts it down gracefully, as [`Server::shutdown`].
pub struct Server {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    /// The HTTPS certificate, when serving HTTPS.
    tls: Option<Tls>,
}

/// Opens the database, binds the configured address and starts serving in background threads.
///
/// Used by `main` and by the tests alike; `PORT=0` picks a free port, which
/// [`Server::local_addr`] reports.
pub fn spawn(config: &Config) -> std::result::Result<Server, StartError> {
    let hash_threads = config.hash_threads.max(1);
    let workers = config.workers.max(1);
    let database_connections = match config.database {
        // SQLite connections cost next to nothing: one for every request handled and every
        // hash at once, so that none waits for another.
        DatabaseConfig::Sqlite { .. } => workers + hash_threads,
        DatabaseConfig::Postgres { .. } => config.database_pool_size as usize,
    };
    let state = Arc::new(open_state(config, database_connections)?);
    let tls = load_tls(config)?;
    let limits = limits(config, database_connections);
    let (http, addr) = bind(&config.host, config.port, limits.clone(), tls.as_ref())?;
    let (metrics_http, metrics_addr) = match &config.metrics_addr {
        Some(address) => {
            let (server, addr) = bind_metrics(address, &limits)?;
            (Some(server), Some(addr))
        }
        None => (None, None),
    };
    let hashing = HashPool::start(
        hash_threads,
        config.hash_queue_size,
        config.hash_queue_timeout,
        hash_jobs_per_client(config, hash_threads),
        state.clone(),
    )
    .map_err(|e| StartError::Other(format!("cannot start a thread: {e}")))?;

    let shared = Arc::new(Shared {
        http,
        state,
        handling: Permits::new(workers),
        hashing,
        cors: config.cors_origins.clone(),
        trusted_proxies: config.trusted_proxies.clone(),
        metrics: Metrics::new(
            config.metrics || metrics_http.is_some(),
            routes::ROUTES
                .iter()
                .map(|route| route.path)
                .chain([METRICS_PATH]),
        ),
        metrics_here: config.metrics,
        metrics_http,
        max_connections: limits.max_connections,
    });
    let server = Server {
        addr,
        metrics_addr,
        shared: shared.clone(),
        tls,
    };
    // Weak: the handler lives inside `shared.http`, and must not keep `shared` alive itself.
    let handler_shared = Arc::downgrade(&shared);
    shared
        .http
        .set_handler(Arc::new(move |request: tiny_http::Request| {
            // Gone only once the server is dropped: the request is then answered 500.
            if let Some(shared) = handler_shared.upgrade() {
                // What may wait (the client's share of the hashing pool, a throttled answer)
                // waits on the connection's own thread, after its worker permit is given back.
                match shared.handling.run(|| handle(&shared, request)) {
                    Then::Done => {}
                    Then::Hash(work, request, log, cors) => {
                        let client = Some(client::limit_key(log.client));
                        let (sender, outcome) = mpsc::sync_channel(1);
                        shared.hashing.submit(work, client, move |hashed| {
                            let _ = sender.send(hashed);
                        });
                        let response = finish(&shared, outcome.recv());
                        respond(&shared, request, cors.apply(response), &log);
                    }
                    Then::Throttled(response, request, log) => {
                        std::thread::sleep(THROTTLED_ANSWER_DELAY);
                        respond(&shared, request, response, &log);
                    }
                }
            }
        }));
    if let Some(metrics_http) = &shared.metrics_http {
        let metrics_shared = Arc::downgrade(&shared);
        metrics_http.set_handler(Arc::new(move |request: tiny_http::Request| {
            if let Some(shared) = metrics_shared.upgrade() {
                serve_metrics_listener(&shared, request);
            }
        }));
    }
    if let Some(metrics_addr) = metrics_addr {
        log::info!("serving metrics on http://{metrics_addr}{METRICS_PATH}");
    }
    let scheme = if server.tls.is_some() {
        "https"
    } else {
        "http"
    };
    log::info!(
        "listening on {scheme}://{addr} ({workers} workers, {hash_threads} hashing threads)"
    );
    #[cfg(feature = "tls")]
    if let Some(tls) = &server.tls {
        log::info!("TLS certificate: SHA-256 {}", tls.fingerprint());
    }
    Ok(server)
}

/// Where the metrics are served, on the API's port (`METRICS=on`) or on `METRICS_ADDR`.
const METRICS_PATH: &str = "/metrics";

/// Connections the `METRICS_ADDR` listener keeps open at once, and per client: a scraper
/// needs one or two; the rest of the limits (the deadlines) are the API's.
const METRICS_CONNECTIONS: usize = 16;

/// `GET /metrics` on the API's port: the text, or 405 for another method.
fn metrics_answer(shared: &Shared, method: &str) -> ApiResponse {
    if method != "GET" && method != "HEAD" {
        return ApiError::MethodNotAllowed {
            allow: "GET, HEAD".to_owned(),
        }
        .into_response();
    }
    let (hashing, hash_waits) = shared.hashing.gauges();
    let text = shared.metrics.render(&Snapshot {
        hashing,
        hash_waits,
        pool: shared.state.db.pool_gauges(),
        pool_stats: shared.state.db.pool_stats(),
        connections: (shared.http.num_connections(), shared.max_connections),
    });
    ApiResponse::bytes(200, metrics::CONTENT_TYPE, text.into_bytes())
}

/// Answers a request on the `METRICS_ADDR` listener: `/metrics`, else 404. It takes no worker
/// permit, so that the figures can be read while every worker is busy, which is when they are
/// wanted; its requests are not counted among the API's.
fn serve_metrics_listener(shared: &Shared, request: tiny_http::Request) {
    let response = if http::path_of(&request) == METRICS_PATH {
        metrics_answer(shared, request.method().as_str())
    } else {
        ApiError::NotFound("Not Found").into_response()
    };
    if let Err(err) = request.respond(response.into_tiny()) {
        log::debug!("could not write the metrics: {err}");
    }
}

/// How many hashing jobs one client may hold queued or running: `HASH_JOBS_PER_CLIENT`, by
/// default a quarter of what the pool holds (threads and queue), at least one; no limit with
/// `RATE_LIMITS=off`.
fn hash_jobs_per_client(config: &Config, hash_threads: usize) -> Option<usize> {
    if !config.rate_limits.enabled {
        return None;
    }
    Some(
        config
            .hash_jobs_per_client
            .unwrap_or(((hash_threads + config.hash_queue_size) / 4).max(1)),
    )
}

/// Opens the database with a pool of `connections` and builds what the handlers share.
fn open_state(config: &Config, connections: usize) -> std::result::Result<AppState, StartError> {
    let pool = PoolOptions {
        max_connections: u32::try_from(connections).unwrap_or(u32::MAX),
        connect_timeout: config.database_connect_timeout,
    };
    let db = Db::open(&config.database, pool).map_err(StartError::Database)?;
    if config.jwt_secret.ephemeral {
        log::warn!(
            "JWT_SECRET is not set: using a random secret for this process, so tokens will not \
             survive a restart or work across instances (set one: openssl rand -hex 32)"
        );
    }
    Ok(AppState {
        db,
        tokens: TokenKeys::new(
            &config.jwt_secret.bytes,
            config.jwt_algorithm,
            config.access_token_expire_minutes,
        ),
        bcrypt_cost: config.bcrypt_cost,
        throttle: Arc::new(Throttle::new(config.rate_limits.clone())),
        sessions: SessionRules::from_config(config),
    })
}

/// Loads the HTTPS certificate when the configuration names one.
#[cfg(feature = "tls")]
fn load_tls(config: &Config) -> std::result::Result<Option<Tls>, StartError> {
    config
        .tls
        .as_ref()
        .map(|files| {
            Certificates::load(files)
                .map(Arc::new)
                .map_err(|err| StartError::Other(err.to_string()))
        })
        .transpose()
}

/// A build without the `tls` feature serves plain HTTP only.
#[cfg(not(feature = "tls"))]
fn load_tls(config: &Config) -> std::result::Result<Option<Tls>, StartError> {
    match config.tls {
        Some(_) => Err(StartError::Other(NO_TLS.to_owned())),
        None => Ok(None),
    }
}

/// Why a build without the `tls` feature refuses `TLS_CERT_FILE` and `TLS_KEY_FILE`.
#[cfg(not(feature = "tls"))]
pub(crate) const NO_TLS: &str = "this build has no HTTPS support (it was built without the \
     `tls` feature); use the standard build, or a proxy that terminates TLS";

/// Binds `METRICS_ADDR` and starts a tiny_http of its own on it, with the API's deadlines and
/// a few connections. It speaks plain HTTP even when the API serves HTTPS: bind it to loopback
/// or a private network.
fn bind_metrics(
    address: &str,
    api: &tiny_http::Limits,
) -> std::result::Result<(tiny_http::Server, SocketAddr), StartError> {
    let (host, port) = crate::config::split_host_port(address)
        .ok_or_else(|| StartError::Other(format!("METRICS_ADDR {address:?} is not host:port")))?;
    let limits = tiny_http::Limits {
        max_connections: METRICS_CONNECTIONS,
        max_connections_per_client: METRICS_CONNECTIONS / 2,
        ..api.clone()
    };
    bind(host, port, limits, None)
}

/// Binds `host:port` and starts tiny_http on it with `limits`, serving HTTPS with `tls` if
/// given.
fn bind(
    host: &str,
    port: u16,
    limits: tiny_http::Limits,
    tls: Option<&Tls>,
) -> std::result::Result<(tiny_http::Server, SocketAddr), StartError> {
    let address = format!("{host}:{port}");
    let listener = listen(host, port).map_err(|source| StartError::Bind {
        address: address.clone(),
        source,
    })?;
    let addr = listener
        .local_addr()
        .map_err(|source| StartError::Bind { address, source })?;
    log::debug!("connection limits: {limits:?}");
    let http = match tls {
        #[cfg(not(feature = "tls"))]
        Some(never) => match *never {},
        #[cfg(feature = "tls")]
        Some(tls) => {
            tiny_http::Server::from_listener_with_tls(listener, tls.server_config(), limits)
        }
        None => tiny_http::Server::from_listener_with_limits(listener, None, limits),
    }
    .map_err(|e| StartError::Other(format!("cannot start the HTTP server: {e}")))?;
    Ok((http, addr))
}

/// Binds `host:port` (the first of its addresses that works) with a listen queue of
/// [`LISTEN_BACKLOG`]. The standard library's 128 overflows under a burst of new connections:
/// the kernel then completes handshakes it never queues (SYN cookies), and those clients wait
/// on connections the server never sees.
fn listen(host: &str, port: u16) -> std::io::Result<TcpListener> {
    use std::net::ToSocketAddrs;
    let mut last_error = None;
    for addr in (host, port).to_socket_addrs()? {
        let attempt = (|| {
            let socket = socket2::Socket::new(
                socket2::Domain::for_address(addr),
                socket2::Type::STREAM,
                Some(socket2::Protocol::TCP),
            )?;
            // As std does: a restarted server can bind while old connections linger.
            socket.set_reuse_address(true)?;
            socket.bind(&addr.into())?;
            socket.listen(LISTEN_BACKLOG)?;
            Ok(TcpListener::from(socket))
        })();
        match attempt {
            Ok(listener) => return Ok(listener),
            Err(err) => last_error = Some(err),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to listen on")
    }))
}

/// What one client may take: the configured timeouts, the body limit, `MAX_CONNECTIONS` (by
/// default as many connections as the open-file limit leaves descriptors for) and
/// `MAX_CONNECTIONS_PER_CLIENT` (by default half of that).
fn limits(config: &Config, database_connections: usize) -> tiny_http::Limits {
    let max_connections = config.max_connections.unwrap_or_else(|| {
        let open_files = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
        crate::config::default_max_connections(open_files, database_connections)
    });
    tiny_http::Limits {
        max_connections,
        max_connections_per_client: config
            .max_connections_per_client
            .unwrap_or((max_connections / 2).max(1)),
        max_body_bytes: http::MAX_BODY_BYTES,
        idle_timeout: config.idle_timeout,
        header_timeout: config.header_timeout,
        body_timeout: config.body_timeout,
        write_timeout: config.write_timeout,
    }
}

impl Server {
    /// The address the server listens on (with the real port when 0 was configured).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address `METRICS_ADDR` is served on (with the real port when 0 was configured).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Whether it serves HTTPS (`TLS_CERT_FILE` and `TLS_KEY_FILE` are set).
    pub fn serves_https(&self) -> bool {
        self.tls.is_some()
    }

    /// Reads the HTTPS certificate and key again from their files (on SIGHUP): handshakes
    /// from now on present the new certificate, connections already open are untouched. On
    /// any problem the error is logged and the current certificate kept. Does nothing when
    /// serving plain HTTP.
    pub fn reload_certificate(&self) {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            match tls.reload() {
                Ok(fingerprint) => log::info!("TLS certificate reloaded: SHA-256 {fingerprint}"),
                Err(err) => log::error!(
                    "cannot reload the TLS certificate, still serving the previous one: {err}"
                ),
            }
        }
    }

    /// Stops accepting connections, answers every request already received (those waiting for
    /// a hash included), then returns.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let http = &self.shared.http;
        http.stop_accepting();
        if let Some(metrics_http) = &self.shared.metrics_http {
            metrics_http.stop_accepting();
        }
        // Requests already arriving (a body has until BODY_TIMEOUT), being handled or hashed.
        wait_until(|| http.requests_in_progress() == 0, SHUTDOWN_GRACE);
        // Nothing more can be queued now: the hashers finish the queue and end.
        self.shared.hashing.shutdown();
        wait_until(|| http.responses_being_written() == 0, SHUTDOWN_WRITE_GRACE);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The answer to hashed work, on the request's connection thread: the pool's answer, or the
/// finish it handed over (a database write) run here under a worker permit, so that hashing
/// threads never wait on the disk. Work dropped unanswered (by a pool shutting down) is a 503.
fn finish(shared: &Shared, outcome: Result<Hashed, mpsc::RecvError>) -> ApiResponse {
    match outcome {
        Ok(Hashed::Answer(response)) => response,
        Ok(Hashed::Finish(finish)) => shared.handling.run(|| {
            catch_unwind(AssertUnwindSafe(|| finish(&shared.state)))
                .unwrap_or_else(|panic| Err(ApiError::panicked(panic.as_ref())))
                .unwrap_or_else(ApiError::into_response)
        }),
        Err(mpsc::RecvError) => ApiError::hashing_busy().into_response(),
    }
}

/// Waits until `done()` or for `at_most`, whichever comes first.
fn wait_until(done: impl Fn() -> bool, at_most: Duration) {
    let deadline = Instant::now() + at_most;
    while !done() && Instant::now() < deadline {
        std::thread::sleep(DRAIN_POLL);
    }
}

/// What is left to do for a request once its handler has run.
enum Then {
    /// It has been answered.
    Done,
    /// Its work goes to the hashing pool, which answers it (with the CORS headers it needs).
    Hash(routes::Deferred, tiny_http::Request, AccessLog, Cors),
    /// It is answered 429, after [`THROTTLED_ANSWER_DELAY`].
    Throttled(ApiResponse, tiny_http::Request, AccessLog),
}

/// Routes one request and answers it, or says what is left to do. A CORS preflight is answered
/// before routing; every answer gets the CORS headers the request's origin allows.
fn handle(shared: &Shared, mut request: tiny_http::Request) -> Then {
    let mut log = AccessLog {
        method: request.method().as_str().to_owned(),
        path: http::path_of(&request).to_owned(),
        route: metrics::UNMATCHED,
        started: Instant::now(),
        client: client_of(&request, &shared.trusted_proxies),
    };
    let cors = Cors::for_request(&shared.cors, &request, &log.method, &log.path);
    let reply = match cors.preflight() {
        Some(preflight) => Ok(Reply::Now(preflight)),
        None if shared.metrics_here && log.path == METRICS_PATH => {
            log.route = METRICS_PATH;
            Ok(Reply::Now(metrics_answer(shared, &log.method)))
        }
        None => dispatch(&shared.state, &mut request, &mut log),
    };
    match reply {
        Ok(Reply::Now(response)) => respond(shared, request, cors.apply(response), &log),
        Err(err @ ApiError::TooManyRequests { .. }) => {
            return Then::Throttled(cors.apply(err.into_response()), request, log)
        }
        Err(err) => respond(shared, request, cors.apply(err.into_response()), &log),
        Ok(Reply::Deferred(work)) => return Then::Hash(work, request, log, cors),
    }
    Then::Done
}

/// The request's client address: the TCP peer, or the address a trusted proxy forwarded.
fn client_of(request: &tiny_http::Request, proxies: &TrustedProxies) -> IpAddr {
    // tiny_http has no peer only for a connection that is not TCP (never ours).
    let peer = request
        .remote_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), SocketAddr::ip);
    if proxies.is_empty() {
        return peer;
    }
    client::client_address(
        peer,
        proxies,
        &http::header_values(request, "X-Forwarded-For"),
        &http::header_values(request, "Forwarded"),
    )
}

/// Finds the handler, reads the body it needs, and runs it, turning a panic into a 500.
fn dispatch(
    state: &AppState,
    request: &mut tiny_http::Request,
    log: &mut AccessLog,
) -> Result<Reply> {
    let matched = routes::find(&log.method, &log.path)?;
    log.route = matched.route.path;
    let body = if matched.route.method.takes_body() {
        request.take_body()
    } else {
        Vec::new()
    };
    let request = HttpRequest::new(request, body, matched.params, log.client);
    run_handler(matched.route.handler, state, &request)
}

/// Calls a handler, answering a panic as an internal error (tiny_http would otherwise lose the
/// worker thread and leave the client without an answer).
fn run_handler(
    handler: routes::Handler,
    state: &AppState,
    request: &HttpRequest<'_>,
) -> Result<Reply> {
    catch_unwind(AssertUnwindSafe(|| handler(state, request)))
        .unwrap_or_else(|panic| Err(ApiError::panicked(panic.as_ref())))
}

/// Hands the response to the request's connection, which writes it (closing the connection
/// after it when the client asked or the server is stopping), counts it, and writes the
/// access-log line (whose fields `LOG_FORMAT=json` writes out one by one).
fn respond(shared: &Shared, request: tiny_http::Request, response: ApiResponse, log: &AccessLog) {
    let status = response.status;
    let took = log.started.elapsed();
    if let Err(err) = request.respond(response.into_tiny()) {
        log::debug!("could not write the response: {err}");
    }
    shared.metrics.record(log.route, &log.method, status, took);
    let duration_ms = took.as_secs_f64() * 1000.0;
    log::info!(
        target: "access",
        method = log.method.as_str(),
        path = log.path.as_str(),
        status,
        duration_ms,
        client:% = log.client;
        "{} {} {} {:.1}ms",
        log.method,
        log.path,
        status,
        duration_ms
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panicking_handler(_: &AppState, _: &HttpRequest<'_>) -> Result<Reply> {
        panic!("boom")
    }

    #[test]
    fn a_panicking_handler_becomes_a_500_that_does_not_reveal_the_cause() {
        let (state, _dir) = AppState::for_tests();
        let raw: tiny_http::Request = tiny_http::TestRequest::new().into();
        let result = run_handler(
            panicking_handler,
            &state,
            &HttpRequest::new(&raw, Vec::new(), Vec::new(), IpAddr::from([127, 0, 0, 1])),
        );
        let Err(err) = result else {
            panic!("a panic must become an error")
        };
        let response = err.into_response();
        assert_eq!(response.status, 500);
        assert_eq!(&*response.body, br#"{"detail":"Internal Server Error"}"#);
    }
}
