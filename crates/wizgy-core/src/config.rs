//! The command-line options, declared once. The `wizgy` command, `wizgy.serve(**options)` and
//! the options reference all come from this one declaration (serve() turns its keyword
//! arguments into these flags).

use std::path::PathBuf;

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

    /// Address to listen on: HOST:PORT, [IPV6]:PORT or unix:PATH. Repeat to listen on several.
    /// Port 0 picks a free port (printed at start).
    #[arg(
        short = 'b',
        long = "bind",
        value_name = "ADDRESS",
        value_parser = BindAddress::parse,
        default_value = "127.0.0.1:8000",
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
        assert_eq!(config.bind, vec![BindAddress::Tcp("127.0.0.1:8000".into())]);
        assert_eq!(config.threads, 64);
        assert_eq!(config.log_level, LogLevel::Info);
        assert_eq!(config.root_path, "");
        assert!(config.access_log.is_none());
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
