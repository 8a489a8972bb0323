//! PostgreSQL going away while the service runs: requests that need it get 503 promptly
//! (never a hang) and the service recovers by itself when it comes back.
//!
//! These need a PostgreSQL server, so they are ignored on the SQLite pass and run on the
//! PostgreSQL one (`TEST_BACKEND=postgres … -- --include-ignored`, as `make test` does).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::helpers::{spawn_app_with, spawn_instance_sharing, valid_registration, TestApp};
use crate::testdb::{backend, Backend};

/// A TCP forwarder to the database that can be cut and restored on the same port: the
/// service's view of a database server going down and coming back.
struct Outage {
    port: u16,
    upstream: SocketAddr,
    running: Option<Forwarder>,
}

struct Forwarder {
    stop: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<TcpStream>>>,
    accept_thread: thread::JoinHandle<()>,
}

impl Outage {
    fn new(upstream: SocketAddr) -> Outage {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the forwarder");
        let port = listener.local_addr().expect("address").port();
        let running = Some(Forwarder::start(listener, upstream));
        Outage {
            port,
            upstream,
            running,
        }
    }

    /// Closes the port and every forwarded connection.
    fn cut(&mut self) {
        if let Some(forwarder) = self.running.take() {
            forwarder.stop(self.port);
        }
    }

    /// Listens on the same port again.
    fn restore(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).expect("rebind the port");
        self.running = Some(Forwarder::start(listener, self.upstream));
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        self.cut();
    }
}

impl Forwarder {
    fn start(listener: TcpListener, upstream: SocketAddr) -> Forwarder {
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let (stop_flag, open) = (stop.clone(), connections.clone());
        let accept_thread = thread::spawn(move || {
            for client in listener.incoming() {
                if stop_flag.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let mut open = open.lock().expect("connection list");
                for stream in [&client, &server] {
                    open.push(stream.try_clone().expect("clone"));
                }
                pump(
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                );
                pump(server, client);
            }
        });
        Forwarder {
            stop,
            connections,
            accept_thread,
        }
    }

    fn stop(self, port: u16) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", port)); // wake the accept loop
        let _ = self.accept_thread.join();
        for stream in self.connections.lock().expect("connection list").drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// The database server a PostgreSQL URL names.
fn upstream_of(database_url: &str) -> SocketAddr {
    let url = url::Url::parse(database_url).expect("a PostgreSQL URL");
    let host = url.host_str().expect("a host");
    std::net::ToSocketAddrs::to_socket_addrs(&(host, url.port().unwrap_or(5432)))
        .expect("resolve the database host")
        .next()
        .expect("an address")
}

/// The same URL, reaching the database through 127.0.0.1:`port` instead.
fn through_port(database_url: &str, port: u16) -> String {
    let mut url = url::Url::parse(database_url).expect("a PostgreSQL URL");
    url.set_host(Some("127.0.0.1")).expect("host");
    url.set_port(Some(port)).expect("port");
    url.to_string()
}

/// A server whose database connections all pass through an [`Outage`]. Fields drop in order:
/// the server, then the forwarder, then the instance that owns the test's schema.
struct BehindOutage {
    app: TestApp,
    outage: Outage,
    _owner: TestApp,
}

fn app_behind_outage() -> BehindOutage {
    let Backend::Postgres { .. } = backend() else {
        panic!("this test needs TEST_BACKEND=postgres and a PostgreSQL server")
    };
    // A fresh schema as usual; a second instance then reaches it through the forwarder.
    let owner = spawn_app_with(&[]);
    let outage = Outage::new(upstream_of(&owner.database_url));
    let proxied = through_port(&owner.database_url, outage.port);
    let app = spawn_instance_sharing(
        &owner,
        &[
            ("DATABASE_URL", &proxied),
            ("DATABASE_CONNECT_TIMEOUT", "1"),
        ],
    );
    BehindOutage {
        app,
        outage,
        _owner: owner,
    }
}

/// Asks until `check` holds, for at most `within`.
fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
#[ignore = "needs PostgreSQL: runs in the PostgreSQL pass of make test"]
fn while_the_database_is_gone_requests_get_503_and_service_recovers_when_it_returns() {
    let mut setup = app_behind_outage();
    let app = &setup.app;
    let token = app.token_for_new_user("ada@example.com", "correct horse");
    assert_eq!(app.get("/health", &[]).status, 200);

    setup.outage.cut();
    for (what, response) in [
        ("health", app.get("/health", &[])),
        ("me", app.me(&token)),
        ("login", app.login("ada@example.com", "correct horse")),
        (
            "register",
            app.register(&valid_registration("bob@example.com", "correct horse")),
        ),
    ] {
        assert_eq!(response.status, 503, "{what}: {}", response.text);
        assert!(
            response.json["detail"]
                .as_str()
                .is_some_and(|d| d.contains("Service Unavailable")),
            "{what}: {}",
            response.text
        );
    }

    setup.outage.restore();
    assert!(
        eventually(Duration::from_secs(15), || app.get("/health", &[]).status
            == 200),
        "/health did not recover after the database came back"
    );
    let me = app.me(&token);
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.json["email"], "ada@example.com");
}
