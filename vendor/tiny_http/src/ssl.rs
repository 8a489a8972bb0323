//! TLS for the server: rustls only.
//!
//! backnd-api patch: upstream offered OpenSSL or rustls 0.20 behind the same implicit contract,
//! each stream shared through an `Arc<Mutex<_>>` between a reader and a writer thread, with the
//! handshake on the accept thread and the socket out of reach of the connection's deadlines.
//! Now there is one backend, rustls 0.23 (`ssl-rustls`), whose stream is owned by the
//! connection's thread and keeps the same deadlines as a plain socket (see `ssl/rustls.rs`).

#[cfg(feature = "ssl-rustls")]
pub(crate) mod rustls;
#[cfg(feature = "ssl-rustls")]
pub(crate) use self::rustls::RustlsContext as SslContextImpl;
#[cfg(feature = "ssl-rustls")]
pub(crate) use self::rustls::TlsStream as SslStream;
