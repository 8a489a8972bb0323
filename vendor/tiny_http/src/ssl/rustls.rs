//! backnd-api patch: TLS connections with rustls 0.23, under the same deadlines as plain ones.
//!
//! Upstream (rustls 0.20) ran each handshake on the accept thread with no timeout, and wrapped
//! rustls' `StreamOwned` in an `Arc<Mutex<_>>` that hid the socket, so none of the connection's
//! deadlines reached it: a client that opened a connection and sent half a ClientHello stopped
//! the server accepting, and one that trickled records after the handshake held its thread as
//! long as it liked. Here:
//!
//! - the handshake runs on the connection's own thread: the first byte within `idle_timeout`
//!   (as for a request on a plain connection), then the whole handshake within
//!   `header_timeout` of that byte; a client that sends nothing, stalls halfway or speaks
//!   plain HTTP is dropped by then (plain HTTP at once, as it is no TLS record);
//! - after it, [`TlsStream`] owns the connection and its socket outright (one thread does all
//!   of a connection's I/O) and keeps the contract of a plain socket's timeouts: one `read` or
//!   `write` blocks at most the timeout last set, however many TLS records and system calls it
//!   takes, so a client trickling a record a byte at a time meets the same head, body and write
//!   deadlines as over plain HTTP.

use std::error::Error;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConnection;
use zeroize::Zeroizing;

use crate::connection::Connection;
use crate::util::refined_tcp_stream::Stream as RefinedStream;

/// How far past its budget one socket wait may run before its timeout is set again: setting it
/// costs a system call, and a read of a whole record usually needs one wait.
const TIMEOUT_SLACK: Duration = Duration::from_millis(50);

/// How long a failed handshake's alert may take to write: it only helps a client say why.
const ALERT_WRITE_TIME: Duration = Duration::from_millis(200);

/// A TLS connection once its handshake is done, owned by the connection's thread.
pub(crate) struct TlsStream {
    conn: ServerConnection,
    sock: Connection,
    /// How long one `read` or `write` may block in all, as the connection last set it.
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    /// The socket's own timeouts as last set: shorter than the above while one call has
    /// already waited on part of a record.
    sock_read_timeout: Option<Duration>,
    sock_write_timeout: Option<Duration>,
}

impl TlsStream {
    fn new(conn: ServerConnection, sock: Connection) -> TlsStream {
        TlsStream {
            conn,
            sock,
            read_timeout: None,
            write_timeout: None,
            sock_read_timeout: None,
            sock_write_timeout: None,
        }
    }

    // backnd-api patch: not inlined into the stream's dispatch (see `refined_tcp_stream.rs`).
    #[inline(never)]
    pub(crate) fn peer_addr(&mut self) -> io::Result<Option<SocketAddr>> {
        self.sock.peer_addr()
    }

    /// Shuts the socket; shutting the write half says `close_notify` first, so that the
    /// client can tell the end of the answer from a truncation.
    // backnd-api patch: not inlined into the stream's dispatch (see `refined_tcp_stream.rs`).
    #[inline(never)]
    pub(crate) fn shutdown(&mut self, how: Shutdown) -> io::Result<()> {
        if how != Shutdown::Read {
            self.conn.send_close_notify();
            let _ = self.write_tls_within(Instant::now(), self.write_timeout);
        }
        self.sock.shutdown(how)
    }

    /// How long the next `read` may block in all (see `refined_tcp_stream::Stream`).
    // backnd-api patch: not inlined into the stream's dispatch (see `refined_tcp_stream.rs`).
    #[inline(never)]
    pub(crate) fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.read_timeout = timeout;
        self.sock_read(timeout)
    }

    /// How long the next `write` may block in all.
    // backnd-api patch: not inlined into the stream's dispatch (see `refined_tcp_stream.rs`).
    #[inline(never)]
    pub(crate) fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.write_timeout = timeout;
        self.sock_write(timeout)
    }

    fn sock_read(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        if needs_setting(self.sock_read_timeout, timeout) {
            self.sock.set_read_timeout(timeout)?;
            self.sock_read_timeout = timeout;
        }
        Ok(())
    }

    fn sock_write(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        if needs_setting(self.sock_write_timeout, timeout) {
            self.sock.set_write_timeout(timeout)?;
            self.sock_write_timeout = timeout;
        }
        Ok(())
    }

    /// Reads records from the socket once, waiting no longer than `budget` allows from
    /// `start`. `Ok(0)` is the end of the stream.
    fn read_tls_within(&mut self, start: Instant, budget: Option<Duration>) -> io::Result<usize> {
        let left = left_of(start, budget)?;
        self.sock_read(left)?;
        loop {
            match self.conn.read_tls(&mut self.sock) {
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    return Err(ErrorKind::TimedOut.into())
                }
                other => return other,
            }
        }
    }

    /// Writes every record rustls has ready, within `budget` from `start`.
    fn write_tls_within(&mut self, start: Instant, budget: Option<Duration>) -> io::Result<()> {
        while self.conn.wants_write() {
            let left = left_of(start, budget)?;
            self.sock_write(left)?;
            match self.conn.write_tls(&mut self.sock) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    return Err(ErrorKind::TimedOut.into())
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Decrypts what was read; on a TLS error, tells the client with the alert rustls queued
    /// (briefly: it may not be listening) and fails.
    fn process(&mut self) -> io::Result<()> {
        if let Err(e) = self.conn.process_new_packets() {
            let _ = self.write_tls_within(Instant::now(), Some(ALERT_WRITE_TIME));
            return Err(io::Error::new(ErrorKind::InvalidData, e));
        }
        Ok(())
    }

    /// Runs the server's side of the handshake: the first byte within `idle`, then the rest
    /// within `handshake` of it. `None` when the client closed, stalled or failed.
    fn handshake(mut self, idle: Duration, handshake: Duration) -> Option<TlsStream> {
        let mut deadline = Instant::now() + idle;
        let mut started = false;
        loop {
            // The server's flight first (and, once done, a TLS 1.3 session ticket).
            let now = Instant::now();
            self.write_tls_within(now, Some(deadline.saturating_duration_since(now)))
                .ok()?;
            if !self.conn.is_handshaking() {
                // Until the connection sets its own, reads and writes (the answer to a key
                // update) keep the handshake's limit rather than none.
                self.read_timeout = Some(handshake);
                self.write_timeout = Some(handshake);
                return Some(self);
            }
            let now = Instant::now();
            match self.read_tls_within(now, Some(deadline.saturating_duration_since(now))) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            if !started {
                started = true;
                deadline = Instant::now() + handshake;
            }
            if let Err(e) = self.process() {
                log::debug!("TLS handshake failed: {}", e);
                return None;
            }
        }
    }
}

/// Whether a socket timeout of `current` must be set again for a wait of at most `wanted`: it
/// would wait too long, or too little, or forever.
fn needs_setting(current: Option<Duration>, wanted: Option<Duration>) -> bool {
    match (current, wanted) {
        (Some(current), Some(wanted)) => current < wanted || current > wanted + TIMEOUT_SLACK,
        (None, None) => false,
        _ => true,
    }
}

/// What is left of `budget` since `start`: never zero, which a socket takes for "no timeout".
fn left_of(start: Instant, budget: Option<Duration>) -> io::Result<Option<Duration>> {
    match budget {
        None => Ok(None),
        Some(budget) => {
            let left = budget.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(ErrorKind::TimedOut.into());
            }
            Ok(Some(left.max(Duration::from_millis(1))))
        }
    }
}

impl Read for TlsStream {
    // backnd-api patch: not inlined into the stream's dispatch (see `refined_tcp_stream.rs`).
    #[inline(never)]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let start = Instant::now();
        loop {
            match self.conn.reader().read(buf) {
                // No plaintext yet: more records are needed.
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                other => return other,
            }
            // What rustls must say first (an answer to a key update, an alert).
            let write_budget = self.write_timeout;
            self.write_tls_within(Instant::now(), write_budget)?;
            if self.read_tls_within(start, self.read_timeout)? == 0 {
                return Ok(0);
            }
            self.process()?;
        }
    }
}

impl Write for TlsStream {
    // backnd-api patch: not inlined into the stream's dispatch (see `refined_tcp_stream.rs`).
    #[inline(never)]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let start = Instant::now();
        // Records still pending go first, so rustls never buffers more than one call's worth.
        self.write_tls_within(start, self.write_timeout)?;
        let written = self.conn.writer().write(buf)?;
        self.write_tls_within(start, self.write_timeout)?;
        Ok(written)
    }

    // backnd-api patch: not inlined into the stream's dispatch (see `refined_tcp_stream.rs`).
    #[inline(never)]
    fn flush(&mut self) -> io::Result<()> {
        self.write_tls_within(Instant::now(), self.write_timeout)
    }
}

/// The TLS side of a server: the rustls configuration each connection's handshake uses.
pub(crate) struct RustlsContext(Arc<rustls::ServerConfig>);

impl RustlsContext {
    /// Serves with `config` as it is: its certificate resolver, protocol versions and ALPN.
    pub(crate) fn new(config: Arc<rustls::ServerConfig>) -> RustlsContext {
        RustlsContext(config)
    }

    /// Serves one certificate chain and key, both PEM, with TLS 1.2 and 1.3 and ALPN
    /// `http/1.1` (upstream's `SslConfig`).
    pub(crate) fn from_pem(
        certificates: Vec<u8>,
        private_key: Zeroizing<Vec<u8>>,
    ) -> Result<Self, Box<dyn Error + Send + Sync>> {
        let chain = CertificateDer::pem_slice_iter(&certificates)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("cannot read the certificates: {e}"))?;
        if chain.is_empty() {
            return Err("no certificate in the PEM given".into());
        }
        // Not the parser's error: it could quote a line of the key.
        let key = PrivateKeyDer::from_pem_slice(&private_key)
            .map_err(|_| "no usable private key in the PEM given")?;
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self::new(Arc::new(config)))
    }

    /// Handshakes on `sock` under the connection's deadlines (see the module's doc).
    // backnd-api patch: not inlined into the stream's dispatch (see `refined_tcp_stream.rs`).
    #[inline(never)]
    pub(crate) fn accept(
        &self,
        sock: Connection,
        idle: Duration,
        handshake: Duration,
    ) -> Option<RefinedStream> {
        let conn = ServerConnection::new(self.0.clone()).ok()?;
        // Boxed here, so that no caller's frame holds a whole TLS session.
        TlsStream::new(conn, sock)
            .handshake(idle, handshake)
            .map(|stream| RefinedStream::Https(Box::new(stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::{left_of, needs_setting, TIMEOUT_SLACK};
    use std::time::{Duration, Instant};

    #[test]
    fn a_socket_timeout_is_set_again_only_when_it_would_overrun_or_cut_short_the_budget() {
        let second = Duration::from_secs(1);
        assert!(!needs_setting(None, None));
        assert!(needs_setting(None, Some(second)));
        assert!(needs_setting(Some(second), None));
        assert!(!needs_setting(Some(second), Some(second)));
        assert!(!needs_setting(Some(second + TIMEOUT_SLACK), Some(second)));
        assert!(needs_setting(
            Some(second + TIMEOUT_SLACK + Duration::from_millis(1)),
            Some(second)
        ));
        assert!(needs_setting(Some(second), Some(second * 2)));
    }

    #[test]
    fn a_spent_budget_times_out_and_what_is_left_is_never_zero() {
        let long_ago = Instant::now() - Duration::from_secs(5);
        let spent = left_of(long_ago, Some(Duration::from_secs(1)));
        assert_eq!(
            spent.map_err(|e| e.kind()),
            Err(std::io::ErrorKind::TimedOut)
        );
        assert_eq!(left_of(long_ago, None).ok(), Some(None));
        let left = left_of(Instant::now(), Some(Duration::from_secs(1)))
            .expect("time left")
            .expect("a timeout");
        assert!(left > Duration::ZERO && left <= Duration::from_secs(1));
    }
}
