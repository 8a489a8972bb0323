//! `GET /auth/me`: the user behind a valid token, and 401 with `WWW-Authenticate: Bearer` for
//! every kind of token that is not one.

use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

use crate::helpers::{
    assert_unauthorized, forge_token, fresh_claims, jwt_by_hand, jwt_parts, sign_by_hand,
    spawn_app, spawn_app_with, unix_now, TEST_SECRET,
};

const INVALID: &str = "Could not validate credentials";
const MISSING: &str = "Not authenticated";

#[test]
fn a_valid_token_gets_its_user() {
    let app = spawn_app();
    app.register_user("other@example.com", "password one");
    let user = app.register_user("ada@example.com", "correct horse");
    let token = app.login("ada@example.com", "correct horse").json["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let response = app.me(&token);
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.json, user);
    assert_eq!(response.json["email"], json!("ada@example.com"));
    assert!(response.json.get("password_hash").is_none());
}

#[test]
fn a_token_forged_with_the_right_secret_is_accepted() {
    // The control for the forged tokens below: the forging itself is sound.
    let app = spawn_app();
    let user = app.register_user("ada@example.com", "correct horse");
    let token = forge_token(&fresh_claims("1"), Algorithm::HS256, TEST_SECRET.as_bytes());
    let response = app.me(&token);
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.json, user);
}

#[test]
fn the_bearer_scheme_is_accepted_in_any_case() {
    let app = spawn_app();
    let token = app.token_for_new_user("ada@example.com", "correct horse");
    let response = app.get("/auth/me", &[("Authorization", &format!("bearer {token}"))]);
    assert_eq!(response.status, 200, "{}", response.text);
}

#[test]
fn a_missing_authorization_header_gets_401() {
    let app = spawn_app();
    app.register_user("ada@example.com", "correct horse");
    let response = app.get("/auth/me", &[]);
    assert_unauthorized(&response, MISSING);
}

#[test]
fn a_non_bearer_scheme_gets_401() {
    let app = spawn_app();
    let token = app.token_for_new_user("ada@example.com", "correct horse");
    for value in [
        format!("Basic {token}"),
        format!("Token {token}"),
        token.clone(),
        "Basic YWRhQGV4YW1wbGUuY29tOmNvcnJlY3QgaG9yc2U=".to_owned(),
    ] {
        let response = app.get("/auth/me", &[("Authorization", &value)]);
        assert_unauthorized(&response, MISSING);
    }
}

#[test]
fn a_bearer_header_without_a_token_gets_401() {
    let app = spawn_app();
    for value in ["Bearer ", "Bearer", ""] {
        let response = app.get("/auth/me", &[("Authorization", value)]);
        assert_unauthorized(&response, MISSING);
    }
}

#[test]
fn a_malformed_token_gets_401() {
    let app = spawn_app();
    app.register_user("ada@example.com", "correct horse");
    for token in [
        "not-a-token",
        "a.b.c",
        "a.b",
        "....",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0",
        "eyJhbGciOiJIUzI1NiJ9.!!!.sig",
    ] {
        let response = app.me(token);
        assert_unauthorized(&response, INVALID);
    }
}

#[test]
fn a_token_with_a_tampered_payload_gets_401() {
    let app = spawn_app();
    app.register_user("ada@example.com", "correct horse");
    app.register_user("bob@example.com", "correct horse");
    let token = app.login("ada@example.com", "correct horse").json["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let (header, mut claims) = jwt_parts(&token);
    assert_eq!(claims["sub"], json!("1"));
    claims["sub"] = json!("2");
    let signature = token.rsplit('.').next().expect("signature");
    let tampered = jwt_by_hand(&header, &claims, signature);
    assert_unauthorized(&app.me(&tampered), INVALID);
    // The original still works: only the tampering was refused.
    assert_eq!(app.me(&token).status, 200);
}

#[test]
fn a_token_with_a_tampered_signature_gets_401() {
    let app = spawn_app();
    let token = app.token_for_new_user("ada@example.com", "correct horse");
    let (rest, signature) = token.rsplit_once('.').expect("three parts");
    // Change a character in the middle, where every bit counts.
    let mut chars: Vec<char> = signature.chars().collect();
    let mid = chars.len() / 2;
    chars[mid] = if chars[mid] == 'A' { 'B' } else { 'A' };
    let tampered = format!("{rest}.{}", chars.into_iter().collect::<String>());
    assert_unauthorized(&app.me(&tampered), INVALID);
}

#[test]
fn an_expired_token_gets_401() {
    let app = spawn_app();
    app.register_user("ada@example.com", "correct horse");
    let now = unix_now();
    let claims = json!({ "sub": "1", "iat": now - 3660, "exp": now - 60 });
    let token = forge_token(&claims, Algorithm::HS256, TEST_SECRET.as_bytes());
    assert_unauthorized(&app.me(&token), INVALID);
}

#[test]
fn a_token_not_valid_yet_gets_401_and_one_whose_nbf_has_passed_is_accepted() {
    let app = spawn_app();
    let user = app.register_user("ada@example.com", "correct horse");
    let now = unix_now();
    let with_nbf = |nbf: Value| json!({ "sub": "1", "iat": now, "exp": now + 3600, "nbf": nbf });
    let sign = |claims: &Value| forge_token(claims, Algorithm::HS256, TEST_SECRET.as_bytes());
    // No leeway, as for `exp`: even two seconds ahead is not valid yet.
    for nbf in [
        json!(now + 2),
        json!(now + 3600),
        json!(i64::MAX),
        json!("tomorrow"),
    ] {
        assert_unauthorized(&app.me(&sign(&with_nbf(nbf))), INVALID);
    }
    for nbf in [json!(now - 60), json!(now - 1)] {
        let response = app.me(&sign(&with_nbf(nbf)));
        assert_eq!(response.status, 200, "{}", response.text);
        assert_eq!(response.json, user);
    }
}

#[test]
fn a_token_with_a_crit_header_gets_401_however_well_signed() {
    let app = spawn_app();
    app.register_user("ada@example.com", "correct horse");
    let secret = TEST_SECRET.as_bytes();
    let plain = json!({ "alg": "HS256", "typ": "JWT" });
    let response = app.me(&sign_by_hand(&plain, &fresh_claims("1"), secret));
    assert_eq!(
        response.status, 200,
        "control: the hand signing is sound: {}",
        response.text
    );
    // We understand no extension, so every `crit` is one we do not understand (RFC 7515
    // section 4.1.11), even one naming a registered claim, and a malformed one too.
    for crit in [
        json!(["exp"]),
        json!(["b64"]),
        json!([]),
        json!(null),
        json!("exp"),
    ] {
        let header = json!({ "alg": "HS256", "typ": "JWT", "crit": crit, "b64": false });
        let token = sign_by_hand(&header, &fresh_claims("1"), secret);
        assert_unauthorized(&app.me(&token), INVALID);
    }
}

#[test]
fn a_token_signed_with_another_secret_gets_401() {
    let app = spawn_app();
    app.register_user("ada@example.com", "correct horse");
    let token = forge_token(
        &fresh_claims("1"),
        Algorithm::HS256,
        b"not-the-secret-0123456789abcdef0123456789",
    );
    assert_unauthorized(&app.me(&token), INVALID);
}

#[test]
fn an_alg_none_token_gets_401() {
    let app = spawn_app();
    app.register_user("ada@example.com", "correct horse");
    for alg in ["none", "None", "NONE"] {
        let token = jwt_by_hand(&json!({ "alg": alg, "typ": "JWT" }), &fresh_claims("1"), "");
        assert_unauthorized(&app.me(&token), INVALID);
    }
}

#[test]
fn a_token_without_exp_gets_401() {
    let app = spawn_app();
    app.register_user("ada@example.com", "correct horse");
    let claims = json!({ "sub": "1", "iat": unix_now() });
    let token = forge_token(&claims, Algorithm::HS256, TEST_SECRET.as_bytes());
    assert_unauthorized(&app.me(&token), INVALID);
}

#[test]
fn a_token_without_sub_or_with_a_non_numeric_sub_gets_401() {
    let app = spawn_app();
    app.register_user("ada@example.com", "correct horse");
    let now = unix_now();
    for claims in [
        json!({ "iat": now, "exp": now + 3600 }),
        json!({ "sub": "ada@example.com", "iat": now, "exp": now + 3600 }),
        json!({ "sub": "", "iat": now, "exp": now + 3600 }),
    ] {
        let token = forge_token(&claims, Algorithm::HS256, TEST_SECRET.as_bytes());
        assert_unauthorized(&app.me(&token), INVALID);
    }
}

#[test]
fn an_hs256_token_presented_to_an_hs512_server_gets_401() {
    let app = spawn_app_with(&[("JWT_ALGORITHM", "HS512")]);
    app.register_user("ada@example.com", "correct horse");
    let hs512 = forge_token(&fresh_claims("1"), Algorithm::HS512, TEST_SECRET.as_bytes());
    assert_eq!(app.me(&hs512).status, 200, "control: HS512 is accepted");
    let hs256 = forge_token(&fresh_claims("1"), Algorithm::HS256, TEST_SECRET.as_bytes());
    assert_unauthorized(&app.me(&hs256), INVALID);
}

#[test]
fn an_hs512_token_presented_to_an_hs256_server_gets_401() {
    let app = spawn_app();
    app.register_user("ada@example.com", "correct horse");
    let hs512 = forge_token(&fresh_claims("1"), Algorithm::HS512, TEST_SECRET.as_bytes());
    assert_unauthorized(&app.me(&hs512), INVALID);
}

#[test]
fn a_token_for_a_user_id_that_does_not_exist_gets_401() {
    let app = spawn_app();
    app.register_user("ada@example.com", "correct horse");
    let token = forge_token(
        &fresh_claims("999"),
        Algorithm::HS256,
        TEST_SECRET.as_bytes(),
    );
    assert_unauthorized(&app.me(&token), INVALID);
}

#[test]
fn a_token_whose_user_was_deleted_gets_401() {
    let app = spawn_app();
    let token = app.token_for_new_user("ada@example.com", "correct horse");
    assert_eq!(app.me(&token).status, 200, "control: the token works");
    let deleted = app
        .db
        .execute("DELETE FROM users WHERE email = 'ada@example.com'");
    assert_eq!(deleted, 1);
    assert_unauthorized(&app.me(&token), INVALID);
}
