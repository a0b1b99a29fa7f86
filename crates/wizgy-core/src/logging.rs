//! The error log (tracing, plus raw `wsgi.errors` text) and the access log.
//!
//! Both are process-wide sinks set up once at start; writes are line-sized and flushed, so
//! lines from several threads never interleave mid-line.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::config::LogLevel;

/// An open log and the path it was opened from (`-` for stdout/stderr), for reopening.
struct Log {
    writer: Box<dyn Write + Send>,
    path: PathBuf,
}

type Sink = Mutex<Log>;

static ERROR_LOG: OnceLock<Sink> = OnceLock::new();
static ACCESS_LOG: OnceLock<Option<Sink>> = OnceLock::new();

fn open(path: &Path, dash: fn() -> Box<dyn Write + Send>) -> io::Result<Box<dyn Write + Send>> {
    if path.as_os_str() == "-" {
        return Ok(dash());
    }
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    Ok(Box::new(file))
}

/// Opens the error and access logs and installs the tracing subscriber. Called once; later
/// calls (a second `serve()` in one process) keep the first configuration.
pub fn init(level: LogLevel, error_log: &Path, access_log: Option<&Path>) -> io::Result<()> {
    if ERROR_LOG.get().is_none() {
        let writer = open(error_log, || Box::new(io::stderr()))?;
        let _ = ERROR_LOG.set(Mutex::new(Log {
            writer,
            path: error_log.to_owned(),
        }));
        let _ = tracing_subscriber::fmt()
            .with_max_level(level.as_tracing())
            .with_target(false)
            .with_ansi(false)
            .with_writer(|| ErrorLogWriter)
            .try_init();
    }
    if ACCESS_LOG.get().is_none() {
        let sink = match access_log {
            Some(path) => Some(Mutex::new(Log {
                writer: open(path, || Box::new(io::stdout()))?,
                path: path.to_owned(),
            })),
            None => None,
        };
        let _ = ACCESS_LOG.set(sink);
    }
    Ok(())
}

/// Writes raw text to the error log (`wsgi.errors`, tracebacks).
pub fn write_error_log(text: &[u8]) {
    match ERROR_LOG.get() {
        Some(sink) => {
            let mut sink = sink.lock().unwrap_or_else(|e| e.into_inner());
            let _ = sink.writer.write_all(text);
            let _ = sink.writer.flush();
        }
        None => {
            let _ = io::stderr().write_all(text);
        }
    }
}

/// The tracing writer: each event is formatted into one buffer and written under the lock.
struct ErrorLogWriter;

impl Write for ErrorLogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        write_error_log(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Whether access logging is on (so connections only gather what it needs when it is).
pub fn access_log_enabled() -> bool {
    ACCESS_LOG.get().is_some_and(Option::is_some)
}

/// Writes one access-log line (the caller formats it, newline included).
pub fn write_access_log(line: &[u8]) {
    if let Some(Some(sink)) = ACCESS_LOG.get() {
        let mut sink = sink.lock().unwrap_or_else(|e| e.into_inner());
        let _ = sink.writer.write_all(line);
        let _ = sink.writer.flush();
    }
}

/// Reopens the log files at their paths (SIGUSR1, after logrotate moved them).
pub fn reopen() {
    let sinks = [ERROR_LOG.get(), ACCESS_LOG.get().and_then(Option::as_ref)];
    for sink in sinks.into_iter().flatten() {
        let mut log = sink.lock().unwrap_or_else(|e| e.into_inner());
        if log.path.as_os_str() == "-" {
            continue;
        }
        match OpenOptions::new().create(true).append(true).open(&log.path) {
            Ok(file) => log.writer = Box::new(file),
            Err(error) => {
                let message = format!("cannot reopen {}: {error}\n", log.path.display());
                let _ = log.writer.write_all(message.as_bytes());
            }
        }
    }
}

/// Formats `time` as the Common Log Format timestamp `21/Nov/2026:23:30:00 +0000` (UTC).
pub fn common_log_time(time: std::time::SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's days_from_civil, inverted).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{:02}/{}/{}:{:02}:{:02}:{:02} +0000",
        day,
        MONTHS[(month - 1) as usize],
        year,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn common_log_time_matches_known_dates() {
        let at = |secs| common_log_time(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "01/Jan/1970:00:00:00 +0000");
        assert_eq!(at(951_782_400), "29/Feb/2000:00:00:00 +0000");
        assert_eq!(at(1_795_301_400), "21/Nov/2026:22:50:00 +0000");
    }
}
