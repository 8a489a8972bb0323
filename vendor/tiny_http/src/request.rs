use std::io::Error as IoError;
use std::io::{Cursor, ErrorKind, Read, Write};

use std::fmt;
use std::net::SocketAddr;
use std::sync::mpsc::SyncSender;

use crate::{HTTPVersion, Header, Method, Response, ResponseBox};

/// Represents an HTTP request made by a client.
///
/// A `Request` object is what is produced by the server, and is your what
/// your code must analyse and answer.
///
/// This object implements the `Send` trait, therefore you can dispatch your requests to
/// worker threads.
///
/// backnd-api patch: a request arrives whole. Its connection's thread has read the head and
/// the entire body (see `wire.rs`) before handing it out, and it is that thread, not the
/// caller of [`Request::respond`], that writes the response to the socket, within the write
/// deadline. So handling a request never waits on the client, whatever the client does.
/// Requests pipelined on one connection are handed out one at a time: the next is read only
/// once this one's response is written.
///
/// # Automatic cleanup
///
/// If a `Request` object is destroyed without `respond` being called, an empty response with a
/// 500 status code (internal server error) is sent back to the client.
///
/// # Testing
///
/// If you want to build fake requests to test your server, use [`TestRequest`](crate::test::TestRequest).
pub struct Request {
    // the body, already read in full
    data_reader: Cursor<Vec<u8>>,

    // where the response goes; `None` once answered
    reply: Option<Reply>,

    remote_addr: Option<SocketAddr>,

    // true if HTTPS, false if HTTP
    secure: bool,

    method: Method,

    path: String,

    http_version: HTTPVersion,

    headers: Vec<Header>,
}

/// backnd-api patch: where a response goes.
pub(crate) enum Reply {
    /// To the connection's own thread, which writes it.
    Connection(SyncSender<ResponseBox>),
    /// Straight into a writer (for [`TestRequest`](crate::test::TestRequest)).
    Writer(Box<dyn Write + Send + 'static>),
}

/// Builds a request whose head and body have been read.
#[allow(clippy::too_many_arguments)]
pub(crate) fn new_request(
    secure: bool,
    method: Method,
    path: String,
    version: HTTPVersion,
    headers: Vec<Header>,
    remote_addr: Option<SocketAddr>,
    body: Vec<u8>,
    reply: Reply,
) -> Request {
    Request {
        data_reader: Cursor::new(body),
        reply: Some(reply),
        remote_addr,
        secure,
        method,
        path,
        http_version: version,
        headers,
    }
}

impl Request {
    /// Returns true if the request was made through HTTPS.
    #[inline]
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Returns the method requested by the client (eg. `GET`, `POST`, etc.).
    #[inline]
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// Returns the resource requested by the client.
    #[inline]
    pub fn url(&self) -> &str {
        &self.path
    }

    /// Returns a list of all headers sent by the client.
    #[inline]
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// Returns the HTTP version of the request.
    #[inline]
    pub fn http_version(&self) -> &HTTPVersion {
        &self.http_version
    }

    /// Returns the length of the body in bytes (it has been read in full).
    #[inline]
    pub fn body_length(&self) -> Option<usize> {
        Some(self.data_reader.get_ref().len())
    }

    /// Returns the address of the client that sent this request.
    ///
    /// The address is always `Some` for TCP listeners, but always `None` for UNIX listeners
    /// (as the remote address of a UNIX client is almost always unnamed).
    ///
    /// Note that this is gathered from the socket. If you receive the request from a proxy,
    /// this function will return the address of the proxy and not the address of the actual
    /// user.
    #[inline]
    pub fn remote_addr(&self) -> Option<&SocketAddr> {
        self.remote_addr.as_ref()
    }

    /// Allows to read the body of the request, which has already arrived in full.
    ///
    /// backnd-api patch: an `Expect: 100-continue` is answered by the connection before the
    /// body is read, so nothing is sent from here.
    #[inline]
    pub fn as_reader(&mut self) -> &mut dyn Read {
        &mut self.data_reader
    }

    /// backnd-api patch: takes the body, which has already arrived in full, without copying
    /// it; what is left to read is then empty.
    pub fn take_body(&mut self) -> Vec<u8> {
        let body = std::mem::take(self.data_reader.get_mut());
        self.data_reader.set_position(0);
        body
    }

    /// Sends a response to this request.
    ///
    /// backnd-api patch: the response is handed to the connection's thread, which writes it
    /// within the write deadline; this returns at once. (There is no `upgrade` or
    /// `into_writer`: no protocol switch is followed, and no caller writes to the socket.)
    #[inline]
    pub fn respond<R>(mut self, response: Response<R>) -> Result<(), IoError>
    where
        R: Read + Send + 'static,
    {
        self.respond_impl(response.boxed())
    }

    fn respond_impl(&mut self, response: ResponseBox) -> Result<(), IoError> {
        match self.reply.take() {
            // A connection that has gone away no longer waits for its answer.
            Some(Reply::Connection(sender)) => {
                let _ = sender.send(response);
                Ok(())
            }
            Some(Reply::Writer(mut writer)) => {
                let do_not_send_body = self.method == Method::Head;
                response
                    .raw_print(
                        writer.by_ref(),
                        self.http_version.clone(),
                        &self.headers,
                        do_not_send_body,
                        None,
                    )
                    .and_then(|()| writer.flush())
                    .or_else(|err| match err.kind() {
                        ErrorKind::BrokenPipe
                        | ErrorKind::ConnectionAborted
                        | ErrorKind::ConnectionRefused
                        | ErrorKind::ConnectionReset => Ok(()),
                        _ => Err(err),
                    })
            }
            None => Ok(()),
        }
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> Result<(), fmt::Error> {
        write!(
            formatter,
            "Request({} {} from {:?})",
            self.method, self.path, self.remote_addr
        )
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if self.reply.is_some() {
            let _ = self.respond_impl(Response::empty(500).boxed());
        }
    }
}

/// Dummy trait that regroups the `Read` and `Write` traits.
///
/// Automatically implemented on all types that implement both `Read` and `Write`.
pub trait ReadWrite: Read + Write {}
impl<T> ReadWrite for T where T: Read + Write {}

#[cfg(test)]
mod tests {
    use super::Request;

    #[test]
    fn must_be_send() {
        #![allow(dead_code)]
        fn f<T: Send>(_: &T) {}
        fn bar(rq: &Request) {
            f(rq);
        }
    }
}
