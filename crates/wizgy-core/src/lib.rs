//! wizgy's pure-Rust core: everything that serves HTTP without knowing Python.
//!
//! Layout, in the order a request meets it:
//! - [`config`]: the command-line options, declared once (clap), shared by `serve()`.
//! - [`listener`]: binding TCP and unix listeners before anything else starts.
//! - [`supervisor`]: the parent process: forks workers, signals, recycling, reload.
//! - [`reload`]: `--reload`'s file watching (inotify, no threads).
//! - [`server`]: the worker's tokio runtime, accept loops and graceful stop.
//! - [`connection`]: one client connection: reads heads, drives exchanges, writes responses.
//! - [`http1`]: the strict, sans-I/O HTTP/1.1 engine (head parser, chunked codec, responses).
//! - [`cgi`]: PEP 3333's CGI names and path handling, as bytes.
//! - [`forwarded`]: the scheme and client address a trusted proxy reports.
//! - [`exchange`]: the contract between a connection and whatever runs the app (the bridge).
//! - [`proxy_protocol`]: the PROXY v1/v2 header a load balancer may send first.
//! - [`logging`]: the error log (tracing) and the access log.
//!
//! This crate never depends on pyo3: the binding crate (`wizgy-python`) is the only place that
//! knows Python, which keeps the engine fuzzable and benchmarkable without an interpreter.

pub mod cgi;
pub mod config;
pub mod connection;
pub mod exchange;
pub mod forwarded;
pub mod http1;
pub mod listener;
pub mod logging;
pub mod proxy_protocol;
pub mod reload;
pub mod server;
pub mod supervisor;
