//! The database: the user store behind one interface, on SQLite (the default) or PostgreSQL.
//!
//! Handlers never see SQL; they call [`Db`] with plain values and get rows or a typed
//! [`DbError`] back. Each backend keeps its own statements in its own file, and both answer
//! with the same rows and errors, so nothing a client sees can tell which one is behind it.

#[cfg(feature = "postgres")]
mod postgres;
mod sqlite;
pub mod transfer;

use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDateTime, SecondsFormat};

use crate::config::DatabaseConfig;
use crate::metrics::{PoolGauges, PoolStats};
use transfer::{ImportError, RowCounts, Snapshot};

pub use sqlite::backup as backup_sqlite;

/// A failure of a database call, sorted by what the client should be told.
#[derive(Debug)]
pub enum DbError {
    /// The email is already registered: checked, or caught by the email's unique index in a
    /// race. No other constraint failure is this; each backend names the one index that is.
    EmailTaken,
    /// The database cannot be reached or is locked beyond the busy timeout: retrying may work.
    Unavailable(String),
    /// Anything else: a bug, a damaged database, or any constraint failure but the email's
    /// (NOT NULL, CHECK, a trigger, a unique index we did not create).
    Other(String),
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbError::EmailTaken => f.write_str("email already registered"),
            DbError::Unavailable(cause) => write!(f, "database unavailable: {cause}"),
            DbError::Other(cause) => write!(f, "database error: {cause}"),
        }
    }
}

impl std::error::Error for DbError {}

impl From<r2d2::Error> for DbError {
    fn from(err: r2d2::Error) -> DbError {
        DbError::Unavailable(err.to_string())
    }
}

/// A user as stored, with timestamps already rendered as RFC 3339 UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    /// The primary key.
    pub id: i64,
    /// Display name.
    pub name: String,
    /// Phone number, as the user gave it.
    pub phone: String,
    /// Avatar URL, if any.
    pub image_url: Option<String>,
    /// Email address (lower-cased for rows we wrote).
    pub email: String,
    /// bcrypt hash (`$2b$…`).
    pub password_hash: String,
    /// When the row was created, RFC 3339 UTC.
    pub created_at: String,
    /// When the row was last changed, RFC 3339 UTC.
    pub updated_at: String,
}

/// What registering stores: the validated fields and the password already hashed.
#[derive(Debug, Clone)]
pub struct NewUserRow<'a> {
    /// Display name, trimmed.
    pub name: &'a str,
    /// Phone number, trimmed.
    pub phone: &'a str,
    /// Avatar URL, if any.
    pub image_url: Option<&'a str>,
    /// Email address, lower-cased.
    pub email: &'a str,
    /// bcrypt hash of the password.
    pub password_hash: &'a str,
}

/// What `PATCH /auth/me` changes: each field `None` is left as it is.
#[derive(Debug, Clone, Default)]
pub struct UserChanges<'a> {
    /// A new display name.
    pub name: Option<&'a str>,
    /// A new phone number.
    pub phone: Option<&'a str>,
    /// A new avatar URL (`Some(None)` clears it).
    pub image_url: Option<Option<&'a str>>,
    /// A new email address, normalised; its key is stored with it.
    pub email: Option<&'a str>,
}

impl UserChanges<'_> {
    /// Whether nothing would change.
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.phone.is_none()
            && self.image_url.is_none()
            && self.email.is_none()
    }
}

/// The answer of [`Store::reserve_login_failure`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginBudget {
    /// One failure is reserved under this id: release it if the login succeeds.
    Reserved(i64),
    /// The account's budget is spent for this client; the oldest counted failure leaves the
    /// window in this many milliseconds.
    Spent {
        /// Milliseconds until trying again may be let through.
        retry_after_ms: i64,
    },
}

/// What a login stores to open a session (see [`crate::sessions`]).
#[derive(Debug, Clone)]
pub struct NewSession<'a> {
    /// The session's public id.
    pub id: &'a str,
    /// Whose session it is.
    pub user_id: i64,
    /// SHA-256 of the refresh token's family part, which finds the session.
    pub family_hash: &'a str,
    /// SHA-256 of the refresh token's first secret.
    pub token_hash: &'a str,
    /// The client's `User-Agent`, cleaned and cut.
    pub user_agent: Option<&'a str>,
    /// The client's address.
    pub client: &'a str,
    /// Now, Unix milliseconds: created and last used.
    pub now_ms: i64,
    /// When the session ends unless refreshed, Unix milliseconds.
    pub expires_ms: i64,
}

/// What a refresh asks of the store: find the session by `family_hash`, and if `presented` is
/// its current secret, replace it with `new_hash` and extend the session.
#[derive(Debug, Clone)]
pub struct Rotation<'a> {
    /// SHA-256 of the presented token's family part.
    pub family_hash: &'a str,
    /// SHA-256 of the presented token's secret.
    pub presented: &'a str,
    /// SHA-256 of the secret that replaces it.
    pub new_hash: &'a str,
    /// Now, Unix milliseconds.
    pub now_ms: i64,
    /// The session's new expiry, Unix milliseconds.
    pub expires_ms: i64,
    /// How long after a refresh its spent secret counts as a retry, in milliseconds.
    pub grace_ms: i64,
    /// The refreshing client's `User-Agent`, cleaned and cut.
    pub user_agent: Option<&'a str>,
    /// The refreshing client's address.
    pub client: &'a str,
}

/// The answer of [`Store::rotate_refresh_token`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotated {
    /// The token was current: it is spent, and the session (with this id, of this user) goes on
    /// under the new secret.
    Done {
        /// The session's public id.
        session_id: String,
        /// The session's user.
        user: Box<UserRow>,
    },
    /// No live session has this token: unknown, ended, or the secret the last refresh spent
    /// presented again within the grace. Nothing changed.
    Refused,
    /// A spent secret outside the grace: the session (this id, of this user) has been revoked.
    Revoked {
        /// The session's public id.
        session_id: String,
        /// The session's user.
        user_id: i64,
    },
}

/// A live session as `GET /auth/sessions` shows it. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// The public id.
    pub id: String,
    /// When the login that opened it happened.
    pub created_ms: i64,
    /// When it was last opened or refreshed.
    pub last_used_ms: i64,
    /// When it ends unless refreshed.
    pub expires_ms: i64,
    /// The `User-Agent` of its last login or refresh.
    pub user_agent: Option<String>,
    /// The address of its last login or refresh.
    pub client: String,
}

/// How the pool is sized and how long it waits.
#[derive(Debug, Clone, Copy)]
pub struct PoolOptions {
    /// Connections kept at most.
    pub max_connections: u32,
    /// How long to wait for a connection (to the server, or from a busy pool).
    pub connect_timeout: Duration,
}

/// What every backend answers: the user store's operations, with plain values in and rows or a
/// [`DbError`] out. A new query is one method here and its statement in each backend.
pub trait Store: Send + Sync {
    /// Checks that the database answers a query that reads the users table.
    fn ping(&self) -> Result<(), DbError>;

    /// The connection pool at this moment: open, idle and at most (for `/metrics`).
    fn pool_gauges(&self) -> PoolGauges;

    /// Finds the user whose email is `email` under [`crate::fields::email_key`] (NFKC and
    /// full case folding): the holder of its key, or else (a row the FastAPI service wrote
    /// after this instance started, which has no key yet) the lowest id whose email is equal
    /// without regard to case.
    fn find_user_by_email(&self, email: &str) -> Result<Option<UserRow>, DbError>;

    /// Finds a user by id.
    fn find_user_by_id(&self, id: i64) -> Result<Option<UserRow>, DbError>;

    /// Stores a new user and returns the stored row.
    ///
    /// Stores the user's email key in the same transaction. Fails with [`DbError::EmailTaken`]
    /// when an equivalent email (see [`Store::find_user_by_email`]) is registered already,
    /// including when another request (or another instance) registers it at the same moment:
    /// the key's primary key refuses the second.
    fn insert_user(&self, user: &NewUserRow<'_>) -> Result<UserRow, DbError>;

    /// Replaces user `id`'s password hash with `new_hash` if it is still `old_hash`, and tells
    /// whether it did: a compare-and-set, so that a hash upgraded at login never overwrites a
    /// password changed meanwhile by another request or instance.
    ///
    /// `updated_at` is left as it is: the same password stored at another cost is no change the
    /// user made or could see, and moving it would make a login look like an edit of the
    /// account (and show, to anyone reading the user, when the server's cost changed).
    fn update_password_hash(
        &self,
        id: i64,
        old_hash: &str,
        new_hash: &str,
    ) -> Result<bool, DbError>;

    /// Reserves one failed login for `account` (a normalised email, registered or not) before
    /// its password is checked, atomically across every instance on this database.
    ///
    /// Failures older than `window_ms` (before `now_ms`, Unix milliseconds) no longer count.
    /// With `limit` counted, the budget is spent; with `limit - kept_for_known` counted, it is
    /// spent for every `client` that has not logged in to this account successfully before.
    fn reserve_login_failure(
        &self,
        account: &str,
        client: &str,
        now_ms: i64,
        window_ms: i64,
        limit: u32,
        kept_for_known: u32,
    ) -> Result<LoginBudget, DbError>;

    /// Gives back a failure reserved by [`Store::reserve_login_failure`] whose password was
    /// never checked.
    fn release_login_failure(&self, id: i64) -> Result<(), DbError>;

    /// Records a successful login: gives back its reserved failure (if any) and remembers
    /// `client` as one of the account's known addresses.
    fn record_login_success(
        &self,
        account: &str,
        client: &str,
        reservation: Option<i64>,
        now_ms: i64,
    ) -> Result<(), DbError>;

    /// Opens a session. In the same transaction, deletes up to
    /// [`crate::sessions::PRUNED_PER_LOGIN`] sessions past their expiry and as many revoked
    /// more than [`crate::sessions::REVOKED_KEPT_MS`] ago, revokes the user's least recently
    /// used live sessions beyond [`crate::sessions::SESSIONS_PER_USER`] - 1, so that the new one
    /// fits, and deletes the user's revoked sessions beyond the
    /// [`crate::sessions::REVOKED_KEPT_PER_USER`] most recent. Every step reads only the rows
    /// it keeps or removes, through an index, so a login costs the same after a million.
    fn open_session(&self, session: &NewSession<'_>) -> Result<(), DbError>;

    /// The user of a live session (not revoked, not expired at `now_ms`) whose id is `session`
    /// and whose user is `user_id`: one lookup by the session's primary key, joined to the user.
    fn find_session_user(
        &self,
        user_id: i64,
        session: &str,
        now_ms: i64,
    ) -> Result<Option<UserRow>, DbError>;

    /// The user of an access token without a session (the FastAPI service's), unless logging
    /// out of every session has cut such tokens off since `issued_at` (Unix seconds; a token
    /// without `iat` is cut off by any cutoff).
    fn find_user_for_sessionless_token(
        &self,
        user_id: i64,
        issued_at: Option<i64>,
    ) -> Result<Option<UserRow>, DbError>;

    /// Spends a refresh token's secret, atomically: of any number of requests (on any number of
    /// instances) presenting one token, exactly one gets [`Rotated::Done`]. The rule is
    /// [`crate::sessions::Presented::of`], applied while the session's row is held.
    fn rotate_refresh_token(&self, rotation: &Rotation<'_>) -> Result<Rotated, DbError>;

    /// The user's live sessions at `now_ms`, most recently used first.
    fn list_sessions(&self, user_id: i64, now_ms: i64) -> Result<Vec<SessionRow>, DbError>;

    /// Revokes one live session of the user's; `false` when the user has no such session
    /// (another user's, ended, or unknown), so that another user's id looks like no id at all.
    fn revoke_session(&self, user_id: i64, session: &str, now_ms: i64) -> Result<bool, DbError>;

    /// Revokes every live session of the user's but `keep` (if given), and in the same
    /// transaction does what [`Store::cut_off_sessionless_tokens`] does; returns how many
    /// sessions ended.
    fn revoke_sessions(
        &self,
        user_id: i64,
        keep: Option<&str>,
        now_ms: i64,
    ) -> Result<u64, DbError>;

    /// Refuses, from now on, the user's access tokens without a session issued (`iat`) up to
    /// `now_ms`: those [`Store::find_user_for_sessionless_token`] then finds no user for.
    fn cut_off_sessionless_tokens(&self, user_id: i64, now_ms: i64) -> Result<(), DbError>;

    /// Applies `changes` to user `id` in one statement, so that racing edits each land whole,
    /// moving `updated_at` to now; `None` when the user is gone. A new email takes its key in
    /// the same transaction, and fails with [`DbError::EmailTaken`] when another user holds an
    /// equivalent one, also when a registration takes it at the same moment (the check and the
    /// key are serialised with registration's).
    fn update_user(&self, id: i64, changes: &UserChanges<'_>) -> Result<Option<UserRow>, DbError>;

    /// Stores user `id`'s new password hash, moves `updated_at` to now, and in the same
    /// transaction does what [`Store::revoke_sessions`] does with `keep`; `false` when the user
    /// is gone.
    fn change_password(
        &self,
        id: i64,
        new_hash: &str,
        keep: Option<&str>,
        now_ms: i64,
    ) -> Result<bool, DbError>;

    /// Deletes user `id` with everything of theirs: sessions, email key and token cutoff (by
    /// the foreign keys), and the login counts and known addresses of `account` (their email's
    /// key). `false` when the user is gone already.
    fn delete_user(&self, id: i64, account: &str) -> Result<bool, DbError>;

    /// Every user, by id (for `backnd-api user list`).
    fn list_users(&self) -> Result<Vec<UserRow>, DbError>;

    /// How many rows each table of account state holds (see [`transfer`]).
    fn count_rows(&self) -> Result<RowCounts, DbError>;

    /// Reads every row of account state in one read transaction, so that the rows agree with
    /// each other (see [`transfer`]).
    fn export(&self) -> Result<Snapshot, DbError>;

    /// Writes `snapshot` in one transaction, keeping its ids, and moves an id sequence past
    /// the highest id. Refuses with [`ImportError::NotEmpty`] a database holding rows unless
    /// `into_non_empty`, and with [`ImportError::Conflict`] any user whose id or email identity
    /// is here already; either way nothing is written.
    fn import(&self, snapshot: &Snapshot, into_non_empty: bool) -> Result<(), ImportError>;
}

/// How long an address that logged in successfully stays known to its account (90 days).
pub(crate) const KNOWN_CLIENT_MS: i64 = 90 * 24 * 3600 * 1000;

/// One reservation in this many also prunes every account's failures past their window.
pub(crate) const PRUNE_EVERY: i64 = 256;

/// The budget rule both backends apply inside their transaction, given the `count` of failures
/// in the window and the `oldest` of them: spent at `limit`, and for a client that has not
/// logged in to the account before (`is_known`, asked only then) at `limit - kept_for_known`.
/// `None`: a failure may be reserved.
pub(crate) fn spent_budget(
    (count, oldest): (i64, Option<i64>),
    (limit, kept_for_known): (u32, u32),
    (now_ms, window_ms): (i64, i64),
    is_known: impl FnOnce() -> Result<bool, DbError>,
) -> Result<Option<LoginBudget>, DbError> {
    let spent = count >= i64::from(limit)
        || (count >= i64::from(limit.saturating_sub(kept_for_known)) && !is_known()?);
    Ok(spent.then(|| LoginBudget::Spent {
        retry_after_ms: oldest.map_or(0, |at| at + window_ms - now_ms),
    }))
}

/// The pooled user store, on whichever backend `DATABASE_URL` chose. Cloning shares the pool.
#[derive(Clone)]
pub struct Db {
    store: Arc<dyn Store>,
    stats: Arc<PoolStats>,
}

impl Db {
    /// Connects to the configured database and applies its schema (creating what is missing,
    /// touching nothing that exists).
    pub fn open(database: &DatabaseConfig, pool: PoolOptions) -> Result<Db, DbError> {
        let stats = Arc::new(PoolStats::default());
        let events = PoolEvents(stats.clone());
        let store: Arc<dyn Store> = match database {
            DatabaseConfig::Sqlite { path } => {
                Arc::new(sqlite::SqliteDb::open(path, pool, events)?)
            }
            #[cfg(feature = "postgres")]
            DatabaseConfig::Postgres { url } => {
                Arc::new(postgres::PostgresDb::open(url, pool, events)?)
            }
            // The configuration refuses PostgreSQL URLs in a build without it; this is for a
            // `DatabaseConfig` made some other way.
            #[cfg(not(feature = "postgres"))]
            DatabaseConfig::Postgres { .. } => {
                return Err(DbError::Other(
                    "this build has no PostgreSQL support (the `postgres` feature)".to_owned(),
                ))
            }
        };
        Ok(Db { store, stats })
    }

    /// The pool's waits and time-outs since it opened, for `/metrics`.
    pub fn pool_stats(&self) -> &PoolStats {
        &self.stats
    }
}

impl std::ops::Deref for Db {
    type Target = dyn Store;

    fn deref(&self) -> &(dyn Store + 'static) {
        &*self.store
    }
}

/// Either backend's r2d2 pool at this moment, as [`Store::pool_gauges`] reports it.
pub(crate) fn gauges_of<M: r2d2::ManageConnection>(pool: &r2d2::Pool<M>) -> PoolGauges {
    let state = pool.state();
    PoolGauges {
        open: state.connections,
        idle: state.idle_connections,
        max: pool.max_size(),
    }
}

/// What r2d2 tells about checkouts, counted into the pool's [`PoolStats`].
#[derive(Debug, Default)]
pub(crate) struct PoolEvents(Arc<PoolStats>);

impl r2d2::HandleEvent for PoolEvents {
    fn handle_checkout(&self, event: r2d2::event::CheckoutEvent) {
        self.0.waits.observe(event.duration());
    }

    fn handle_timeout(&self, _event: r2d2::event::TimeoutEvent) {
        self.0
            .timeouts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Logs what start-up found when it could not give user `id` its email key because user
/// `owner` (the lower id) holds it: two rows whose emails are one identity under
/// [`crate::fields::email_key`]. Names the ids only, never the emails.
pub(crate) fn warn_key_collision(id: i64, owner: i64) {
    log::warn!(
        "users {owner} and {id} have emails that are the same under Unicode normalisation and \
         case folding; that email now signs in as user {owner} only, and user {id} cannot sign \
         in until one of the two emails is changed"
    );
}

/// Logs a user that start-up could not give an email key because its email has none (empty
/// or blank): such a user cannot sign in, as before.
pub(crate) fn warn_keyless(id: i64) {
    log::warn!("user {id} has an empty email; it has no email key and cannot sign in");
}

/// Milliseconds since the Unix epoch: the clock of what the database shares between instances
/// (failed-login counts, sessions), the same on every instance as far as their clocks agree.
pub fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, millis)
}

/// A duration in whole milliseconds, as the database stores spans; saturating, never negative.
pub fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Renders a stored timestamp (`YYYY-MM-DD HH:MM:SS[.ffffff]`, UTC, as SQLAlchemy and
/// `CURRENT_TIMESTAMP` write it to SQLite, and as the PostgreSQL queries format it) as RFC 3339 UTC, keeping every non-zero fraction digit. Text
/// in any other form is returned as it is rather than lost.
pub(crate) fn to_rfc3339(stored: &str) -> String {
    const FORMATS: [&str; 2] = ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"];
    FORMATS
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(stored.trim(), format).ok())
        .map(|naive| naive.and_utc().to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| stored.to_owned())
}

#[cfg(test)]
mod tests {
    use super::{spent_budget, to_rfc3339, DbError, LoginBudget};

    #[test]
    fn the_budget_is_spent_at_the_limit_and_for_new_clients_at_the_kept_part() {
        let at = |count, known: bool| {
            spent_budget((count, Some(1_000)), (10, 1), (5_000, 60_000), || {
                Ok::<_, DbError>(known)
            })
            .expect("no database here")
        };
        let spent = Some(LoginBudget::Spent {
            retry_after_ms: 56_000,
        });
        assert_eq!(at(8, false), None);
        assert_eq!(at(9, false), spent);
        assert_eq!(at(9, true), None);
        assert_eq!(at(10, true), spent);
    }

    #[test]
    fn sqlalchemy_timestamps_become_rfc3339_utc() {
        assert_eq!(to_rfc3339("2026-11-26 04:02:30"), "2026-11-26T04:02:30Z");
        assert_eq!(
            to_rfc3339("2026-11-26 04:02:30.123456"),
            "2026-11-26T04:02:30.123456Z"
        );
        assert_eq!(to_rfc3339("2026-11-26T04:02:30"), "2026-11-26T04:02:30Z");
    }

    #[test]
    fn unrecognised_timestamps_are_passed_through() {
        assert_eq!(to_rfc3339("yesterday"), "yesterday");
    }
}
