//! HTTPS (`TLS_CERT_FILE`, `TLS_KEY_FILE`) as an operator meets it: certificates made here with
//! the `openssl` command and verified by curl and Python's `ssl`; TLS 1.1 and plain HTTP
//! refused; handshakes and records that stall dropped on the connection deadlines, leaving no
//! thread behind; the certificate replaced on SIGHUP while connections stay open; bad files
//! refused at start-up and kept out of a reload.
//!
//! Where a test needs control of the bytes on the wire (a record trickled a byte at a time) or
//! of one connection across a reload, the client is rustls, the library the server uses.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use sha2::{Digest, Sha256};

use crate::harness::{
    read_response, settles, start_with, steady_usage, Running, BIN, HEALTH, NOISE, SECRET,
};

/// How long the threads and descriptors of connections just closed may take to go.
const SETTLING: Duration = Duration::from_secs(5);

/// A certificate authority and the server certificates it signs, made with the `openssl`
/// command in a temporary directory (EC P-256 keys: quick to make).
struct Pki {
    dir: tempfile::TempDir,
}

/// A certificate for `localhost` and 127.0.0.1 and its key.
struct Issued {
    cert: PathBuf,
    key: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().expect("temporary directory"),
        };
        pki.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=backnd-api test CA",
        ]);
        std::fs::write(
            pki.path("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .expect("write the extensions");
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    fn openssl(&self, args: &[&str]) {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("run openssl (the tests need the openssl command)");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Issues `name.pem`, signed by the CA, and its key `name.key`.
    fn issue(&self, name: &str) -> Issued {
        let (key, csr, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            "/CN=localhost",
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        Issued {
            cert: self.path(&pem),
            key: self.path(&key),
        }
    }

    /// Copies `issued` to `live.pem` and `live.key`, the files a reloading server reads.
    fn make_live(&self, issued: &Issued) -> Issued {
        let live = Issued {
            cert: self.path("live.pem"),
            key: self.path("live.key"),
        };
        std::fs::copy(&issued.key, &live.key).expect("copy the key");
        std::fs::copy(&issued.cert, &live.cert).expect("copy the certificate");
        live
    }
}

impl Issued {
    /// The certificate's SHA-256 fingerprint, as `openssl x509 -fingerprint -sha256` and the
    /// server's log show it.
    fn fingerprint(&self) -> String {
        fingerprint(&CertificateDer::from_pem_file(&self.cert).expect("a certificate"))
    }
}

fn fingerprint(cert: &CertificateDer<'_>) -> String {
    Sha256::digest(cert.as_ref())
        .iter()
        .map(|byte| format!("{byte:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn path(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

/// Starts the binary serving HTTPS with `issued`, plus `vars`.
fn start_tls(issued: &Issued, vars: &[(&str, &str)]) -> Running {
    let mut all = vec![
        ("JWT_SECRET", SECRET),
        ("RUST_LOG", "info,access=off"),
        ("TLS_CERT_FILE", path(&issued.cert)),
        ("TLS_KEY_FILE", path(&issued.key)),
    ];
    all.extend_from_slice(vars);
    let running = start_with(None, &all);
    assert!(
        running
            .start_up_log
            .iter()
            .any(|line| line.contains("listening on https://")),
        "{:?}",
        running.start_up_log
    );
    running
}

/// A rustls client trusting only the test CA, speaking TLS 1.2 or 1.3.
fn client_config(ca: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("the CA file") {
        roots
            .add(cert.expect("a certificate"))
            .expect("a usable CA");
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

type TlsClient = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Connects to `localhost` at `addr` and completes a verified handshake.
fn connect(addr: SocketAddr, config: &Arc<rustls::ClientConfig>) -> TlsClient {
    let sock = TcpStream::connect(addr).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let name = ServerName::try_from("localhost").expect("a server name");
    let conn = rustls::ClientConnection::new(config.clone(), name).expect("a client connection");
    let mut stream = rustls::StreamOwned::new(conn, sock);
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .expect("the handshake succeeds");
    }
    stream
}

/// The fingerprint of the certificate the server presented on `stream`.
fn presented(stream: &TlsClient) -> String {
    let chain = stream.conn.peer_certificates().expect("a certificate");
    fingerprint(&chain[0])
}

fn ask(stream: &mut TlsClient, request: &[u8]) -> String {
    stream.write_all(request).expect("send the request");
    read_response(stream).expect("an answer")
}

fn curl(ca: &Path, port: u16, args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert", path(ca), "--resolve"])
        .arg(format!("localhost:{port}:127.0.0.1"))
        .args(args)
        .output()
        .expect("run curl (the tests need the curl command)")
}

fn python(script: &str, args: &[&str]) -> String {
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python3 (the tests need it)");
    assert!(
        output.status.success(),
        "python3: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn tls_curl_and_python_verify_the_certificate_and_use_the_api_over_https() {
    let pki = Pki::new();
    let issued = pki.issue("server");
    let running = start_tls(&issued, &[]);
    let port = running.addr.port();
    let url = |path: &str| format!("https://localhost:{port}{path}");
    let text = |output: &Output| String::from_utf8_lossy(&output.stdout).into_owned();

    let health = curl(&pki.ca(), port, &["-w", " %{http_code}", &url("/health")]);
    assert!(health.status.success(), "{health:?}");
    assert_eq!(text(&health), r#"{"status":"ok"} 200"#);

    let json = [
        "-H",
        "Content-Type: application/json",
        "-w",
        " %{http_code}",
    ];
    let register = curl(
        &pki.ca(),
        port,
        &[&json[..], &["-d", r#"{"name":"Ada","phone":"+44 20 7946 0958","email":"ada@example.com","password":"analytical-engine"}"#, &url("/auth/register")]].concat(),
    );
    assert!(text(&register).ends_with(" 201"), "{register:?}");
    let login = curl(
        &pki.ca(),
        port,
        &[
            &json[..],
            &[
                "-d",
                r#"{"email":"ada@example.com","password":"analytical-engine"}"#,
                &url("/auth/login"),
            ],
        ]
        .concat(),
    );
    let login = text(&login);
    assert!(
        login.ends_with(" 200") && login.contains("access_token"),
        "{login}"
    );

    // Without the CA the certificate is not trusted: it really is being checked.
    let untrusted = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--resolve"])
        .arg(format!("localhost:{port}:127.0.0.1"))
        .arg(url("/health"))
        .output()
        .expect("run curl");
    assert_eq!(untrusted.status.code(), Some(60), "{untrusted:?}");

    // Python's ssl, verifying against the CA, with each version the server speaks; offered
    // h2 too, it is given http/1.1.
    let answers = python(
        r#"
import http.client, ssl, sys
for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
    ctx = ssl.create_default_context(cafile=sys.argv[1])
    ctx.minimum_version = ctx.maximum_version = version
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    conn = http.client.HTTPSConnection("localhost", int(sys.argv[2]), context=ctx)
    conn.request("GET", "/health")
    answer = conn.getresponse()
    print(answer.status, answer.read().decode(), conn.sock.version(), conn.sock.selected_alpn_protocol())
"#,
        &[path(&pki.ca()), &port.to_string()],
    );
    assert_eq!(
        answers,
        "200 {\"status\":\"ok\"} TLSv1.3 http/1.1\n200 {\"status\":\"ok\"} TLSv1.2 http/1.1\n"
    );
}

#[test]
fn tls_1_1_and_older_and_h2_alone_are_refused_by_the_server() {
    let pki = Pki::new();
    let running = start_tls(&pki.issue("server"), &[]);
    // The client is told to allow the old versions (OpenSSL's own policy would refuse them
    // before sending anything), so it is the server that refuses, with an alert.
    let refusals = python(
        r#"
import socket, ssl, sys, warnings
warnings.simplefilter("ignore", DeprecationWarning)
def attempt(label, ctx):
    try:
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=5), server_hostname="localhost") as s:
            print(label, "connected", s.version())
    except ssl.SSLError as e:
        print(label, "refused", "ALERT" in str(e).upper())
for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
    ctx = ssl.create_default_context(cafile=sys.argv[1])
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = version
    attempt(version.name, ctx)
ctx = ssl.create_default_context(cafile=sys.argv[1])
ctx.set_alpn_protocols(["h2"])
attempt("h2", ctx)
"#,
        &[path(&pki.ca()), &running.addr.port().to_string()],
    );
    assert_eq!(
        refusals,
        "TLSv1 refused True\nTLSv1_1 refused True\nh2 refused True\n"
    );
}

#[test]
fn tls_plain_http_to_the_https_port_is_closed_at_once_and_leaves_nothing_behind() {
    let pki = Pki::new();
    let running = start_tls(&pki.issue("server"), &[]);
    let before = steady_usage(&running);
    for _ in 0..50 {
        let mut stream = TcpStream::connect(running.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("read timeout");
        let sent = Instant::now();
        stream.write_all(HEALTH).expect("send");
        let mut answer = Vec::new();
        // Closed, perhaps with a reset since the request was not read: either way at once.
        let _ = stream.read_to_end(&mut answer);
        assert!(
            sent.elapsed() < Duration::from_millis(500),
            "{:?}",
            sent.elapsed()
        );
        assert!(
            !answer.starts_with(b"HTTP/"),
            "answered in plain text: {:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    let threads = settles(|| running.usage().threads, before.threads, SETTLING);
    let descriptors = settles(|| running.usage().descriptors, before.descriptors, SETTLING);
    assert!(
        threads <= before.threads + NOISE,
        "threads {} -> {threads}",
        before.threads
    );
    assert!(
        descriptors <= before.descriptors + NOISE,
        "descriptors {} -> {descriptors}",
        before.descriptors
    );
}

#[test]
fn tls_stalled_handshakes_are_dropped_on_the_deadlines_without_holding_up_others() {
    let pki = Pki::new();
    let running = start_tls(
        &pki.issue("server"),
        &[
            ("IDLE_TIMEOUT", "2"),
            ("HEADER_TIMEOUT", "1"),
            ("MAX_CONNECTIONS_PER_CLIENT", "100"),
        ],
    );
    let config = client_config(&pki.ca());
    let before = steady_usage(&running);

    let started = Instant::now();
    // Ten send nothing; ten send a record header and the start of a ClientHello, and stall.
    let silent: Vec<TcpStream> = (0..10)
        .map(|_| TcpStream::connect(running.addr).expect("connect"))
        .collect();
    let halfway: Vec<TcpStream> = (0..10)
        .map(|_| {
            let mut stream = TcpStream::connect(running.addr).expect("connect");
            stream
                .write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
                .expect("send half a ClientHello");
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // Each waits on a thread of its own, and none holds up a real client.
    let waiting = running.usage().threads;
    assert!(
        waiting >= before.threads + 20,
        "threads {} -> {waiting}",
        before.threads
    );
    let mut client = connect(running.addr, &config);
    assert!(ask(&mut client, HEALTH).starts_with("HTTP/1.1 200"));
    drop(client);

    // A handshake begun has HEADER_TIMEOUT; one never begun, IDLE_TIMEOUT.
    for (stalled, at_least, at_most) in [(halfway, 0.9, 1.8), (silent, 1.9, 3.0)] {
        for mut stream in stalled {
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .expect("read timeout");
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest);
            let closed = started.elapsed().as_secs_f64();
            assert!(
                (at_least..at_most).contains(&closed),
                "closed after {closed:.2}s, not within {at_least}-{at_most}s"
            );
        }
    }
    let threads = settles(|| running.usage().threads, before.threads, SETTLING);
    let descriptors = settles(|| running.usage().descriptors, before.descriptors, SETTLING);
    assert!(
        threads <= before.threads + NOISE,
        "threads {} -> {threads}",
        before.threads
    );
    assert!(
        descriptors <= before.descriptors + NOISE,
        "descriptors {} -> {descriptors}",
        before.descriptors
    );
}

/// Encrypts `plaintext` as `stream`'s next records, to be sent by hand.
fn encrypt(stream: &mut TlsClient, plaintext: &[u8]) -> Vec<u8> {
    let mut records = Vec::new();
    // A piece at a time: rustls buffers at most 64 KiB unsent.
    for piece in plaintext.chunks(16 * 1024) {
        stream
            .conn
            .writer()
            .write_all(piece)
            .expect("buffer the plaintext");
        while stream.conn.wants_write() {
            stream.conn.write_tls(&mut records).expect("encrypt");
        }
    }
    records
}

/// Sends `records` a byte every 100 ms from another thread, and reads what the server says
/// until it closes. Returns the plaintext received and when the connection closed.
fn trickle(mut stream: TlsClient, records: Vec<u8>) -> (String, Duration) {
    let started = Instant::now();
    let mut writer = stream.sock.try_clone().expect("clone the socket");
    let trickler = std::thread::spawn(move || {
        for byte in records {
            if writer.write_all(&[byte]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let mut received = Vec::new();
    loop {
        match stream.conn.read_tls(&mut stream.sock) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if stream.conn.process_new_packets().is_err() {
            break;
        }
        let _ = stream.conn.reader().read_to_end(&mut received);
    }
    let closed = started.elapsed();
    let _ = stream.sock.shutdown(std::net::Shutdown::Both);
    trickler.join().expect("the trickler ends");
    (String::from_utf8_lossy(&received).into_owned(), closed)
}

#[test]
fn tls_a_record_trickled_after_the_handshake_meets_the_same_deadlines() {
    let pki = Pki::new();
    let running = start_tls(
        &pki.issue("server"),
        &[
            ("IDLE_TIMEOUT", "2"),
            ("HEADER_TIMEOUT", "1"),
            ("BODY_TIMEOUT", "1"),
        ],
    );
    let config = client_config(&pki.ca());
    let before = steady_usage(&running);

    // A whole request in one record, a byte every 100 ms (about 6 s): no byte of its head can
    // be read before the record is whole, so the wait for it is the idle one, for the whole
    // record, however regularly its bytes arrive.
    let mut head_client = connect(running.addr, &config);
    let records = encrypt(&mut head_client, HEALTH);
    let (answer, closed) = trickle(head_client, records);
    assert_eq!(answer, "", "the request was served");
    assert!(
        closed > Duration::from_millis(1800) && closed < Duration::from_millis(3000),
        "closed after {closed:?}"
    );

    // A head sent whole, then a body trickled: 408 on BODY_TIMEOUT.
    let body = format!(
        r#"{{"email":"ada@example.com","password":"{}"}}"#,
        "x".repeat(40)
    );
    let head = format!(
        "POST /auth/login HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    let mut body_client = connect(running.addr, &config);
    let head_records = encrypt(&mut body_client, head.as_bytes());
    body_client
        .sock
        .write_all(&head_records)
        .expect("send the head");
    let records = encrypt(&mut body_client, body.as_bytes());
    let (answer, closed) = trickle(body_client, records);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(
        closed > Duration::from_millis(800) && closed < Duration::from_millis(2000),
        "closed after {closed:?}"
    );

    let threads = settles(|| running.usage().threads, before.threads, SETTLING);
    assert!(
        threads <= before.threads + NOISE,
        "threads {} -> {threads}",
        before.threads
    );
}

#[test]
fn tls_a_client_that_pipelines_and_never_reads_is_dropped_on_the_write_deadline() {
    let pki = Pki::new();
    let running = start_tls(&pki.issue("server"), &[("WRITE_TIMEOUT", "1")]);
    let config = client_config(&pki.ca());
    let before = steady_usage(&running);

    // Far more answers than socket buffers hold, so writing them must block on the client,
    // which is kept open (unread) until the end.
    let mut hoarder = connect(running.addr, &config);
    let request = b"GET /openapi.json HTTP/1.1\r\nHost: t\r\n\r\n";
    let records = encrypt(&mut hoarder, &request.repeat(2000));
    let started = Instant::now();
    hoarder
        .sock
        .set_write_timeout(Some(Duration::from_secs(2)))
        .expect("write timeout");
    let _ = hoarder.sock.write_all(&records);
    std::thread::sleep(Duration::from_millis(300));
    let mut other = connect(running.addr, &config);
    assert!(ask(&mut other, HEALTH).starts_with("HTTP/1.1 200"));
    drop(other);

    // Its connection's socket (and thread) go once the write deadline has passed.
    let sockets = settles(|| running.usage().sockets, before.sockets, SETTLING);
    let took = started.elapsed();
    assert!(
        sockets <= before.sockets,
        "sockets {} -> {sockets}: the hoarder is still being written to",
        before.sockets
    );
    assert!(took < Duration::from_secs(4), "dropped after {took:?}");
    drop(hoarder);
}

#[test]
fn tls_sighup_serves_the_new_certificate_to_new_connections_and_keeps_open_ones() {
    let pki = Pki::new();
    let (first, second) = (pki.issue("first"), pki.issue("second"));
    let live = pki.make_live(&first);
    let running = start_tls(&live, &[]);
    assert!(
        running
            .log_until(
                |line| line.contains("TLS certificate:"),
                Duration::from_secs(5)
            )
            .iter()
            .any(|line| line.contains(&first.fingerprint())),
        "the served certificate's fingerprint is logged"
    );
    let config = client_config(&pki.ca());
    let mut open = connect(running.addr, &config);
    assert_eq!(presented(&open), first.fingerprint());
    assert!(ask(&mut open, HEALTH).starts_with("HTTP/1.1 200"));

    pki.make_live(&second);
    hang_up(&running);
    let reloaded = running.log_until(
        |line| line.contains("TLS certificate reloaded"),
        Duration::from_secs(5),
    );
    assert!(
        reloaded
            .last()
            .is_some_and(|line| line.contains(&second.fingerprint())),
        "{reloaded:?}"
    );

    // A client of its own: one that resumed its earlier session would be shown no certificate.
    let mut fresh = connect(running.addr, &client_config(&pki.ca()));
    assert_eq!(presented(&fresh), second.fingerprint());
    assert!(ask(&mut fresh, HEALTH).starts_with("HTTP/1.1 200"));
    // The connection opened before still works, on the keys it agreed.
    assert!(ask(&mut open, HEALTH).starts_with("HTTP/1.1 200"));
}

#[test]
fn tls_a_reload_that_fails_logs_why_and_keeps_serving_the_certificate_it_had() {
    let pki = Pki::new();
    let (first, second) = (pki.issue("first"), pki.issue("second"));
    let live = pki.make_live(&first);
    let running = start_tls(&live, &[]);
    let config = client_config(&pki.ca());
    let key_text = std::fs::read_to_string(&second.key).expect("the key");

    // Another certificate's key; then a key file that is not PEM; then no certificate file.
    std::fs::copy(&second.key, &live.key).expect("copy");
    let mut complaints = Vec::new();
    hang_up(&running);
    complaints.extend(running.log_until(|l| l.contains("cannot reload"), Duration::from_secs(5)));
    std::fs::write(&live.key, "not a key\n").expect("write");
    hang_up(&running);
    complaints.extend(running.log_until(|l| l.contains("cannot reload"), Duration::from_secs(5)));
    std::fs::copy(&first.key, &live.key).expect("copy");
    std::fs::remove_file(&live.cert).expect("remove");
    hang_up(&running);
    complaints.extend(running.log_until(|l| l.contains("cannot reload"), Duration::from_secs(5)));

    let errors: Vec<&String> = complaints.iter().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 3, "{complaints:#?}");
    assert!(
        errors[0].contains("is not the key of the certificate"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].contains("TLS_KEY_FILE") && errors[1].contains("holds no private key"),
        "{}",
        errors[1]
    );
    assert!(
        errors[2].contains("TLS_CERT_FILE") && errors[2].contains("cannot read"),
        "{}",
        errors[2]
    );
    for line in &complaints {
        for key_line in key_text.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!line.contains(key_line), "key material in the log: {line}");
        }
    }

    let mut fresh = connect(running.addr, &config);
    assert_eq!(presented(&fresh), first.fingerprint());
    assert!(ask(&mut fresh, HEALTH).starts_with("HTTP/1.1 200"));
}

/// Sends SIGHUP, as `systemctl reload` or a certbot deploy hook does.
fn hang_up(running: &Running) {
    let status = Command::new("kill")
        .args(["-HUP", &running.pid().to_string()])
        .status()
        .expect("send SIGHUP");
    assert!(status.success());
}

#[test]
fn tls_start_up_refuses_a_missing_or_mismatched_key_or_one_variable_alone() {
    let pki = Pki::new();
    let (first, second) = (pki.issue("first"), pki.issue("second"));
    let missing = pki.path("missing.key");
    let key_text = std::fs::read_to_string(&first.key).expect("the key");
    for (vars, expected) in [
        (
            vec![("TLS_CERT_FILE", path(&first.cert))],
            "invalid TLS_KEY_FILE: it is not set, but TLS_CERT_FILE is",
        ),
        (
            vec![("TLS_KEY_FILE", path(&first.key))],
            "invalid TLS_CERT_FILE: it is not set, but TLS_KEY_FILE is",
        ),
        (
            vec![
                ("TLS_CERT_FILE", path(&first.cert)),
                ("TLS_KEY_FILE", path(&missing)),
            ],
            "invalid TLS_KEY_FILE: cannot read",
        ),
        (
            vec![
                ("TLS_CERT_FILE", path(&first.cert)),
                ("TLS_KEY_FILE", path(&second.key)),
            ],
            "is not the key of the certificate in",
        ),
        (
            // The two files swapped: no certificate in the one, no key in the other.
            vec![
                ("TLS_CERT_FILE", path(&first.key)),
                ("TLS_KEY_FILE", path(&first.cert)),
            ],
            "invalid TLS_CERT_FILE:",
        ),
        (
            vec![
                ("TLS_CERT_FILE", path(&first.cert)),
                ("TLS_KEY_FILE", path(&first.cert)),
            ],
            "invalid TLS_KEY_FILE:",
        ),
    ] {
        let output = Command::new(BIN)
            .env_clear()
            .env("JWT_SECRET", SECRET)
            .env("PORT", "0")
            .envs(vars.iter().copied())
            .current_dir(pki.dir.path())
            .output()
            .expect("run backnd-api");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{vars:?}: {stderr}");
        assert!(stderr.starts_with("backnd-api: "), "{stderr}");
        assert!(stderr.contains(expected), "{vars:?}: {stderr}");
        for key_line in key_text.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!stderr.contains(key_line), "key material printed: {stderr}");
        }
    }
}

/// Runs `backnd-api healthcheck` against `running`'s port with `vars`.
fn healthcheck(running: &Running, vars: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().expect("temporary directory");
    Command::new(BIN)
        .arg("healthcheck")
        .current_dir(dir.path())
        .env_clear()
        .env("PORT", running.addr.port().to_string())
        .envs(vars.iter().copied())
        .output()
        .expect("run healthcheck")
}

#[test]
fn tls_healthcheck_speaks_https_and_tells_which_certificate_is_served() {
    let pki = Pki::new();
    let (first, second) = (pki.issue("first"), pki.issue("second"));
    let live = pki.make_live(&first);
    let running = start_tls(&live, &[]);
    let tls = [
        ("TLS_CERT_FILE", path(&live.cert)),
        ("TLS_KEY_FILE", path(&live.key)),
    ];

    let checked = healthcheck(&running, &tls);
    let said = String::from_utf8_lossy(&checked.stdout);
    assert!(checked.status.success(), "{said} {checked:?}");
    let url = format!("healthy: https://127.0.0.1:{}/health", running.addr.port());
    assert!(said.starts_with(&url), "{said}");
    assert!(said.contains(&first.fingerprint()), "{said}");
    assert!(!said.contains("not the one"), "{said}");

    // New files, no SIGHUP yet: still healthy, and it says the server has not taken them.
    pki.make_live(&second);
    let checked = healthcheck(&running, &tls);
    let said = String::from_utf8_lossy(&checked.stdout);
    assert!(checked.status.success(), "{said}");
    assert!(said.contains(&first.fingerprint()), "{said}");
    assert!(said.contains("not the one in TLS_CERT_FILE"), "{said}");

    // Plain HTTP to the HTTPS port is no answer: unhealthy, exit 1.
    let plain = healthcheck(&running, &[]);
    assert_eq!(plain.status.code(), Some(1), "{plain:?}");
    assert!(String::from_utf8_lossy(&plain.stderr).contains("unhealthy: http://"));
}
