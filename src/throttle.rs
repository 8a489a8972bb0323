//! Throttled guessing and sign-ups: how often a client may fail to log in, how many failed
//! password checks an account allows an hour, and how often a client may register.
//!
//! Three counters stand between a login and bcrypt, all checked before the hash is queued, so
//! a refused attempt costs no hashing at all:
//!
//! 1. **Per account and client** (in memory, per instance): after `LOGIN_LOCK_AFTER` failures
//!    from one address on one account, that pair is locked out for `LOGIN_LOCK_SECONDS`,
//!    doubling with every further failure up to `LOGIN_LOCK_MAX_SECONDS`. A success clears it.
//!    This is the fast, growing delay an attacker at one address meets; it never touches the
//!    owner at another address. Failures are forgiven one per `LOGIN_FAILURE_WINDOW` /
//!    `LOGIN_LOCK_AFTER` (12 minutes by default), so occasional typos never add up.
//! 2. **Per client** (in memory, per instance): after `LOGIN_LOCK_AFTER_PER_CLIENT` failures
//!    from one address over any accounts, the same growing lock for that address, so that one
//!    address spraying many accounts is slowed too.
//! 3. **Per account** (in the database, shared by every instance): at most
//!    `LOGIN_FAILURES_PER_ACCOUNT` failed verifications in any `LOGIN_FAILURE_WINDOW` (100 an
//!    hour by default, OWASP ASVS 4.0 2.2.1). Each attempt reserves one failure *before* its
//!    hash runs and gives it back on success, so even concurrent attempts on many instances can
//!    never run more failed verifications than that. Only many addresses together (a botnet)
//!    can reach this budget, and a budget spent would lock the owner out; so the last tenth of
//!    it is kept for addresses that have logged in to this account successfully before (its
//!    "known" addresses, also in the database). An attacker from new addresses is refused at
//!    90 failures, while the owner from a known address can still log in.
//!
//! Unknown emails are counted exactly as known ones, under the email's identity
//! (`fields::email_key`, so look-alike spellings share one count), so a 429 says nothing about
//! whether an account exists. Registrations are limited per client
//! address: `REGISTRATIONS_PER_CLIENT` in any `REGISTRATION_WINDOW` (in memory, per instance).
//!
//! `RATE_LIMITS=off` turns all of it off (and the hashing pool's per-client share).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::client::limit_key;
use crate::db::{millis, unix_millis, Db, LoginBudget};
use crate::error::ApiError;

/// What a throttled login is told: the same for every reason, so it reveals nothing.
const TOO_MANY_LOGINS: &str = "Too many failed logins, try again later";
/// What a throttled registration is told.
const TOO_MANY_REGISTRATIONS: &str = "Too many registrations from this address, try again later";

/// Entries kept in memory before idle ones are pruned.
const PRUNE_AT: usize = 10_000;

/// The configured limits (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// `RATE_LIMITS`: false turns every limit off.
    pub enabled: bool,
    /// Failures from one address on one account before it is locked out.
    pub login_lock_after: u32,
    /// Failures from one address over all accounts before the address is locked out.
    pub login_lock_after_per_client: u32,
    /// The first lock's length; each further failure doubles it.
    pub login_lock: Duration,
    /// The longest lock.
    pub login_lock_max: Duration,
    /// Failed verifications one account allows per window, over every instance.
    pub login_failures_per_account: u32,
    /// The window the account's failures are counted over; lock-out failures are forgiven one
    /// per window divided by their threshold.
    pub login_failure_window: Duration,
    /// Registrations one address may attempt per window.
    pub registrations_per_client: u32,
    /// The window registrations are counted over.
    pub registration_window: Duration,
}

impl Limits {
    /// Every limit off (`RATE_LIMITS=off`).
    pub fn off() -> Limits {
        Limits {
            enabled: false,
            login_lock_after: u32::MAX,
            login_lock_after_per_client: u32::MAX,
            login_lock: Duration::ZERO,
            login_lock_max: Duration::ZERO,
            login_failures_per_account: u32::MAX,
            login_failure_window: Duration::ZERO,
            registrations_per_client: u32::MAX,
            registration_window: Duration::ZERO,
        }
    }
}

/// The in-memory counters and the limits; one per server, shared by the handlers.
pub struct Throttle {
    limits: Limits,
    lockouts: Mutex<Lockouts>,
    registrations: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// One account (its normalised email) from one client.
    Pair(String, IpAddr),
    /// One client over every account.
    Client(IpAddr),
}

#[derive(Default)]
struct Lockouts {
    entries: HashMap<Key, Lockout>,
    prune_at: usize,
}

struct Lockout {
    /// Failures not yet forgiven.
    failures: u32,
    /// Attempts that passed the check and are being verified now.
    in_flight: u32,
    locked_until: Option<Instant>,
    /// From when the next failure's forgiveness is counted.
    forgiven_at: Instant,
}

impl Lockout {
    /// Forgives one failure per `interval` (the window divided by the threshold) since the
    /// last: failures spread thinner than the threshold per window, such as the typos of many
    /// people behind one busy NAT, never add up to a lock, while a client that keeps failing
    /// faster stays locked, longer each time.
    fn forgive(&mut self, now: Instant, interval: Duration) {
        let elapsed = now.saturating_duration_since(self.forgiven_at);
        let forgiven = elapsed.as_nanos() / interval.as_nanos().max(1);
        let forgiven = u32::try_from(forgiven)
            .unwrap_or(u32::MAX)
            .min(self.failures);
        self.failures -= forgiven;
        self.forgiven_at = if self.failures == 0 {
            now
        } else {
            self.forgiven_at + interval.saturating_mul(forgiven)
        };
    }

    fn locked(&self, now: Instant) -> bool {
        self.locked_until.is_some_and(|until| until > now)
    }
}

impl Throttle {
    /// Creates the counters for `limits`.
    pub fn new(limits: Limits) -> Throttle {
        Throttle {
            limits,
            lockouts: Mutex::new(Lockouts {
                entries: HashMap::new(),
                prune_at: PRUNE_AT,
            }),
            registrations: Mutex::new(HashMap::new()),
        }
    }

    /// Lets a login for `account` (the normalised email) from `client` go on to the hashing
    /// queue, or refuses it with 429 and `Retry-After` when the pair or the client is locked
    /// out. On the hashing thread the attempt then [reserves](LoginAttempt::reserve) its place
    /// in the account's budget before bcrypt runs. The attempt must be told how it ended
    /// ([`LoginAttempt::failed`] or [`LoginAttempt::succeeded`]); dropped untold (never
    /// verified: the hashing queue was full, say) it gives everything back.
    pub fn begin_login(
        self: &Arc<Self>,
        db: &Db,
        account: &str,
        client: IpAddr,
    ) -> Result<LoginAttempt, ApiError> {
        if !self.limits.enabled {
            return Ok(LoginAttempt::unthrottled());
        }
        let now = Instant::now();
        let pair = Key::Pair(account.to_owned(), limit_key(client));
        let whole_client = Key::Client(limit_key(client));
        {
            let mut lockouts = self.lockouts();
            let wait = [
                (&pair, self.limits.login_lock_after),
                (&whole_client, self.limits.login_lock_after_per_client),
            ]
            .into_iter()
            .filter_map(|(key, after)| self.lock_remaining(&mut lockouts, key, after, now))
            .max();
            if let Some(wait) = wait {
                return Err(too_many(TOO_MANY_LOGINS, wait));
            }
            for key in [&pair, &whole_client] {
                lockouts.entry(key.clone(), now).in_flight += 1;
            }
        }
        // From here on, dropping the attempt gives back what it took.
        Ok(LoginAttempt {
            throttle: Some(self.clone()),
            db: Some(db.clone()),
            pair,
            whole_client,
            account: account.to_owned(),
            // Known addresses by /64 too: an IPv6 host changes addresses within its /64.
            client: limit_key(client).to_string(),
            reservation: None,
        })
    }

    /// Counts a registration from `client`, or refuses it with 429 and `Retry-After` when the
    /// address has made `REGISTRATIONS_PER_CLIENT` in the last `REGISTRATION_WINDOW`.
    pub fn begin_registration(&self, client: IpAddr) -> Result<(), ApiError> {
        if !self.limits.enabled {
            return Ok(());
        }
        let now = Instant::now();
        let window = self.limits.registration_window;
        let mut registrations = lock(&self.registrations);
        if registrations.len() >= PRUNE_AT {
            registrations.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|last| now.duration_since(*last) < window)
            });
        }
        let times = registrations.entry(limit_key(client)).or_default();
        while times
            .front()
            .is_some_and(|first| now.duration_since(*first) >= window)
        {
            times.pop_front();
        }
        let limit = self.limits.registrations_per_client as usize;
        if times.len() >= limit {
            let oldest = times.front().copied().unwrap_or(now);
            return Err(too_many(
                TOO_MANY_REGISTRATIONS,
                (oldest + window).saturating_duration_since(now),
            ));
        }
        times.push_back(now);
        Ok(())
    }

    /// How long `key` is still locked out, if it is.
    ///
    /// Attempts being verified count as failures to come, so that a burst sent at once cannot
    /// slip past a lock that its first replies would set: for one account from one address
    /// always (no one logs in to one account five times at once), for a whole address only
    /// once it has failed (many people behind one NAT may log in together).
    fn lock_remaining(
        &self,
        lockouts: &mut Lockouts,
        key: &Key,
        after: u32,
        now: Instant,
    ) -> Option<Duration> {
        let entry = lockouts.entries.get_mut(key)?;
        entry.forgive(now, self.forgiveness(after));
        if let Some(until) = entry.locked_until.filter(|until| *until > now) {
            return Some(until - now);
        }
        if entry.failures == 0 && entry.in_flight == 0 {
            lockouts.entries.remove(key);
            return None;
        }
        let counts_in_flight = matches!(key, Key::Pair(..)) || entry.failures > 0;
        (counts_in_flight
            && entry.in_flight > 0
            && entry.failures.saturating_add(entry.in_flight) >= after)
            .then_some(Duration::from_secs(1))
    }

    /// How long it takes to forgive one failure of a key locked after `after`.
    fn forgiveness(&self, after: u32) -> Duration {
        self.limits.login_failure_window / after.max(1)
    }

    /// Records how an attempt on `key` (locked after `after` failures) ended: `failed`, or
    /// not, in which case `clear` forgets the key's failures (a success on the pair).
    fn settle(&self, key: &Key, after: u32, failed: bool, clear: bool) {
        let now = Instant::now();
        let mut lockouts = self.lockouts();
        let Some(entry) = lockouts.entries.get_mut(key) else {
            return;
        };
        entry.in_flight = entry.in_flight.saturating_sub(1);
        entry.forgive(now, self.forgiveness(after));
        if failed {
            entry.failures = entry.failures.saturating_add(1);
            if entry.failures >= after {
                let doublings = (entry.failures - after).min(30);
                let lock = self
                    .limits
                    .login_lock
                    .saturating_mul(1 << doublings)
                    .min(self.limits.login_lock_max);
                entry.locked_until = Some(now + lock);
            }
        } else if entry.in_flight == 0 && (clear || (entry.failures == 0 && !entry.locked(now))) {
            // Nothing left to remember: keeps the map to the clients that failed lately.
            lockouts.entries.remove(key);
        }
    }

    fn lockouts(&self) -> MutexGuard<'_, Lockouts> {
        lock(&self.lockouts)
    }
}

impl Lockouts {
    /// The entry for `key`, created if new; idle entries are pruned when the map grows.
    fn entry(&mut self, key: Key, now: Instant) -> &mut Lockout {
        if self.entries.len() >= self.prune_at {
            self.entries
                .retain(|_, e| e.in_flight > 0 || e.locked_until.is_some_and(|until| until > now));
            self.prune_at = (self.entries.len() * 2).max(PRUNE_AT);
        }
        self.entries.entry(key).or_insert(Lockout {
            failures: 0,
            in_flight: 0,
            locked_until: None,
            forgiven_at: now,
        })
    }
}

/// A login let through to bcrypt: holds its place in the counters until told how it ended.
pub struct LoginAttempt {
    throttle: Option<Arc<Throttle>>,
    db: Option<Db>,
    pair: Key,
    whole_client: Key,
    account: String,
    client: String,
    /// The failure reserved in the account's budget, given back on success.
    reservation: Option<i64>,
}

impl LoginAttempt {
    /// Reserves this attempt's failure in the account's budget, shared by every instance, just
    /// before its password is checked; refuses it with 429 when the budget is spent.
    ///
    /// Called on the hashing thread rather than before queueing, so that a request turned away
    /// by the queue (full, or its client's share taken) never writes to the database: a flood
    /// costs no more than its share of the pool.
    pub fn reserve(&mut self) -> Result<(), ApiError> {
        let (Some(throttle), Some(db)) = (&self.throttle, &self.db) else {
            return Ok(());
        };
        let limit = throttle.limits.login_failures_per_account;
        match db.reserve_login_failure(
            &self.account,
            &self.client,
            unix_millis(),
            millis(throttle.limits.login_failure_window),
            limit,
            limit / 10,
        )? {
            LoginBudget::Reserved(id) => {
                self.reservation = Some(id);
                Ok(())
            }
            LoginBudget::Spent { retry_after_ms } => {
                log::debug!("login refused: the failed-login budget of its email is spent");
                let wait = Duration::from_millis(u64::try_from(retry_after_ms).unwrap_or(0));
                Err(too_many(TOO_MANY_LOGINS, wait))
            }
        }
    }

    fn unthrottled() -> LoginAttempt {
        LoginAttempt {
            throttle: None,
            db: None,
            pair: Key::Client(IpAddr::from([0, 0, 0, 0])),
            whole_client: Key::Client(IpAddr::from([0, 0, 0, 0])),
            account: String::new(),
            client: String::new(),
            reservation: None,
        }
    }

    /// The password did not match (or the account does not exist): the failure counts
    /// everywhere, and the reserved failure stays spent.
    pub fn failed(mut self) {
        if let Some(throttle) = self.throttle.take() {
            let limits = &throttle.limits;
            throttle.settle(&self.pair, limits.login_lock_after, true, false);
            let after = limits.login_lock_after_per_client;
            throttle.settle(&self.whole_client, after, true, false);
            self.reservation = None;
        }
    }

    /// The password matched: the pair's failures are cleared, the reserved failure given
    /// back, and the address remembered as one the owner uses.
    pub fn succeeded(mut self) {
        if let Some(throttle) = self.throttle.take() {
            let limits = &throttle.limits;
            throttle.settle(&self.pair, limits.login_lock_after, false, true);
            let after = limits.login_lock_after_per_client;
            throttle.settle(&self.whole_client, after, false, false);
            let reservation = self.reservation.take();
            let recorded = self.db.as_ref().map(|db| {
                db.record_login_success(&self.account, &self.client, reservation, unix_millis())
            });
            if let Some(Err(err)) = recorded {
                log::warn!("could not record a successful login for throttling: {err}");
            }
        }
    }
}

impl Drop for LoginAttempt {
    /// An attempt dropped untold was never verified: it gives back its place.
    fn drop(&mut self) {
        if let Some(throttle) = self.throttle.take() {
            let limits = &throttle.limits;
            throttle.settle(&self.pair, limits.login_lock_after, false, false);
            let after = limits.login_lock_after_per_client;
            throttle.settle(&self.whole_client, after, false, false);
            let released = (self.reservation.take())
                .zip(self.db.as_ref())
                .map(|(id, db)| db.release_login_failure(id));
            if let Some(Err(err)) = released {
                log::warn!("could not give back a reserved login failure: {err}");
            }
        }
    }
}

fn too_many(detail: &'static str, wait: Duration) -> ApiError {
    // Rounded up: a client that waits exactly Retry-After must find the lock gone.
    let seconds = wait.as_millis().div_ceil(1000).max(1);
    ApiError::TooManyRequests {
        detail,
        retry_after: u32::try_from(seconds).unwrap_or(u32::MAX),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Counters are sound whatever panicked while they were held.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lockout(failures: u32, at: Instant) -> Lockout {
        Lockout {
            failures,
            in_flight: 0,
            locked_until: None,
            forgiven_at: at,
        }
    }

    #[test]
    fn one_failure_is_forgiven_per_interval_and_the_rest_of_an_interval_is_kept() {
        let start = Instant::now();
        let minute = Duration::from_secs(60);
        let mut entry = lockout(5, start);
        entry.forgive(start + minute * 2 + minute / 2, minute);
        assert_eq!(entry.failures, 3);
        // The half minute already waited counts toward the next.
        entry.forgive(start + minute * 3, minute);
        assert_eq!(entry.failures, 2);
        entry.forgive(start + minute * 60, minute);
        assert_eq!(entry.failures, 0);
    }

    #[test]
    fn failures_thinner_than_the_threshold_per_window_never_lock() {
        // Threshold 5 an hour: a typo every 13 minutes, forever, never locks.
        let throttle = Throttle::new(Limits {
            enabled: true,
            login_lock_after: 5,
            login_lock_after_per_client: 5,
            login_lock: Duration::from_secs(2),
            login_lock_max: Duration::from_secs(900),
            login_failures_per_account: 100,
            login_failure_window: Duration::from_secs(3600),
            registrations_per_client: 10,
            registration_window: Duration::from_secs(3600),
        });
        let interval = throttle.forgiveness(5);
        assert_eq!(interval, Duration::from_secs(720));
        let start = Instant::now();
        let mut entry = lockout(0, start);
        for i in 1..100u32 {
            entry.forgive(start + Duration::from_secs(780) * i, interval);
            entry.failures += 1;
            assert!(entry.failures < 5, "locked after {i} typos");
        }
    }
}
