//! Building the environ dict of one request (PEP 3333 "environ Variables").
//!
//! Keys are interned strings made once, and `HTTP_*` keys are cached by header name. Entries
//! that never change (wsgi.version, wsgi.errors, the file wrapper, the multithread flags...)
//! sit in a template dict that each request copies, together with a placeholder for every
//! key each request sets, so that the copy already has room for them: filling in replaces
//! values instead of inserting keys and growing the dict twice (callgrind, hello: the
//! environ was a third of the worker's user-space instructions). Per request only the CGI
//! values, the HTTP_ field values and wsgi.input are created. Byte values become "bytes in
//! str": each byte one code point (latin-1), as PEP 3333 requires of native strings.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

use pyo3::intern;
use pyo3::prelude::*;

use crate::lock;
use pyo3::types::{PyDict, PyString, PyTuple};
use wizgy_core::cgi::{cgi_name, join_separator, CgiName};
use wizgy_core::exchange::{PeerAddr, Request, ServerInfo};
use wizgy_core::http1::head::Version;
use wizgy_core::tls::TlsInfo;

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
    /// `SERVER_NAME` and `SERVER_PORT` of each listener, made once each.
    servers: Mutex<Vec<ServerStrings>>,
}

/// A listener and its `SERVER_NAME` and `SERVER_PORT` values.
type ServerStrings = (Arc<ServerInfo>, Py<PyString>, Py<PyString>);

/// Keys every request sets: the template holds them (with `None`) so that its copies have
/// room for them. `REMOTE_PORT` is removed again for a unix socket's peer.
const PER_REQUEST: [&str; 12] = [
    "REQUEST_METHOD",
    "PATH_INFO",
    "QUERY_STRING",
    "RAW_URI",
    "REQUEST_URI",
    "SERVER_PROTOCOL",
    "SERVER_NAME",
    "SERVER_PORT",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "wsgi.url_scheme",
    "wsgi.input",
];

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
        // gunicorn's convention (`gunicorn/27.0.1`); apps and middleware log and branch on it.
        template.set_item(
            intern!(py, "SERVER_SOFTWARE"),
            concat!("wizgy/", env!("CARGO_PKG_VERSION")),
        )?;
        // The body ends where the server says (Content-Length or the last chunk), so an app
        // may read to EOF without a CONTENT_LENGTH (chunked requests have none).
        template.set_item(intern!(py, "wsgi.input_terminated"), true)?;
        template.set_item(
            intern!(py, "wsgi.file_wrapper"),
            py.get_type::<FileWrapper>(),
        )?;
        for key in PER_REQUEST {
            template.set_item(PyString::intern(py, key), py.None())?;
        }
        Ok(EnvironShared {
            template: template.unbind(),
            root_path,
            keys: Mutex::new(HashMap::new()),
            servers: Mutex::new(Vec::new()),
        })
    }

    /// `--root-path`: removed from the front of the path before routing.
    pub fn root_path(&self) -> &str {
        &self.root_path
    }

    /// `SERVER_NAME` and `SERVER_PORT` of the listener `server`.
    fn server<'py>(
        &self,
        py: Python<'py>,
        server: &Arc<ServerInfo>,
    ) -> (Bound<'py, PyString>, Bound<'py, PyString>) {
        let mut servers = lock(&self.servers);
        let position = servers.iter().position(|(s, ..)| Arc::ptr_eq(s, server));
        let index = position.unwrap_or_else(|| {
            let name = PyString::new(py, &server.name).unbind();
            let port = PyString::new(py, &server.port).unbind();
            servers.push((server.clone(), name, port));
            servers.len() - 1
        });
        let (_, name, port) = &servers[index];
        (name.bind(py).clone(), port.bind(py).clone())
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
///
/// CPython's own latin-1 decoder: it finds the widest byte and copies the bytes into the new
/// str, where `PyString::new` would validate and decode UTF-8 (and non-ASCII bytes would need
/// a UTF-8 copy first). Every CGI and header value of every request passes through here.
pub fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> Bound<'py, PyString> {
    let Ok(len) = pyo3::ffi::Py_ssize_t::try_from(bytes.len()) else {
        unreachable!("a request head is far smaller than isize::MAX")
    };
    // SAFETY: `bytes` is valid for `len` bytes during the call, which copies them; a NULL
    // `errors` is allowed (latin-1 decoding cannot fail, only run out of memory); the GIL is
    // held (`py`).
    #[allow(unsafe_code)]
    let str = unsafe {
        let ptr = pyo3::ffi::PyUnicode_DecodeLatin1(bytes.as_ptr().cast(), len, std::ptr::null());
        Bound::from_owned_ptr_or_err(py, ptr)
    };
    // Fails only out of memory, where PyString::new panics too.
    let str = str.expect("latin-1 decoding cannot fail");
    str.cast_into::<PyString>()
        .expect("PyUnicode_DecodeLatin1 returns a str")
}

/// `ip` as `REMOTE_ADDR`, written without `fmt` for IPv4 (the usual peer).
fn ip_str<'py>(py: Python<'py>, ip: IpAddr) -> Bound<'py, PyString> {
    match ip {
        IpAddr::V4(ip) => {
            let mut text = [0u8; 15];
            latin1(py, ipv4_text(ip, &mut text))
        }
        IpAddr::V6(ip) => PyString::new(py, &ip.to_string()),
    }
}

/// Dotted-quad text of `ip` in `buf`.
fn ipv4_text(ip: Ipv4Addr, buf: &mut [u8; 15]) -> &[u8] {
    let mut len = 0;
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            buf[len] = b'.';
            len += 1;
        }
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(octet).as_bytes();
        buf[len..len + digits.len()].copy_from_slice(digits);
        len += digits.len();
    }
    &buf[..len]
}

/// Sets `env[key] = value` unless `key` is there; returns the value that was there.
fn set_default<'py>(
    env: &Bound<'py, PyDict>,
    key: &Bound<'py, PyString>,
    value: &Bound<'py, PyString>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let py = env.py();
    let mut previous = std::ptr::null_mut();
    // SAFETY: all three objects are alive (borrowed) and the GIL is held; on return 1
    // `previous` is a new reference, which `from_owned_ptr` takes over.
    #[allow(unsafe_code)]
    unsafe {
        match pyo3::ffi::compat::PyDict_SetDefaultRef(
            env.as_ptr(),
            key.as_ptr(),
            value.as_ptr(),
            &mut previous,
        ) {
            0 => {
                pyo3::ffi::Py_XDECREF(previous);
                Ok(None)
            }
            1 => Ok(Some(Bound::from_owned_ptr(py, previous))),
            _ => Err(PyErr::fetch(py)),
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
/// `path_info` is the decoded path after `--root-path` and the mount's prefix, `script_name`
/// the mount's SCRIPT_NAME (`None`: the positional APP's, `--root-path`).
pub fn build<'py>(
    py: Python<'py>,
    shared: &EnvironShared,
    request: &Request,
    input: Bound<'py, WsgiInput>,
    path_info: &[u8],
    script_name: Option<&Py<PyString>>,
) -> PyResult<Bound<'py, PyDict>> {
    let env = shared.template.bind(py).copy()?;
    let head = &request.head;
    let (_, query) = head.path_and_query();
    if let Some(script_name) = script_name {
        env.set_item(intern!(py, "SCRIPT_NAME"), script_name.bind(py))?;
    }
    let target = latin1(py, head.target());

    env.set_item(intern!(py, "REQUEST_METHOD"), method_str(py, head.method()))?;
    env.set_item(intern!(py, "PATH_INFO"), latin1(py, path_info))?;
    env.set_item(intern!(py, "QUERY_STRING"), latin1(py, query))?;
    env.set_item(intern!(py, "RAW_URI"), &target)?;
    env.set_item(intern!(py, "REQUEST_URI"), target)?;
    let protocol = match head.version {
        Version::Http11 => intern!(py, "HTTP/1.1"),
        Version::Http10 => intern!(py, "HTTP/1.0"),
        Version::Http2 => intern!(py, "HTTP/2"),
    };
    env.set_item(intern!(py, "SERVER_PROTOCOL"), protocol)?;

    let mut host_header: Option<&[u8]> = None;
    for (name, value) in head.fields() {
        let Some(key) = shared.key(py, name)? else {
            continue;
        };
        if host_header.is_none() && name.eq_ignore_ascii_case(b"host") {
            host_header = Some(value);
        }
        let value = latin1(py, value);
        // A repeated field: one value, joined in arrival order.
        if let Some(previous) = set_default(&env, &key, &value)? {
            let separator = join_separator(key.to_str()?);
            let joined = format!(
                "{}{}{}",
                previous.extract::<&str>()?,
                separator,
                value.to_str()?
            );
            env.set_item(key, joined)?;
        }
    }

    let server = &request.server;
    // A unix socket has no name or port of its own: take them from Host, as gunicorn does.
    // Nor from HTTP/2, whose `:authority` (the Host field here) is the URL's authority and
    // required: SERVER_NAME and SERVER_PORT follow it (issue 20).
    if server.port.is_empty() || head.version == Version::Http2 {
        let (name, port) = split_host(host_header.unwrap_or(b"localhost"));
        let default_port: &[u8] = if request.scheme == "https" {
            b"443"
        } else {
            b"80"
        };
        env.set_item(intern!(py, "SERVER_NAME"), latin1(py, name))?;
        env.set_item(
            intern!(py, "SERVER_PORT"),
            latin1(py, port.unwrap_or(default_port)),
        )?;
    } else {
        let (name, port) = shared.server(py, server);
        env.set_item(intern!(py, "SERVER_NAME"), name)?;
        env.set_item(intern!(py, "SERVER_PORT"), port)?;
    }
    match request.peer {
        PeerAddr::Ip(addr) => {
            env.set_item(intern!(py, "REMOTE_ADDR"), ip_str(py, addr.ip()))?;
            let mut port = itoa::Buffer::new();
            let port = port.format(addr.port()).as_bytes();
            env.set_item(intern!(py, "REMOTE_PORT"), latin1(py, port))?;
        }
        PeerAddr::Reported(ip) => {
            env.set_item(intern!(py, "REMOTE_ADDR"), ip_str(py, ip))?;
            env.set_item(intern!(py, "REMOTE_PORT"), intern!(py, ""))?;
        }
        PeerAddr::Unix => {
            env.set_item(intern!(py, "REMOTE_ADDR"), intern!(py, ""))?;
            env.del_item(intern!(py, "REMOTE_PORT"))?;
        }
    }

    let scheme = match request.scheme {
        "http" => intern!(py, "http"),
        "https" => intern!(py, "https"),
        other => &PyString::new(py, other),
    };
    env.set_item(intern!(py, "wsgi.url_scheme"), scheme)?;
    env.set_item(intern!(py, "wsgi.input"), input)?;
    if let Some(tls) = &request.tls {
        set_tls(&env, tls)?;
    }
    Ok(env)
}

/// mod_ssl's variables for a TLS connection (`HTTPS`, `SSL_*`), which Django, Flask and
/// WebOb middleware read; the connection's own, whatever a proxy's X-Forwarded-Proto said.
fn set_tls(env: &Bound<'_, PyDict>, tls: &TlsInfo) -> PyResult<()> {
    let py = env.py();
    env.set_item(intern!(py, "HTTPS"), intern!(py, "on"))?;
    env.set_item(
        intern!(py, "SSL_PROTOCOL"),
        PyString::intern(py, tls.protocol),
    )?;
    env.set_item(intern!(py, "SSL_CIPHER"), PyString::intern(py, tls.cipher))?;
    match &tls.client {
        Some(client) => {
            env.set_item(intern!(py, "SSL_CLIENT_VERIFY"), intern!(py, "SUCCESS"))?;
            env.set_item(intern!(py, "SSL_CLIENT_S_DN"), client.subject.as_str())?;
            env.set_item(intern!(py, "SSL_CLIENT_I_DN"), client.issuer.as_str())?;
            env.set_item(intern!(py, "SSL_CLIENT_CERT"), client.pem.as_str())?;
        }
        None => env.set_item(intern!(py, "SSL_CLIENT_VERIFY"), intern!(py, "NONE"))?,
    }
    Ok(())
}

/// Splits `host[:port]` or `[v6]:port`.
fn split_host(host: &[u8]) -> (&[u8], Option<&[u8]>) {
    let port_sep = match host.iter().rposition(|&b| b == b':') {
        Some(i) if !host[i..].contains(&b']') => i,
        _ => return (host, None),
    };
    (&host[..port_sep], Some(&host[port_sep + 1..]))
}
