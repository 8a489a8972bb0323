//! Graceful stop: a request the server is already handling is answered, and once stopped the
//! server accepts no new connection.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{read_response, spawn_app, valid_registration};

/// Waits (up to a generous deadline) until connecting to `addr` is refused.
fn wait_until_refused(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(addr) {
            Err(err) if err.kind() == ErrorKind::ConnectionRefused => return,
            Err(err) => panic!("unexpected connect error: {err}"),
            Ok(_) => {
                assert!(
                    Instant::now() < deadline,
                    "still accepting 10 s after stop()"
                );
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

#[test]
fn a_request_in_flight_when_stop_is_called_still_gets_its_answer() {
    let mut app = spawn_app();
    let (addr, db) = (app.addr, app.db.clone());
    let body = valid_registration("ada@example.com", "correct horse").to_string();

    // `Expect: 100-continue`: the server sends `100 Continue` when a worker starts reading the
    // body, so once it arrives the request is certainly being handled.
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let head = format!(
        "POST /auth/register HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("send the head");
    let interim = read_response(&mut stream).expect("100 Continue");
    assert_eq!(interim.status, 100);

    let (stopped_tx, stopped_rx) = mpsc::channel();
    let stopper = thread::spawn(move || {
        app.stop();
        stopped_tx.send(()).expect("report the stop");
        app
    });
    // The stop has begun: the listener is gone.
    wait_until_refused(addr);
    assert!(
        stopped_rx.try_recv().is_err(),
        "stop() returned while a request was still being read"
    );

    stream.write_all(body.as_bytes()).expect("send the body");
    let response = read_response(&mut stream).expect("the in-flight request is answered");
    assert_eq!(
        response.status,
        201,
        "{:?}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(response.json()["email"], json!("ada@example.com"));
    // A stopping server serves nothing more on this connection: it closes it.
    let mut rest = [0u8; 64];
    match stream.read(&mut rest) {
        Ok(0) => {}
        other => panic!("the connection stays open after the last answer: {other:?}"),
    }

    stopped_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("stop() returns once the in-flight request is answered");
    let app = stopper.join().expect("stop thread");
    let stored = db.scalar::<i64>("SELECT count(*) FROM users WHERE email = 'ada@example.com'");
    assert_eq!(stored, 1, "the answered registration was committed");
    drop(app);
}

#[test]
fn after_stop_new_connections_are_refused() {
    let mut app = spawn_app();
    assert_eq!(app.get("/health", &[]).status, 200);
    app.stop();
    let err = TcpStream::connect(app.addr).expect_err("no new connection after stop()");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
}
