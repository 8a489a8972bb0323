//! The harness the process tests share: starting the compiled `backnd-api` with a fresh
//! database in a temporary directory, talking raw HTTP/1.1 to it, and reading what the kernel
//! says about the process (threads, descriptors, memory) from `/proc`.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_backnd-api");
pub const SECRET: &str = "process-test-secret-0123456789abcdef012345";

/// A plain keep-alive health check.
pub const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n";

/// A running `backnd-api` process.
pub struct Running {
    pub child: Child,
    pub addr: SocketAddr,
    /// Its log lines (stderr), from the one after "listening on" onwards.
    pub log: mpsc::Receiver<String>,
    /// The lines it logged up to and including "listening on".
    pub start_up_log: Vec<String>,
    /// Its working directory, which holds its database (`db.sqlite3`).
    dir: tempfile::TempDir,
}

impl Running {
    /// Collects log lines until `until` matches one or `timeout` passes.
    pub fn log_until(&self, until: impl Fn(&str) -> bool, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut lines = Vec::new();
        while let Ok(line) = self
            .log
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            let done = until(&line);
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    }

    /// Returns the log lines written since the last look, without waiting.
    pub fn log_so_far(&self) -> Vec<String> {
        self.log.try_iter().collect()
    }

    /// The server's process id: its own, also when it was started through `bash -c ... exec`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's SQLite database file, by the path the kernel shows for it (symbolic links
    /// in the temporary directory's path resolved).
    pub fn database(&self) -> std::path::PathBuf {
        let dir = self.dir.path();
        dir.canonicalize()
            .unwrap_or_else(|_| dir.to_owned())
            .join("db.sqlite3")
    }

    /// Reads the process's numbers from `/proc`.
    pub fn usage(&self) -> Usage {
        Usage::of(self.pid())
    }

    /// Connects and exchanges one request, expecting a complete answer within `timeout`.
    pub fn ask(&self, request: &[u8], timeout: Duration) -> String {
        let mut stream = TcpStream::connect(self.addr).expect("connect");
        exchange(&mut stream, request, timeout).expect("an answer")
    }

    /// Sends SIGTERM, as a service manager stopping the process does.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("send SIGTERM");
        assert!(status.success());
    }

    /// Waits for the process to exit, failing if it is still running at `deadline`.
    pub fn wait_for_exit(&mut self, deadline: Instant) -> std::process::ExitStatus {
        loop {
            if let Some(exit) = self.child.try_wait().expect("wait") {
                return exit;
            }
            assert!(
                Instant::now() < deadline,
                "backnd-api is still running at its deadline"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asks for `/health` on new connections until it is served 200, while it is turned away
    /// with 503 (as when out of connections or descriptors), for at most `within`.
    pub fn wait_until_served(&self, within: Duration) {
        let deadline = std::time::Instant::now() + within;
        loop {
            let answer = self.ask(HEALTH, Duration::from_secs(10));
            if answer.starts_with("HTTP/1.1 200") {
                return;
            }
            assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
            assert!(
                std::time::Instant::now() < deadline,
                "still turned away after {within:?}: {answer}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a process holds, as `/proc` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// `Threads:` of `/proc/PID/status`.
    pub threads: usize,
    /// Entries of `/proc/PID/fd`.
    pub descriptors: usize,
    /// Those of them that are sockets: the listener and one per open connection.
    pub sockets: usize,
    /// `VmRSS:` of `/proc/PID/status`, in KiB.
    pub rss_kib: u64,
}

impl Usage {
    /// Reads them for the process `pid`.
    pub fn of(pid: u32) -> Usage {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .expect("the server is still running");
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|value| value.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        };
        let targets = descriptors(pid);
        let sockets = targets
            .iter()
            .filter(|target| target.starts_with("socket:"))
            .count();
        Usage {
            threads: field("Threads:") as usize,
            descriptors: targets.len(),
            sockets,
            rss_kib: field("VmRSS:"),
        }
    }
}

/// Threads and descriptors allowed above the baseline once settled. Reading `/proc` is a
/// snapshot that races with connection threads finishing: when the poll gives up on a loaded
/// machine, the last connection's thread may have closed its socket but not yet exited, or
/// not yet seen the client's close, and is counted on its way out. Two allows for that; a leak
/// of one per connection would show as thousands.
pub const NOISE: usize = 2;

/// Lists what each open descriptor of the process `pid` refers to (`socket:[1234]`, a file's
/// path, `pipe:[5678]`...). A descriptor closed while the list is read is left out.
pub fn descriptors(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the server is still running")
        .flatten()
        .filter_map(|entry| std::fs::read_link(entry.path()).ok())
        .map(|target| target.to_string_lossy().into_owned())
        .collect()
}

/// Polls `measure` until it is back to `baseline` or below, for up to `within`, and returns
/// the last value: threads and descriptors of connections that were just closed take a moment
/// to go, and the caller decides how much above the baseline it tolerates.
pub fn settles(measure: impl Fn() -> usize, baseline: usize, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let value = measure();
        if value <= baseline || Instant::now() >= deadline {
            return value;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads the process's usage once its threads and descriptors stop changing (a connection
/// just closed may still be winding down), for at most two seconds.
pub fn steady_usage(running: &Running) -> Usage {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut last = running.usage();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = running.usage();
        let steady = now.threads == last.threads && now.descriptors == last.descriptors;
        if steady || Instant::now() >= deadline {
            return now;
        }
        last = now;
    }
}

/// Starts the binary on a free port with a fresh database, optionally under a descriptor limit
/// (soft and hard, so the binary cannot raise it), and waits for its "listening on" line
/// (`http://` or `https://`).
pub fn start(descriptor_limit: Option<u32>) -> Running {
    start_with(
        descriptor_limit,
        &[("JWT_SECRET", SECRET), ("RUST_LOG", "info,access=off")],
    )
}

/// Like [`start`], with these variables set (the database, port and cost are always set).
pub fn start_with(descriptor_limit: Option<u32>, vars: &[(&str, &str)]) -> Running {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut command = match descriptor_limit {
        Some(limit) => {
            // `exec` makes the server the very process spawned, so `Child::id()` is its pid.
            let mut c = Command::new("bash");
            c.args(["-c", &format!("ulimit -n {limit} && exec \"$0\""), BIN]);
            c
        }
        None => Command::new(BIN),
    };
    let mut child = command
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", "sqlite:///./db.sqlite3")
        .env("PORT", "0")
        .env("BCRYPT_COST", "4")
        .env("WORKERS", "2")
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start backnd-api");
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Keep draining so the child never blocks on a full pipe.
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut start_up_log = Vec::new();
    let addr = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("backnd-api reports where it listens");
        start_up_log.push(line.clone());
        let listening = line
            .split("listening on http://")
            .nth(1)
            .or_else(|| line.split("listening on https://").nth(1));
        if let Some(rest) = listening {
            let addr = rest.split_whitespace().next().expect("address");
            break addr.parse().expect("socket address");
        }
    };
    Running {
        child,
        addr,
        log: rx,
        start_up_log,
        dir,
    }
}

/// Sends `request` on `stream` and reads one response (headers and a Content-Length body).
pub fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    timeout: Duration,
) -> std::io::Result<String> {
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(request)?;
    read_response(stream)
}

/// Reads one response (headers and a Content-Length body) within the stream's read timeout
/// (a TLS stream's too).
pub fn read_response(stream: &mut impl Read) -> std::io::Result<String> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&received).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return Ok(text);
            }
        }
        match stream.read(&mut buf)? {
            0 => return Err(std::io::Error::new(ErrorKind::UnexpectedEof, text)),
            n => received.extend_from_slice(&buf[..n]),
        }
    }
}
