//! Tests of the real binary as an operator runs it: arguments, refusing bad configuration,
//! graceful shutdown on SIGTERM, and serving again after running out of file descriptors.
//! These need a process of their own (signals, descriptor limits), so they start the compiled
//! `backnd-api` with a fresh database in a temporary directory.
//!
//! `harness.rs` starts the binary and talks raw HTTP to it; `front_door.rs` checks what refused
//! and turned-away connections leave behind in the process; `wire_fuzz.rs` feeds it generated
//! and mutated requests and checks the rules every answer keeps; `tls.rs` serves HTTPS with
//! certificates it makes (it needs the `openssl`, `curl` and `python3` commands).

mod cli;
mod front_door;
mod harness;
mod observability;
#[cfg(feature = "tls")]
mod tls;
mod wire_fuzz;

use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use harness::{exchange, read_response, start, start_with, BIN, HEALTH, SECRET};

/// The FastAPI service's database, as its SQLite file holds it (tests/fixtures/README.md).
pub const FASTAPI_FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/fastapi-backnd-api.sqlite3"
);

#[test]
fn help_and_version_print_and_exit_zero() {
    // Values in the environment, to check that --help never shows one.
    let help = Command::new(BIN)
        .env_clear()
        .env("JWT_SECRET", SECRET)
        .env("DATABASE_URL", "postgresql://app:hunter2secret@db/app")
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for variable in backnd_api::VARIABLES {
        assert!(
            text.contains(variable),
            "--help should mention {variable}: {text}"
        );
    }
    assert!(text.contains("--port <PORT>"), "{text}");
    // The route list comes from the route table: every route, one per line.
    assert!(text.contains("Routes:\n  POST /auth/register\n"), "{text}");
    for route in [
        "POST /auth/login",
        "GET /auth/me",
        "GET /health",
        "GET /openapi.json",
    ] {
        assert!(text.contains(&format!("  {route}\n")), "{route}: {text}");
    }
    for secret in [SECRET, "hunter2secret"] {
        assert!(!text.contains(secret), "--help showed a secret: {text}");
    }
    let version = Command::new(BIN)
        .arg("--version")
        .output()
        .expect("run --version");
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("backnd-api {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn an_unknown_argument_stops_start_up_with_usage() {
    for arg in ["--bogus", "stray", "--port"] {
        let output = Command::new(BIN)
            .env_clear()
            .arg(arg)
            .output()
            .expect("run backnd-api");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{arg}: {stderr}");
        assert!(stderr.contains(arg), "{arg}: {stderr}");
        assert!(stderr.contains("--help"), "{arg}: {stderr}");
    }
}

#[test]
fn a_malformed_flag_is_refused_like_its_variable_and_wins_over_it() {
    let output = Command::new(BIN)
        .env_clear()
        .env("JWT_SECRET", SECRET)
        .env("PORT", "8000")
        .args(["--port", "abc"])
        .output()
        .expect("run backnd-api");
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "backnd-api: invalid PORT: 'abc' is not a port number (0-65535)\n"
    );
}

#[test]
fn the_jwt_secret_is_refused_as_a_flag_and_never_printed() {
    let output = Command::new(BIN)
        .env_clear()
        .args(["--jwt-secret", SECRET])
        .output()
        .expect("run backnd-api");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("backnd-api: invalid JWT_SECRET: "),
        "{stderr}"
    );
    assert!(!stderr.contains(SECRET), "the secret was printed: {stderr}");
}

#[test]
fn a_malformed_setting_stops_start_up_naming_the_variable() {
    for (variable, value) in [
        ("PORT", "abc"),
        ("JWT_ACCESS_TOKEN_EXPIRE_MINUTES", "-5"),
        ("JWT_ALGORITHM", "RS256"),
        ("BCRYPT_COST", "3"),
        ("DATABASE_URL", "mysql://user:hunter2@db/app"),
    ] {
        let output = Command::new(BIN)
            .env_clear()
            .env("JWT_SECRET", SECRET)
            .env(variable, value)
            .output()
            .expect("run backnd-api");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{variable}={value} should stop start-up"
        );
        assert!(
            stderr.starts_with(&format!("backnd-api: invalid {variable}: ")),
            "{variable}: {stderr}"
        );
        assert!(
            !stderr.contains("hunter2"),
            "a database password was printed: {stderr}"
        );
    }
}

#[test]
fn a_short_jwt_secret_is_refused_with_advice_and_never_printed() {
    let output = Command::new(BIN)
        .env_clear()
        .env("JWT_SECRET", "tooshort-secret")
        .output()
        .expect("run backnd-api");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("JWT_SECRET") && stderr.contains("openssl rand -hex 32"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("tooshort-secret"),
        "the secret was printed: {stderr}"
    );
}

#[test]
fn sigterm_lets_the_request_in_flight_finish_then_exits_zero() {
    let mut running = start(None);
    // A registration whose body is still arriving when the signal comes: the connection was
    // accepted before it, so the request must be answered.
    let body = format!(
        r#"{{"name":"Ada","phone":"+44 20 7946 0958","email":"ada@example.com","password":"analytical-engine","padding":"{}"}}"#,
        "x".repeat(2000)
    );
    let (first, rest) = body.split_at(100);
    let mut stream = TcpStream::connect(running.addr).expect("connect");
    write!(
        stream,
        "POST /auth/register HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{first}",
        body.len()
    )
    .expect("send the start");
    std::thread::sleep(Duration::from_millis(300));

    running.terminate();
    std::thread::sleep(Duration::from_millis(300));
    let answer = exchange(&mut stream, rest.as_bytes(), Duration::from_secs(10)).expect("answer");
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );

    let exit = running.wait_for_exit(Instant::now() + Duration::from_secs(10));
    assert_eq!(exit.code(), Some(0));
    assert!(
        TcpStream::connect(running.addr).is_err(),
        "still accepting after shutdown"
    );
}

#[test]
fn sighup_without_https_stops_the_server_as_sigterm_does() {
    // With HTTPS, SIGHUP reloads the certificate (tls.rs); without, it keeps the meaning it had
    // (a terminal that closes sends it).
    let mut running = start(None);
    let status = Command::new("kill")
        .args(["-HUP", &running.pid().to_string()])
        .status()
        .expect("send SIGHUP");
    assert!(status.success());
    let exit = running.wait_for_exit(Instant::now() + Duration::from_secs(10));
    assert_eq!(exit.code(), Some(0));
}

#[test]
fn the_server_serves_again_after_running_out_of_file_descriptors() {
    // MAX_CONNECTIONS is set past the descriptor limit, so that the server really runs out
    // (by default it refuses connections before that: see `front_door.rs`). Out of
    // descriptors, a connection is either accepted with the last free one (and told 503) or not
    // accepted at all (and waits in the listen backlog). Which depends on how many the process
    // holds when it runs out; so run three limits in a row, and check each recovers. Both must
    // keep the server alive; which one each limit met is printed, not asserted, as it shifts
    // with descriptors the process inherits.
    std::thread::scope(|scope| {
        let runs: Vec<_> = [64, 65, 66]
            .map(|limit| (limit, scope.spawn(move || runs_out_then_recovers(limit))))
            .into_iter()
            .collect();
        for (limit, run) in runs {
            let way = run.join().expect("the run does not panic");
            eprintln!("under {limit} descriptors: {way}");
        }
    });
}

/// How a connection fared once the server had run out of descriptors.
enum Starved {
    /// Accepted with the last descriptor, answered `503` and closed.
    Refused,
    /// Left waiting in the listen backlog, to be answered once descriptors are freed.
    Waiting(TcpStream),
}

/// Starts the binary under `limit` descriptors, holds keep-alive connections until one is not
/// served, frees some, and checks that it serves again. Stock tiny_http stopped accepting for
/// good at the first `EMFILE`.
fn runs_out_then_recovers(limit: u32) -> &'static str {
    let running = start_with(Some(limit), &[("MAX_CONNECTIONS", "100000")]);
    let mut held = Vec::new();
    let starved = loop {
        // A server that never runs out would hold each of these: bounded, so the test ends.
        assert!(held.len() < 200, "a {limit}-descriptor limit never ran out");
        let mut stream = TcpStream::connect(running.addr).expect("connect");
        match exchange(&mut stream, HEALTH, Duration::from_millis(500)) {
            Ok(answer) if answer.starts_with("HTTP/1.1 200") => held.push(stream),
            Ok(answer) => {
                assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
                assert!(answer.contains("Retry-After: 1"), "{answer}");
                break Starved::Refused;
            }
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break Starved::Waiting(stream)
            }
            Err(err) => panic!("unexpected failure while filling descriptors: {err}"),
        }
    };
    assert!(
        held.len() > 5,
        "only {} connections before running out under {limit}",
        held.len()
    );

    held.drain(..10);
    let way = match starved {
        Starved::Refused => "refused with 503",
        Starved::Waiting(mut waiting) => {
            waiting
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let answer = read_response(&mut waiting).expect("the waiting connection is answered");
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            "waited in the backlog"
        }
    };
    // Closing a held connection frees its descriptors once its thread notices, so allow a
    // moment before a new connection must be served.
    running.wait_until_served(Duration::from_secs(10));
    way
}

#[test]
fn without_a_jwt_secret_it_starts_and_warns_that_tokens_will_not_survive_a_restart() {
    let running = start_with(None, &[("RUST_LOG", "info")]);
    let warning = running
        .start_up_log
        .iter()
        .find(|line| line.contains("WARN") && line.contains("JWT_SECRET"));
    assert!(
        warning.is_some_and(|line| line.contains("restart")),
        "{:?}",
        running.start_up_log
    );
    let mut stream = TcpStream::connect(running.addr).expect("connect");
    let answer = exchange(&mut stream, HEALTH, Duration::from_secs(5)).expect("answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn the_access_log_has_one_line_per_request_and_no_secrets() {
    let running = start_with(None, &[("JWT_SECRET", SECRET), ("RUST_LOG", "info")]);
    let password = "a-very-secret-password";
    let body = format!(
        r#"{{"name":"Ada","phone":"+44 20 7946 0958","email":"ada@example.com","password":"{password}"}}"#
    );
    let post = |path: &str, body: &str| {
        let mut stream = TcpStream::connect(running.addr).expect("connect");
        let request = format!(
            "POST {path}?token=query-secret HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        exchange(&mut stream, request.as_bytes(), Duration::from_secs(10)).expect("answer")
    };
    assert!(post("/auth/register", &body).starts_with("HTTP/1.1 201"));
    let login = post(
        "/auth/login",
        &format!(r#"{{"email":"ada@example.com","password":"{password}"}}"#),
    );
    assert!(login.starts_with("HTTP/1.1 200"), "{login}");
    let token = login
        .split("\"access_token\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a token in the answer")
        .to_owned();
    let mut stream = TcpStream::connect(running.addr).expect("connect");
    let me =
        format!("GET /auth/me HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n\r\n");
    let answer = exchange(&mut stream, me.as_bytes(), Duration::from_secs(5)).expect("answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // Each line is written once its answer is sent, so they may come in any order.
    let seen = std::cell::Cell::new(0);
    let lines = running.log_until(
        |line| {
            seen.set(seen.get() + usize::from(line.contains(" access]")));
            seen.get() == 3
        },
        Duration::from_secs(5),
    );
    let access: Vec<&String> = lines.iter().filter(|l| l.contains(" access]")).collect();
    assert_eq!(access.len(), 3, "{lines:#?}");
    for expected in [
        "POST /auth/register 201 ",
        "POST /auth/login 200 ",
        "GET /auth/me 200 ",
    ] {
        let line = access.iter().find(|l| l.contains(expected));
        assert!(
            line.is_some_and(|l| l.ends_with("ms")),
            "no '{expected}…ms' line in {access:#?}"
        );
    }
    for line in running.start_up_log.iter().chain(&lines) {
        for secret in [password, token.as_str(), SECRET, "query-secret", "$2b$"] {
            assert!(!line.contains(secret), "a secret reached the log: {line}");
        }
    }
}

#[test]
fn a_database_that_is_down_at_start_stops_start_up_with_a_clear_error_and_no_password() {
    // Nothing listens on port 1; the refusal comes at once, the timeout bounds it anyway.
    let started = Instant::now();
    let output = Command::new(BIN)
        .env_clear()
        .env("JWT_SECRET", SECRET)
        .env(
            "DATABASE_URL",
            "postgresql://app:hunter2secret@127.0.0.1:1/app",
        )
        .env("DATABASE_CONNECT_TIMEOUT", "2")
        .env("RUST_LOG", "info")
        .output()
        .expect("run backnd-api");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot connect to postgresql://app:***@127.0.0.1:1/app"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("hunter2secret"),
        "the password was printed: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(30), "start-up hung");
}
