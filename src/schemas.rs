//! Request and response bodies, and the validation that turns raw input into known-good values.
//!
//! This module owns the request body contract: which content types are read, how each field is
//! checked and normalised, and the 422 `detail` items that describe what was wrong. The items
//! copy FastAPI + pydantic v2 (`loc`, `msg`, `type`, and `ctx` where pydantic has one), and every
//! bad field is reported at once so a client can fix a form in one round trip. It also holds
//! the success bodies the routes serialise.

use serde_json::{json, Map, Value};

/// One entry of a 422 body's `detail` list, shaped as FastAPI/pydantic v2 shape it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FieldError {
    /// Where the problem is: `["body"]` or `["body", field]` (or a byte offset for bad JSON).
    pub loc: Vec<serde_json::Value>,
    /// A human-readable description, in pydantic's words where pydantic has a rule for it.
    pub msg: String,
    /// pydantic's machine-readable error type, such as `missing` or `string_too_short`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The rule's parameters (for example `{"min_length": 8}`), when pydantic gives some.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ctx: Option<serde_json::Value>,
}

/// A registration that passed every rule.
#[derive(Debug, Clone, PartialEq)]
pub struct NewUser {
    /// The display name, trimmed, 1 to 100 characters.
    pub name: String,
    /// The phone number, trimmed but otherwise as the user typed it.
    pub phone: String,
    /// The email address, trimmed and lower-cased.
    pub email: String,
    /// The password exactly as sent: 8 characters to 72 UTF-8 bytes.
    pub password: String,
    /// An absolute http(s) URL, trimmed but otherwise as sent, if one was given.
    pub image_url: Option<String>,
}

/// Login credentials from either request encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct Credentials {
    /// The email address (`username` in the OAuth2 form), trimmed and lower-cased.
    pub email: String,
    /// The password exactly as sent.
    pub password: String,
}

/// A user as the API returns it: never the password hash.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct UserResponse {
    /// The user's id.
    #[schema(example = 1)]
    pub id: i64,
    /// Display name.
    #[schema(example = "Ada Lovelace")]
    pub name: String,
    /// Phone number, as given.
    #[schema(example = "+44 20 7946 0958")]
    pub phone: String,
    /// Avatar URL, or null.
    pub image_url: Option<String>,
    /// Email address, lower-case.
    #[schema(example = "ada@example.com")]
    pub email: String,
    /// Creation time, RFC 3339 in UTC.
    #[schema(format = DateTime, example = "2026-11-26T05:10:49.193102Z")]
    pub created_at: String,
    /// Last change, RFC 3339 in UTC.
    #[schema(format = DateTime, example = "2026-11-26T05:10:49.193102Z")]
    pub updated_at: String,
}

impl From<crate::db::UserRow> for UserResponse {
    fn from(row: crate::db::UserRow) -> UserResponse {
        UserResponse {
            id: row.id,
            name: row.name,
            phone: row.phone,
            image_url: row.image_url,
            email: row.email,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// The body of a successful login.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    /// The signed JWT: send it as `Authorization: Bearer <token>`.
    pub access_token: String,
    /// Always `"bearer"`.
    #[schema(example = "bearer")]
    pub token_type: &'static str,
    /// Seconds until the token expires.
    #[schema(example = 3600)]
    pub expires_in: i64,
    /// The user who logged in.
    pub user: UserResponse,
}

impl FieldError {
    /// Builds an error without `ctx`.
    pub fn new(loc: Vec<Value>, msg: impl Into<String>, kind: impl Into<String>) -> FieldError {
        FieldError {
            loc,
            msg: msg.into(),
            kind: kind.into(),
            ctx: None,
        }
    }

    /// Returns this error with `ctx` set.
    pub fn with_ctx(mut self, ctx: Value) -> FieldError {
        self.ctx = Some(ctx);
        self
    }
}

pub(crate) const NAME_MAX_CHARS: usize = 100;
pub(crate) const PASSWORD_MIN_CHARS: usize = 8;
/// bcrypt reads at most 72 bytes; refusing longer passwords beats silently ignoring their tail.
pub(crate) const PASSWORD_MAX_BYTES: usize = 72;
pub(crate) const PHONE_MIN_DIGITS: usize = 5;
pub(crate) const PHONE_MAX_DIGITS: usize = 20;
/// The FastAPI schema's column is VARCHAR(32): formatting must fit beside the digits.
pub(crate) const PHONE_MAX_CHARS: usize = 32;
pub(crate) const EMAIL_MAX_BYTES: usize = 254;
const EMAIL_LOCAL_MAX_BYTES: usize = 64;
const DOMAIN_LABEL_MAX_CHARS: usize = 63;
pub(crate) const URL_MAX_CHARS: usize = 2048;

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
pub(crate) fn name_pattern() -> String {
    let w = TRIMMED_CLASS;
    let middle = NAME_MAX_CHARS - 2;
    format!(r"^[{w}]*[^{w}](?:[\s\S]{{0,{middle}}}[^{w}])?[{w}]*$")
}

/// The `phone` rule as a pattern, for the OpenAPI document (with `maxLength`
/// [`PHONE_MAX_CHARS`] on the untrimmed value). `validate_phone` implements exactly this.
pub(crate) fn phone_pattern() -> String {
    let w = TRIMMED_CLASS;
    format!(r"^[{w}]*\+?(?:[ ().-]*[0-9]){{{PHONE_MIN_DIGITS},{PHONE_MAX_DIGITS}}}[ ().-]*[{w}]*$")
}

/// The `image_url` rule as a pattern, for the OpenAPI document (with `maxLength`
/// [`URL_MAX_CHARS`] on the untrimmed value). `validate_image_url` matches it.
pub(crate) fn image_url_pattern() -> String {
    let w = TRIMMED_CLASS;
    format!(r"^[{w}]*{IMAGE_URL_CORE}[{w}]*$")
}
/// How many distinct offending characters an email error lists before it stops.
const MAX_CHARS_LISTED: usize = 5;

const JSON_ONLY: &str = "application/json";
const JSON_OR_FORM: &str = "application/json or application/x-www-form-urlencoded";
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Validates a registration body (JSON) and returns the normalised user, or every problem found.
///
/// `content_type` is the raw `Content-Type` header, if any; JSON is read when it is absent,
/// blank, `application/json` or `application/*+json`, parameters and case aside.
pub fn parse_register(body: &[u8], content_type: Option<&str>) -> Result<NewUser, Vec<FieldError>> {
    if !is_json(content_type) {
        return Err(vec![unsupported_content_type(content_type, JSON_ONLY)]);
    }
    let object = json_object(body).map_err(|error| vec![error])?;

    let mut errors = Vec::new();
    let name = check(&object, "name", validate_name, &mut errors);
    let phone = check(&object, "phone", validate_phone, &mut errors);
    let email = check(&object, "email", validate_email, &mut errors);
    let password = check(&object, "password", validate_password, &mut errors);
    let image_url = match validate_image_url(object.get("image_url")) {
        Ok(url) => url,
        Err(problem) => {
            errors.push(problem.at("image_url"));
            None
        }
    };

    match (name, phone, email, password) {
        (Some(name), Some(phone), Some(email), Some(password)) if errors.is_empty() => {
            Ok(NewUser {
                name,
                phone,
                email,
                password,
                image_url,
            })
        }
        _ => Err(errors),
    }
}

/// Reads login credentials from JSON (`email`, `password`) or an OAuth2 password form
/// (`username`, `password`), returning every problem found.
///
/// Only presence and type are checked: a malformed email simply fails to match a user. The
/// email is trimmed and lower-cased like a registered one; the password is left untouched, and
/// empty strings pass through to fail authentication. In the form, the first occurrence of a
/// field wins and `grant_type`, `scope`, `client_id` and `client_secret` are ignored.
pub fn parse_login(
    body: &[u8],
    content_type: Option<&str>,
) -> Result<Credentials, Vec<FieldError>> {
    if is_json(content_type) {
        parse_login_json(body)
    } else if content_type.map(media_type).as_deref() == Some("application/x-www-form-urlencoded") {
        parse_login_form(body)
    } else {
        Err(vec![unsupported_content_type(content_type, JSON_OR_FORM)])
    }
}

fn parse_login_json(body: &[u8]) -> Result<Credentials, Vec<FieldError>> {
    let object = json_object(body).map_err(|error| vec![error])?;
    let mut errors = Vec::new();
    let email = check(&object, "email", |s| Ok(normalise_email(s)), &mut errors);
    let password = check(&object, "password", |s| Ok(s.to_owned()), &mut errors);
    match (email, password) {
        (Some(email), Some(password)) => Ok(Credentials { email, password }),
        _ => Err(errors),
    }
}

fn parse_login_form(body: &[u8]) -> Result<Credentials, Vec<FieldError>> {
    let mut username = None;
    let mut password = None;
    for (key, value) in url::form_urlencoded::parse(body) {
        match key.as_ref() {
            "username" if username.is_none() => username = Some(value.into_owned()),
            "password" if password.is_none() => password = Some(value.into_owned()),
            _ => {}
        }
    }
    match (username, password) {
        (Some(username), Some(password)) => Ok(Credentials {
            email: normalise_email(&username),
            password,
        }),
        (username, password) => {
            let mut errors = Vec::new();
            if username.is_none() {
                errors.push(missing(field_loc("username")));
            }
            if password.is_none() {
                errors.push(missing(field_loc("password")));
            }
            Err(errors)
        }
    }
}

// ---- body decoding ----

/// Tells whether the body is to be read as JSON, following FastAPI: a missing (or blank)
/// header means JSON, as do `application/json` and `application/*+json`.
fn is_json(content_type: Option<&str>) -> bool {
    let Some(header) = content_type.filter(|h| !h.trim().is_empty()) else {
        return true;
    };
    let media_type = media_type(header);
    media_type == "application/json"
        || (media_type.starts_with("application/") && media_type.ends_with("+json"))
}

/// Returns the header's `type/subtype`, lower-cased, without parameters.
fn media_type(header: &str) -> String {
    header
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn unsupported_content_type(content_type: Option<&str>, expected: &str) -> FieldError {
    let shown = content_type.map(media_type).unwrap_or_default();
    // The header is client input echoed into a response: keep it short and printable.
    let shown: String = shown.chars().take(100).collect();
    FieldError::new(
        vec![json!("body")],
        format!(
            "Unsupported content type '{}': expected {expected}",
            shown.escape_debug()
        ),
        "content_type",
    )
}

/// Parses the body as a JSON object, producing FastAPI's error for anything else.
fn json_object(body: &[u8]) -> Result<Map<String, Value>, FieldError> {
    if body.is_empty() {
        return Err(missing(vec![json!("body")]));
    }
    // Python's json.loads accepts a UTF-8 byte order mark on bytes input, so FastAPI does too.
    let (skipped, text) = match body.strip_prefix(UTF8_BOM) {
        Some(rest) => (UTF8_BOM.len(), rest),
        None => (0, body),
    };
    let text = std::str::from_utf8(text)
        .map_err(|err| json_invalid(skipped + err.valid_up_to(), "invalid UTF-8".to_owned()))?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => Ok(object),
        // FastAPI treats a JSON `null` body as no body at all.
        Ok(Value::Null) => Err(missing(vec![json!("body")])),
        Ok(_) => Err(FieldError::new(
            vec![json!("body")],
            "Input should be a valid dictionary or object to extract fields from",
            "model_attributes_type",
        )),
        Err(err) => Err(json_invalid(
            skipped + json_error_offset(text, &err),
            json_error_message(&err),
        )),
    }
}

/// Turns serde_json's line and column into a byte offset, placed where Python's `json` would
/// put `pos` in the common cases: at the end for truncated input, else at the bad byte.
fn json_error_offset(text: &str, err: &serde_json::Error) -> usize {
    if err.classify() == serde_json::error::Category::Eof {
        return text.len();
    }
    let line_start = if err.line() <= 1 {
        0
    } else {
        text.match_indices('\n')
            .nth(err.line() - 2)
            .map_or(text.len(), |(i, _)| i + 1)
    };
    (line_start + err.column().saturating_sub(1)).min(text.len())
}

/// Returns serde_json's message without its " at line L column C" tail, which `loc` replaces.
fn json_error_message(err: &serde_json::Error) -> String {
    let full = err.to_string();
    let position = format!(" at line {} column {}", err.line(), err.column());
    full.strip_suffix(&position).unwrap_or(&full).to_owned()
}

fn json_invalid(offset: usize, error: String) -> FieldError {
    FieldError::new(
        vec![json!("body"), json!(offset)],
        "JSON decode error",
        "json_invalid",
    )
    .with_ctx(json!({ "error": error }))
}

// ---- fields ----

/// A rule's verdict before it knows which field it is about.
struct Problem {
    msg: String,
    kind: &'static str,
    ctx: Option<Value>,
}

impl Problem {
    fn new(msg: impl Into<String>, kind: &'static str) -> Problem {
        Problem {
            msg: msg.into(),
            kind,
            ctx: None,
        }
    }

    fn with_ctx(mut self, ctx: Value) -> Problem {
        self.ctx = Some(ctx);
        self
    }

    fn at(self, field: &str) -> FieldError {
        FieldError {
            loc: field_loc(field),
            msg: self.msg,
            kind: self.kind.to_owned(),
            ctx: self.ctx,
        }
    }
}

fn field_loc(field: &str) -> Vec<Value> {
    vec![json!("body"), json!(field)]
}

fn missing(loc: Vec<Value>) -> FieldError {
    FieldError::new(loc, "Field required", "missing")
}

/// Runs `rule` on a required string field, recording any problem under that field's name.
fn check<T>(
    object: &Map<String, Value>,
    field: &str,
    rule: impl FnOnce(&str) -> Result<T, Problem>,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    let outcome = match object.get(field) {
        None => Err(missing(field_loc(field))),
        Some(Value::String(value)) => rule(value).map_err(|problem| problem.at(field)),
        Some(_) => Err(Problem::new("Input should be a valid string", "string_type").at(field)),
    };
    outcome.map_err(|error| errors.push(error)).ok()
}

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
    match email_problem(&email) {
        None => Ok(email),
        Some(reason) => Err(value_error("email address", reason)),
    }
}

/// Trims and lower-cases an address, the one normal form both registration and login use.
fn normalise_email(raw: &str) -> String {
    raw.trim().to_lowercase()
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

fn validate_image_url(value: Option<&Value>) -> Result<Option<String>, Problem> {
    let raw = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(raw)) => raw,
        Some(_) => {
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
    Ok(Some(url.to_owned()))
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
        let credentials =
            parse_login(br#"{"email": "not an email", "password": ""}"#, JSON).unwrap();
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
        let credentials =
            parse_login(b"username=a&username=b&password=1&password=2", FORM).unwrap();
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
        let with_ctx = too_short(8, "character").at("password");
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
            |v| validate_image_url(Some(&json!(v))).is_ok(),
            values,
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
}
