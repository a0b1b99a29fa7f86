//! Building the environ dict of one request (PEP 3333 "environ Variables").
//!
//! Keys are interned strings made once; values that never change (wsgi.version, wsgi.errors,
//! the file wrapper, the multithread flags) are shared objects. Per request only the CGI
//! values, the HTTP_ fields and wsgi.input are created. Byte values become "bytes in str":
//! each byte one code point (latin-1), as PEP 3333 requires of native strings.

use std::borrow::Cow;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple, PyType};
use wizgy_core::cgi::{cgi_name, join_separator, percent_decode, split_root, CgiName};
use wizgy_core::exchange::{PeerAddr, Request};

use super::errors::ErrorStream;
use super::file_wrapper::FileWrapper;
use super::input::WsgiInput;

/// Values shared by every environ of a worker.
pub struct EnvironShared {
    version: Py<PyTuple>,
    errors: Py<ErrorStream>,
    file_wrapper: Py<PyType>,
    multithread: bool,
    multiprocess: bool,
    root_path: String,
}

impl EnvironShared {
    pub fn new(
        py: Python<'_>,
        multithread: bool,
        multiprocess: bool,
        root_path: String,
    ) -> PyResult<Self> {
        Ok(EnvironShared {
            version: PyTuple::new(py, [1, 0])?.unbind(),
            errors: Py::new(py, ErrorStream)?,
            file_wrapper: py.get_type::<FileWrapper>().unbind(),
            multithread,
            multiprocess,
            root_path,
        })
    }
}

/// A Python str holding one code point per byte (latin-1 decoding).
pub fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> Bound<'py, PyString> {
    match std::str::from_utf8(bytes) {
        Ok(text) if text.is_ascii() => PyString::new(py, text),
        _ => {
            let text: String = bytes.iter().map(|&b| char::from(b)).collect();
            PyString::new(py, &text)
        }
    }
}

fn method_str<'py>(py: Python<'py>, method: &[u8]) -> Bound<'py, PyString> {
    match method {
        b"GET" => intern!(py, "GET").clone(),
        b"POST" => intern!(py, "POST").clone(),
        b"HEAD" => intern!(py, "HEAD").clone(),
        b"PUT" => intern!(py, "PUT").clone(),
        b"DELETE" => intern!(py, "DELETE").clone(),
        b"PATCH" => intern!(py, "PATCH").clone(),
        b"OPTIONS" => intern!(py, "OPTIONS").clone(),
        other => latin1(py, other),
    }
}

/// Builds the environ for `request`, with `input` as `wsgi.input`.
pub fn build<'py>(
    py: Python<'py>,
    shared: &EnvironShared,
    request: &Request,
    input: Bound<'py, WsgiInput>,
) -> PyResult<Bound<'py, PyDict>> {
    let env = PyDict::new(py);
    let head = &request.head;
    let (raw_path, query) = head.path_and_query();
    let path: Cow<'_, [u8]> = percent_decode(raw_path);
    let path_info = split_root(&shared.root_path, &path);
    let target = latin1(py, head.target());

    env.set_item(intern!(py, "REQUEST_METHOD"), method_str(py, head.method()))?;
    env.set_item(intern!(py, "SCRIPT_NAME"), shared.root_path.as_str())?;
    env.set_item(intern!(py, "PATH_INFO"), latin1(py, path_info))?;
    env.set_item(intern!(py, "QUERY_STRING"), latin1(py, query))?;
    env.set_item(intern!(py, "RAW_URI"), &target)?;
    env.set_item(intern!(py, "REQUEST_URI"), target)?;
    env.set_item(intern!(py, "SERVER_PROTOCOL"), head.version.as_str())?;

    let mut host_header: Option<&[u8]> = None;
    for (name, value) in head.fields() {
        let key = match cgi_name(name) {
            CgiName::Dropped => continue,
            CgiName::ContentType => intern!(py, "CONTENT_TYPE").clone(),
            CgiName::ContentLength => intern!(py, "CONTENT_LENGTH").clone(),
            CgiName::Http(key) => {
                if key == "HTTP_HOST" {
                    host_header = Some(value);
                }
                PyString::new(py, &key)
            }
        };
        let value = latin1(py, value);
        match env.get_item(&key)? {
            // A repeated field: one value, joined in arrival order.
            Some(previous) => {
                let separator = join_separator(key.to_str()?);
                let joined = format!(
                    "{}{}{}",
                    previous.extract::<&str>()?,
                    separator,
                    value.to_str()?
                );
                env.set_item(key, joined)?;
            }
            None => env.set_item(key, value)?,
        }
    }

    let server = &request.server;
    if server.port.is_empty() {
        // A unix socket has no name or port of its own: take them from Host, as gunicorn does.
        let (name, port) = split_host(host_header.unwrap_or(b"localhost"));
        env.set_item(intern!(py, "SERVER_NAME"), latin1(py, name))?;
        env.set_item(
            intern!(py, "SERVER_PORT"),
            latin1(py, port.unwrap_or(b"80")),
        )?;
    } else {
        env.set_item(intern!(py, "SERVER_NAME"), server.name.as_str())?;
        env.set_item(intern!(py, "SERVER_PORT"), server.port.as_str())?;
    }
    match request.peer {
        PeerAddr::Ip(addr) => {
            env.set_item(intern!(py, "REMOTE_ADDR"), addr.ip().to_string())?;
            env.set_item(intern!(py, "REMOTE_PORT"), addr.port().to_string())?;
        }
        PeerAddr::Reported(ip) => {
            env.set_item(intern!(py, "REMOTE_ADDR"), ip.to_string())?;
            env.set_item(intern!(py, "REMOTE_PORT"), "")?;
        }
        PeerAddr::Unix => env.set_item(intern!(py, "REMOTE_ADDR"), "")?,
    }

    env.set_item(intern!(py, "wsgi.version"), shared.version.bind(py))?;
    env.set_item(intern!(py, "wsgi.url_scheme"), request.scheme)?;
    env.set_item(intern!(py, "wsgi.input"), input)?;
    env.set_item(intern!(py, "wsgi.errors"), shared.errors.bind(py))?;
    env.set_item(intern!(py, "wsgi.multithread"), shared.multithread)?;
    env.set_item(intern!(py, "wsgi.multiprocess"), shared.multiprocess)?;
    env.set_item(intern!(py, "wsgi.run_once"), false)?;
    // The body ends where the server says (Content-Length or the last chunk), so an app may
    // read to EOF without a CONTENT_LENGTH (chunked requests have none).
    env.set_item(intern!(py, "wsgi.input_terminated"), true)?;
    env.set_item(
        intern!(py, "wsgi.file_wrapper"),
        shared.file_wrapper.bind(py),
    )?;
    Ok(env)
}

/// Splits `host[:port]` or `[v6]:port`.
fn split_host(host: &[u8]) -> (&[u8], Option<&[u8]>) {
    let port_sep = match host.iter().rposition(|&b| b == b':') {
        Some(i) if !host[i..].contains(&b']') => i,
        _ => return (host, None),
    };
    (&host[..port_sep], Some(&host[port_sep + 1..]))
}
