//! The server's log lines, kept in memory so a test can read what the service logged.
//!
//! The server runs inside the test binary, so its `log` calls reach whichever logger the binary
//! installs. This one keeps the lines of the service's own targets (the library's modules and
//! the access log), not those of the test's HTTP client or of the database drivers.

use std::sync::{Mutex, Once};

use log::{LevelFilter, Log, Metadata, Record};

struct Capture {
    lines: Mutex<Vec<String>>,
}

static CAPTURE: Capture = Capture {
    lines: Mutex::new(Vec::new()),
};

impl Log for Capture {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target().starts_with("backnd_api") || metadata.target() == "access"
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            let line = format!("{} {}: {}", record.level(), record.target(), record.args());
            self.lines
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(line);
        }
    }

    fn flush(&self) {}
}

/// Starts keeping every line the service logs from now on, at every level. Call it before
/// the requests whose lines the test reads; calling it again does nothing.
pub fn start() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        log::set_logger(&CAPTURE).expect("no other logger is installed in the test binary");
        log::set_max_level(LevelFilter::Trace);
    });
}

/// Every line kept so far that contains `needle`, as `LEVEL target: message`.
pub fn lines_containing(needle: &str) -> Vec<String> {
    CAPTURE
        .lines
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .iter()
        .filter(|line| line.contains(needle))
        .cloned()
        .collect()
}
