//! `POST /auth/login`: JSON and the OAuth2 password form, the token it issues, and the one
//! answer for every failed login.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};

use crate::helpers::{
    assert_invalid_fields, assert_unauthorized, jwt_parts, spawn_app, spawn_app_with, unix_now,
    TEST_SECRET,
};

#[test]
fn logging_in_with_json_returns_a_bearer_token_and_the_user() {
    let app = spawn_app();
    let user = app.register_user("ada@example.com", "correct horse");
    let response = app.login("ada@example.com", "correct horse");
    assert_eq!(response.status, 200, "{}", response.text);
    let body = response.json.as_object().expect("object");
    let mut keys: Vec<&str> = body.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "access_token",
            "expires_in",
            "refresh_expires_in",
            "refresh_token",
            "token_type",
            "user"
        ]
    );
    assert_eq!(response.json["token_type"], json!("bearer"));
    assert_eq!(response.json["expires_in"], json!(3600));
    assert_eq!(response.json["refresh_expires_in"], json!(30 * 86_400));
    assert!(response.json["access_token"]
        .as_str()
        .is_some_and(|t| !t.is_empty()));
    assert_eq!(
        response.json["user"], user,
        "the same user as registration returned"
    );
}

#[test]
fn logging_in_with_the_oauth2_password_form_returns_a_token() {
    let app = spawn_app();
    let user = app.register_user("ada@example.com", "correct horse");
    let response = app.login_form("ada@example.com", "correct horse");
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.json["token_type"], json!("bearer"));
    assert_eq!(response.json["user"], user);
    let token = response.json["access_token"].as_str().expect("token");
    assert_eq!(app.me(token).json, user, "the form's token works");
}

#[test]
fn the_login_form_accepts_extra_oauth2_fields() {
    let app = spawn_app();
    app.register_user("ada@example.com", "correct horse");
    let body =
        "grant_type=password&username=ada%40example.com&password=correct+horse&scope=&client_id=";
    let response = app.post_raw(
        "/auth/login",
        Some("application/x-www-form-urlencoded"),
        body.as_bytes(),
    );
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.json["user"]["email"], json!("ada@example.com"));
}

#[test]
fn the_email_is_compared_without_regard_to_case_at_login() {
    let app = spawn_app();
    app.register_user("ada@example.com", "correct horse");
    let json_login = app.login("ADA@Example.COM", "correct horse");
    assert_eq!(json_login.status, 200, "{}", json_login.text);
    assert_eq!(json_login.json["user"]["email"], json!("ada@example.com"));
    let form_login = app.login_form("Ada@EXAMPLE.com", "correct horse");
    assert_eq!(form_login.status, 200, "{}", form_login.text);
}

#[test]
fn a_wrong_password_gets_401_with_www_authenticate_bearer() {
    let app = spawn_app();
    app.register_user("ada@example.com", "correct horse");
    let response = app.login("ada@example.com", "wrong horse");
    assert_unauthorized(&response, "Incorrect email or password");
    assert!(response.json.get("access_token").is_none());
}

#[test]
fn an_unknown_email_gets_401_with_www_authenticate_bearer() {
    let app = spawn_app();
    let response = app.login("nobody@example.com", "correct horse");
    assert_unauthorized(&response, "Incorrect email or password");
}

#[test]
fn an_unknown_email_and_a_wrong_password_get_identical_answers() {
    let app = spawn_app();
    app.register_user("ada@example.com", "correct horse");
    let wrong_password = app.login("ada@example.com", "wrong horse");
    let unknown_email = app.login("nobody@example.com", "correct horse");
    assert_unauthorized(&wrong_password, "Incorrect email or password");
    assert_eq!(wrong_password.status, unknown_email.status);
    assert_eq!(wrong_password.text, unknown_email.text);
    assert_eq!(
        wrong_password.header("WWW-Authenticate"),
        unknown_email.header("WWW-Authenticate")
    );
    let form_wrong = app.login_form("ada@example.com", "wrong horse");
    let form_unknown = app.login_form("nobody@example.com", "correct horse");
    assert_unauthorized(&form_wrong, "Incorrect email or password");
    assert_unauthorized(&form_unknown, "Incorrect email or password");
}

#[test]
fn the_token_carries_sub_iat_and_exp_for_the_configured_lifetime() {
    let app = spawn_app();
    app.register_user("ada@example.com", "correct horse");
    let bob = app.register_user("bob@example.com", "correct horse");
    let response = app.login("bob@example.com", "correct horse");
    assert_eq!(response.status, 200, "{}", response.text);
    let token = response.json["access_token"].as_str().expect("token");
    let (header, claims) = jwt_parts(token);
    assert_eq!(header["alg"], json!("HS256"), "{header}");
    assert_eq!(bob["id"], json!(2));
    assert_eq!(claims["sub"], json!("2"), "the id as a string: {claims}");
    let iat = claims["iat"].as_i64().expect("iat is a number");
    let exp = claims["exp"].as_i64().expect("exp is a number");
    assert_eq!(
        exp - iat,
        60 * 60,
        "JWT_ACCESS_TOKEN_EXPIRE_MINUTES defaults to 60"
    );
    assert_eq!(response.json["expires_in"], json!(exp - iat));
    assert!(
        (iat - unix_now()).abs() < 300,
        "issued about now: iat={iat}"
    );
}

#[test]
fn the_token_is_signed_with_the_configured_secret() {
    let app = spawn_app();
    app.register_user("ada@example.com", "correct horse");
    let response = app.login("ada@example.com", "correct horse");
    let token = response.json["access_token"].as_str().expect("token");
    let decoded = jsonwebtoken::decode::<Value>(
        token,
        &DecodingKey::from_secret(TEST_SECRET.as_bytes()),
        &Validation::new(Algorithm::HS256),
    )
    .expect("verifies with JWT_SECRET and HS256");
    assert_eq!(decoded.claims["sub"], json!("1"));
    let wrong = jsonwebtoken::decode::<Value>(
        token,
        &DecodingKey::from_secret(b"another-secret-0123456789abcdef0123456789"),
        &Validation::new(Algorithm::HS256),
    );
    assert!(wrong.is_err(), "not verifiable with another secret");
}

#[test]
fn a_configured_expiry_sets_exp_and_expires_in() {
    let app = spawn_app_with(&[("JWT_ACCESS_TOKEN_EXPIRE_MINUTES", "5")]);
    app.register_user("ada@example.com", "correct horse");
    let response = app.login("ada@example.com", "correct horse");
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.json["expires_in"], json!(300));
    let (_, claims) = jwt_parts(response.json["access_token"].as_str().expect("token"));
    let lifetime = claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat");
    assert_eq!(lifetime, 300);
}

#[test]
fn jwt_algorithm_hs512_issues_hs512_tokens_that_work() {
    let app = spawn_app_with(&[("JWT_ALGORITHM", "HS512")]);
    let user = app.register_user("ada@example.com", "correct horse");
    let response = app.login("ada@example.com", "correct horse");
    assert_eq!(response.status, 200, "{}", response.text);
    let token = response.json["access_token"].as_str().expect("token");
    let (header, _) = jwt_parts(token);
    assert_eq!(header["alg"], json!("HS512"), "{header}");
    jsonwebtoken::decode::<Value>(
        token,
        &DecodingKey::from_secret(TEST_SECRET.as_bytes()),
        &Validation::new(Algorithm::HS512),
    )
    .expect("an HS512 signature with JWT_SECRET");
    let me = app.me(token);
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.json, user);
}

#[test]
fn jwt_algorithm_hs384_issues_hs384_tokens() {
    let app = spawn_app_with(&[("JWT_ALGORITHM", "HS384")]);
    app.register_user("ada@example.com", "correct horse");
    let response = app.login("ada@example.com", "correct horse");
    let token = response.json["access_token"].as_str().expect("token");
    assert_eq!(jwt_parts(token).0["alg"], json!("HS384"));
    assert_eq!(app.me(token).status, 200);
}

#[test]
fn every_login_issues_a_token_that_works() {
    let app = spawn_app();
    let user = app.register_user("ada@example.com", "correct horse");
    for _ in 0..3 {
        let response = app.login("ada@example.com", "correct horse");
        let token = response.json["access_token"].as_str().expect("token");
        assert_eq!(app.me(token).json, user);
    }
}

#[test]
fn a_login_without_fields_lists_both_as_missing() {
    let app = spawn_app();
    let response = app.post_json("/auth/login", &json!({}));
    assert_invalid_fields(&response, &["email", "password"]);
}

#[test]
fn a_login_with_fields_of_the_wrong_type_is_refused() {
    let app = spawn_app();
    let response = app.post_json("/auth/login", &json!({ "email": 1, "password": false }));
    assert_invalid_fields(&response, &["email", "password"]);
}

#[test]
fn a_login_form_without_a_password_is_refused() {
    let app = spawn_app();
    let response = app.post_raw(
        "/auth/login",
        Some("application/x-www-form-urlencoded"),
        b"username=ada%40example.com",
    );
    assert_invalid_fields(&response, &["password"]);
}

#[test]
fn a_login_form_without_a_username_is_refused() {
    let app = spawn_app();
    let response = app.post_raw(
        "/auth/login",
        Some("application/x-www-form-urlencoded"),
        b"password=correct+horse",
    );
    assert_invalid_fields(&response, &["username"]);
}

#[test]
fn a_login_with_malformed_json_is_refused_with_422() {
    let app = spawn_app();
    let response = app.post_raw(
        "/auth/login",
        Some("application/json"),
        b"{\"email\": \"ada@example.com\", ",
    );
    assert_eq!(response.status, 422, "{}", response.text);
    assert!(response.json["detail"].is_array(), "{}", response.text);
}

#[test]
fn a_login_with_an_unsupported_content_type_is_refused_with_422() {
    let app = spawn_app();
    app.register_user("ada@example.com", "correct horse");
    let body = json!({ "email": "ada@example.com", "password": "correct horse" }).to_string();
    let response = app.post_raw("/auth/login", Some("text/plain"), body.as_bytes());
    assert_eq!(response.status, 422, "{}", response.text);
    assert!(response.json["detail"].is_array(), "{}", response.text);
    assert!(response.json.get("access_token").is_none());
}

#[test]
fn a_login_without_a_body_is_refused_with_422() {
    let app = spawn_app();
    let response = app.post_raw("/auth/login", None, b"");
    assert_eq!(response.status, 422, "{}", response.text);
    assert!(response.json["detail"].is_array(), "{}", response.text);
}
