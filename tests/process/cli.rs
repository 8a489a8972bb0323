//! The administration subcommands as an operator runs them: the built binary, a temporary
//! working directory with real database files, the real PostgreSQL for `migrate` (a schema of
//! its own per test, in `TEST_POSTGRES_URL`'s database), and a running server where the
//! subcommand meets one (backup while it writes, healthcheck, logging in after set-password
//! and migrate).

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{exchange, start_with, Running, BIN, SECRET};

/// What a run of the binary left.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

/// A temporary working directory with its own SQLite database URL.
struct Workdir {
    dir: tempfile::TempDir,
}

impl Workdir {
    fn new() -> Workdir {
        Workdir {
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn db(&self) -> PathBuf {
        self.path().join("db.sqlite3")
    }

    fn url(&self) -> String {
        format!("sqlite:///{}", self.db().display())
    }

    /// Runs `backnd-api args…` here with the database, a cheap cost and the secret in the
    /// environment (plus `env`), `stdin` as its input.
    fn run(&self, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Ran {
        let url = self.url();
        let mut base = vec![
            ("DATABASE_URL", url.as_str()),
            ("BCRYPT_COST", "4"),
            ("JWT_SECRET", SECRET),
            ("DATABASE_CONNECT_TIMEOUT", "2"),
        ];
        base.extend_from_slice(env);
        run_in(self.path(), args, &base, stdin)
    }

    /// `user create` with these fields and the password on stdin.
    fn create(&self, email: &str, password: &str) -> Ran {
        self.run(
            &[
                "user",
                "create",
                "--email",
                email,
                "--name",
                "Test User",
                "--phone",
                "+1 555 0100",
            ],
            &[],
            Some(&format!("{password}\n")),
        )
    }
}

fn run_in(dir: &Path, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Ran {
    let mut child = Command::new(BIN)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run backnd-api");
    {
        let mut input = child.stdin.take().expect("stdin is piped");
        if let Some(text) = stdin {
            let _ = input.write_all(text.as_bytes());
        }
    }
    let output = child.wait_with_output().expect("wait for backnd-api");
    Ran {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Starts the server on `database_url` (port 0, cost 4, no rate limits).
fn serve(database_url: &str) -> Running {
    start_with(
        None,
        &[
            ("JWT_SECRET", SECRET),
            ("RUST_LOG", "warn,backnd_api=info"),
            ("DATABASE_URL", database_url),
            ("RATE_LIMITS", "off"),
        ],
    )
}

/// One JSON request; the status and the parsed body (Null when empty).
fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> (u16, Value) {
    let body = body.to_string();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n{auth}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(addr).expect("connect");
    let answer =
        exchange(&mut stream, request.as_bytes(), Duration::from_secs(30)).expect("answer");
    let status = answer[9..12].parse().expect("status");
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn login(addr: SocketAddr, email: &str, password: &str) -> (u16, Value) {
    call(
        addr,
        "POST",
        "/auth/login",
        None,
        &serde_json::json!({"email": email, "password": password}),
    )
}

fn register(addr: SocketAddr, email: &str) -> (u16, Value) {
    call(
        addr,
        "POST",
        "/auth/register",
        None,
        &serde_json::json!({"name": "Reg", "phone": "+1 555 0100", "email": email,
                            "password": "registered-password"}),
    )
}

fn sqlite_count(path: &Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(path).expect("open");
    conn.query_row(sql, [], |row| row.get(0)).expect("count")
}

// ---- help and settings ----

#[test]
fn help_lists_every_subcommand_and_each_has_its_own_help() {
    let work = Workdir::new();
    let top = work.run(&["--help"], &[], None);
    assert_eq!(top.code, Some(0), "{}", top.stderr);
    for command in ["user", "backup", "migrate", "healthcheck", "check-config"] {
        assert!(
            top.stdout.contains(&format!("\n  {command} ")),
            "{command}: {}",
            top.stdout
        );
        let help = work.run(&[command, "--help"], &[], None);
        assert_eq!(help.code, Some(0), "{command}: {}", help.stderr);
        assert!(
            help.stdout.contains("Exit codes: 0"),
            "{command}: {}",
            help.stdout
        );
    }
    assert!(top.stdout.contains("Exit codes: 0"), "{}", top.stdout);
    for command in ["create", "list", "show", "set-password", "delete"] {
        let help = work.run(&["user", command, "--help"], &[], None);
        assert_eq!(help.code, Some(0), "{command}: {}", help.stderr);
        assert!(
            help.stdout.contains("Usage: backnd-api user"),
            "{}",
            help.stdout
        );
    }
    let create = work.run(&["user", "create", "--help"], &[], None);
    assert!(!create.stdout.contains("--password"), "{}", create.stdout);
    let unknown = work.run(&["user", "frobnicate"], &[], None);
    assert_eq!(unknown.code, Some(2), "{}", unknown.stderr);
}

#[test]
fn setting_flags_work_before_and_after_a_subcommand() {
    let work = Workdir::new();
    let other = work.path().join("other.sqlite3");
    let other_url = format!("sqlite:///{}", other.display());
    let created = run_in(
        work.path(),
        &[
            "--database-url",
            &other_url,
            "user",
            "create",
            "--email",
            "a@example.com",
            "--name",
            "A",
            "--phone",
            "12345",
        ],
        &[("BCRYPT_COST", "4")],
        Some("password-one\n"),
    );
    assert_eq!(created.code, Some(0), "{}", created.stderr);
    assert!(other.is_file() && !work.db().exists());
    let after = run_in(
        work.path(),
        &["user", "list", "--json", "--database-url", &other_url],
        &[],
        None,
    );
    assert_eq!(after.code, Some(0), "{}", after.stderr);
    assert_eq!(after.json()[0]["email"], "a@example.com");
    // The flag wins over the variable, as when serving.
    let over = run_in(
        work.path(),
        &["user", "show", "1", "--database-url", &other_url],
        &[("DATABASE_URL", "sqlite:///./nowhere.sqlite3")],
        None,
    );
    assert_eq!(over.code, Some(0), "{}", over.stderr);
    let bad = work.run(&["user", "list", "--port", "abc"], &[], None);
    assert_eq!(bad.code, Some(2));
    assert!(bad.stderr.contains("invalid PORT"), "{}", bad.stderr);
}

// ---- user ----

#[test]
fn a_user_created_with_the_password_on_stdin_logs_in_through_the_api() {
    let work = Workdir::new();
    // Spaces are part of a password: only the line ending is taken off.
    let created = work.create("  Ada@Example.COM ", " analytical engine ");
    assert_eq!(created.code, Some(0), "{}", created.stderr);
    assert!(
        created.stdout.contains("created user 1 (ada@example.com)"),
        "{}",
        created.stdout
    );
    let server = serve(&work.url());
    assert_eq!(
        login(server.addr, "ada@example.com", " analytical engine ").0,
        200
    );
    assert_eq!(
        login(server.addr, "ada@example.com", "analytical engine").0,
        401
    );
}

/// Runs `user create` on a terminal (util-linux `script` gives it a pseudo-terminal), typing
/// `first` and then `second` once each prompt has had time to turn echo off; what the terminal
/// showed, and the exit code.
fn create_on_a_terminal(work: &Workdir, first: &str, second: &str) -> (String, Option<i32>) {
    let command = format!(
        "DATABASE_URL={} BCRYPT_COST=4 {BIN} user create --email tty@example.com --name T \
         --phone 12345",
        work.url()
    );
    let typing = format!("sleep 2; printf '%s\\n' '{first}'; sleep 1; printf '%s\\n' '{second}'");
    let output = Command::new("bash")
        .current_dir(work.path())
        .args([
            "-c",
            &format!("({typing}) | script -qec \"$0\" /dev/null"),
            &command,
        ])
        .output()
        .expect("run script(1): util-linux is needed for the terminal tests");
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        output.status.code(),
    )
}

#[test]
fn on_a_terminal_the_password_is_asked_twice_without_echo() {
    let work = Workdir::new();
    let (shown, code) = create_on_a_terminal(&work, "typed-password-1", "typed-password-2");
    assert_eq!(code, Some(2), "{shown}");
    assert!(
        shown.contains("Password: ") && shown.contains("Password again: "),
        "{shown}"
    );
    assert!(shown.contains("the two passwords differ"), "{shown}");
    let (shown, code) = create_on_a_terminal(&work, "typed-password-1", "typed-password-1");
    assert_eq!(code, Some(0), "{shown}");
    assert!(
        shown.contains("created user 1 (tty@example.com)"),
        "{shown}"
    );
    assert!(
        !shown.contains("typed-password"),
        "the password was echoed: {shown}"
    );
    let server = serve(&work.url());
    assert_eq!(
        login(server.addr, "tty@example.com", "typed-password-1").0,
        200
    );
}

#[test]
fn user_create_refuses_invalid_fields_and_short_passwords_with_exit_2() {
    let work = Workdir::new();
    let bad = work.run(
        &[
            "user",
            "create",
            "--email",
            "not-an-email",
            "--name",
            " ",
            "--phone",
            "12",
            "--image-url",
            "ftp://x",
        ],
        &[],
        Some("long-enough-password\n"),
    );
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    for flag in ["--email", "--name", "--phone", "--image-url"] {
        assert!(
            bad.stderr.contains(&format!("invalid {flag}: ")),
            "{flag}: {}",
            bad.stderr
        );
    }
    assert!(bad.stderr.contains("must have an @-sign"), "{}", bad.stderr);
    assert!(
        !work.db().exists(),
        "nothing should be created for invalid input"
    );

    let short = work.create("ada@example.com", "short");
    assert_eq!(short.code, Some(2), "{}", short.stderr);
    assert!(
        short
            .stderr
            .contains("invalid password: String should have at least 8"),
        "{}",
        short.stderr
    );
    let long = work.create("ada@example.com", &"x".repeat(73));
    assert_eq!(long.code, Some(2), "{}", long.stderr);
    let none = work.run(
        &[
            "user",
            "create",
            "--email",
            "ada@example.com",
            "--name",
            "A",
            "--phone",
            "12345",
        ],
        &[],
        Some(""),
    );
    assert_eq!(none.code, Some(2), "{}", none.stderr);
    assert!(
        none.stderr.contains("no password on stdin"),
        "{}",
        none.stderr
    );
    assert_eq!(sqlite_count(&work.db(), "SELECT count(*) FROM users"), 0);
    // The password is never taken from the command line.
    let argv = work.run(
        &[
            "user",
            "create",
            "--email",
            "b@example.com",
            "--name",
            "B",
            "--phone",
            "12345",
            "--password",
            "in-argv-secret",
        ],
        &[],
        None,
    );
    assert_eq!(argv.code, Some(2));
    assert!(!argv.stderr.contains("in-argv-secret"), "{}", argv.stderr);
}

#[test]
fn user_create_refuses_an_email_taken_in_any_form_with_exit_1() {
    let work = Workdir::new();
    assert_eq!(work.create("ann@example.com", "password-one").code, Some(0));
    for email in ["ANN@example.com", "ａｎｎ@example.com"] {
        let again = work.create(email, "password-two");
        assert_eq!(again.code, Some(1), "{email}: {}", again.stderr);
        assert!(
            again.stderr.contains("email already registered"),
            "{}",
            again.stderr
        );
    }
    assert_eq!(sqlite_count(&work.db(), "SELECT count(*) FROM users"), 1);
}

#[test]
fn user_list_and_show_print_users_as_tables_and_json_without_hashes() {
    let work = Workdir::new();
    std::fs::copy(crate::FASTAPI_FIXTURE, work.db()).expect("copy the fixture");
    let list = work.run(&["user", "list"], &[], None);
    assert_eq!(list.code, Some(0), "{}", list.stderr);
    let lines: Vec<&str> = list.stdout.lines().collect();
    assert!(lines[0].starts_with("ID  EMAIL"), "{}", list.stdout);
    assert!(
        lines[1].starts_with("1   ann@example.com"),
        "{}",
        list.stdout
    );
    assert!(list.stdout.contains("(4 users)"), "{}", list.stdout);
    let json = work.run(&["user", "list", "--json"], &[], None).json();
    let users = json.as_array().expect("an array");
    assert_eq!(users.len(), 4);
    assert_eq!(users[3]["email"], "zoe@example.ie");
    assert_eq!(users[3]["updated_at"], "2026-11-26T05:06:21.980171Z");
    assert_eq!(users[1]["image_url"], "https://example.com/ivan.png");
    let by_id = work.run(&["user", "show", "2", "--json"], &[], None).json();
    let by_email = work
        .run(&["user", "show", "IVAN@example.ru", "--json"], &[], None)
        .json();
    assert_eq!(by_id, by_email);
    assert_eq!(by_id["name"], "Иван Петров");
    let plain = work.run(&["user", "show", "zoe@example.ie"], &[], None);
    assert!(
        plain.stdout.contains("name        Zoë O'Brien"),
        "{}",
        plain.stdout
    );
    for ran in [&list, &plain] {
        assert!(
            !ran.stdout.contains("$2b$"),
            "a hash was printed: {}",
            ran.stdout
        );
    }
    for user in users {
        assert!(user.get("password_hash").is_none() && !user.to_string().contains("$2b$"));
    }
}

#[test]
fn unknown_users_and_a_missing_database_are_failures_with_exit_1() {
    let work = Workdir::new();
    let scheme = work.run(
        &["user", "list"],
        &[("DATABASE_URL", "mysql://app:hunter2secret@db/app")],
        None,
    );
    assert_eq!(scheme.code, Some(2), "{}", scheme.stderr);
    assert!(
        scheme.stderr.contains("invalid DATABASE_URL"),
        "{}",
        scheme.stderr
    );
    assert!(
        !scheme.stderr.contains("hunter2secret"),
        "{}",
        scheme.stderr
    );
    let missing = work.run(&["user", "list"], &[], None);
    assert_eq!(missing.code, Some(1), "{}", missing.stderr);
    assert!(
        missing.stderr.contains("does not exist"),
        "{}",
        missing.stderr
    );
    assert!(
        !work.db().exists(),
        "a missing database must not be created by list"
    );
    assert_eq!(work.create("ann@example.com", "password-one").code, Some(0));
    for args in [
        &["user", "show", "nobody@example.com"][..],
        &["user", "show", "42"],
        &["user", "delete", "42"],
    ] {
        let ran = work.run(args, &[], None);
        assert_eq!(ran.code, Some(1), "{args:?}: {}", ran.stderr);
        assert!(ran.stderr.contains("no user"), "{}", ran.stderr);
    }
    let set = work.run(
        &["user", "set-password", "nobody@example.com"],
        &[],
        Some("password-two\n"),
    );
    assert_eq!(set.code, Some(1), "{}", set.stderr);
    let dir_missing = work.run(
        &[
            "user",
            "create",
            "--email",
            "b@example.com",
            "--name",
            "B",
            "--phone",
            "12345",
        ],
        &[("DATABASE_URL", "sqlite:////nonexistent-dir/db.sqlite3")],
        Some("password-two\n"),
    );
    assert_eq!(dir_missing.code, Some(1), "{}", dir_missing.stderr);
}

#[test]
fn set_password_changes_the_password_and_ends_every_session() {
    let work = Workdir::new();
    assert_eq!(
        work.create("ann@example.com", "first-password").code,
        Some(0)
    );
    let server = serve(&work.url());
    let (status, pair) = login(server.addr, "ann@example.com", "first-password");
    assert_eq!(status, 200);
    let access = pair["access_token"].as_str().expect("token").to_owned();
    let refresh = pair["refresh_token"].as_str().expect("token").to_owned();
    assert_eq!(
        call(server.addr, "GET", "/auth/me", Some(&access), &Value::Null).0,
        200
    );

    let short = work.run(&["user", "set-password", "1"], &[], Some("short\n"));
    assert_eq!(short.code, Some(2), "{}", short.stderr);
    let set = work.run(
        &["user", "set-password", "ANN@example.com"],
        &[],
        Some("second-password\n"),
    );
    assert_eq!(set.code, Some(0), "{}", set.stderr);
    assert!(set.stdout.contains("every session"), "{}", set.stdout);

    assert_eq!(
        call(server.addr, "GET", "/auth/me", Some(&access), &Value::Null).0,
        401
    );
    let refreshed = call(
        server.addr,
        "POST",
        "/auth/refresh",
        None,
        &serde_json::json!({"refresh_token": refresh}),
    );
    assert_eq!(refreshed.0, 401);
    assert_eq!(
        login(server.addr, "ann@example.com", "first-password").0,
        401
    );
    assert_eq!(
        login(server.addr, "ann@example.com", "second-password").0,
        200
    );
}

#[test]
fn delete_removes_the_user_and_their_sessions_and_frees_the_email() {
    let work = Workdir::new();
    assert_eq!(
        work.create("ann@example.com", "first-password").code,
        Some(0)
    );
    assert_eq!(
        work.create("bob@example.com", "bobs-password").code,
        Some(0)
    );
    let server = serve(&work.url());
    let (_, pair) = login(server.addr, "ann@example.com", "first-password");
    let access = pair["access_token"].as_str().expect("token").to_owned();
    let deleted = work.run(&["user", "delete", "ann@example.com"], &[], None);
    assert_eq!(deleted.code, Some(0), "{}", deleted.stderr);
    assert_eq!(
        call(server.addr, "GET", "/auth/me", Some(&access), &Value::Null).0,
        401
    );
    assert_eq!(
        sqlite_count(
            &work.db(),
            "SELECT count(*) FROM sessions WHERE user_id = 1"
        ),
        0
    );
    let list = work.run(&["user", "list", "--json"], &[], None).json();
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert_eq!(list[0]["email"], "bob@example.com");
    assert_eq!(register(server.addr, "ann@example.com").0, 201);
}

// ---- backup ----

#[test]
fn a_backup_taken_while_the_server_registers_users_is_whole_and_consistent() {
    let work = Workdir::new();
    assert_eq!(
        work.create("first@example.com", "first-password").code,
        Some(0)
    );
    // Some bulk, so that the copy takes several steps while the server writes between them.
    {
        let conn = rusqlite::Connection::open(work.db()).expect("open");
        conn.execute_batch(
            "CREATE TABLE padding (blob BLOB); \
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 4000) \
             INSERT INTO padding SELECT randomblob(4000) FROM n;",
        )
        .expect("padding");
    }
    let server = serve(&work.url());
    let confirmed = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (confirmed, stop, addr) = (confirmed.clone(), stop.clone(), server.addr);
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let email = format!("user{i}@example.com");
                let (status, _) = register(addr, &email);
                assert_eq!(status, 201, "registration {i}");
                confirmed.lock().expect("lock").push(email);
            }
        })
    };
    while confirmed.lock().expect("lock").len() < 20 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let before: Vec<String> = confirmed.lock().expect("lock").clone();
    let copy = work.path().join("backups").join("copy.sqlite3");
    std::fs::create_dir(copy.parent().expect("parent")).expect("backups dir");
    let backup = work.run(&["backup", copy.to_str().expect("utf-8")], &[], None);
    let during = confirmed.lock().expect("lock").len();
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::SeqCst);
    writer.join().expect("the writer");
    assert_eq!(backup.code, Some(0), "{}", backup.stderr);
    // One pinned snapshot: the server's writes between the steps never restart the copy.
    assert!(!backup.stdout.contains("restarts"), "{}", backup.stdout);
    assert!(
        backup.stdout.contains("integrity_check ok"),
        "{}",
        backup.stdout
    );
    let after = confirmed.lock().expect("lock").len();
    assert!(
        after > during && during >= before.len(),
        "the server kept writing: {before:?} {during} {after}"
    );

    let conn =
        rusqlite::Connection::open_with_flags(&copy, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("the copy opens");
    let verdict: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("check");
    assert_eq!(verdict, "ok");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("mode");
    assert_eq!(mode, "delete", "the copy is one self-contained file");
    for email in before.iter().chain(["first@example.com".to_owned()].iter()) {
        let found: i64 = conn
            .query_row(
                "SELECT count(*) FROM users WHERE email = ?1",
                [email],
                |r| r.get(0),
            )
            .expect("query");
        assert_eq!(
            found, 1,
            "{email}, committed before the backup began, is in the copy"
        );
    }
    let keys: i64 = conn
        .query_row(
            "SELECT count(*) FROM users WHERE id NOT IN (SELECT user_id FROM email_keys)",
            [],
            |r| r.get(0),
        )
        .expect("keys");
    assert_eq!(
        keys, 0,
        "every user in the copy has its email key: the copy is one moment"
    );
    let leftovers: Vec<_> = std::fs::read_dir(copy.parent().expect("parent"))
        .expect("list")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("copy.sqlite3")]);
    drop(server);
    // The copy serves: a server started on it logs the first user in.
    let restored = serve(&format!("sqlite:///{}", copy.display()));
    assert_eq!(
        login(restored.addr, "first@example.com", "first-password").0,
        200
    );
}

#[test]
fn backup_refuses_an_existing_file_unless_forced_and_leaves_nothing_when_it_fails() {
    let work = Workdir::new();
    assert_eq!(
        work.create("ann@example.com", "first-password").code,
        Some(0)
    );
    let copy = work.path().join("copy.sqlite3");
    std::fs::write(&copy, b"precious").expect("write");
    let refused = work.run(&["backup", "copy.sqlite3"], &[], None);
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("exists already (use --force"),
        "{}",
        refused.stderr
    );
    assert_eq!(std::fs::read(&copy).expect("read"), b"precious");
    let forced = work.run(&["backup", "copy.sqlite3", "--force"], &[], None);
    assert_eq!(forced.code, Some(0), "{}", forced.stderr);
    assert_eq!(sqlite_count(&copy, "SELECT count(*) FROM users"), 1);

    // A directory in the way: the copy is written, then cannot be renamed over it.
    std::fs::create_dir(work.path().join("in-the-way")).expect("dir");
    let itself = work.run(&["backup", "./db.sqlite3", "--force"], &[], None);
    assert_eq!(itself.code, Some(1), "{}", itself.stderr);
    assert!(
        itself.stderr.contains("is the database itself"),
        "{}",
        itself.stderr
    );
    let blocked = work.run(&["backup", "in-the-way", "--force"], &[], None);
    assert_eq!(blocked.code, Some(1), "{}", blocked.stderr);
    for (what, dest) in [
        ("no such directory", "missing/copy.sqlite3"),
        ("unwritable", "/proc/copy.sqlite3"),
    ] {
        let ran = work.run(&["backup", dest], &[], None);
        assert_eq!(ran.code, Some(1), "{what}: {}", ran.stderr);
    }
    let names: Vec<String> = std::fs::read_dir(work.path())
        .expect("list")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("partial"))
        .collect();
    assert!(names.is_empty(), "partial files left: {names:?}");

    let missing = Workdir::new();
    let ran = missing.run(&["backup", "copy.sqlite3"], &[], None);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(ran.stderr.contains("does not exist"), "{}", ran.stderr);
    assert!(!missing.db().exists() && !missing.path().join("copy.sqlite3").exists());
}

#[test]
fn backup_copies_a_fastapi_database_still_in_its_rollback_journal() {
    let work = Workdir::new();
    std::fs::copy(crate::FASTAPI_FIXTURE, work.db()).expect("copy the fixture");
    let ran = work.run(&["backup", "copy.sqlite3"], &[], None);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(
        ran.stdout.contains(", 4 users, integrity_check ok"),
        "{}",
        ran.stdout
    );
    let copy = work.path().join("copy.sqlite3");
    assert_eq!(sqlite_count(&copy, "SELECT count(*) FROM users"), 4);
    let conn = rusqlite::Connection::open(work.db()).expect("open");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("mode");
    assert_eq!(
        mode, "delete",
        "the backup leaves the source's journal mode alone"
    );
}

#[test]
fn backup_of_a_postgresql_database_points_to_pg_dump_without_the_password() {
    let work = Workdir::new();
    let ran = work.run(
        &["backup", "x.dump"],
        &[(
            "DATABASE_URL",
            "postgresql://app:hunter2secret@db.internal:5432/users",
        )],
        None,
    );
    // The edge build refuses the URL itself, naming the build.
    if cfg!(feature = "postgres") {
        assert_eq!(ran.code, Some(2), "{}", ran.stderr);
        assert!(
            ran.stderr.contains("pg_dump --format=custom"),
            "{}",
            ran.stderr
        );
        assert!(
            ran.stderr
                .contains("'postgresql://app@db.internal:5432/users'"),
            "{}",
            ran.stderr
        );
    } else {
        assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    }
    assert!(!ran.stderr.contains("hunter2secret"), "{}", ran.stderr);
}

// ---- healthcheck ----

#[test]
fn healthcheck_exits_0_for_a_healthy_server_and_1_otherwise() {
    let work = Workdir::new();
    // Listening on every address: the check asks loopback.
    let server = start_with(
        None,
        &[
            ("JWT_SECRET", SECRET),
            ("HOST", "0.0.0.0"),
            ("DATABASE_URL", &work.url()),
        ],
    );
    let port = server.addr.port().to_string();
    let ok = work.run(
        &["healthcheck"],
        &[("HOST", "0.0.0.0"), ("PORT", &port)],
        None,
    );
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);
    assert!(
        ok.stdout.starts_with("healthy: http://127.0.0.1:"),
        "{}",
        ok.stdout
    );
    let flag = work.run(&["healthcheck", "--port", &port], &[], None);
    assert_eq!(flag.code, Some(0), "{}", flag.stderr);

    // The database gone from under it: /health answers 503.
    std::fs::rename(work.db(), work.path().join("moved.sqlite3")).expect("move the database");
    let down = work.run(&["healthcheck", "--port", &port], &[], None);
    assert_eq!(down.code, Some(1), "{}", down.stderr);
    assert!(
        down.stderr.contains("unhealthy") && down.stderr.contains("503"),
        "{}",
        down.stderr
    );
    drop(server);

    let refused = work.run(&["healthcheck", "--port", &port], &[], None);
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    assert_eq!(refused.stderr.lines().count(), 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("cannot connect"),
        "{}",
        refused.stderr
    );

    // Something that accepts and never answers: given up on within the timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().expect("addr").port().to_string();
    let started = std::time::Instant::now();
    let hung = work.run(&["healthcheck", "--port", &silent_port], &[], None);
    assert_eq!(hung.code, Some(1), "{}", hung.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let zero = work.run(&["healthcheck", "--port", "0"], &[], None);
    assert_eq!(zero.code, Some(2), "{}", zero.stderr);
}

// ---- check-config ----

#[test]
fn check_config_prints_every_setting_with_its_source_and_masks_secrets() {
    let work = Workdir::new();
    std::fs::write(work.path().join(".env"), "PORT=9001\nHOST=0.0.0.0\n").expect(".env");
    let postgres_url = "postgresql://app:hunter2secret@db.internal:5432/users";
    // The edge build refuses a PostgreSQL URL, naming the build, and shows no password.
    let url = if cfg!(feature = "postgres") {
        postgres_url.to_owned()
    } else {
        let refused = work.run(&["check-config"], &[("DATABASE_URL", postgres_url)], None);
        assert_eq!(refused.code, Some(2), "{}", refused.stderr);
        assert!(
            refused.stderr.contains("standard build"),
            "{}",
            refused.stderr
        );
        assert!(
            !refused.stderr.contains("hunter2secret"),
            "{}",
            refused.stderr
        );
        work.url()
    };
    let ran = run_in(
        work.path(),
        &["check-config", "--workers", "3"],
        &[
            ("JWT_SECRET", SECRET),
            ("DATABASE_URL", &url),
            ("HOST", "127.0.0.2"),
        ],
        None,
    );
    for variable in backnd_api::VARIABLES {
        assert!(ran.stdout.contains(variable), "{variable}: {}", ran.stdout);
    }
    assert!(
        !ran.stdout.contains(SECRET) && !ran.stderr.contains(SECRET),
        "{}",
        ran.stdout
    );
    assert!(!ran.stdout.contains("hunter2secret") && !ran.stderr.contains("hunter2secret"));
    let line = |variable: &str| -> String {
        ran.stdout
            .lines()
            .find(|line| line.starts_with(&format!("{variable} ")))
            .unwrap_or_else(|| panic!("{variable}: {}", ran.stdout))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        line("JWT_SECRET"),
        format!("JWT_SECRET <set, {} bytes> (environment)", SECRET.len())
    );
    assert_eq!(line("PORT"), "PORT 9001 (.env)");
    assert_eq!(line("HOST"), "HOST 127.0.0.2 (environment)");
    assert_eq!(line("WORKERS"), "WORKERS 3 (flag)");
    assert_eq!(line("BCRYPT_COST"), "BCRYPT_COST 12 (default)");
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    if cfg!(feature = "postgres") {
        assert_eq!(
            line("DATABASE_URL"),
            "DATABASE_URL postgresql://app:***@db.internal:5432/users (environment)"
        );
    }

    let unset = work.run(&["check-config"], &[("JWT_SECRET", "")], None);
    assert_eq!(unset.code, Some(0), "{}", unset.stderr);
    assert!(
        unset.stdout.contains("<unset: a random one per process>"),
        "{}",
        unset.stdout
    );
    assert!(
        unset.stdout.trim_end().ends_with("configuration ok"),
        "{}",
        unset.stdout
    );

    let bad = work.run(&["check-config"], &[("BCRYPT_COST", "99")], None);
    assert_eq!(bad.code, Some(2));
    assert!(bad.stderr.contains("invalid BCRYPT_COST"), "{}", bad.stderr);
    let short = work.run(
        &["check-config"],
        &[("JWT_SECRET", "too-short-secret")],
        None,
    );
    assert_eq!(short.code, Some(2));
    assert!(
        !short.stderr.contains("too-short-secret"),
        "{}",
        short.stderr
    );
    let nowhere = work.run(
        &["check-config"],
        &[("DATABASE_URL", "sqlite:///no/such/dir/db.sqlite3")],
        None,
    );
    assert_eq!(nowhere.code, Some(2), "{}", nowhere.stdout);
    assert!(
        nowhere.stderr.contains("does not exist"),
        "{}",
        nowhere.stderr
    );
}

// ---- migrate ----

#[test]
fn migrate_refuses_bad_urls_and_the_configured_database_itself_with_exit_2() {
    let work = Workdir::new();
    assert_eq!(
        work.create("ann@example.com", "first-password").code,
        Some(0)
    );
    for to in ["mysql://app:hunter2secret@db/app", "sqlite://", "not a url"] {
        let ran = work.run(&["migrate", "--to", to], &[], None);
        assert_eq!(ran.code, Some(2), "{to}: {}", ran.stderr);
        assert!(!ran.stderr.contains("hunter2secret"), "{}", ran.stderr);
    }
    if !cfg!(feature = "postgres") {
        // The edge build says which build migrates to PostgreSQL.
        let ran = work.run(&["migrate", "--to", "postgresql://app@db/app"], &[], None);
        assert_eq!(ran.code, Some(2), "{}", ran.stderr);
        assert!(
            ran.stderr.contains("use the standard build"),
            "{}",
            ran.stderr
        );
    }
    let itself = work.run(&["migrate", "--to", &work.url()], &[], None);
    assert_eq!(itself.code, Some(2), "{}", itself.stderr);
    let missing = Workdir::new();
    let target = missing.path().join("target.sqlite3");
    let ran = missing.run(
        &[
            "migrate",
            "--to",
            &format!("sqlite:///{}", target.display()),
        ],
        &[],
        None,
    );
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(ran.stderr.contains("does not exist"), "{}", ran.stderr);
}

#[test]
fn migrate_sqlite_to_sqlite_refuses_a_non_empty_target_unless_allowed_and_conflicts_always() {
    let source = Workdir::new();
    std::fs::copy(crate::FASTAPI_FIXTURE, source.db()).expect("copy the fixture");
    let target = Workdir::new();
    assert_eq!(
        target.create("someone@example.com", "password-one").code,
        Some(0)
    );
    // The target's user has id 1, as the fixture's Ann does.
    let refused = source.run(&["migrate", "--to", &target.url()], &[], None);
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("not empty") && refused.stderr.contains("--allow-non-empty"),
        "{}",
        refused.stderr
    );
    let conflict = source.run(
        &["migrate", "--to", &target.url(), "--allow-non-empty"],
        &[],
        None,
    );
    assert_eq!(conflict.code, Some(1), "{}", conflict.stderr);
    assert!(
        conflict.stderr.contains("user id 1 exists in the target"),
        "{}",
        conflict.stderr
    );
    assert_eq!(
        sqlite_count(&target.db(), "SELECT count(*) FROM users"),
        1,
        "nothing was copied"
    );

    // Emptied of that user, but holding Ann's email under another id: refused by identity.
    let other = Workdir::new();
    other.run(
        &[
            "user",
            "create",
            "--email",
            "x@example.com",
            "--name",
            "X",
            "--phone",
            "12345",
        ],
        &[],
        Some("password-one\n"),
    );
    let fifth = other.run(
        &[
            "user",
            "create",
            "--email",
            "ANN@example.com",
            "--name",
            "A",
            "--phone",
            "12345",
        ],
        &[],
        Some("password-one\n"),
    );
    assert_eq!(fifth.code, Some(0));
    let conn = rusqlite::Connection::open(other.db()).expect("open");
    conn.execute_batch("PRAGMA foreign_keys = ON; UPDATE users SET id = 99 WHERE id = 2; DELETE FROM users WHERE id = 1")
        .expect("move ids");
    drop(conn);
    let by_email = source.run(
        &["migrate", "--to", &other.url(), "--allow-non-empty"],
        &[],
        None,
    );
    assert_eq!(by_email.code, Some(1), "{}", by_email.stderr);
    assert!(
        by_email
            .stderr
            .contains("user 1's email is registered in the target already, as user 99"),
        "{}",
        by_email.stderr
    );

    let empty = Workdir::new();
    let copied = source.run(&["migrate", "--to", &empty.url()], &[], None);
    assert_eq!(copied.code, Some(0), "{}", copied.stderr);
    assert!(
        copied
            .stdout
            .contains("read from the source:  4 users, 4 email keys"),
        "{}",
        copied.stdout
    );
    assert!(copied.stdout.contains("counts agree"), "{}", copied.stdout);
    assert!(!copied.stdout.contains("$2b$"), "{}", copied.stdout);
}

#[test]
fn migrate_copies_emails_the_fastapi_service_let_differ_only_by_case() {
    // Its unique index was case-sensitive: both rows exist, the lower id holds the identity.
    let source = Workdir::new();
    std::fs::copy(crate::FASTAPI_FIXTURE, source.db()).expect("copy the fixture");
    let conn = rusqlite::Connection::open(source.db()).expect("open");
    conn.execute(
        "INSERT INTO users (id, name, phone, email, password_hash) \
         SELECT 5, name, phone, upper(email), password_hash FROM users WHERE id = 1",
        [],
    )
    .expect("a case twin of user 1");
    drop(conn);
    let target = Workdir::new();
    let ran = source.run(&["migrate", "--to", &target.url()], &[], None);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(
        ran.stdout.contains("5 users, 4 email keys"),
        "{}",
        ran.stdout
    );
    assert_eq!(
        sqlite_count(
            &target.db(),
            "SELECT user_id FROM email_keys WHERE key = 'ann@example.com'"
        ),
        1
    );
}

#[cfg(feature = "postgres")]
mod postgres_side {
    //! `migrate` to and from the real PostgreSQL: a schema of its own per test.

    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// The fixture's first user and her password (tests/fixtures/README.md).
    const ANN: (&str, &str) = ("ann@example.com", "correct horse battery");

    /// A fresh schema in `TEST_POSTGRES_URL`'s database, dropped at the end.
    pub struct Schema {
        admin: String,
        name: String,
        /// The `DATABASE_URL` whose connections work in the schema.
        pub url: String,
    }

    impl Schema {
        pub fn new() -> Schema {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let admin = std::env::var("TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/test".to_owned());
            let name = format!(
                "cli_{}_{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::SeqCst)
            );
            let mut client = postgres::Client::connect(&admin, postgres::NoTls)
                .unwrap_or_else(|e| panic!("the migrate tests need PostgreSQL at {admin}: {e}"));
            client
                .batch_execute(&format!(
                    "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
                ))
                .expect("create the schema");
            let separator = if admin.contains('?') { '&' } else { '?' };
            let url = format!("{admin}{separator}options=-csearch_path%3D{name}");
            Schema { admin, name, url }
        }

        pub fn client(&self) -> postgres::Client {
            postgres::Client::connect(&self.url, postgres::NoTls).expect("connect to the schema")
        }
    }

    impl Drop for Schema {
        fn drop(&mut self) {
            if let Ok(mut client) = postgres::Client::connect(&self.admin, postgres::NoTls) {
                let _ =
                    client.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
            }
        }
    }

    /// `(id, email, password_hash)` of every user in a SQLite file, by id.
    fn hashes_in(path: &Path) -> Vec<(i64, String, String)> {
        let conn = rusqlite::Connection::open(path).expect("open");
        let mut stmt = conn
            .prepare("SELECT id, email, password_hash FROM users ORDER BY id")
            .expect("prepare");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    }

    /// The sessions of a SQLite file, every column as text, by id.
    fn sessions_in(path: &Path) -> Vec<String> {
        let conn = rusqlite::Connection::open(path).expect("open");
        let mut stmt = conn
            .prepare("SELECT id || user_id || family_hash || token_hash || coalesce(previous_hash, '') \
                      || coalesce(rotated_at, '') || created_at || last_used_at || expires_at \
                      || coalesce(user_agent, '') || client || coalesce(revoked_at, '') FROM sessions ORDER BY id")
            .expect("prepare");
        stmt.query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    }

    #[test]
    fn migrate_round_trips_sqlite_postgresql_sqlite_keeping_ids_hashes_timestamps_and_sessions() {
        // The FastAPI service's database, with a gap in its ids, one user of ours and some
        // sessions (one ended, with a token cutoff).
        let source = Workdir::new();
        std::fs::copy(crate::FASTAPI_FIXTURE, source.db()).expect("copy the fixture");
        assert_eq!(
            source.create("new@example.com", "new-user-password").code,
            Some(0)
        );
        assert_eq!(
            source.run(&["user", "delete", "3"], &[], None).code,
            Some(0)
        );
        {
            let server = serve(&source.url());
            let (status, pair) = login(server.addr, "new@example.com", "new-user-password");
            assert_eq!(status, 200);
            let access = pair["access_token"].as_str().expect("token").to_owned();
            assert_eq!(login(server.addr, ANN.0, ANN.1).0, 200);
            assert_eq!(
                call(
                    server.addr,
                    "POST",
                    "/auth/logout?scope=all",
                    Some(&access),
                    &Value::Null
                )
                .0,
                204
            );
            assert_eq!(
                login(server.addr, "new@example.com", "new-user-password").0,
                200
            );
        }
        let users_before = source.run(&["user", "list", "--json"], &[], None).json();
        assert_eq!(users_before.as_array().map(Vec::len), Some(4));

        let pg = Schema::new();
        let there = source.run(&["migrate", "--to", &pg.url], &[], None);
        assert_eq!(there.code, Some(0), "{}", there.stderr);
        assert!(
            there.stdout.contains(
                "read from the source:  4 users, 4 email keys, 3 sessions, 1 token cutoffs"
            ),
            "{}",
            there.stdout
        );
        assert!(there.stdout.contains("counts agree"), "{}", there.stdout);
        let on_pg = source
            .run(
                &["user", "list", "--json"],
                &[("DATABASE_URL", &pg.url)],
                None,
            )
            .json();
        assert_eq!(
            on_pg, users_before,
            "ids, fields and timestamps as the API shows them"
        );

        let back = Workdir::new();
        let home = run_in(
            back.path(),
            &["migrate", "--to", &back.url()],
            &[("DATABASE_URL", &pg.url)],
            None,
        );
        assert_eq!(home.code, Some(0), "{}", home.stderr);
        assert!(home.stdout.contains("counts agree"), "{}", home.stdout);
        let users_after = back.run(&["user", "list", "--json"], &[], None).json();
        assert_eq!(users_after, users_before);
        assert_eq!(
            hashes_in(&back.db()),
            hashes_in(&source.db()),
            "ids and hashes kept"
        );
        assert_eq!(
            sessions_in(&back.db()),
            sessions_in(&source.db()),
            "sessions kept"
        );
        assert_eq!(
            sqlite_count(&back.db(), "SELECT revoked_before FROM token_cutoffs"),
            sqlite_count(&source.db(), "SELECT revoked_before FROM token_cutoffs")
        );
        // The fixture's microsecond timestamp survives to the digit.
        let zoe = back.run(&["user", "show", "4", "--json"], &[], None).json();
        assert_eq!(zoe["updated_at"], "2026-11-26T05:06:21.980171Z");
        // Back on SQLite, the FastAPI-era password and ours still log in.
        let server = serve(&back.url());
        assert_eq!(login(server.addr, ANN.0, ANN.1).0, 200);
        assert_eq!(
            login(server.addr, "new@example.com", "new-user-password").0,
            200
        );
    }

    #[test]
    fn users_log_in_on_the_new_postgresql_database_and_new_ids_follow_the_highest() {
        let source = Workdir::new();
        std::fs::copy(crate::FASTAPI_FIXTURE, source.db()).expect("copy the fixture");
        assert_eq!(
            source.create("new@example.com", "new-user-password").code,
            Some(0)
        );
        let conn = rusqlite::Connection::open(source.db()).expect("open");
        conn.execute_batch("PRAGMA foreign_keys = ON; UPDATE users SET id = 41 WHERE id = 5")
            .expect("a high id");
        drop(conn);
        let pg = Schema::new();
        let ran = source.run(&["migrate", "--to", &pg.url], &[], None);
        assert_eq!(ran.code, Some(0), "{}", ran.stderr);
        let server = serve(&pg.url);
        assert_eq!(
            login(server.addr, ANN.0, ANN.1).0,
            200,
            "a FastAPI-era password"
        );
        let (status, body) = login(server.addr, "new@example.com", "new-user-password");
        assert_eq!(status, 200);
        assert_eq!(body["user"]["id"], 41);
        assert_eq!(login(server.addr, ANN.0, "wrong password").0, 401);
        let (status, user) = register(server.addr, "after@example.com");
        assert_eq!(status, 201, "{user}");
        assert_eq!(user["id"], 42, "the id sequence is past the highest id");
        let mut client = pg.client();
        let keys: i64 = client
            .query_one("SELECT count(*) FROM email_keys", &[])
            .expect("count")
            .get(0);
        assert_eq!(keys, 6);
    }

    #[test]
    fn migrate_to_postgresql_refuses_a_non_empty_schema_and_an_unreachable_server() {
        let source = Workdir::new();
        std::fs::copy(crate::FASTAPI_FIXTURE, source.db()).expect("copy the fixture");
        let pg = Schema::new();
        assert_eq!(
            source.run(&["migrate", "--to", &pg.url], &[], None).code,
            Some(0)
        );
        let again = source.run(&["migrate", "--to", &pg.url], &[], None);
        assert_eq!(again.code, Some(1), "{}", again.stderr);
        assert!(
            again.stderr.contains("not empty (4 users"),
            "{}",
            again.stderr
        );
        let forced = source.run(
            &["migrate", "--to", &pg.url, "--allow-non-empty"],
            &[],
            None,
        );
        assert_eq!(forced.code, Some(1), "{}", forced.stderr);
        assert!(
            forced.stderr.contains("exists in the target already"),
            "{}",
            forced.stderr
        );
        let mut client = pg.client();
        let users: i64 = client
            .query_one("SELECT count(*) FROM users", &[])
            .expect("count")
            .get(0);
        assert_eq!(users, 4, "the refused copies wrote nothing");

        let unreachable = "postgresql://app:hunter2secret@127.0.0.1:1/app";
        let started = std::time::Instant::now();
        let ran = source.run(
            &["migrate", "--to", unreachable],
            &[("DATABASE_CONNECT_TIMEOUT", "1")],
            None,
        );
        assert_eq!(ran.code, Some(1), "{}", ran.stderr);
        assert!(
            !ran.stderr.contains("hunter2secret") && !ran.stdout.contains("hunter2secret"),
            "{}",
            ran.stderr
        );
        assert!(ran.stderr.contains("app:***@127.0.0.1:1"), "{}", ran.stderr);
        assert!(started.elapsed() < Duration::from_secs(10));
        let list = source.run(
            &["user", "list"],
            &[
                ("DATABASE_URL", unreachable),
                ("DATABASE_CONNECT_TIMEOUT", "1"),
            ],
            None,
        );
        assert_eq!(list.code, Some(1), "{}", list.stderr);
        assert!(!list.stderr.contains("hunter2secret"), "{}", list.stderr);
    }
}
