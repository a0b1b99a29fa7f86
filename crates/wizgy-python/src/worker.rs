//! A worker process, from the binding crate's side: forking through CPython (so its fork hooks
//! and `os.register_at_fork` callbacks run) and the worker's life in the child: load the app
//! (unless preloaded), start the app threads, serve until told to stop, exit.

use std::io;

use nix::unistd::Pid;
use pyo3::prelude::*;
use wizgy_core::config::Config;
use wizgy_core::listener::Listener;
use wizgy_core::server::{self, ServerOptions, APP_THREAD_GRACE};
use wizgy_core::supervisor::{WorkerHost, WorkerLink, EXIT_APP_LOAD_FAILED};
use wizgy_core::tls::TlsFiles;

use crate::app_threads::{AppThreads, Watchdog};
use crate::apps::Apps;
use crate::entry::StartupError;
use crate::wsgi::environ::EnvironShared;

/// Where the apps of a worker come from.
pub enum AppSource {
    /// Imported by each worker from the configuration (so a reload picks up new code).
    Import,
    /// Already imported (`--preload`, or an app object given to `serve()`).
    Loaded(Apps),
}

/// The supervisor's view of how to make workers.
pub struct Host<'a> {
    pub config: &'a Config,
    /// The supervisor's handles on the listeners; each worker takes its copy (fork's) over.
    pub listeners: Vec<Listener>,
    pub app: AppSource,
    /// `--certfile` and friends, checked by the supervisor at start; each worker reads the
    /// files again, so a reload picks up renewed certificates.
    pub tls: Option<TlsFiles>,
}

impl WorkerHost for Host<'_> {
    fn fork(&mut self) -> io::Result<Option<Pid>> {
        let pid = Python::attach(|py| -> PyResult<i32> {
            py.import("os")?.call_method0("fork")?.extract()
        })
        .map_err(|e| io::Error::other(format!("fork failed: {e}")))?;
        Ok((pid != 0).then(|| Pid::from_raw(pid)))
    }

    fn run_worker(&mut self, link: WorkerLink) -> i32 {
        // The forked copies of the supervisor's handles become the worker's own, so that when
        // the worker stops and drops them, it holds no other handle that keeps them open.
        let listeners = std::mem::take(&mut self.listeners);
        Python::attach(|py| {
            let status = match serve_worker(py, self, listeners, link) {
                Ok(()) => 0,
                Err(WorkerError::AppLoad(message)) => {
                    eprintln!("wizgy: error: {message}");
                    EXIT_APP_LOAD_FAILED
                }
                Err(WorkerError::Other(message)) => {
                    tracing::error!("worker failed: {message}");
                    1
                }
            };
            // os._exit: the parent's atexit handlers are not the worker's to run. The app's own
            // buffered output (print() to a pipe) is flushed first, or it would be lost.
            if let Ok(sys) = py.import("sys") {
                for stream in ["stdout", "stderr"] {
                    let _ = sys.getattr(stream).and_then(|s| s.call_method0("flush"));
                }
            }
            let _ = py
                .import("os")
                .and_then(|os| os.call_method1("_exit", (status,)));
            status
        })
    }

    fn close_listeners(&mut self) {
        self.listeners.retain(Listener::is_inherited);
    }
}

enum WorkerError {
    AppLoad(String),
    Other(String),
}

impl From<StartupError> for WorkerError {
    fn from(error: StartupError) -> Self {
        WorkerError::Other(error.0)
    }
}

impl From<io::Error> for WorkerError {
    fn from(error: io::Error) -> Self {
        WorkerError::Other(error.to_string())
    }
}

impl From<PyErr> for WorkerError {
    fn from(error: PyErr) -> Self {
        WorkerError::Other(error.to_string())
    }
}

fn serve_worker(
    py: Python<'_>,
    host: &Host<'_>,
    listeners: Vec<Listener>,
    link: WorkerLink,
) -> Result<(), WorkerError> {
    let config = host.config;
    // A certificate that became unreadable or broken since the start: fails like an app that
    // cannot load (on a reload, the old workers are kept, and this line says why).
    let tls = match &host.tls {
        Some(files) => Some(
            files
                .load()
                .map_err(|e| WorkerError::AppLoad(e.to_string()))?,
        ),
        None => None,
    };
    let app = match &host.app {
        AppSource::Loaded(apps) => apps.clone_ref(py),
        AppSource::Import => {
            crate::apps::load(py, config, None).map_err(|e| WorkerError::AppLoad(e.0))?
        }
    };
    let mut options = ServerOptions::from_config(config);
    options.max_requests = jittered(config.max_requests, config.max_requests_jitter);
    options.link = Some(link.clone());
    options.tls = tls;
    let watchdog = options
        .request_timeout
        .map(|timeout| Watchdog { timeout, link });
    server::tune_malloc();
    serve_in_process(py, config, app, listeners, options, watchdog)
        .map_err(|e| WorkerError::Other(e.0))
}

/// Serves `app` in this process until SIGTERM/SIGINT: the worker's body, and `serve()`'s when it
/// runs without a supervisor.
pub fn serve_in_process(
    py: Python<'_>,
    config: &Config,
    app: Apps,
    listeners: Vec<Listener>,
    options: ServerOptions,
    watchdog: Option<Watchdog>,
) -> Result<(), StartupError> {
    let threads = usize::from(config.threads);
    let shared = EnvironShared::new(
        py,
        threads > 1,
        config.workers > 1,
        config.root_path.clone(),
    )?;
    let (pool, dispatcher) = AppThreads::start(
        app,
        shared,
        threads,
        watchdog,
        config.inline == wizgy_core::config::Inline::Auto,
    )?;
    let served = py.detach(move || {
        let served = server::run(listeners, dispatcher, options);
        pool.join(APP_THREAD_GRACE);
        served
    });
    served.map_err(|e| StartupError(format!("server failed: {e}")))
}

/// `--max-requests` plus a per-worker random share of `--max-requests-jitter`.
fn jittered(max_requests: u64, jitter: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    if max_requests == 0 || jitter == 0 {
        return max_requests;
    }
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    max_requests + hasher.finish() % (jitter + 1)
}
