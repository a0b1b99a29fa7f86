//! The command-line options, declared once. The `wizgy` command, `wizgy.serve(**options)` and
//! the options reference all come from this one declaration (serve() turns its keyword
//! arguments into these flags).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::listener::BindAddress;

/// Serve a WSGI application.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "wizgy",
    version,
    about = "wizgy: a fast, strict WSGI server written in Rust",
    after_help = "APP is MODULE, MODULE:NAME, MODULE:FACTORY() or MODULE:FACTORY(LITERAL, ...).\nExample: wizgy --bind 127.0.0.1:8000 --threads 8 myproject.wsgi:application"
)]
pub struct Config {
    /// The WSGI application: MODULE[:NAME] (NAME defaults to `application`) or
    /// MODULE:FACTORY(ARGS) with literal arguments.
    #[arg(value_name = "APP")]
    pub app: Option<String>,

    /// Address to listen on: HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N. Repeat to listen on
    /// several. Port 0 picks a free port (printed at start). Default: 127.0.0.1:8000, unless
    /// systemd passed sockets (LISTEN_FDS).
    #[arg(
        short = 'b',
        long = "bind",
        value_name = "ADDRESS",
        value_parser = BindAddress::parse,
        env = "WIZGY_BIND",
    )]
    pub bind: Vec<BindAddress>,

    /// App threads: how many requests run Python at once. Only as many run as there is work,
    /// and each releases the GIL while it waits on I/O (docs/options.md explains the default).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 64,
        env = "WIZGY_THREADS",
        value_parser = clap::value_parser!(u16).range(1..=4096),
    )]
    pub threads: u16,

    /// Change to this directory before loading the app (it is then first on sys.path).
    /// Default: the current directory.
    #[arg(long, value_name = "DIR")]
    pub chdir: Option<PathBuf>,

    /// Extra directories to put on sys.path before loading the app, comma-separated.
    /// Default: none.
    #[arg(long, value_name = "DIR[,DIR]", value_delimiter = ',')]
    pub pythonpath: Vec<PathBuf>,

    /// The error log's level.
    #[arg(
        long,
        value_enum,
        value_name = "LEVEL",
        default_value = "info",
        env = "WIZGY_LOG_LEVEL"
    )]
    pub log_level: LogLevel,

    /// Write one access-log line per exchange (gunicorn's default format) to this file;
    /// `-` means stdout. Default: off.
    #[arg(long, value_name = "PATH")]
    pub access_log: Option<PathBuf>,

    /// Where the error log (startup lines, tracebacks, wsgi.errors) goes; `-` means stderr.
    #[arg(long, value_name = "PATH", default_value = "-")]
    pub error_log: PathBuf,

    /// The path prefix the app is mounted at: SCRIPT_NAME, removed from the front of
    /// PATH_INFO when present.
    #[arg(long, value_name = "PREFIX", default_value = "", value_parser = parse_root_path)]
    pub root_path: String,

    /// Longest request line in bytes; longer is answered 414.
    #[arg(long, value_name = "BYTES", default_value_t = 8190, help_heading = "Limits",
          value_parser = clap::value_parser!(u32).range(64..=1_048_576))]
    pub limit_request_line: u32,

    /// Most header fields in one request; more is answered 431.
    #[arg(long, value_name = "N", default_value_t = 100, help_heading = "Limits",
          value_parser = clap::value_parser!(u32).range(1..=32_768))]
    pub limit_request_fields: u32,

    /// Longest header field line in bytes; longer is answered 431.
    #[arg(long, alias = "limit-request-field_size", value_name = "BYTES", default_value_t = 8190,
          help_heading = "Limits", value_parser = clap::value_parser!(u32).range(64..=1_048_576))]
    pub limit_request_field_size: u32,

    /// Largest request body (Content-Length up front, or chunked as it grows); larger is
    /// answered 413. Sizes: 1000, 64KiB, 1MiB, 1GiB (KB/MB/GB are powers of 1000).
    #[arg(long, value_name = "SIZE", default_value = "1GiB", help_heading = "Limits",
          value_parser = parse_size, allow_hyphen_values = true)]
    pub max_request_body: u64,

    /// Most open connections per worker; past it new ones wait in the listen backlog.
    #[arg(long, value_name = "N", default_value_t = 10_000, help_heading = "Limits",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// The listen backlog: connections the kernel queues before wizgy accepts them.
    #[arg(long, value_name = "N", default_value_t = 2048, help_heading = "Limits",
          value_parser = clap::value_parser!(i32).range(1..=65_535))]
    pub backlog: i32,

    /// A request head not complete this long after its first byte is answered 408.
    /// Durations: 500ms, 30s, 2m, or plain seconds.
    #[arg(long, value_name = "DURATION", default_value = "30s", help_heading = "Timeouts",
          value_parser = parse_duration, allow_hyphen_values = true)]
    pub header_timeout: Duration,

    /// Idle time allowed before a request starts (between keep-alive requests, and on a new
    /// connection); then the connection closes quietly.
    #[arg(long, value_name = "DURATION", default_value = "5s", help_heading = "Timeouts",
          value_parser = parse_duration, allow_hyphen_values = true)]
    pub keep_alive: Duration,

    /// Hand a new TCP connection to a worker only once its first bytes arrive, or after this
    /// long (Linux TCP_DEFER_ACCEPT, whole seconds; 0: at once). Spares the worker a wake-up
    /// and an empty read per connection; silent connections wait in the kernel meanwhile.
    #[arg(long, value_name = "DURATION", default_value = "1s", help_heading = "Timeouts",
          value_parser = parse_duration, allow_hyphen_values = true)]
    pub defer_accept: Duration,

    /// No request-body progress for this long while the app reads: the connection closes and
    /// the app's read raises.
    #[arg(long, value_name = "DURATION", default_value = "30s", help_heading = "Timeouts",
          value_parser = parse_duration, allow_hyphen_values = true)]
    pub body_timeout: Duration,

    /// A response write making no progress for this long (the client stopped reading): the
    /// connection closes and the app's response is closed.
    #[arg(long, value_name = "DURATION", default_value = "30s", help_heading = "Timeouts",
          value_parser = parse_duration, allow_hyphen_values = true)]
    pub write_timeout: Duration,

    /// Peers trusted to set the scheme (X-Forwarded-Proto, X-Forwarded-Ssl, Forwarded) and,
    /// with --forwarded-for, the client address: IPs or CIDRs, comma-separated, `*` for any.
    #[arg(long, value_name = "LIST", default_value = "127.0.0.1,::1", env = "FORWARDED_ALLOW_IPS",
          help_heading = "Proxies", value_parser = Networks::parse)]
    pub forwarded_allow_ips: Networks,

    /// Take REMOTE_ADDR from trusted peers' X-Forwarded-For (its rightmost address) or
    /// Forwarded `for=`.
    #[arg(long, help_heading = "Proxies")]
    pub forwarded_for: bool,

    /// Expect a PROXY protocol v1/v2 header first on connections from --proxy-allow-from peers.
    #[arg(long, help_heading = "Proxies")]
    pub proxy_protocol: bool,

    /// Peers that may (and with --proxy-protocol must) send a PROXY protocol header.
    #[arg(long, value_name = "LIST", default_value = "127.0.0.1,::1", help_heading = "Proxies",
          value_parser = Networks::parse)]
    pub proxy_allow_from: Networks,

    /// Worker processes forked by the supervisor.
    #[arg(short = 'w', long, value_name = "N", default_value_t = 1, env = "WEB_CONCURRENCY",
          help_heading = "Processes", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: u16,

    /// Import the app once in the supervisor before forking (shared copy-on-write memory;
    /// SIGHUP then does not pick up new code).
    #[arg(long, help_heading = "Processes")]
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
        long,
        value_name = "J",
        default_value_t = 0,
        help_heading = "Processes"
    )]
    pub max_requests_jitter: u64,

    /// Recycle a worker whose resident memory exceeds this (checked every second; 0: never).
    #[arg(long, value_name = "SIZE", default_value = "0", help_heading = "Processes",
          value_parser = parse_size, allow_hyphen_values = true)]
    pub max_worker_memory: u64,

    /// Recycle a worker after it has run this long (0: never).
    #[arg(long, value_name = "DURATION", default_value = "0", help_heading = "Processes",
          value_parser = parse_duration, allow_hyphen_values = true)]
    pub max_worker_lifetime: Duration,

    /// Kill and replace a worker whose event loop has not answered for this long (0: never).
    #[arg(long, value_name = "DURATION", default_value = "30s", help_heading = "Processes",
          value_parser = parse_duration, allow_hyphen_values = true)]
    pub timeout: Duration,

    /// A request running longer than this: 504 (if no response head was sent), its Python stack
    /// in the error log, and the worker recycled (0: never).
    #[arg(long, value_name = "DURATION", default_value = "0", help_heading = "Processes",
          value_parser = parse_duration, allow_hyphen_values = true)]
    pub request_timeout: Duration,

    /// How long a graceful stop or reload waits for exchanges in flight before cutting them
    /// (a worker still running 1.5 s later is killed).
    #[arg(long, value_name = "DURATION", default_value = "30s", help_heading = "Processes",
          value_parser = parse_duration, allow_hyphen_values = true)]
    pub graceful_timeout: Duration,

    /// After SIGTERM/SIGINT, keep serving this long before stopping (for load balancers that
    /// deregister slowly).
    #[arg(long, value_name = "DURATION", default_value = "0", help_heading = "Processes",
          value_parser = parse_duration, allow_hyphen_values = true)]
    pub shutdown_delay: Duration,

    /// Write the supervisor's PID to this file (removed at exit).
    #[arg(long, value_name = "FILE", help_heading = "Processes")]
    pub pid: Option<PathBuf>,

    /// File mode creation mask for unix sockets and log files, in octal (e.g. 007).
    #[arg(long, value_name = "OCTAL", help_heading = "Processes", value_parser = parse_umask)]
    pub umask: Option<u32>,

    /// Set SO_REUSEPORT on TCP listeners (several wizgy instances may share a port).
    #[arg(long, help_heading = "Processes")]
    pub reuse_port: bool,

    /// Development: replace the workers when a .py file under the working directory or
    /// --pythonpath changes.
    #[arg(long, help_heading = "Processes")]
    pub reload: bool,
}

fn parse_umask(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|&m| m <= 0o777)
        .ok_or_else(|| format!("{text:?} is not an octal mode such as 022"))
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
    /// `--help` or `--version`: print this to stdout and exit 0.
    Print(String),
    /// A usage error: print this one line to stderr and exit 2.
    UsageError(String),
}

impl Config {
    /// Parses `argv` (with the program name first) without exiting the process.
    pub fn parse_args<I, T>(argv: I) -> Parsed
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        match Config::try_parse_from(argv) {
            Ok(config) => Parsed::Run(Box::new(config)),
            Err(e) => match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    Parsed::Print(e.render().to_string())
                }
                _ => {
                    let text = e.render().to_string();
                    let first = text
                        .lines()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or("invalid command line");
                    let first = first.strip_prefix("error: ").unwrap_or(first);
                    Parsed::UsageError(format!("wizgy: error: {first}"))
                }
            },
        }
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
