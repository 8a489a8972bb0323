//! The SQLite backend: its pool, its schema (`schema.sql`) and its statements.
//!
//! SQLite runs in WAL mode with `synchronous=FULL` (a committed write survives power loss) and a
//! busy timeout, so concurrent writers wait instead of failing.

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use r2d2::{Pool, PooledConnection};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{params, OptionalExtension};

use super::{to_rfc3339, DbError, NewUserRow, PoolOptions, UserRow};

/// The user columns in the order `user_from_row` reads them. A macro so each statement is one
/// literal.
macro_rules! user_columns {
    () => {
        "id, name, phone, image_url, email, password_hash, created_at, updated_at"
    };
}

/// The schema, applied at every start without harming existing data.
const SCHEMA: &str = include_str!("../../schema.sql");

/// How long a writer waits for another writer's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The timestamp format SQLAlchemy writes to SQLite (UTC, microseconds).
const SQLITE_TIMESTAMP: &str = "%Y-%m-%d %H:%M:%S%.6f";

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

/// A pooled SQLite database.
#[derive(Clone)]
pub struct SqliteDb {
    pool: Pool<SqliteConnectionManager>,
}

impl SqliteDb {
    /// Opens (creating if needed) the SQLite file at `path`, applies the schema and keeps up to
    /// `pool.max_connections` pooled connections.
    pub fn open(path: &Path, pool: PoolOptions) -> Result<SqliteDb, DbError> {
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
            .max_size(pool.max_connections.max(1))
            .min_idle(Some(1))
            .connection_timeout(pool.connect_timeout)
            .build(manager)
            .map_err(|e| DbError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        let db = SqliteDb { pool };
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
        let mut stmt = conn.prepare_cached(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE lower(email) = lower(?1) ORDER BY id LIMIT 1"
        ))?;
        Ok(stmt.query_row(params![email], user_from_row).optional()?)
    }

    /// Finds a user by id.
    pub fn find_user_by_id(&self, id: i64) -> Result<Option<UserRow>, DbError> {
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
