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

use super::{
    to_rfc3339, DbError, LoginBudget, NewUserRow, PoolOptions, Store, UserRow, KNOWN_CLIENT_MS,
    PRUNE_EVERY,
};

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

/// How SQLite names the email's unique index in "UNIQUE constraint failed: <name>": the one
/// constraint failure that means the email is taken. Every other one (NOT NULL, CHECK, a
/// trigger's `RAISE`, the primary key, a unique index someone else added) is a failure of ours.
const EMAIL_INDEX_NAMES: [&str; 2] = [
    // `ix_users_email ON users (email)`, in schema.sql and in the FastAPI service's databases
    // (SQLAlchemy's `unique=True, index=True`). An index on plain columns is named by its
    // columns, `table.column`, as a column's own `UNIQUE` would be.
    "users.email",
    // The same index if it is ever built on an expression such as `lower(email)`: SQLite then
    // names it by its name.
    "index 'ix_users_email'",
];

/// Tells whether `err` is the email's unique index refusing a second row for one address.
fn is_email_taken(err: &rusqlite::Error) -> bool {
    match err {
        rusqlite::Error::SqliteFailure(cause, Some(message)) => {
            cause.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
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

    /// Finds a user by email, compared without regard to case.
    fn find_user_by_email(&self, email: &str) -> Result<Option<UserRow>, DbError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE lower(email) = lower(?1) ORDER BY id LIMIT 1"
        ))?;
        Ok(stmt.query_row(params![email], user_from_row).optional()?)
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
    /// Fails with [`DbError::EmailTaken`] when the email is registered already, whatever its
    /// case, including when another request registers it at the same moment: the check and the
    /// insert run in one `IMMEDIATE` transaction, which SQLite serialises across writers.
    fn insert_user(&self, user: &NewUserRow<'_>) -> Result<UserRow, DbError> {
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
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let since = now_ms.saturating_sub(window_ms);
        tx.prepare_cached("DELETE FROM login_failures WHERE account_key = ?1 AND at <= ?2")?
            .execute(params![account, since])?;
        let (count, oldest): (i64, Option<i64>) = tx
            .prepare_cached("SELECT count(*), min(at) FROM login_failures WHERE account_key = ?1")?
            .query_row(params![account], |row| Ok((row.get(0)?, row.get(1)?)))?;
        let spent = if count >= i64::from(limit) {
            true
        } else if count >= i64::from(limit.saturating_sub(kept_for_known)) {
            let known: bool = tx
                .prepare_cached(
                    "SELECT EXISTS(SELECT 1 FROM login_known_clients \
                     WHERE account_key = ?1 AND client = ?2 AND last_success > ?3)",
                )?
                .query_row(
                    params![account, client, now_ms.saturating_sub(KNOWN_CLIENT_MS)],
                    |row| row.get(0),
                )?;
            !known
        } else {
            false
        };
        if spent {
            let retry_after_ms = oldest.map_or(0, |at| at + window_ms - now_ms);
            return Ok(LoginBudget::Spent { retry_after_ms });
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
        let mut conn = self.conn()?;
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
}
