//! Logging: the line format (`LOG_FORMAT`) and the filter (`RUST_LOG`) of what the service
//! writes to standard error.
//!
//! Text is `env_logger`'s own line. JSON is one object per line, for log collectors: `time`
//! (RFC 3339, UTC, milliseconds), `level`, `target` and `message`, then the record's own
//! fields: the access log (target `access`) carries `method`, `path`, `status`, `duration_ms`
//! and `client`. Either way what is logged is the same, and it never includes a password, a
//! token, a hash or a query string: the call sites keep that rule, this module only formats.

use std::io::Write;

use serde_json::{Map, Value};

use crate::config::{Config, LogFormat};

/// Installs the process's logger as the configuration says, with `default_filter` when
/// `RUST_LOG` is unset. Call it once, before anything logs; a second call (or a logger
/// installed already) leaves the first in place.
pub fn init(config: &Config, default_filter: &str) {
    let mut builder = env_logger::Builder::new();
    builder.parse_filters(config.log_filter.as_deref().unwrap_or(default_filter));
    if config.log_format == LogFormat::Json {
        builder.format(|out, record| {
            let mut line = serde_json::to_vec(&json_line(record)).unwrap_or_default();
            line.push(b'\n');
            out.write_all(&line)
        });
    }
    let _ = builder.try_init();
}

/// The JSON object of one record. `serde_json` escapes every control character, so a value
/// that came from a client (a path, a user agent) cannot break the line or forge another.
pub(crate) fn json_line(record: &log::Record<'_>) -> Value {
    let mut object = Map::new();
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    object.insert("time".to_owned(), Value::String(time));
    object.insert(
        "level".to_owned(),
        Value::String(record.level().as_str().to_owned()),
    );
    object.insert(
        "target".to_owned(),
        Value::String(record.target().to_owned()),
    );
    object.insert(
        "message".to_owned(),
        Value::String(record.args().to_string()),
    );
    let _ = record.key_values().visit(&mut Fields(&mut object));
    Value::Object(object)
}

/// Copies a record's key-value fields into the JSON object: numbers as numbers, anything
/// else as its text. A field never replaces one of the four above.
struct Fields<'a>(&'a mut Map<String, Value>);

impl<'kvs> log::kv::VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        let json = if let Some(n) = value.to_u64() {
            Value::from(n)
        } else if let Some(n) = value.to_i64() {
            Value::from(n)
        } else if let Some(x) = value.to_f64() {
            // Rounded to what a reader needs; JSON has no NaN, which `from` makes null.
            Value::from((x * 1000.0).round() / 1000.0)
        } else {
            Value::String(value.to_string())
        };
        self.0.entry(key.as_str().to_owned()).or_insert(json);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_access_record_becomes_one_object_with_its_fields() {
        let client: std::net::IpAddr = [127, 0, 0, 1].into();
        let kvs: [(&str, log::kv::Value<'_>); 6] = [
            ("method", "GET".into()),
            ("path", "/a\n{\"forged\": 1}".into()),
            ("status", 200u16.into()),
            ("duration_ms", 1.23456f64.into()),
            ("client", log::kv::Value::from_display(&client)),
            ("message", "not this one".into()),
        ];
        let record = log::Record::builder()
            .level(log::Level::Info)
            .target("access")
            .args(format_args!("GET /a 200 1.2ms"))
            .key_values(&kvs)
            .build();
        let line = serde_json::to_string(&json_line(&record)).expect("json");
        assert!(!line.contains('\n'), "{line}");
        let value: Value = serde_json::from_str(&line).expect("parses");
        assert_eq!(value["level"], "INFO");
        assert_eq!(value["target"], "access");
        assert_eq!(value["message"], "GET /a 200 1.2ms");
        assert_eq!(value["method"], "GET");
        assert_eq!(value["path"], "/a\n{\"forged\": 1}");
        assert_eq!(value["status"], 200);
        assert_eq!(value["duration_ms"], 1.235);
        assert_eq!(value["client"], "127.0.0.1");
        assert!(value["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    }
}
