//! # Simple usage
//!
//! ## Creating the server
//!
//! The easiest way to create a server is to call `Server::http()`.
//!
//! The `http()` function returns an `IoResult<Server>` which will return an error
//! in the case where the server creation fails (for example if the listening port is already
//! occupied).
//!
//! ```no_run
//! let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! ```
//!
//! A newly-created `Server` will immediately start listening for incoming connections and HTTP
//! requests.
//!
//! ## Receiving requests
//!
//! Calling `server.recv()` will block until the next request is available.
//! This function returns an `IoResult<Request>`, so you need to handle the possible errors.
//!
//! ```no_run
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//!
//! loop {
//!     // blocks until the next request is received
//!     let request = match server.recv() {
//!         Ok(rq) => rq,
//!         Err(e) => { println!("error: {}", e); break }
//!     };
//!
//!     // do something with the request
//!     // ...
//! }
//! ```
//!
//! In a real-case scenario, you will probably want to spawn multiple worker tasks and call
//! `server.recv()` on all of them. Like this:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use std::thread;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! let server = Arc::new(server);
//! let mut guards = Vec::with_capacity(4);
//!
//! for _ in (0 .. 4) {
//!     let server = server.clone();
//!
//!     let guard = thread::spawn(move || {
//!         loop {
//!             let rq = server.recv().unwrap();
//!
//!             // ...
//!         }
//!     });
//!
//!     guards.push(guard);
//! }
//! ```
//!
//! If you don't want to block, you can call `server.try_recv()` instead.
//!
//! ## Handling requests
//!
//! The `Request` object returned by `server.recv()` contains informations about the client's request.
//! The most useful methods are probably `request.method()` and `request.url()` which return
//! the requested method (`GET`, `POST`, etc.) and url.
//!
//! To handle a request, you need to create a `Response` object. See the docs of this object for
//! more infos. Here is an example of creating a `Response` from a file:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! ```
//!
//! All that remains to do is call `request.respond()`:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! # let request = server.recv().unwrap();
//! # let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! let _ = request.respond(response);
//! ```
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![allow(clippy::match_like_matches_macro)]

#[cfg(feature = "ssl-rustls")]
use zeroize::Zeroizing;

use std::error::Error;
use std::io::Error as IoError;
use std::io::ErrorKind as IoErrorKind;
use std::io::Read as _;
use std::io::Result as IoResult;
use std::io::Write as _;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use connection::Connection;
use util::MessagesQueue;

pub use common::{HTTPVersion, Header, HeaderField, Method, StatusCode};
pub use connection::{ConfigListenAddr, ListenAddr, Listener};
pub use request::{ReadWrite, Request};
pub use response::{Response, ResponseBox};
pub use test::TestRequest;

mod client;
mod common;
mod connection;
mod request;
mod response;
mod ssl;
mod test;
mod util;
mod wire;

/// backnd-api patch: the answer to a connection that cannot be served: over
/// [`Limits::max_connections`], or no thread could be started for it. Written as bytes, not by
/// `Response::raw_print`, so it carries by hand the `nosniff` every response carries.
const NO_CAPACITY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: application/json\r\nX-Content-Type-Options: nosniff\r\nRetry-After: 1\r\n\
Connection: close\r\nContent-Length: 54\r\n\r\n\
{\"detail\":\"Service Unavailable: too many connections\"}";

/// backnd-api patch: pause after a failed accept, so a shortage of descriptors does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(20);

/// backnd-api patch: the stack of a connection's thread. Only the pages a thread touches count
/// towards memory, and the connection code keeps its buffers on the heap, so an idle connection
/// costs a few pages whatever this is; it is sized for the handler that may run on the thread
/// (`Server::set_handler`), with room for deep JSON in a debug build.
const CONNECTION_STACK_BYTES: usize = 1024 * 1024;

/// backnd-api patch: what one client may take, in time and space.
///
/// Every connection is served by a thread of its own and one descriptor; these bound how long
/// and how much any of them can hold.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections open at once; past it a new one is answered `503` and closed.
    pub max_connections: usize,
    /// Connections one client may hold at once, a client being an IPv4 address or an IPv6 /64
    /// (what one host can trivially have); past it its new ones are answered `503` and closed.
    pub max_connections_per_client: usize,
    /// The largest request body; larger ones are answered `413` without being read.
    pub max_body_bytes: usize,
    /// How long a connection may wait for the next request to begin before it is closed.
    pub idle_timeout: Duration,
    /// How long the whole head of a request may take once its first byte has arrived
    /// (else `408`).
    pub header_timeout: Duration,
    /// How long the whole body of a request may take (else `408`).
    pub body_timeout: Duration,
    /// How long writing a whole response may take; a client that does not read it in time is
    /// dropped.
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 10_000,
            max_connections_per_client: 5_000,
            max_body_bytes: 64 * 1024,
            idle_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// backnd-api patch: what handles a request on its connection's thread (see
/// [`Server::set_handler`]).
pub type Handler = Arc<dyn Fn(Request) + Send + Sync>;

/// backnd-api patch: what the accept thread, the connection threads and the `Server` share.
pub(crate) struct Shared {
    messages: Arc<MessagesQueue<Request>>,
    /// When set, requests are passed to it rather than queued for `recv()`.
    handler: std::sync::OnceLock<Handler>,
    limits: Limits,
    /// Set once the server stops accepting: connections finish their request and close.
    closing: AtomicBool,
    /// Set once the `Server` is dropped: nobody will take queued requests any more.
    gone: AtomicBool,
    /// Requests whose head has been read and that are not yet answered.
    in_progress: AtomicUsize,
    /// Answers being written.
    writing: AtomicUsize,
    /// Connections open now.
    open: AtomicUsize,
    /// Connections open now, by client.
    clients: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

impl Shared {
    pub(crate) fn closing(&self) -> bool {
        self.closing.load(SeqCst)
    }

    pub(crate) fn gone(&self) -> bool {
        self.gone.load(SeqCst)
    }
}

/// The main class of this library.
///
/// Destroying this object will immediately close the listening socket and the reading
///  part of all the client's connections. Requests that have already been returned by
///  the `recv()` function will not close and the responses will be transferred to the client.
pub struct Server {
    // queue for the requests read by the connection threads
    messages: Arc<MessagesQueue<Request>>,

    // result of TcpListener::local_addr()
    listening_addr: ListenAddr,

    // backnd-api patch: state shared with the accept and connection threads
    shared: Arc<Shared>,
}

// this trait is to make sure that Server implements Share and Send
#[doc(hidden)]
#[allow(dead_code)] // backnd-api patch: a compile-time check, never called
trait MustBeShareDummy: Sync + Send {}
#[doc(hidden)]
impl MustBeShareDummy for Server {}

pub struct IncomingRequests<'a> {
    server: &'a Server,
}

/// Represents the parameters required to create a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The addresses to try to listen to.
    pub addr: ConfigListenAddr,

    /// If `Some`, then the server will use SSL to encode the communications.
    pub ssl: Option<SslConfig>,
}

/// Configuration of the server for SSL.
#[derive(Debug, Clone)]
pub struct SslConfig {
    /// Contains the public certificate to send to clients.
    pub certificate: Vec<u8>,
    /// Contains the ultra-secret private key used to decode communications.
    pub private_key: Vec<u8>,
}

impl Server {
    /// Shortcut for a simple server on a specific address.
    #[inline]
    pub fn http<A>(addr: A) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
            ssl: None,
        })
    }

    /// Shortcut for an HTTPS server on a specific address.
    #[cfg(feature = "ssl-rustls")]
    #[inline]
    pub fn https<A>(
        addr: A,
        config: SslConfig,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
            ssl: Some(config),
        })
    }

    #[cfg(unix)]
    #[inline]
    /// Shortcut for a UNIX socket server at a specific path
    pub fn http_unix(
        path: &std::path::Path,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::unix_from_path(path),
            ssl: None,
        })
    }

    /// Builds a new server that listens on the specified address.
    pub fn new(config: ServerConfig) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listener = config.addr.bind()?;
        Self::from_listener(listener, config.ssl)
    }

    /// Builds a new server using the specified TCP listener.
    ///
    /// This is useful if you've constructed TcpListener using some less usual method
    /// such as from systemd. For other cases, you probably want the `new()` function.
    pub fn from_listener<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Self::from_listener_with_limits(listener, ssl_config, Limits::default())
    }

    /// backnd-api patch: [`Server::from_listener`] with the given [`Limits`].
    pub fn from_listener_with_limits<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
        limits: Limits,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let ssl: Option<Arc<SslContext>> = {
            match ssl_config {
                #[cfg(feature = "ssl-rustls")]
                Some(config) => Some(Arc::new(SslContext::from_pem(
                    config.certificate,
                    Zeroizing::new(config.private_key),
                )?)),
                #[cfg(not(feature = "ssl-rustls"))]
                Some(_) => return Err(
                    "Building a server with SSL requires enabling the `ssl-rustls` feature in tiny-http"
                        .into(),
                ),
                None => None,
            }
        };
        Self::start(listener.into(), ssl, limits)
    }

    /// backnd-api patch: an HTTPS server on `listener` with the given rustls configuration,
    /// which the application keeps control of: its certificate resolver (to replace the
    /// certificate while serving), protocol versions and ALPN. Handshakes run on each
    /// connection's thread, the first byte within `limits.idle_timeout` and the rest within
    /// `limits.header_timeout`; the connection then keeps every deadline a plain one has.
    #[cfg(feature = "ssl-rustls")]
    pub fn from_listener_with_tls<L: Into<Listener>>(
        listener: L,
        tls: Arc<rustls::ServerConfig>,
        limits: Limits,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Self::start(
            listener.into(),
            Some(Arc::new(SslContext::new(tls))),
            limits,
        )
    }

    fn start(
        listener: Listener,
        ssl: Option<Arc<SslContext>>,
        limits: Limits,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let local_addr = listener.local_addr()?;
        log::debug!("Server listening on {}", local_addr);

        let messages = MessagesQueue::with_capacity(8);
        let shared = Arc::new(Shared {
            messages: messages.clone(),
            handler: std::sync::OnceLock::new(),
            limits,
            closing: AtomicBool::new(false),
            gone: AtomicBool::new(false),
            in_progress: AtomicUsize::new(0),
            writing: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            clients: std::sync::Mutex::new(std::collections::HashMap::new()),
        });

        let accept_shared = shared.clone();
        thread::Builder::new()
            .name("http-accept".to_owned())
            .spawn(move || accept_loop(&listener, &accept_shared, ssl))?;

        Ok(Server {
            messages,
            listening_addr: local_addr,
            shared,
        })
    }

    /// Returns an iterator for all the incoming requests.
    ///
    /// The iterator will return `None` if the server socket is shutdown.
    #[inline]
    pub fn incoming_requests(&self) -> IncomingRequests<'_> {
        IncomingRequests { server: self }
    }

    /// Returns the address the server is listening to.
    #[inline]
    pub fn server_addr(&self) -> ListenAddr {
        self.listening_addr.clone()
    }

    /// Returns the number of clients currently connected to the server.
    pub fn num_connections(&self) -> usize {
        self.shared.open.load(SeqCst)
    }

    /// Blocks until an HTTP request has been submitted and returns it.
    pub fn recv(&self) -> IoResult<Request> {
        match self.messages.pop() {
            Some(rq) => Ok(rq),
            None => Err(IoError::new(IoErrorKind::Other, "thread unblocked")),
        }
    }

    /// Same as `recv()` but doesn't block longer than timeout
    pub fn recv_timeout(&self, timeout: Duration) -> IoResult<Option<Request>> {
        Ok(self.messages.pop_timeout(timeout))
    }

    /// Same as `recv()` but doesn't block.
    pub fn try_recv(&self) -> IoResult<Option<Request>> {
        Ok(self.messages.try_pop())
    }

    /// Unblock thread stuck in recv() or incoming_requests().
    /// If there are several such threads, only one is unblocked.
    /// This method allows graceful shutdown of server.
    pub fn unblock(&self) {
        self.messages.unblock();
    }
}

impl Iterator for IncomingRequests<'_> {
    type Item = Request;
    fn next(&mut self) -> Option<Request> {
        self.server.recv().ok()
    }
}

impl Server {
    /// backnd-api patch: hands every request to `handler`, on the thread of the connection it
    /// arrived on, instead of queueing it for `recv()`. The handler answers with
    /// [`Request::respond`], then or later from any thread; the connection writes the answer.
    ///
    /// Running the handler where the request already is saves handing it to another thread and
    /// back: on a busy machine those two wake-ups cost more than a cheap request itself. Set it
    /// before the first request arrives (only the first call counts). The handler should not
    /// own this `Server` (hold a `Weak`), or neither is ever dropped.
    pub fn set_handler(&self, handler: Handler) {
        let _ = self.shared.handler.set(handler);
    }

    /// backnd-api patch: how many requests have arrived (their head is read) and are not yet
    /// answered: their body still arriving, or waiting for or in a handler. A graceful shutdown
    /// waits for this to reach zero.
    pub fn requests_in_progress(&self) -> usize {
        self.shared.in_progress.load(SeqCst)
    }

    /// backnd-api patch: how many answers are being written to their connections. A graceful
    /// shutdown gives these a moment before the process exits.
    pub fn responses_being_written(&self) -> usize {
        self.shared.writing.load(SeqCst)
    }

    /// backnd-api patch: stops accepting new connections while requests already received can
    /// still be taken with `recv()` and answered, for a graceful shutdown. Connections close
    /// after the request they are reading; one that begins a new request is answered `503`.
    /// Idempotent.
    pub fn stop_accepting(&self) {
        if self.shared.closing.swap(true, SeqCst) {
            return;
        }
        // Connect briefly to ourselves to unblock the accept thread
        let maybe_stream = match &self.listening_addr {
            ListenAddr::IP(addr) => TcpStream::connect(addr).map(Connection::from),
            #[cfg(unix)]
            ListenAddr::Unix(addr) => match addr.as_pathname() {
                Some(path) => std::os::unix::net::UnixStream::connect(path).map(Connection::from),
                None => Err(IoErrorKind::NotFound.into()),
            },
        };
        if let Ok(stream) = maybe_stream {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_accepting();
        // backnd-api patch: nobody takes requests any more. Answer those still queued (a
        // dropped request answers 500), and tell connections waiting on one not to wait.
        self.shared.gone.store(true, SeqCst);
        while let Some(request) = self.messages.try_pop() {
            drop(request);
        }

        #[cfg(unix)]
        if let ListenAddr::Unix(addr) = &self.listening_addr {
            if let Some(path) = addr.as_pathname() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// backnd-api patch: accepts connections and starts a thread for each, until the server stops
/// accepting.
///
/// Upstream ended this thread on the first accept error, so one `EMFILE` stopped the server for
/// good; it also ran TLS handshakes here, one slow client at a time. Now an accept error
/// (a passing shortage of descriptors or memory, or one failed connection) is logged at most
/// once a second and followed by a short pause, and everything but the accept itself happens
/// on the connection's own thread.
fn accept_loop(listener: &Listener, shared: &Arc<Shared>, ssl: Option<Arc<SslContext>>) {
    log::debug!("Running accept thread");
    let mut last_error_logged: Option<std::time::Instant> = None;
    while !shared.closing() {
        let (sock, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) => {
                let now = std::time::Instant::now();
                if last_error_logged
                    .map_or(true, |at| now.duration_since(at) >= Duration::from_secs(1))
                {
                    log::error!("Error accepting new client (still accepting): {}", e);
                    last_error_logged = Some(now);
                }
                thread::sleep(ACCEPT_ERROR_PAUSE);
                continue;
            }
        };
        if shared.closing() {
            break;
        }
        sock.set_nodelay();
        if shared.open.load(SeqCst) >= shared.limits.max_connections {
            answer_no_capacity(sock);
            continue;
        }
        let client = peer.map(|addr| client_of(addr.ip()));
        if !shared.admit(client) {
            answer_no_capacity(sock);
            continue;
        }
        shared.open.fetch_add(1, SeqCst);
        // The socket goes to the thread only once it runs, so that if no thread can be
        // started it is still here to be answered.
        let (handover, taken) = mpsc::sync_channel::<Connection>(1);
        let thread_shared = shared.clone();
        let thread_ssl = ssl.clone();
        let started = thread::Builder::new()
            .name("http-connection".to_owned())
            .stack_size(CONNECTION_STACK_BYTES)
            .spawn(move || {
                let _open = OpenConnection {
                    shared: &thread_shared,
                    client,
                };
                if let Ok(sock) = taken.recv() {
                    let limits = &thread_shared.limits;
                    if let Some(stream) = handshake(thread_ssl.as_deref(), sock, limits) {
                        client::serve(stream, &thread_shared);
                    }
                }
            });
        match started {
            Ok(_) => {
                let _ = handover.send(sock);
            }
            Err(e) => {
                shared.open.fetch_sub(1, SeqCst);
                shared.release(client);
                log::error!("Cannot start a connection thread: {}", e);
                answer_no_capacity(sock);
            }
        }
    }
    log::debug!("Terminating accept thread");
}

/// Counts a connection in `open`, and for its client, for as long as it lives.
struct OpenConnection<'a> {
    shared: &'a Shared,
    client: Option<std::net::IpAddr>,
}

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.shared.open.fetch_sub(1, SeqCst);
        self.shared.release(self.client);
    }
}

/// The client a connection comes from: its IPv4 address, or its IPv6 /64, since one host can
/// have as many addresses in its /64 as it likes. Public so that an application counting its
/// own per-client limits counts clients as `max_connections_per_client` does.
pub fn client_of(ip: std::net::IpAddr) -> std::net::IpAddr {
    use std::net::{IpAddr, Ipv6Addr};
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

impl Shared {
    /// Counts a new connection for `client`, unless it already holds as many as allowed.
    fn admit(&self, client: Option<std::net::IpAddr>) -> bool {
        let Some(client) = client else {
            return true;
        };
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let held = clients.entry(client).or_insert(0);
        if *held >= self.limits.max_connections_per_client {
            return false;
        }
        *held += 1;
        true
    }

    /// Uncounts a connection of `client`, forgetting clients with none left.
    fn release(&self, client: Option<std::net::IpAddr>) {
        let Some(client) = client else { return };
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(held) = clients.get_mut(&client) {
            *held -= 1;
            if *held == 0 {
                clients.remove(&client);
            }
        }
    }
}

/// Answers `503` without waiting on the client, then closes.
fn answer_no_capacity(mut sock: Connection) {
    if sock.set_nonblocking(true).is_ok() {
        let _ = sock.write_all(NO_CAPACITY_RESPONSE);
        let _ = sock.shutdown(Shutdown::Write);
        // What the client has sent already would make the close a reset; drop it first.
        let mut buf = [0u8; 4096];
        while matches!(sock.read(&mut buf), Ok(n) if n > 0) {}
    }
}

/// The TLS context connections are served with, when a TLS feature is on.
#[cfg(not(feature = "ssl-rustls"))]
type SslContext = ();
#[cfg(feature = "ssl-rustls")]
type SslContext = crate::ssl::SslContextImpl;

/// backnd-api patch: turns an accepted socket into the stream a connection is served on,
/// with a TLS handshake when the server has a TLS context: on the connection's own thread, its
/// first byte within the idle timeout and the rest within the header timeout, as a request's
/// head would be (`ssl/rustls.rs`).
fn handshake(
    ssl: Option<&SslContext>,
    sock: Connection,
    limits: &Limits,
) -> Option<util::refined_tcp_stream::Stream> {
    match ssl {
        None => Some(sock.into()),
        #[cfg(feature = "ssl-rustls")]
        Some(context) => context.accept(sock, limits.idle_timeout, limits.header_timeout),
        // Without a TLS feature no context can be built (`from_listener` refuses one).
        #[cfg(not(feature = "ssl-rustls"))]
        Some(()) => {
            let _ = limits;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::client_of;
    use std::net::IpAddr;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn a_client_is_an_ipv4_address_or_an_ipv6_slash_64() {
        assert_eq!(client_of(ip("203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(client_of(ip("::ffff:203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(
            client_of(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            client_of(ip("2001:db8:1:2::1")),
            client_of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            client_of(ip("2001:db8:1:2::1")),
            client_of(ip("2001:db8:1:3::1"))
        );
    }
}
