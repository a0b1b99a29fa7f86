//! wizgy's pure-Rust core: everything that serves HTTP without knowing Python.
//!
//! Layout, in the order a request meets it:
//! - [`config`]: the command-line options, declared once (clap), shared by `serve()`.
//! - [`listener`]: binding TCP and unix listeners before anything else starts.
//! - [`supervisor`]: the parent process: forks workers, signals, recycling, reload.
//! - [`reload`]: `--reload`'s file watching (inotify, no threads).
//! - [`server`]: the worker's tokio runtime, accept loops and graceful stop.
//! - [`stream`]: a client socket (TCP, unix, TLS) as the protocol drivers see it.
//! - [`protocol`]: a new connection's PROXY header, TLS handshake and choice of protocol.
//! - [`tls`]: `--certfile` and friends loaded into rustls; what a handshake tells the app.
//! - [`http1`]: the strict, sans-I/O HTTP/1.1 engine (head parser, chunked codec, responses)
//!   and its connection driver.
//! - [`http2`]: HTTP/2 on the `h2` crate: each stream one exchange.
//! - [`cgi`]: PEP 3333's CGI names and path handling, as bytes.
//! - [`forwarded`]: the scheme and client address a trusted proxy reports.
//! - [`files`]: `--static` mounts: files served by the I/O thread, never outside their DIR.
//! - [`exchange`]: the contract between a connection and whatever runs the app (the bridge).
//! - [`proxy_protocol`]: the PROXY v1/v2 header a load balancer may send first.
//! - [`logging`]: the error log (tracing) and the access log; [`access_log`]: its formats.
//! - [`metrics`]: what workers count (in memory shared with the supervisor) and the
//!   supervisor's `/metrics`, `/healthz` and `/readyz`.
//!
//! This crate never depends on pyo3: the binding crate (`wizgy-python`) is the only place that
//! knows Python, which keeps the engine fuzzable and benchmarkable without an interpreter.

pub mod access_log;
pub mod cgi;
pub mod config;
pub mod exchange;
pub mod files;
pub mod forwarded;
pub mod http1;
pub mod http2;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod protocol;
pub mod proxy_protocol;
pub mod recycle;
pub mod reload;
pub mod server;
pub mod stream;
pub mod supervisor;
pub mod tls;
