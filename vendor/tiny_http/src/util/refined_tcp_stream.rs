//! The socket of one client connection, plain or TLS.
//!
//! backnd-api patch: upstream split each socket into a read half and a write half (each a
//! `dup()` of the descriptor) so that a request's body reader and its response writer could
//! live on different threads. Now the connection's own thread does every read and write, so a
//! connection is one socket and one descriptor.

use std::io::Result as IoResult;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use crate::connection::Connection;
#[cfg(feature = "ssl-rustls")]
use crate::ssl::SslStream;

pub(crate) enum Stream {
    Http(Connection),
    /// Boxed (backnd-api patch): a rustls connection is over a kilobyte, and inline it made
    /// every plain connection's stream that large too, on each connection thread's stack. For
    /// the same reason every `TlsStream` method these arms call is `#[inline(never)]`: inlined,
    /// its large frame became the frame of the dispatch every plain read goes through, and
    /// stack probes made its pages resident on each connection's thread (8 KiB an idle
    /// connection, measured).
    #[cfg(feature = "ssl-rustls")]
    Https(Box<SslStream>),
}

impl From<Connection> for Stream {
    fn from(tcp_stream: Connection) -> Self {
        Stream::Http(tcp_stream)
    }
}

impl Stream {
    pub(crate) fn secure(&self) -> bool {
        match self {
            Stream::Http(_) => false,
            #[cfg(feature = "ssl-rustls")]
            Stream::Https(_) => true,
        }
    }

    pub(crate) fn peer_addr(&mut self) -> IoResult<Option<SocketAddr>> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.peer_addr(),
            #[cfg(feature = "ssl-rustls")]
            Stream::Https(ssl_stream) => ssl_stream.peer_addr(),
        }
    }

    pub(crate) fn shutdown(&mut self, how: Shutdown) -> IoResult<()> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.shutdown(how),
            #[cfg(feature = "ssl-rustls")]
            Stream::Https(ssl_stream) => ssl_stream.shutdown(how),
        }
    }

    /// How long the next read may block. Deadlines for a whole head or body are enforced by
    /// setting this to the time left before each read.
    ///
    /// On TLS it bounds the whole `read`, however many records and socket waits it takes
    /// (backnd-api patch: upstream's TLS streams hid their socket, so this did nothing there).
    pub(crate) fn set_read_timeout(&mut self, timeout: Option<Duration>) -> IoResult<()> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.set_read_timeout(timeout),
            #[cfg(feature = "ssl-rustls")]
            Stream::Https(tls_stream) => tls_stream.set_read_timeout(timeout),
        }
    }

    /// How long the next write may block; see [`Stream::set_read_timeout`].
    pub(crate) fn set_write_timeout(&mut self, timeout: Option<Duration>) -> IoResult<()> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.set_write_timeout(timeout),
            #[cfg(feature = "ssl-rustls")]
            Stream::Https(tls_stream) => tls_stream.set_write_timeout(timeout),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.read(buf),
            #[cfg(feature = "ssl-rustls")]
            Stream::Https(ssl_stream) => ssl_stream.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.write(buf),
            #[cfg(feature = "ssl-rustls")]
            Stream::Https(ssl_stream) => ssl_stream.write(buf),
        }
    }

    fn flush(&mut self) -> IoResult<()> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.flush(),
            #[cfg(feature = "ssl-rustls")]
            Stream::Https(ssl_stream) => ssl_stream.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every connection thread holds a `Stream` and moves it between frames: it must stay the
    /// size of a socket handle, not of a TLS session, whichever the connection speaks.
    #[test]
    fn a_stream_is_small_whatever_it_speaks() {
        let size = std::mem::size_of::<super::Stream>();
        assert!(size <= 64, "Stream is {} bytes", size);
    }
}
