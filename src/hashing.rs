//! The hashing pool: its bounded queue, its threads, the watcher that keeps each request's
//! deadline, and the claim that decides who answers a request.
//!
//! bcrypt (a quarter of a second of a core at cost 12) runs here, on one thread per core at a
//! lower priority behind a bounded queue, so logins in flight never hold up the connection
//! threads that answer `/health` and `/auth/me`. Work is handed over with [`HashPool::submit`]
//! together with a way to answer its client, and the pool answers that client exactly once:
//! with the work's response, with 503 at once when the queue is full, or with 503 as soon as it
//! can no longer be answered within `HASH_QUEUE_TIMEOUT`. The pool knows nothing of HTTP
//! connections or the access log; the caller's `answer` does.
//!
//! So that one client flooding logins cannot take the whole queue, each client (its address,
//! as `client::limit_key` counts it) may hold at most `HASH_JOBS_PER_CLIENT` jobs queued or
//! running; past that its new work is answered 503 at once, while other clients still queue.

mod queue;

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{ApiError, Result};
use crate::http::ApiResponse;
use crate::metrics::{HashGauges, Histogram};
use crate::state::AppState;
use queue::{HashQueue, Next, Queued};

/// How much before its `HASH_QUEUE_TIMEOUT` a running hash's client is answered 503, so that
/// waking the watcher and writing the answer still land within the timeout on a busy machine.
const ANSWER_MARGIN: Duration = Duration::from_millis(50);

/// Work a handler hands back to run off the request workers: it owns everything it needs.
pub type Deferred = Box<dyn FnOnce(&AppState, &dyn Claim) -> Result<Hashed> + Send>;

/// What deferred work hands back once its hash is done.
pub enum Hashed {
    /// The answer.
    Answer(ApiResponse),
    /// The rest of the work, such as storing what the hash decided: run on the request's own
    /// connection thread (under a worker permit), so that a hashing thread never waits on the
    /// disk while a hash could run. It runs only if the pool claimed the client's answer, so
    /// never for a client already told 503.
    Finish(Finish),
}

/// The part of deferred work that runs after its hash, off the hashing threads.
pub type Finish = Box<dyn FnOnce(&AppState) -> Result<ApiResponse> + Send>;

/// Held by deferred work so it can make sure its client is still waiting.
///
/// A request that outlives `HASH_QUEUE_TIMEOUT` is answered 503 while its hash may still be
/// running; work with a side effect on the hashing thread (replacing an outdated hash) must
/// claim the request first, so that a client told 503 is never changed behind its back. A
/// [`Hashed::Finish`] needs no claim: the pool claims before handing it over.
pub trait Claim {
    /// Takes the request for this work: true if the client is still waiting (and will now get
    /// this work's answer), false if it has already been answered 503.
    fn claim(&self) -> bool;

    /// How long the client may still be answered before it is told 503: work that could do
    /// something optional (replace an outdated hash) can tell whether it has the time.
    fn time_left(&self) -> Duration;
}

/// Hands the outcome of submitted work to whoever answers its client.
type Answer = Box<dyn FnOnce(Hashed) + Send>;

/// The client's answer, until someone takes it: the hashing thread, or the deadline watcher.
/// Whoever takes it answers, so the client is answered exactly once.
type Slot = Arc<Mutex<Option<Answer>>>;

fn take(slot: &Slot) -> Option<Answer> {
    // Only `take` changes the slot, so a poisoned lock still holds a sound value.
    slot.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// Jobs queued or running per client, and the signal that one of them is gone.
#[derive(Default)]
struct SharesInner {
    held: Mutex<HashMap<IpAddr, usize>>,
    released: Condvar,
}

type Shares = Arc<SharesInner>;

/// How long a client holding its whole share waits for one of its own jobs to finish before
/// it is answered 503. Waiting (on its connection's thread, holding no worker) rather than
/// refusing at once is what keeps a flood cheap: a client hammering the pool gets one answer
/// per job of its own that finishes, instead of tens of thousands of refusals a second that
/// would take the CPU from the hashing threads.
const SHARE_WAIT: Duration = Duration::from_secs(1);

/// One client's place among the jobs queued or running, given back when the job is dropped
/// (done, refused or expired).
struct Share {
    shares: Shares,
    client: IpAddr,
}

impl Share {
    /// Takes a place for `client` once it holds fewer than `cap`, waiting up to `wait` for one
    /// of its jobs to end; `None` if none did.
    fn take(shares: &Shares, client: IpAddr, cap: usize, wait: Duration) -> Option<Share> {
        let deadline = Instant::now() + wait;
        // Counts are sound whatever panicked while the lock was held.
        let mut held = shares.held.lock().unwrap_or_else(|p| p.into_inner());
        while held.get(&client).is_some_and(|count| *count >= cap) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            held = shares
                .released
                .wait_timeout(held, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *held.entry(client).or_insert(0) += 1;
        Some(Share {
            shares: shares.clone(),
            client,
        })
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut held = self.shares.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = held.get_mut(&self.client) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&self.client);
            }
        }
        drop(held);
        self.shares.released.notify_all();
    }
}

/// Work waiting for, or running on, a hashing thread.
struct Job {
    answer: Slot,
    work: Deferred,
    queued_at: Instant,
    /// The client's place, held until the job is gone.
    _share: Option<Share>,
}

impl Queued for Job {
    fn queued_at(&self) -> Instant {
        self.queued_at
    }
}

/// A job being hashed, and when its client must have been answered.
struct Running {
    deadline: Instant,
    answer: Slot,
}

/// The hashing thread's side of [`Claim`]: taking the answer makes the client this thread's to
/// answer.
struct HasherClaim<'a> {
    slot: &'a Slot,
    claimed: RefCell<Option<Answer>>,
    /// When the watcher answers the client 503 if this thread has not answered it.
    deadline: Instant,
}

impl Claim for HasherClaim<'_> {
    fn claim(&self) -> bool {
        if self.claimed.borrow().is_some() {
            return true;
        }
        let taken = take(self.slot);
        let claimed = taken.is_some();
        *self.claimed.borrow_mut() = taken;
        claimed
    }

    fn time_left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// What the hashing threads and the watcher share.
struct Shared {
    state: Arc<AppState>,
    /// Jobs waiting for a hashing thread.
    queue: HashQueue<Job>,
    /// Jobs being hashed, watched for their deadline.
    running: Mutex<Vec<Running>>,
    /// Jobs queued or running per client, and how many one client may hold (`None`: any).
    shares: Shares,
    per_client: Option<usize>,
    /// How long jobs waited in the queue before a thread took them (for `/metrics`).
    waits: Histogram,
    threads: usize,
}

impl Shared {
    fn running(&self) -> MutexGuard<'_, Vec<Running>> {
        // Entries are only pushed and dropped, so a poisoned lock still holds a sound list.
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The running hashing pool: hashing threads, a bounded queue in front of them and a watcher
/// that answers 503 for whatever can no longer be answered in time. Dropping it shuts it down,
/// as [`HashPool::shutdown`].
pub struct HashPool {
    shared: Arc<Shared>,
    /// The hashing threads and the watcher, until [`HashPool::shutdown`] joins them.
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl HashPool {
    /// Starts `threads` hashing threads (at niceness 10) and the deadline watcher, behind a
    /// queue that holds up to `capacity` jobs beyond those the free threads are about to take,
    /// each answered within `timeout` of being submitted, and at most `per_client` of them
    /// (queued or running) from any one client (`None`: no such limit). The work runs with
    /// `state`.
    ///
    /// `threads` must be at least one: with none, every job would wait out its timeout and be
    /// answered 503. Fails when a thread cannot be started; those already started are then
    /// stopped.
    pub fn start(
        threads: usize,
        capacity: usize,
        timeout: Duration,
        per_client: Option<usize>,
        state: Arc<AppState>,
    ) -> io::Result<HashPool> {
        let pool = HashPool {
            shared: Arc::new(Shared {
                state,
                queue: HashQueue::new(threads, capacity, timeout),
                running: Mutex::new(Vec::new()),
                shares: Arc::default(),
                per_client,
                waits: Histogram::default(),
                threads,
            }),
            threads: Mutex::new(Vec::new()),
        };
        // On an error, dropping `pool` closes the queue and joins the threads already started.
        for i in 0..threads {
            let shared = pool.shared.clone();
            pool.start_thread(format!("hasher-{i}"), move || hasher_loop(&shared))?;
        }
        let shared = pool.shared.clone();
        pool.start_thread("hash-deadlines".to_owned(), move || deadline_loop(&shared))?;
        Ok(pool)
    }

    fn start_thread(&self, name: String, body: impl FnOnce() + Send + 'static) -> io::Result<()> {
        let thread = std::thread::Builder::new().name(name).spawn(body)?;
        self.threads().push(thread);
        Ok(())
    }

    fn threads(&self) -> MutexGuard<'_, Vec<JoinHandle<()>>> {
        // Handles are only pushed and taken, so a poisoned lock still holds a sound list.
        self.threads.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `work` from `client` (`None`: counted under no client) for a hashing thread;
    /// `answer` is called exactly once with what the client gets.
    ///
    /// That is the work's response (its error's response if it fails, 500 if it panics), on
    /// the hashing thread; or 503 when the queue is full or closed, or the client still holds
    /// its whole share after waiting up to a second for one of its jobs to end (so call this
    /// off the request workers), before `submit` returns; or
    /// 503 once the client can no longer be answered within the timeout, on a hashing thread
    /// or the watcher. In that last case the work may still be running: it learns so through
    /// [`Claim`], and its response is dropped.
    pub fn submit(
        &self,
        work: Deferred,
        client: Option<IpAddr>,
        answer: impl FnOnce(Hashed) + Send + 'static,
    ) {
        let share = match (client, self.shared.per_client) {
            (Some(client), Some(cap)) => match Share::take(
                &self.shared.shares,
                client,
                cap,
                SHARE_WAIT.min(self.shared.queue.timeout() / 4),
            ) {
                Some(share) => Some(share),
                None => {
                    // Dropping the work first gives back what it holds (a login's reserved
                    // failure) before the client hears.
                    drop(work);
                    return answer(Hashed::Answer(ApiError::hashing_busy().into_response()));
                }
            },
            _ => None,
        };
        let job = Job {
            answer: Arc::new(Mutex::new(Some(Box::new(answer)))),
            work,
            queued_at: Instant::now(),
            _share: share,
        };
        if let Err(job) = self.shared.queue.try_push(job) {
            if let Some(answer) = take(&job.answer) {
                answer(Hashed::Answer(ApiError::hashing_busy().into_response()));
            }
        }
    }

    /// The queue and the threads at this moment, and how long jobs have waited, for
    /// `/metrics`.
    pub fn gauges(&self) -> (HashGauges, &Histogram) {
        let (queued, running) = self.shared.queue.load();
        let gauges = HashGauges {
            queued,
            running,
            threads: self.shared.threads,
        };
        (gauges, &self.shared.waits)
    }

    /// Closes the queue, so that later work is answered 503, and waits for the hashing threads
    /// to finish the work already queued and for the watcher to end. Calling it again returns
    /// at once.
    pub fn shutdown(&self) {
        // Nothing more can be queued now: the hashers finish the queue and end.
        self.shared.queue.close();
        let threads = std::mem::take(&mut *self.threads());
        for thread in threads {
            let _ = thread.join();
        }
    }
}

impl Drop for HashPool {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn hasher_loop(shared: &Shared) {
    // Hashing is the one slow thing the service does: at a lower priority a worker with a
    // cheap request preempts it at once, yet under a flood of cheap requests it still gets
    // about a tenth of the CPU rather than none.
    if let Err(err) = lower_priority() {
        log::warn!("could not lower the hashing thread's priority: {err:?}");
    }
    loop {
        let job = match shared.queue.next() {
            Next::Run(job) => job,
            Next::Expired(job) => {
                answer_too_late(take(&job.answer));
                continue;
            }
            Next::Closed => return,
        };
        let deadline = job.queued_at + shared.queue.timeout().saturating_sub(ANSWER_MARGIN);
        shared.running().push(Running {
            deadline,
            answer: job.answer.clone(),
        });
        let started = Instant::now();
        shared.waits.observe(started - job.queued_at);
        let claim = HasherClaim {
            slot: &job.answer,
            claimed: RefCell::new(None),
            deadline,
        };
        let work = job.work;
        let outcome = catch_unwind(AssertUnwindSafe(|| work(&shared.state, &claim)))
            .unwrap_or_else(|panic| Err(ApiError::panicked(panic.as_ref())))
            .unwrap_or_else(|err| Hashed::Answer(err.into_response()));
        shared.queue.done(started.elapsed());
        if claim.claim() {
            if let Some(answer) = claim.claimed.into_inner() {
                answer(outcome);
            }
        } else {
            log::debug!("a hash finished after its client was answered 503");
        }
    }
}

/// Answers `503` to every hashing request that can no longer be served within
/// `HASH_QUEUE_TIMEOUT`: queued ones that could not start in time, and running ones whose
/// deadline has come (their hash goes on, but its result is dropped).
fn deadline_loop(shared: &Shared) {
    while !shared.queue.finished() {
        let (expired, mut next_check) = shared.queue.take_expired();
        let mut late: Vec<Answer> = expired.iter().filter_map(|job| take(&job.answer)).collect();
        let now = Instant::now();
        shared.running().retain(|job| {
            if now >= job.deadline {
                late.extend(take(&job.answer));
                return false;
            }
            let waiting = job.answer.lock().map(|s| s.is_some()).unwrap_or(false);
            if waiting {
                next_check = next_check.min(job.deadline - now);
            }
            waiting
        });
        for answer in late {
            answer_too_late(Some(answer));
        }
        shared.queue.pause(next_check);
    }
}

fn answer_too_late(answer: Option<Answer>) {
    if let Some(answer) = answer {
        answer(Hashed::Answer(ApiError::too_late().into_response()));
    }
}

/// Sets the calling thread to niceness 10 (thread-priority spreads its 0..=99 scale over
/// niceness 19..=-20, so 21 lands on 10).
fn lower_priority() -> std::result::Result<(), thread_priority::Error> {
    let niceness_10 = thread_priority::ThreadPriorityValue::try_from(21u8)
        .map_err(|_| thread_priority::Error::Priority("21 is within 0..=99"))?;
    thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Crossplatform(
        niceness_10,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A pool of one hashing thread over a fresh state (kept while the directory is).
    fn pool(capacity: usize, timeout: Duration) -> (HashPool, tempfile::TempDir) {
        let (state, dir) = AppState::for_tests();
        let pool = HashPool::start(1, capacity, timeout, None, Arc::new(state)).expect("threads");
        (pool, dir)
    }

    /// An answer that reports the status it was given (a finish's, once run).
    fn answer(to: &mpsc::Sender<u16>) -> impl FnOnce(Hashed) + Send + 'static {
        let to = to.clone();
        move |outcome| {
            let status = match outcome {
                Hashed::Answer(response) => response.status,
                Hashed::Finish(finish) => {
                    let (state, _dir) = AppState::for_tests();
                    finish(&state).map_or_else(|err| err.status(), |response| response.status)
                }
            };
            to.send(status).expect("the test is listening")
        }
    }

    fn done(status: u16) -> Result<Hashed> {
        Ok(Hashed::Answer(ApiResponse::json(status, &"done")))
    }

    fn ok(status: u16) -> Deferred {
        Box::new(move |_, _| done(status))
    }

    #[test]
    fn work_is_answered_once_with_its_response_and_a_panic_with_a_500() {
        let (pool, _dir) = pool(4, Duration::from_secs(10));
        let (sender, answered) = mpsc::channel();
        pool.submit(ok(201), None, answer(&sender));
        pool.submit(Box::new(|_, _| panic!("boom")), None, answer(&sender));
        drop(sender);
        pool.shutdown();
        assert_eq!(answered.iter().collect::<Vec<_>>(), [201, 500]);
    }

    #[test]
    fn a_finish_is_handed_over_to_run_elsewhere_and_never_for_a_client_told_503() {
        let (pool, _dir) = pool(4, Duration::from_millis(100));
        let (sender, answered) = mpsc::channel();
        let finishing: Deferred = Box::new(|_, _| {
            Ok(Hashed::Finish(Box::new(|_| {
                Ok(ApiResponse::json(201, &"stored"))
            })))
        });
        pool.submit(finishing, None, answer(&sender));
        assert_eq!(answered.recv_timeout(Duration::from_secs(5)), Ok(201));
        let late: Deferred = Box::new(|_, _| {
            std::thread::sleep(Duration::from_millis(300));
            Ok(Hashed::Finish(Box::new(|_| {
                panic!("a finish ran for a client told 503")
            })))
        });
        pool.submit(late, None, answer(&sender));
        drop(sender);
        assert_eq!(answered.recv_timeout(Duration::from_secs(5)), Ok(503));
        pool.shutdown();
        assert_eq!(answered.try_recv(), Err(mpsc::TryRecvError::Disconnected));
    }

    #[test]
    fn work_beyond_a_full_queue_is_answered_503_before_submit_returns() {
        let (pool, _dir) = pool(0, Duration::from_secs(10));
        let (sender, answered) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let blocked: Deferred = Box::new(move |_, _| {
            let _ = released.recv();
            done(200)
        });
        pool.submit(blocked, None, answer(&sender));
        // The one thread is taken, or spoken for: there is no room for this one.
        pool.submit(ok(200), None, answer(&sender));
        assert_eq!(answered.try_recv(), Ok(503));
        release.send(()).expect("the first work is waiting");
        drop(sender);
        pool.shutdown();
        assert_eq!(answered.iter().collect::<Vec<_>>(), [200]);
    }

    #[test]
    fn a_client_holding_its_share_waits_then_gets_503_while_another_client_is_queued() {
        let (state, _dir) = AppState::for_tests();
        let pool = HashPool::start(1, 8, Duration::from_secs(10), Some(1), Arc::new(state))
            .expect("threads");
        let (sender, answered) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let blocked: Deferred = Box::new(move |_, _| {
            let _ = released.recv();
            done(200)
        });
        let flooder = Some(IpAddr::from([127, 0, 0, 1]));
        pool.submit(blocked, flooder, answer(&sender));
        let started = Instant::now();
        pool.submit(ok(201), flooder, answer(&sender));
        assert_eq!(answered.try_recv(), Ok(503), "refused after its wait");
        assert!(started.elapsed() >= Duration::from_millis(900));
        // Another client is queued at once, behind the flooder's one job.
        pool.submit(ok(202), Some(IpAddr::from([127, 0, 0, 2])), answer(&sender));
        assert_eq!(answered.try_recv(), Err(mpsc::TryRecvError::Empty));
        release.send(()).expect("the first work is waiting");
        drop(sender);
        pool.shutdown();
        assert_eq!(answered.iter().collect::<Vec<_>>(), [200, 202]);
    }

    #[test]
    fn work_past_its_deadline_is_answered_503_and_can_no_longer_claim_its_client() {
        let (pool, _dir) = pool(4, Duration::from_millis(100));
        let (sender, answered) = mpsc::channel();
        let (claimed, claim_result) = mpsc::channel();
        let slow: Deferred = Box::new(move |_, claim| {
            // Far past the deadline (the timeout less ANSWER_MARGIN).
            std::thread::sleep(Duration::from_millis(300));
            claimed.send(claim.claim()).expect("the test is listening");
            done(201)
        });
        pool.submit(slow, None, answer(&sender));
        drop(sender);
        assert_eq!(answered.recv_timeout(Duration::from_secs(5)), Ok(503));
        assert_eq!(claim_result.recv_timeout(Duration::from_secs(5)), Ok(false));
        pool.shutdown();
        // Every answer is gone, and none was given a second time.
        assert_eq!(answered.try_recv(), Err(mpsc::TryRecvError::Disconnected));
    }
}
