//! The bounded queue in front of the hashing threads, and the deadline it keeps.
//!
//! A request that needs bcrypt waits here for a hashing thread. The queue holds at most
//! `capacity` waiting jobs beyond the threads that are free; more are refused at once. Every job
//! must be answered within `timeout` of joining: one that can no longer *start* in time (its
//! wait so far plus a typical hash would pass the timeout) is taken out and refused, by the
//! hashing thread that reaches it or, while every thread is busy, by a watcher thread, so a
//! client is never left waiting on a queue that cannot serve it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What the queue needs to know of a job.
pub trait Queued {
    /// When the job joined the queue.
    fn queued_at(&self) -> Instant;
}

/// What a hashing thread gets from [`HashQueue::next`].
pub enum Next<J> {
    /// Hash this one.
    Run(J),
    /// This one can no longer be answered in time: refuse it.
    Expired(J),
    /// The queue is closed and empty: the thread ends.
    Closed,
}

struct State<J> {
    jobs: VecDeque<J>,
    /// Hashing threads working on a job (between `next` handing one out and `done`).
    busy: usize,
    closed: bool,
}

/// A bounded FIFO of jobs for the hashing threads, with a deadline per job.
pub struct HashQueue<J> {
    state: Mutex<State<J>>,
    ready: Condvar,
    /// Wakes the watcher early when the queue closes.
    closing: Condvar,
    capacity: usize,
    threads: usize,
    timeout: Duration,
    /// A running average of how long a hash takes, in microseconds (0 until one is measured).
    typical_hash_us: AtomicU64,
}

impl<J: Queued> HashQueue<J> {
    /// Creates a queue for `threads` hashing threads, holding up to `capacity` jobs beyond
    /// those the free threads are about to take, each answered within `timeout`.
    pub fn new(threads: usize, capacity: usize, timeout: Duration) -> HashQueue<J> {
        HashQueue {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                busy: 0,
                closed: false,
            }),
            ready: Condvar::new(),
            closing: Condvar::new(),
            capacity,
            threads,
            timeout,
            typical_hash_us: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<J>> {
        // A panic while holding this lock cannot leave the queue half-changed (every change is
        // one push or pop), so a poisoned lock is still sound to use.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a job, or hands it back when the queue is full or closed.
    pub fn try_push(&self, job: J) -> Result<(), J> {
        let mut state = self.lock();
        let free = self.threads.saturating_sub(state.busy);
        if state.closed || state.jobs.len() >= self.capacity + free {
            return Err(job);
        }
        state.jobs.push_back(job);
        drop(state);
        self.ready.notify_one();
        Ok(())
    }

    /// Blocks until there is a job for a hashing thread, or the queue is closed and drained.
    /// A thread given [`Next::Run`] counts as busy until it calls [`HashQueue::done`].
    pub fn next(&self) -> Next<J> {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.jobs.pop_front() {
                if self.too_late(&job, Instant::now()) {
                    return Next::Expired(job);
                }
                state.busy += 1;
                return Next::Run(job);
            }
            if state.closed {
                return Next::Closed;
            }
            state = self
                .ready
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// Marks the calling thread free again after a job from [`Next::Run`] that took `took`
    /// (which feeds the estimate of when a job must start).
    pub fn done(&self, took: Duration) {
        let mut state = self.lock();
        state.busy = state.busy.saturating_sub(1);
        drop(state);
        let sample = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let old = self.typical_hash_us.load(Ordering::Relaxed);
        // An average over the last few hashes: quick to follow a change in load, steady enough
        // not to swing on one outlier.
        let new = if old == 0 {
            sample
        } else {
            (old * 3 + sample) / 4
        };
        self.typical_hash_us.store(new, Ordering::Relaxed);
    }

    /// Takes out the jobs at the front that can no longer be answered in time, and says how
    /// long until the next one might be (for the watcher's sleep).
    pub fn take_expired(&self) -> (Vec<J>, Duration) {
        let now = Instant::now();
        let mut state = self.lock();
        let mut expired = Vec::new();
        // The queue is in arrival order, so the jobs past their time are all at the front.
        while state
            .jobs
            .front()
            .is_some_and(|job| self.too_late(job, now))
        {
            expired.extend(state.jobs.pop_front());
        }
        let next_check = state
            .jobs
            .front()
            .map(|job| self.latest_start(job).saturating_duration_since(now))
            .unwrap_or(self.timeout)
            .clamp(Duration::from_millis(5), Duration::from_millis(250));
        (expired, next_check)
    }

    /// Closes the queue: nothing more is accepted, and hashing threads end once it is empty.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
        self.closing.notify_all();
    }

    /// Sleeps for `duration`, or less if the queue closes meanwhile.
    pub fn pause(&self, duration: Duration) {
        let state = self.lock();
        if !state.closed {
            let _ = self.closing.wait_timeout(state, duration);
        }
    }

    /// Jobs waiting, and threads working on one, at this moment (for `/metrics`).
    pub fn load(&self) -> (usize, usize) {
        let state = self.lock();
        (state.jobs.len(), state.busy)
    }

    /// Within how long of joining a job's client must be answered.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// True once the queue is closed and every job has been taken.
    pub fn finished(&self) -> bool {
        let state = self.lock();
        state.closed && state.jobs.is_empty()
    }

    /// The last moment the job can start hashing and still be answered within the timeout.
    /// It leaves room for twice the typical hash: under a load that saturates the machine, a
    /// hash's time varies widely from one to the next.
    fn latest_start(&self, job: &J) -> Instant {
        let typical = Duration::from_micros(self.typical_hash_us.load(Ordering::Relaxed));
        job.queued_at() + self.timeout.saturating_sub(typical * 2)
    }

    /// A job that waited is refused once it cannot start in time; one that reaches a hashing
    /// thread without waiting always runs (so the estimate keeps being measured even when a
    /// hash takes longer than the timeout).
    fn too_late(&self, job: &J, now: Instant) -> bool {
        let waited = now.saturating_duration_since(job.queued_at());
        waited > Duration::from_millis(1) && now > self.latest_start(job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Job(Instant);

    impl Queued for Job {
        fn queued_at(&self) -> Instant {
            self.0
        }
    }

    #[test]
    fn a_full_queue_hands_the_job_back() {
        // One free thread and room for two: the fourth job is refused.
        let queue = HashQueue::new(1, 2, Duration::from_secs(10));
        for _ in 0..3 {
            assert!(queue.try_push(Job(Instant::now())).is_ok());
        }
        assert!(queue.try_push(Job(Instant::now())).is_err());
    }

    #[test]
    fn a_zero_capacity_queue_takes_a_job_only_for_a_free_thread() {
        let queue = HashQueue::new(1, 0, Duration::from_secs(10));
        assert!(
            queue.try_push(Job(Instant::now())).is_ok(),
            "the thread is free"
        );
        assert!(
            queue.try_push(Job(Instant::now())).is_err(),
            "it is spoken for"
        );
        assert!(matches!(queue.next(), Next::Run(_)));
        assert!(queue.try_push(Job(Instant::now())).is_err(), "it is busy");
        queue.done(Duration::from_millis(1));
        assert!(
            queue.try_push(Job(Instant::now())).is_ok(),
            "it is free again"
        );
    }

    #[test]
    fn jobs_that_can_no_longer_start_in_time_are_taken_out_in_order() {
        let queue = HashQueue::new(1, 10, Duration::from_millis(100));
        queue.lock().busy = 1; // as if a thread had taken a job
        queue.done(Duration::from_millis(40));
        let now = Instant::now();
        queue.try_push(Job(now - Duration::from_millis(90))).ok();
        queue.try_push(Job(now - Duration::from_millis(30))).ok();
        queue.try_push(Job(now)).ok();
        let (expired, _) = queue.take_expired();
        // 90 and 30 ms waited, plus room for two 40 ms hashes, pass 100 ms; the new one has
        // time.
        assert_eq!(expired.len(), 2);
        assert!(matches!(queue.next(), Next::Run(_)));
    }

    #[test]
    fn a_closed_queue_drains_then_ends() {
        let queue = HashQueue::new(1, 4, Duration::from_secs(10));
        queue.try_push(Job(Instant::now())).ok();
        queue.close();
        assert!(queue.try_push(Job(Instant::now())).is_err());
        assert!(matches!(queue.next(), Next::Run(_)));
        assert!(matches!(queue.next(), Next::Closed));
    }
}
