//! The PostgreSQL backend: its pool, its schema (`schema.postgres.sql`) and its statements.
//!
//! Every session runs in UTC, so `TIMESTAMPTZ` columns (ours) and the `TIMESTAMP WITHOUT TIME
//! ZONE` columns SQLAlchemy created (holding UTC) read back alike. Registration takes a
//! transaction-scoped advisory lock on the email's key, so instances racing for one identity
//! are serialised by the database itself, and the key's primary key would refuse a second
//! holder anyway.

use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, NoTls, Row};
use r2d2::{Pool, PooledConnection};
use r2d2_postgres::PostgresConnectionManager;

use super::spent_budget;
use super::transfer::{ImportError, RowCounts, SessionRecord, Snapshot, UserRecord};
use super::{
    to_rfc3339, warn_key_collision, warn_keyless, DbError, LoginBudget, NewSession, NewUserRow,
    PoolEvents, PoolOptions, Rotated, Rotation, SessionRow, Store, UserChanges, UserRow,
    KNOWN_CLIENT_MS, PRUNE_EVERY,
};
use crate::config::PostgresUrl;
use crate::fields::email_key;
use crate::metrics::PoolGauges;
use crate::sessions::{
    Presented, StoredSecret, PRUNED_PER_LOGIN, REVOKED_KEPT_MS, REVOKED_KEPT_PER_USER,
    SESSIONS_PER_USER,
};

/// Records that the user's (`$1`) access tokens without a session issued up to `$2` (Unix
/// seconds) are refused; a later cutoff never moves back.
const CUT_OFF: &str = "INSERT INTO token_cutoffs (user_id, revoked_before) \
                       VALUES ($1::int8::int4, $2) ON CONFLICT (user_id) \
                       DO UPDATE SET revoked_before = \
                       GREATEST(token_cutoffs.revoked_before, excluded.revoked_before)";

/// The schema, applied at every start without harming existing data.
const SCHEMA: &str = include_str!("../../schema.postgres.sql");

/// Key of the advisory lock held while the schema is applied ("backnd-a" in ASCII), so that
/// instances starting together do not race to create the same table.
const SCHEMA_LOCK: i64 = 0x6261_636b_6e64_2d61;

/// Run on every new connection. `statement_timeout` bounds a query stuck behind a lock, so a
/// request can never hang on the database.
const SESSION_SETUP: &str = "SET TIME ZONE 'UTC'; SET statement_timeout = '15s'";

/// The user columns in the order `user_from_row` reads them, timestamps formatted as the SQLite
/// backend stores them (UTC). A macro so each statement is one literal, built at compile time.
macro_rules! user_columns {
    () => {
        "id::int8, name, phone, image_url, email, password_hash, \
         to_char(created_at::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), \
         to_char(updated_at::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"
    };
}

/// The constraint PostgreSQL names when the email's unique index refuses a row: the one unique
/// violation that means the email is taken. Any other (the primary key, a unique index someone
/// else added) and any other constraint failure (NOT NULL, CHECK) is a failure of ours.
const EMAIL_INDEX_NAMES: [&str; 2] = [
    // `CREATE UNIQUE INDEX ix_users_email ON users (email)`: ours (schema.postgres.sql) and the
    // one SQLAlchemy's `create_all` builds from the FastAPI model (`unique=True, index=True`).
    // A unique index reports its own name as the violated constraint.
    "ix_users_email",
    // `email_keys`' primary key (schema.postgres.sql): an equivalent email (NFKC, case folded)
    // is registered, by a request that passed the check before this one committed.
    "email_keys_pkey",
];

/// The id of the user an email (`$1` its key, `$2` the email) belongs to, or NULL: the key's
/// holder, or else the lowest id whose email equals it without regard to case (a row with no
/// key yet, written by the FastAPI service since this instance started). A key whose user is
/// gone (deleted by the FastAPI service since start) is no holder.
macro_rules! holder_of_key {
    () => {
        "coalesce((SELECT k.user_id FROM email_keys k JOIN users u ON u.id = k.user_id \
                   WHERE k.key = $1), \
         (SELECT id FROM users WHERE lower(email) = lower($2) ORDER BY id LIMIT 1))"
    };
}

impl From<postgres::Error> for DbError {
    fn from(err: postgres::Error) -> DbError {
        match err.code() {
            Some(code)
                if *code == SqlState::UNIQUE_VIOLATION
                    && err
                        .as_db_error()
                        .and_then(|db| db.constraint())
                        .is_some_and(|name| EMAIL_INDEX_NAMES.contains(&name)) =>
            {
                DbError::EmailTaken
            }
            // No SQLSTATE: the connection itself failed. Class 08 is "connection exception";
            // the others are a server shutting down, starting up or full.
            None => DbError::Unavailable(describe(&err)),
            Some(code)
                if code.code().starts_with("08")
                    || [
                        SqlState::ADMIN_SHUTDOWN,
                        SqlState::CRASH_SHUTDOWN,
                        SqlState::CANNOT_CONNECT_NOW,
                        SqlState::TOO_MANY_CONNECTIONS,
                        SqlState::QUERY_CANCELED,
                    ]
                    .contains(code) =>
            {
                DbError::Unavailable(describe(&err))
            }
            Some(_) => DbError::Other(describe(&err)),
        }
    }
}

/// Describes an error for the log. A server's error gives its severity, SQLSTATE and message
/// (which names the constraint, table or column), never its DETAIL: for a constraint failure
/// that quotes the row ("Failing row contains (…)", password hash included) or the key. Any
/// other error gives its chain of causes, as `Display` alone says only "db error" or "error
/// connecting to server".
fn describe(err: &postgres::Error) -> String {
    if let Some(db) = err.as_db_error() {
        return format!("{} {}: {}", db.severity(), db.code().code(), db.message());
    }
    let mut message = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// Prepares each new pooled connection for our queries.
#[derive(Debug)]
struct SessionSetup;

impl r2d2::CustomizeConnection<Client, postgres::Error> for SessionSetup {
    fn on_acquire(&self, conn: &mut Client) -> Result<(), postgres::Error> {
        conn.batch_execute(SESSION_SETUP)
    }
}

/// Logs the pool's failed connection attempts with their cause (r2d2's own handler prints
/// only "error connecting to server", without saying why).
#[derive(Debug)]
struct LogConnectError;

impl r2d2::HandleError<postgres::Error> for LogConnectError {
    fn handle_error(&self, err: postgres::Error) {
        log::warn!("database connection failed: {}", describe(&err));
    }
}

/// A pooled PostgreSQL database.
#[derive(Clone)]
pub struct PostgresDb {
    pool: Pool<PostgresConnectionManager<NoTls>>,
}

impl PostgresDb {
    /// Connects (failing after `pool.connect_timeout` when the server does not answer), applies
    /// the schema and keeps up to `pool.max_connections` connections.
    pub fn open(
        url: &PostgresUrl,
        pool: PoolOptions,
        events: PoolEvents,
    ) -> Result<PostgresDb, DbError> {
        let mut config: postgres::Config = url
            .expose()
            .parse()
            .map_err(|_| DbError::Other(format!("cannot parse {url}")))?;
        config
            .connect_timeout(pool.connect_timeout)
            // A server that vanishes without closing the connection is noticed within seconds,
            // not after the kernel's default of many minutes.
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(15))
            .tcp_user_timeout(pool.connect_timeout.max(Duration::from_secs(5)));
        let manager = PostgresConnectionManager::new(config, NoTls);
        let pool = Pool::builder()
            .max_size(pool.max_connections.max(1))
            .min_idle(Some(1))
            .connection_timeout(pool.connect_timeout)
            .connection_customizer(Box::new(SessionSetup))
            .error_handler(Box::new(LogConnectError))
            .event_handler(Box::new(events))
            .build(manager)
            .map_err(|e| DbError::Unavailable(format!("cannot connect to {url}: {e}")))?;
        let db = PostgresDb { pool };
        let mut conn = db.conn()?;
        let mut tx = conn.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])?;
        tx.batch_execute(SCHEMA)?;
        backfill_email_keys(&mut tx)?;
        tx.commit()?;
        Ok(db)
    }

    fn conn(&self) -> Result<PooledConnection<PostgresConnectionManager<NoTls>>, DbError> {
        Ok(self.pool.get()?)
    }
}

impl Store for PostgresDb {
    /// Checks that the database answers a query that reads the users table.
    fn ping(&self) -> Result<(), DbError> {
        self.conn()?.query_one("SELECT max(id) FROM users", &[])?;
        Ok(())
    }

    fn pool_gauges(&self) -> PoolGauges {
        super::gauges_of(&self.pool)
    }

    /// Finds the user whose email is `email` under [`email_key`]: the key's holder, or else
    /// the lowest id equal without regard to case (a row written since start, with no key).
    fn find_user_by_email(&self, email: &str) -> Result<Option<UserRow>, DbError> {
        let sql = concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = ",
            holder_of_key!()
        );
        let row = self.conn()?.query_opt(sql, &[&email_key(email), &email])?;
        row.map(|r| user_from_row(&r)).transpose()
    }

    /// Finds a user by id.
    fn find_user_by_id(&self, id: i64) -> Result<Option<UserRow>, DbError> {
        let sql = concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = $1::int8"
        );
        let row = self.conn()?.query_opt(sql, &[&id])?;
        row.map(|r| user_from_row(&r)).transpose()
    }

    /// Stores a new user and its email key and returns the stored row;
    /// [`DbError::EmailTaken`] when an equivalent email is registered already, also when
    /// another instance is registering it right now.
    fn insert_user(&self, user: &NewUserRow<'_>) -> Result<UserRow, DbError> {
        let key = email_key(user.email);
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&key],
        )?;
        let taken: bool = tx
            .query_one(
                concat!("SELECT ", holder_of_key!(), " IS NOT NULL"),
                &[&key, &user.email],
            )?
            .get(0);
        if taken {
            return Err(DbError::EmailTaken);
        }
        let sql = concat!(
            "INSERT INTO users (name, phone, image_url, email, password_hash) ",
            "VALUES ($1, $2, $3, $4, $5) RETURNING ",
            user_columns!()
        );
        let row = tx.query_one(
            sql,
            &[
                &user.name,
                &user.phone,
                &user.image_url,
                &user.email,
                &user.password_hash,
            ],
        )?;
        let stored = user_from_row(&row)?;
        tx.execute(
            "INSERT INTO email_keys (key, user_id) VALUES ($1, $2::int8::int4)",
            &[&key, &stored.id],
        )?;
        tx.commit()?;
        Ok(stored)
    }

    /// Replaces the hash if it is still `old_hash`: one `UPDATE`, whose condition PostgreSQL
    /// checks again against a row another transaction has just changed, so a concurrent change
    /// of password wins. `updated_at` is left alone (see [`Store::update_password_hash`]).
    fn update_password_hash(
        &self,
        id: i64,
        old_hash: &str,
        new_hash: &str,
    ) -> Result<bool, DbError> {
        let changed = self.conn()?.execute(
            "UPDATE users SET password_hash = $3 WHERE id = $1::int8 AND password_hash = $2",
            &[&id, &old_hash, &new_hash],
        )?;
        Ok(changed == 1)
    }

    /// Counts and checks in one transaction holding an advisory lock on the account, so that
    /// instances checking one account at once take turns.
    fn reserve_login_failure(
        &self,
        account: &str,
        client: &str,
        now_ms: i64,
        window_ms: i64,
        limit: u32,
        kept_for_known: u32,
    ) -> Result<LoginBudget, DbError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('login-failures:' || $1, 0))",
            &[&account],
        )?;
        let since = now_ms.saturating_sub(window_ms);
        tx.execute(
            "DELETE FROM login_failures WHERE account_key = $1 AND at <= $2",
            &[&account, &since],
        )?;
        let row = tx.query_one(
            "SELECT count(*)::int8, min(at) FROM login_failures WHERE account_key = $1",
            &[&account],
        )?;
        let count: i64 = row.try_get(0)?;
        let oldest: Option<i64> = row.try_get(1)?;
        let is_known = || -> Result<bool, DbError> {
            Ok(tx
                .query_one(
                    "SELECT EXISTS(SELECT 1 FROM login_known_clients \
                     WHERE account_key = $1 AND client = $2 AND last_success > $3)",
                    &[&account, &client, &now_ms.saturating_sub(KNOWN_CLIENT_MS)],
                )?
                .try_get(0)?)
        };
        let budget = (limit, kept_for_known);
        if let Some(spent) = spent_budget((count, oldest), budget, (now_ms, window_ms), is_known)? {
            return Ok(spent);
        }
        let id: i64 = tx
            .query_one(
                "INSERT INTO login_failures (account_key, at) VALUES ($1, $2) RETURNING id",
                &[&account, &now_ms],
            )?
            .try_get(0)?;
        if id % PRUNE_EVERY == 0 {
            tx.execute("DELETE FROM login_failures WHERE at <= $1", &[&since])?;
        }
        tx.commit()?;
        Ok(LoginBudget::Reserved(id))
    }

    fn release_login_failure(&self, id: i64) -> Result<(), DbError> {
        self.conn()?
            .execute("DELETE FROM login_failures WHERE id = $1", &[&id])?;
        Ok(())
    }

    fn record_login_success(
        &self,
        account: &str,
        client: &str,
        reservation: Option<i64>,
        now_ms: i64,
    ) -> Result<(), DbError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        if let Some(id) = reservation {
            tx.execute("DELETE FROM login_failures WHERE id = $1", &[&id])?;
        }
        tx.execute(
            "INSERT INTO login_known_clients (account_key, client, last_success) \
             VALUES ($1, $2, $3) ON CONFLICT (account_key, client) \
             DO UPDATE SET last_success = excluded.last_success",
            &[&account, &client, &now_ms],
        )?;
        tx.execute(
            "DELETE FROM login_known_clients WHERE account_key = $1 AND last_success <= $2",
            &[&account, &now_ms.saturating_sub(KNOWN_CLIENT_MS)],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn open_session(&self, session: &NewSession<'_>) -> Result<(), DbError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        tx.execute(
            "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions \
             WHERE expires_at <= $1 LIMIT $2)",
            &[&session.now_ms, &PRUNED_PER_LOGIN],
        )?;
        tx.execute(
            "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions \
             WHERE revoked_at <= $1 LIMIT $2)",
            &[&(session.now_ms - REVOKED_KEPT_MS), &PRUNED_PER_LOGIN],
        )?;
        // Logins of one user take turns here, so that two racing cannot both find room for
        // one more session and leave the user over the limit.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('sessions:' || $1::int8::text, 0))",
            &[&session.user_id],
        )?;
        tx.execute(
            "UPDATE sessions SET revoked_at = $2 WHERE id IN (SELECT id FROM sessions \
             WHERE user_id = $1::int8 AND revoked_at IS NULL \
             ORDER BY last_used_at DESC, id OFFSET $3)",
            &[
                &session.user_id,
                &session.now_ms,
                &i64::from(SESSIONS_PER_USER - 1),
            ],
        )?;
        tx.execute(
            "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions \
             WHERE user_id = $1::int8 AND revoked_at IS NOT NULL \
             ORDER BY revoked_at DESC, id OFFSET $2)",
            &[&session.user_id, &i64::from(REVOKED_KEPT_PER_USER)],
        )?;
        tx.execute(
            "INSERT INTO sessions (id, user_id, family_hash, token_hash, created_at, \
             last_used_at, expires_at, user_agent, client) \
             VALUES ($1, $2::int8::int4, $3, $4, $5, $5, $6, $7, $8)",
            &[
                &session.id,
                &session.user_id,
                &session.family_hash,
                &session.token_hash,
                &session.now_ms,
                &session.expires_ms,
                &session.user_agent,
                &session.client,
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn find_session_user(
        &self,
        user_id: i64,
        session: &str,
        now_ms: i64,
    ) -> Result<Option<UserRow>, DbError> {
        let sql = concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = (SELECT user_id FROM sessions WHERE id = $1 ",
            "AND user_id = $2::int8 AND revoked_at IS NULL AND expires_at > $3)"
        );
        let row = self
            .conn()?
            .query_opt(sql, &[&session, &user_id, &now_ms])?;
        row.map(|r| user_from_row(&r)).transpose()
    }

    fn find_user_for_sessionless_token(
        &self,
        user_id: i64,
        issued_at: Option<i64>,
    ) -> Result<Option<UserRow>, DbError> {
        let sql = concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = $1::int8 AND NOT EXISTS (SELECT 1 FROM token_cutoffs ",
            "WHERE user_id = $1::int8 AND ($2::int8 IS NULL OR revoked_before >= $2::int8))"
        );
        let row = self.conn()?.query_opt(sql, &[&user_id, &issued_at])?;
        row.map(|r| user_from_row(&r)).transpose()
    }

    /// Holds the session's row (`FOR UPDATE`) from reading it to changing it, so requests on
    /// any instance presenting one token take turns, and each sees what the one before left.
    fn rotate_refresh_token(&self, rotation: &Rotation<'_>) -> Result<Rotated, DbError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        let Some(row) = tx.query_opt(
            "SELECT id, user_id::int8, token_hash, previous_hash, rotated_at, \
             revoked_at IS NOT NULL, expires_at FROM sessions WHERE family_hash = $1 FOR UPDATE",
            &[&rotation.family_hash],
        )?
        else {
            return Ok(Rotated::Refused);
        };
        let id: String = row.try_get(0)?;
        let user_id: i64 = row.try_get(1)?;
        let stored = StoredSecret {
            token_hash: row.try_get(2)?,
            previous_hash: row.try_get(3)?,
            rotated_at: row.try_get(4)?,
            revoked: row.try_get(5)?,
            expires_at: row.try_get(6)?,
        };
        let now = rotation.now_ms;
        match Presented::of(&stored, rotation.presented, now, rotation.grace_ms) {
            Presented::Retry | Presented::Ended => Ok(Rotated::Refused),
            Presented::Reuse => {
                tx.execute(
                    "UPDATE sessions SET revoked_at = $2 WHERE id = $1",
                    &[&id, &now],
                )?;
                tx.commit()?;
                Ok(Rotated::Revoked {
                    session_id: id,
                    user_id,
                })
            }
            Presented::Current => {
                tx.execute(
                    "UPDATE sessions SET token_hash = $2, previous_hash = $3, rotated_at = $4, \
                     last_used_at = $4, expires_at = $5, user_agent = $6, client = $7 \
                     WHERE id = $1",
                    &[
                        &id,
                        &rotation.new_hash,
                        &rotation.presented,
                        &now,
                        &rotation.expires_ms,
                        &rotation.user_agent,
                        &rotation.client,
                    ],
                )?;
                let sql = concat!(
                    "SELECT ",
                    user_columns!(),
                    " FROM users WHERE id = $1::int8"
                );
                let Some(user) = tx.query_opt(sql, &[&user_id])? else {
                    return Ok(Rotated::Refused); // the user is gone; nothing is kept
                };
                let user = user_from_row(&user)?;
                tx.commit()?;
                Ok(Rotated::Done {
                    session_id: id,
                    user: Box::new(user),
                })
            }
        }
    }

    fn list_sessions(&self, user_id: i64, now_ms: i64) -> Result<Vec<SessionRow>, DbError> {
        let rows = self.conn()?.query(
            "SELECT id, created_at, last_used_at, expires_at, user_agent, client FROM sessions \
             WHERE user_id = $1::int8 AND revoked_at IS NULL AND expires_at > $2 \
             ORDER BY last_used_at DESC, id",
            &[&user_id, &now_ms],
        )?;
        rows.iter()
            .map(|row| {
                Ok(SessionRow {
                    id: row.try_get(0)?,
                    created_ms: row.try_get(1)?,
                    last_used_ms: row.try_get(2)?,
                    expires_ms: row.try_get(3)?,
                    user_agent: row.try_get(4)?,
                    client: row.try_get(5)?,
                })
            })
            .collect()
    }

    fn revoke_session(&self, user_id: i64, session: &str, now_ms: i64) -> Result<bool, DbError> {
        let changed = self.conn()?.execute(
            "UPDATE sessions SET revoked_at = $3 WHERE id = $2 AND user_id = $1::int8 \
             AND revoked_at IS NULL AND expires_at > $3",
            &[&user_id, &session, &now_ms],
        )?;
        Ok(changed == 1)
    }

    fn revoke_sessions(
        &self,
        user_id: i64,
        keep: Option<&str>,
        now_ms: i64,
    ) -> Result<u64, DbError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        let ended = revoke_all_but(&mut tx, user_id, keep, now_ms)?;
        tx.commit()?;
        Ok(ended)
    }

    fn cut_off_sessionless_tokens(&self, user_id: i64, now_ms: i64) -> Result<(), DbError> {
        self.conn()?
            .execute(CUT_OFF, &[&user_id, &now_ms.div_euclid(1000)])?;
        Ok(())
    }

    /// One `UPDATE`; a new email is checked and keyed under the advisory lock registration
    /// takes on the same key, so the two are serialised.
    fn update_user(&self, id: i64, changes: &UserChanges<'_>) -> Result<Option<UserRow>, DbError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        let key = changes.email.map(email_key);
        if let (Some(email), Some(key)) = (changes.email, &key) {
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                &[key],
            )?;
            let holder: Option<i64> = tx
                .query_one(
                    concat!("SELECT (", holder_of_key!(), ")::int8"),
                    &[key, &email],
                )?
                .try_get(0)?;
            if holder.is_some_and(|holder| holder != id) {
                return Err(DbError::EmailTaken);
            }
        }
        let sql = concat!(
            "UPDATE users SET name = coalesce($2, name), phone = coalesce($3, phone), ",
            "image_url = CASE WHEN $4 THEN $5 ELSE image_url END, ",
            "email = coalesce($6, email), updated_at = now() WHERE id = $1::int8 RETURNING ",
            user_columns!()
        );
        let row = tx.query_opt(
            sql,
            &[
                &id,
                &changes.name,
                &changes.phone,
                &changes.image_url.is_some(),
                &changes.image_url.flatten(),
                &changes.email,
            ],
        )?;
        let Some(row) = row else {
            return Ok(None);
        };
        let user = user_from_row(&row)?;
        if let Some(key) = key {
            tx.execute("DELETE FROM email_keys WHERE user_id = $1::int8", &[&id])?;
            tx.execute(
                "INSERT INTO email_keys (key, user_id) VALUES ($1, $2::int8::int4)",
                &[&key, &id],
            )?;
        }
        tx.commit()?;
        Ok(Some(user))
    }

    fn change_password(
        &self,
        id: i64,
        new_hash: &str,
        keep: Option<&str>,
        now_ms: i64,
    ) -> Result<bool, DbError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        let changed = tx.execute(
            "UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1::int8",
            &[&id, &new_hash],
        )?;
        if changed == 0 {
            return Ok(false);
        }
        revoke_all_but(&mut tx, id, keep, now_ms)?;
        tx.commit()?;
        Ok(true)
    }

    fn delete_user(&self, id: i64, account: &str) -> Result<bool, DbError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        // The user's sessions, email key and token cutoff go with the row (ON DELETE CASCADE).
        let deleted = tx.execute("DELETE FROM users WHERE id = $1::int8", &[&id])?;
        tx.execute(
            "DELETE FROM login_known_clients WHERE account_key = $1",
            &[&account],
        )?;
        tx.execute(
            "DELETE FROM login_failures WHERE account_key = $1",
            &[&account],
        )?;
        tx.commit()?;
        Ok(deleted == 1)
    }

    fn list_users(&self) -> Result<Vec<UserRow>, DbError> {
        let sql = concat!("SELECT ", user_columns!(), " FROM users ORDER BY id");
        let rows = self.conn()?.query(sql, &[])?;
        rows.iter().map(user_from_row).collect()
    }

    fn count_rows(&self) -> Result<RowCounts, DbError> {
        count_rows(&mut *self.conn()?)
    }

    /// One `REPEATABLE READ` read-only transaction: every read sees the same snapshot.
    fn export(&self) -> Result<Snapshot, DbError> {
        let mut conn = self.conn()?;
        let mut tx = conn
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        let users = tx
            .query(
                "SELECT id::int8, name, phone, image_url, email, password_hash, \
                 to_char(created_at::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), \
                 to_char(updated_at::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') \
                 FROM users ORDER BY id",
                &[],
            )?
            .iter()
            .map(|row| {
                Ok(UserRecord {
                    id: row.try_get(0)?,
                    name: row.try_get(1)?,
                    phone: row.try_get(2)?,
                    image_url: row.try_get(3)?,
                    email: row.try_get(4)?,
                    password_hash: row.try_get(5)?,
                    created_at: row.try_get(6)?,
                    updated_at: row.try_get(7)?,
                })
            })
            .collect::<Result<_, DbError>>()?;
        let email_keys = tx
            .query(
                "SELECT key, user_id::int8 FROM email_keys ORDER BY user_id",
                &[],
            )?
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<Result<_, DbError>>()?;
        let sessions = tx
            .query(
                "SELECT id, user_id::int8, family_hash, token_hash, previous_hash, rotated_at, \
                 created_at, last_used_at, expires_at, user_agent, client, revoked_at \
                 FROM sessions ORDER BY user_id, id",
                &[],
            )?
            .iter()
            .map(|row| {
                Ok(SessionRecord {
                    id: row.try_get(0)?,
                    user_id: row.try_get(1)?,
                    family_hash: row.try_get(2)?,
                    token_hash: row.try_get(3)?,
                    previous_hash: row.try_get(4)?,
                    rotated_at: row.try_get(5)?,
                    created_at: row.try_get(6)?,
                    last_used_at: row.try_get(7)?,
                    expires_at: row.try_get(8)?,
                    user_agent: row.try_get(9)?,
                    client: row.try_get(10)?,
                    revoked_at: row.try_get(11)?,
                })
            })
            .collect::<Result<_, DbError>>()?;
        let token_cutoffs = tx
            .query(
                "SELECT user_id::int8, revoked_before FROM token_cutoffs ORDER BY user_id",
                &[],
            )?
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<Result<_, DbError>>()?;
        tx.commit()?;
        Ok(Snapshot {
            users,
            email_keys,
            sessions,
            token_cutoffs,
        })
    }

    /// One transaction, which also moves `users`' id sequence past the highest id, so the
    /// next registration gets the next id rather than a conflict.
    fn import(&self, snapshot: &Snapshot, into_non_empty: bool) -> Result<(), ImportError> {
        let sql = |err: postgres::Error| ImportError::Db(DbError::from(err));
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(sql)?;
        // Registrations on other instances wait until the copy is in; none can take an id
        // or an email the copy is about to write.
        tx.execute("LOCK TABLE users IN EXCLUSIVE MODE", &[])
            .map_err(sql)?;
        let before = count_rows(&mut tx)?;
        if !before.is_empty() && !into_non_empty {
            return Err(ImportError::NotEmpty(before));
        }
        // Checked against what the target held before, all before the first write: the
        // source's own rows never conflict with each other here (a FastAPI database may
        // hold two emails equal but for case, which its index allowed).
        let users_to_check = if before.users == 0 {
            &[][..]
        } else {
            &snapshot.users[..]
        };
        for user in users_to_check {
            let row = tx
                .query_one(
                    concat!(
                        "SELECT EXISTS(SELECT 1 FROM users WHERE id = $3::int8), (",
                        holder_of_key!(),
                        ")::int8"
                    ),
                    &[&email_key(&user.email), &user.email, &user.id],
                )
                .map_err(sql)?;
            let (id_taken, holder): (bool, Option<i64>) =
                (row.try_get(0).map_err(sql)?, row.try_get(1).map_err(sql)?);
            if id_taken {
                return Err(ImportError::Conflict(format!(
                    "user id {} exists in the target already",
                    user.id
                )));
            }
            if let Some(holder) = holder {
                return Err(ImportError::Conflict(format!(
                    "user {}'s email is registered in the target already, as user {holder}",
                    user.id
                )));
            }
        }
        for user in &snapshot.users {
            // Timestamps are UTC text; the session's time zone is UTC, so a TIMESTAMPTZ
            // column and SQLAlchemy's TIMESTAMP WITHOUT TIME ZONE both take the same instant.
            tx.execute(
                "INSERT INTO users (id, name, phone, image_url, email, password_hash, \
                 created_at, updated_at) VALUES ($1::int8::int4, $2, $3, $4, $5, $6, \
                 $7::text::timestamptz, $8::text::timestamptz)",
                &[
                    &user.id,
                    &user.name,
                    &user.phone,
                    &user.image_url,
                    &user.email,
                    &user.password_hash,
                    &user.created_at,
                    &user.updated_at,
                ],
            )
            .map_err(sql)?;
        }
        for (key, user_id) in &snapshot.email_keys {
            tx.execute(
                "INSERT INTO email_keys (key, user_id) VALUES ($1, $2::int8::int4)",
                &[key, user_id],
            )
            .map_err(sql)?;
        }
        for s in &snapshot.sessions {
            tx.execute(
                "INSERT INTO sessions (id, user_id, family_hash, token_hash, previous_hash, \
                 rotated_at, created_at, last_used_at, expires_at, user_agent, client, \
                 revoked_at) VALUES ($1, $2::int8::int4, $3, $4, $5, $6, $7, $8, $9, $10, \
                 $11, $12)",
                &[
                    &s.id,
                    &s.user_id,
                    &s.family_hash,
                    &s.token_hash,
                    &s.previous_hash,
                    &s.rotated_at,
                    &s.created_at,
                    &s.last_used_at,
                    &s.expires_at,
                    &s.user_agent,
                    &s.client,
                    &s.revoked_at,
                ],
            )
            .map_err(sql)?;
        }
        for (user_id, revoked_before) in &snapshot.token_cutoffs {
            tx.execute(
                "INSERT INTO token_cutoffs (user_id, revoked_before) \
                 VALUES ($1::int8::int4, $2)",
                &[user_id, revoked_before],
            )
            .map_err(sql)?;
        }
        // The id column is SERIAL: its sequence must pass the ids just written. With no
        // users at all, the next id is 1.
        tx.execute(
            "SELECT setval(pg_get_serial_sequence('users', 'id'), \
             coalesce((SELECT max(id) FROM users), 1), \
             (SELECT max(id) FROM users) IS NOT NULL)",
            &[],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(())
    }
}

/// Counts the rows of each table of account state.
fn count_rows(client: &mut impl postgres::GenericClient) -> Result<RowCounts, DbError> {
    let row = client.query_one(
        "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM email_keys), \
         (SELECT count(*) FROM sessions), (SELECT count(*) FROM token_cutoffs)",
        &[],
    )?;
    let count = |idx: usize| -> Result<u64, DbError> {
        Ok(u64::try_from(row.try_get::<_, i64>(idx)?).unwrap_or(0))
    };
    Ok(RowCounts {
        users: count(0)?,
        email_keys: count(1)?,
        sessions: count(2)?,
        token_cutoffs: count(3)?,
    })
}

/// Revokes every live session of the user's but `keep`, and cuts off their sessionless tokens,
/// inside the caller's transaction; returns how many sessions ended.
fn revoke_all_but(
    tx: &mut postgres::Transaction<'_>,
    user_id: i64,
    keep: Option<&str>,
    now_ms: i64,
) -> Result<u64, DbError> {
    let ended = tx.execute(
        "UPDATE sessions SET revoked_at = $2 WHERE user_id = $1::int8 AND revoked_at IS NULL \
         AND expires_at > $2 AND ($3::text IS NULL OR id <> $3::text)",
        &[&user_id, &now_ms, &keep],
    )?;
    tx.execute(CUT_OFF, &[&user_id, &now_ms.div_euclid(1000)])?;
    Ok(ended)
}

/// Gives every user without an email key its key, in id order, so that where two existing
/// emails are one identity the lower id keeps it (logged, never fatal). Runs at every start,
/// under the schema lock; after the first it only finds rows written since by the FastAPI
/// service, and the collisions it logged before.
fn backfill_email_keys(tx: &mut postgres::Transaction<'_>) -> Result<(), DbError> {
    let keyless = tx.query(
        "SELECT u.id::int8, u.email FROM users u \
         WHERE NOT EXISTS (SELECT 1 FROM email_keys k WHERE k.user_id = u.id) ORDER BY u.id",
        &[],
    )?;
    let mut given = 0;
    for row in keyless {
        let (id, email): (i64, String) = (row.try_get(0)?, row.try_get(1)?);
        let key = email_key(&email);
        if key.is_empty() {
            warn_keyless(id);
            continue;
        }
        let inserted = tx.execute(
            "INSERT INTO email_keys (key, user_id) VALUES ($1, $2::int8::int4) \
             ON CONFLICT DO NOTHING",
            &[&key, &id],
        )?;
        if inserted == 1 {
            given += 1;
        } else {
            let owner: i64 = tx
                .query_one(
                    "SELECT user_id::int8 FROM email_keys WHERE key = $1",
                    &[&key],
                )?
                .try_get(0)?;
            warn_key_collision(id, owner);
        }
    }
    if given > 0 {
        log::info!("gave {given} existing users their email key");
    }
    Ok(())
}

fn user_from_row(row: &Row) -> Result<UserRow, DbError> {
    let text = |idx: usize| -> Result<String, DbError> {
        Ok(row.try_get::<_, Option<String>>(idx)?.unwrap_or_default())
    };
    Ok(UserRow {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        phone: row.try_get(2)?,
        image_url: row.try_get(3)?,
        email: row.try_get(4)?,
        password_hash: row.try_get(5)?,
        created_at: to_rfc3339(&text(6)?),
        updated_at: to_rfc3339(&text(7)?),
    })
}
