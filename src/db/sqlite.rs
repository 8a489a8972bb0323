//! The SQLite backend: its pool, its schema (`schema.sql`) and its statements.
//!
//! SQLite runs in WAL mode with `synchronous=FULL` (a committed write survives power loss) and a
//! busy timeout, so concurrent writers wait instead of failing.
//!
//! The file is watched: a database file deleted, moved away or replaced under the running
//! server would otherwise go on taking writes into a file no one will see again (the server's
//! open connections keep the old one alive). Before every use of the database the path is
//! checked, with one `stat`, to still be the file opened at start (same device and inode); while
//! it is not, every request that needs the database, reads included, and `/health` get 503,
//! and one error is logged when that begins. When the same file is back at its path (moved
//! back), service resumes by itself; a different file at the path is refused until a restart,
//! since the pooled connections still hold the old one.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use r2d2::{Pool, PooledConnection};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{params, OpenFlags, OptionalExtension};

use super::spent_budget;
use super::transfer::{ImportError, RowCounts, SessionRecord, Snapshot, UserRecord};
use super::{
    to_rfc3339, warn_key_collision, warn_keyless, DbError, LoginBudget, NewSession, NewUserRow,
    PoolEvents, PoolOptions, Rotated, Rotation, SessionRow, Store, UserChanges, UserRow,
    KNOWN_CLIENT_MS, PRUNE_EVERY,
};
use crate::fields::email_key;
use crate::metrics::PoolGauges;
use crate::sessions::{
    Presented, StoredSecret, PRUNED_PER_LOGIN, REVOKED_KEPT_MS, REVOKED_KEPT_PER_USER,
    SESSIONS_PER_USER,
};

/// The user columns in the order `user_from_row` reads them. A macro so each statement is one
/// literal.
macro_rules! user_columns {
    () => {
        "id, name, phone, image_url, email, password_hash, created_at, updated_at"
    };
}

/// The id of the user an email (`?1` its key, `?2` the email) belongs to, or NULL: the key's
/// holder, or else the lowest id whose email equals it without regard to case (a row with no
/// key yet, written by the FastAPI service since this instance started). A key whose user is
/// gone (deleted by the FastAPI service since start) is no holder.
macro_rules! holder_of_key {
    () => {
        "coalesce((SELECT k.user_id FROM email_keys k JOIN users u ON u.id = k.user_id \
                   WHERE k.key = ?1), \
         (SELECT id FROM users WHERE lower(email) = lower(?2) ORDER BY id LIMIT 1))"
    };
}

/// Records that the user's (`?1`) access tokens without a session issued up to `?2` (Unix
/// seconds) are refused; a later cutoff never moves back.
const CUT_OFF: &str = "INSERT INTO token_cutoffs (user_id, revoked_before) VALUES (?1, ?2) \
                       ON CONFLICT (user_id) \
                       DO UPDATE SET revoked_before = max(revoked_before, excluded.revoked_before)";

/// The schema, applied at every start without harming existing data.
const SCHEMA: &str = include_str!("../../schema.sql");

/// How long a writer waits for another writer's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The timestamp format SQLAlchemy writes to SQLite (UTC, microseconds).
const SQLITE_TIMESTAMP: &str = "%Y-%m-%d %H:%M:%S%.6f";

/// How SQLite names the email's unique index in "UNIQUE constraint failed: <name>": the one
/// constraint failure that means the email is taken. Every other one (NOT NULL, CHECK, a
/// trigger's `RAISE`, the primary key, a unique index someone else added) is a failure of ours.
const EMAIL_INDEX_NAMES: [&str; 3] = [
    // `ix_users_email ON users (email)`, in schema.sql and in the FastAPI service's databases
    // (SQLAlchemy's `unique=True, index=True`). An index on plain columns is named by its
    // columns, `table.column`, as a column's own `UNIQUE` would be.
    "users.email",
    // The same index if it is ever built on an expression such as `lower(email)`: SQLite then
    // names it by its name.
    "index 'ix_users_email'",
    // `email_keys (key TEXT PRIMARY KEY)`: an equivalent email (NFKC, case folded) is
    // registered. A primary key on a text column is named by its column, as above.
    "email_keys.key",
];

/// Tells whether `err` is the email's unique index refusing a second row for one address.
fn is_email_taken(err: &rusqlite::Error) -> bool {
    match err {
        rusqlite::Error::SqliteFailure(cause, Some(message)) => {
            // email_keys' key is a PRIMARY KEY, which SQLite reports with a code of its own.
            [
                rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE,
                rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY,
            ]
            .contains(&cause.extended_code)
                && message
                    .strip_prefix("UNIQUE constraint failed: ")
                    .is_some_and(|name| EMAIL_INDEX_NAMES.contains(&name))
        }
        _ => false,
    }
}

impl From<rusqlite::Error> for DbError {
    fn from(err: rusqlite::Error) -> DbError {
        use rusqlite::ErrorCode;
        if is_email_taken(&err) {
            return DbError::EmailTaken;
        }
        // SQLite's own messages name the constraint or its columns, never the row's values,
        // so they are safe to log (a trigger's `RAISE` says whatever its author wrote).
        match err.sqlite_error_code() {
            Some(
                ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::CannotOpen
                | ErrorCode::SystemIoFailure
                | ErrorCode::DiskFull,
            ) => DbError::Unavailable(err.to_string()),
            _ => DbError::Other(err.to_string()),
        }
    }
}

/// A pooled SQLite database.
#[derive(Clone)]
pub struct SqliteDb {
    pool: Pool<SqliteConnectionManager>,
    file: Arc<FileWatch>,
    /// Taken by this process's write transactions, one at a time: SQLite lets one writer in at
    /// once anyway, and a writer that finds the file locked polls with growing sleeps (the busy
    /// timeout), which under a burst of logins wasted more time than the writes took. Queued on
    /// a mutex, each starts the moment the one before commits. Other processes on the file
    /// still meet the busy timeout.
    writer: Arc<Mutex<()>>,
}

impl SqliteDb {
    /// Opens (creating if needed) the SQLite file at `path`, applies the schema and keeps up to
    /// `pool.max_connections` pooled connections.
    pub fn open(path: &Path, pool: PoolOptions, events: PoolEvents) -> Result<SqliteDb, DbError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.is_dir() {
                return Err(DbError::Other(format!(
                    "directory {} does not exist",
                    parent.display()
                )));
            }
        }
        // Only this first connection may create the file. The pool's connections open an
        // existing one: one opened while the file is gone must fail, not create an empty
        // database at the path (beside the old one's write-ahead log, which SQLite would then
        // replay into it).
        rusqlite::Connection::open(path)
            .map_err(|e| DbError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        let file = Arc::new(FileWatch::new(path)?);
        let watch = file.clone();
        let manager = SqliteConnectionManager::file(path)
            .with_flags(
                OpenFlags::SQLITE_OPEN_READ_WRITE
                    | OpenFlags::SQLITE_OPEN_URI
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .with_init(move |conn| {
                // A connection opened on whatever file is at the path now, if it is not ours, is
                // dropped before it can be used.
                if watch.state() != FileState::InPlace {
                    return Err(rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                        Some("not the database file opened at start".to_owned()),
                    ));
                }
                conn.busy_timeout(BUSY_TIMEOUT)?;
                // WAL lets readers run beside the one writer; FULL makes each commit durable.
                conn.pragma_update(None, "journal_mode", "WAL")?;
                conn.pragma_update(None, "synchronous", "FULL")
            });
        let pool = Pool::builder()
            .max_size(pool.max_connections.max(1))
            .min_idle(Some(1))
            .connection_timeout(pool.connect_timeout)
            .event_handler(Box::new(events))
            .build(manager)
            .map_err(|e| DbError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        let db = SqliteDb {
            pool,
            file,
            writer: Arc::new(Mutex::new(())),
        };
        let mut conn = db.conn()?;
        conn.execute_batch(SCHEMA)?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        backfill_email_keys(&tx)?;
        tx.commit()?;
        Ok(db)
    }

    /// A pooled connection, once the path is checked to still hold the file opened at start.
    fn conn(&self) -> Result<PooledConnection<SqliteConnectionManager>, DbError> {
        self.file.check()?;
        Ok(self.pool.get()?)
    }

    /// This process's turn to write, and a connection to write with: hold the turn until the
    /// transaction has committed or rolled back (declare it first, so it is dropped last).
    fn writer(
        &self,
    ) -> Result<(WriteTurn<'_>, PooledConnection<SqliteConnectionManager>), DbError> {
        let conn = self.conn()?;
        Ok((self.turn(), conn))
    }

    /// This process's turn to write. Always taken with a connection already in hand, so that
    /// no holder of the turn ever waits for the pool while others hold connections waiting for
    /// the turn.
    fn turn(&self) -> WriteTurn<'_> {
        // A poisoned lock guards nothing but the turn itself, which is still sound.
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A held turn of [`SqliteDb::writer`].
type WriteTurn<'a> = std::sync::MutexGuard<'a, ()>;

/// Where the database file stands, compared with the one opened at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum FileState {
    /// The path holds the file opened at start.
    InPlace = 0,
    /// Nothing is at the path (deleted or moved away), or it cannot be looked at.
    Missing = 1,
    /// Another file is at the path.
    Replaced = 2,
}

/// The database file's identity (device and inode) as opened at start, and what the path held
/// when last checked, so that a change is logged once, not on every request.
struct FileWatch {
    path: PathBuf,
    identity: (u64, u64),
    last: AtomicU8,
}

impl FileWatch {
    fn new(path: &Path) -> Result<FileWatch, DbError> {
        let meta = std::fs::metadata(path)
            .map_err(|e| DbError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        Ok(FileWatch {
            path: path.to_owned(),
            identity: (meta.dev(), meta.ino()),
            last: AtomicU8::new(FileState::InPlace as u8),
        })
    }

    /// What the path holds now (one `stat`).
    fn state(&self) -> FileState {
        match std::fs::metadata(&self.path) {
            Ok(meta) if (meta.dev(), meta.ino()) == self.identity => FileState::InPlace,
            Ok(_) => FileState::Replaced,
            Err(_) => FileState::Missing,
        }
    }

    /// Fails with [`DbError::Unavailable`] unless the path holds the file opened at start,
    /// logging the change when it differs from the last check's.
    fn check(&self) -> Result<(), DbError> {
        let now = self.state();
        let before = self.last.swap(now as u8, Ordering::SeqCst);
        let path = self.path.display();
        if before != now as u8 {
            match now {
                FileState::InPlace => {
                    log::info!("the database file {path} is back in place: serving requests again")
                }
                FileState::Missing => log::error!(
                    "the database file {path} has been deleted or moved away while the server \
                     runs: requests that need the database get 503 until the same file is back \
                     at its path (writes would otherwise be lost with it)"
                ),
                FileState::Replaced => log::error!(
                    "the database file {path} has been replaced by another file while the \
                     server runs: requests that need the database get 503; restart to use the \
                     new file, or put the original back"
                ),
            }
        }
        match now {
            FileState::InPlace => Ok(()),
            FileState::Missing => Err(DbError::Unavailable(format!(
                "the database file {path} is missing"
            ))),
            FileState::Replaced => Err(DbError::Unavailable(format!(
                "the database file {path} is not the one opened at start"
            ))),
        }
    }
}

impl Store for SqliteDb {
    /// Checks that the database answers a query that reads the users table (`SELECT 1` alone
    /// never touches the file, so it passes on a database that is gone or damaged). `max(id)`
    /// reads one page of the primary key, whatever the table's size.
    fn ping(&self) -> Result<(), DbError> {
        self.conn()?
            .query_row("SELECT max(id) FROM users", [], |_| Ok(()))?;
        Ok(())
    }

    fn pool_gauges(&self) -> PoolGauges {
        super::gauges_of(&self.pool)
    }

    /// Finds the user whose email is `email` under [`email_key`]: the key's holder, or else
    /// the lowest id equal without regard to case (a row written since start, with no key).
    fn find_user_by_email(&self, email: &str) -> Result<Option<UserRow>, DbError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = ",
            holder_of_key!()
        ))?;
        Ok(stmt
            .query_row(params![email_key(email), email], user_from_row)
            .optional()?)
    }

    /// Finds a user by id.
    fn find_user_by_id(&self, id: i64) -> Result<Option<UserRow>, DbError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = ?1"
        ))?;
        Ok(stmt.query_row(params![id], user_from_row).optional()?)
    }

    /// Stores a new user and returns the stored row.
    ///
    /// Fails with [`DbError::EmailTaken`] when an equivalent email is registered already,
    /// including when another request registers it at the same moment: the check and both
    /// inserts run in one `IMMEDIATE` transaction, which SQLite serialises across writers, and
    /// the key's primary key would refuse a second holder anyway.
    fn insert_user(&self, user: &NewUserRow<'_>) -> Result<UserRow, DbError> {
        let key = email_key(user.email);
        let (_turn, mut conn) = self.writer()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let taken: bool = tx
            .prepare_cached(concat!("SELECT ", holder_of_key!(), " IS NOT NULL"))?
            .query_row(params![key, user.email], |row| row.get(0))?;
        if taken {
            return Err(DbError::EmailTaken);
        }
        let now = Utc::now().naive_utc().format(SQLITE_TIMESTAMP).to_string();
        let row = tx
            .prepare_cached(concat!(
                "INSERT INTO users (name, phone, image_url, email, password_hash, created_at, ",
                "updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) RETURNING ",
                user_columns!()
            ))?
            .query_row(
                params![
                    user.name,
                    user.phone,
                    user.image_url,
                    user.email,
                    user.password_hash,
                    now
                ],
                user_from_row,
            )?;
        // A key still naming this id belonged to a deleted user whose id SQLite reused: our
        // connections enforce the foreign key (bundled SQLite turns them on), but the FastAPI
        // service's do not, so its deletes leave keys behind. It is not this user's key.
        tx.prepare_cached("DELETE FROM email_keys WHERE user_id = ?1")?
            .execute(params![row.id])?;
        tx.prepare_cached("INSERT INTO email_keys (key, user_id) VALUES (?1, ?2)")?
            .execute(params![key, row.id])?;
        tx.commit()?;
        Ok(row)
    }

    /// Replaces the hash if it is still `old_hash`; one `UPDATE`, atomic on its own.
    /// `updated_at` is left alone (see [`Store::update_password_hash`]).
    fn update_password_hash(
        &self,
        id: i64,
        old_hash: &str,
        new_hash: &str,
    ) -> Result<bool, DbError> {
        let conn = self.conn()?;
        let changed = conn
            .prepare_cached(
                "UPDATE users SET password_hash = ?3 WHERE id = ?1 AND password_hash = ?2",
            )?
            .execute(params![id, old_hash, new_hash])?;
        Ok(changed == 1)
    }

    /// Counts and checks in one `IMMEDIATE` transaction, which SQLite serialises across every
    /// connection and process on the file.
    fn reserve_login_failure(
        &self,
        account: &str,
        client: &str,
        now_ms: i64,
        window_ms: i64,
        limit: u32,
        kept_for_known: u32,
    ) -> Result<LoginBudget, DbError> {
        let (_turn, mut conn) = self.writer()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let since = now_ms.saturating_sub(window_ms);
        tx.prepare_cached("DELETE FROM login_failures WHERE account_key = ?1 AND at <= ?2")?
            .execute(params![account, since])?;
        let (count, oldest): (i64, Option<i64>) = tx
            .prepare_cached("SELECT count(*), min(at) FROM login_failures WHERE account_key = ?1")?
            .query_row(params![account], |row| Ok((row.get(0)?, row.get(1)?)))?;
        let is_known = || -> Result<bool, DbError> {
            Ok(tx
                .prepare_cached(
                    "SELECT EXISTS(SELECT 1 FROM login_known_clients \
                     WHERE account_key = ?1 AND client = ?2 AND last_success > ?3)",
                )?
                .query_row(
                    params![account, client, now_ms.saturating_sub(KNOWN_CLIENT_MS)],
                    |row| row.get(0),
                )?)
        };
        let budget = (limit, kept_for_known);
        if let Some(spent) = spent_budget((count, oldest), budget, (now_ms, window_ms), is_known)? {
            return Ok(spent);
        }
        let id: i64 = tx
            .prepare_cached(
                "INSERT INTO login_failures (account_key, at) VALUES (?1, ?2) RETURNING id",
            )?
            .query_row(params![account, now_ms], |row| row.get(0))?;
        if id % PRUNE_EVERY == 0 {
            tx.prepare_cached("DELETE FROM login_failures WHERE at <= ?1")?
                .execute(params![since])?;
        }
        tx.commit()?;
        Ok(LoginBudget::Reserved(id))
    }

    fn release_login_failure(&self, id: i64) -> Result<(), DbError> {
        self.conn()?
            .prepare_cached("DELETE FROM login_failures WHERE id = ?1")?
            .execute(params![id])?;
        Ok(())
    }

    fn record_login_success(
        &self,
        account: &str,
        client: &str,
        reservation: Option<i64>,
        now_ms: i64,
    ) -> Result<(), DbError> {
        let (_turn, mut conn) = self.writer()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if let Some(id) = reservation {
            tx.prepare_cached("DELETE FROM login_failures WHERE id = ?1")?
                .execute(params![id])?;
        }
        tx.prepare_cached(
            "INSERT INTO login_known_clients (account_key, client, last_success) \
             VALUES (?1, ?2, ?3) ON CONFLICT (account_key, client) \
             DO UPDATE SET last_success = excluded.last_success",
        )?
        .execute(params![account, client, now_ms])?;
        tx.prepare_cached(
            "DELETE FROM login_known_clients WHERE account_key = ?1 AND last_success <= ?2",
        )?
        .execute(params![account, now_ms.saturating_sub(KNOWN_CLIENT_MS)])?;
        tx.commit()?;
        Ok(())
    }

    fn open_session(&self, session: &NewSession<'_>) -> Result<(), DbError> {
        let (_turn, mut conn) = self.writer()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.prepare_cached(
            "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions \
             WHERE expires_at <= ?1 LIMIT ?2)",
        )?
        .execute(params![session.now_ms, PRUNED_PER_LOGIN])?;
        tx.prepare_cached(
            "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions \
             WHERE revoked_at <= ?1 LIMIT ?2)",
        )?
        .execute(params![session.now_ms - REVOKED_KEPT_MS, PRUNED_PER_LOGIN])?;
        tx.prepare_cached(
            "UPDATE sessions SET revoked_at = ?2 WHERE id IN (SELECT id FROM sessions \
             WHERE user_id = ?1 AND revoked_at IS NULL \
             ORDER BY last_used_at DESC, id LIMIT -1 OFFSET ?3)",
        )?
        .execute(params![
            session.user_id,
            session.now_ms,
            SESSIONS_PER_USER - 1
        ])?;
        tx.prepare_cached(
            "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions \
             WHERE user_id = ?1 AND revoked_at IS NOT NULL \
             ORDER BY revoked_at DESC, id LIMIT -1 OFFSET ?2)",
        )?
        .execute(params![session.user_id, REVOKED_KEPT_PER_USER])?;
        tx.prepare_cached(
            "INSERT INTO sessions (id, user_id, family_hash, token_hash, created_at, \
             last_used_at, expires_at, user_agent, client) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            session.id,
            session.user_id,
            session.family_hash,
            session.token_hash,
            session.now_ms,
            session.expires_ms,
            session.user_agent,
            session.client
        ])?;
        tx.commit()?;
        Ok(())
    }

    fn find_session_user(
        &self,
        user_id: i64,
        session: &str,
        now_ms: i64,
    ) -> Result<Option<UserRow>, DbError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = (SELECT user_id FROM sessions WHERE id = ?1 ",
            "AND user_id = ?2 AND revoked_at IS NULL AND expires_at > ?3)"
        ))?;
        Ok(stmt
            .query_row(params![session, user_id, now_ms], user_from_row)
            .optional()?)
    }

    fn find_user_for_sessionless_token(
        &self,
        user_id: i64,
        issued_at: Option<i64>,
    ) -> Result<Option<UserRow>, DbError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM token_cutoffs ",
            "WHERE user_id = ?1 AND (?2 IS NULL OR revoked_before >= ?2))"
        ))?;
        Ok(stmt
            .query_row(params![user_id, issued_at], user_from_row)
            .optional()?)
    }

    /// Reads the session first without a lock, so that an unknown token costs one read; a
    /// known one is read again and changed in one `IMMEDIATE` transaction, which SQLite
    /// serialises across every connection and process on the file.
    fn rotate_refresh_token(&self, rotation: &Rotation<'_>) -> Result<Rotated, DbError> {
        const FIND: &str = "SELECT id, user_id, token_hash, previous_hash, rotated_at, \
                            revoked_at IS NOT NULL, expires_at FROM sessions WHERE family_hash = ?1";
        let read = |row: &rusqlite::Row<'_>| -> rusqlite::Result<(String, i64, StoredSecret)> {
            Ok((
                row.get(0)?,
                row.get(1)?,
                StoredSecret {
                    token_hash: row.get(2)?,
                    previous_hash: row.get(3)?,
                    rotated_at: row.get(4)?,
                    revoked: row.get(5)?,
                    expires_at: row.get(6)?,
                },
            ))
        };
        let mut conn = self.conn()?;
        let known = conn
            .prepare_cached("SELECT 1 FROM sessions WHERE family_hash = ?1")?
            .exists(params![rotation.family_hash])?;
        if !known {
            return Ok(Rotated::Refused);
        }
        let _turn = self.turn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let Some((id, user_id, stored)) = tx
            .prepare_cached(FIND)?
            .query_row(params![rotation.family_hash], read)
            .optional()?
        else {
            return Ok(Rotated::Refused);
        };
        let now = rotation.now_ms;
        match Presented::of(&stored, rotation.presented, now, rotation.grace_ms) {
            Presented::Retry | Presented::Ended => Ok(Rotated::Refused),
            Presented::Reuse => {
                tx.prepare_cached("UPDATE sessions SET revoked_at = ?2 WHERE id = ?1")?
                    .execute(params![id, now])?;
                tx.commit()?;
                Ok(Rotated::Revoked {
                    session_id: id,
                    user_id,
                })
            }
            Presented::Current => {
                tx.prepare_cached(
                    "UPDATE sessions SET token_hash = ?2, previous_hash = ?3, rotated_at = ?4, \
                     last_used_at = ?4, expires_at = ?5, user_agent = ?6, client = ?7 \
                     WHERE id = ?1",
                )?
                .execute(params![
                    id,
                    rotation.new_hash,
                    rotation.presented,
                    now,
                    rotation.expires_ms,
                    rotation.user_agent,
                    rotation.client
                ])?;
                let user = tx
                    .prepare_cached(concat!(
                        "SELECT ",
                        user_columns!(),
                        " FROM users WHERE id = ?1"
                    ))?
                    .query_row(params![user_id], user_from_row)
                    .optional()?;
                let Some(user) = user else {
                    return Ok(Rotated::Refused); // the user is gone; nothing is kept
                };
                tx.commit()?;
                Ok(Rotated::Done {
                    session_id: id,
                    user: Box::new(user),
                })
            }
        }
    }

    fn list_sessions(&self, user_id: i64, now_ms: i64) -> Result<Vec<SessionRow>, DbError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, created_at, last_used_at, expires_at, user_agent, client FROM sessions \
             WHERE user_id = ?1 AND revoked_at IS NULL AND expires_at > ?2 \
             ORDER BY last_used_at DESC, id",
        )?;
        let rows = stmt.query_map(params![user_id, now_ms], |row| {
            Ok(SessionRow {
                id: row.get(0)?,
                created_ms: row.get(1)?,
                last_used_ms: row.get(2)?,
                expires_ms: row.get(3)?,
                user_agent: row.get(4)?,
                client: row.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn revoke_session(&self, user_id: i64, session: &str, now_ms: i64) -> Result<bool, DbError> {
        let changed = self
            .conn()?
            .prepare_cached(
                "UPDATE sessions SET revoked_at = ?3 WHERE id = ?2 AND user_id = ?1 \
                 AND revoked_at IS NULL AND expires_at > ?3",
            )?
            .execute(params![user_id, session, now_ms])?;
        Ok(changed == 1)
    }

    fn revoke_sessions(
        &self,
        user_id: i64,
        keep: Option<&str>,
        now_ms: i64,
    ) -> Result<u64, DbError> {
        let (_turn, mut conn) = self.writer()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let ended = revoke_all_but(&tx, user_id, keep, now_ms)?;
        tx.commit()?;
        Ok(ended)
    }

    fn cut_off_sessionless_tokens(&self, user_id: i64, now_ms: i64) -> Result<(), DbError> {
        self.conn()?
            .prepare_cached(CUT_OFF)?
            .execute(params![user_id, now_ms.div_euclid(1000)])?;
        Ok(())
    }

    /// One `UPDATE` in an `IMMEDIATE` transaction (which serialises it with registrations); a
    /// new email is checked and keyed inside it, as `insert_user` does.
    fn update_user(&self, id: i64, changes: &UserChanges<'_>) -> Result<Option<UserRow>, DbError> {
        let (_turn, mut conn) = self.writer()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let key = changes.email.map(email_key);
        if let (Some(email), Some(key)) = (changes.email, &key) {
            let holder: Option<i64> = tx
                .prepare_cached(concat!("SELECT ", holder_of_key!()))?
                .query_row(params![key, email], |row| row.get(0))?;
            if holder.is_some_and(|holder| holder != id) {
                return Err(DbError::EmailTaken);
            }
        }
        let now = Utc::now().naive_utc().format(SQLITE_TIMESTAMP).to_string();
        let row = tx
            .prepare_cached(concat!(
                "UPDATE users SET name = coalesce(?2, name), phone = coalesce(?3, phone), ",
                "image_url = CASE WHEN ?4 THEN ?5 ELSE image_url END, ",
                "email = coalesce(?6, email), updated_at = ?7 WHERE id = ?1 RETURNING ",
                user_columns!()
            ))?
            .query_row(
                params![
                    id,
                    changes.name,
                    changes.phone,
                    changes.image_url.is_some(),
                    changes.image_url.flatten(),
                    changes.email,
                    now
                ],
                user_from_row,
            )
            .optional()?;
        if let (Some(_), Some(key)) = (&row, key) {
            tx.prepare_cached("DELETE FROM email_keys WHERE user_id = ?1")?
                .execute(params![id])?;
            tx.prepare_cached("INSERT INTO email_keys (key, user_id) VALUES (?1, ?2)")?
                .execute(params![key, id])?;
        }
        tx.commit()?;
        Ok(row)
    }

    fn change_password(
        &self,
        id: i64,
        new_hash: &str,
        keep: Option<&str>,
        now_ms: i64,
    ) -> Result<bool, DbError> {
        let (_turn, mut conn) = self.writer()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let now = Utc::now().naive_utc().format(SQLITE_TIMESTAMP).to_string();
        let changed = tx
            .prepare_cached("UPDATE users SET password_hash = ?2, updated_at = ?3 WHERE id = ?1")?
            .execute(params![id, new_hash, now])?;
        if changed == 0 {
            return Ok(false);
        }
        revoke_all_but(&tx, id, keep, now_ms)?;
        tx.commit()?;
        Ok(true)
    }

    fn delete_user(&self, id: i64, account: &str) -> Result<bool, DbError> {
        let (_turn, mut conn) = self.writer()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Our connections enforce the foreign keys (bundled SQLite turns them on), so the
        // user's sessions, email key and token cutoff go with the row.
        let deleted = tx
            .prepare_cached("DELETE FROM users WHERE id = ?1")?
            .execute(params![id])?;
        tx.prepare_cached("DELETE FROM login_known_clients WHERE account_key = ?1")?
            .execute(params![account])?;
        tx.prepare_cached("DELETE FROM login_failures WHERE account_key = ?1")?
            .execute(params![account])?;
        tx.commit()?;
        Ok(deleted == 1)
    }

    fn list_users(&self) -> Result<Vec<UserRow>, DbError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users ORDER BY id"
        ))?;
        let rows = stmt.query_map([], user_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn count_rows(&self) -> Result<RowCounts, DbError> {
        let conn = self.conn()?;
        Ok(count_rows(&conn)?)
    }

    /// One deferred transaction: its first read fixes the snapshot every later read sees.
    fn export(&self) -> Result<Snapshot, DbError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        let users = tx
            .prepare(
                "SELECT id, name, phone, image_url, email, password_hash, created_at, updated_at \
                 FROM users ORDER BY id",
            )?
            .query_map([], |row| {
                Ok(UserRecord {
                    id: row.get(0)?,
                    name: row.get(1)?,
                    phone: row.get(2)?,
                    image_url: row.get(3)?,
                    email: any_text(row, 4)?,
                    password_hash: row.get(5)?,
                    created_at: any_text(row, 6)?,
                    updated_at: any_text(row, 7)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        let email_keys = tx
            .prepare("SELECT key, user_id FROM email_keys ORDER BY user_id")?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let sessions = tx
            .prepare(
                "SELECT id, user_id, family_hash, token_hash, previous_hash, rotated_at, \
                 created_at, last_used_at, expires_at, user_agent, client, revoked_at \
                 FROM sessions ORDER BY user_id, id",
            )?
            .query_map([], |row| {
                Ok(SessionRecord {
                    id: row.get(0)?,
                    user_id: row.get(1)?,
                    family_hash: row.get(2)?,
                    token_hash: row.get(3)?,
                    previous_hash: row.get(4)?,
                    rotated_at: row.get(5)?,
                    created_at: row.get(6)?,
                    last_used_at: row.get(7)?,
                    expires_at: row.get(8)?,
                    user_agent: row.get(9)?,
                    client: row.get(10)?,
                    revoked_at: row.get(11)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        let token_cutoffs = tx
            .prepare("SELECT user_id, revoked_before FROM token_cutoffs ORDER BY user_id")?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<Result<_, _>>()?;
        Ok(Snapshot {
            users,
            email_keys,
            sessions,
            token_cutoffs,
        })
    }

    /// One `IMMEDIATE` transaction. SQLite's rowid needs no sequence: the next id is the
    /// highest plus one.
    fn import(&self, snapshot: &Snapshot, into_non_empty: bool) -> Result<(), ImportError> {
        let (_turn, mut conn) = self.writer()?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(DbError::from)?;
        let before = count_rows(&tx).map_err(DbError::from)?;
        if !before.is_empty() && !into_non_empty {
            return Err(ImportError::NotEmpty(before));
        }
        let sql = |err: rusqlite::Error| ImportError::Db(DbError::from(err));
        // Checked against what the target held before, all before the first write: the
        // source's own rows never conflict with each other here (a FastAPI database may
        // hold two emails equal but for case, which its index allowed).
        let users_to_check = if before.users == 0 {
            &[][..]
        } else {
            &snapshot.users[..]
        };
        for user in users_to_check {
            let (id_taken, holder): (bool, Option<i64>) = tx
                .prepare_cached(concat!(
                    "SELECT EXISTS(SELECT 1 FROM users WHERE id = ?3), ",
                    holder_of_key!()
                ))
                .map_err(sql)?
                .query_row(
                    params![email_key(&user.email), user.email, user.id],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .map_err(sql)?;
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
            tx.prepare_cached(
                "INSERT INTO users (id, name, phone, image_url, email, password_hash, \
                 created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .map_err(sql)?
            .execute(params![
                user.id,
                user.name,
                user.phone,
                user.image_url,
                user.email,
                user.password_hash,
                user.created_at,
                user.updated_at
            ])
            .map_err(sql)?;
        }
        for (key, user_id) in &snapshot.email_keys {
            tx.prepare_cached("INSERT INTO email_keys (key, user_id) VALUES (?1, ?2)")
                .map_err(sql)?
                .execute(params![key, user_id])
                .map_err(sql)?;
        }
        for s in &snapshot.sessions {
            tx.prepare_cached(
                "INSERT INTO sessions (id, user_id, family_hash, token_hash, previous_hash, \
                 rotated_at, created_at, last_used_at, expires_at, user_agent, client, \
                 revoked_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )
            .map_err(sql)?
            .execute(params![
                s.id,
                s.user_id,
                s.family_hash,
                s.token_hash,
                s.previous_hash,
                s.rotated_at,
                s.created_at,
                s.last_used_at,
                s.expires_at,
                s.user_agent,
                s.client,
                s.revoked_at
            ])
            .map_err(sql)?;
        }
        for (user_id, revoked_before) in &snapshot.token_cutoffs {
            tx.prepare_cached(
                "INSERT INTO token_cutoffs (user_id, revoked_before) VALUES (?1, ?2)",
            )
            .map_err(sql)?
            .execute(params![user_id, revoked_before])
            .map_err(sql)?;
        }
        tx.commit().map_err(sql)?;
        Ok(())
    }
}

/// Counts the rows of each table of account state.
fn count_rows(conn: &rusqlite::Connection) -> rusqlite::Result<RowCounts> {
    conn.query_row(
        "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM email_keys), \
         (SELECT count(*) FROM sessions), (SELECT count(*) FROM token_cutoffs)",
        [],
        |row| {
            let count = |idx| row.get::<_, i64>(idx).map(|n| n.max(0) as u64);
            Ok(RowCounts {
                users: count(0)?,
                email_keys: count(1)?,
                sessions: count(2)?,
                token_cutoffs: count(3)?,
            })
        },
    )
}

/// Revokes every live session of the user's but `keep`, and cuts off their sessionless tokens,
/// inside the caller's transaction; returns how many sessions ended.
fn revoke_all_but(
    tx: &rusqlite::Transaction<'_>,
    user_id: i64,
    keep: Option<&str>,
    now_ms: i64,
) -> Result<u64, DbError> {
    let ended = tx
        .prepare_cached(
            "UPDATE sessions SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL \
             AND expires_at > ?2 AND (?3 IS NULL OR id <> ?3)",
        )?
        .execute(params![user_id, now_ms, keep])?;
    tx.prepare_cached(CUT_OFF)?
        .execute(params![user_id, now_ms.div_euclid(1000)])?;
    Ok(ended as u64)
}

/// Gives every user without an email key its key, in id order, so that where two existing
/// emails are one identity the lower id keeps it (logged, never fatal); first drops keys whose
/// user is gone. Runs at every start; after the first it only finds rows written since by the
/// FastAPI service, and the collisions it logged before.
fn backfill_email_keys(tx: &rusqlite::Transaction<'_>) -> Result<(), DbError> {
    tx.execute(
        "DELETE FROM email_keys WHERE user_id NOT IN (SELECT id FROM users)",
        [],
    )?;
    let keyless: Vec<(i64, String)> = tx
        .prepare(
            "SELECT id, email FROM users WHERE id NOT IN (SELECT user_id FROM email_keys) \
             ORDER BY id",
        )?
        .query_map([], |row| Ok((row.get(0)?, any_text(row, 1)?)))?
        .collect::<Result<_, _>>()?;
    let mut given = 0;
    for (id, email) in keyless {
        let key = email_key(&email);
        if key.is_empty() {
            warn_keyless(id);
            continue;
        }
        let inserted = tx.execute(
            "INSERT INTO email_keys (key, user_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            params![key, id],
        )?;
        if inserted == 1 {
            given += 1;
        } else {
            let owner: i64 = tx.query_row(
                "SELECT user_id FROM email_keys WHERE key = ?1",
                params![key],
                |row| row.get(0),
            )?;
            warn_key_collision(id, owner);
        }
    }
    if given > 0 {
        log::info!("gave {given} existing users their email key");
    }
    Ok(())
}

fn user_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<UserRow> {
    Ok(UserRow {
        id: row.get(0)?,
        name: row.get(1)?,
        phone: row.get(2)?,
        image_url: row.get(3)?,
        email: row.get(4)?,
        password_hash: row.get(5)?,
        created_at: to_rfc3339(&any_text(row, 6)?),
        updated_at: to_rfc3339(&any_text(row, 7)?),
    })
}

/// Reads a column (a timestamp, or an email at start) as text. SQLite may hand back a number
/// if someone stored one, so take whatever is there rather than failing the whole row: one
/// odd row must not stop the server from starting.
fn any_text(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<String> {
    use rusqlite::types::ValueRef;
    Ok(match row.get_ref(idx)? {
        ValueRef::Text(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        ValueRef::Integer(n) => n.to_string(),
        ValueRef::Real(x) => x.to_string(),
        ValueRef::Null | ValueRef::Blob(_) => String::new(),
    })
}

/// What [`backup`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    /// The copy's size in bytes.
    pub bytes: u64,
    /// The users in the copy.
    pub users: u64,
    /// How many times the copy started over because the database changed under it.
    pub restarts: u32,
}

/// Pages copied per step of the online backup (4 MiB of 4 KiB pages): each step holds a read
/// lock on the source only while it copies them.
const BACKUP_PAGES_PER_STEP: std::os::raw::c_int = 1024;
/// The pause between steps, which lets other writers in.
const BACKUP_PAUSE: Duration = Duration::from_millis(5);
/// Restarts after which the copy is taken in one step: in a rollback-journal database written
/// to meanwhile (a WAL one never restarts, see `backup_into`), writes faster than the steps
/// would otherwise restart it forever.
const BACKUP_MAX_RESTARTS: u32 = 8;

/// Copies the SQLite database at `source` to `dest` with SQLite's online backup API, while
/// a server may be writing to it, and checks the copy with `PRAGMA integrity_check`.
///
/// The copy is written to a temporary file beside `dest`, switched from WAL to a rollback
/// journal (so it is one self-contained file), flushed to disk and renamed into place, so a
/// failed backup leaves no partial file. An existing `dest` is refused unless `overwrite`.
/// A missing source is refused rather than created.
pub fn backup(source: &Path, dest: &Path, overwrite: bool) -> Result<BackupReport, DbError> {
    if !source.is_file() {
        return Err(DbError::Other(format!(
            "the database file {} does not exist",
            source.display()
        )));
    }
    // Renaming a copy over the live file would cut the server off from it (see FileWatch).
    if let (Ok(a), Ok(b)) = (source.canonicalize(), dest.canonicalize()) {
        if a == b {
            return Err(DbError::Other(format!(
                "{} is the database itself; give another path",
                dest.display()
            )));
        }
    }
    if dest.exists() && !overwrite {
        return Err(DbError::Other(format!(
            "{} exists already (use --force to replace it)",
            dest.display()
        )));
    }
    let name = dest
        .file_name()
        .ok_or_else(|| DbError::Other(format!("{} names no file", dest.display())))?;
    let dir = match dest.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(DbError::Other(format!(
            "directory {} does not exist",
            dir.display()
        )));
    }
    let mut temporary_name = std::ffi::OsString::from(".");
    temporary_name.push(name);
    temporary_name.push(format!(".partial-{}", std::process::id()));
    let temporary = dir.join(temporary_name);
    let result = backup_into(source, &temporary).and_then(|report| {
        std::fs::rename(&temporary, dest).map_err(|e| {
            DbError::Other(format!("cannot move the copy to {}: {e}", dest.display()))
        })?;
        // The rename is durable once the directory is.
        if let Ok(dir) = std::fs::File::open(&dir) {
            let _ = dir.sync_all();
        }
        Ok(report)
    });
    if result.is_err() {
        for suffix in ["", "-journal", "-wal", "-shm"] {
            let mut path = temporary.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
    result
}

/// Takes the copy into `temporary` and checks it; see [`backup`].
fn backup_into(source: &Path, temporary: &Path) -> Result<BackupReport, DbError> {
    use rusqlite::backup::{Backup, StepResult};
    let cannot_write =
        |e: rusqlite::Error| DbError::Other(format!("cannot write {}: {e}", temporary.display()));
    // Read-write without create: a WAL database's readers need its shared-memory file, and a
    // path that is not there must fail, not become an empty database.
    let src = rusqlite::Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| DbError::Unavailable(format!("cannot open {}: {e}", source.display())))?;
    src.busy_timeout(BUSY_TIMEOUT)?;
    let mut dst = rusqlite::Connection::open(temporary).map_err(cannot_write)?;
    // In WAL mode (which the server sets), one read transaction held across every step pins
    // one snapshot, which each step copies from while the server's writes go on into the log:
    // the copy is one moment and never starts over, and no writer waits (a reader only holds
    // back checkpoints). In a rollback-journal database a held read lock would block writers
    // for the whole copy, so there each step reads on its own and a write restarts the copy.
    let journal: String = src.query_row("PRAGMA journal_mode", [], |row| row.get(0))?;
    let pinned = journal.eq_ignore_ascii_case("wal");
    if pinned {
        src.execute_batch("BEGIN; SELECT count(*) FROM sqlite_master;")?;
    }
    let mut restarts = 0;
    {
        let backup = Backup::new(&src, &mut dst).map_err(cannot_write)?;
        let mut remaining = i32::MAX;
        loop {
            let pages = if restarts >= BACKUP_MAX_RESTARTS {
                -1
            } else {
                BACKUP_PAGES_PER_STEP
            };
            // More, or Busy/Locked (a lock SQLite could not wait out): step again shortly.
            if matches!(backup.step(pages)?, StepResult::Done) {
                break;
            }
            let progress = backup.progress();
            if progress.remaining > remaining {
                restarts += 1;
            }
            remaining = progress.remaining;
            std::thread::sleep(BACKUP_PAUSE);
        }
    }
    if pinned {
        src.execute_batch("COMMIT")?;
    }
    dst.pragma_update(None, "journal_mode", "DELETE")
        .map_err(cannot_write)?;
    let verdict: String = dst.query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
    if verdict != "ok" {
        return Err(DbError::Other(format!(
            "the copy failed its integrity check: {verdict}"
        )));
    }
    let users: i64 = dst.query_row("SELECT count(*) FROM users", [], |row| row.get(0))?;
    dst.close().map_err(|(_, e)| cannot_write(e))?;
    let file = std::fs::File::open(temporary)
        .map_err(|e| DbError::Other(format!("cannot reopen {}: {e}", temporary.display())))?;
    file.sync_all()
        .map_err(|e| DbError::Other(format!("cannot flush {}: {e}", temporary.display())))?;
    let bytes = file.metadata().map(|meta| meta.len()).unwrap_or(0);
    Ok(BackupReport {
        bytes,
        users: users as u64,
        restarts,
    })
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::{DbError, SCHEMA};

    /// The FastAPI service's database, whose schema SQLAlchemy wrote.
    const FASTAPI_FIXTURE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/fastapi-backnd-api.sqlite3"
    );

    const INSERT: &str = "INSERT INTO users (name, phone, email, password_hash) \
                          VALUES ('Ada', '+44 20 7946 0958', 'ada@example.com', '$2b$04$hash')";

    /// An in-memory database with our schema and one user.
    fn ours() -> Connection {
        let conn = Connection::open_in_memory().expect("in-memory database");
        conn.execute_batch(SCHEMA).expect("schema");
        conn.execute(INSERT, []).expect("the first user");
        conn
    }

    /// Runs `sql`, which must fail, and classifies the failure as the backend does.
    fn failure(conn: &Connection, sql: &str) -> DbError {
        DbError::from(conn.execute(sql, []).expect_err("the statement fails"))
    }

    fn email_taken(conn: &Connection) -> DbError {
        failure(conn, &INSERT.replace("+44 20 7946 0958", "+1 555 0100"))
    }

    #[test]
    fn the_email_index_of_our_schema_means_email_taken() {
        assert!(matches!(email_taken(&ours()), DbError::EmailTaken));
    }

    #[test]
    fn the_email_index_of_the_fastapi_schema_means_email_taken() {
        let conn = Connection::open_in_memory().expect("in-memory database");
        conn.execute(
            "ATTACH DATABASE ?1 AS fixture",
            [format!("file:{FASTAPI_FIXTURE}?mode=ro")],
        )
        .expect("attach the fixture read-only");
        let ddl: Vec<String> = conn
            .prepare("SELECT sql FROM fixture.sqlite_master WHERE sql IS NOT NULL ORDER BY rowid")
            .and_then(|mut stmt| stmt.query_map([], |row| row.get(0))?.collect())
            .expect("the fixture's schema");
        assert!(ddl.iter().any(|sql| sql.contains("ix_users_email")));
        for sql in &ddl {
            conn.execute(sql, [])
                .expect("recreate the fixture's schema");
        }
        conn.execute(INSERT, []).expect("the first user");
        assert!(matches!(email_taken(&conn), DbError::EmailTaken));
    }

    #[test]
    fn an_email_index_on_an_expression_is_recognised_by_its_name() {
        let conn = ours();
        conn.execute_batch(
            "DROP INDEX ix_users_email; \
             CREATE UNIQUE INDEX ix_users_email ON users (lower(email))",
        )
        .expect("the index on lower(email)");
        let err = failure(
            &conn,
            &INSERT
                .replace("+44 20 7946 0958", "+1 555 0100")
                .replace("ada@", "ADA@"),
        );
        assert!(matches!(err, DbError::EmailTaken), "{err:?}");
    }

    #[test]
    fn a_second_holder_of_an_email_key_means_email_taken() {
        let conn = ours();
        conn.execute(
            "INSERT INTO email_keys (key, user_id) VALUES ('ada@example.com', 1)",
            [],
        )
        .expect("the first user's key");
        conn.execute(&INSERT.replace("ada@", "ADA@"), [])
            .expect("a second row, as a race would insert it");
        let err = failure(
            &conn,
            "INSERT INTO email_keys (key, user_id) VALUES ('ada@example.com', 2)",
        );
        assert!(matches!(err, DbError::EmailTaken), "{err:?}");
        // One user with two keys is a bug of ours, not a taken email.
        let err = failure(
            &conn,
            "INSERT INTO email_keys (key, user_id) VALUES ('other@example.com', 1)",
        );
        assert!(matches!(err, DbError::Other(_)), "{err:?}");
    }

    #[test]
    fn every_other_constraint_failure_is_other() {
        let bob = INSERT.replace("ada@", "bob@");
        let cases = [
            (
                "another unique index",
                "CREATE UNIQUE INDEX ix_users_phone ON users (phone)",
                bob.as_str(),
            ),
            (
                "a unique index that includes the email",
                "DROP INDEX ix_users_email; \
                 CREATE UNIQUE INDEX ix_users_email_phone ON users (email, phone)",
                INSERT,
            ),
            (
                "the primary key",
                "",
                "INSERT INTO users (id, name, phone, email, password_hash) \
                 VALUES (1, 'Bob', '1', 'bob@example.com', 'h')",
            ),
            (
                "NOT NULL",
                "",
                "INSERT INTO users (name, phone, email, password_hash) \
                 VALUES (NULL, '1', 'bob@example.com', 'h')",
            ),
            (
                "CHECK",
                "DROP TABLE users; \
                 CREATE TABLE users (id INTEGER PRIMARY KEY, name, image_url, email, \
                     password_hash, created_at, updated_at, phone CHECK (phone NOT LIKE '+44%'))",
                INSERT,
            ),
            (
                "a trigger",
                "CREATE TRIGGER no_uk BEFORE INSERT ON users WHEN NEW.phone LIKE '+44%' \
                 BEGIN SELECT RAISE(ABORT, 'no +44 numbers'); END",
                bob.as_str(),
            ),
        ];
        for (what, setup, insert) in cases {
            let conn = ours();
            conn.execute_batch(setup).expect("setup");
            let err = failure(&conn, insert);
            assert!(matches!(err, DbError::Other(_)), "{what}: {err:?}");
        }
    }

    #[test]
    fn a_password_hash_is_replaced_only_while_it_is_still_the_old_one() {
        use crate::db::{NewUserRow, PoolOptions, Store};
        let dir = tempfile::tempdir().expect("temporary directory");
        let pool = PoolOptions {
            max_connections: 2,
            connect_timeout: std::time::Duration::from_secs(5),
        };
        let db = super::SqliteDb::open(
            &dir.path().join("db.sqlite3"),
            pool,
            super::PoolEvents::default(),
        )
        .expect("open");
        let user = db
            .insert_user(&NewUserRow {
                name: "Ada",
                phone: "+44 20 7946 0958",
                image_url: None,
                email: "ada@example.com",
                password_hash: "old",
            })
            .expect("insert");
        // Someone changed the password after the login read "old": the upgrade must not win.
        assert!(!db
            .update_password_hash(user.id, "stale", "upgraded")
            .expect("update"));
        assert!(db
            .update_password_hash(user.id, "old", "upgraded")
            .expect("update"));
        let stored = db
            .find_user_by_id(user.id)
            .expect("find")
            .expect("the user");
        assert_eq!(stored.password_hash, "upgraded");
        assert_eq!(stored.updated_at, user.updated_at);
    }
}
