//! `POST /auth/register`: the user it creates, the email rules, and every validation rule with
//! its edges.

use serde_json::{json, Value};

use crate::helpers::{
    assert_invalid_fields, assert_rfc3339_utc, count_users, spawn_app, valid_registration,
};

/// A valid registration with one field replaced.
fn registration_with(field: &str, value: Value) -> Value {
    let mut body = valid_registration("ada@example.com", "correct horse");
    body[field] = value;
    body
}

#[test]
fn registering_returns_201_with_the_user_and_no_password() {
    let app = spawn_app();
    let response = app.register(&json!({
        "name": "Ada Lovelace",
        "phone": "+44 20 7946 0958",
        "email": "ada@example.com",
        "password": "correct horse",
        "image_url": "https://example.com/ada.png",
    }));
    assert_eq!(response.status, 201, "{}", response.text);
    assert_eq!(
        response.header("Content-Type"),
        Some("application/json"),
        "{:?}",
        response.headers
    );
    let user = response.json.as_object().expect("the user is an object");
    let mut keys: Vec<&str> = user.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "created_at",
            "email",
            "id",
            "image_url",
            "name",
            "phone",
            "updated_at"
        ],
        "exactly the public fields, no password or hash: {}",
        response.text
    );
    assert_eq!(user["id"], json!(1));
    assert_eq!(user["name"], json!("Ada Lovelace"));
    assert_eq!(user["phone"], json!("+44 20 7946 0958"));
    assert_eq!(user["email"], json!("ada@example.com"));
    assert_eq!(user["image_url"], json!("https://example.com/ada.png"));
    assert!(
        !response.text.contains("correct horse"),
        "{}",
        response.text
    );
    assert!(!response.text.contains("$2b$"), "{}", response.text);
}

#[test]
fn a_new_users_timestamps_are_rfc3339_utc_ending_in_z_and_equal() {
    let app = spawn_app();
    let before = chrono::Utc::now() - chrono::Duration::minutes(5);
    let user = app.register_user("ada@example.com", "correct horse");
    let after = chrono::Utc::now() + chrono::Duration::minutes(5);
    let created = assert_rfc3339_utc(&user["created_at"]);
    let updated = assert_rfc3339_utc(&user["updated_at"]);
    assert_eq!(created, updated, "{user}");
    assert!(
        created > before && created < after,
        "created_at is about now: {created}"
    );
}

#[test]
fn the_stored_password_is_a_bcrypt_hash_not_the_password() {
    let app = spawn_app();
    app.register_user("ada@example.com", "correct horse");
    let hash = app.db.scalar::<String>("SELECT password_hash FROM users");
    assert!(
        hash.starts_with("$2b$04$"),
        "bcrypt at the configured cost: {hash}"
    );
    assert_eq!(bcrypt::verify("correct horse", &hash).ok(), Some(true));
}

#[test]
fn each_new_user_gets_the_next_id() {
    let app = spawn_app();
    assert_eq!(
        app.register_user("a@example.com", "password1")["id"],
        json!(1)
    );
    assert_eq!(
        app.register_user("b@example.com", "password2")["id"],
        json!(2)
    );
    assert_eq!(
        app.register_user("c@example.com", "password3")["id"],
        json!(3)
    );
}

#[test]
fn an_absent_image_url_comes_back_as_null() {
    let app = spawn_app();
    let user = app.register_user("ada@example.com", "correct horse");
    assert!(user.as_object().expect("object").contains_key("image_url"));
    assert_eq!(user["image_url"], Value::Null);
}

#[test]
fn a_null_image_url_is_accepted_and_comes_back_as_null() {
    let app = spawn_app();
    let response = app.register(&registration_with("image_url", Value::Null));
    assert_eq!(response.status, 201, "{}", response.text);
    assert_eq!(response.json["image_url"], Value::Null);
}

#[test]
fn http_and_https_image_urls_are_kept_as_given() {
    let app = spawn_app();
    for (i, url) in [
        "http://example.com/a.png",
        "https://cdn.example.com/u/ada.jpg?size=64#top",
    ]
    .iter()
    .enumerate()
    {
        let mut body = valid_registration(&format!("u{i}@example.com"), "correct horse");
        body["image_url"] = json!(url);
        let response = app.register(&body);
        assert_eq!(response.status, 201, "{url}: {}", response.text);
        assert_eq!(response.json["image_url"], json!(url));
    }
}

#[test]
fn an_image_url_of_2048_characters_is_accepted_and_one_of_2049_is_refused() {
    let app = spawn_app();
    let prefix = "https://example.com/";
    let url_2048 = format!("{prefix}{}", "a".repeat(2048 - prefix.len()));
    let url_2049 = format!("{prefix}{}", "a".repeat(2049 - prefix.len()));
    assert_eq!((url_2048.len(), url_2049.len()), (2048, 2049));

    let too_long = app.register(&registration_with("image_url", json!(url_2049)));
    assert_invalid_fields(&too_long, &["image_url"]);

    let response = app.register(&registration_with("image_url", json!(url_2048)));
    assert_eq!(response.status, 201, "{}", response.text);
    assert_eq!(response.json["image_url"], json!(url_2048));
}

#[test]
fn an_image_url_that_is_not_an_absolute_http_url_is_refused() {
    let app = spawn_app();
    for url in [
        "ftp://example.com/a.png",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "/images/a.png",
        "example.com/a.png",
        "not a url",
        "",
    ] {
        let response = app.register(&registration_with("image_url", json!(url)));
        assert_invalid_fields(&response, &["image_url"]);
    }
    assert_eq!(count_users(&app), 0);
}

#[test]
fn the_email_is_trimmed_and_stored_lower_case() {
    let app = spawn_app();
    let response = app.register(&valid_registration(
        "  Ada.Lovelace+Notes@Example.COM \t",
        "correct horse",
    ));
    assert_eq!(response.status, 201, "{}", response.text);
    assert_eq!(
        response.json["email"],
        json!("ada.lovelace+notes@example.com")
    );
    let stored = app.db.scalar::<String>("SELECT email FROM users");
    assert_eq!(stored, "ada.lovelace+notes@example.com");
}

#[test]
fn registering_a_taken_email_gets_409() {
    let app = spawn_app();
    app.register_user("ada@example.com", "correct horse");
    let response = app.register(&valid_registration("ada@example.com", "another password"));
    assert_eq!(response.status, 409, "{}", response.text);
    assert_eq!(
        response.json,
        json!({ "detail": "Email already registered" })
    );
    assert_eq!(count_users(&app), 1);
}

#[test]
fn registering_a_taken_email_in_another_case_gets_409() {
    let app = spawn_app();
    app.register_user("ada@example.com", "correct horse");
    for email in ["ADA@EXAMPLE.COM", "Ada@Example.com", "  ada@example.COM  "] {
        let response = app.register(&valid_registration(email, "another password"));
        assert_eq!(response.status, 409, "{email}: {}", response.text);
        assert_eq!(
            response.json,
            json!({ "detail": "Email already registered" })
        );
    }
    assert_eq!(count_users(&app), 1);
}

#[test]
fn a_taken_email_still_gets_409_when_the_first_was_registered_in_upper_case() {
    let app = spawn_app();
    app.register_user("ADA@EXAMPLE.COM", "correct horse");
    let response = app.register(&valid_registration("ada@example.com", "another password"));
    assert_eq!(response.status, 409, "{}", response.text);
    assert_eq!(
        response.json,
        json!({ "detail": "Email already registered" })
    );
}

#[test]
fn a_name_of_1_and_of_100_characters_after_trimming_is_accepted() {
    let app = spawn_app();
    let hundred = "é".repeat(100); // 100 characters, 200 bytes
    for (i, name) in ["A".to_owned(), format!("  {hundred}  "), " Ada ".to_owned()]
        .iter()
        .enumerate()
    {
        let mut body = valid_registration(&format!("u{i}@example.com"), "correct horse");
        body["name"] = json!(name);
        let response = app.register(&body);
        assert_eq!(response.status, 201, "{name:?}: {}", response.text);
        assert_eq!(response.json["name"], json!(name.trim()), "stored trimmed");
    }
}

#[test]
fn an_empty_blank_or_101_character_name_is_refused() {
    let app = spawn_app();
    for name in [
        String::new(),
        "   ".to_owned(),
        "\t\n".to_owned(),
        "a".repeat(101),
        "é".repeat(101),
    ] {
        let response = app.register(&registration_with("name", json!(name)));
        assert_invalid_fields(&response, &["name"]);
    }
    assert_eq!(count_users(&app), 0);
}

#[test]
fn plausible_phone_numbers_are_accepted() {
    let app = spawn_app();
    for (i, phone) in [
        "12345",                // 5 digits, the fewest
        "12345678901234567890", // 20 digits, the most
        "+1 555 0100",
        "+7 (495) 123-45-67",
        "555.010.0100",
        "(020) 7946-0958",
    ]
    .iter()
    .enumerate()
    {
        let mut body = valid_registration(&format!("u{i}@example.com"), "correct horse");
        body["phone"] = json!(phone);
        let response = app.register(&body);
        assert_eq!(response.status, 201, "{phone}: {}", response.text);
        assert_eq!(response.json["phone"], json!(phone));
    }
}

#[test]
fn implausible_phone_numbers_are_refused() {
    let app = spawn_app();
    for phone in [
        "",
        "1234",                  // 4 digits
        "123456789012345678901", // 21 digits
        "(12) 3-4",              // 4 digits among punctuation
        "555-CALL-NOW",
        "12345x678",
        "1+2345678",  // + not leading
        "++12345678", // two +
        "+ - . ( )",
        "12345/678",
    ] {
        let response = app.register(&registration_with("phone", json!(phone)));
        assert_invalid_fields(&response, &["phone"]);
    }
    assert_eq!(count_users(&app), 0);
}

#[test]
fn syntactically_invalid_emails_are_refused() {
    let app = spawn_app();
    for email in [
        "",
        "   ",
        "plainaddress",
        "@example.com",
        "ada@",
        "ada@@example.com",
        "ada lovelace@example.com",
        "ada@exa mple.com",
        "ada@example..com",
    ] {
        let response = app.register(&registration_with("email", json!(email)));
        assert_invalid_fields(&response, &["email"]);
    }
    assert_eq!(count_users(&app), 0);
}

#[test]
fn a_password_of_8_characters_is_accepted_and_one_of_7_is_refused() {
    let app = spawn_app();
    let short = app.register(&registration_with("password", json!("1234567")));
    assert_invalid_fields(&short, &["password"]);
    app.register_user("ada@example.com", "12345678");
    assert_eq!(app.login("ada@example.com", "12345678").status, 200);
}

#[test]
fn the_password_minimum_counts_characters_not_bytes() {
    let app = spawn_app();
    // 7 characters but 14 bytes: still too short.
    let short = app.register(&registration_with("password", json!("пароль1")));
    assert_invalid_fields(&short, &["password"]);
    // 8 characters, 16 bytes.
    app.register_user("ivan@example.ru", "парольпп");
    assert_eq!(app.login("ivan@example.ru", "парольпп").status, 200);
}

#[test]
fn a_72_byte_password_is_accepted_and_a_73_byte_one_is_refused_not_truncated() {
    let app = spawn_app();
    let password_72 = "p".repeat(72);
    let password_73 = "p".repeat(73);
    let refused = app.register(&valid_registration("ada@example.com", &password_73));
    assert_invalid_fields(&refused, &["password"]);
    assert_eq!(
        count_users(&app),
        0,
        "nothing stored for a refused password"
    );

    app.register_user("ada@example.com", &password_72);
    assert_eq!(app.login("ada@example.com", &password_72).status, 200);
}

#[test]
fn a_72_byte_multibyte_password_is_accepted_and_logs_in() {
    let app = spawn_app();
    let password = "€".repeat(24); // 24 characters, 72 bytes
    assert_eq!(password.len(), 72);
    app.register_user("ada@example.com", &password);

    let response = app.login("ada@example.com", &password);
    assert_eq!(response.status, 200, "{}", response.text);
    // Every byte counts: changing only the last character is a wrong password.
    let almost = format!("{}¥", "€".repeat(23));
    assert_eq!(app.login("ada@example.com", &almost).status, 401);
}

#[test]
fn a_password_of_few_characters_but_over_72_bytes_is_refused() {
    let app = spawn_app();
    let password = format!("a{}", "€".repeat(24)); // 25 characters, 73 bytes
    assert_eq!(password.len(), 73);
    let response = app.register(&valid_registration("ada@example.com", &password));
    assert_invalid_fields(&response, &["password"]);
    assert_eq!(count_users(&app), 0);
}

#[test]
fn every_missing_field_is_listed_at_once() {
    let app = spawn_app();
    let response = app.register(&json!({}));
    assert_invalid_fields(&response, &["email", "name", "password", "phone"]);
}

#[test]
fn each_missing_required_field_alone_is_reported() {
    let app = spawn_app();
    for field in ["name", "phone", "email", "password"] {
        let mut body = valid_registration("ada@example.com", "correct horse");
        body.as_object_mut().expect("object").remove(field);
        let response = app.register(&body);
        assert_invalid_fields(&response, &[field]);
    }
    assert_eq!(count_users(&app), 0);
}

#[test]
fn every_invalid_field_is_listed_at_once() {
    let app = spawn_app();
    let response = app.register(&json!({
        "name": "  ",
        "phone": "call me",
        "email": "not-an-email",
        "password": "short",
        "image_url": "ftp://example.com/a.png",
    }));
    assert_invalid_fields(
        &response,
        &["email", "image_url", "name", "password", "phone"],
    );
    assert_eq!(count_users(&app), 0);
}

#[test]
fn fields_of_the_wrong_json_type_are_all_listed() {
    let app = spawn_app();
    let response = app.register(&json!({
        "name": 42,
        "phone": 5550100,
        "email": true,
        "password": ["correct", "horse"],
        "image_url": {"href": "https://example.com/a.png"},
    }));
    assert_invalid_fields(
        &response,
        &["email", "image_url", "name", "password", "phone"],
    );
}

#[test]
fn a_null_required_field_is_refused() {
    let app = spawn_app();
    let response = app.register(&registration_with("name", Value::Null));
    assert_invalid_fields(&response, &["name"]);
}

#[test]
fn unknown_fields_are_ignored() {
    let app = spawn_app();
    let mut body = valid_registration("ada@example.com", "correct horse");
    body["role"] = json!("admin");
    body["id"] = json!(99);
    body["password_hash"] = json!("$2b$04$not-a-real-hash");
    let response = app.register(&body);
    assert_eq!(response.status, 201, "{}", response.text);
    assert_eq!(response.json["id"], json!(1));
    assert!(response.json.get("role").is_none(), "{}", response.text);
    assert_eq!(app.login("ada@example.com", "correct horse").status, 200);
}

#[test]
fn a_json_content_type_with_a_charset_is_accepted() {
    let app = spawn_app();
    let body = valid_registration("ada@example.com", "correct horse").to_string();
    let response = app.post_raw(
        "/auth/register",
        Some("application/json; charset=utf-8"),
        body.as_bytes(),
    );
    assert_eq!(response.status, 201, "{}", response.text);
    assert_eq!(response.json["email"], json!("ada@example.com"));
}
