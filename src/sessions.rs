//! Sessions: what a login opens, a refresh token keeps alive, and a logout ends.
//!
//! A refresh token is 48 random bytes sent as 64 base64url characters, opaque to clients. Its
//! first 16 bytes (the *family*) name its session for as long as the session lives; the other
//! 32 (the *secret*) change at every refresh. The database keeps only the SHA-256 of each part
//! (a fast hash is right for values this random; bcrypt is for passwords people choose), so a
//! copy of the database holds no usable token.
//!
//! Because the family outlives each secret, a spent token is always recognised as one of its
//! session's, however long ago it was spent, and the session stores just two hashes: the
//! current secret and the one the last refresh spent. Presenting any secret that is not the
//! current one is reuse ([`Presented`]): a client's retry when it is the secret just spent,
//! within `REFRESH_REUSE_GRACE`; theft otherwise, which revokes the whole session, as RFC 9700
//! (OAuth 2.0 security best current practice, section 4.14.2) recommends.
//!
//! The session's public id (`sid` in access tokens, `id` in `GET /auth/sessions`) is random too
//! and unrelated to the token, so knowing it grants nothing.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Bytes naming a session inside its refresh tokens.
const FAMILY_BYTES: usize = 16;
/// Bytes of a refresh token's changing secret.
const SECRET_BYTES: usize = 32;
/// Bytes of a session's public id.
const ID_BYTES: usize = 16;

/// Live sessions one user may hold. A login past it ends the user's least recently used
/// session, so that no account (or anyone holding its password) can grow the table without
/// end.
pub const SESSIONS_PER_USER: u32 = 100;

/// How long a revoked session stays in the table (for an operator to see) before it is pruned.
pub const REVOKED_KEPT_MS: i64 = 24 * 3600 * 1000;

/// Revoked sessions kept per user within [`REVOKED_KEPT_MS`]: a login deletes the user's older
/// ones, so that logging in and out in a loop cannot grow the table either.
pub const REVOKED_KEPT_PER_USER: u32 = 100;

/// Ended sessions each login deletes at most (expired ones, and revoked ones past
/// [`REVOKED_KEPT_MS`]): more than the one session a login adds, so the table keeps up, and few
/// enough that a login after a long pause does not stall on a backlog.
pub const PRUNED_PER_LOGIN: i64 = 100;

/// The longest user agent a session keeps; longer ones are cut.
const USER_AGENT_CHARS: usize = 256;

/// A refresh token, as generated or as read back from a client.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken {
    family: [u8; FAMILY_BYTES],
    secret: [u8; SECRET_BYTES],
}

impl std::fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshToken(..)") // never printed, not even in a test failure
    }
}

impl RefreshToken {
    /// The first token of a new session.
    pub fn generate() -> Result<RefreshToken, getrandom::Error> {
        let mut token = RefreshToken {
            family: [0; FAMILY_BYTES],
            secret: [0; SECRET_BYTES],
        };
        getrandom::fill(&mut token.family)?;
        getrandom::fill(&mut token.secret)?;
        Ok(token)
    }

    /// The token that replaces this one at a refresh: the same session, a new secret.
    pub fn rotated(&self) -> Result<RefreshToken, getrandom::Error> {
        let mut next = self.clone();
        getrandom::fill(&mut next.secret)?;
        Ok(next)
    }

    /// Reads a token as [`RefreshToken::encode`] writes it; `None` for anything else.
    pub fn parse(text: &str) -> Option<RefreshToken> {
        // Checked before decoding, so that no length of input costs more than a token's.
        if text.len() != (FAMILY_BYTES + SECRET_BYTES) * 4 / 3 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        let (family, secret) = bytes.split_at_checked(FAMILY_BYTES)?;
        Some(RefreshToken {
            family: family.try_into().ok()?,
            secret: secret.try_into().ok()?,
        })
    }

    /// The token as sent to clients: 64 base64url characters.
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(FAMILY_BYTES + SECRET_BYTES);
        bytes.extend_from_slice(&self.family);
        bytes.extend_from_slice(&self.secret);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// What the database finds the session by: SHA-256 of the family, in hex.
    pub fn family_hash(&self) -> String {
        hex_sha256(&self.family)
    }

    /// What the database compares: SHA-256 of the secret, in hex.
    pub fn secret_hash(&self) -> String {
        hex_sha256(&self.secret)
    }
}

/// A new session's public id: 16 random bytes as 22 base64url characters.
pub fn new_session_id() -> Result<String, getrandom::Error> {
    let mut id = [0; ID_BYTES];
    getrandom::fill(&mut id)?;
    Ok(URL_SAFE_NO_PAD.encode(id))
}

/// Whether `text` could be a session id: checked before a lookup, so that a path parameter of
/// any other shape is a 404 without a query.
pub fn is_session_id(text: &str) -> bool {
    text.len() == (ID_BYTES * 4).div_ceil(3)
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The user agent a session keeps: control characters dropped (it is shown back to the user
/// and may be logged), and at most [`USER_AGENT_CHARS`] characters.
pub fn user_agent(header: Option<&str>) -> Option<String> {
    let kept: String = header?
        .chars()
        .filter(|c| !c.is_control())
        .take(USER_AGENT_CHARS)
        .collect();
    let kept = kept.trim();
    (!kept.is_empty()).then(|| kept.to_owned())
}

fn hex_sha256(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    Sha256::digest(bytes)
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

/// A session's refresh state as stored, for [`Presented::of`].
#[derive(Debug, Clone)]
pub struct StoredSecret {
    /// SHA-256 of the current secret.
    pub token_hash: String,
    /// SHA-256 of the secret the last refresh spent, if there was one.
    pub previous_hash: Option<String>,
    /// When the last refresh happened (Unix milliseconds).
    pub rotated_at: Option<i64>,
    /// Whether the session has been ended.
    pub revoked: bool,
    /// When the session ends unless refreshed (Unix milliseconds).
    pub expires_at: i64,
}

/// What a refresh token presented for a session turned out to be: the rule both database
/// backends apply inside the transaction that holds the session's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented {
    /// The current token of a live session: rotate it.
    Current,
    /// The token the last refresh spent, again within the grace: a client that retried. A
    /// plain 401, nothing changes.
    Retry,
    /// A spent token outside the grace: someone else holds a copy. Revoke the session.
    Reuse,
    /// The session has ended (revoked or expired): a plain 401.
    Ended,
}

impl Presented {
    /// Classifies the secret hashed to `presented` against `stored` at `now` (Unix ms).
    pub fn of(stored: &StoredSecret, presented: &str, now: i64, grace_ms: i64) -> Presented {
        if stored.revoked || stored.expires_at <= now {
            Presented::Ended
        } else if constant_time_eq(stored.token_hash.as_bytes(), presented.as_bytes()) {
            Presented::Current
        } else if stored
            .previous_hash
            .as_deref()
            .is_some_and(|previous| constant_time_eq(previous.as_bytes(), presented.as_bytes()))
            && stored.rotated_at.is_some_and(|at| now - at < grace_ms)
        {
            Presented::Retry
        } else {
            Presented::Reuse
        }
    }
}

/// Compares two hashes without stopping at the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_and_its_parts_hash_apart() {
        let token = RefreshToken::generate().expect("randomness");
        let text = token.encode();
        assert_eq!(text.len(), 64);
        assert_eq!(RefreshToken::parse(&text), Some(token.clone()));
        assert_ne!(token.family_hash(), token.secret_hash());
        assert_eq!(token.family_hash().len(), 64);
        let next = token.rotated().expect("randomness");
        assert_eq!(next.family_hash(), token.family_hash());
        assert_ne!(next.secret_hash(), token.secret_hash());
        assert_eq!(format!("{token:?}"), "RefreshToken(..)");
    }

    #[test]
    fn anything_but_a_token_is_refused_before_decoding() {
        let text = RefreshToken::generate().expect("randomness").encode();
        for bad in [
            String::new(),
            text[..63].to_owned(),
            format!("{text}A"),
            format!("{}+", &text[..63]),
            format!("{}=", &text[..63]),
            "é".repeat(32),
            "A".repeat(100_000),
        ] {
            assert_eq!(RefreshToken::parse(&bad), None, "{bad:.80}");
        }
    }

    #[test]
    fn session_ids_are_22_url_safe_characters() {
        let id = new_session_id().expect("randomness");
        assert!(is_session_id(&id), "{id}");
        assert!(!is_session_id(&id[1..]));
        assert!(!is_session_id(&format!("{}/", &id[1..])));
        assert!(!is_session_id("1"));
    }

    #[test]
    fn user_agents_are_cleaned_and_cut() {
        assert_eq!(user_agent(None), None);
        assert_eq!(user_agent(Some("  ")), None);
        assert_eq!(
            user_agent(Some("curl/8\u{7}\r\n")).as_deref(),
            Some("curl/8")
        );
        assert_eq!(
            user_agent(Some(&"é".repeat(1000))).map(|s| s.chars().count()),
            Some(256)
        );
    }

    #[test]
    fn presented_secrets_are_classified_by_the_rules() {
        let stored = StoredSecret {
            token_hash: "now".to_owned(),
            previous_hash: Some("before".to_owned()),
            rotated_at: Some(1_000),
            revoked: false,
            expires_at: 100_000,
        };
        let at = |presented: &str, now: i64| Presented::of(&stored, presented, now, 10_000);
        assert_eq!(at("now", 2_000), Presented::Current);
        assert_eq!(at("before", 10_999), Presented::Retry);
        assert_eq!(at("before", 11_000), Presented::Reuse);
        assert_eq!(at("older", 2_000), Presented::Reuse);
        assert_eq!(at("now", 100_000), Presented::Ended);
        let revoked = StoredSecret {
            revoked: true,
            ..stored.clone()
        };
        assert_eq!(
            Presented::of(&revoked, "now", 2_000, 10_000),
            Presented::Ended
        );
        // No grace at all: a spent token is always reuse.
        assert_eq!(Presented::of(&stored, "before", 1_000, 0), Presented::Reuse);
    }
}
