//! Password hashing (bcrypt, compatible with passlib's `$2b$` hashes) and access tokens (JWT).
//!
//! Tokens are only ever HMAC-signed (HS256/384/512), so `jsonwebtoken` runs on a crypto provider
//! of ours that knows HMAC and nothing else, rather than its RustCrypto bundle (RSA and three
//! elliptic curves the service never uses, about a third of the edge binary's crates).

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// `jsonwebtoken`'s crypto for the HMAC algorithms alone, on RustCrypto's `hmac` and `sha2`
/// (the same code its own RustCrypto provider runs for them).
mod hmac_only {
    use hmac::{Hmac, Mac};
    use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
    use jsonwebtoken::errors::{ErrorKind, Result};
    use jsonwebtoken::signature::{self, Signer, Verifier};
    use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
    use sha2::{Sha256, Sha384, Sha512};

    static PROVIDER: CryptoProvider = CryptoProvider {
        signer_factory: signer,
        verifier_factory: verifier,
        key_utils: KeyUtils::new_unimplemented(),
    };

    /// Makes this the process's provider. Only the first call (of anyone's) installs one; a
    /// later call changes nothing, so every `TokenKeys::new` may call it.
    pub fn install() {
        let _ = PROVIDER.install_default();
    }

    /// One keyed HMAC: signs and verifies with the algorithm it was made for.
    struct Keyed<M> {
        mac: M,
        algorithm: Algorithm,
    }

    fn keyed<M: Mac + hmac::digest::KeyInit>(key: &[u8], algorithm: Algorithm) -> Result<Keyed<M>> {
        let mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
            .map_err(|_| ErrorKind::InvalidKeyFormat)?;
        Ok(Keyed { mac, algorithm })
    }

    impl<M: Mac + Clone> Signer<Vec<u8>> for Keyed<M> {
        fn try_sign(&self, message: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
            let mut mac = self.mac.clone();
            mac.update(message);
            Ok(mac.finalize().into_bytes().to_vec())
        }
    }

    impl<M: Mac + Clone> Verifier<Vec<u8>> for Keyed<M> {
        fn verify(
            &self,
            message: &[u8],
            tag: &Vec<u8>,
        ) -> std::result::Result<(), signature::Error> {
            let mut mac = self.mac.clone();
            mac.update(message);
            // Constant time: a forger learns nothing from how long a wrong tag took.
            mac.verify_slice(tag).map_err(signature::Error::from_source)
        }
    }

    impl<M: Mac + Clone> JwtSigner for Keyed<M> {
        fn algorithm(&self) -> Algorithm {
            self.algorithm
        }
    }

    impl<M: Mac + Clone> JwtVerifier for Keyed<M> {
        fn algorithm(&self) -> Algorithm {
            self.algorithm
        }
    }

    fn signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
        Ok(match algorithm {
            Algorithm::HS256 => Box::new(keyed::<Hmac<Sha256>>(key.as_bytes(), *algorithm)?),
            Algorithm::HS384 => Box::new(keyed::<Hmac<Sha384>>(key.as_bytes(), *algorithm)?),
            Algorithm::HS512 => Box::new(keyed::<Hmac<Sha512>>(key.as_bytes(), *algorithm)?),
            _ => return Err(ErrorKind::InvalidAlgorithm.into()),
        })
    }

    fn verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
        let key = key.try_get_as_bytes()?;
        Ok(match algorithm {
            Algorithm::HS256 => Box::new(keyed::<Hmac<Sha256>>(key, *algorithm)?),
            Algorithm::HS384 => Box::new(keyed::<Hmac<Sha384>>(key, *algorithm)?),
            Algorithm::HS512 => Box::new(keyed::<Hmac<Sha512>>(key, *algorithm)?),
            _ => return Err(ErrorKind::InvalidAlgorithm.into()),
        })
    }
}

/// Hashes a password that validation has already limited to 72 bytes (bcrypt's limit), so
/// nothing is truncated.
pub fn hash_password(password: &str, cost: u32) -> Result<String, bcrypt::BcryptError> {
    bcrypt::hash(password, cost)
}

/// What checking a password against a stored hash found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordCheck {
    /// The password matches. `outdated` when the stored hash is not a `$2b$` hash at the
    /// current cost (another cost, or the `$2a$`/`$2x$`/`$2y$` variants): it should be replaced
    /// by a new one, as passlib's `CryptContext(deprecated="auto")` does, so that the account's
    /// logins cost what everyone else's do.
    Match {
        /// The stored hash should be replaced by one at the current cost.
        outdated: bool,
    },
    /// A wrong password, or no such user.
    Mismatch,
    /// The stored hash is not a bcrypt hash that can be checked (malformed, or a cost outside
    /// 4–31). The dummy check has run, so this costs what a wrong password costs. The text says
    /// what is wrong with the hash without quoting it.
    Unreadable(String),
}

/// Checks `password` against a stored hash; `None` (no such user) checks against a dummy hash
/// at `cost`, so an unknown email costs as much time as a wrong password. So does a stored hash
/// that cannot be read, which is [`PasswordCheck::Unreadable`], never a match.
///
/// Uses bcrypt's own 72-byte rule, as passlib did, so users whose FastAPI-era passwords were
/// longer still log in.
pub fn verify_password(password: &str, stored_hash: Option<&str>, cost: u32) -> PasswordCheck {
    let dummy_check = || {
        let _ = bcrypt::verify(password, &dummy_hash(cost));
    };
    let Some(hash) = stored_hash else {
        dummy_check();
        return PasswordCheck::Mismatch;
    };
    // Parsing first (cheap) tells a hash bcrypt cannot check from a wrong password, and
    // gives its variant and cost.
    let parts = match hash.parse::<bcrypt::HashParts>() {
        Ok(parts) if (4..=31).contains(&parts.get_cost()) => parts,
        Ok(parts) => {
            dummy_check();
            return PasswordCheck::Unreadable(format!(
                "bcrypt cost {} is outside 4-31",
                parts.get_cost()
            ));
        }
        Err(err) => {
            dummy_check();
            return PasswordCheck::Unreadable(err.to_string());
        }
    };
    match bcrypt::verify(password, hash) {
        Ok(true) => PasswordCheck::Match {
            outdated: !hash.starts_with("$2b$") || parts.get_cost() != cost,
        },
        Ok(false) => PasswordCheck::Mismatch,
        Err(err) => PasswordCheck::Unreadable(err.to_string()),
    }
}

/// A well-formed bcrypt hash at `cost` that no password matches (its digest is not the bcrypt
/// of anything we know); verifying against it costs exactly what a real check costs.
fn dummy_hash(cost: u32) -> String {
    format!("$2b${cost:02}$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW")
}

/// The claims of an access token: the user id as a string, its session, issued-at and expiry
/// (Unix seconds).
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The user id, as a string (as python-jose tokens carried it).
    pub sub: String,
    /// The session the token belongs to (`crate::sessions`). Tokens the FastAPI service issued
    /// have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Issued at. Ours always carry it; a FastAPI token may not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Expires at.
    pub exp: i64,
}

/// What a valid access token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    /// The user it was issued for.
    pub user_id: i64,
    /// Its session; `None` for a token issued before sessions (by the FastAPI service).
    pub session: Option<String>,
    /// When it was issued (Unix seconds), if it says.
    pub issued_at: Option<i64>,
}

/// Issues and checks access tokens with one secret and one algorithm.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    algorithm: Algorithm,
    lifetime_seconds: i64,
    validation: Validation,
}

impl TokenKeys {
    /// Builds the keys from the configured secret, algorithm (HS256/384/512) and lifetime.
    pub fn new(secret: &[u8], algorithm: Algorithm, lifetime_minutes: u32) -> TokenKeys {
        hmac_only::install();
        // Only the configured algorithm is accepted, so a token cannot pick its own (`none`,
        // or a public-key algorithm keyed with our secret). Expiry is required and checked
        // with no leeway, as python-jose did; `nbf` (not before) is honoured when present, with
        // no leeway either: the tokens we issue carry none, so only a forged or foreign token
        // would, and it is not valid yet.
        let mut validation = Validation::new(algorithm);
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        TokenKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            algorithm,
            lifetime_seconds: i64::from(lifetime_minutes) * 60,
            validation,
        }
    }

    /// How long a new token stays valid, in seconds.
    pub fn lifetime_seconds(&self) -> i64 {
        self.lifetime_seconds
    }

    /// Issues a token for `user_id` in session `session`, valid from now for the configured
    /// lifetime.
    pub fn issue(
        &self,
        user_id: i64,
        session: &str,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user_id.to_string(),
            sid: Some(session.to_owned()),
            iat: Some(now),
            exp: now + self.lifetime_seconds,
        };
        encode(&Header::new(self.algorithm), &claims, &self.encoding)
    }

    /// Returns what a valid token says, or `None` for any token that is malformed, tampered
    /// with, signed otherwise, expired, not valid yet (`nbf`), marked with `crit` header
    /// parameters, or lacks `exp` or a numeric `sub`. Whether its session is still live is the
    /// database's to say.
    pub fn verify(&self, token: &str) -> Option<AccessToken> {
        let data = decode::<Claims>(token, &self.decoding, &self.validation).ok()?;
        if names_critical_parameters(token) {
            return None;
        }
        Some(AccessToken {
            user_id: data.claims.sub.parse().ok()?,
            session: data.claims.sid,
            issued_at: data.claims.iat,
        })
    }
}

/// Whether a token's header has a `crit` parameter, in any form, or cannot be read.
///
/// `crit` lists extensions the recipient must understand or refuse the token (RFC 7515
/// section 4.1.11). We understand none, so any `crit` is a refusal. `jsonwebtoken` parses
/// `crit` but leaves the check to us, and reads `"crit": null` as no `crit` at all, so the
/// header's own JSON is looked at: the key's presence decides, whatever its value.
fn names_critical_parameters(token: &str) -> bool {
    use base64::Engine as _;
    let encoded = token.split('.').next().unwrap_or_default();
    let Ok(json) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded) else {
        return true;
    };
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&json)
        .map_or(true, |header| header.contains_key("crit"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dummy_hash_is_well_formed_and_matches_nothing() {
        assert_eq!(dummy_hash(4).len(), 60);
        assert_eq!(bcrypt::verify("", &dummy_hash(4)).ok(), Some(false));
        assert_eq!(
            verify_password("anything", None, 4),
            PasswordCheck::Mismatch
        );
    }

    #[test]
    fn hashes_verify_and_wrong_passwords_do_not() {
        let hash = hash_password("correct horse", 4).expect("hash");
        assert!(hash.starts_with("$2b$04$"));
        assert_eq!(
            verify_password("correct horse", Some(&hash), 4),
            PasswordCheck::Match { outdated: false }
        );
        assert_eq!(
            verify_password("wrong horse", Some(&hash), 4),
            PasswordCheck::Mismatch
        );
    }

    #[test]
    fn a_match_on_another_cost_or_variant_is_outdated() {
        let parts = bcrypt::hash_with_result("correct horse", 4).expect("hash");
        let b4 = parts.format_for_version(bcrypt::Version::TwoB);
        assert_eq!(
            verify_password("correct horse", Some(&b4), 5),
            PasswordCheck::Match { outdated: true }
        );
        for version in [
            bcrypt::Version::TwoA,
            bcrypt::Version::TwoX,
            bcrypt::Version::TwoY,
        ] {
            let hash = parts.format_for_version(version.clone());
            assert_eq!(
                verify_password("correct horse", Some(&hash), 4),
                PasswordCheck::Match { outdated: true },
                "{version}"
            );
            // A wrong password is a mismatch whatever the hash's age.
            assert_eq!(
                verify_password("wrong horse", Some(&hash), 4),
                PasswordCheck::Mismatch
            );
        }
    }

    #[test]
    fn an_unreadable_hash_is_neither_a_match_nor_an_error_and_is_not_quoted() {
        let good = hash_password("correct horse", 4).expect("hash");
        let cases = [
            String::new(),
            "not-a-hash".to_owned(),
            format!("$2b$99${}", &good[7..]),
            format!("$2b$03${}", &good[7..]),
            format!("$3b$04${}", &good[7..]),
            format!("{}!", &good[..59]),
        ];
        for hash in &cases {
            match verify_password("correct horse", Some(hash), 4) {
                PasswordCheck::Unreadable(why) => {
                    assert!(!why.is_empty() && !why.contains(&good[7..]), "{why}")
                }
                other => panic!("{hash:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_token_round_trips_and_a_foreign_one_does_not() {
        let keys = TokenKeys::new(&[7; 32], Algorithm::HS256, 5);
        let token = keys.issue(42, "s1").expect("encode");
        let verified = keys.verify(&token).expect("valid");
        assert_eq!(verified.user_id, 42);
        assert_eq!(verified.session.as_deref(), Some("s1"));
        assert!(verified.issued_at.is_some());
        let other = TokenKeys::new(&[8; 32], Algorithm::HS256, 5);
        assert_eq!(other.verify(&token), None);
        let other_alg = TokenKeys::new(&[7; 32], Algorithm::HS512, 5);
        assert_eq!(other_alg.verify(&token), None);
    }

    #[test]
    fn a_token_without_sid_or_iat_is_read_as_one_from_before_sessions() {
        let keys = TokenKeys::new(&[7; 32], Algorithm::HS256, 5);
        let exp = chrono::Utc::now().timestamp() + 300;
        let token = signed(
            &keys,
            Header::new(Algorithm::HS256),
            serde_json::json!({ "sub": "42", "exp": exp }),
        );
        assert_eq!(
            keys.verify(&token),
            Some(AccessToken {
                user_id: 42,
                session: None,
                issued_at: None,
            })
        );
    }

    fn signed(keys: &TokenKeys, header: Header, claims: serde_json::Value) -> String {
        encode(&header, &claims, &keys.encoding).expect("encode")
    }

    #[test]
    fn a_token_is_refused_until_its_nbf_with_no_leeway() {
        let keys = TokenKeys::new(&[7; 32], Algorithm::HS256, 5);
        let now = chrono::Utc::now().timestamp();
        let claims = |nbf: serde_json::Value| {
            let exp = now + 300;
            serde_json::json!({ "sub": "42", "iat": now, "exp": exp, "nbf": nbf })
        };
        let header = || Header::new(Algorithm::HS256);
        assert_eq!(
            keys.verify(&signed(&keys, header(), claims((now - 5).into())))
                .map(|token| token.user_id),
            Some(42)
        );
        assert_eq!(
            keys.verify(&signed(&keys, header(), claims((now + 2).into()))),
            None
        );
        assert_eq!(
            keys.verify(&signed(&keys, header(), claims("soon".into()))),
            None
        );
    }

    #[test]
    fn a_token_with_crit_is_refused_whatever_it_lists() {
        let keys = TokenKeys::new(&[7; 32], Algorithm::HS256, 5);
        let now = chrono::Utc::now().timestamp();
        let claims = serde_json::json!({ "sub": "42", "iat": now, "exp": now + 300 });
        for crit in [vec!["exp".to_owned()], vec!["b64".to_owned()], vec![]] {
            let mut header = Header::new(Algorithm::HS256);
            header.crit = Some(crit);
            assert_eq!(keys.verify(&signed(&keys, header, claims.clone())), None);
        }
    }

    #[test]
    fn crit_is_found_in_the_header_json_in_any_form() {
        use base64::Engine as _;
        let token = |header: &str| {
            let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header);
            format!("{encoded}.e30.sig")
        };
        assert!(!names_critical_parameters(&token(
            r#"{"alg":"HS256","typ":"JWT"}"#
        )));
        for header in [
            r#"{"alg":"HS256","crit":["exp"]}"#,
            r#"{"alg":"HS256","crit":null}"#,
            r#"{"alg":"HS256","crit":"exp"}"#,
            r#"{"alg":"HS256","cr\u0069t":[]}"#,
            r#"{"crit":null,"alg":"HS256","crit":null}"#,
            r#"not json"#,
        ] {
            assert!(names_critical_parameters(&token(header)), "{header}");
        }
        assert!(names_critical_parameters("!!!.e30.sig"));
    }
}
