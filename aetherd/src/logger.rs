//! The daemon's log, as a backend of the `log` crate: one line per record on
//! stderr, `2026-12-06T09:18:55.123Z INFO  aetherd: message`. Under systemd
//! (stderr is the journal's stream, `$JOURNAL_STREAM`) the line is instead
//! prefixed with its syslog priority (`<6>message`) and carries no timestamp:
//! journald parses the prefix into the entry's priority and stamps it itself.
//! With `--log-format json` each line is one JSON object instead:
//! `{"time":"2026-12-06T09:18:55.123Z","level":"info","message":"..."}`.
//! Nothing on the data path logs; the control plane logs per request at `debug`.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::sync::OnceLock;

struct Logger {
    /// Whether stderr is connected to journald.
    journal: bool,
    json: bool,
}

/// How log lines are written (`--log-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    /// `TIME LEVEL aetherd: message`.
    #[default]
    Text,
    /// One JSON object per line: `time`, `level`, `message`.
    Json,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

impl Log for Logger {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        // One write per line, so that threads never interleave within a line.
        let line = match (self.journal, self.json) {
            (_, true) => {
                let object = serde_json::json!({
                    "time": timestamp(),
                    "level": tag(r.level()).trim().to_ascii_lowercase(),
                    "message": r.args().to_string(),
                });
                match self.journal {
                    true => format!("<{}>{object}\n", priority(r.level())),
                    false => format!("{object}\n"),
                }
            }
            (true, false) => format!("<{}>{}\n", priority(r.level()), r.args()),
            (false, false) => format!("{} {} aetherd: {}\n", timestamp(), tag(r.level()), r.args()),
        };
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

fn tag(l: Level) -> &'static str {
    match l {
        Level::Error => "ERROR",
        Level::Warn => "WARN ",
        Level::Info => "INFO ",
        Level::Debug | Level::Trace => "DEBUG",
    }
}

/// syslog(3) priorities, as sd-daemon(3) prefixes take them.
fn priority(l: Level) -> u8 {
    match l {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// Whether `$JOURNAL_STREAM` (`DEVICE:INODE`) names our stderr.
fn stderr_is_journal() -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

/// Installs the logger (once per process; later calls only set the level).
pub fn init(level: LevelFilter, format: Format) {
    let logger = LOGGER.get_or_init(|| Logger {
        journal: stderr_is_journal(),
        json: format == Format::Json,
    });
    let _ = log::set_logger(logger);
    set_level(level);
}

/// Changes the level (SIGHUP).
pub fn set_level(level: LevelFilter) {
    log::set_max_level(level);
}

/// Parses `error|warn|info|debug|trace` (as `RUST_LOG`'s simple form; trace means debug).
pub fn parse_level(s: &str) -> Option<LevelFilter> {
    Some(match s.trim().to_ascii_lowercase().as_str() {
        "error" => LevelFilter::Error,
        "warn" | "warning" => LevelFilter::Warn,
        "info" => LevelFilter::Info,
        "debug" | "trace" => LevelFilter::Debug,
        _ => return None,
    })
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` from the realtime clock (civil-from-days, no tz database).
pub fn timestamp() -> String {
    let ns = aether::sys::realtime_ns();
    let secs = (ns / 1_000_000_000) as i64;
    let ms = (ns / 1_000_000) % 1000;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_shape() {
        let t = timestamp();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z') && &t[10..11] == "T", "{t}");
    }

    #[test]
    fn levels() {
        assert_eq!(parse_level(" Warning "), Some(LevelFilter::Warn));
        assert_eq!(parse_level("trace"), Some(LevelFilter::Debug));
        assert_eq!(parse_level("loud"), None);
        assert_eq!((priority(Level::Error), priority(Level::Debug)), (3, 7));
    }
}
