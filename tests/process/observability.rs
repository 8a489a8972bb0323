//! What an operator's tools read: `LOG_FORMAT=json` lines parsed one by one, `/metrics` checked
//! by `promtool` and scraped by a real Prometheus server on loopback.
//!
//! `promtool` and `prometheus` come from Debian's `prometheus` package, which `.ci/run`
//! installs and then sets `REQUIRE_PROMETHEUS=1`: there a missing tool fails the test. A
//! developer without them sees the test say SKIPPED.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{exchange, start_with, Running, SECRET};

/// Sends one request on a new connection and returns the raw answer.
fn ask(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    exchange(&mut stream, request.as_bytes(), Duration::from_secs(10)).expect("an answer")
}

fn post_json(addr: SocketAddr, path: &str, body: &str, token: Option<&str>) -> String {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    ask(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n{auth}\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

fn body_json(answer: &str) -> Value {
    let (_, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    serde_json::from_str(body).expect("a JSON body")
}

/// Whether `tool` is installed; without it the test is skipped, unless CI requires it.
fn have(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        assert!(
            std::env::var("REQUIRE_PROMETHEUS").as_deref() != Ok("1"),
            "{tool} is required (REQUIRE_PROMETHEUS=1): apt-get install prometheus"
        );
        eprintln!("SKIPPED: {tool} is not installed (Debian's prometheus package has it)");
    }
    found
}

/// Registers, logs in, reads /auth/me with a token and a query string, and fails a login:
/// a little of everything the logs and the metrics must cover.
fn some_traffic(server: &Running) -> (String, String) {
    let password = "correct-horse-battery";
    let registration = format!(
        r#"{{"name":"Ada","phone":"+44 20 7946 0958","email":"ada@example.com","password":"{password}"}}"#
    );
    let registered = post_json(server.addr, "/auth/register", &registration, None);
    assert!(registered.starts_with("HTTP/1.1 201"), "{registered}");
    let login = format!(r#"{{"email":"ada@example.com","password":"{password}"}}"#);
    let answer = post_json(server.addr, "/auth/login", &login, None);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let token = body_json(&answer)["access_token"]
        .as_str()
        .expect("a token")
        .to_owned();
    let me = ask(
        server.addr,
        &format!(
            "GET /auth/me?api_key=query-secret-123 HTTP/1.1\r\nHost: test\r\n\
             Authorization: Bearer {token}\r\n\r\n"
        ),
    );
    assert!(me.starts_with("HTTP/1.1 200"), "{me}");
    let wrong = r#"{"email":"ada@example.com","password":"not-the-password"}"#;
    assert!(post_json(server.addr, "/auth/login", wrong, None).starts_with("HTTP/1.1 401"));
    (password.to_owned(), token)
}

#[test]
fn json_logs_are_one_object_per_line_and_keep_secrets_out() {
    let server = start_with(
        None,
        &[
            ("JWT_SECRET", SECRET),
            ("LOG_FORMAT", "json"),
            ("RUST_LOG", "debug"),
        ],
    );
    let (password, token) = some_traffic(&server);
    let mut lines = server.start_up_log.clone();
    lines.extend(server.log_until(
        |line| line.contains("\"status\":401"),
        Duration::from_secs(10),
    ));
    let mut access = Vec::new();
    for line in &lines {
        let entry: Value = serde_json::from_str(line)
            .unwrap_or_else(|err| panic!("not one JSON object ({err}): {line}"));
        for field in ["time", "level", "target", "message"] {
            assert!(entry[field].is_string(), "no {field}: {line}");
        }
        for secret in [
            password.as_str(),
            token.as_str(),
            SECRET,
            "query-secret",
            "$2b$",
        ] {
            assert!(!line.contains(secret), "a secret in the log: {line}");
        }
        if entry["target"] == "access" {
            access.push(entry);
        }
    }
    assert!(
        lines[0].contains("\"level\":\"INFO\"") || lines[0].contains("\"level\":\"DEBUG\""),
        "{lines:?}"
    );
    let me = access
        .iter()
        .find(|entry| entry["path"] == "/auth/me")
        .unwrap_or_else(|| panic!("no access line for /auth/me: {access:?}"));
    assert_eq!(me["method"], "GET");
    assert_eq!(me["status"], 200);
    assert!(
        me["duration_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{me}"
    );
    assert_eq!(me["client"], "127.0.0.1");
    let statuses: Vec<i64> = access
        .iter()
        .filter_map(|entry| entry["status"].as_i64())
        .collect();
    assert_eq!(statuses, [201, 200, 200, 401], "{access:?}");
}

#[test]
fn promtool_finds_nothing_wrong_with_the_metrics() {
    if !have("promtool") {
        return;
    }
    let server = start_with(
        None,
        &[
            ("JWT_SECRET", SECRET),
            ("METRICS", "on"),
            ("RUST_LOG", "info,access=off"),
        ],
    );
    some_traffic(&server);
    ask(
        server.addr,
        "GET /nowhere HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
    );
    let answer = ask(server.addr, "GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n");
    let (head, text) = answer.split_once("\r\n\r\n").expect("head and body");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(text.contains("backnd_api_logins_total{outcome=\"bad_credentials\"} 1\n"));

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let checked = promtool.wait_with_output().expect("promtool ends");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(checked.status.success(), "promtool: {said}\n{text}");
    // Lint findings (names, units, help) are printed even when the exit status is 0.
    assert!(said.trim().is_empty(), "promtool: {said}");
    // The alerting rules shipped in contrib/ load, and name only series the service exports.
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/backnd-api.rules.yml");
    let checked = Command::new("promtool")
        .args(["check", "rules", rules])
        .output()
        .expect("run promtool");
    assert!(
        checked.status.success(),
        "promtool check rules: {}",
        String::from_utf8_lossy(&checked.stdout)
    );
    let text_rules = std::fs::read_to_string(rules).expect("the rules");
    let names = text_rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("backnd_api_"));
    for name in names {
        assert!(
            text.contains(&format!("\n{name}{{")) || text.contains(&format!("\n{name} ")),
            "the rules use {name}, which /metrics does not export"
        );
    }
}

/// A Prometheus server, stopped when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus scraping `target` every second, on a free loopback port.
    fn scraping(target: SocketAddr) -> Prometheus {
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  \
                 - job_name: backnd-api\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("write the configuration");
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|free| free.local_addr())
            .expect("a free port");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            addr,
            _dir: dir,
        }
    }

    /// The result of an instant query, or `None` while Prometheus is not answering.
    fn query(&self, promql: &str) -> Option<Vec<Value>> {
        let encoded: String = url_encode(promql);
        let mut stream = TcpStream::connect(self.addr).ok()?;
        let request = format!(
            "GET /api/v1/query?query={encoded} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        );
        let answer = exchange(&mut stream, request.as_bytes(), Duration::from_secs(5)).ok()?;
        let value = body_json(&answer);
        value["data"]["result"].as_array().cloned()
    }
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn a_real_prometheus_scrapes_the_metrics_listener() {
    if !have("prometheus") {
        return;
    }
    let server = start_with(
        None,
        &[
            ("JWT_SECRET", SECRET),
            ("METRICS_ADDR", "127.0.0.1:0"),
            ("RUST_LOG", "info,access=off"),
        ],
    );
    let metrics: SocketAddr = server
        .start_up_log
        .iter()
        .find_map(|line| line.split("serving metrics on http://").nth(1))
        .and_then(|rest| rest.split('/').next())
        .expect("the metrics address is logged")
        .parse()
        .expect("an address");
    some_traffic(&server);
    let prometheus = Prometheus::scraping(metrics);

    let deadline = Instant::now() + Duration::from_secs(60);
    let up = loop {
        let up = prometheus.query("up{job=\"backnd-api\"}");
        if let Some(first) = up.as_ref().and_then(|result| result.first()) {
            break first["value"][1].clone();
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped the target"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(up, "1", "the scrape failed");
    let successes = prometheus
        .query("backnd_api_logins_total{outcome=\"success\"}")
        .expect("Prometheus answers");
    assert_eq!(successes.len(), 1, "{successes:?}");
    assert_eq!(successes[0]["value"][1], "1");
    let routes = prometheus
        .query("sum by (route) (backnd_api_http_requests_total)")
        .expect("Prometheus answers");
    let names: Vec<&str> = routes
        .iter()
        .filter_map(|series| series["metric"]["route"].as_str())
        .collect();
    for route in ["/auth/register", "/auth/login", "/auth/me"] {
        assert!(names.contains(&route), "{route} not in {names:?}");
    }
}
