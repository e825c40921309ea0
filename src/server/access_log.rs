//! The access log's own writer: one line per request, formatted by hand
//! into a per-thread buffer and handed to the log writer thread a batch at
//! a time.
//!
//! Through `tracing` each line cost a field visitor per value, a timestamp
//! formatted from scratch, and a message on the writer thread's channel
//! (often waking it): together more than the rest of a proxied request's
//! user-space work (docs/PERFORMANCE.md, "as users run it"). Here a line is
//! a few appends to a buffer the thread already owns; the buffer goes to the
//! writer when it is full, when the runtime thread is about to park (so an
//! idle server's lines appear at once), and when the thread ends. Lines keep
//! exactly the shape `tracing`'s formatter gave them (text or JSON), so what
//! reads Berth's logs does not change. On a terminal (colours) and where
//! nothing installed it (unit tests), the line goes through `tracing` as
//! before.

use std::cell::RefCell;
use std::io::Write;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use crate::config::LogFormat;

/// Past this many bytes a thread's lines are handed over without waiting
/// for it to park: about 150 lines under load, one channel message.
const BATCH_BYTES: usize = 32 * 1024;

/// Where batches go: the same non-blocking writer as every other log line.
type Sink = Arc<Mutex<Box<dyn Write + Send>>>;

struct Installed {
    format: LogFormat,
    sink: Sink,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// Called once at start with the log writer. The sink is only locked to
/// hand over a whole batch (its own queueing is non-blocking), never per
/// line.
pub fn install(format: LogFormat, sink: Box<dyn Write + Send>) {
    let _ = INSTALLED.set(Installed { format, sink: Arc::new(Mutex::new(sink)) });
}

/// The request facts of one line.
pub struct Line<'a> {
    pub method: &'a http::Method,
    pub path: &'a str,
    pub status: u16,
    pub elapsed: Duration,
    pub user: Option<u64>,
    pub bundle: Option<u64>,
    pub bytes: Option<u64>,
    pub client: IpAddr,
    pub cause: Option<&'a str>,
    pub denied: Option<&'a str>,
}

/// A thread's pending lines, and the formatted second they were written in
/// (the timestamp's date and time only change once a second).
struct Buffer {
    lines: Vec<u8>,
    second: u64,
    second_text: String,
}

impl Drop for Buffer {
    /// A runtime thread that ends (shutdown) hands over what it still holds.
    fn drop(&mut self) {
        hand_over(&mut self.lines);
    }
}

thread_local! {
    static BUFFER: RefCell<Buffer> =
        const { RefCell::new(Buffer { lines: Vec::new(), second: u64::MAX, second_text: String::new() }) };
}

/// Writes the line: into this thread's batch when installed, else through
/// `tracing`.
pub fn write(line: &Line<'_>) {
    let Some(installed) = INSTALLED.get() else {
        return through_tracing(line);
    };
    let full = BUFFER.with(|b| {
        let Ok(mut b) = b.try_borrow_mut() else { return false };
        let b = &mut *b;
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        if now.as_secs() != b.second {
            b.second = now.as_secs();
            b.second_text = second_text(now.as_secs());
        }
        let ts = Timestamp { second: &b.second_text, micros: now.subsec_micros() };
        match installed.format {
            LogFormat::Text => format_text(&mut b.lines, &ts, line),
            LogFormat::Json => format_json(&mut b.lines, &ts, line),
        }
        b.lines.len() >= BATCH_BYTES
    });
    if full {
        flush_thread();
    }
}

/// Hands this thread's pending lines to the writer. Runtime threads call it
/// before they park.
pub fn flush_thread() {
    BUFFER.with(|b| {
        if let Ok(mut b) = b.try_borrow_mut() {
            hand_over(&mut b.lines);
        }
    });
}

fn hand_over(lines: &mut Vec<u8>) {
    if lines.is_empty() {
        return;
    }
    if let Some(installed) = INSTALLED.get() {
        let mut sink = installed.sink.lock().unwrap_or_else(PoisonError::into_inner);
        // The non-blocking writer queues the batch as one message.
        let _ = sink.write_all(lines);
    }
    lines.clear();
    // A burst's buffer is not kept for good.
    if lines.capacity() > 4 * BATCH_BYTES {
        lines.shrink_to(BATCH_BYTES);
    }
}

struct Timestamp<'a> {
    /// `2026-12-04T20:17:03`
    second: &'a str,
    micros: u32,
}

impl Timestamp<'_> {
    /// RFC 3339 in UTC with microseconds, as `tracing-subscriber` writes it.
    fn write(&self, out: &mut Vec<u8>) {
        let _ = write!(out, "{}.{:06}Z", self.second, self.micros);
    }
}

fn second_text(unix: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix as i64).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `tracing-subscriber`'s default text line: timestamp, padded level,
/// target, message, then `name=value` fields (strings recorded as `&str`
/// are quoted and escaped as Rust's `Debug` does; Display ones are not).
fn format_text(out: &mut Vec<u8>, ts: &Timestamp<'_>, l: &Line<'_>) {
    ts.write(out);
    out.extend_from_slice(b"  INFO berth::access: request method=");
    out.extend_from_slice(l.method.as_str().as_bytes());
    out.extend_from_slice(b" path=");
    out.extend_from_slice(l.path.as_bytes());
    for (name, value) in numbers(l) {
        let _ = write!(out, " {name}={value}");
    }
    let _ = writeln!(out, " client={} cause={:?} denied={:?}", l.client, l.cause.unwrap_or(""), l.denied.unwrap_or(""));
}

/// `tracing-subscriber`'s JSON line with flattened fields.
fn format_json(out: &mut Vec<u8>, ts: &Timestamp<'_>, l: &Line<'_>) {
    out.extend_from_slice(b"{\"timestamp\":\"");
    ts.write(out);
    out.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"request\",\"method\":");
    json_str(out, l.method.as_str());
    out.extend_from_slice(b",\"path\":");
    json_str(out, l.path);
    for (name, value) in numbers(l) {
        let _ = write!(out, ",\"{name}\":{value}");
    }
    let _ = write!(out, ",\"client\":\"{}\",\"cause\":", l.client);
    json_str(out, l.cause.unwrap_or(""));
    out.extend_from_slice(b",\"denied\":");
    json_str(out, l.denied.unwrap_or(""));
    out.extend_from_slice(b",\"target\":\"berth::access\"}\n");
}

fn json_str(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// The numeric fields, in the order `tracing` wrote them.
fn numbers(l: &Line<'_>) -> [(&'static str, i64); 5] {
    [
        ("status", i64::from(l.status)),
        ("duration_us", l.elapsed.as_micros() as i64),
        ("user", signed(l.user)),
        ("bundle", signed(l.bundle)),
        ("bytes", signed(l.bytes)),
    ]
}

/// -1 for "none", as the log always wrote it.
fn signed(v: Option<u64>) -> i64 {
    v.map_or(-1, |v| v as i64)
}

fn through_tracing(l: &Line<'_>) {
    tracing::info!(
        target: "berth::access",
        method = %l.method,
        path = %l.path,
        status = l.status,
        duration_us = l.elapsed.as_micros() as u64,
        user = signed(l.user),
        bundle = signed(l.bundle),
        bytes = signed(l.bytes),
        client = %l.client,
        cause = l.cause.unwrap_or(""),
        denied = l.denied.unwrap_or(""),
        "request"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> Line<'static> {
        Line {
            method: &http::Method::GET,
            path: "/api/endpoints/1/docker/v1.41/containers/json",
            status: 200,
            elapsed: Duration::from_micros(1234),
            user: Some(7),
            bundle: None,
            bytes: Some(2048),
            client: "127.0.0.1".parse().unwrap(),
            cause: None,
            denied: Some("a \"rule\""),
        }
    }

    fn ts() -> (String, u32) {
        (second_text(1_796_415_423), 42)
    }

    #[test]
    fn text_lines_have_tracing_s_shape() {
        let (s, micros) = ts();
        let mut out = Vec::new();
        format_text(&mut out, &Timestamp { second: &s, micros }, &line());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-12-04T20:17:03.000042Z  INFO berth::access: request method=GET \
             path=/api/endpoints/1/docker/v1.41/containers/json status=200 duration_us=1234 user=7 \
             bundle=-1 bytes=2048 client=127.0.0.1 cause=\"\" denied=\"a \\\"rule\\\"\"\n"
        );
    }

    #[test]
    fn json_lines_parse_with_every_field() {
        let (s, micros) = ts();
        let mut out = Vec::new();
        let mut l = line();
        l.path = "/api/\"odd\"\\path";
        format_json(&mut out, &Timestamp { second: &s, micros }, &l);
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["timestamp"], "2026-12-04T20:17:03.000042Z");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["target"], "berth::access");
        assert_eq!(v["message"], "request");
        assert_eq!(v["path"], "/api/\"odd\"\\path");
        assert_eq!(v["status"], 200);
        assert_eq!(v["duration_us"], 1234);
        assert_eq!(v["user"], 7);
        assert_eq!(v["bundle"], -1);
        assert_eq!(v["bytes"], 2048);
        assert_eq!(v["client"], "127.0.0.1");
        assert_eq!(v["cause"], "");
        assert_eq!(v["denied"], "a \"rule\"");
    }

    /// What `tracing-subscriber` writes for the same line, timestamp cut.
    fn via_tracing(json: bool) -> String {
        #[derive(Clone, Default)]
        struct Captured(Arc<Mutex<Vec<u8>>>);
        impl Write for Captured {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let out = Captured::default();
        let w = out.clone();
        let b = tracing_subscriber::fmt().with_ansi(false).with_writer(move || w.clone());
        if json {
            tracing::subscriber::with_default(b.json().flatten_event(true).finish(), || through_tracing(&line()));
        } else {
            tracing::subscriber::with_default(b.finish(), || through_tracing(&line()));
        }
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text
    }

    #[test]
    fn lines_are_what_tracing_wrote() {
        let (s, micros) = ts();
        let mut ours = Vec::new();
        format_text(&mut ours, &Timestamp { second: &s, micros }, &line());
        let ours = String::from_utf8(ours).unwrap();
        let theirs = via_tracing(false);
        let cut = |l: &str| l.split_once('Z').unwrap().1.to_owned();
        assert_eq!(cut(&ours), cut(&theirs));

        let mut ours = Vec::new();
        format_json(&mut ours, &Timestamp { second: &s, micros }, &line());
        let mut ours: serde_json::Value = serde_json::from_slice(&ours).unwrap();
        let mut theirs: serde_json::Value = serde_json::from_str(&via_tracing(true)).unwrap();
        ours.as_object_mut().unwrap().remove("timestamp");
        theirs.as_object_mut().unwrap().remove("timestamp");
        assert_eq!(ours, theirs);
    }

    #[test]
    fn the_cached_second_matches_the_time_crate() {
        for unix in [0u64, 951_782_400, 1_796_415_423, 4_102_444_799] {
            let t = time::OffsetDateTime::from_unix_timestamp(unix as i64).unwrap();
            let want = t.format(&time::format_description::well_known::Rfc3339).unwrap();
            assert_eq!(format!("{}Z", second_text(unix)), want);
        }
    }
}
