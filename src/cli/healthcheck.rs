//! `backnd-api healthcheck`: one `GET /health` to the running server, for container
//! `HEALTHCHECK` lines on images with no curl. HTTP/1.1 over `std::net`, no client crate; over
//! rustls when the configuration serves HTTPS (`TLS_CERT_FILE`).
//!
//! [`probe`] speaks HTTP over any `Read + Write` stream; [`run`] finds the address, connects,
//! and wraps the connection in TLS when the server speaks it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::Failure;
use crate::config::Config;

/// How long connecting, sending and reading the answer may each take.
const TIMEOUT: Duration = Duration::from_secs(3);

/// The most of an answer read: `/health`'s is a few dozen bytes.
const MAX_ANSWER: u64 = 64 * 1024;

/// Asks the server configured by `config` for `/health`; healthy is a `200` whose body is
/// `{"status":"ok"}`.
pub(crate) fn run(config: &Config) -> Result<(), Failure> {
    if config.port == 0 {
        return Err(Failure::Usage(
            "PORT is 0 (a free port picked at start): give the server's actual port with \
             --port or PORT"
                .to_owned(),
        ));
    }
    let host = loopback_for(&config.host);
    let authority = if host.contains(':') {
        format!("[{host}]:{}", config.port)
    } else {
        format!("{host}:{}", config.port)
    };
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let url = format!("{scheme}://{authority}/health");
    let addresses: Vec<SocketAddr> = (host.as_str(), config.port)
        .to_socket_addrs()
        .map_err(|err| Failure::Failed(format!("unhealthy: cannot resolve {host}: {err}")))?
        .collect();
    let mut last_error = format!("{host} resolves to no address");
    for address in addresses {
        match TcpStream::connect_timeout(&address, TIMEOUT) {
            Ok(stream) => {
                let timeouts = stream
                    .set_read_timeout(Some(TIMEOUT))
                    .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)));
                if let Err(err) = timeouts {
                    last_error = err.to_string();
                    continue;
                }
                return match ask(config, stream, &address, &authority) {
                    Ok(answer) => {
                        println!("healthy: {url} answered {answer}");
                        Ok(())
                    }
                    Err(why) => Err(Failure::Failed(format!("unhealthy: {url}: {why}"))),
                };
            }
            Err(err) => last_error = format!("cannot connect to {address}: {err}"),
        }
    }
    Err(Failure::Failed(format!("unhealthy: {url}: {last_error}")))
}

/// Asks over plain HTTP, or over TLS when the configuration serves HTTPS.
fn ask(
    config: &Config,
    stream: TcpStream,
    address: &SocketAddr,
    authority: &str,
) -> Result<String, String> {
    match &config.tls {
        None => probe(stream, authority),
        #[cfg(feature = "tls")]
        Some(files) => {
            let name = rustls::pki_types::ServerName::IpAddress(address.ip().into());
            let connection = rustls::ClientConnection::new(crate::tls::healthcheck_client(), name)
                .map_err(|err| format!("cannot start TLS: {err}"))?;
            let mut tls = rustls::StreamOwned::new(connection, stream);
            let answer = probe(&mut tls, authority)?;
            Ok(match crate::tls::served_fingerprint(&tls.conn, &files.cert_file) {
                Some((fingerprint, true)) => format!("{answer} (certificate SHA-256 {fingerprint})"),
                Some((fingerprint, false)) => format!(
                    "{answer} (certificate SHA-256 {fingerprint}, not the one in TLS_CERT_FILE now: \
                     send the server SIGHUP to serve it)"
                ),
                None => answer,
            })
        }
        // The configuration refuses TLS files in a build without HTTPS.
        #[cfg(not(feature = "tls"))]
        Some(_) => {
            let _ = address;
            Err(crate::server::NO_TLS.to_owned())
        }
    }
}

/// The address to ask when the server listens on `host`: a wildcard (every address) is asked
/// on loopback, as the server is on this machine.
fn loopback_for(host: &str) -> String {
    match host.trim_start_matches('[').trim_end_matches(']') {
        "0.0.0.0" | "" => "127.0.0.1".to_owned(),
        "::" => "::1".to_owned(),
        other => other.to_owned(),
    }
}

/// Sends `GET /health` for `authority` on `stream` and reads the answer; `Ok` with the status
/// line and body when it is a `200` saying `{"status":"ok"}`, else why not.
pub(crate) fn probe(mut stream: impl Read + Write, authority: &str) -> Result<String, String> {
    let request = format!(
        "GET /health HTTP/1.1\r\nHost: {authority}\r\nAccept: application/json\r\n\
         User-Agent: backnd-api-healthcheck\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.flush())
        .map_err(|err| format!("cannot send the request: {err}"))?;
    let answer = read_answer(&mut stream)?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| "the answer has no end of headers".to_owned())?;
    let status_line = head.lines().next().unwrap_or_default();
    let status = status_line.split_whitespace().nth(1).unwrap_or_default();
    let body = body.trim();
    if status != "200" {
        return Err(format!("answered {status_line} {body}"));
    }
    let healthy = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .is_some_and(|json| json["status"] == "ok");
    if !healthy {
        return Err(format!(
            "answered {status_line} with an unexpected body: {body}"
        ));
    }
    Ok(format!("{status} {body}"))
}

/// Reads a response head and its `Content-Length` body (or up to the end of the stream).
fn read_answer(stream: &mut impl Read) -> Result<String, String> {
    let mut received = Vec::new();
    let mut buf = [0_u8; 4096];
    let mut limited = stream.take(MAX_ANSWER);
    loop {
        if let Some(end) = find(&received, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
            let length = head.lines().find_map(|line| {
                line.strip_prefix("content-length:")
                    .and_then(|value| value.trim().parse::<usize>().ok())
            });
            if length.is_some_and(|length| received.len() >= end + 4 + length) {
                break;
            }
        }
        match limited.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(err) if received.is_empty() => return Err(format!("no answer: {err}")),
            Err(err) => return Err(format!("the answer stopped: {err}")),
        }
    }
    if received.is_empty() {
        return Err("the connection closed without an answer".to_owned());
    }
    Ok(String::from_utf8_lossy(&received).into_owned())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::{loopback_for, probe};
    use std::io::{Cursor, Read, Write};

    /// A stream that answers `answer` and keeps what was written.
    struct Scripted {
        answer: Cursor<Vec<u8>>,
        sent: Vec<u8>,
    }

    impl Read for Scripted {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.answer.read(buf)
        }
    }

    impl Write for Scripted {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.sent.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn answered(answer: &str) -> Result<String, String> {
        let stream = Scripted {
            answer: Cursor::new(answer.as_bytes().to_vec()),
            sent: Vec::new(),
        };
        probe(stream, "127.0.0.1:8000")
    }

    #[test]
    fn a_200_saying_ok_is_healthy_and_anything_else_is_not() {
        let ok = "HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{\"status\":\"ok\"}";
        assert_eq!(answered(ok).unwrap(), "200 {\"status\":\"ok\"}");
        let down = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 10\r\n\r\n{\"x\":\"y\"}";
        assert!(answered(down).unwrap_err().contains("503"));
        let odd = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert!(answered(odd).unwrap_err().contains("unexpected body"));
        assert!(answered("").unwrap_err().contains("without an answer"));
    }

    #[test]
    fn a_wildcard_host_is_asked_on_loopback() {
        assert_eq!(loopback_for("0.0.0.0"), "127.0.0.1");
        assert_eq!(loopback_for("::"), "::1");
        assert_eq!(loopback_for("[::]"), "::1");
        assert_eq!(loopback_for("10.0.0.5"), "10.0.0.5");
    }
}
