//! `GET /metrics`: off by default, on the API's port with `METRICS=on` or apart on
//! `METRICS_ADDR`, counting what the service did with labels no client can multiply.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::helpers::*;
use serde_json::json;

/// The samples of a scrape: `name{labels}` → value, as the text format writes them.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            (series.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

fn scrape(app: &TestApp) -> HashMap<String, f64> {
    let response = app.get("/metrics", &[]);
    assert_eq!(response.status, 200, "{}", response.text);
    samples(&response.text)
}

fn scrape_at(addr: SocketAddr, path: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    std::io::Write::write_all(&mut stream, request.as_bytes()).expect("write");
    let response = read_response(&mut stream).expect("an answer");
    (
        response.status,
        String::from_utf8(response.body).expect("utf-8"),
    )
}

fn value(samples: &HashMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no {series} in {samples:#?}"))
}

#[test]
fn metrics_are_not_served_unless_asked_for() {
    let app = spawn_app();
    let response = app.get("/metrics", &[]);
    assert_eq!(response.status, 404);
    assert_eq!(response.json, json!({"detail": "Not Found"}));
}

#[test]
fn requests_are_counted_by_route_pattern_method_and_status() {
    let app = spawn_app_with(&[("METRICS", "on")]);
    app.get("/health", &[]);
    app.get("/health", &[]);
    app.get("/no/such/path", &[]);
    let token = app.token_for_new_user("ada@example.com", "correct horse");
    let session = "c2Vzc2lvbi1pZC1ub3QtdGhlcmU";
    let ended = app.call(
        "DELETE",
        &format!("/auth/sessions/{session}"),
        Some(&token),
        None,
    );
    assert_eq!(ended.status, 404);

    let response = app.get("/metrics", &[]);
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let samples = samples(&response.text);
    let requests = |route: &str, method: &str, status: u16| {
        value(
            &samples,
            &format!(
                "backnd_api_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}}"
            ),
        )
    };
    assert_eq!(requests("/health", "GET", 200), 2.0);
    assert_eq!(requests("unmatched", "GET", 404), 1.0);
    assert_eq!(requests("/auth/register", "POST", 201), 1.0);
    assert_eq!(requests("/auth/login", "POST", 200), 1.0);
    // The route's pattern, never the id a client put in the path.
    assert_eq!(requests("/auth/sessions/{id}", "DELETE", 404), 1.0);
    assert!(!response.text.contains(session));
    assert!(!response.text.contains("/no/such/path"));

    let health = "backnd_api_http_request_duration_seconds";
    assert_eq!(
        value(&samples, &format!("{health}_count{{route=\"/health\"}}")),
        2.0
    );
    assert_eq!(
        value(
            &samples,
            &format!("{health}_bucket{{route=\"/health\",le=\"+Inf\"}}")
        ),
        2.0
    );
    // Logins and registrations hash, and every request here used the database pool.
    assert!(value(&samples, "backnd_api_hash_queue_wait_seconds_count") >= 2.0);
    assert!(value(&samples, "backnd_api_db_pool_wait_seconds_count") >= 3.0);
    assert!(value(&samples, "backnd_api_db_pool_max_connections") >= 1.0);
    assert_eq!(value(&samples, "backnd_api_hash_queue_jobs"), 0.0);
    assert!(value(&samples, "backnd_api_http_connections") >= 1.0);
    let started = value(&samples, "process_start_time_seconds");
    let now = unix_now() as f64;
    assert!(started <= now + 1.0 && started > now - 3600.0, "{started}");
    assert!(value(&samples, "process_open_fds") > 0.0);

    // The scrape itself is counted, on the next one.
    let again = scrape(&app);
    assert_eq!(
        value(
            &again,
            "backnd_api_http_requests_total{route=\"/metrics\",method=\"GET\",status=\"200\"}"
        ),
        1.0
    );
}

#[test]
fn logins_and_registrations_are_counted_by_outcome() {
    let app = spawn_app_with(&[("METRICS", "on"), ("LOGIN_LOCK_AFTER", "1")]);
    app.register_user("ada@example.com", "correct horse");
    assert_eq!(
        app.register(&valid_registration("ADA@example.com", "another one"))
            .status,
        409
    );
    assert_eq!(app.register(&json!({"email": "nope"})).status, 422);
    assert_eq!(app.login("ada@example.com", "correct horse").status, 200);
    assert_eq!(app.login("ada@example.com", "wrong password").status, 401);
    // One failure locks this address out of the account for a while.
    assert_eq!(app.login("ada@example.com", "wrong password").status, 429);

    let samples = scrape(&app);
    for (series, expected) in [
        ("backnd_api_logins_total{outcome=\"success\"}", 1.0),
        ("backnd_api_logins_total{outcome=\"bad_credentials\"}", 1.0),
        ("backnd_api_logins_total{outcome=\"throttled\"}", 1.0),
        ("backnd_api_logins_total{outcome=\"overloaded\"}", 0.0),
        ("backnd_api_registrations_total{outcome=\"success\"}", 1.0),
        ("backnd_api_registrations_total{outcome=\"conflict\"}", 1.0),
        ("backnd_api_registrations_total{outcome=\"invalid\"}", 1.0),
    ] {
        assert_eq!(value(&samples, series), expected, "{series}");
    }
}

#[test]
fn logins_refused_for_a_full_hashing_queue_count_as_overloaded() {
    let app = spawn_app_with(&[
        ("METRICS", "on"),
        ("HASH_THREADS", "1"),
        ("HASH_QUEUE_SIZE", "0"),
        ("RATE_LIMITS", "off"),
    ]);
    app.register_user("ada@example.com", "correct horse");
    // Re-hash at a cost that takes a while, so that logins overlap.
    let slow = spawn_instance_sharing(
        &app,
        &[
            ("METRICS", "on"),
            ("HASH_THREADS", "1"),
            ("HASH_QUEUE_SIZE", "0"),
            ("RATE_LIMITS", "off"),
            ("BCRYPT_COST", &cost_taking(0.3)),
        ],
    );
    assert_eq!(slow.login("ada@example.com", "correct horse").status, 200);
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let logins: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| slow.login("ada@example.com", "correct horse").status))
            .collect();
        logins
            .into_iter()
            .map(|l| l.join().expect("login"))
            .collect()
    });
    let refused = statuses.iter().filter(|s| **s == 503).count();
    assert!(refused >= 1, "{statuses:?}");
    let samples = scrape(&slow);
    assert_eq!(
        value(&samples, "backnd_api_logins_total{outcome=\"overloaded\"}"),
        refused as f64
    );
    assert_eq!(
        value(&samples, "backnd_api_logins_total{outcome=\"success\"}"),
        (1 + statuses.iter().filter(|s| **s == 200).count()) as f64
    );
}

#[test]
fn metrics_addr_serves_the_figures_apart_from_the_api() {
    let app = spawn_app_with(&[("METRICS_ADDR", "127.0.0.1:0")]);
    let metrics = app.metrics_addr.expect("a metrics listener");
    assert_ne!(metrics.port(), app.addr.port());
    app.get("/health", &[]);

    // Not on the API's port: METRICS is off.
    assert_eq!(app.get("/metrics", &[]).status, 404);
    let (status, text) = scrape_at(metrics, "/metrics");
    assert_eq!(status, 200);
    let samples = samples(&text);
    assert_eq!(
        value(
            &samples,
            "backnd_api_http_requests_total{route=\"/health\",method=\"GET\",status=\"200\"}"
        ),
        1.0
    );
    // The metrics listener serves nothing else, and its own requests are not the API's.
    assert_eq!(scrape_at(metrics, "/health").0, 404);
    assert_eq!(scrape_at(metrics, "/auth/login").0, 404);
    let (_, text) = scrape_at(metrics, "/metrics");
    assert!(!text.contains("route=\"/metrics\""), "{text}");
}

#[test]
fn a_metrics_addr_that_cannot_be_bound_stops_start_up() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("addr").to_string();
    let fresh = FreshDb::new();
    let app_env: HashMap<String, String> = [
        ("DATABASE_URL", fresh.database_url.as_str()),
        ("PORT", "0"),
        ("METRICS_ADDR", address.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config =
        backnd_api::Config::from_lookup(|name| app_env.get(name).cloned()).expect("config");
    let err = backnd_api::spawn(&config).err().expect("start-up fails");
    assert!(err.to_string().contains(&address), "{err}");
}

#[test]
fn clients_cannot_multiply_the_series() {
    let app = spawn_app_with(&[("METRICS", "on")]);
    for i in 0..40 {
        let request =
            format!("BREW{i} /pot/{i} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        let answer = app.raw_exchange(request.as_bytes(), Duration::from_secs(5));
        assert!(raw_status(&answer).is_some(), "{answer}");
    }
    let response = app.get("/metrics", &[]);
    let series = response
        .text
        .lines()
        .filter(|line| line.starts_with("backnd_api_http_requests_total{"))
        .count();
    // /metrics is not counted yet; the 40 odd requests share one or two series.
    assert!(series <= 2, "{}", response.text);
    assert!(!response.text.contains("BREW"));
    assert!(!response.text.contains("/pot/"));
}
