//! What every handler shares: the database, the token keys, the hashing cost and the throttle.

use crate::db::Db;
use std::sync::Arc;

use crate::security::TokenKeys;
use crate::throttle::Throttle;

/// The state shared by all request handlers, built once at start.
pub struct AppState {
    /// The user store.
    pub db: Db,
    /// Issues and verifies access tokens.
    pub tokens: TokenKeys,
    /// bcrypt cost for new hashes, and for the dummy check of unknown emails.
    pub bcrypt_cost: u32,
    /// Login and registration limits (`RATE_LIMITS` and the settings after it).
    pub throttle: Arc<Throttle>,
}

#[cfg(test)]
impl AppState {
    /// A state over a new SQLite database in a temporary directory (kept while the directory
    /// is), with bcrypt at its cheapest cost, for unit tests.
    pub(crate) fn for_tests() -> (AppState, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let database = crate::config::DatabaseConfig::Sqlite {
            path: dir.path().join("db.sqlite3"),
        };
        let pool = crate::db::PoolOptions {
            max_connections: 2,
            connect_timeout: std::time::Duration::from_secs(5),
        };
        let db = Db::open(&database, pool).expect("database");
        let tokens = TokenKeys::new(&[1; 32], jsonwebtoken::Algorithm::HS256, 5);
        let state = AppState {
            db,
            tokens,
            bcrypt_cost: 4,
            throttle: Arc::new(Throttle::new(crate::throttle::Limits::off())),
        };
        (state, dir)
    }
}
