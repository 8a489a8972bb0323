//! Logging: the line format (`LOG_FORMAT`) and the filter (`RUST_LOG`) of what the service
//! writes to standard error.
//!
//! Text is `env_logger`'s own line. JSON is one object per line, for log collectors: `time`
//! (RFC 3339, UTC, milliseconds), `level`, `target` and `message`, then the record's own
//! fields: the access log (target `access`) carries `method`, `path`, `status`, `duration_ms`
//! and `client`. Either way what is logged is the same, and it never includes a password, a
//! token, a hash or a query string: the call sites keep that rule, this module only formats.

use std::io::Write;

use serde::ser::{SerializeMap, Serializer as _};

use crate::config::{Config, LogFormat};

/// Installs the process's logger as the configuration says, with `default_filter` when
/// `RUST_LOG` is unset. Call it once, before anything logs; a second call (or a logger
/// installed already) leaves the first in place.
pub fn init(config: &Config, default_filter: &str) {
    let mut builder = env_logger::Builder::new();
    builder.parse_filters(config.log_filter.as_deref().unwrap_or(default_filter));
    if config.log_format == LogFormat::Json {
        builder.format(|out, record| {
            write_json_line(&mut *out, record)?;
            out.write_all(b"\n")
        });
    }
    let _ = builder.try_init();
}

/// Writes the JSON object of one record straight to `out`: one line per access-log entry at
/// tens of thousands a second, so nothing is built in between. `serde_json` escapes every
/// control character, so a value that came from a client (a path, a user agent) cannot break
/// the line or forge another.
pub(crate) fn write_json_line(out: impl Write, record: &log::Record<'_>) -> std::io::Result<()> {
    let mut serializer = serde_json::Serializer::new(out);
    let mut object = (&mut serializer)
        .serialize_map(None)
        .map_err(std::io::Error::other)?;
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let fields = (|| {
        object.serialize_entry("time", &time)?;
        object.serialize_entry("level", record.level().as_str())?;
        object.serialize_entry("target", record.target())?;
        object.serialize_entry("message", &Display(record.args()))?;
        let mut visitor = Fields {
            object: &mut object,
            error: None,
        };
        let _ = record.key_values().visit(&mut visitor);
        visitor.error.map_or(Ok(()), Err)
    })();
    fields.map_err(std::io::Error::other)?;
    SerializeMap::end(object).map_err(std::io::Error::other)
}

/// Serialises as a JSON string through `Display`, without an intermediate `String`.
struct Display<'a, T: std::fmt::Display>(&'a T);

impl<T: std::fmt::Display> serde::Serialize for Display<'_, T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self.0)
    }
}

/// Writes a record's key-value fields into the JSON object: numbers as numbers, anything else
/// as its text. The four fields above are the record's own: a field by one of their names is
/// left out, so that it cannot stand in for them.
struct Fields<'a, M> {
    object: &'a mut M,
    error: Option<serde_json::Error>,
}

impl<'kvs, M: SerializeMap<Error = serde_json::Error>> log::kv::VisitSource<'kvs>
    for Fields<'_, M>
{
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        let key = key.as_str();
        if matches!(key, "time" | "level" | "target" | "message") {
            return Ok(());
        }
        let written = if let Some(n) = value.to_u64() {
            self.object.serialize_entry(key, &n)
        } else if let Some(n) = value.to_i64() {
            self.object.serialize_entry(key, &n)
        } else if let Some(x) = value.to_f64() {
            // Rounded to what a reader needs; JSON has no NaN, which serialises as null.
            self.object
                .serialize_entry(key, &((x * 1000.0).round() / 1000.0))
        } else {
            self.object.serialize_entry(key, &Display(&value))
        };
        written.map_err(|err| {
            self.error = Some(err);
            log::kv::Error::msg("the log line could not be written")
        })
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
        let mut line = Vec::new();
        write_json_line(&mut line, &record).expect("written");
        let line = String::from_utf8(line).expect("UTF-8");
        assert!(!line.contains('\n'), "{line}");
        let value: serde_json::Value = serde_json::from_str(&line).expect("parses");
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
