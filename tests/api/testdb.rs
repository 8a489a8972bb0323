//! The suite's database backend and direct access to a test's database.
//!
//! The same tests run on SQLite (the default) and on PostgreSQL (`TEST_BACKEND=postgres` with
//! `TEST_POSTGRES_URL`). Each test gets a fresh database: a SQLite file in its own temporary
//! directory, or a PostgreSQL schema of its own, dropped when the test ends.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use postgres::NoTls;

/// A row as stored, every column as text in SQLite's layout (`YYYY-MM-DD HH:MM:SS[.ffffff]`).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredUser {
    pub id: i64,
    pub name: String,
    pub phone: String,
    pub image_url: Option<String>,
    pub email: String,
    pub password_hash: String,
    pub created_at: String,
    pub updated_at: String,
}

/// The FastAPI service's database, as its SQLite file holds it.
pub const FASTAPI_FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/fastapi-backnd-api.sqlite3"
);

/// The users table as SQLAlchemy's `create_all` writes it for PostgreSQL from the FastAPI
/// service's model (`Integer` primary key → SERIAL, `DateTime` → naive TIMESTAMP).
const SQLALCHEMY_POSTGRES_DDL: &str = "
CREATE TABLE users (
    id SERIAL NOT NULL,
    name VARCHAR(100) NOT NULL,
    phone VARCHAR(32) NOT NULL,
    image_url VARCHAR(500),
    email VARCHAR(255) NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    created_at TIMESTAMP WITHOUT TIME ZONE DEFAULT now() NOT NULL,
    updated_at TIMESTAMP WITHOUT TIME ZONE DEFAULT now() NOT NULL,
    PRIMARY KEY (id)
);
CREATE UNIQUE INDEX ix_users_email ON users (email);
CREATE INDEX ix_users_id ON users (id);
";

/// Which database the suite runs against.
#[derive(Debug, Clone)]
pub enum Backend {
    /// A SQLite file per test.
    Sqlite,
    /// A schema per test in this PostgreSQL database.
    Postgres { url: String },
}

/// Reads the backend from `TEST_BACKEND` (`sqlite`, the default, or `postgres`).
pub fn backend() -> Backend {
    match std::env::var("TEST_BACKEND").as_deref() {
        Ok("postgres") => Backend::Postgres {
            url: std::env::var("TEST_POSTGRES_URL")
                .expect("TEST_BACKEND=postgres needs TEST_POSTGRES_URL"),
        },
        Ok("sqlite") | Err(_) => Backend::Sqlite,
        Ok(other) => panic!("unknown TEST_BACKEND {other:?}: use sqlite or postgres"),
    }
}

/// Direct access to one test's database, for arranging and checking what the API cannot show.
#[derive(Debug, Clone)]
pub enum TestDb {
    /// The SQLite file.
    Sqlite(PathBuf),
    /// A schema in a PostgreSQL database.
    Postgres { url: String, schema: String },
}

/// A fresh, empty database for one test, removed when dropped (after the server has stopped).
pub struct FreshDb {
    pub db: TestDb,
    /// The `DATABASE_URL` the server is given.
    pub database_url: String,
    _dir: Option<tempfile::TempDir>,
}

impl FreshDb {
    /// Creates an empty database on the suite's backend.
    pub fn new() -> FreshDb {
        match backend() {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let path = dir.path().join("db.sqlite3");
                FreshDb {
                    database_url: format!("sqlite:///{}", path.display()),
                    db: TestDb::Sqlite(path),
                    _dir: Some(dir),
                }
            }
            Backend::Postgres { url } => {
                static NEXT: AtomicUsize = AtomicUsize::new(0);
                let schema = format!(
                    "test_{}_{}",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::SeqCst)
                );
                let mut admin = postgres::Client::connect(&url, NoTls)
                    .unwrap_or_else(|e| panic!("connect to TEST_POSTGRES_URL: {e}"));
                admin
                    .batch_execute(&format!(
                        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
                    ))
                    .expect("create the test schema");
                FreshDb {
                    database_url: with_search_path(&url, &schema),
                    db: TestDb::Postgres { url, schema },
                    _dir: None,
                }
            }
        }
    }

    /// A database holding the FastAPI service's four users as it stored them: a copy of its
    /// SQLite file, or on PostgreSQL the table SQLAlchemy creates there, filled with the same
    /// rows.
    pub fn with_fastapi_users() -> FreshDb {
        let fresh = FreshDb::new();
        match &fresh.db {
            TestDb::Sqlite(path) => {
                std::fs::copy(FASTAPI_FIXTURE, path).expect("copy the fixture database");
            }
            TestDb::Postgres { .. } => {
                let mut client = fresh.db.postgres();
                client
                    .batch_execute(SQLALCHEMY_POSTGRES_DDL)
                    .expect("create SQLAlchemy's table");
                for user in stored_users_in(Path::new(FASTAPI_FIXTURE)) {
                    client
                        .execute(
                            "INSERT INTO users (id, name, phone, image_url, email, password_hash,
                                                created_at, updated_at)
                             VALUES ($1, $2, $3, $4, $5, $6, $7::text::timestamp, $8::text::timestamp)",
                            &[
                                &i32::try_from(user.id).expect("small id"),
                                &user.name,
                                &user.phone,
                                &user.image_url,
                                &user.email,
                                &user.password_hash,
                                &user.created_at,
                                &user.updated_at,
                            ],
                        )
                        .expect("copy a FastAPI row");
                }
                client
                    .batch_execute("SELECT setval('users_id_seq', (SELECT max(id) FROM users))")
                    .expect("advance the id sequence past the copied rows");
            }
        }
        fresh
    }
}

impl Drop for FreshDb {
    fn drop(&mut self) {
        if let TestDb::Postgres { url, schema } = &self.db {
            if let Ok(mut admin) = postgres::Client::connect(url, NoTls) {
                let _ = admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
            }
        }
    }
}

/// Adds `options=-csearch_path=<schema>` to a PostgreSQL URL, so that every connection made
/// from it works in that schema.
fn with_search_path(url: &str, schema: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-csearch_path%3D{schema}")
}

impl TestDb {
    /// A new connection to the test's PostgreSQL schema; panics on a SQLite database.
    pub fn postgres(&self) -> postgres::Client {
        let TestDb::Postgres { url, schema } = self else {
            panic!("not a PostgreSQL database")
        };
        postgres::Client::connect(&with_search_path(url, schema), NoTls)
            .expect("connect to the test schema")
    }

    fn sqlite(path: &Path) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(path).expect("open the database");
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .expect("busy timeout");
        conn
    }

    /// Runs a query returning one value (e.g. `SELECT count(*) FROM users` as `i64`).
    pub fn scalar<T>(&self, sql: &str) -> T
    where
        T: rusqlite::types::FromSql + for<'a> postgres::types::FromSql<'a>,
    {
        match self {
            TestDb::Sqlite(path) => Self::sqlite(path)
                .query_row(sql, [], |row| row.get(0))
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
            TestDb::Postgres { .. } => self
                .postgres()
                .query_one(sql, &[])
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .get(0),
        }
    }

    /// Runs a statement, returning how many rows it changed.
    pub fn execute(&self, sql: &str) -> u64 {
        match self {
            TestDb::Sqlite(path) => Self::sqlite(path)
                .execute(sql, [])
                .map(|n| n as u64)
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
            TestDb::Postgres { .. } => self
                .postgres()
                .execute(sql, &[])
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
        }
    }

    /// Counts the stored users.
    pub fn count_users(&self) -> i64 {
        self.scalar::<i64>("SELECT count(*) FROM users")
    }

    /// Every stored user in id order, timestamps in SQLite's text layout (a fraction only
    /// where there is one), so rows from either backend compare with the fixture's.
    pub fn stored_users(&self) -> Vec<StoredUser> {
        match self {
            TestDb::Sqlite(path) => stored_users_in(path),
            TestDb::Postgres { .. } => {
                let as_sqlite_text = |column: &str| {
                    format!(
                        "CASE WHEN date_trunc('second', {column}) = {column}
                              THEN to_char({column}, 'YYYY-MM-DD HH24:MI:SS')
                              ELSE to_char({column}, 'YYYY-MM-DD HH24:MI:SS.US') END"
                    )
                };
                let sql = format!(
                    "SELECT id::int8, name, phone, image_url, email, password_hash, {}, {}
                     FROM users ORDER BY id",
                    as_sqlite_text("created_at"),
                    as_sqlite_text("updated_at")
                );
                self.postgres()
                    .query(sql.as_str(), &[])
                    .expect("read the users")
                    .iter()
                    .map(|r| StoredUser {
                        id: r.get(0),
                        name: r.get(1),
                        phone: r.get(2),
                        image_url: r.get(3),
                        email: r.get(4),
                        password_hash: r.get(5),
                        created_at: r.get(6),
                        updated_at: r.get(7),
                    })
                    .collect()
            }
        }
    }

    /// Breaks the database under the running server, so every query fails.
    ///
    /// SQLite: the file, its write-ahead log and its shared-memory index are overwritten in
    /// place (same inode, so the server's open handles see it) with bytes that are not SQLite's;
    /// deleting or replacing the file would not do, as open handles keep the old inode, and
    /// running as root ignores permissions. PostgreSQL: the test's schema is dropped.
    pub fn destroy(&self) {
        match self {
            TestDb::Sqlite(db) => {
                use std::io::Write;
                let sidecar = |suffix: &str| {
                    let mut name = db.file_name().expect("file name").to_os_string();
                    name.push(suffix);
                    db.with_file_name(name)
                };
                for path in [sidecar("-shm"), sidecar("-wal"), db.clone()] {
                    if !path.exists() {
                        continue;
                    }
                    let len = std::fs::metadata(&path).expect("metadata").len().max(4096);
                    let mut file = std::fs::OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
                    let garbage: Vec<u8> = (0..len).map(|i| (i * 7 + 13) as u8).collect();
                    file.write_all(&garbage).expect("overwrite");
                    file.sync_all().expect("sync");
                }
            }
            TestDb::Postgres { url, schema } => {
                let mut admin = postgres::Client::connect(url, NoTls).expect("connect");
                admin
                    .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
                    .expect("drop the test schema");
            }
        }
    }
}

/// Reads every user from a SQLite file, in id order.
pub fn stored_users_in(path: &Path) -> Vec<StoredUser> {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the database read-only");
    let mut stmt = conn
        .prepare(
            "SELECT id, name, phone, image_url, email, password_hash, created_at, updated_at
             FROM users ORDER BY id",
        )
        .expect("prepare");
    stmt.query_map([], |r| {
        Ok(StoredUser {
            id: r.get(0)?,
            name: r.get(1)?,
            phone: r.get(2)?,
            image_url: r.get(3)?,
            email: r.get(4)?,
            password_hash: r.get(5)?,
            created_at: r.get(6)?,
            updated_at: r.get(7)?,
        })
    })
    .expect("query")
    .collect::<Result<_, _>>()
    .expect("rows")
}
