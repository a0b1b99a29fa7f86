//! Building the environ dict of one request (PEP 3333 "environ Variables").
//!
//! Keys are interned strings made once, and `HTTP_*` keys are cached by header name. Entries
//! that never change (wsgi.version, wsgi.errors, the file wrapper, the multithread flags...)
//! sit in a template dict that each request copies. Per request only the CGI values, the
//! HTTP_ field values and wsgi.input are created. Byte values become "bytes in str":
//! each byte one code point (latin-1), as PEP 3333 requires of native strings.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;

use pyo3::intern;
use pyo3::prelude::*;

use crate::lock;
use pyo3::types::{PyDict, PyString, PyTuple};
use wizgy_core::cgi::{cgi_name, join_separator, percent_decode, split_root, CgiName};
use wizgy_core::exchange::{PeerAddr, Request};

use super::errors::ErrorStream;
use super::file_wrapper::FileWrapper;
use super::input::WsgiInput;

/// Values shared by every environ of a worker.
pub struct EnvironShared {
    /// The entries every environ has, with their values: copied, then filled in.
    template: Py<PyDict>,
    root_path: String,
    /// `HTTP_*` keys by raw header name (as the client spelled it), made once each.
    keys: Mutex<HashMap<Box<[u8]>, Py<PyString>>>,
}

/// Distinct header spellings whose keys are cached; past this, keys are made per request
/// (a client inventing names must not grow the cache).
const KEY_CACHE: usize = 256;

impl EnvironShared {
    pub fn new(
        py: Python<'_>,
        multithread: bool,
        multiprocess: bool,
        root_path: String,
    ) -> PyResult<Self> {
        let template = PyDict::new(py);
        template.set_item(intern!(py, "SCRIPT_NAME"), root_path.as_str())?;
        template.set_item(intern!(py, "wsgi.version"), PyTuple::new(py, [1, 0])?)?;
        template.set_item(intern!(py, "wsgi.errors"), Py::new(py, ErrorStream)?)?;
        template.set_item(intern!(py, "wsgi.multithread"), multithread)?;
        template.set_item(intern!(py, "wsgi.multiprocess"), multiprocess)?;
        template.set_item(intern!(py, "wsgi.run_once"), false)?;
        // The body ends where the server says (Content-Length or the last chunk), so an app
        // may read to EOF without a CONTENT_LENGTH (chunked requests have none).
        template.set_item(intern!(py, "wsgi.input_terminated"), true)?;
        template.set_item(
            intern!(py, "wsgi.file_wrapper"),
            py.get_type::<FileWrapper>(),
        )?;
        Ok(EnvironShared {
            template: template.unbind(),
            root_path,
            keys: Mutex::new(HashMap::new()),
        })
    }

    /// The environ key of header `name`.
    fn key<'py>(&self, py: Python<'py>, name: &[u8]) -> PyResult<Option<Bound<'py, PyString>>> {
        if let Some(key) = lock(&self.keys).get(name) {
            return Ok(Some(key.bind(py).clone()));
        }
        let key = match cgi_name(name) {
            CgiName::Dropped => return Ok(None),
            CgiName::ContentType => intern!(py, "CONTENT_TYPE").clone(),
            CgiName::ContentLength => intern!(py, "CONTENT_LENGTH").clone(),
            CgiName::Http(key) => {
                let mut keys = lock(&self.keys);
                if keys.len() >= KEY_CACHE {
                    // Not interned: on some Pythons interned strings live forever.
                    return Ok(Some(PyString::new(py, &key)));
                }
                let key = PyString::intern(py, &key);
                keys.insert(name.into(), key.clone().unbind());
                key
            }
        };
        Ok(Some(key))
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
    let env = shared.template.bind(py).copy()?;
    let head = &request.head;
    let (raw_path, query) = head.path_and_query();
    let path: Cow<'_, [u8]> = percent_decode(raw_path);
    let path_info = split_root(&shared.root_path, &path);
    let target = latin1(py, head.target());

    env.set_item(intern!(py, "REQUEST_METHOD"), method_str(py, head.method()))?;
    env.set_item(intern!(py, "PATH_INFO"), latin1(py, path_info))?;
    env.set_item(intern!(py, "QUERY_STRING"), latin1(py, query))?;
    env.set_item(intern!(py, "RAW_URI"), &target)?;
    env.set_item(intern!(py, "REQUEST_URI"), target)?;
    env.set_item(intern!(py, "SERVER_PROTOCOL"), head.version.as_str())?;

    let mut host_header: Option<&[u8]> = None;
    for (name, value) in head.fields() {
        let Some(key) = shared.key(py, name)? else {
            continue;
        };
        if host_header.is_none() && name.eq_ignore_ascii_case(b"host") {
            host_header = Some(value);
        }
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

    env.set_item(intern!(py, "wsgi.url_scheme"), request.scheme)?;
    env.set_item(intern!(py, "wsgi.input"), input)?;
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
