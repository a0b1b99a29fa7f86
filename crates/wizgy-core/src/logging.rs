//! The error log (tracing, plus raw `wsgi.errors` text) and the access log.
//!
//! Both are process-wide sinks set up once at start; writes are line-sized and flushed, so
//! lines from several threads never interleave mid-line.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

pub use crate::access_log::{Format, Record};
use crate::config::LogLevel;
use crate::exchange::PeerAddr;
use crate::http1::response::ResponseHead;
use crate::http1::RequestHead;

/// An open log and the path it was opened from (`-` for stdout/stderr), for reopening.
struct Log {
    writer: Box<dyn Write + Send>,
    path: PathBuf,
}

type Sink = Mutex<Log>;

/// The access log: its file and the format of its lines.
struct AccessSink {
    log: Sink,
    format: Format,
}

impl AccessSink {
    fn write(&self, bytes: &[u8]) {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let _ = log.writer.write_all(bytes);
        let _ = log.writer.flush();
    }
}

static ERROR_LOG: OnceLock<Sink> = OnceLock::new();
static ACCESS_LOG: OnceLock<Option<AccessSink>> = OnceLock::new();

fn open(path: &Path, dash: fn() -> Box<dyn Write + Send>) -> io::Result<Box<dyn Write + Send>> {
    if path.as_os_str() == "-" {
        return Ok(dash());
    }
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    Ok(Box::new(file))
}

/// Opens the error and access logs and installs the tracing subscriber. Called once; later
/// calls (a second `serve()` in one process) keep the first configuration.
pub fn init(
    level: LogLevel,
    error_log: &Path,
    access_log: Option<&Path>,
    format: &Format,
) -> io::Result<()> {
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
            Some(path) => Some(AccessSink {
                log: Mutex::new(Log {
                    writer: open(path, || Box::new(io::stdout()))?,
                    path: path.to_owned(),
                }),
                format: format.clone(),
            }),
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

/// The access-log record of an exchange that starts now, if the log is on.
pub fn access_record(head: &RequestHead, peer: PeerAddr) -> Option<Box<Record>> {
    let sink = ACCESS_LOG.get()?.as_ref()?;
    Some(Box::new(Record::new(&sink.format, head, peer)))
}

/// Keeps what the format shows of the response head.
pub fn access_response_head(record: &mut Option<Box<Record>>, head: &ResponseHead) {
    if let (Some(record), Some(Some(sink))) = (record.as_mut(), ACCESS_LOG.get()) {
        if sink.format.wants_response_fields() {
            record.response_head(&sink.format, head);
        }
    }
}

/// Lines waiting for the writer thread, and their bytes; past either bound a line is dropped
/// and counted (a disk slower than the traffic must not hold the I/O thread, nor grow memory
/// without bound).
const QUEUE_LINES: usize = 8192;
const QUEUE_BYTES: usize = 8 << 20;
/// The writer wakes this often, or at once when this many lines wait. Not per line: waking a
/// thread for each line (a futex wake and two context switches per request) cost hello-world
/// 55 % of its req/s on one core; a 10 ms batch makes the wake-ups 100 per second.
const WRITE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);
const WAKE_AT: usize = 1024;

static DROPPED: AtomicU64 = AtomicU64::new(0);

/// The queue between the I/O thread and the access log's writer thread.
struct Writer {
    lines: Mutex<Vec<Record>>,
    bytes: AtomicUsize,
    thread: std::thread::Thread,
    /// Flushes asked for, and done (see [`flush_access_log`]).
    flush_asked: AtomicU64,
    flushed: AtomicU64,
}

static WRITER: OnceLock<Writer> = OnceLock::new();

/// Access-log lines dropped because the writer thread fell behind.
pub fn access_log_dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Ends the exchange's record and queues it for the writer thread (or, without one, writes it
/// here). Never blocks on the disk: a full queue drops the line and counts it.
pub fn log_access(record: Option<Box<Record>>, status: u16, body_bytes: u64) {
    let Some(mut record) = record else {
        return;
    };
    record.finish(status, body_bytes);
    let Some(writer) = WRITER.get() else {
        if let Some(Some(sink)) = ACCESS_LOG.get() {
            let mut line = String::new();
            record.write_line(&sink.format, &mut line);
            sink.write(line.as_bytes());
        }
        return;
    };
    let size = record.size();
    let mut lines = writer.lines.lock().unwrap_or_else(|e| e.into_inner());
    if lines.len() >= QUEUE_LINES || writer.bytes.load(Ordering::Relaxed) + size > QUEUE_BYTES {
        drop(lines);
        dropped();
        return;
    }
    writer.bytes.fetch_add(size, Ordering::Relaxed);
    lines.push(*record);
    let wake = lines.len() == WAKE_AT;
    drop(lines);
    if wake {
        writer.thread.unpark();
    }
}

fn dropped() {
    DROPPED.fetch_add(1, Ordering::Relaxed);
    crate::metrics::slot().access_log_dropped.add(1);
}

/// Starts the access log's writer thread in this process (a worker, after the fork: threads do
/// not survive one). A no-op when the log is off or the thread runs.
pub fn start_access_writer() {
    let Some(Some(_)) = ACCESS_LOG.get() else {
        return;
    };
    if WRITER.get().is_some() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("wizgy-access-log".into())
        .spawn(write_lines);
    match spawned {
        Ok(handle) => {
            let _ = WRITER.set(Writer {
                lines: Mutex::new(Vec::with_capacity(WAKE_AT)),
                bytes: AtomicUsize::new(0),
                thread: handle.thread().clone(),
                flush_asked: AtomicU64::new(0),
                flushed: AtomicU64::new(0),
            });
            handle.thread().unpark();
        }
        Err(error) => tracing::warn!("no access-log thread ({error}): lines are written inline"),
    }
}

/// The writer thread: every [`WRITE_INTERVAL`] (or when woken), formats the lines queued and
/// writes them with one write.
fn write_lines() {
    let Some(Some(sink)) = ACCESS_LOG.get() else {
        return;
    };
    // Set by start_access_writer right after the spawn.
    let writer = loop {
        if let Some(writer) = WRITER.get() {
            break writer;
        }
        std::thread::park_timeout(WRITE_INTERVAL);
    };
    let mut taken: Vec<Record> = Vec::with_capacity(WAKE_AT);
    let mut batch = String::with_capacity(64 * 1024);
    loop {
        std::thread::park_timeout(WRITE_INTERVAL);
        let asked = writer.flush_asked.load(Ordering::Acquire);
        {
            let mut lines = writer.lines.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::swap(&mut *lines, &mut taken);
        }
        for record in taken.drain(..) {
            writer.bytes.fetch_sub(record.size(), Ordering::Relaxed);
            record.write_line(&sink.format, &mut batch);
            if batch.len() >= 64 * 1024 {
                sink.write(batch.as_bytes());
                batch.clear();
            }
        }
        if !batch.is_empty() {
            sink.write(batch.as_bytes());
            batch.clear();
        }
        writer.flushed.store(asked, Ordering::Release);
    }
}

/// Waits (up to `timeout`) until the lines queued so far are written: a worker's last lines
/// before it exits.
pub fn flush_access_log(timeout: std::time::Duration) {
    let Some(writer) = WRITER.get() else {
        return;
    };
    let deadline = std::time::Instant::now() + timeout;
    let asked = writer.flush_asked.fetch_add(1, Ordering::AcqRel) + 1;
    writer.thread.unpark();
    while writer.flushed.load(Ordering::Acquire) < asked && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Reopens the log files at their paths (SIGUSR1, after logrotate moved them).
pub fn reopen() {
    let access = ACCESS_LOG.get().and_then(Option::as_ref).map(|a| &a.log);
    let sinks = [ERROR_LOG.get(), access];
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
    let (year, month, day, rem) = civil_date(secs);
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

/// Seconds since the epoch as (year, month 1-12, day 1-31, seconds into the day), UTC.
pub fn civil_date(secs: u64) -> (i64, i64, i64, u64) {
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
    (year, month, day, rem)
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
