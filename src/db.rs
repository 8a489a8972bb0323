//! The database: the connection pool, the schema, and every SQL statement the service runs.
//!
//! Handlers never see SQL; they call the functions here with plain values and get rows or a
//! typed [`DbError`] back. SQLite runs in WAL mode with `synchronous=FULL` (a committed write
//! survives power loss) and a busy timeout, so concurrent writers wait instead of failing.

use std::path::Path;
use std::time::Duration;

use chrono::{NaiveDateTime, SecondsFormat, Utc};
use r2d2::{Pool, PooledConnection};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{params, OptionalExtension};

/// The schema, applied at every start without harming existing data.
const SCHEMA: &str = include_str!("../schema.sql");

/// How long a writer waits for another writer's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a request waits for a pooled connection before answering 503.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);

/// The timestamp format SQLAlchemy writes to SQLite (UTC, microseconds).
const SQLITE_TIMESTAMP: &str = "%Y-%m-%d %H:%M:%S%.6f";

/// A failure of a database call, sorted by what the client should be told.
#[derive(Debug)]
pub enum DbError {
    /// The email is already registered (checked, or caught by the unique index in a race).
    EmailTaken,
    /// The database cannot be reached or is locked beyond the busy timeout: retrying may work.
    Unavailable(String),
    /// Anything else: a bug or a damaged database.
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

impl From<rusqlite::Error> for DbError {
    fn from(err: rusqlite::Error) -> DbError {
        use rusqlite::ErrorCode;
        match err.sqlite_error_code() {
            Some(ErrorCode::ConstraintViolation) => DbError::EmailTaken,
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

/// The pooled database the service stores users in.
#[derive(Clone)]
pub struct Db {
    pool: Pool<SqliteConnectionManager>,
}

impl Db {
    /// Opens (creating if needed) the SQLite file at `path`, applies the schema and keeps up to
    /// `max_connections` pooled connections.
    pub fn open_sqlite(path: &Path, max_connections: u32) -> Result<Db, DbError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.is_dir() {
                return Err(DbError::Other(format!(
                    "directory {} does not exist",
                    parent.display()
                )));
            }
        }
        let manager = SqliteConnectionManager::file(path).with_init(|conn| {
            conn.busy_timeout(BUSY_TIMEOUT)?;
            // WAL lets readers run beside the one writer; FULL makes each commit durable.
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "FULL")
        });
        let pool = Pool::builder()
            .max_size(max_connections.max(1))
            .min_idle(Some(1))
            .connection_timeout(CHECKOUT_TIMEOUT)
            .build(manager)
            .map_err(|e| DbError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        let db = Db { pool };
        db.conn()?.execute_batch(SCHEMA)?;
        Ok(db)
    }

    fn conn(&self) -> Result<PooledConnection<SqliteConnectionManager>, DbError> {
        Ok(self.pool.get()?)
    }

    /// Checks that the database answers a query that reads the users table (`SELECT 1` alone
    /// never touches the file, so it passes on a database that is gone or damaged). `max(id)`
    /// reads one page of the primary key, whatever the table's size.
    pub fn ping(&self) -> Result<(), DbError> {
        self.conn()?
            .query_row("SELECT max(id) FROM users", [], |_| Ok(()))?;
        Ok(())
    }

    /// Finds a user by email, compared without regard to case.
    pub fn find_user_by_email(&self, email: &str) -> Result<Option<UserRow>, DbError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, name, phone, image_url, email, password_hash, created_at, updated_at
             FROM users WHERE lower(email) = lower(?1) ORDER BY id LIMIT 1",
        )?;
        Ok(stmt.query_row(params![email], user_from_row).optional()?)
    }

    /// Finds a user by id.
    pub fn find_user_by_id(&self, id: i64) -> Result<Option<UserRow>, DbError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, name, phone, image_url, email, password_hash, created_at, updated_at
             FROM users WHERE id = ?1",
        )?;
        Ok(stmt.query_row(params![id], user_from_row).optional()?)
    }

    /// Stores a new user and returns the stored row.
    ///
    /// Fails with [`DbError::EmailTaken`] when the email is registered already, whatever its
    /// case, including when another request registers it at the same moment: the check and the
    /// insert run in one `IMMEDIATE` transaction, which SQLite serialises across writers.
    pub fn insert_user(&self, user: &NewUserRow<'_>) -> Result<UserRow, DbError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let taken: bool = tx
            .prepare_cached("SELECT EXISTS(SELECT 1 FROM users WHERE lower(email) = lower(?1))")?
            .query_row(params![user.email], |row| row.get(0))?;
        if taken {
            return Err(DbError::EmailTaken);
        }
        let now = Utc::now().naive_utc().format(SQLITE_TIMESTAMP).to_string();
        let row = tx
            .prepare_cached(
                "INSERT INTO users (name, phone, image_url, email, password_hash, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
                 RETURNING id, name, phone, image_url, email, password_hash, created_at, updated_at",
            )?
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
        tx.commit()?;
        Ok(row)
    }
}

fn user_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<UserRow> {
    Ok(UserRow {
        id: row.get(0)?,
        name: row.get(1)?,
        phone: row.get(2)?,
        image_url: row.get(3)?,
        email: row.get(4)?,
        password_hash: row.get(5)?,
        created_at: to_rfc3339(&timestamp_text(row, 6)?),
        updated_at: to_rfc3339(&timestamp_text(row, 7)?),
    })
}

/// Reads a timestamp column as text. SQLite may hand back a number if someone stored one, so
/// take whatever is there rather than failing the whole row.
fn timestamp_text(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<String> {
    use rusqlite::types::ValueRef;
    Ok(match row.get_ref(idx)? {
        ValueRef::Text(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        ValueRef::Integer(n) => n.to_string(),
        ValueRef::Real(x) => x.to_string(),
        ValueRef::Null | ValueRef::Blob(_) => String::new(),
    })
}

/// Renders a stored SQLite timestamp (`YYYY-MM-DD HH:MM:SS[.ffffff]`, UTC, as SQLAlchemy and
/// `CURRENT_TIMESTAMP` write it) as RFC 3339 UTC, keeping every non-zero fraction digit. Text
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
    use super::to_rfc3339;

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
