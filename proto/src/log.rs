//! Logs as hclog JSON lines on stderr, the format SPIRE parses into its own log (protocol doc §9).
//!
//! One JSON object per line: `@level`, `@message`, `@timestamp` (exactly six fractional digits and `Z`, the
//! layout `2006-01-02T15:04:05.000000Z07:00` go-plugin parses), `@module` (the event's target) and every
//! tracing field under its own name. The `@` values are always JSON strings: go-plugin type-asserts them and a
//! non-string crashes the host. Span fields are not included.

use std::io::Write;

use serde_json::{Map, Value};
use time::format_description::FormatItem;
use time::macros::format_description;
use time::OffsetDateTime;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Environment variable holding an `EnvFilter` directive for the plugin's own log level.
pub const LOG_ENV: &str = "TWI_LOG";

/// Used when [`LOG_ENV`] is unset: everything from debug up, since SPIRE's `log_level` filters again; the
/// HTTP/2 stack stays quiet because its debug output is per frame.
pub const DEFAULT_FILTER: &str = "debug,h2=warn,hyper=warn,hyper_util=warn,tower=warn,tonic=info";

const TIMESTAMP: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// The `@timestamp` value: UTC with exactly six fractional digits, as go-plugin requires.
#[must_use]
pub fn timestamp(now: OffsetDateTime) -> String {
    let utc = now.to_offset(time::UtcOffset::UTC);
    // Formatting a valid date with this static description cannot fail; fall back to "no timestamp" rather
    // than a malformed one, which would make the host guess the level.
    utc.format(TIMESTAMP).unwrap_or_default()
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    }
}

/// Renders one log line (with its trailing newline). `fields` are the event's own fields; they cannot
/// override the `@` keys.
#[must_use]
pub fn format_line(
    level: Level,
    module: &str,
    message: &str,
    fields: Map<String, Value>,
    now: OffsetDateTime,
) -> String {
    let mut obj = fields;
    obj.insert("@level".into(), Value::String(level_name(level).into()));
    obj.insert("@message".into(), Value::String(message.into()));
    let ts = timestamp(now);
    if ts.is_empty() {
        obj.remove("@timestamp");
    } else {
        obj.insert("@timestamp".into(), Value::String(ts));
    }
    obj.insert("@module".into(), Value::String(module.into()));
    let mut line = Value::Object(obj).to_string();
    line.push('\n');
    line
}

#[derive(Default)]
struct FieldVisitor {
    message: String,
    fields: Map<String, Value>,
}

impl FieldVisitor {
    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = match value {
                Value::String(s) => s,
                other => other.to_string(),
            };
        } else {
            self.fields.insert(field.name().to_owned(), value);
        }
    }
}

impl Visit for FieldVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_owned()));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        let v = serde_json::Number::from_f64(value)
            .map_or_else(|| Value::String(value.to_string()), Value::Number);
        self.put(field, v);
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::String(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
}

/// A `tracing` layer writing hclog JSON lines to `W` (stderr in plugins, a buffer in tests).
#[derive(Debug)]
pub struct HclogLayer<W> {
    make_writer: W,
}

impl<W> HclogLayer<W> {
    /// A layer writing to whatever `make_writer` produces for each line.
    pub fn new(make_writer: W) -> Self {
        Self { make_writer }
    }
}

impl<S, W> Layer<S> for HclogLayer<W>
where
    S: Subscriber,
    W: for<'a> MakeWriter<'a> + 'static,
{
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut visitor = FieldVisitor::default();
        event.record(&mut visitor);
        let meta = event.metadata();
        let line = format_line(
            *meta.level(),
            meta.target(),
            &visitor.message,
            visitor.fields,
            OffsetDateTime::now_utc(),
        );
        // One write per line so concurrent lines never interleave; a failed write has nowhere to be reported.
        let mut w = self.make_writer.make_writer();
        let _ = w.write_all(line.as_bytes());
        let _ = w.flush();
    }
}

/// Installs the hclog layer on stderr as the global subscriber, filtered by [`LOG_ENV`] (default
/// [`DEFAULT_FILTER`]), and a panic hook that logs the panic at error level: Rust's own panic text does not
/// start with `panic: `, so SPIRE would otherwise file it under debug.
///
/// Does nothing if a global subscriber is already set (e.g. by a test harness).
pub fn install() {
    let filter =
        EnvFilter::try_from_env(LOG_ENV).unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(HclogLayer::new(std::io::stderr))
        .try_init()
        .is_ok();
    if installed {
        std::panic::set_hook(Box::new(|info| {
            tracing::error!(panic = %info, "plugin panicked");
        }));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use std::sync::{Arc, Mutex};

    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ`, checked character by character (no regex dependency).
    fn is_hclog_timestamp(s: &str) -> bool {
        let b = s.as_bytes();
        let shape = "dddd-dd-ddTdd:dd:dd.ddddddZ";
        b.len() == shape.len()
            && shape.bytes().zip(b).all(|(want, got)| match want {
                b'd' => got.is_ascii_digit(),
                other => other == *got,
            })
    }

    #[test]
    fn timestamp_has_exactly_six_digits() {
        let t = time::macros::datetime!(2026-05-01 12:00:00.123_456_789 UTC);
        assert_eq!(timestamp(t), "2026-05-01T12:00:00.123456Z");
        let t = time::macros::datetime!(2026-05-01 14:00:00 +02:00);
        assert_eq!(timestamp(t), "2026-05-01T12:00:00.000000Z");
        assert!(is_hclog_timestamp(&timestamp(OffsetDateTime::now_utc())));
    }

    #[test]
    fn at_keys_are_strings_and_fields_kept() {
        let mut fields = Map::new();
        fields.insert("agent_id".into(), Value::String("spiffe://x/y".into()));
        fields.insert("count".into(), Value::from(3));
        fields.insert("@level".into(), Value::from(5));
        let t = time::macros::datetime!(2026-05-01 12:00:00.5 UTC);
        let line = format_line(Level::WARN, "twi::x", "hello", fields, t);
        assert!(line.ends_with('\n'));
        assert_eq!(line.matches('\n').count(), 1);
        let v: Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(v["@level"], "warn");
        assert_eq!(v["@message"], "hello");
        assert_eq!(v["@timestamp"], "2026-05-01T12:00:00.500000Z");
        assert_eq!(v["@module"], "twi::x");
        assert_eq!(v["agent_id"], "spiffe://x/y");
        assert_eq!(v["count"], 3);
    }

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    #[test]
    fn layer_writes_one_json_object_per_event() {
        let buf = Buf::default();
        let subscriber = tracing_subscriber::registry().with(HclogLayer::new(buf.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                agent_id = "spiffe://example.org/a",
                n = 7u64,
                ok = true,
                "attested node"
            );
            tracing::error!(error = %"bad \"quote\"\nnext", "failed");
            tracing::trace!("fine detail");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        let first: Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(first["@level"], "info");
        assert_eq!(first["@message"], "attested node");
        assert_eq!(first["agent_id"], "spiffe://example.org/a");
        assert_eq!(first["n"], 7);
        assert_eq!(first["ok"], true);
        assert!(first["@module"]
            .as_str()
            .unwrap()
            .starts_with("twi_plugin::log"));
        assert!(is_hclog_timestamp(first["@timestamp"].as_str().unwrap()));
        let second: Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(second["@level"], "error");
        assert_eq!(second["error"], "bad \"quote\"\nnext");
        let third: Value = serde_json::from_str(lines[2]).unwrap();
        assert_eq!(third["@level"], "trace");
        for v in [&first, &second, &third] {
            for key in ["@level", "@message", "@timestamp", "@module"] {
                assert!(v[key].is_string(), "{key} in {v}");
            }
        }
    }
}
