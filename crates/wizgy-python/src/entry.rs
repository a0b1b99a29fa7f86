//! The entry points: `main(argv)` for the `wizgy` command and `serve(app, argv)` for
//! `wizgy.serve()`. Start-up failures end here as one line and an exit code (or an exception
//! for `serve()`); nothing below this module prints to the user.

use std::io::Write;
use std::path::Path;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyList;
use wizgy_core::config::{Config, LogLevel, Parsed, DEFAULT_BIND};
use wizgy_core::listener::{BindAddress, Listener};
use wizgy_core::server::{self, ServerOptions};
use wizgy_core::supervisor::{supervise, SupervisorError, SupervisorOptions};

use crate::worker::{self, serve_in_process, Host};
use crate::wsgi::exchange::format_traceback;

/// Why the server could not start: the one line the user sees (after `wizgy: error: `); empty
/// when it has already been shown (a worker printed it).
pub struct StartupError(pub String);

impl<E: std::fmt::Display> From<E> for StartupError {
    fn from(error: E) -> Self {
        StartupError(error.to_string())
    }
}

/// Where the app comes from.
enum AppSource {
    /// An APP spec from the command line, imported after --chdir/--pythonpath.
    Spec(String),
    /// An app object passed to `serve()`.
    Object(Py<PyAny>),
}

/// `wizgy [OPTIONS] APP`: returns the process exit status.
#[pyfunction]
pub fn main(py: Python<'_>, argv: Vec<String>) -> i32 {
    let config = match Config::parse_args(argv) {
        Parsed::Run(config) => config,
        Parsed::Print(text) => {
            let mut stdout = std::io::stdout();
            let _ = stdout.write_all(text.as_bytes());
            let _ = stdout.flush();
            return 0;
        }
        Parsed::UsageError(line) => {
            eprintln!("{line}");
            return 2;
        }
    };
    let Some(spec) = config.app.clone() else {
        eprintln!(
            "wizgy: error: missing APP: give MODULE:NAME, e.g. `wizgy myproject.wsgi:application`"
        );
        return 2;
    };
    match run(py, &config, AppSource::Spec(spec)) {
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
    )
    .map_err(|e| StartupError(format!("cannot open log file: {e}")))?;
    if let Some(mask) = config.umask {
        server::set_umask(mask);
    }
    if let Some(dir) = &config.chdir {
        std::env::set_current_dir(dir).map_err(|e| {
            StartupError(format!("cannot change directory to {}: {e}", dir.display()))
        })?;
    }
    prepare_sys_path(py, &config.pythonpath)?;
    server::raise_fd_limit();
    let listeners = bind_listeners(config)?;
    let pid_file = PidFile::create(config.pid.as_deref())?;
    let result = serve_listeners(py, config, source, &listeners);
    drop(pid_file);
    for path in listeners.iter().filter_map(Listener::owned_socket_file) {
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
        listeners.push(Listener::bind(addr, config.backlog, config.reuse_port)?);
    }
    Ok(listeners)
}

/// Serves on `listeners`: through a supervisor and workers, or (for `serve()` with one
/// worker) right here in the calling process.
fn serve_listeners(
    py: Python<'_>,
    config: &Config,
    source: AppSource,
    listeners: &[Listener],
) -> Result<(), StartupError> {
    let app = match source {
        AppSource::Object(app) if config.workers == 1 => {
            log_listening(listeners);
            let own = listeners
                .iter()
                .map(Listener::try_clone)
                .collect::<Result<Vec<_>, _>>()?;
            let options = ServerOptions::from_config(config);
            return serve_in_process(py, config, app, own, options, None);
        }
        AppSource::Object(app) => worker::AppSource::Loaded(app),
        AppSource::Spec(spec) if config.preload => {
            worker::AppSource::Loaded(load_app(py, &spec, config.log_level)?)
        }
        AppSource::Spec(spec) => worker::AppSource::Spec(spec),
    };
    let mut host = Host {
        config,
        listeners,
        app,
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
        announce: listeners
            .iter()
            .map(|l| format!("listening on {}", l.url()))
            .collect(),
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

fn log_listening(listeners: &[Listener]) {
    for listener in listeners {
        tracing::info!("listening on {}", listener.url());
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
pub fn load_app(py: Python<'_>, spec: &str, level: LogLevel) -> Result<Py<PyAny>, StartupError> {
    let loader = py.import("wizgy._app")?;
    match loader.getattr("load").and_then(|load| load.call1((spec,))) {
        Ok(app) => Ok(app.unbind()),
        Err(err) => {
            if level == LogLevel::Debug {
                // The loader chains the app's own error as __cause__: show that one.
                let cause = err
                    .value(py)
                    .getattr("__cause__")
                    .ok()
                    .filter(|c| !c.is_none());
                let shown = cause.map_or_else(|| err.clone_ref(py), PyErr::from_value);
                eprint!("{}", format_traceback(py, &shown));
            }
            let is_load_error = loader
                .getattr("AppLoadError")
                .is_ok_and(|class| err.value(py).is_instance(&class).unwrap_or(false));
            if is_load_error {
                Err(StartupError(err.value(py).to_string()))
            } else {
                Err(StartupError(format!("cannot load {spec}: {err}")))
            }
        }
    }
}
