//! The registration and login bodies' rules, case by case, through the same parsing the
//! handlers use.
use serde_json::{json, Value};

use super::{parse_login, Credentials, RegisterRequest};
use crate::body;
use crate::error::FieldError;

type NewUser = RegisterRequest;

/// The error pydantic gives for a field left out, written out independently of `body`.
fn missing(loc: Vec<Value>) -> FieldError {
    FieldError::new(loc, "Field required", "missing")
}

fn field_loc(field: &str) -> Vec<Value> {
    vec![json!("body"), json!(field)]
}

fn parse_register(
    body: &[u8],
    content_type: Option<&str>,
) -> Result<RegisterRequest, Vec<FieldError>> {
    body::json(body, content_type)
}

const JSON: Option<&str> = Some("application/json");
const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

fn valid() -> Value {
    json!({
        "name": "Ann Lee",
        "phone": "+1 (555) 010-9999",
        "email": "ann@example.com",
        "password": "correct horse",
        "image_url": "https://example.com/ann.png",
    })
}

fn with(field: &str, value: Value) -> Value {
    let mut body = valid();
    body[field] = value;
    body
}

fn without(field: &str) -> Value {
    let mut body = valid();
    if let Some(object) = body.as_object_mut() {
        object.remove(field);
    }
    body
}

fn register(body: &Value) -> Result<NewUser, Vec<FieldError>> {
    parse_register(body.to_string().as_bytes(), JSON)
}

fn accepted(body: &Value) -> NewUser {
    match register(body) {
        Ok(user) => user,
        Err(errors) => panic!("expected {body} to be accepted, got {errors:#?}"),
    }
}

fn errors(body: &Value) -> Vec<FieldError> {
    match register(body) {
        Ok(user) => panic!("expected {body} to be refused, got {user:?}"),
        Err(errors) => errors,
    }
}

/// Returns the single error a body produced, failing if there are none or several.
fn only_error(body: &Value) -> FieldError {
    let mut errors = errors(body);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    errors.remove(0)
}

fn raw_errors(result: Result<impl std::fmt::Debug, Vec<FieldError>>) -> Vec<FieldError> {
    match result {
        Ok(value) => panic!("expected a refusal, got {value:?}"),
        Err(errors) => errors,
    }
}

fn loc(parts: &[Value]) -> Vec<Value> {
    parts.to_vec()
}

fn assert_field_error(error: &FieldError, field: &str, kind: &str) {
    assert_eq!(error.loc, loc(&[json!("body"), json!(field)]), "{error:?}");
    assert_eq!(error.kind, kind, "{error:?}");
}

// ---- a good registration ----

#[test]
fn a_valid_registration_is_normalised() {
    let user = accepted(&json!({
        "name": "  Ann Lee \n",
        "phone": " +1 (555) 010-9999 ",
        "email": " Ann@Example.COM ",
        "password": "  spaced out  ",
        "image_url": "  https://example.com/ann.png\t",
    }));
    assert_eq!(
        user,
        NewUser {
            name: "Ann Lee".to_owned(),
            phone: "+1 (555) 010-9999".to_owned(),
            email: "ann@example.com".to_owned(),
            password: "  spaced out  ".to_owned(),
            image_url: Some("https://example.com/ann.png".to_owned()),
        }
    );
}

#[test]
fn unknown_fields_are_ignored() {
    let user = accepted(&with("is_admin", json!(true)));
    assert_eq!(user.name, "Ann Lee");
}

// ---- content type ----

#[test]
fn json_content_type_is_matched_ignoring_case_and_parameters() {
    let body = valid().to_string();
    for content_type in [
        "application/json",
        "Application/JSON; charset=utf-8",
        "  application/json ;charset=UTF-8",
        "application/vnd.api+json",
        "application/merge-patch+json; q=1",
    ] {
        assert!(
            parse_register(body.as_bytes(), Some(content_type)).is_ok(),
            "{content_type}"
        );
    }
}

#[test]
fn a_missing_or_blank_content_type_is_read_as_json() {
    let body = valid().to_string();
    assert!(parse_register(body.as_bytes(), None).is_ok());
    assert!(parse_register(body.as_bytes(), Some("")).is_ok());
    assert!(parse_register(body.as_bytes(), Some("  ")).is_ok());
    assert!(parse_login(br#"{"email":"a@b.c","password":"x"}"#, None).is_ok());
}

#[test]
fn register_refuses_other_content_types_with_one_body_error() {
    let body = valid().to_string();
    let errors = raw_errors(parse_register(body.as_bytes(), Some("text/plain")));
    assert_eq!(
        errors,
        vec![FieldError::new(
            vec![json!("body")],
            "Unsupported content type 'text/plain': expected application/json",
            "content_type",
        )]
    );
    for content_type in [
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "text/json",
        "json",
        "application/jsonx",
        "; charset=utf-8",
    ] {
        let errors = raw_errors(parse_register(body.as_bytes(), Some(content_type)));
        assert_eq!(errors.len(), 1, "{content_type}");
        assert_eq!(errors[0].kind, "content_type", "{content_type}");
    }
}

#[test]
fn login_refuses_other_content_types_naming_both_accepted_ones() {
    let errors = raw_errors(parse_login(
        b"username=a&password=b",
        Some("Text/Plain; x=y"),
    ));
    assert_eq!(
        errors,
        vec![FieldError::new(
            vec![json!("body")],
            "Unsupported content type 'text/plain': expected application/json or \
             application/x-www-form-urlencoded",
            "content_type",
        )]
    );
    let errors = raw_errors(parse_login(b"", Some("multipart/form-data; boundary=b")));
    assert_eq!(errors[0].kind, "content_type");
}

#[test]
fn an_echoed_content_type_is_escaped_and_shortened() {
    let hostile = format!("text/\u{1b}[31m{}", "x".repeat(500));
    let errors = raw_errors(parse_register(b"{}", Some(&hostile)));
    assert!(!errors[0].msg.contains('\u{1b}'), "{}", errors[0].msg);
    assert!(errors[0].msg.len() < 200, "{}", errors[0].msg);
}

// ---- body decoding ----

#[test]
fn an_empty_body_is_a_missing_body() {
    let expected = vec![FieldError::new(
        vec![json!("body")],
        "Field required",
        "missing",
    )];
    assert_eq!(raw_errors(parse_register(b"", JSON)), expected);
    assert_eq!(raw_errors(parse_register(b"", None)), expected);
    assert_eq!(raw_errors(parse_login(b"", JSON)), expected);
}

#[test]
fn a_json_null_body_is_a_missing_body_as_in_fastapi() {
    let errors = raw_errors(parse_register(b"null", JSON));
    assert_eq!(
        errors,
        vec![FieldError::new(
            vec![json!("body")],
            "Field required",
            "missing"
        )]
    );
}

#[test]
fn malformed_json_reports_the_byte_offset_and_serde_message() {
    let errors = raw_errors(parse_register(b"{", JSON));
    assert_eq!(
        errors,
        vec![FieldError::new(
            vec![json!("body"), json!(1)],
            "JSON decode error",
            "json_invalid"
        )
        .with_ctx(json!({"error": "EOF while parsing an object"}))]
    );
}

#[test]
fn json_error_offsets_match_python_for_common_mistakes() {
    for (body, offset) in [
        ("x", 0),
        ("   ", 3),
        (r#"{"a": }"#, 6),
        (r#"{"a": 1,}"#, 8),
        (r#"{"a" 1}"#, 5),
        ("[1,2", 4),
        ("{} x", 3),
        ("{\"a\":1}\n\n]", 9),
    ] {
        let errors = raw_errors(parse_register(body.as_bytes(), JSON));
        assert_eq!(errors.len(), 1, "{body}");
        assert_eq!(
            errors[0].loc,
            loc(&[json!("body"), json!(offset)]),
            "{body}"
        );
        assert_eq!(errors[0].kind, "json_invalid", "{body}");
        assert_eq!(errors[0].msg, "JSON decode error", "{body}");
    }
}

#[test]
fn json_error_offsets_count_bytes_across_lines() {
    let body = "{\n  \"name\": \"é\",\n  \"phone\": nope\n}";
    let errors = raw_errors(parse_register(body.as_bytes(), JSON));
    let offset = body.find("nope").map(|i| i + 1);
    assert_eq!(errors[0].loc, loc(&[json!("body"), json!(offset)]));
    assert_eq!(errors[0].ctx, Some(json!({"error": "expected ident"})));
}

#[test]
fn invalid_utf8_is_a_json_decode_error_at_the_first_bad_byte() {
    let errors = raw_errors(parse_register(b"{\"name\": \"\xFF\"}", JSON));
    assert_eq!(
        errors,
        vec![FieldError::new(
            vec![json!("body"), json!(10)],
            "JSON decode error",
            "json_invalid"
        )
        .with_ctx(json!({"error": "invalid UTF-8"}))]
    );
}

#[test]
fn a_utf8_byte_order_mark_is_skipped_and_counted_in_offsets() {
    let mut body = b"\xEF\xBB\xBF".to_vec();
    body.extend_from_slice(valid().to_string().as_bytes());
    assert!(parse_register(&body, JSON).is_ok());
    let errors = raw_errors(parse_register(b"\xEF\xBB\xBFx", JSON));
    assert_eq!(errors[0].loc, loc(&[json!("body"), json!(3)]));
}

#[test]
fn deeply_nested_json_is_refused_without_overflowing_the_stack() {
    let body = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let errors = raw_errors(parse_register(body.as_bytes(), JSON));
    assert_eq!(errors[0].kind, "json_invalid");
    let nested = format!("{{\"name\": {}{}}}", "[".repeat(10_000), "]".repeat(10_000));
    assert_eq!(
        raw_errors(parse_register(nested.as_bytes(), JSON))[0].kind,
        "json_invalid"
    );
}

#[test]
fn valid_json_that_is_not_an_object_is_refused() {
    for body in ["[]", "[{}]", "\"text\"", "1", "true", "1.5"] {
        let errors = raw_errors(parse_register(body.as_bytes(), JSON));
        assert_eq!(
            errors,
            vec![FieldError::new(
                vec![json!("body")],
                "Input should be a valid dictionary or object to extract fields from",
                "model_attributes_type",
            )],
            "{body}"
        );
    }
}

// ---- required fields and types ----

#[test]
fn each_missing_required_field_is_reported_by_name() {
    for field in ["name", "phone", "email", "password"] {
        let error = only_error(&without(field));
        assert_eq!(error, missing(field_loc(field)), "{field}");
        assert_eq!(error.msg, "Field required");
    }
}

#[test]
fn an_empty_object_reports_all_four_required_fields_in_order() {
    let errors = errors(&json!({}));
    let fields: Vec<&Value> = errors.iter().map(|e| &e.loc[1]).collect();
    assert_eq!(
        fields,
        [
            &json!("name"),
            &json!("phone"),
            &json!("email"),
            &json!("password")
        ]
    );
    assert!(errors.iter().all(|e| e.kind == "missing"));
}

#[test]
fn non_strings_where_strings_are_expected_are_string_type_errors() {
    for field in ["name", "phone", "email", "password"] {
        for value in [
            json!(12345678),
            json!(null),
            json!(true),
            json!(["a"]),
            json!({"a": 1}),
        ] {
            let error = only_error(&with(field, value.clone()));
            assert_field_error(&error, field, "string_type");
            assert_eq!(
                error.msg, "Input should be a valid string",
                "{field} {value}"
            );
            assert_eq!(error.ctx, None);
        }
    }
}

#[test]
fn several_bad_fields_are_all_reported_in_field_order() {
    let errors = errors(&json!({
        "image_url": "ftp://example.com/x",
        "password": "short",
        "email": "a@b",
        "phone": "12a45",
        "name": " ",
    }));
    let fields: Vec<&Value> = errors.iter().map(|e| &e.loc[1]).collect();
    assert_eq!(
        fields,
        [
            &json!("name"),
            &json!("phone"),
            &json!("email"),
            &json!("password"),
            &json!("image_url")
        ]
    );
    let kinds: Vec<&str> = errors.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "string_too_short",
            "value_error",
            "value_error",
            "string_too_short",
            "url_scheme"
        ]
    );
}

// ---- name ----

#[test]
fn name_is_stored_trimmed() {
    assert_eq!(accepted(&with("name", json!("\t Zoë  "))).name, "Zoë");
}

#[test]
fn a_blank_name_is_too_short() {
    for value in ["", "   ", "\n\t"] {
        let error = only_error(&with("name", json!(value)));
        assert_field_error(&error, "name", "string_too_short");
        assert_eq!(error.msg, "String should have at least 1 character");
        assert_eq!(error.ctx, Some(json!({"min_length": 1})));
    }
}

#[test]
fn a_name_of_one_character_is_accepted() {
    assert_eq!(accepted(&with("name", json!("A"))).name, "A");
}

#[test]
fn name_of_100_multibyte_characters_is_accepted() {
    let name = "é".repeat(100);
    assert_eq!(
        accepted(&with("name", json!(format!("  {name}  ")))).name,
        name
    );
}

#[test]
fn name_of_101_characters_is_too_long() {
    let error = only_error(&with("name", json!("é".repeat(101))));
    assert_field_error(&error, "name", "string_too_long");
    assert_eq!(error.msg, "String should have at most 100 characters");
    assert_eq!(error.ctx, Some(json!({"max_length": 100})));
}

// ---- phone ----

#[test]
fn a_phone_number_longer_than_its_column_is_refused() {
    let fits = "+1 (555) 010-9999 - 000 - 000";
    assert!(fits.len() <= 32);
    accepted(&with("phone", json!(fits)));
    let padded = "+1 (555) 010 - 9999 - - - - - - - 1";
    assert!(padded.chars().count() > 32);
    let error = only_error(&with("phone", json!(padded)));
    assert_eq!(error.kind, "value_error");
    assert!(error.msg.contains("at most 32"), "{}", error.msg);
}

#[test]
fn phone_numbers_in_common_formats_are_accepted_and_kept_as_typed() {
    for phone in [
        "+1 (555) 010-9999",
        "12345",
        "555.010.9999",
        "+44 20 7946 0958",
        "(0)12-34",
    ] {
        assert_eq!(
            accepted(&with("phone", json!(format!(" {phone} ")))).phone,
            phone
        );
    }
}

#[test]
fn phone_with_20_digits_is_accepted() {
    let phone = "+".to_owned() + &"9".repeat(20);
    assert_eq!(accepted(&with("phone", json!(phone))).phone, phone);
}

#[test]
fn phone_with_a_letter_is_refused_naming_it() {
    let error = only_error(&with("phone", json!("12a45")));
    assert_field_error(&error, "phone", "value_error");
    assert!(
        error.msg.starts_with("value is not a valid phone number: "),
        "{}",
        error.msg
    );
    assert!(error.msg.contains("'a'"), "{}", error.msg);
    let reason = error
        .msg
        .trim_start_matches("value is not a valid phone number: ");
    assert_eq!(error.ctx, Some(json!({"reason": reason})));
}

#[test]
fn phone_with_too_few_digits_is_refused() {
    let error = only_error(&with("phone", json!("+1 (234)")));
    assert_field_error(&error, "phone", "value_error");
    assert!(error.msg.contains("it has 4 digits"), "{}", error.msg);
    assert!(error.msg.contains("at least 5"), "{}", error.msg);
    assert!(only_error(&with("phone", json!("")))
        .msg
        .contains("it has 0 digits"));
    assert!(only_error(&with("phone", json!("--- ()")))
        .msg
        .contains("0 digits"));
}

#[test]
fn phone_with_too_many_digits_is_refused() {
    let error = only_error(&with("phone", json!("1".repeat(21))));
    assert!(error.msg.contains("it has 21 digits"), "{}", error.msg);
    assert!(error.msg.contains("at most 20"), "{}", error.msg);
}

#[test]
fn phone_plus_is_allowed_only_once_at_the_start() {
    for phone in ["1+2345", "++12345", "12345+"] {
        let error = only_error(&with("phone", json!(phone)));
        assert!(
            error.msg.contains("'+' is allowed only at the start"),
            "{phone}: {}",
            error.msg
        );
    }
}

#[test]
fn phone_refuses_non_ascii_digits_tabs_and_slashes() {
    for phone in ["١٢٣٤٥٦", "123\t456", "123/456", "12345 ext 6", "１２３４５"] {
        let error = only_error(&with("phone", json!(phone)));
        assert_eq!(error.kind, "value_error", "{phone}");
    }
}

// ---- email ----

#[test]
fn email_is_stored_trimmed_and_lower_cased() {
    assert_eq!(
        accepted(&with("email", json!("Ann@Example.COM "))).email,
        "ann@example.com"
    );
}

#[test]
fn ordinary_and_international_addresses_are_accepted() {
    for email in [
        "a.b+tag@sub.example.co.uk",
        "o'neil@example.com",
        "x_y-z@a-b.io",
        "!#$%&'*+/=?^_`{|}~-@example.com",
        "josé@café.fr",
        "用户@例子.广告",
        "a@b.c1",
        "1@2.co",
    ] {
        assert_eq!(accepted(&with("email", json!(email))).email, email);
    }
}

fn email_reason(email: &str) -> String {
    let error = only_error(&with("email", json!(email)));
    assert_field_error(&error, "email", "value_error");
    let prefix = "value is not a valid email address: ";
    assert!(error.msg.starts_with(prefix), "{email}: {}", error.msg);
    let reason = error.msg[prefix.len()..].to_owned();
    assert_eq!(error.ctx, Some(json!({ "reason": reason })));
    reason
}

#[test]
fn addresses_without_exactly_one_at_sign_are_refused() {
    assert!(email_reason("ann.example.com").contains("must have an @-sign"));
    assert!(email_reason("").contains("must have an @-sign"));
    assert!(email_reason("a@b@example.com").contains("exactly one @-sign"));
    assert!(email_reason("\"a@b\"@example.com").contains("exactly one @-sign"));
}

#[test]
fn addresses_with_an_empty_side_are_refused() {
    assert!(email_reason("@example.com").contains("before the @-sign"));
    assert!(email_reason("ann@").contains("after the @-sign"));
    assert!(email_reason("  @  ").contains("before the @-sign"));
}

#[test]
fn a_domain_without_a_period_is_refused() {
    assert!(email_reason("a@b").contains("should have a period"));
    assert!(email_reason("a@localhost").contains("should have a period"));
}

#[test]
fn misplaced_periods_are_refused() {
    assert!(email_reason("a..b@x.com").contains("two periods in a row"));
    assert!(email_reason(".a@x.com").contains("cannot start with a period"));
    assert!(email_reason("a.@x.com").contains("immediately before the @-sign"));
    assert!(email_reason("a@.x.com").contains("immediately after the @-sign"));
    assert!(email_reason("a@x.com.").contains("cannot end with a period"));
    assert!(email_reason("a@x..com").contains("two periods in a row"));
}

#[test]
fn domain_labels_starting_or_ending_with_a_hyphen_are_refused() {
    for email in ["a@-x.com", "a@x-.com", "a@x.-com", "a@x.com-"] {
        assert!(email_reason(email).contains("hyphen"), "{email}");
    }
    assert_eq!(
        accepted(&with("email", json!("a@x--y.com"))).email,
        "a@x--y.com"
    );
}

#[test]
fn invalid_characters_are_listed_escaped_and_once_each() {
    let reason = email_reason("a b\tc d@x.com");
    assert!(
        reason.contains("before the @-sign: ' ', '\\t'."),
        "{reason}"
    );
    assert!(email_reason("a@x_y.com").contains("after the @-sign: '_'."));
    assert!(email_reason("a\u{7}@x.com").contains("'\\u{7}'"));
    assert!(email_reason("a@exa mple.com").contains("after the @-sign: ' '"));
    assert!(email_reason("a(b)<c>,d;e:f@x.com").contains(", …"));
}

#[test]
fn quoted_local_parts_are_refused() {
    assert!(email_reason("\"ann lee\"@example.com").contains("Quoted forms"));
}

#[test]
fn ip_address_domains_are_refused() {
    assert!(email_reason("a@[192.0.2.1]").contains("IP address literals"));
    assert!(email_reason("a@[ipv6:2001:db8::1]").contains("IP address literals"));
    assert!(email_reason("a@192.0.2.1").contains("top-level domain"));
    assert!(email_reason("a@example.123").contains("top-level domain"));
}

#[test]
fn the_local_part_may_have_64_bytes_but_not_65() {
    let ok = format!("{}@x.com", "a".repeat(64));
    assert_eq!(accepted(&with("email", json!(ok))).email, ok);
    assert!(email_reason(&format!("{}@x.com", "a".repeat(65)))
        .contains("before the @-sign is too long"));
    // Bytes, not characters: 33 two-byte letters are 66 bytes.
    assert!(email_reason(&format!("{}@x.com", "é".repeat(33))).contains("66 bytes"));
}

#[test]
fn the_address_may_have_254_bytes_but_not_255() {
    let domain = |len: usize| {
        // Labels of at most 63 characters joined by periods, ending in ".com".
        let body = "d".repeat(len - 4);
        let labels: Vec<String> = body
            .as_bytes()
            .chunks(63)
            .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
            .collect();
        let mut domain = labels.join(".");
        domain.truncate(len - 4);
        domain.trim_end_matches('.').to_owned() + ".com"
    };
    let ok = format!("a@{}", domain(252));
    assert_eq!(ok.len(), 254, "{ok}");
    assert_eq!(accepted(&with("email", json!(ok))).email, ok);
    let long = format!("a@{}", domain(253));
    assert_eq!(long.len(), 255, "{long}");
    assert!(email_reason(&long).contains("too long (255 bytes"));
}

#[test]
fn a_domain_label_may_have_63_characters_but_not_64() {
    let ok = format!("a@{}.com", "b".repeat(63));
    assert_eq!(accepted(&with("email", json!(ok))).email, ok);
    assert!(email_reason(&format!("a@{}.com", "b".repeat(64))).contains("at most 63"));
}

#[test]
fn length_limits_apply_to_the_lower_cased_address() {
    // 'Ⱥ' (2 bytes) lower-cases to 'ⱥ' (3 bytes): 32 of them are 64 bytes as sent but 96 as
    // stored, and the stored form is the one that must fit.
    let email = format!("{}@x.com", "Ⱥ".repeat(32));
    assert_eq!(email.find('@'), Some(64));
    assert!(email_reason(&email).contains("(96 bytes"));
}

// ---- password ----

#[test]
fn a_password_of_8_characters_is_accepted_untrimmed() {
    assert_eq!(
        accepted(&with("password", json!("12345678"))).password,
        "12345678"
    );
    assert_eq!(
        accepted(&with("password", json!("  abcd  "))).password,
        "  abcd  "
    );
}

#[test]
fn a_password_of_7_characters_is_too_short_even_if_it_has_more_bytes() {
    for password in ["1234567", "ééééééé", "       "] {
        let error = only_error(&with("password", json!(password)));
        assert_field_error(&error, "password", "string_too_short");
        assert_eq!(error.msg, "String should have at least 8 characters");
        assert_eq!(error.ctx, Some(json!({"min_length": 8})));
    }
}

#[test]
fn a_72_byte_password_with_multibyte_characters_is_accepted() {
    let password = "€".repeat(24);
    assert_eq!(password.len(), 72);
    assert_eq!(
        accepted(&with("password", json!(password))).password,
        password
    );
    let ascii = "p".repeat(72);
    assert_eq!(accepted(&with("password", json!(ascii))).password, ascii);
}

#[test]
fn a_73_byte_password_is_refused_not_truncated() {
    for password in ["€".repeat(24) + "a", "p".repeat(73), "é".repeat(40)] {
        let error = only_error(&with("password", json!(password)));
        assert_field_error(&error, "password", "string_too_long");
        assert_eq!(
            error.msg,
            "String should have at most 72 bytes in UTF-8 (bcrypt's limit)"
        );
        assert_eq!(error.ctx, Some(json!({"max_length": 72})));
    }
}

// ---- image_url ----

#[test]
fn image_url_absent_or_null_is_none() {
    assert_eq!(accepted(&without("image_url")).image_url, None);
    assert_eq!(accepted(&with("image_url", json!(null))).image_url, None);
}

#[test]
fn image_url_is_stored_trimmed_as_given_not_reserialised() {
    for url in [
        "HTTP://Example.COM",
        "https://example.com/a%20b.png",
        "https://example.com/图.png",
        "http://example.com:8080/a?b=c#d",
        "http://127.0.0.1/x",
    ] {
        assert_eq!(
            accepted(&with("image_url", json!(format!("  {url} "))))
                .image_url
                .as_deref(),
            Some(url)
        );
    }
}

#[test]
fn image_urls_outside_the_documented_pattern_are_refused() {
    for url in [
        "https://example.com/a b.png",
        "https://例子.广告/a.png",
        "http://user:pw@example.com/a",
        "http://[::1]/a",
        "http://example.com:65536/a",
        "http://999.1.1.1/a",
        "http://example.123/a",
        "http://-example.com/a",
    ] {
        let error = only_error(&with("image_url", json!(url)));
        assert_eq!(error.kind, "url_parsing", "{url}: {error:?}");
    }
}

#[test]
fn image_url_that_is_not_a_string_is_a_url_type_error() {
    for value in [json!(1), json!(true), json!(["https://x.com"]), json!({})] {
        let error = only_error(&with("image_url", value));
        assert_field_error(&error, "image_url", "url_type");
        assert_eq!(error.msg, "URL input should be a string or URL");
    }
}

#[test]
fn image_url_that_does_not_parse_is_a_url_parsing_error() {
    for (url, reason) in [
        ("not a url", "relative URL without a base"),
        ("/relative/path.png", "relative URL without a base"),
        ("", "input is empty"),
        ("   ", "input is empty"),
        ("http://", "empty host"),
        ("https://exa mple.com", "invalid international domain name"),
        ("http://x.com:99999/", "invalid port number"),
        ("http://x.com/a\tb", "control characters are not allowed"),
        ("http://x.com/\nb", "control characters are not allowed"),
    ] {
        let error = only_error(&with("image_url", json!(url)));
        assert_field_error(&error, "image_url", "url_parsing");
        assert_eq!(
            error.msg,
            format!("Input should be a valid URL, {reason}"),
            "{url:?}"
        );
        assert_eq!(error.ctx, Some(json!({"error": reason})), "{url:?}");
    }
}

#[test]
fn image_url_with_a_scheme_other_than_http_is_a_url_scheme_error() {
    for url in [
        "ftp://example.com/a.png",
        "javascript:alert(1)",
        "data:image/png;base64,AAAA",
        "file:///etc/passwd",
        "mailto:a@b.com",
    ] {
        let error = only_error(&with("image_url", json!(url)));
        assert_field_error(&error, "image_url", "url_scheme");
        assert_eq!(error.msg, "URL scheme should be 'http' or 'https'");
        assert_eq!(
            error.ctx,
            Some(json!({"expected_schemes": "'http' or 'https'"}))
        );
    }
}

#[test]
fn image_url_may_have_2048_characters_but_not_2049() {
    let prefix = "https://example.com/";
    let ok = format!("{prefix}{}", "é".repeat(2048 - prefix.len()));
    assert_eq!(
        accepted(&with("image_url", json!(ok))).image_url,
        Some(ok.clone())
    );
    let error = only_error(&with("image_url", json!(ok + "a")));
    assert_field_error(&error, "image_url", "url_too_long");
    assert_eq!(error.msg, "URL should have at most 2048 characters");
    assert_eq!(error.ctx, Some(json!({"max_length": 2048})));
}

// ---- login ----

#[test]
fn json_login_normalises_the_email_but_not_the_password() {
    let credentials = parse_login(
        br#"{"email": " Ann@Example.COM ", "password": " pw ", "x": 1}"#,
        JSON,
    )
    .unwrap();
    assert_eq!(
        credentials,
        Credentials {
            email: "ann@example.com".to_owned(),
            password: " pw ".to_owned(),
        }
    );
}

#[test]
fn json_login_does_not_check_format_or_length() {
    let credentials = parse_login(br#"{"email": "not an email", "password": ""}"#, JSON).unwrap();
    assert_eq!(credentials.email, "not an email");
    assert_eq!(credentials.password, "");
    let long = format!(r#"{{"email": "", "password": "{}"}}"#, "p".repeat(500));
    assert_eq!(
        parse_login(long.as_bytes(), JSON).unwrap().password.len(),
        500
    );
}

#[test]
fn json_login_reports_both_missing_fields() {
    let errors = raw_errors(parse_login(br#"{"username": "a@b.c"}"#, JSON));
    assert_eq!(
        errors,
        vec![missing(field_loc("email")), missing(field_loc("password"))]
    );
}

#[test]
fn json_login_refuses_non_string_fields() {
    let errors = raw_errors(parse_login(br#"{"email": 1, "password": null}"#, JSON));
    assert_eq!(errors.len(), 2);
    assert_field_error(&errors[0], "email", "string_type");
    assert_field_error(&errors[1], "password", "string_type");
}

#[test]
fn json_login_body_errors_match_registration() {
    assert_eq!(
        raw_errors(parse_login(b"[1]", JSON))[0].kind,
        "model_attributes_type"
    );
    assert_eq!(raw_errors(parse_login(b"{", None))[0].kind, "json_invalid");
    assert_eq!(raw_errors(parse_login(b"null", JSON))[0].kind, "missing");
}

#[test]
fn form_login_reads_username_as_the_email() {
    let credentials = parse_login(
        b"grant_type=password&username=Ann%40Example.COM+&password=p%20w+x&scope=&client_id=c",
        Some("application/x-www-form-urlencoded; charset=UTF-8"),
    )
    .unwrap();
    assert_eq!(
        credentials,
        Credentials {
            email: "ann@example.com".to_owned(),
            password: "p w x".to_owned(),
        }
    );
}

#[test]
fn form_login_takes_the_first_occurrence_of_a_field() {
    let credentials = parse_login(b"username=a&username=b&password=1&password=2", FORM).unwrap();
    assert_eq!(credentials.email, "a");
    assert_eq!(credentials.password, "1");
}

#[test]
fn form_login_lets_empty_values_through() {
    let credentials = parse_login(b"username=&password=", FORM).unwrap();
    assert_eq!(credentials.email, "");
    assert_eq!(credentials.password, "");
}

#[test]
fn form_login_reports_missing_username_and_password() {
    assert_eq!(
        raw_errors(parse_login(b"", FORM)),
        vec![
            missing(field_loc("username")),
            missing(field_loc("password"))
        ]
    );
    assert_eq!(
        raw_errors(parse_login(b"username=a&grant_type=password", FORM)),
        vec![missing(field_loc("password"))]
    );
    assert_eq!(
        raw_errors(parse_login(b"email=a&password=b", FORM)),
        vec![missing(field_loc("username"))]
    );
}

#[test]
fn form_login_survives_invalid_utf8_and_bad_escapes() {
    let credentials = parse_login(b"username=%FF%zz&password=\xFF", FORM).unwrap();
    assert_eq!(credentials.email, "\u{fffd}%zz");
    assert_eq!(credentials.password, "\u{fffd}");
}

// ---- serialisation ----

#[test]
fn field_errors_serialise_like_fastapi_detail_items() {
    let plain = missing(field_loc("name"));
    assert_eq!(
        serde_json::to_value(&plain).unwrap(),
        json!({"loc": ["body", "name"], "msg": "Field required", "type": "missing"})
    );
    let with_ctx = FieldError::new(
        field_loc("password"),
        "String should have at least 8 characters",
        "string_too_short",
    )
    .with_ctx(json!({"min_length": 8}));
    assert_eq!(
        serde_json::to_value(&with_ctx).unwrap(),
        json!({
            "loc": ["body", "password"],
            "msg": "String should have at least 8 characters",
            "type": "string_too_short",
            "ctx": {"min_length": 8},
        })
    );
}

// ---- robustness ----

#[test]
fn arbitrary_bytes_never_panic() {
    // A small deterministic generator: enough variety to reach odd corners, and repeatable.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let alphabet: &[u8] = b"{}[]\":,@.+-() abc019\\\xC3\xA9\xFF\x00\ntrueflsn%&=";
    let content_types = [
        JSON,
        FORM,
        None,
        Some("text/plain"),
        Some("application/ld+json"),
    ];
    for round in 0..3000 {
        let len = (next() % 64) as usize;
        let body: Vec<u8> = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect();
        let content_type = content_types[round % content_types.len()];
        let _ = parse_register(&body, content_type);
        let _ = parse_login(&body, content_type);
    }
}

#[test]
fn hostile_field_values_never_panic() {
    let values = [
        "",
        "@",
        "@@",
        ".",
        "..",
        "-",
        "@.",
        ".@",
        "a@.",
        "@-",
        "a@-",
        "[",
        "\u{0}",
        "é@é.é",
        "\u{10FFFF}@x.com",
        "a@b.\u{0663}",
        "+",
        "http://[::1",
        "http://[::1]/",
        "http:",
        "https:x",
        "\u{202E}",
        "İ@İ.İ",
    ];
    for value in values {
        for field in ["name", "phone", "email", "password", "image_url"] {
            let _ = register(&with(field, json!(value)));
        }
    }
}
