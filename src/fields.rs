//! The rules for each kind of field a request body may hold (name, phone, email, password,
//! image URL): the check that normalises a value or says what is wrong with it, in pydantic's
//! words, and beside it the OpenAPI schema that documents the same rule.
//!
//! Body types (in the route modules) name a rule per field, as in
//! `fields.required("name", fields::name)`, and document the field with the matching schema
//! (`#[schema(schema_with = fields::name_schema)]`); patterns in the document are checked
//! against the rules by the tests below.

use serde_json::{json, Value};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{Object, Schema};

use crate::body::{string, Problem, Rule};

pub const NAME_MAX_CHARS: usize = 100;
pub const PASSWORD_MIN_CHARS: usize = 8;
/// bcrypt reads at most 72 bytes; refusing longer passwords beats silently ignoring their tail.
pub const PASSWORD_MAX_BYTES: usize = 72;
pub const PHONE_MIN_DIGITS: usize = 5;
pub const PHONE_MAX_DIGITS: usize = 20;
/// The FastAPI schema's column is VARCHAR(32): formatting must fit beside the digits.
pub const PHONE_MAX_CHARS: usize = 32;
pub const EMAIL_MAX_BYTES: usize = 254;
const EMAIL_LOCAL_MAX_BYTES: usize = 64;
const DOMAIN_LABEL_MAX_CHARS: usize = 63;
pub const URL_MAX_CHARS: usize = 2048;

/// The characters `str::trim` removes (Unicode White_Space), spelled out so that every regex
/// engine reading a documented pattern (ECMA-262, Python, Rust) means the same set.
const TRIMMED_CLASS: &str =
    r"\t\n\u000B\u000C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";

/// An http(s) URL whose host is a plain ASCII name (its last label starts with a letter, so it
/// is never read as a number) or a dotted IPv4 address, with an optional port up to 65535, then
/// a path, query or fragment of anything but whitespace and control characters.
const IMAGE_URL_CORE: &str = concat!(
    r"[Hh][Tt][Tt][Pp][Ss]?://",
    r"(?:(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*",
    r"[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?",
    r"|(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9]))",
    r"(?::(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}))?",
    r"(?:[/?#][^\x00-\x20\x7F-\x9F\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*)?"
);

/// The `name` rule as a pattern, for the OpenAPI document: 1 to 100 characters once
/// surrounding whitespace is trimmed. `validate_name` implements exactly this.
fn name_pattern() -> String {
    let w = TRIMMED_CLASS;
    let middle = NAME_MAX_CHARS - 2;
    format!(r"^[{w}]*[^{w}](?:[\s\S]{{0,{middle}}}[^{w}])?[{w}]*$")
}

/// The `phone` rule as a pattern, for the OpenAPI document (with `maxLength`
/// [`PHONE_MAX_CHARS`] on the untrimmed value). `validate_phone` implements exactly this.
fn phone_pattern() -> String {
    let w = TRIMMED_CLASS;
    format!(r"^[{w}]*\+?(?:[ ().-]*[0-9]){{{PHONE_MIN_DIGITS},{PHONE_MAX_DIGITS}}}[ ().-]*[{w}]*$")
}

/// The `image_url` rule as a pattern, for the OpenAPI document (with `maxLength`
/// [`URL_MAX_CHARS`] on the untrimmed value). `validate_image_url` matches it.
fn image_url_pattern() -> String {
    let w = TRIMMED_CLASS;
    format!(r"^[{w}]*{IMAGE_URL_CORE}[{w}]*$")
}
/// How many distinct offending characters an email error lists before it stops.
const MAX_CHARS_LISTED: usize = 5;

// ---- the rules, each beside its documentation ----

/// `name`: trimmed, then 1 to [`NAME_MAX_CHARS`] characters.
pub fn name(value: &Value) -> Rule<String> {
    string(value, validate_name)
}

/// Documents [`name`].
pub fn name_schema() -> Object {
    string_schema(&format!(
        "Display name: surrounding whitespace is trimmed, then 1 to {NAME_MAX_CHARS} characters."
    ))
    .pattern(Some(name_pattern()))
    .examples(["Ada Lovelace"])
    .build()
}

/// `phone`: [`PHONE_MIN_DIGITS`] to [`PHONE_MAX_DIGITS`] digits with common punctuation,
/// trimmed but otherwise kept as typed.
pub fn phone(value: &Value) -> Rule<String> {
    string(value, validate_phone)
}

/// Documents [`phone`].
pub fn phone_schema() -> Object {
    string_schema(&format!(
        "Phone number: {PHONE_MIN_DIGITS} to {PHONE_MAX_DIGITS} digits, with an optional \
         leading '+', and spaces, dashes, dots or parentheses between them; at most \
         {PHONE_MAX_CHARS} characters. Stored as given."
    ))
    .max_length(Some(PHONE_MAX_CHARS))
    .pattern(Some(phone_pattern()))
    .examples(["+44 20 7946 0958"])
    .build()
}

/// `email` of a new account: a valid address, trimmed and lower-cased.
pub fn email(value: &Value) -> Rule<String> {
    string(value, validate_email)
}

/// Documents [`email`].
pub fn email_schema() -> Object {
    string_schema(
        "Email address: trimmed and stored lower-case. Two addresses that are equal after \
         Unicode NFKC normalisation and full case folding (`ａｎｎ@…` and `ann@…`, `straße@…` \
         and `STRASSE@…`) are one account, and the normalised form must be a valid address too.",
    )
    .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
        utoipa::openapi::KnownFormat::Email,
    )))
    .max_length(Some(EMAIL_MAX_BYTES))
    .examples(["ada@example.com"])
    .build()
}

/// An email given to log in: only normalised, as registration does. A malformed one simply
/// matches no user.
pub fn login_email(value: &Value) -> Rule<String> {
    string(value, |raw| Ok(normalise_email(raw)))
}

/// Normalises an email from anywhere else (the OAuth2 form's `username`) as [`login_email`].
///
/// This is what `users.email` holds for rows we write (trimmed, lower-cased), so the API's
/// `email` field is what it always was. Identity is decided by [`email_key`], not by this.
pub fn normalise_email(raw: &str) -> String {
    raw.trim().to_lowercase()
}

/// Returns the identity of an email: two emails are the same account exactly when their keys
/// are equal. The key is `NFKC(full_case_fold(NFKC(trim(email))))`, Unicode's
/// identifier-caseless match (UAX #31 / Unicode §3.13 D145), so fullwidth `ａｎｎ` is `ann`, the
/// Kelvin sign `K` is `k`, `ß`, `ẞ` and `SS` are `ss`, and Greek `Σ`, `σ` and final `ς` are
/// all `σ`.
///
/// Full case folding, not `to_lowercase`: lower-casing keeps `ß` as it is and turns a final
/// `Σ` into `ς`, so `STRASSE`/`straße` and `ΟΔΟΣ`/`οδοσ` would stay apart. The folding is
/// Unicode's default one, not the Turkic: dotless `ı` stays `ı` (so `ınci` and `inci` are two
/// accounts, and `INCI` is `inci`), and `İ` (U+0130) becomes `i̇` (`i` + U+0307, combining dot
/// above), which the email rule refuses before the @-sign, as it always has, since
/// `to_lowercase` gives the same.
///
/// Lower-casing before the key changes nothing (`fold(lower(x)) = fold(x)`), so the key of a
/// stored email equals the key of what the user types, whether the row is ours (lower-cased)
/// or the FastAPI service's (as typed).
pub fn email_key(email: &str) -> String {
    use icu_casemap::CaseMapper;
    use icu_normalizer::ComposingNormalizerBorrowed;
    let nfkc = ComposingNormalizerBorrowed::new_nfkc();
    let once = nfkc.normalize(email.trim());
    let folded = CaseMapper::new().fold_string(&once);
    nfkc.normalize(&folded).into_owned()
}

/// A new password: [`PASSWORD_MIN_CHARS`] characters to [`PASSWORD_MAX_BYTES`] bytes, never
/// trimmed or truncated.
pub fn new_password(value: &Value) -> Rule<String> {
    string(value, validate_password)
}

/// Documents [`new_password`].
pub fn new_password_schema() -> Object {
    string_schema(&format!(
        "At least {PASSWORD_MIN_CHARS} characters and at most {PASSWORD_MAX_BYTES} bytes of \
         UTF-8 (bcrypt's limit: longer passwords are refused, never truncated). Not trimmed."
    ))
    .min_length(Some(PASSWORD_MIN_CHARS))
    .max_length(Some(PASSWORD_MAX_BYTES))
    .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
        utoipa::openapi::KnownFormat::Password,
    )))
    .examples(["analytical-engine"])
    .build()
}

/// A password to check against a stored hash: any string, exactly as sent (an empty one
/// simply fails to match).
pub fn password(value: &Value) -> Rule<String> {
    string(value, |raw| Ok(raw.to_owned()))
}

/// Documents [`password`].
pub fn password_schema() -> Object {
    string_schema("The password.")
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
            utoipa::openapi::KnownFormat::Password,
        )))
        .build()
}

/// `image_url`: an absolute http(s) URL with a plain host, trimmed. Optional fields use it
/// through `Fields::optional`, which handles absence and `null`.
pub fn image_url(value: &Value) -> Rule<String> {
    validate_image_url(value)
}

/// Documents [`image_url`] as an optional field: the URL, or null.
pub fn image_url_schema() -> Schema {
    let url = string_schema(&format!(
        "Avatar: an absolute http or https URL of at most {URL_MAX_CHARS} characters with a \
         plain ASCII host name, or null. Surrounding whitespace is trimmed."
    ))
    .max_length(Some(URL_MAX_CHARS))
    .pattern(Some(image_url_pattern()))
    .build();
    Schema::OneOf(
        utoipa::openapi::schema::OneOfBuilder::new()
            .item(url)
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .build(),
    )
}

/// A refresh token as sent: any string, exactly as sent. One that is not a token of ours is a
/// 401 like a spent one, not a 422, so its shape tells a client nothing more.
pub fn refresh_token(value: &Value) -> Rule<String> {
    string(value, |raw| Ok(raw.to_owned()))
}

/// Documents [`refresh_token`].
pub fn refresh_token_schema() -> Object {
    string_schema(
        "The refresh_token of the last login or refresh: 64 URL-safe characters. Each is good \
         for one refresh.",
    )
    .examples(["mJ3Yq0kq4l8mYpQ2x1d9Zr0Vtq6o8Xb3sN7cA2eF5gH1iJ4kL7mN0oP3qR6sT9uV"])
    .build()
}

fn string_schema(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
}

// ---- how each rule is checked ----

fn too_short(min_length: usize, unit: &str) -> Problem {
    let plural = if min_length == 1 { "" } else { "s" };
    Problem::new(
        format!("String should have at least {min_length} {unit}{plural}"),
        "string_too_short",
    )
    .with_ctx(json!({ "min_length": min_length }))
}

fn validate_name(raw: &str) -> Result<String, Problem> {
    let name = raw.trim();
    let chars = name.chars().count();
    if chars < 1 {
        return Err(too_short(1, "character"));
    }
    if chars > NAME_MAX_CHARS {
        return Err(Problem::new(
            format!("String should have at most {NAME_MAX_CHARS} characters"),
            "string_too_long",
        )
        .with_ctx(json!({ "max_length": NAME_MAX_CHARS })));
    }
    Ok(name.to_owned())
}

fn validate_phone(raw: &str) -> Result<String, Problem> {
    // The length limit applies to the value as sent, as the document's `maxLength` does.
    let length = raw.chars().count();
    let problem = if length > PHONE_MAX_CHARS {
        Some(format!(
            "it is {length} characters long; at most {PHONE_MAX_CHARS} are allowed"
        ))
    } else {
        phone_problem(raw.trim())
    };
    match problem {
        None => Ok(raw.trim().to_owned()),
        Some(reason) => Err(value_error("phone number", reason)),
    }
}

fn phone_problem(phone: &str) -> Option<String> {
    let mut digits = 0_usize;
    for (i, c) in phone.char_indices() {
        match c {
            '0'..='9' => digits += 1,
            ' ' | '-' | '.' | '(' | ')' => {}
            '+' if i == 0 => {}
            '+' => return Some("'+' is allowed only at the start".to_owned()),
            other => {
                return Some(format!(
                    "'{}' is not allowed; use digits, spaces, dashes, dots, parentheses and a \
                     leading '+'",
                    other.escape_debug()
                ))
            }
        }
    }
    if digits < PHONE_MIN_DIGITS {
        return Some(format!(
            "it has {digits} digit{}; at least {PHONE_MIN_DIGITS} are needed",
            if digits == 1 { "" } else { "s" }
        ));
    }
    if digits > PHONE_MAX_DIGITS {
        return Some(format!(
            "it has {digits} digits; at most {PHONE_MAX_DIGITS} are allowed"
        ));
    }
    None
}

fn validate_email(raw: &str) -> Result<String, Problem> {
    let email = normalise_email(raw);
    match email_problem(&email).or_else(|| key_problem(&email)) {
        None => Ok(email),
        Some(reason) => Err(value_error("email address", reason)),
    }
}

/// Returns why the identity of `email` (valid as typed) is not an address this service
/// accepts. NFKC may lengthen an address (`ﷺ` is 18 letters) or turn a letter into
/// punctuation (`⒈` is `1.`), so the key must pass the same checks: an account must never
/// exist whose identity is longer than the limits or not an address at all.
fn key_problem(email: &str) -> Option<String> {
    let key = email_key(email);
    email_problem(&key).map(|reason| {
        format!("Once normalised (Unicode NFKC, case folded) as {key:?}, it is not valid: {reason}")
    })
}

/// Returns why `email` (already normalised) is not an address this service accepts, in the
/// words of python-email-validator where it has a matching rule.
fn email_problem(email: &str) -> Option<String> {
    let Some((local, domain)) = email.split_once('@') else {
        return Some("An email address must have an @-sign.".to_owned());
    };
    if domain.contains('@') {
        return Some("The email address is not valid. It must have exactly one @-sign.".to_owned());
    }
    if local.is_empty() {
        return Some("There must be something before the @-sign.".to_owned());
    }
    if domain.is_empty() {
        return Some("There must be something after the @-sign.".to_owned());
    }
    if email.len() > EMAIL_MAX_BYTES {
        return Some(format!(
            "The email address is too long ({} bytes; at most {EMAIL_MAX_BYTES} are allowed).",
            email.len()
        ));
    }
    local_part_problem(local).or_else(|| domain_problem(domain))
}

fn local_part_problem(local: &str) -> Option<String> {
    if local.contains('"') {
        return Some("Quoted forms before the @-sign are not allowed.".to_owned());
    }
    let is_atext = |c: char| c.is_alphanumeric() || "!#$%&'*+/=?^_`{|}~-.".contains(c);
    if let Some(listed) = list_invalid_chars(local, is_atext) {
        return Some(format!(
            "The email address contains invalid characters before the @-sign: {listed}."
        ));
    }
    if local.starts_with('.') {
        return Some("An email address cannot start with a period.".to_owned());
    }
    if local.ends_with('.') {
        return Some(
            "An email address cannot have a period immediately before the @-sign.".to_owned(),
        );
    }
    if local.contains("..") {
        return Some("An email address cannot have two periods in a row.".to_owned());
    }
    if local.len() > EMAIL_LOCAL_MAX_BYTES {
        return Some(format!(
            "The part before the @-sign is too long ({} bytes; at most {EMAIL_LOCAL_MAX_BYTES} \
             are allowed).",
            local.len()
        ));
    }
    None
}

fn domain_problem(domain: &str) -> Option<String> {
    if domain.starts_with('[') {
        return Some("IP address literals after the @-sign are not allowed.".to_owned());
    }
    let is_domain_char = |c: char| c.is_alphanumeric() || c == '-' || c == '.';
    if let Some(listed) = list_invalid_chars(domain, is_domain_char) {
        return Some(format!(
            "The email address contains invalid characters after the @-sign: {listed}."
        ));
    }
    if domain.starts_with('.') {
        return Some(
            "An email address cannot have a period immediately after the @-sign.".to_owned(),
        );
    }
    if domain.ends_with('.') {
        return Some("An email address cannot end with a period.".to_owned());
    }
    if domain.contains("..") {
        return Some("An email address cannot have two periods in a row.".to_owned());
    }
    if !domain.contains('.') {
        return Some("The part after the @-sign is not valid. It should have a period.".to_owned());
    }
    for label in domain.split('.') {
        if label.chars().count() > DOMAIN_LABEL_MAX_CHARS {
            return Some(format!(
                "After the @-sign, each part between periods can have at most \
                 {DOMAIN_LABEL_MAX_CHARS} characters."
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some(
                "After the @-sign, a part between periods cannot start or end with a hyphen."
                    .to_owned(),
            );
        }
    }
    let top_level = domain.rsplit('.').next().unwrap_or_default();
    if top_level.chars().all(char::is_numeric) {
        return Some(
            "The part after the @-sign is not valid. It is not within a valid top-level domain."
                .to_owned(),
        );
    }
    None
}

/// Lists the distinct characters of `text` that fail `allowed`, quoted and escaped, or `None`.
fn list_invalid_chars(text: &str, allowed: impl Fn(char) -> bool) -> Option<String> {
    let mut invalid: Vec<char> = Vec::new();
    for c in text.chars().filter(|&c| !allowed(c)) {
        if !invalid.contains(&c) {
            invalid.push(c);
        }
    }
    if invalid.is_empty() {
        return None;
    }
    let mut listed: Vec<String> = invalid
        .iter()
        .take(MAX_CHARS_LISTED)
        .map(|c| format!("'{}'", c.escape_debug()))
        .collect();
    if invalid.len() > MAX_CHARS_LISTED {
        listed.push("…".to_owned());
    }
    Some(listed.join(", "))
}

fn value_error(what: &str, reason: String) -> Problem {
    Problem::new(
        format!("value is not a valid {what}: {reason}"),
        "value_error",
    )
    .with_ctx(json!({ "reason": reason }))
}

fn validate_password(password: &str) -> Result<String, Problem> {
    // Never trimmed: spaces are as much a part of a password as any other character.
    if password.chars().count() < PASSWORD_MIN_CHARS {
        return Err(too_short(PASSWORD_MIN_CHARS, "character"));
    }
    if password.len() > PASSWORD_MAX_BYTES {
        return Err(Problem::new(
            format!(
                "String should have at most {PASSWORD_MAX_BYTES} bytes in UTF-8 (bcrypt's limit)"
            ),
            "string_too_long",
        )
        .with_ctx(json!({ "max_length": PASSWORD_MAX_BYTES })));
    }
    Ok(password.to_owned())
}

fn validate_image_url(value: &Value) -> Result<String, Problem> {
    let raw = match value {
        Value::String(raw) => raw,
        _ => {
            return Err(Problem::new(
                "URL input should be a string or URL",
                "url_type",
            ))
        }
    };
    // The length limit applies to the value as sent, as the document's `maxLength` does.
    if raw.chars().count() > URL_MAX_CHARS {
        return Err(Problem::new(
            format!("URL should have at most {URL_MAX_CHARS} characters"),
            "url_too_long",
        )
        .with_ctx(json!({ "max_length": URL_MAX_CHARS })));
    }
    let url = raw.trim();
    if url.is_empty() {
        return Err(url_parsing("input is empty".to_owned()));
    }
    // The URL parser drops tabs and newlines silently, but the string is stored as given, so
    // they would survive into the database.
    if url.chars().any(char::is_control) {
        return Err(url_parsing("control characters are not allowed".to_owned()));
    }
    let parsed = url::Url::parse(url).map_err(|err| url_parsing(err.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(
            Problem::new("URL scheme should be 'http' or 'https'", "url_scheme")
                .with_ctx(json!({ "expected_schemes": "'http' or 'https'" })),
        );
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(url_parsing("empty host".to_owned()));
    }
    if !image_url_regex().is_match(url) {
        return Err(url_parsing(
            "only a plain ASCII host name or IPv4 address (no user name) and an optional port \
             are accepted, with no whitespace or control characters after them"
                .to_owned(),
        ));
    }
    Ok(url.to_owned())
}

/// The documented URL pattern, compiled once (anchored at both ends of the trimmed value).
fn image_url_regex() -> &'static regex_lite::Regex {
    static REGEX: std::sync::OnceLock<regex_lite::Regex> = std::sync::OnceLock::new();
    REGEX.get_or_init(|| {
        regex_lite::Regex::new(&format!("^(?:{IMAGE_URL_CORE})$"))
            .expect("IMAGE_URL_CORE is a valid regex (a unit test compiles it)")
    })
}

fn url_parsing(error: String) -> Problem {
    Problem::new(
        format!("Input should be a valid URL, {error}"),
        "url_parsing",
    )
    .with_ctx(json!({ "error": error }))
}

#[cfg(test)]
mod tests {
    use super::*;

    // ---- the documented patterns are the rules ----

    /// Random strings over `alphabet`, reproducibly (xorshift), biased towards `prefixes`.
    fn samples(alphabet: &[&str], prefixes: &[&str], count: usize) -> Vec<String> {
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        (0..count)
            .map(|_| {
                let mut text = String::new();
                if !prefixes.is_empty() && next() % 4 != 0 {
                    text.push_str(prefixes[(next() as usize) % prefixes.len()]);
                }
                let len = (next() % 40) as usize;
                for _ in 0..len {
                    text.push_str(alphabet[(next() as usize) % alphabet.len()]);
                }
                text
            })
            .collect()
    }

    /// Asserts that the documented pattern (plus `maxLength`, in characters) accepts exactly
    /// what the validator accepts, over many generated values and the given edge cases.
    fn assert_pattern_is_the_rule(
        pattern: &str,
        max_chars: Option<usize>,
        validator: impl Fn(&str) -> bool,
        values: impl IntoIterator<Item = String>,
    ) {
        let regex = regex_lite::Regex::new(pattern).expect("the documented pattern compiles");
        let mut accepted = 0;
        for value in values {
            let documented =
                regex.is_match(&value) && max_chars.is_none_or(|max| value.chars().count() <= max);
            assert_eq!(documented, validator(&value), "disagree on {value:?}");
            accepted += usize::from(documented);
        }
        assert!(accepted > 10, "the samples should include valid values");
    }

    const TRICKY: [&str; 14] = [
        " ", "\t", "\n", "\u{3000}", "\u{85}", "\u{feff}", "\u{1c}", "\u{0}", "é", "👍", "\r",
        "\u{2028}", "\u{a0}", "\u{7f}",
    ];

    #[test]
    fn the_documented_name_pattern_is_exactly_the_name_rule() {
        let mut alphabet = vec!["a", "Z", "-", "'"];
        alphabet.extend(TRICKY);
        let mut values = samples(&alphabet, &[], 20_000);
        for n in [99, 100, 101] {
            values.push("é".repeat(n));
            values.push(format!(" {} ", "a".repeat(n)));
        }
        assert_pattern_is_the_rule(&name_pattern(), None, |v| validate_name(v).is_ok(), values);
    }

    #[test]
    fn the_documented_phone_pattern_is_exactly_the_phone_rule() {
        let mut alphabet = vec![
            "0", "1", "9", "5", "7", "3", "+", "(", ")", "-", ".", " ", "a",
        ];
        alphabet.extend(["12", "345", "6789"].repeat(6));
        alphabet.extend(TRICKY);
        let mut values = samples(&alphabet, &["+", "+1 ", " "], 20_000);
        values.push(format!("  {}  ", "1".repeat(20)));
        values.push("1-".repeat(16));
        // 31 characters inside spaces: the limit applies to the value as sent.
        values.push(format!(" {}1 ", "1-".repeat(15)));
        assert_pattern_is_the_rule(
            &phone_pattern(),
            Some(PHONE_MAX_CHARS),
            |v| validate_phone(v).is_ok(),
            values,
        );
    }

    #[test]
    fn the_documented_image_url_pattern_is_exactly_the_image_url_rule() {
        let mut alphabet = vec![
            "a", "Z", "0", "9", ".", "-", "/", ":", "?", "#", "@", "%", "_", "[", "]", "\\",
        ];
        alphabet.extend(TRICKY);
        let mut values = samples(
            &alphabet,
            &[
                "http://",
                "https://",
                "HTTPS://a.",
                "http://1.2.3.",
                "ftp://",
                "https://a.b:",
            ],
            20_000,
        );
        values.push(format!(
            "https://a.example/{}",
            "x".repeat(URL_MAX_CHARS - 18)
        ));
        values.push(format!(
            "https://a.example/{}",
            "x".repeat(URL_MAX_CHARS - 17)
        ));
        assert_pattern_is_the_rule(
            &image_url_pattern(),
            Some(URL_MAX_CHARS),
            |v| validate_image_url(&json!(v)).is_ok(),
            values,
        );
    }
}

#[cfg(test)]
mod email_key_tests {
    use super::{email_key, normalise_email, validate_email};

    /// Asserts that every spelling in `spellings` has the key `key`.
    fn all_are(key: &str, spellings: &[&str]) {
        for spelling in spellings {
            assert_eq!(email_key(spelling), key, "the key of {spelling:?}");
        }
    }

    #[test]
    fn fullwidth_letters_are_their_ascii_letters() {
        all_are(
            "ann@example.com",
            &[
                "ａｎｎ@example.com",
                "ＡＮＮ@ＥＸＡＭＰＬＥ.ＣＯＭ",
                "ann@example.com",
            ],
        );
    }

    #[test]
    fn the_kelvin_sign_is_k() {
        all_are(
            "kate@example.com",
            &["\u{212A}ate@example.com", "Kate@example.com"],
        );
    }

    #[test]
    fn greek_sigma_in_any_form_is_one_letter() {
        // to_lowercase turns a word-final Σ into ς; full case folding makes all three σ.
        all_are(
            "οδοσ@example.gr",
            &[
                "ΟΔΟΣ@example.gr",
                "οδοσ@example.gr",
                "οδος@example.gr",
                "ΟΔΟς@example.gr",
            ],
        );
        assert_ne!(normalise_email("ΟΔΟΣ@example.gr"), "οδοσ@example.gr");
    }

    #[test]
    fn sharp_s_capital_sharp_s_and_ss_are_one() {
        all_are(
            "strasse@example.de",
            &[
                "straße@example.de",
                "STRAẞE@example.de",
                "STRASSE@example.de",
                "strasse@example.de",
            ],
        );
        // What lower-casing alone would have missed.
        assert_eq!(normalise_email("straße@example.de"), "straße@example.de");
    }

    #[test]
    fn compatibility_forms_and_ligatures_are_their_plain_letters() {
        all_are("fin@example.com", &["ﬁn@example.com", "FIN@example.com"]);
        // Precomposed and combining spellings of one letter.
        all_are(
            "zoë@example.ie",
            &["zoe\u{308}@example.ie", "ZOË@example.ie"],
        );
    }

    #[test]
    fn turkish_dotted_capital_i_is_neither_i_nor_dotless_i() {
        // Default (not Turkic) folding: İ is i + combining dot above, ı stays ı.
        assert_eq!(email_key("İz@example.com"), "i\u{307}z@example.com");
        assert_eq!(email_key("ız@example.com"), "ız@example.com");
        assert_eq!(email_key("Iz@example.com"), "iz@example.com");
    }

    #[test]
    fn surrounding_whitespace_is_not_part_of_the_key() {
        assert_eq!(email_key("  Ann@Example.com \t"), "ann@example.com");
    }

    #[test]
    fn lower_casing_first_never_changes_the_key() {
        // The key of a stored (lower-cased) email must be the key of what the user typed.
        // Every cased or compatibility character is in planes 0 and 1 (the rest are CJK
        // ideographs, private use and unassigned), so those two planes are the whole test.
        for c in (0..=0x1FFFF).filter_map(char::from_u32) {
            let typed = c.to_string();
            assert_eq!(
                email_key(&typed.to_lowercase()),
                email_key(&typed),
                "U+{:04X}",
                c as u32
            );
        }
    }

    #[test]
    fn an_address_whose_key_breaks_the_rules_is_refused() {
        // ⒈ is a letter-like number as typed, but "1." once normalised: a period before the @.
        assert!(validate_email("a⒈@example.com").is_err());
        // ﷺ is one character, 18 letters once normalised: 4 of them make a local part of 72.
        assert!(validate_email(&format!("{}@example.com", "ﷺ".repeat(4))).is_err());
        // Ordinary non-ASCII addresses are accepted.
        assert!(validate_email("straße@example.de").is_ok());
        assert!(validate_email("ａｎｎ@example.com").is_ok());
    }
}
