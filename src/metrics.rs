//! What `GET /metrics` reports, in the Prometheus text exposition format (version 0.0.4).
//!
//! The server counts each answered request here ([`Metrics::record`]); the hashing pool and the
//! database pool keep their own [`Histogram`]s and counters, and [`Metrics::render`] reads
//! them, with the gauges of the moment, from a [`Snapshot`] the server takes at each scrape.
//! Nothing is registered globally: every server has its own, so servers in one process (the
//! tests) never mix their figures.
//!
//! Labels are bounded by construction, so that no client can grow the series without end: a
//! route is a pattern from the route table (or `unmatched`), a method one of the standard ones
//! (or `other`), a status one of those the service answers with.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The route label of a request no route matched (404, 405).
pub const UNMATCHED: &str = "unmatched";

/// Upper bounds, in seconds, of the latency buckets: from a cached answer (well under a
/// millisecond) to a login at a high bcrypt cost that waited for the hashing queue.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram updated without a lock: one counter per bucket, the count and the sum
/// (in microseconds, so that it can be an integer).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    /// Counts one observation of `took`.
    pub fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        // Each observation goes into its own bucket only; rendering adds them up, as the
        // format's buckets are cumulative.
        if let Some(bucket) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_us.fetch_add(micros, Ordering::Relaxed);
    }

    /// How many observations there have been.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let joined = |extra: &str| match (labels.is_empty(), extra.is_empty()) {
            (true, _) => format!("{{{extra}}}"),
            (false, true) => format!("{{{labels}}}"),
            (false, false) => format!("{{{labels},{extra}}}"),
        };
        // Read the count first: buckets filled after it can only make `+Inf` look short,
        // which the format tolerates less than a bucket above the count, so take the larger.
        let mut cumulative = 0;
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{} {cumulative}",
                joined(&format!("le=\"{bound}\""))
            );
        }
        let count = self.count.load(Ordering::Relaxed).max(cumulative);
        let _ = writeln!(out, "{name}_bucket{} {count}", joined("le=\"+Inf\""));
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let plain = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{plain} {sum}");
        let _ = writeln!(out, "{name}_count{plain} {count}");
    }
}

/// The database pool's figures: kept by the backend, read at each scrape.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// How long each checkout of a connection waited.
    pub waits: Histogram,
    /// Checkouts that gave up after `DATABASE_CONNECT_TIMEOUT`.
    pub timeouts: AtomicU64,
}

/// The database pool at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolGauges {
    /// Connections open, idle or in use.
    pub open: u32,
    /// Connections open and idle.
    pub idle: u32,
    /// Connections the pool keeps at most.
    pub max: u32,
}

/// The hashing pool at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct HashGauges {
    /// Jobs waiting for a hashing thread.
    pub queued: usize,
    /// Hashing threads working on a job.
    pub running: usize,
    /// Hashing threads in all.
    pub threads: usize,
}

/// What a scrape reads besides the request counts: the gauges of the moment and the other
/// pools' histograms.
pub struct Snapshot<'a> {
    /// The hashing pool's queue and threads.
    pub hashing: HashGauges,
    /// How long jobs waited in the hashing queue before a thread took them.
    pub hash_waits: &'a Histogram,
    /// The database pool.
    pub pool: PoolGauges,
    /// The database pool's waits and time-outs.
    pub pool_stats: &'a PoolStats,
    /// Connections open now, and at most.
    pub connections: (usize, usize),
}

/// The outcomes logins and registrations are counted under, by the status they were
/// answered with. 503 covers every "not now": the hashing queue full or too slow, or the
/// database not answering.
fn outcome(status: u16) -> &'static str {
    match status {
        200..=299 => "success",
        401 => "bad_credentials",
        409 => "conflict",
        400..=428 => "invalid",
        429 => "throttled",
        503 => "overloaded",
        _ => "error",
    }
}

/// Request counts and latencies of one server, and the rendering of every figure.
pub struct Metrics {
    /// Whether requests are counted: only when `/metrics` is served somewhere, so that a
    /// server without it pays nothing per request.
    enabled: bool,
    /// When the process started, in Unix seconds.
    started: f64,
    /// Requests answered, by (route, method, status).
    requests: Mutex<BTreeMap<(&'static str, &'static str, u16), u64>>,
    /// Latency by route, in the route table's order with [`UNMATCHED`] last.
    latency: Vec<(&'static str, Histogram)>,
}

impl Metrics {
    /// Metrics for a server whose routes are `routes` (patterns); `enabled` says whether
    /// requests are counted at all.
    pub fn new(enabled: bool, routes: impl IntoIterator<Item = &'static str>) -> Metrics {
        let mut latency: Vec<(&'static str, Histogram)> = Vec::new();
        for route in routes.into_iter().chain([UNMATCHED]) {
            if !latency.iter().any(|(known, _)| *known == route) {
                latency.push((route, Histogram::default()));
            }
        }
        Metrics {
            enabled,
            started: process_start_time(),
            requests: Mutex::new(BTreeMap::new()),
            latency,
        }
    }

    /// Counts one answered request: its route pattern (or [`UNMATCHED`]), method, status and
    /// how long it took from its head being read to its answer being handed over.
    pub fn record(&self, route: &'static str, method: &str, status: u16, took: Duration) {
        if !self.enabled {
            return;
        }
        let method = method_label(method);
        *self
            .requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry((route, method, status))
            .or_insert(0) += 1;
        if let Some((_, histogram)) = self.latency.iter().find(|(known, _)| *known == route) {
            histogram.observe(took);
        }
    }

    /// Every figure, in the text exposition format.
    pub fn render(&self, now: &Snapshot<'_>) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let requests = self
            .requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();

        header(
            &mut out,
            "backnd_api_http_requests_total",
            "counter",
            "HTTP requests answered, by route pattern, method and status",
        );
        for ((route, method, status), count) in &requests {
            let _ = writeln!(
                out,
                "backnd_api_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {count}"
            );
        }

        header(
            &mut out,
            "backnd_api_http_request_duration_seconds",
            "histogram",
            "Time from a request's head being read to its answer being handed over, by route",
        );
        for (route, histogram) in &self.latency {
            if histogram.count() > 0 {
                histogram.write(
                    &mut out,
                    "backnd_api_http_request_duration_seconds",
                    &format!("route=\"{route}\""),
                );
            }
        }

        for (name, path, help, outcomes) in [
            (
                "backnd_api_logins_total",
                "/auth/login",
                "Logins by outcome (overloaded: answered 503)",
                &[
                    "success",
                    "bad_credentials",
                    "invalid",
                    "throttled",
                    "overloaded",
                    "error",
                ][..],
            ),
            (
                "backnd_api_registrations_total",
                "/auth/register",
                "Registrations by outcome (overloaded: answered 503)",
                &[
                    "success",
                    "conflict",
                    "invalid",
                    "throttled",
                    "overloaded",
                    "error",
                ][..],
            ),
        ] {
            header(&mut out, name, "counter", help);
            for wanted in outcomes {
                let count: u64 = requests
                    .iter()
                    .filter(|((route, method, status), _)| {
                        *route == path && *method == "POST" && outcome(*status) == *wanted
                    })
                    .map(|(_, count)| count)
                    .sum();
                let _ = writeln!(out, "{name}{{outcome=\"{wanted}\"}} {count}");
            }
        }

        gauge(
            &mut out,
            "backnd_api_hash_queue_jobs",
            "Logins and registrations waiting for a hashing thread",
            now.hashing.queued,
        );
        gauge(
            &mut out,
            "backnd_api_hash_threads_busy",
            "Hashing threads computing a bcrypt hash now",
            now.hashing.running,
        );
        gauge(
            &mut out,
            "backnd_api_hash_threads",
            "Hashing threads (HASH_THREADS)",
            now.hashing.threads,
        );
        header(
            &mut out,
            "backnd_api_hash_queue_wait_seconds",
            "histogram",
            "How long each hashing job waited in the queue before a thread took it",
        );
        now.hash_waits
            .write(&mut out, "backnd_api_hash_queue_wait_seconds", "");

        header(
            &mut out,
            "backnd_api_db_pool_connections",
            "gauge",
            "Database connections open, by state",
        );
        let in_use = now.pool.open.saturating_sub(now.pool.idle);
        let _ = writeln!(
            out,
            "backnd_api_db_pool_connections{{state=\"idle\"}} {}",
            now.pool.idle
        );
        let _ = writeln!(
            out,
            "backnd_api_db_pool_connections{{state=\"in_use\"}} {in_use}"
        );
        gauge(
            &mut out,
            "backnd_api_db_pool_max_connections",
            "Database connections the pool keeps at most",
            now.pool.max,
        );
        header(
            &mut out,
            "backnd_api_db_pool_wait_seconds",
            "histogram",
            "How long each checkout of a database connection waited for one",
        );
        now.pool_stats
            .waits
            .write(&mut out, "backnd_api_db_pool_wait_seconds", "");
        header(
            &mut out,
            "backnd_api_db_pool_timeouts_total",
            "counter",
            "Checkouts that found no database connection within DATABASE_CONNECT_TIMEOUT",
        );
        let _ = writeln!(
            out,
            "backnd_api_db_pool_timeouts_total {}",
            now.pool_stats.timeouts.load(Ordering::Relaxed)
        );

        gauge(
            &mut out,
            "backnd_api_http_connections",
            "HTTP connections open now",
            now.connections.0,
        );
        gauge(
            &mut out,
            "backnd_api_http_max_connections",
            "HTTP connections allowed at once (MAX_CONNECTIONS)",
            now.connections.1,
        );

        header(
            &mut out,
            "backnd_api_build_info",
            "gauge",
            "The running version, as a label; always 1",
        );
        let _ = writeln!(
            out,
            "backnd_api_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        process_metrics(&mut out, self.started);
        out
    }
}

/// The label of a method: the standard ones as they are, anything else `other`.
fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT",
    ];
    KNOWN
        .into_iter()
        .find(|known| *known == method)
        .unwrap_or("other")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    header(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {value}");
}

/// The standard `process_*` figures Prometheus clients export, read from `/proc` (Linux; on
/// other systems only the start time is known).
fn process_metrics(out: &mut String, started: f64) {
    header(
        out,
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch in seconds",
    );
    let _ = writeln!(out, "process_start_time_seconds {started:.3}");
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let kib = |field: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        };
        if let Some(rss) = kib("VmRSS:") {
            gauge(
                out,
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                rss * 1024,
            );
        }
        if let Some(size) = kib("VmSize:") {
            gauge(
                out,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                size * 1024,
            );
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        gauge(
            out,
            "process_open_fds",
            "Number of open file descriptors",
            fds.count(),
        );
    }
    if let Ok((soft, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) {
        gauge(
            out,
            "process_max_fds",
            "Maximum number of open file descriptors",
            soft,
        );
    }
}

/// When this process started, in Unix seconds: the first time it is asked, which the server
/// does at start.
fn process_start_time() -> f64 {
    static STARTED: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *STARTED.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |since| since.as_secs_f64())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot<'a>(waits: &'a Histogram, pool: &'a PoolStats) -> Snapshot<'a> {
        Snapshot {
            hashing: HashGauges::default(),
            hash_waits: waits,
            pool: PoolGauges::default(),
            pool_stats: pool,
            connections: (0, 0),
        }
    }

    #[test]
    fn a_histogram_renders_cumulative_buckets_its_count_and_sum() {
        let histogram = Histogram::default();
        histogram.observe(Duration::from_micros(300));
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_secs(60));
        let mut out = String::new();
        histogram.write(&mut out, "x_seconds", "route=\"/a\"");
        assert!(out.contains("x_seconds_bucket{route=\"/a\",le=\"0.0005\"} 1\n"));
        assert!(out.contains("x_seconds_bucket{route=\"/a\",le=\"0.0025\"} 1\n"));
        assert!(out.contains("x_seconds_bucket{route=\"/a\",le=\"0.005\"} 2\n"));
        assert!(out.contains("x_seconds_bucket{route=\"/a\",le=\"10\"} 2\n"));
        assert!(out.contains("x_seconds_bucket{route=\"/a\",le=\"+Inf\"} 3\n"));
        assert!(out.contains("x_seconds_count{route=\"/a\"} 3\n"));
        assert!(
            out.contains("x_seconds_sum{route=\"/a\"} 60.0033\n"),
            "{out}"
        );
    }

    #[test]
    fn unknown_methods_and_routes_share_one_label_each() {
        let metrics = Metrics::new(true, ["/health"]);
        metrics.record(UNMATCHED, "BREW", 405, Duration::ZERO);
        metrics.record(UNMATCHED, "PURGE", 405, Duration::ZERO);
        metrics.record("/health", "GET", 200, Duration::ZERO);
        let (waits, pool) = (Histogram::default(), PoolStats::default());
        let text = metrics.render(&snapshot(&waits, &pool));
        assert!(text.contains(
            "backnd_api_http_requests_total{route=\"unmatched\",method=\"other\",status=\"405\"} 2\n"
        ));
        assert!(text.contains(
            "backnd_api_http_requests_total{route=\"/health\",method=\"GET\",status=\"200\"} 1\n"
        ));
    }

    #[test]
    fn logins_and_registrations_are_counted_by_outcome() {
        let metrics = Metrics::new(true, ["/auth/login", "/auth/register"]);
        for status in [200, 401, 401, 422, 429, 503] {
            metrics.record("/auth/login", "POST", status, Duration::ZERO);
        }
        metrics.record("/auth/register", "POST", 201, Duration::ZERO);
        metrics.record("/auth/register", "POST", 409, Duration::ZERO);
        let (waits, pool) = (Histogram::default(), PoolStats::default());
        let text = metrics.render(&snapshot(&waits, &pool));
        for line in [
            "backnd_api_logins_total{outcome=\"success\"} 1\n",
            "backnd_api_logins_total{outcome=\"bad_credentials\"} 2\n",
            "backnd_api_logins_total{outcome=\"invalid\"} 1\n",
            "backnd_api_logins_total{outcome=\"throttled\"} 1\n",
            "backnd_api_logins_total{outcome=\"overloaded\"} 1\n",
            "backnd_api_registrations_total{outcome=\"success\"} 1\n",
            "backnd_api_registrations_total{outcome=\"conflict\"} 1\n",
        ] {
            assert!(text.contains(line), "{line}");
        }
    }

    #[test]
    fn a_disabled_server_counts_nothing() {
        let metrics = Metrics::new(false, ["/health"]);
        metrics.record("/health", "GET", 200, Duration::ZERO);
        let (waits, pool) = (Histogram::default(), PoolStats::default());
        let text = metrics.render(&snapshot(&waits, &pool));
        assert!(!text.contains("route=\"/health\""));
    }
}
