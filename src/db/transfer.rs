//! Moving account state between databases (`backnd-api migrate`): what is copied, in what
//! shape, and the counting that proves the copy whole.
//!
//! What is copied is every row of the account state: users (ids, hashes and timestamps as
//! stored), their email keys, their sessions and their token cutoffs. The login throttling's
//! tables (`login_failures`, a sliding window of at most `LOGIN_FAILURE_WINDOW`, and
//! `login_known_clients`, the addresses that may use the last tenth of that budget) are not:
//! they start empty on the target, which at worst lets an account's known addresses count as
//! new until their next successful login.
//!
//! The source is read in one read transaction (a consistent snapshot) into memory, which for
//! the deployments this binary is for (thousands of users, not millions) is a few megabytes;
//! the target is written in one transaction, so a failed migration leaves it as it was. Each
//! backend's statements are in its own file ([`super::Store::export`],
//! [`super::Store::import`]); this module holds none.

use super::{Db, DbError};

/// A user row as stored, timestamps as UTC text `YYYY-MM-DD HH:MM:SS[.ffffff]` (SQLite's
/// layout, which PostgreSQL reads back as the same instant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The primary key, kept.
    pub id: i64,
    /// Display name.
    pub name: String,
    /// Phone number.
    pub phone: String,
    /// Avatar URL, if any.
    pub image_url: Option<String>,
    /// Email address as stored.
    pub email: String,
    /// The bcrypt hash, copied as it is.
    pub password_hash: String,
    /// When created, UTC text.
    pub created_at: String,
    /// When last changed, UTC text.
    pub updated_at: String,
}

/// A session row as stored (times in Unix milliseconds, secrets as their SHA-256 hashes; the
/// columns of `sessions` in schema.sql).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The public id (`sid`).
    pub id: String,
    /// Whose session it is.
    pub user_id: i64,
    /// SHA-256 of the refresh token's family part.
    pub family_hash: String,
    /// SHA-256 of the current secret.
    pub token_hash: String,
    /// SHA-256 of the secret the last refresh spent.
    pub previous_hash: Option<String>,
    /// When the last refresh happened.
    pub rotated_at: Option<i64>,
    /// When the login that opened it happened.
    pub created_at: i64,
    /// When it was last opened or refreshed.
    pub last_used_at: i64,
    /// When it ends unless refreshed.
    pub expires_at: i64,
    /// The `User-Agent` of its last login or refresh.
    pub user_agent: Option<String>,
    /// The address of its last login or refresh.
    pub client: String,
    /// When it was ended, if it was.
    pub revoked_at: Option<i64>,
}

/// Every row of account state in one database, read in one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The users, by id.
    pub users: Vec<UserRecord>,
    /// `(key, user_id)` of `email_keys`.
    pub email_keys: Vec<(String, i64)>,
    /// The sessions, live or not.
    pub sessions: Vec<SessionRecord>,
    /// `(user_id, revoked_before)` of `token_cutoffs`.
    pub token_cutoffs: Vec<(i64, i64)>,
}

impl Snapshot {
    /// How many rows of each table it holds.
    pub fn counts(&self) -> RowCounts {
        RowCounts {
            users: self.users.len() as u64,
            email_keys: self.email_keys.len() as u64,
            sessions: self.sessions.len() as u64,
            token_cutoffs: self.token_cutoffs.len() as u64,
        }
    }
}

/// Rows of each copied table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowCounts {
    /// Rows of `users`.
    pub users: u64,
    /// Rows of `email_keys`.
    pub email_keys: u64,
    /// Rows of `sessions`.
    pub sessions: u64,
    /// Rows of `token_cutoffs`.
    pub token_cutoffs: u64,
}

impl RowCounts {
    /// Whether every table is empty.
    pub fn is_empty(&self) -> bool {
        *self == RowCounts::default()
    }

    /// The rows added from `before` to `self`, table by table (saturating).
    pub fn since(&self, before: &RowCounts) -> RowCounts {
        RowCounts {
            users: self.users.saturating_sub(before.users),
            email_keys: self.email_keys.saturating_sub(before.email_keys),
            sessions: self.sessions.saturating_sub(before.sessions),
            token_cutoffs: self.token_cutoffs.saturating_sub(before.token_cutoffs),
        }
    }
}

impl std::fmt::Display for RowCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} users, {} email keys, {} sessions, {} token cutoffs",
            self.users, self.email_keys, self.sessions, self.token_cutoffs
        )
    }
}

/// Why [`super::Store::import`] wrote nothing.
#[derive(Debug)]
pub enum ImportError {
    /// The target holds rows already and importing into it was not allowed.
    NotEmpty(RowCounts),
    /// A row would collide with one in the target (an id, or an email's identity).
    Conflict(String),
    /// The database failed.
    Db(DbError),
}

impl From<DbError> for ImportError {
    fn from(err: DbError) -> ImportError {
        ImportError::Db(err)
    }
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImportError::NotEmpty(counts) => write!(
                f,
                "the target database is not empty ({counts}); nothing was copied"
            ),
            ImportError::Conflict(what) => write!(f, "{what}; nothing was copied"),
            ImportError::Db(err) => write!(f, "{err}; nothing was copied"),
        }
    }
}

/// What a migration did, counted on both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    /// The rows read from the source.
    pub copied: RowCounts,
    /// The target's rows before.
    pub target_before: RowCounts,
    /// The target's rows after, counted again once committed.
    pub target_after: RowCounts,
    /// The source's rows, counted again after the copy.
    pub source_after: RowCounts,
}

impl Migrated {
    /// Whether the counts agree: the target gained exactly the rows read, and the source still
    /// holds exactly them (a server writing to it meanwhile would make the copy stale).
    pub fn is_whole(&self) -> bool {
        self.target_after.since(&self.target_before) == self.copied
            && self.source_after == self.copied
    }
}

/// Copies every row of account state from `source` into `target` in one transaction on the
/// target, keeping ids, hashes and timestamps, and counts both sides afterwards (see
/// [`Migrated::is_whole`]). A target holding rows is refused unless `into_non_empty`; even
/// then, a user whose id or email identity is in the target already is refused, never merged.
pub fn migrate(source: &Db, target: &Db, into_non_empty: bool) -> Result<Migrated, ImportError> {
    let snapshot = source.export()?;
    let target_before = target.count_rows()?;
    target.import(&snapshot, into_non_empty)?;
    Ok(Migrated {
        copied: snapshot.counts(),
        target_before,
        target_after: target.count_rows()?,
        source_after: source.count_rows()?,
    })
}
