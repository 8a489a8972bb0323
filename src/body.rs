//! Reading request bodies as FastAPI reads them: which content types are accepted, how JSON and
//! forms are decoded, and how a body type collects every bad field into one 422.
//!
//! A request body is one Rust type that implements [`JsonBody`] (or [`FormBody`]) and derives
//! `utoipa::ToSchema`: the same type is what the handler gets and what the OpenAPI document
//! describes. Its `read` asks [`Fields`] for each field with a rule from [`crate::fields`];
//! problems are collected rather than returned at the first, so a client can fix a whole form in
//! one round trip. The 422 items copy pydantic v2 (`loc`, `msg`, `type`, and `ctx` where
//! pydantic has one).

use serde_json::{json, Map, Value};

use crate::error::{ApiError, FieldError};
use crate::http::HttpRequest;

const JSON_ONLY: &str = "application/json";
const JSON_OR_FORM: &str = "application/json or application/x-www-form-urlencoded";
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// A JSON object request body that validates itself field by field.
pub trait JsonBody: Sized {
    /// Reads every field through `fields`, which records each problem. Returns `None` when a
    /// field could not be read; the errors then say why.
    fn read(fields: &mut Fields<'_>) -> Option<Self>;
}

/// An `application/x-www-form-urlencoded` request body, read field by field.
pub trait FormBody: Sized {
    /// Reads every field through `form`, which records each problem, as [`JsonBody::read`].
    fn read(form: &mut FormFields) -> Option<Self>;
}

/// A body that came as JSON or as a form, for routes that take both (OAuth2's token endpoint).
pub enum JsonOrForm<J, F> {
    /// Sent as JSON.
    Json(J),
    /// Sent as an HTML/OAuth2 form.
    Form(F),
}

/// A field of a partial update: left out, set to `null`, or given a value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Patch<T> {
    /// The field was not sent: leave it as it is.
    #[default]
    Absent,
    /// The field was sent as `null`: clear it.
    Null,
    /// The field was sent with a valid value.
    Value(T),
}

// Declared here rather than in `http`, which knows nothing of body types or errors.
impl HttpRequest<'_> {
    /// Reads the body as the JSON body type `T`: a 422 listing every bad field otherwise.
    pub fn json<T: JsonBody>(&self) -> Result<T, ApiError> {
        json(&self.body, self.header("Content-Type")).map_err(ApiError::Validation)
    }

    /// Reads an optional JSON body: none at all, or `null` (which FastAPI reads as none, see
    /// `json_object`), is `T::default()`; anything else is read as [`HttpRequest::json`] reads it.
    pub fn json_or_default<T: JsonBody + Default>(&self) -> Result<T, ApiError> {
        match self.body.trim_ascii() {
            b"" | b"null" => Ok(T::default()),
            _ => self.json(),
        }
    }
}

/// Reads `body` as the JSON body `T`, or lists every problem.
///
/// `content_type` is the raw `Content-Type` header, if any; JSON is read when it is absent,
/// blank, `application/json` or `application/*+json`, parameters and case aside.
pub fn json<T: JsonBody>(body: &[u8], content_type: Option<&str>) -> Result<T, Vec<FieldError>> {
    if !is_json(content_type) {
        return Err(vec![unsupported_content_type(content_type, JSON_ONLY)]);
    }
    read_json(body)
}

/// Reads `body` as the JSON body `J` or the form `F`, as its content type says.
pub fn json_or_form<J: JsonBody, F: FormBody>(
    body: &[u8],
    content_type: Option<&str>,
) -> Result<JsonOrForm<J, F>, Vec<FieldError>> {
    if is_json(content_type) {
        read_json(body).map(JsonOrForm::Json)
    } else if content_type.map(media_type).as_deref() == Some("application/x-www-form-urlencoded") {
        let mut form = FormFields::new(body);
        let value = F::read(&mut form);
        finish(value, form.errors).map(JsonOrForm::Form)
    } else {
        Err(vec![unsupported_content_type(content_type, JSON_OR_FORM)])
    }
}

fn read_json<T: JsonBody>(body: &[u8]) -> Result<T, Vec<FieldError>> {
    let object = json_object(body).map_err(|error| vec![error])?;
    let mut fields = Fields {
        object: &object,
        errors: Vec::new(),
    };
    let value = T::read(&mut fields);
    finish(value, fields.errors)
}

fn finish<T>(value: Option<T>, errors: Vec<FieldError>) -> Result<T, Vec<FieldError>> {
    match value {
        Some(value) if errors.is_empty() => Ok(value),
        // A `read` that gave up without saying why is a bug; still refuse rather than accept.
        _ if errors.is_empty() => Err(vec![FieldError::new(
            vec![json!("body")],
            "Input could not be read",
            "value_error",
        )]),
        _ => Err(errors),
    }
}

/// The fields of a JSON object body, handed to [`JsonBody::read`]; collects every problem.
pub struct Fields<'a> {
    object: &'a Map<String, Value>,
    errors: Vec<FieldError>,
}

impl Fields<'_> {
    /// A field that must be present; `rule` checks and normalises its value (`null` included).
    pub fn required<T>(&mut self, name: &str, rule: impl FnOnce(&Value) -> Rule<T>) -> Option<T> {
        match self.object.get(name) {
            None => {
                self.errors.push(missing(field_loc(name)));
                None
            }
            Some(value) => self.check(name, rule(value)),
        }
    }

    /// A field that may be left out or sent as `null` (both give `None`).
    pub fn optional<T>(
        &mut self,
        name: &str,
        rule: impl FnOnce(&Value) -> Rule<T>,
    ) -> Option<Option<T>> {
        match self.object.get(name) {
            None | Some(Value::Null) => Some(None),
            Some(value) => self.check(name, rule(value)).map(Some),
        }
    }

    /// A field that may be left out, but if sent is checked like a required one (`null`
    /// included: for a partial update of a column that cannot be empty).
    pub fn if_present<T>(
        &mut self,
        name: &str,
        rule: impl FnOnce(&Value) -> Rule<T>,
    ) -> Option<Option<T>> {
        match self.object.get(name) {
            None => Some(None),
            Some(value) => self.check(name, rule(value)).map(Some),
        }
    }

    /// A field of a partial update: left out, `null`, or a value that `rule` accepts.
    pub fn patch<T>(
        &mut self,
        name: &str,
        rule: impl FnOnce(&Value) -> Rule<T>,
    ) -> Option<Patch<T>> {
        match self.object.get(name) {
            None => Some(Patch::Absent),
            Some(Value::Null) => Some(Patch::Null),
            Some(value) => self.check(name, rule(value)).map(Patch::Value),
        }
    }

    fn check<T>(&mut self, name: &str, verdict: Rule<T>) -> Option<T> {
        verdict
            .map_err(|problem| self.errors.push(problem.at(name)))
            .ok()
    }
}

/// The fields of a form body, handed to [`FormBody::read`]: the first occurrence of a name
/// wins, as in FastAPI.
pub struct FormFields {
    pairs: Vec<(String, String)>,
    errors: Vec<FieldError>,
}

impl FormFields {
    fn new(body: &[u8]) -> FormFields {
        FormFields {
            pairs: url::form_urlencoded::parse(body).into_owned().collect(),
            errors: Vec::new(),
        }
    }

    /// A field that must be present (an empty value counts as present).
    pub fn required(&mut self, name: &str) -> Option<String> {
        let value = self.optional(name);
        if value.is_none() {
            self.errors.push(missing(field_loc(name)));
        }
        value
    }

    /// A field that must be present and equal to `expected`, as FastAPI checks `grant_type`
    /// with `pattern="^expected$"`.
    pub fn required_exactly(&mut self, name: &str, expected: &str) -> Option<String> {
        let value = self.required(name)?;
        if value == expected {
            return Some(value);
        }
        let pattern = format!("^{expected}$");
        self.errors.push(
            FieldError::new(
                field_loc(name),
                format!("String should match pattern '{pattern}'"),
                "string_pattern_mismatch",
            )
            .with_ctx(json!({ "pattern": pattern })),
        );
        None
    }

    /// A field that may be left out.
    pub fn optional(&mut self, name: &str) -> Option<String> {
        self.pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    }
}

/// A rule's verdict on one value: the checked value, or the problem with it.
pub type Rule<T> = Result<T, Problem>;

/// A rule's verdict before it knows which field it is about.
#[derive(Debug)]
pub struct Problem {
    msg: String,
    kind: &'static str,
    ctx: Option<Value>,
}

impl Problem {
    /// What is wrong, in pydantic's words (as the 422's `msg`).
    pub fn message(&self) -> &str {
        &self.msg
    }

    /// A problem of pydantic's error type `kind`.
    pub fn new(msg: impl Into<String>, kind: &'static str) -> Problem {
        Problem {
            msg: msg.into(),
            kind,
            ctx: None,
        }
    }

    /// Returns this problem with the rule's parameters, as pydantic gives them.
    pub fn with_ctx(mut self, ctx: Value) -> Problem {
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

/// Applies `rule` to a string value; any other JSON type is pydantic's `string_type` error.
pub fn string<T>(value: &Value, rule: impl FnOnce(&str) -> Rule<T>) -> Rule<T> {
    match value {
        Value::String(text) => rule(text),
        _ => Err(Problem::new(
            "Input should be a valid string",
            "string_type",
        )),
    }
}

fn field_loc(field: &str) -> Vec<Value> {
    vec![json!("body"), json!(field)]
}

fn missing(loc: Vec<Value>) -> FieldError {
    FieldError::new(loc, "Field required", "missing")
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// A partial update of the kind `PATCH` routes take: `name` may be left out but not
    /// cleared, `image_url` may be left out, cleared with `null`, or set.
    #[derive(Debug, PartialEq)]
    struct Update {
        name: Option<String>,
        image_url: Patch<String>,
    }

    impl JsonBody for Update {
        fn read(fields: &mut Fields<'_>) -> Option<Self> {
            let name = fields.if_present("name", crate::fields::name);
            let image_url = fields.patch("image_url", crate::fields::image_url);
            Some(Update {
                name: name?,
                image_url: image_url?,
            })
        }
    }

    #[test]
    fn a_partial_update_tells_absent_from_null_from_a_value() {
        let update: Update = json(br#"{"name": " Ann ", "image_url": null}"#, None).unwrap();
        assert_eq!(
            update,
            Update {
                name: Some("Ann".to_owned()),
                image_url: Patch::Null,
            }
        );
        let set: Update = json(br#"{"image_url": "https://a.example/x.png"}"#, None).unwrap();
        assert_eq!(
            set.image_url,
            Patch::Value("https://a.example/x.png".to_owned())
        );
        let empty: Update = json(b"{}", None).unwrap();
        assert_eq!(empty.name, None);
        assert_eq!(empty.image_url, Patch::Absent);
    }

    #[test]
    fn a_field_that_cannot_be_cleared_refuses_null_as_a_required_one_does() {
        let errors = json::<Update>(br#"{"name": null}"#, None).expect_err("null name");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].loc, [json!("body"), json!("name")]);
        assert_eq!(errors[0].kind, "string_type");
    }

    #[test]
    fn a_partial_update_still_lists_every_bad_field() {
        let errors = json::<Update>(br#"{"name": "", "image_url": "ftp://x"}"#, None)
            .expect_err("both fields are bad");
        let fields: Vec<_> = errors.iter().map(|e| e.loc[1].clone()).collect();
        assert_eq!(fields, [json!("name"), json!("image_url")]);
    }
}
