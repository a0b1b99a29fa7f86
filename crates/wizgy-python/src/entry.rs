//! The entry points: `main(argv)` for the `wizgy` command and `serve(app, argv)` for
//! `wizgy.serve()`. Start-up failures end here as one line and an exit code (or an exception
//! for `serve()`); nothing below this module prints to the user.

use std::io::Write;
use std::path::Path;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyList;
use wizgy_core::config::{version_text, Config, Parsed, DEFAULT_BIND};
use wizgy_core::files::StaticFiles;
use wizgy_core::listener::{BindAddress, Listener};
use wizgy_core::metrics::endpoint::Endpoint;
use wizgy_core::server::{self, ServerOptions};
use wizgy_core::supervisor::{supervise, SupervisorError, SupervisorOptions};
use wizgy_core::tls::TlsFiles;

use crate::worker::{self, serve_in_process, Host};
use crate::wsgi::exchange::format_traceback;

/// Why the server could not start: the line the user sees (after `wizgy: error: `), then for
/// an app that raised, its traceback; empty when it has already been shown (a worker printed it).
pub struct StartupError(pub String);

impl<E: std::fmt::Display> From<E> for StartupError {
    fn from(error: E) -> Self {
        StartupError(error.to_string())
    }
}

/// `--version`'s second line: the interpreter wizgy runs in, e.g.
/// `Python 3.11.7 (CPython) at /srv/app/.venv/bin/python`.
fn python_line(py: Python<'_>) -> String {
    let sys = py.import("sys");
    let executable = sys
        .and_then(|sys| sys.getattr("executable"))
        .and_then(|exe| exe.extract::<String>())
        .unwrap_or_default();
    let version = py.version_info();
    let implementation = py
        .import("platform")
        .and_then(|platform| platform.call_method0("python_implementation"))
        .and_then(|name| name.extract::<String>())
        .unwrap_or_else(|_| "unknown".to_owned());
    format!(
        "Python {}.{}.{} ({implementation}) at {executable}",
        version.major, version.minor, version.patch
    )
}

/// Where the app comes from.
enum AppSource {
    /// The command line's APP, --mount and --scripts, imported after --chdir/--pythonpath.
    Config,
    /// An app object passed to `serve()` (with any --mount and --scripts).
    Object(Py<PyAny>),
}

/// `wizgy [OPTIONS] APP`: returns the process exit status.
#[pyfunction]
pub fn main(py: Python<'_>, argv: Vec<String>) -> i32 {
    let config = match Config::parse_command_line(argv) {
        Parsed::Run(config) => config,
        Parsed::Print(text) => {
            let mut stdout = std::io::stdout();
            let _ = stdout.write_all(text.as_bytes());
            let _ = stdout.flush();
            return 0;
        }
        Parsed::Version => {
            let mut stdout = std::io::stdout();
            let _ = stdout.write_all(version_text(&python_line(py)).as_bytes());
            let _ = stdout.flush();
            return 0;
        }
        Parsed::UsageError(line) => {
            eprintln!("{line}");
            return 2;
        }
    };
    if config.app.is_none() && config.mounts.is_empty() && config.scripts.is_empty() {
        eprintln!(
            "wizgy: error: missing APP: give MODULE:NAME, e.g. `wizgy myproject.wsgi:application`"
        );
        return 2;
    }
    match run(py, &config, AppSource::Config) {
        Ok(()) => 0,
        Err(StartupError(message)) => {
            if !message.is_empty() {
                eprintln!("wizgy: error: {message}");
            }
            1
        }
    }
}

/// `wizgy.serve(app, **options)`: serves `app` until SIGINT/SIGTERM.
#[pyfunction]
pub fn serve(py: Python<'_>, app: Py<PyAny>, argv: Vec<String>) -> PyResult<()> {
    let config = match Config::parse_args(argv) {
        Parsed::Run(config) => config,
        Parsed::Print(text) => {
            print!("{text}");
            return Ok(());
        }
        Parsed::Version => {
            print!("{}", version_text(&python_line(py)));
            return Ok(());
        }
        Parsed::UsageError(line) => return Err(PyValueError::new_err(line)),
    };
    if config.app.is_some() {
        return Err(PyValueError::new_err(
            "serve() takes the app object, not an APP spec",
        ));
    }
    run(py, &config, AppSource::Object(app)).map_err(|StartupError(message)| {
        PyOSError::new_err(if message.is_empty() {
            "the app could not be served".to_owned()
        } else {
            message
        })
    })
}

fn run(py: Python<'_>, config: &Config, source: AppSource) -> Result<(), StartupError> {
    wizgy_core::logging::init(
        config.log_level,
        &config.error_log,
        config.access_log.as_deref(),
        &config
            .access_log_format
            .clone()
            .with_root_path(&config.root_path),
    )
    .map_err(|e| StartupError(format!("cannot open log file: {e}")))?;
    if let Some(path) = &config.config_file {
        tracing::info!("settings read from {}", path.display());
    }
    if let Some(mask) = config.umask {
        server::set_umask(mask);
    }
    if let Some(dir) = &config.chdir {
        std::env::set_current_dir(dir).map_err(|e| {
            StartupError(format!("cannot change directory to {}: {e}", dir.display()))
        })?;
    }
    prepare_sys_path(py, &config.pythonpath)?;
    // Every TLS file is read and checked here, before any listener is bound: a bad one is the
    // one line the user sees, and nothing has been accepted.
    let tls = TlsFiles::from_config(config)?;
    if let Some(files) = &tls {
        files.load()?;
    }
    server::raise_fd_limit();
    let listeners = bind_listeners(config)?;
    let metrics = match &config.metrics_bind {
        Some(addr) => Some(Listener::bind(
            addr,
            config.backlog,
            false,
            config.unix_permissions(),
        )?),
        None => None,
    };
    let pid_file = PidFile::create(config.pid.as_deref())?;
    let socket_files: Vec<_> = listeners
        .iter()
        .chain(metrics.iter())
        .filter_map(Listener::owned_socket_file)
        .map(std::path::Path::to_path_buf)
        .collect();
    let metrics = metrics.map(Endpoint::new).transpose()?;
    let result = serve_listeners(py, config, source, listeners, tls, metrics);
    drop(pid_file);
    for path in socket_files {
        let _ = std::fs::remove_file(path);
    }
    // Our signal handling saw SIGINT; drop the KeyboardInterrupt Python queued for it too.
    let _ = py.check_signals();
    result
}

/// Systemd's sockets, then every --bind (the default address if there is neither).
fn bind_listeners(config: &Config) -> Result<Vec<Listener>, StartupError> {
    let mut listeners = Listener::from_systemd()?;
    let default = [BindAddress::Tcp(DEFAULT_BIND.to_owned())];
    let binds = if config.bind.is_empty() && listeners.is_empty() {
        &default[..]
    } else {
        &config.bind[..]
    };
    for addr in binds {
        listeners.push(Listener::bind(
            addr,
            config.backlog,
            config.reuse_port,
            config.unix_permissions(),
        )?);
    }
    Ok(listeners)
}

/// Serves on `listeners`: through a supervisor and workers, or (for `serve()` with one
/// worker) right here in the calling process.
fn serve_listeners(
    py: Python<'_>,
    config: &Config,
    source: AppSource,
    listeners: Vec<Listener>,
    tls: Option<TlsFiles>,
    metrics: Option<Endpoint>,
) -> Result<(), StartupError> {
    let app = match source {
        // The endpoint is the supervisor's: with it, one worker is forked as for more.
        AppSource::Object(app) if config.workers == 1 && metrics.is_none() => {
            let apps = crate::apps::load(py, config, Some(app))?;
            for line in route_lines(config) {
                tracing::info!("{line}");
            }
            log_listening(&listeners, tls.is_some());
            let mut options = ServerOptions::from_config(config);
            options.tls = tls.as_ref().map(TlsFiles::load).transpose()?;
            return serve_in_process(py, config, apps, listeners, options, None);
        }
        AppSource::Object(app) => {
            worker::AppSource::Loaded(crate::apps::load(py, config, Some(app))?)
        }
        AppSource::Config if config.preload => {
            worker::AppSource::Loaded(crate::apps::load(py, config, None)?)
        }
        AppSource::Config => worker::AppSource::Import,
    };
    let mut host = Host {
        config,
        listeners,
        app,
        tls,
    };
    let options = SupervisorOptions {
        workers: usize::from(config.workers),
        timeout: nonzero(config.timeout),
        graceful_timeout: config.graceful_timeout,
        shutdown_delay: config.shutdown_delay,
        max_worker_memory: (config.max_worker_memory > 0).then_some(config.max_worker_memory),
        max_worker_lifetime: nonzero(config.max_worker_lifetime),
        reload_dirs: config.reload.then(|| {
            let cwd = std::env::current_dir().unwrap_or_default();
            std::iter::once(cwd.clone())
                .chain(config.pythonpath.iter().map(|p| cwd.join(p)))
                .collect()
        }),
        announce: route_lines(config)
            .into_iter()
            .chain(
                host.listeners
                    .iter()
                    .map(|l| format!("listening on {}", l.url(host.tls.is_some()))),
            )
            .collect(),
        metrics,
    };
    py.detach(|| supervise(&mut host, options))
        .map_err(|error| match error {
            // The worker has already said why, in one line.
            SupervisorError::AppLoadFailed => StartupError(String::new()),
            other => StartupError(other.to_string()),
        })
}

fn nonzero(duration: std::time::Duration) -> Option<std::time::Duration> {
    (!duration.is_zero()).then_some(duration)
}

/// The routing table, at info level, so a user sees which URL goes where.
/// Logged once the apps have loaded (with a broken app, the error is all the user sees).
fn route_lines(config: &Config) -> Vec<String> {
    if config.statics.is_empty() && config.mounts.is_empty() && config.scripts.is_empty() {
        return Vec::new();
    }
    let table = StaticFiles::new(&config.statics, config.static_max_age);
    let mut lines: Vec<String> = table.routes().collect();
    lines.extend(crate::apps::routes(config));
    lines.push(match &config.app {
        Some(spec) => format!("anything else -> app {spec}"),
        None => "anything else -> 404".to_owned(),
    });
    lines
        .into_iter()
        .map(|line| format!("route {line}"))
        .collect()
}

fn log_listening(listeners: &[Listener], tls: bool) {
    for listener in listeners {
        tracing::info!("listening on {}", listener.url(tls));
    }
}

/// `--pid FILE`: written at start, removed at exit.
struct PidFile(Option<std::path::PathBuf>);

impl PidFile {
    fn create(path: Option<&Path>) -> Result<PidFile, StartupError> {
        if let Some(path) = path {
            std::fs::write(path, format!("{}\n", std::process::id())).map_err(|e| {
                StartupError(format!("cannot write pid file {}: {e}", path.display()))
            })?;
        }
        Ok(PidFile(path.map(Path::to_owned)))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Only the supervisor removes it; a worker exits with os._exit and never gets here.
        if let Some(path) = &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Puts the working directory (like `python -m`) and --pythonpath entries first on sys.path.
fn prepare_sys_path(py: Python<'_>, extra: &[std::path::PathBuf]) -> Result<(), StartupError> {
    let sys_path = py
        .import("sys")?
        .getattr("path")?
        .cast_into::<PyList>()
        .map_err(|_| StartupError("sys.path is not a list".into()))?;
    let cwd = std::env::current_dir()?;
    let mut entries: Vec<&Path> = extra.iter().map(|p| p.as_path()).collect();
    entries.push(&cwd);
    for entry in entries.into_iter().rev() {
        let absolute = cwd.join(entry);
        let text = absolute.to_string_lossy();
        if !sys_path.contains(text.as_ref())? {
            sys_path.insert(0, text.as_ref())?;
        }
    }
    Ok(())
}

/// Imports the app through `wizgy._app.load`; its AppLoadError message is the user's line.
/// When the app's own code raised (at import or in a factory), its traceback follows that line:
/// a deploy that fails to import is debugged from it (issue 23). A spec wizgy itself finds wrong
/// (no such module or attribute, a bad expression) is the one line alone.
pub fn load_app(py: Python<'_>, spec: &str) -> Result<Py<PyAny>, StartupError> {
    let loader = py.import("wizgy._app")?;
    match loader.getattr("load").and_then(|load| load.call1((spec,))) {
        Ok(app) => Ok(app.unbind()),
        Err(err) => Err(load_error(py, &loader, err, spec)),
    }
}

/// The user's line for a loader error, and the traceback of the app's own error under it.
pub fn load_error(
    py: Python<'_>,
    loader: &Bound<'_, PyModule>,
    err: PyErr,
    spec: &str,
) -> StartupError {
    let is_load_error = loader
        .getattr("AppLoadError")
        .is_ok_and(|class| err.value(py).is_instance(&class).unwrap_or(false));
    let (line, shown) = if is_load_error {
        // The loader chains the app's own error as __cause__: show that one.
        let cause = err
            .value(py)
            .getattr("__cause__")
            .ok()
            .filter(|c| !c.is_none())
            .map(PyErr::from_value);
        (err.value(py).to_string(), cause)
    } else {
        (format!("cannot load {spec}: {err}"), Some(err))
    };
    match shown {
        Some(shown) => StartupError(format!(
            "{line}\n{}",
            format_traceback(py, &shown).trim_end()
        )),
        None => StartupError(line),
    }
}
