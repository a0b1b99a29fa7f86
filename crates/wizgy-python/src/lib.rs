//! `wizgy._native`: the WSGI bridge, the only crate that knows Python.
//!
//! Layout:
//! - [`entry`]: `main(argv)` and `serve(app, argv)`: options, logging, listeners, app loading.
//! - [`app_threads`]: the pool of app threads that run exchanges, holding the GIL only while
//!   Python runs.
//! - [`inline`]: which routes the I/O thread runs itself (`--inline`).
//! - [`worker`]: forking through CPython and a worker's life in the child.
//! - [`wsgi`]: PEP 3333 itself: environ, start_response, wsgi.input, wsgi.errors,
//!   wsgi.file_wrapper, and driving the response iterable.

mod app_threads;
mod apps;
mod entry;
mod inline;
mod worker;
mod wsgi;

use pyo3::prelude::*;

/// Locks `mutex`, ignoring poisoning: a panic caught on an app thread must not make every
/// later lock fail.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The native half of the `wizgy` package; see `python/wizgy/_native.pyi`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(entry::main, m)?)?;
    m.add_function(wrap_pyfunction!(entry::serve, m)?)?;
    m.add_class::<wsgi::start_response::StartResponse>()?;
    m.add_class::<wsgi::input::WsgiInput>()?;
    m.add_class::<wsgi::errors::ErrorStream>()?;
    m.add_class::<wsgi::file_wrapper::FileWrapper>()?;
    m.add(
        "ClientDisconnected",
        m.py().get_type::<wsgi::ClientDisconnected>(),
    )?;
    Ok(())
}
