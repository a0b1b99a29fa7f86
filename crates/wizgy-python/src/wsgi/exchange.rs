//! Running one exchange on an app thread: build the environ, call the app, drain the result
//! into the connection, and call `close()` however it ends.
//!
//! App exceptions stop here: they are logged with their traceback and become a 500 (before the
//! head was sent) or a cut connection (after). A client that went away is not an app error:
//! iteration stops quietly and `close()` is still called.

use bytes::Bytes;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use wizgy_core::cgi::{percent_decode, split_root};
use wizgy_core::exchange::{AppEvent, Body, EventSender, Exchange};
use wizgy_core::http1::response::ResponseHead;

use crate::apps::Apps;

use super::environ::{self, EnvironShared};
use super::file_wrapper::FileWrapper;
use super::input::WsgiInput;
use super::start_response::{self, StartResponse};
use super::{chunk_to_bytes, send_event, ClientDisconnected};

/// Runs `exchange` through `app`. Never raises: every outcome is reported to the connection.
pub fn run(py: Python<'_>, apps: &Apps, shared: &EnvironShared, exchange: Exchange) {
    let Exchange {
        request,
        initial_body,
        events,
        body,
    } = exchange;
    if events.is_closed() {
        // Cancelled while it waited for a thread (an HTTP/2 stream the client reset): no one
        // would read the response. A flood of such streams costs a queue slot each, not a
        // call of the app (issue 20, rapid reset).
        return;
    }
    let (raw_path, _) = request.head.path_and_query();
    let path = percent_decode(raw_path);
    let after_root = split_root(shared.root_path(), &path);
    let Some((app, mount)) = apps.route(after_root) else {
        // Mounts without a positional APP, and a path none of them takes.
        return not_found(py, &events);
    };
    let path_info = &after_root[mount.map_or(0, |m| m.prefix_len)..];
    let script_name = mount.map(|m| &m.script_name);
    let start = match Bound::new(py, StartResponse::new(events.clone())) {
        Ok(start) => start,
        Err(err) => return log_app_error(py, &err, "creating start_response"),
    };
    let outcome = WsgiInput::new(initial_body, events, body);
    let outcome = Bound::new(py, outcome)
        .and_then(|input| environ::build(py, shared, &request, input, path_info, script_name))
        .and_then(|env| call_app(py, app, env, &start));
    if let Err(err) = outcome {
        if err.is_instance_of::<ClientDisconnected>(py) {
            tracing::debug!("client disconnected during the response");
        } else {
            let what = String::from_utf8_lossy(request.head.target()).into_owned();
            log_app_error(py, &err, &what);
        }
        start_response::fail(&start);
    }
}

/// wizgy's own 404, for a path that no app serves.
fn not_found(py: Python<'_>, events: &EventSender) {
    const BODY: &[u8] = b"Not Found\n";
    let Ok(mut head) = ResponseHead::new("404 Not Found") else {
        return;
    };
    if head
        .push("Content-Type", "text/plain; charset=utf-8")
        .is_err()
        || head
            .push("Content-Length", &BODY.len().to_string())
            .is_err()
    {
        return;
    }
    let event = AppEvent::Send {
        head: Some(head),
        body: Body::One(Bytes::from_static(BODY)),
        end: true,
    };
    let _ = send_event(py, events, event, BODY.len());
}

/// Calls the app and drains its result; `close()` runs on every path once there is a result.
fn call_app(
    py: Python<'_>,
    app: &Py<PyAny>,
    env: Bound<'_, pyo3::types::PyDict>,
    start: &Bound<'_, StartResponse>,
) -> PyResult<()> {
    let result = app.bind(py).call1((env, start))?;
    let drained = drain(py, &result, start);
    let closed = close(&result);
    match (drained, closed) {
        (Err(err), Err(close_err)) => {
            log_app_error(py, &close_err, "the response's close()");
            Err(err)
        }
        (Err(err), _) | (Ok(()), Err(err)) => Err(err),
        (Ok(()), Ok(())) => Ok(()),
    }
}

fn close(result: &Bound<'_, PyAny>) -> PyResult<()> {
    // A list or tuple has no close(), and asking costs an AttributeError (created, formatted
    // and normalized before 3.13: ~1 µs per request on hello).
    if result.is_exact_instance_of::<PyList>() || result.is_exact_instance_of::<PyTuple>() {
        return Ok(());
    }
    if let Some(close) = result.getattr_opt(intern!(result.py(), "close"))? {
        close.call0()?;
    }
    Ok(())
}

/// Sends the response body: a file by sendfile, a list or tuple in one event, anything else
/// chunk by chunk as the iterable yields (streamed, with backpressure).
fn drain(
    py: Python<'_>,
    result: &Bound<'_, PyAny>,
    start: &Bound<'_, StartResponse>,
) -> PyResult<()> {
    // sendfile only when the file is the whole body: after write() the head is out, and the
    // file is then iterated like any other body (framed by the connection).
    if let Ok(wrapper) = result.cast::<FileWrapper>() {
        if !start.try_borrow()?.is_head_sent() {
            if let Some(parts) = wrapper.borrow().sendfile_parts(py)? {
                return start_response::send_file(start, parts.file, parts.offset, parts.len);
            }
        }
    }
    if let Ok(list) = result.cast::<PyList>() {
        return start_response::send(start, body_of(list.iter())?, true);
    }
    if let Ok(tuple) = result.cast::<PyTuple>() {
        return start_response::send(start, body_of(tuple.iter())?, true);
    }
    for item in result.try_iter()? {
        let chunk = chunk_to_bytes(&item?)?;
        // PEP 3333: the head waits for the first non-empty chunk, so empty ones are skipped.
        if !chunk.is_empty() {
            start_response::send(start, Body::One(chunk), false)?;
        }
    }
    start_response::send(start, Body::empty(), true)
}

/// The whole body of a list or tuple result, sent in one event.
fn body_of<'py>(items: impl Iterator<Item = Bound<'py, PyAny>>) -> PyResult<Body> {
    let mut body = Body::default();
    for item in items {
        body.push(chunk_to_bytes(&item)?);
    }
    Ok(body)
}

/// Writes the exception and its traceback to the error log.
pub fn log_app_error(py: Python<'_>, err: &PyErr, context: &str) {
    tracing::error!(
        "error handling {context}\n{}",
        format_traceback(py, err).trim_end()
    );
}

/// The traceback of `err` as Python prints it (`Traceback (most recent call last): ...`).
pub fn format_traceback(py: Python<'_>, err: &PyErr) -> String {
    // The three-argument form works on every supported Python (3.9 has no one-argument form).
    py.import("traceback")
        .and_then(|tb| {
            tb.call_method1(
                "format_exception",
                (err.get_type(py), err.value(py), err.traceback(py)),
            )
        })
        .and_then(|lines| lines.extract::<Vec<String>>())
        .map(|lines| lines.concat())
        .unwrap_or_else(|_| format!("{err}\n"))
}
