//! What every handler shares: the database, the token keys and the hashing cost.

use crate::db::Db;
use crate::security::TokenKeys;

/// The state shared by all request handlers, built once at start.
pub struct AppState {
    /// The user store.
    pub db: Db,
    /// Issues and verifies access tokens.
    pub tokens: TokenKeys,
    /// bcrypt cost for new hashes, and for the dummy check of unknown emails.
    pub bcrypt_cost: u32,
}
