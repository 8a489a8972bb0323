//! backnd-api patch: lets a response close its connection cleanly.
//!
//! Upstream tiny_http drops any `Connection` header from a response and, once a response is
//! sent, reads and discards whatever is left of the request body before the next request. For a
//! refused oversized upload that means reading all of it. A response that carries
//! `Connection: close` now shuts the write half after it is flushed (the client sees the answer,
//! then end of stream), tells the body reader not to drain, and leaves the connection's own
//! thread to discard a bounded amount of input before closing, so the kernel does not answer
//! unread bytes with a reset that could destroy the response in flight.

use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::util::refined_tcp_stream::Stream;

/// How long one read may wait while discarding input before a close.
pub(crate) const DISCARD_READ_TIMEOUT: Duration = Duration::from_millis(500);

/// Shared by a connection and its requests.
pub(crate) struct CloseSignal {
    closing: AtomicBool,
    stream: Mutex<Option<Stream>>,
}

impl CloseSignal {
    /// `stream` is another handle on the connection's socket, if one could be had.
    pub(crate) fn new(stream: Option<Stream>) -> CloseSignal {
        CloseSignal {
            closing: AtomicBool::new(false),
            stream: Mutex::new(stream),
        }
    }

    /// Marks the connection as closing and stops writing to it. Call after the response is
    /// flushed.
    pub(crate) fn close_after_response(&self) {
        self.closing.store(true, Ordering::Release);
        if let Ok(mut guard) = self.stream.lock() {
            if let Some(stream) = guard.as_mut() {
                let _ = stream.shutdown(Shutdown::Write);
                let _ = stream.set_read_timeout(Some(DISCARD_READ_TIMEOUT));
            }
        }
    }

    /// True once a response has asked for the connection to close.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }
}
