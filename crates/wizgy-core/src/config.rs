//! The command-line options, declared once. The `wizgy` command, `wizgy.serve(**options)` and
//! the options reference all come from this one declaration (serve() turns its keyword
//! arguments into these flags).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::files::StaticMount;

mod hints;
pub mod layers;
use crate::listener::BindAddress;

/// Serve a WSGI application.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "wizgy",
    version,
    about = "wizgy: a fast, strict WSGI server written in Rust",
    after_help = "APP is MODULE, MODULE:NAME, MODULE:FACTORY() or MODULE:FACTORY(LITERAL, ...).\nExample: wizgy --bind 127.0.0.1:8000 --workers 4 myproject.wsgi:application\n`wizgy -h` shows the common options; `wizgy --help` shows every option."
)]
pub struct Config {
    /// The WSGI application: MODULE[:NAME] (NAME defaults to `application`) or
    /// MODULE:FACTORY(ARGS) with literal arguments.
    #[arg(value_name = "APP")]
    pub app: Option<String>,

    /// Address to listen on: HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N (repeatable).
    ///
    /// Repeat to listen on several. Port 0 picks a free port (printed at start). Default:
    /// 127.0.0.1:8000, unless
    /// systemd passed sockets (LISTEN_FDS). A graceful or immediate stop closes the sockets
    /// wizgy bound at once (new connections are refused while the drain goes on); sockets it was
    /// given (fd://N, systemd) stay open in their owner, which keeps queueing for the next
    /// instance.
    #[arg(
        short = 'b',
        long = "bind",
        value_name = "ADDRESS",
        value_parser = BindAddress::parse,
    )]
    pub bind: Vec<BindAddress>,

    /// App threads: how many requests run Python at once. Only as many run as there is work,
    /// and each releases the GIL while it waits on I/O.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 64,
        value_parser = clap::value_parser!(u16).range(1..=4096),
    )]
    pub threads: u16,

    /// Where fast requests run the app: `auto` runs a route on the I/O thread itself once it
    /// has answered quickly without blocking on the app threads (no hand-off between threads),
    /// and moves it back for good when it is slow; `off` always uses the app threads.
    #[arg(
        hide_short_help = true,
        long,
        value_enum,
        value_name = "WHEN",
        default_value = "auto"
    )]
    pub inline: Inline,

    /// Change to this directory before loading the app (it is then first on sys.path).
    /// Default: the current directory.
    #[arg(long, value_name = "DIR")]
    pub chdir: Option<PathBuf>,

    /// Extra directories to put on sys.path before loading the app, comma-separated.
    /// Default: none.
    #[arg(
        hide_short_help = true,
        long,
        value_name = "DIR[,DIR]",
        value_delimiter = ','
    )]
    pub pythonpath: Vec<PathBuf>,

    /// The error log's level.
    #[arg(long, value_enum, value_name = "LEVEL", default_value = "info")]
    pub log_level: LogLevel,

    /// Write one access-log line per exchange to this file; `-` means stdout. Default: off.
    #[arg(long, value_name = "PATH")]
    pub access_log: Option<PathBuf>,

    /// The access log's lines: a gunicorn format (atoms h l u t r s b B f a T M D L p m U q H,
    /// %({header}i)s, %({header}o)s, %({KEY}e)s for the environ keys the server knows), or
    /// `json`: one object per line. Default: gunicorn's,
    /// `%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"`.
    #[arg(long, value_name = "FORMAT", default_value = crate::access_log::DEFAULT_FORMAT,
          value_parser = crate::access_log::Format::parse, hide_default_value = true)]
    pub access_log_format: crate::access_log::Format,

    /// Where the error log (startup lines, tracebacks, wsgi.errors) goes; `-` means stderr.
    #[arg(hide_short_help = true, long, value_name = "PATH", default_value = "-")]
    pub error_log: PathBuf,

    /// The path prefix the app is mounted at: SCRIPT_NAME, removed from the front of
    /// PATH_INFO when present.
    #[arg(hide_short_help = true, long, value_name = "PREFIX", default_value = "", value_parser = parse_root_path)]
    pub root_path: String,

    /// Serve the files under DIR at URL PREFIX from Rust, without Python (repeatable; the
    /// longest prefix wins). GET and HEAD only; a URL that names no servable file (missing,
    /// hidden, outside DIR) goes to the app. DIR is relative to where wizgy starts.
    /// Default: none.
    #[arg(long = "static", value_name = "PREFIX=DIR", help_heading = "Static files",
          value_parser = StaticMount::parse)]
    pub statics: Vec<StaticMount>,

    /// Serve another app at URL PREFIX (repeatable; APP spelled as the positional one; the
    /// longest prefix wins). It sees SCRIPT_NAME = --root-path + PREFIX and the rest of the path
    /// as PATH_INFO. With mounts the positional APP is optional: it serves what no mount
    /// matches, and without it that is a 404. Default: none.
    #[arg(long = "mount", value_name = "PREFIX=APP", help_heading = "Apps",
          value_parser = AppMount::parse)]
    pub mounts: Vec<AppMount>,

    /// Serve each NAME.py directly in DIR that defines `application` as an app at
    /// PREFIX/NAME.py (repeatable; mod_wsgi's script directories). All are imported at start;
    /// nothing in sub-directories is. DIR is relative to where wizgy starts. Default: none.
    #[arg(hide_short_help = true, long = "scripts", value_name = "PREFIX=DIR", help_heading = "Apps",
          value_parser = ScriptsDir::parse)]
    pub scripts: Vec<ScriptsDir>,

    /// Send `Cache-Control: public, max-age=N` with static files (a duration: 3600, 1h).
    /// Default: no Cache-Control.
    #[arg(hide_short_help = true, long, value_name = "DURATION", help_heading = "Static files",
          value_parser = parse_duration)]
    pub static_max_age: Option<Duration>,

    /// The server's certificate chain, PEM: the leaf first, then its intermediates (Let's
    /// Encrypt's fullchain.pem). With it every TCP listener speaks TLS 1.2 and 1.3 (unix
    /// sockets stay plaintext). Checked at start and read again by each new worker, so a
    /// reload (SIGHUP) picks up a renewed certificate. Default: no TLS.
    #[arg(hide_short_help = true, long, value_name = "PEM", help_heading = "TLS")]
    pub certfile: Option<PathBuf>,

    /// The certificate's private key, PEM: RSA, ECDSA or Ed25519, as PKCS#8, PKCS#1 or SEC1
    /// (an encrypted PKCS#8 key needs --keyfile-password). Default: the key in --certfile.
    #[arg(hide_short_help = true, long, value_name = "PEM", help_heading = "TLS")]
    pub keyfile: Option<PathBuf>,

    /// The password of an encrypted PKCS#8 key (`ENCRYPTED PRIVATE KEY`). Prefer the
    /// environment variable: a command line is visible to every user. Default: none.
    #[arg(
        hide_short_help = true,
        long,
        value_name = "PASSWORD",
        help_heading = "TLS",
        hide_env_values = true
    )]
    pub keyfile_password: Option<String>,

    /// CA certificates, PEM, that client certificates must chain to (see --cert-reqs).
    /// Default: none.
    #[arg(hide_short_help = true, long, value_name = "PEM", help_heading = "TLS")]
    pub ca_certs: Option<PathBuf>,

    /// Client certificates: `none` (not asked for), `optional` (asked for, verified against
    /// --ca-certs when given) or `required` (a client without a valid one is refused in the
    /// handshake). gunicorn's 0, 1 and 2 are accepted too.
    #[arg(
        hide_short_help = true,
        long,
        value_enum,
        value_name = "WHEN",
        default_value = "none",
        help_heading = "TLS"
    )]
    pub cert_reqs: CertReqs,

    /// Which HTTP versions to speak: `auto` (HTTP/2 when a TLS client's ALPN picks `h2`, or
    /// when a cleartext connection opens with the HTTP/2 preface; HTTP/1.1 otherwise), `1`
    /// (HTTP/1.1 only) or `2` (HTTP/2 only: h2c with prior knowledge on cleartext).
    #[arg(
        long,
        value_enum,
        value_name = "VERSION",
        default_value = "auto",
        help_heading = "HTTP/2"
    )]
    pub http: HttpVersions,

    /// Streams one HTTP/2 connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
    #[arg(hide_short_help = true, long, value_name = "N", default_value_t = 100, help_heading = "HTTP/2",
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub http2_max_concurrent_streams: u32,

    /// Request body bytes a client may send on one stream before the app reads them: the
    /// stream's initial flow-control window. Sizes as for --max-request-body.
    #[arg(hide_short_help = true, long, value_name = "SIZE", default_value = "256KiB", help_heading = "HTTP/2",
          value_parser = parse_window)]
    pub http2_initial_stream_window: u32,

    /// Request body bytes a client may send on all streams of a connection before the apps
    /// read them: the connection's flow-control window.
    #[arg(hide_short_help = true, long, value_name = "SIZE", default_value = "1MiB", help_heading = "HTTP/2",
          value_parser = parse_window)]
    pub http2_initial_connection_window: u32,

    /// Largest frame payload wizgy accepts (SETTINGS_MAX_FRAME_SIZE), 16KiB to 16MiB.
    #[arg(hide_short_help = true, long, value_name = "SIZE", default_value = "16KiB", help_heading = "HTTP/2",
          value_parser = parse_frame_size)]
    pub http2_max_frame_size: u32,

    /// Longest request line in bytes; longer is answered 414.
    #[arg(hide_short_help = true, long, value_name = "BYTES", default_value_t = 8190, help_heading = "Limits",
          value_parser = clap::value_parser!(u32).range(64..=1_048_576))]
    pub limit_request_line: u32,

    /// Most header fields in one request; more is answered 431.
    #[arg(hide_short_help = true, long, value_name = "N", default_value_t = 100, help_heading = "Limits",
          value_parser = clap::value_parser!(u32).range(1..=32_768))]
    pub limit_request_fields: u32,

    /// Longest header field line in bytes; longer is answered 431.
    #[arg(hide_short_help = true, long, alias = "limit-request-field_size", value_name = "BYTES", default_value_t = 8190,
          help_heading = "Limits", value_parser = clap::value_parser!(u32).range(64..=1_048_576))]
    pub limit_request_field_size: u32,

    /// Largest request body (Content-Length up front, or chunked as it grows); larger is
    /// answered 413. Sizes: 1000, 64KiB, 1MiB, 1GiB (KB/MB/GB are powers of 1000).
    #[arg(hide_short_help = true, long, value_name = "SIZE", default_value = "1GiB", help_heading = "Limits",
          value_parser = parse_size, allow_hyphen_values = true)]
    pub max_request_body: u64,

    /// Most open connections per worker; past it new ones wait in the listen backlog.
    #[arg(hide_short_help = true, long, value_name = "N", default_value_t = 10_000, help_heading = "Limits",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// The listen backlog: connections the kernel queues before wizgy accepts them.
    #[arg(hide_short_help = true, long, value_name = "N", default_value_t = 2048, help_heading = "Limits",
          value_parser = clap::value_parser!(i32).range(1..=65_535))]
    pub backlog: i32,

    /// A request head not complete this long after its first byte is answered 408.
    /// Durations: 500ms, 30s, 2m, or plain seconds.
    #[arg(hide_short_help = true, long, value_name = "DURATION", default_value = "30s", help_heading = "Timeouts",
          value_parser = parse_duration, allow_hyphen_values = true)]
    pub header_timeout: Duration,

    /// Idle time allowed before a request starts (between keep-alive requests, and on a new
    /// connection); then the connection closes quietly.
    #[arg(hide_short_help = true, long, value_name = "DURATION", default_value = "5s", help_heading = "Timeouts",
          value_parser = parse_duration, allow_hyphen_values = true)]
    pub keep_alive: Duration,

    /// Hand a new TCP connection to a worker only once its first bytes arrive, or after this
    /// long (Linux TCP_DEFER_ACCEPT, whole seconds; 0: at once). Spares the worker a wake-up
    /// and an empty read per connection; silent connections wait in the kernel meanwhile.
    #[arg(hide_short_help = true, long, value_name = "DURATION", default_value = "1s", help_heading = "Timeouts",
          value_parser = parse_duration, allow_hyphen_values = true)]
    pub defer_accept: Duration,

    /// No request-body progress for this long while the app reads: the connection closes and
    /// the app's read raises.
    #[arg(hide_short_help = true, long, value_name = "DURATION", default_value = "30s", help_heading = "Timeouts",
          value_parser = parse_duration, allow_hyphen_values = true)]
    pub body_timeout: Duration,

    /// A response write making no progress for this long (the client stopped reading): the
    /// connection closes and the app's response is closed.
    #[arg(hide_short_help = true, long, value_name = "DURATION", default_value = "30s", help_heading = "Timeouts",
          value_parser = parse_duration, allow_hyphen_values = true)]
    pub write_timeout: Duration,

    /// Peers trusted to set the scheme (X-Forwarded-Proto, X-Forwarded-Ssl, Forwarded) and,
    /// with --forwarded-for, the client address: IPs or CIDRs, comma-separated, `*` for any.
    /// FORWARDED_ALLOW_IPS (gunicorn's variable) is read too, below WIZGY_FORWARDED_ALLOW_IPS.
    #[arg(long, value_name = "LIST", default_value = "127.0.0.1,::1",
          help_heading = "Proxies", value_parser = Networks::parse)]
    pub forwarded_allow_ips: Networks,

    /// Take REMOTE_ADDR from trusted peers' X-Forwarded-For (its rightmost address) or
    /// Forwarded `for=`.
    #[arg(long, help_heading = "Proxies")]
    pub forwarded_for: bool,

    /// Expect a PROXY protocol v1/v2 header first on connections from --proxy-allow-from peers.
    #[arg(hide_short_help = true, long, help_heading = "Proxies")]
    pub proxy_protocol: bool,

    /// Peers that may (and with --proxy-protocol must) send a PROXY protocol header.
    #[arg(hide_short_help = true, long, value_name = "LIST", default_value = "127.0.0.1,::1", help_heading = "Proxies",
          value_parser = Networks::parse)]
    pub proxy_allow_from: Networks,

    /// Worker processes forked by the supervisor. WEB_CONCURRENCY (Heroku's and gunicorn's
    /// variable) is read too, below WIZGY_WORKERS.
    #[arg(short = 'w', long, value_name = "N", default_value_t = 1,
          help_heading = "Processes", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: u16,

    /// Import the app once in the supervisor before forking (shared copy-on-write memory;
    /// SIGHUP then does not pick up new code).
    #[arg(hide_short_help = true, long, help_heading = "Processes")]
    pub preload: bool,

    /// Recycle a worker after this many requests (0: never).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        help_heading = "Processes"
    )]
    pub max_requests: u64,

    /// Add a random 0..=J to each worker's --max-requests, so workers do not recycle together.
    #[arg(
        hide_short_help = true,
        long,
        value_name = "J",
        default_value_t = 0,
        help_heading = "Processes"
    )]
    pub max_requests_jitter: u64,

    /// Recycle a worker whose resident memory exceeds this (checked every second; 0: never).
    #[arg(hide_short_help = true, long, value_name = "SIZE", default_value = "0", help_heading = "Processes",
          value_parser = parse_size, allow_hyphen_values = true)]
    pub max_worker_memory: u64,

    /// Recycle a worker after it has run this long (0: never).
    #[arg(hide_short_help = true, long, value_name = "DURATION", default_value = "0", help_heading = "Processes",
          value_parser = parse_duration, allow_hyphen_values = true)]
    pub max_worker_lifetime: Duration,

    /// Kill and replace a worker whose event loop has not answered for this long (0: never).
    #[arg(hide_short_help = true, long, value_name = "DURATION", default_value = "30s", help_heading = "Processes",
          value_parser = parse_duration, allow_hyphen_values = true)]
    pub timeout: Duration,

    /// A request running longer than this: 504 (if no response head was sent), its Python stack
    /// in the error log, and the worker recycled (0: never).
    #[arg(hide_short_help = true, long, value_name = "DURATION", default_value = "0", help_heading = "Processes",
          value_parser = parse_duration, allow_hyphen_values = true)]
    pub request_timeout: Duration,

    /// How long a graceful stop or reload waits for exchanges in flight before cutting them
    /// (a worker still running 1.5 s later is killed).
    #[arg(hide_short_help = true, long, value_name = "DURATION", default_value = "30s", help_heading = "Processes",
          value_parser = parse_duration, allow_hyphen_values = true)]
    pub graceful_timeout: Duration,

    /// After SIGTERM/SIGINT, keep serving this long before stopping (for load balancers that
    /// deregister slowly).
    #[arg(hide_short_help = true, long, value_name = "DURATION", default_value = "0", help_heading = "Processes",
          value_parser = parse_duration, allow_hyphen_values = true)]
    pub shutdown_delay: Duration,

    /// Write the supervisor's PID to this file (removed at exit).
    #[arg(
        hide_short_help = true,
        long,
        value_name = "FILE",
        help_heading = "Processes"
    )]
    pub pid: Option<PathBuf>,

    /// Mode of the unix sockets wizgy binds, in octal. The default lets a proxy on the same
    /// host connect whatever its user (as it could to 127.0.0.1); 660 with --socket-group
    /// limits it to one group. --umask does not apply to sockets.
    #[arg(long, value_name = "OCTAL", default_value = "666", help_heading = "Processes",
          value_parser = parse_socket_mode)]
    pub socket_mode: u32,

    /// Group (name or number) of the unix sockets wizgy binds, e.g. the proxy's (www-data).
    /// Default: wizgy's own group.
    #[arg(long, value_name = "GROUP", help_heading = "Processes", value_parser = parse_group)]
    pub socket_group: Option<u32>,

    /// File mode creation mask for log files and the pid file, in octal (e.g. 007).
    #[arg(hide_short_help = true, long, value_name = "OCTAL", help_heading = "Processes", value_parser = parse_umask)]
    pub umask: Option<u32>,

    /// Set SO_REUSEPORT on TCP listeners (several wizgy instances may share a port).
    #[arg(hide_short_help = true, long, help_heading = "Processes")]
    pub reuse_port: bool,

    /// Development: replace the workers when a .py file under the working directory or
    /// --pythonpath changes.
    #[arg(long, help_heading = "Processes")]
    pub reload: bool,

    /// Serve Prometheus metrics at /metrics (summed over the workers), /healthz (200 while
    /// the supervisor runs) and /readyz (200 while a worker takes connections and wizgy is not
    /// stopping, else 503) on this address: HOST:PORT or unix:PATH, plain HTTP. Default: off.
    #[arg(long, value_name = "ADDRESS", help_heading = "Operations",
          value_parser = BindAddress::parse)]
    pub metrics_bind: Option<BindAddress>,

    /// Read settings from this TOML file: keys are the long option names (`max-requests` or
    /// `max_requests`), plus `app`. The command line and WIZGY_* variables win over it.
    /// Default: ./wizgy.toml when it exists (WIZGY_CONFIG names another).
    #[arg(long, value_name = "FILE", help_heading = "Configuration")]
    pub config: Option<PathBuf>,

    /// Print every effective setting with where it comes from (default, file, environment or
    /// command line), as a config file, and exit.
    #[arg(long, help_heading = "Configuration")]
    pub print_config: bool,

    /// The config file that was read, if any (set by the loader, not an option).
    #[arg(skip)]
    pub config_file: Option<PathBuf>,
}

/// An octal file mode with only permission bits (no setuid, setgid or sticky).
fn parse_socket_mode(text: &str) -> Result<u32, String> {
    let digits = text.trim_start_matches("0o");
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|&m| m <= 0o777 && !digits.is_empty() && digits.len() <= 4)
        .ok_or_else(|| format!("{text:?} is not an octal mode such as 660"))
}

/// A group name, or a number.
fn parse_group(text: &str) -> Result<u32, String> {
    if let Ok(gid) = text.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(text) {
        Ok(Some(group)) => Ok(group.gid.as_raw()),
        Ok(None) => Err(format!("no group named {text:?}")),
        Err(e) => Err(format!("cannot look up group {text:?}: {e}")),
    }
}

impl Config {
    /// What `--socket-mode` and `--socket-group` ask for.
    pub fn unix_permissions(&self) -> crate::listener::UnixPermissions {
        crate::listener::UnixPermissions {
            mode: self.socket_mode,
            group: self.socket_group,
        }
    }
}

fn parse_umask(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|&m| m <= 0o777)
        .ok_or_else(|| format!("{text:?} is not an octal mode such as 022"))
}

/// Splits `PREFIX=VALUE` (`--static /static=./static`) and normalizes PREFIX: it starts with
/// `/`, has no trailing `/` (`/` itself becomes `""`), no empty, `.` or `..` segment, and
/// none of `?#%\\` or spaces (a prefix is compared with the raw URL path). `what` names VALUE
/// in messages.
pub fn parse_prefixed(text: &str, what: &str) -> Result<(String, String), String> {
    let Some((prefix, value)) = text.split_once('=') else {
        return Err(format!("{text:?}: expected PREFIX={what}"));
    };
    if value.is_empty() {
        return Err(format!("{text:?}: expected PREFIX={what}, {what} is empty"));
    }
    if !prefix.starts_with('/') {
        return Err(format!("{text:?}: PREFIX must start with '/'"));
    }
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    let bad_char = trimmed
        .chars()
        .any(|c| matches!(c, '?' | '#' | '%' | '\\') || c.is_whitespace() || c.is_control());
    let bad_segment = !trimmed.is_empty()
        && trimmed[1..]
            .split('/')
            .any(|segment| matches!(segment, "" | "." | ".."));
    if bad_char || bad_segment {
        return Err(format!(
            "{text:?}: PREFIX must be a plain URL path such as /static"
        ));
    }
    Ok((trimmed.to_owned(), value.to_owned()))
}

/// `--mount PREFIX=APP`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppMount {
    /// Normalized as by [`parse_prefixed`], never `""`.
    pub prefix: String,
    /// The APP spec, as the positional one.
    pub spec: String,
}

impl AppMount {
    pub fn parse(text: &str) -> Result<AppMount, String> {
        let (prefix, spec) = parse_prefixed(text, "APP")?;
        if prefix.is_empty() {
            return Err(format!(
                "{text:?}: the app for / is the positional APP, not a mount"
            ));
        }
        Ok(AppMount { prefix, spec })
    }
}

/// `--scripts PREFIX=DIR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptsDir {
    /// Normalized as by [`parse_prefixed`] (`""` for `/`).
    pub prefix: String,
    /// DIR, made absolute where wizgy starts (before --chdir).
    pub dir: PathBuf,
}

impl ScriptsDir {
    pub fn parse(text: &str) -> Result<ScriptsDir, String> {
        let (prefix, dir) = parse_prefixed(text, "DIR")?;
        let path = std::fs::canonicalize(&dir).map_err(|e| format!("{dir}: {e}"))?;
        if !path.is_dir() {
            return Err(format!("{dir}: not a directory"));
        }
        Ok(ScriptsDir { prefix, dir: path })
    }
    /// The scripts in DIR, sorted by name: each `NAME.py` directly in it that is a regular file
    /// (a symlink counts only if it resolves to a file in DIR itself) and whose name does not
    /// start with `.`. Invariant: nothing in a sub-directory or outside DIR is ever listed, so
    /// nothing there is ever imported.
    pub fn scripts(&self) -> std::io::Result<Vec<(String, PathBuf)>> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with('.') || !name.ends_with(".py") || name.len() == 3 {
                continue;
            }
            let Ok(real) = std::fs::canonicalize(entry.path()) else {
                continue;
            };
            if real.parent() != Some(self.dir.as_path()) || !real.is_file() {
                continue;
            }
            found.push((name, real));
        }
        found.sort();
        Ok(found)
    }
}

/// The first prefix given twice, if any (as normalized by [`parse_prefixed`]).
pub fn duplicate_prefix<'a>(prefixes: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut seen = std::collections::HashSet::new();
    prefixes.into_iter().find(|prefix| !seen.insert(*prefix))
}

/// Where wizgy listens when neither --bind nor systemd says.
pub const DEFAULT_BIND: &str = "127.0.0.1:8000";

/// Parses a duration: `500ms`, `30s`, `2m`, `1h`, or plain (possibly fractional) seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 500ms, 30s or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (use ms, s, m or h)"
            ))
        }
    };
    if !seconds.is_finite() || !(0.0..=86_400.0 * 365.0).contains(&seconds) {
        return Err(format!("{text:?} must be between 0 and a year"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Parses a byte size: `1000`, `64KiB`, `1MiB`, `1GiB`, `1KB` (1000), `1MB`, `1GB`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => text.split_at(i),
        None => (text, "B"),
    };
    let value: u64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 1000, 64KiB or 1GiB"))?;
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "b" => 1,
        "kb" => 1000,
        "kib" | "k" => 1 << 10,
        "mb" => 1_000_000,
        "mib" | "m" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" | "g" => 1 << 30,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (use B, KiB, MiB, GiB, KB, MB, GB)"
            ))
        }
    };
    value
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// A set of IP networks (`10.0.0.0/8,::1`) or everything (`*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Networks {
    any: bool,
    nets: Vec<(IpAddr, u8)>,
}

impl Networks {
    /// Parses a comma-separated list of IPs and CIDRs, or `*`.
    pub fn parse(text: &str) -> Result<Networks, String> {
        let mut networks = Networks {
            any: false,
            nets: Vec::new(),
        };
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if item == "*" {
                networks.any = true;
                continue;
            }
            let (addr, prefix) = match item.split_once('/') {
                Some((addr, prefix)) => (addr, Some(prefix)),
                None => (item, None),
            };
            let addr: IpAddr = addr
                .parse()
                .map_err(|_| format!("{item:?} is not an IP address or CIDR"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                Some(p) => p
                    .parse::<u8>()
                    .ok()
                    .filter(|&p| p <= max)
                    .ok_or_else(|| format!("{item:?}: prefix length must be 0..={max}"))?,
                None => max,
            };
            networks.nets.push((addr, prefix));
        }
        Ok(networks)
    }

    /// Whether the list trusts no one (`''`).
    pub fn is_empty(&self) -> bool {
        !self.any && self.nets.is_empty()
    }

    /// Whether `ip` is in one of the networks (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        if self.any {
            return true;
        }
        let ip = ip.to_canonical();
        self.nets.iter().any(|&(net, prefix)| match (net, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        })
    }
}

/// `--inline`: whether the I/O thread may run the app itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Inline {
    Auto,
    Off,
}

/// `--http`: the HTTP versions wizgy speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HttpVersions {
    Auto,
    #[value(name = "1")]
    Http1,
    #[value(name = "2")]
    Http2,
}

/// An HTTP/2 flow-control window: a size from 64KiB (the protocol's default; less would
/// throttle every upload) to 2^31-1 bytes (RFC 9113 §6.9.1).
fn parse_window(text: &str) -> Result<u32, String> {
    let n = parse_size(text)?;
    if !(65_535..=0x7fff_ffff).contains(&n) {
        return Err(format!("{text:?}: a window is 64KiB to 2GiB-1"));
    }
    Ok(n as u32)
}

/// SETTINGS_MAX_FRAME_SIZE: 16KiB to 16MiB-1 (RFC 9113 §6.5.2).
fn parse_frame_size(text: &str) -> Result<u32, String> {
    let n = parse_size(text)?;
    if !(16_384..=16_777_215).contains(&n) {
        return Err(format!("{text:?}: a frame size is 16KiB to 16MiB-1"));
    }
    Ok(n as u32)
}

/// Whether TLS asks clients for a certificate (`--cert-reqs`), as Python's `ssl.CERT_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CertReqs {
    #[value(alias = "0")]
    None,
    #[value(alias = "1")]
    Optional,
    #[value(alias = "2")]
    Required,
}

/// Error-log levels, gunicorn's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Debug,
    Info,
    Warning,
    Error,
    Critical,
}

impl LogLevel {
    pub fn as_tracing(self) -> tracing::Level {
        match self {
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Warning => tracing::Level::WARN,
            LogLevel::Error | LogLevel::Critical => tracing::Level::ERROR,
        }
    }
}

fn parse_root_path(text: &str) -> Result<String, String> {
    let trimmed = text.trim_end_matches('/');
    if !trimmed.is_empty() && !trimmed.starts_with('/') {
        return Err(format!("{text:?} must start with '/'"));
    }
    Ok(trimmed.to_owned())
}

/// The outcome of parsing a command line.
#[derive(Debug)]
pub enum Parsed {
    Run(Box<Config>),
    /// `--help`: print this to stdout and exit 0.
    Print(String),
    /// `--version`: print [`version_text`] (the caller knows the interpreter) and exit 0.
    Version,
    /// A usage error: print this one line to stderr and exit 2.
    UsageError(String),
}

impl Config {
    /// Parses `argv` (with the program name first) over the WIZGY_* variables and the file
    /// `--config` names, without exiting the process (`wizgy.serve()`: no file is looked for).
    pub fn parse_args<I, T>(argv: I) -> Parsed
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Config::parse_layers(argv, false)
    }

    /// As [`Config::parse_args`], and without `--config`, `./wizgy.toml` when it exists (the
    /// `wizgy` command).
    pub fn parse_command_line<I, T>(argv: I) -> Parsed
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Config::parse_layers(argv, true)
    }

    fn parse_layers<I, T>(argv: I, discover: bool) -> Parsed
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let argv = argv.into_iter().map(Into::into).collect();
        let env: Vec<_> = std::env::vars_os().collect();
        match layers::load(argv, &env, discover) {
            Parsed::Run(config) => {
                if let Some(prefix) = duplicate_prefix(config.statics.iter().map(|m| m.prefix())) {
                    return Parsed::UsageError(format!(
                        "wizgy: error: --static: prefix {prefix} is given twice"
                    ));
                }
                let app_prefixes = config
                    .mounts
                    .iter()
                    .map(|m| m.prefix.as_str())
                    .chain(config.scripts.iter().map(|s| s.prefix.as_str()));
                if let Some(prefix) = duplicate_prefix(app_prefixes) {
                    return Parsed::UsageError(format!(
                        "wizgy: error: --mount/--scripts: prefix {prefix} is given twice"
                    ));
                }
                Parsed::Run(config)
            }
            other => other,
        }
    }
}

/// What `--version` prints: wizgy's version, the interpreter it runs (`python`, from the binding
/// crate) and [`features`], one per line.
pub fn version_text(python: &str) -> String {
    format!(
        "wizgy {}\n{python}\nfeatures: {}\n",
        env!("CARGO_PKG_VERSION"),
        features().join(", ")
    )
}

/// What this build and this machine give wizgy: protocols compiled in, then kernel facilities
/// probed now (`openat2` resolves static files; without it they take the checked walk).
pub fn features() -> Vec<&'static str> {
    let mut features = vec!["tls", "http2"];
    let root = std::fs::File::open("/");
    let openat2 = root.is_ok_and(|dir| {
        use std::os::fd::AsFd;
        crate::files::resolve::Opener::probe(dir.as_fd()) == crate::files::resolve::Opener::Openat2
    });
    features.push(if openat2 { "openat2" } else { "no-openat2" });
    features
}

/// clap's error as one line: for an unknown option, what wizgy calls it (or why it has none)
/// when another server spells it so, else clap's nearest match.
fn usage_error(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let text = e.render().to_string();
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid command line");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    if e.kind() != ErrorKind::UnknownArgument {
        return format!("wizgy: error: {first}");
    }
    let context = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        Some(ContextValue::Strings(v)) => v.first().cloned(),
        _ => None,
    };
    let arg = context(ContextKind::InvalidArg).unwrap_or_default();
    if let Some(hint) = hints::other_server_option(&arg) {
        return format!("wizgy: error: unexpected argument '{arg}': {hint}");
    }
    match context(ContextKind::SuggestedArg) {
        Some(near) => format!("wizgy: error: unexpected argument '{arg}'; did you mean '{near}'?"),
        None => format!("wizgy: error: {first} (wizgy --help lists every option)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Config {
        match Config::parse_args(std::iter::once("wizgy").chain(args.iter().copied())) {
            Parsed::Run(config) => *config,
            other => panic!("expected a config, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_documented_values() {
        let config = run(&["app:app"]);
        assert!(
            config.bind.is_empty(),
            "the default is applied after systemd sockets"
        );
        assert_eq!(config.threads, 64);
        assert_eq!(config.log_level, LogLevel::Info);
        assert_eq!(config.root_path, "");
        assert!(config.access_log.is_none());
    }

    #[test]
    fn durations_sizes_and_networks_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert!(parse_size("lots").is_err());
        let nets = Networks::parse("10.0.0.0/8, ::1").expect("valid");
        assert!(nets.contains("10.1.2.3".parse().expect("ip")));
        assert!(nets.contains("::ffff:10.0.0.1".parse().expect("ip")));
        assert!(nets.contains("::1".parse().expect("ip")));
        assert!(!nets.contains("11.0.0.1".parse().expect("ip")));
        assert!(Networks::parse("*")
            .expect("valid")
            .contains("8.8.8.8".parse().expect("ip")));
        assert!(Networks::parse("10.0.0.0/33").is_err());
        assert!(Networks::parse("nonsense").is_err());
    }

    #[test]
    fn process_options_parse() {
        let config = run(&[
            "--workers",
            "3",
            "--umask",
            "007",
            "--max-worker-memory",
            "64MiB",
            "a",
        ]);
        assert_eq!(config.workers, 3);
        assert_eq!(config.umask, Some(0o007));
        assert_eq!(config.max_worker_memory, 64 << 20);
        assert_eq!(config.timeout, Duration::from_secs(30));
        assert!(matches!(
            Config::parse_args(["wizgy", "--umask", "9", "a"]),
            Parsed::UsageError(_)
        ));
    }

    #[test]
    fn gunicorn_alias_for_the_field_size_limit_is_accepted() {
        let config = run(&["--limit-request-field_size", "100", "a"]);
        assert_eq!(config.limit_request_field_size, 100);
    }

    #[test]
    fn bind_repeats_and_root_path_is_normalized() {
        let config = run(&[
            "-b",
            "127.0.0.1:1",
            "--bind",
            "unix:/tmp/s",
            "--root-path",
            "/api/",
            "a",
        ]);
        assert_eq!(config.bind.len(), 2);
        assert_eq!(config.root_path, "/api");
    }

    #[test]
    fn usage_errors_are_one_line_naming_the_option() {
        for args in [
            &["--threads", "abc", "a"][..],
            &["--threads", "0", "a"],
            &["--bind", "x", "a"],
        ] {
            let argv = std::iter::once("wizgy").chain(args.iter().copied());
            match Config::parse_args(argv) {
                Parsed::UsageError(line) => {
                    assert!(line.starts_with("wizgy: error: "), "{line}");
                    assert!(!line.contains('\n'), "{line}");
                    assert!(line.contains(args[0]), "{line}");
                }
                other => panic!("expected a usage error for {args:?}, got {other:?}"),
            }
        }
    }
}
