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
    /// How long sessions live and how their refresh tokens are judged.
    pub sessions: SessionRules,
}

/// How long sessions live and how a spent refresh token is judged (`crate::sessions`).
#[derive(Debug, Clone, Copy)]
pub struct SessionRules {
    /// How long a session lives without a refresh, in milliseconds
    /// (`JWT_REFRESH_TOKEN_EXPIRE_DAYS`).
    pub lifetime_ms: i64,
    /// How long after a refresh its spent token counts as a retry, in milliseconds
    /// (`REFRESH_REUSE_GRACE`).
    pub reuse_grace_ms: i64,
}

impl SessionRules {
    /// The rules the configuration sets.
    pub fn from_config(config: &crate::Config) -> SessionRules {
        SessionRules {
            lifetime_ms: crate::db::millis(config.refresh_token_lifetime),
            reuse_grace_ms: crate::db::millis(config.refresh_reuse_grace),
        }
    }
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
            sessions: SessionRules {
                lifetime_ms: 30 * 86_400_000,
                reuse_grace_ms: 10_000,
            },
        };
        (state, dir)
    }
}
