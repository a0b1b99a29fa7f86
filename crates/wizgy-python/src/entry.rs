//! The entry points: `main(argv)` for the `wizgy` command and `serve(app, argv)` for
//! `wizgy.serve()`. Start-up failures end here as one line and an exit code (or an exception
//! for `serve()`); nothing below this module prints to the user.

use std::io::Write;
use std::path::Path;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyList;
use wizgy_core::config::{Config, LogLevel, Parsed};
use wizgy_core::listener::Listener;
use wizgy_core::server::{self, ServerOptions};

use crate::app_threads::AppThreads;
use crate::wsgi::environ::EnvironShared;
use crate::wsgi::exchange::format_traceback;

/// Why the server could not start: the one line the user sees (after `wizgy: error: `).
struct StartupError(String);

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
            eprintln!("wizgy: error: {message}");
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
    run(py, &config, AppSource::Object(app))
        .map_err(|StartupError(message)| PyOSError::new_err(message))
}

fn run(py: Python<'_>, config: &Config, source: AppSource) -> Result<(), StartupError> {
    wizgy_core::logging::init(
        config.log_level,
        &config.error_log,
        config.access_log.as_deref(),
    )
    .map_err(|e| StartupError(format!("cannot open log file: {e}")))?;
    if let Some(dir) = &config.chdir {
        std::env::set_current_dir(dir).map_err(|e| {
            StartupError(format!("cannot change directory to {}: {e}", dir.display()))
        })?;
    }
    prepare_sys_path(py, &config.pythonpath)?;
    server::raise_fd_limit();
    let listeners = config
        .bind
        .iter()
        .map(|addr| Listener::bind(addr, config.backlog, config.reuse_port))
        .collect::<Result<Vec<_>, _>>()?;
    let app = match source {
        AppSource::Object(app) => app,
        AppSource::Spec(spec) => load_app(py, &spec, config.log_level)?,
    };
    for listener in &listeners {
        tracing::info!("listening on {}", listener.url());
    }
    let threads = usize::from(config.threads);
    tracing::info!("serving with {threads} app threads");
    let shared = EnvironShared::new(py, threads > 1, false, config.root_path.clone())?;
    let (pool, dispatcher) = AppThreads::start(app, shared, threads)?;
    let options = ServerOptions::from_config(config);
    let served = py.detach(move || {
        let served = server::run(listeners, dispatcher, options);
        // The dispatcher is dropped with the runtime, so the app threads now run out of work.
        // The graceful timeout has already been spent waiting for their exchanges: a thread
        // still busy now is stuck, and is left to process exit.
        pool.join(APP_THREAD_GRACE);
        served
    });
    // Our signal handling saw SIGINT; drop the KeyboardInterrupt Python queued for it too.
    let _ = py.check_signals();
    served.map_err(|e| StartupError(format!("server failed: {e}")))
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
fn load_app(py: Python<'_>, spec: &str, level: LogLevel) -> Result<Py<PyAny>, StartupError> {
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

/// How long app threads get to finish after the server loop has ended.
const APP_THREAD_GRACE: std::time::Duration = std::time::Duration::from_secs(1);
