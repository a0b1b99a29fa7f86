//! Running one exchange on an app thread: build the environ, call the app, drain the result
//! into the connection, and call `close()` however it ends.
//!
//! App exceptions stop here: they are logged with their traceback and become a 500 (before the
//! head was sent) or a cut connection (after). A client that went away is not an app error:
//! iteration stops quietly and `close()` is still called.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyIterator, PyList, PyTuple};
use wizgy_core::exchange::{AppEvent, Body, EventSender, Exchange, SendError};

use super::environ::{self, EnvironShared};
use super::file_wrapper::FileWrapper;
use super::input::WsgiInput;
use super::start_response::{self, StartResponse};
use super::{chunk_to_bytes, ClientDisconnected};

/// Runs `exchange` through `app`. Never raises: every outcome is reported to the connection.
/// Gives back the exchange if its connection had no room for the app's next chunk: the
/// caller leaves it on the link ([`Suspended::events`]) and runs it on with [`resume`].
pub fn run(
    py: Python<'_>,
    app: &Py<PyAny>,
    shared: &EnvironShared,
    exchange: Exchange,
) -> Option<Box<Suspended>> {
    let Exchange {
        request,
        initial_body,
        events,
        body,
    } = exchange;
    let start = match Bound::new(py, StartResponse::new(events.clone())) {
        Ok(start) => start,
        Err(err) => {
            log_app_error(py, &err, "creating start_response");
            return None;
        }
    };
    let outcome = WsgiInput::new(initial_body, events, body);
    let outcome = Bound::new(py, outcome)
        .and_then(|input| environ::build(py, shared, &request, input))
        .and_then(|env| call_app(py, app, env, &start));
    conclude(py, outcome, &start, || {
        String::from_utf8_lossy(request.head.target()).into_owned()
    })
}

/// An exchange whose app result is being drained, stopped because its connection had no room
/// for the next event. It holds no thread meanwhile: an app thread blocked there would be
/// one fewer for other requests (with many slow clients, all of them), and each resume would
/// cost a GIL hand-off between threads.
pub struct Suspended {
    /// The app's result (its `close()` is still to be called) and the iterator over it.
    result: Py<PyAny>,
    iter: Py<PyIterator>,
    start: Py<StartResponse>,
    /// The event that found no room, and its response bytes.
    event: AppEvent,
    bytes: usize,
    /// The request target, for the error log.
    target: String,
}

impl Suspended {
    /// The link to leave it on, and the room (in bytes) it waits for.
    pub fn events(&self, py: Python<'_>) -> (EventSender, usize) {
        (self.start.borrow(py).events().clone(), self.bytes)
    }

    /// The request target, as the app's error log names it.
    pub fn target(&self) -> &str {
        &self.target
    }
}

/// Runs a suspended exchange on: sends the event that found no room, then drains the rest of
/// the app's result. Gives it back if the connection runs out of room again.
pub fn resume(py: Python<'_>, suspended: Suspended) -> Option<Box<Suspended>> {
    let Suspended {
        result,
        iter,
        start,
        event,
        bytes,
        target,
    } = suspended;
    let (result, iter, start) = (
        result.into_bound(py),
        iter.into_bound(py),
        start.into_bound(py),
    );
    let last = matches!(event, AppEvent::Send { end: true, .. });
    let sent = start.borrow().events().try_send(event, bytes);
    let drained = match sent {
        Err(SendError::Full(event)) => Ok(Drained::Full(iter, event, bytes)),
        Err(SendError::Closed) => Err(ClientDisconnected::new_err("client disconnected")),
        Ok(()) if last => Ok(Drained::Done),
        Ok(()) => drain_iter(iter, &start),
    };
    let outcome = settle(result, &start, drained);
    conclude(py, outcome, &start, || target)
}

/// Reports how draining ended: an app error is logged (with the request `target`) and fails
/// the response; a suspension is given back.
fn conclude(
    py: Python<'_>,
    outcome: PyResult<Option<Paused>>,
    start: &Bound<'_, StartResponse>,
    target: impl FnOnce() -> String,
) -> Option<Box<Suspended>> {
    match outcome {
        Ok(None) => None,
        Ok(Some(Paused {
            result,
            iter,
            event,
            bytes,
        })) => Some(Box::new(Suspended {
            result,
            iter,
            start: start.clone().unbind(),
            event,
            bytes,
            target: target(),
        })),
        Err(err) => {
            if err.is_instance_of::<ClientDisconnected>(py) {
                tracing::debug!("client disconnected during the response");
            } else {
                log_app_error(py, &err, &target());
            }
            start_response::fail(start);
            None
        }
    }
}

/// [`Suspended`]'s Python side.
struct Paused {
    result: Py<PyAny>,
    iter: Py<PyIterator>,
    event: AppEvent,
    bytes: usize,
}

/// How draining the app's result stopped.
enum Drained<'py> {
    Done,
    /// No room for `event` (of so many bytes) yet; the iterator goes on from there.
    Full(Bound<'py, PyIterator>, AppEvent, usize),
}

/// Calls the app and drains its result; `close()` runs on every path once there is a result
/// (for a suspension, when it ends).
fn call_app(
    py: Python<'_>,
    app: &Py<PyAny>,
    env: Bound<'_, pyo3::types::PyDict>,
    start: &Bound<'_, StartResponse>,
) -> PyResult<Option<Paused>> {
    let result = app.bind(py).call1((env, start))?;
    let drained = drain(py, &result, start);
    settle(result, start, drained)
}

/// After draining: a suspension keeps the result; otherwise `close()` is called, and an error
/// of either is returned (both logged if both failed).
fn settle<'py>(
    result: Bound<'py, PyAny>,
    start: &Bound<'py, StartResponse>,
    drained: PyResult<Drained<'py>>,
) -> PyResult<Option<Paused>> {
    let drained = match drained {
        Ok(Drained::Full(iter, event, bytes)) => {
            return Ok(Some(Paused {
                result: result.unbind(),
                iter: iter.unbind(),
                event,
                bytes,
            }))
        }
        Ok(Drained::Done) => Ok(()),
        Err(err) => Err(err),
    };
    let closed = close(&result);
    match (drained, closed) {
        (Err(err), Err(close_err)) => {
            log_app_error(start.py(), &close_err, "the response's close()");
            Err(err)
        }
        (Err(err), _) | (Ok(()), Err(err)) => Err(err),
        (Ok(()), Ok(())) => Ok(None),
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
fn drain<'py>(
    py: Python<'py>,
    result: &Bound<'py, PyAny>,
    start: &Bound<'py, StartResponse>,
) -> PyResult<Drained<'py>> {
    // sendfile only when the file is the whole body: after write() the head is out, and the
    // file is then iterated like any other body (framed by the connection).
    if let Ok(wrapper) = result.cast::<FileWrapper>() {
        if !start.try_borrow()?.is_head_sent() {
            if let Some(parts) = wrapper.borrow().sendfile_parts(py)? {
                start_response::send_file(start, parts.file, parts.offset, parts.len)?;
                return Ok(Drained::Done);
            }
        }
    }
    if let Ok(list) = result.cast::<PyList>() {
        start_response::send(start, body_of(list.iter())?, true)?;
        return Ok(Drained::Done);
    }
    if let Ok(tuple) = result.cast::<PyTuple>() {
        start_response::send(start, body_of(tuple.iter())?, true)?;
        return Ok(Drained::Done);
    }
    drain_iter(result.try_iter()?, start)
}

/// Sends what `iter` yields, chunk by chunk, then the end of the response; stops when the
/// connection has no room.
fn drain_iter<'py>(
    mut iter: Bound<'py, PyIterator>,
    start: &Bound<'py, StartResponse>,
) -> PyResult<Drained<'py>> {
    for item in iter.by_ref() {
        let chunk = chunk_to_bytes(&item?)?;
        // PEP 3333: the head waits for the first non-empty chunk, so empty ones are skipped.
        if !chunk.is_empty() {
            if let Some((event, bytes)) = start_response::offer(start, Body::One(chunk), false)? {
                return Ok(Drained::Full(iter, event, bytes));
            }
        }
    }
    Ok(match start_response::offer(start, Body::empty(), true)? {
        Some((event, bytes)) => Drained::Full(iter, event, bytes),
        None => Drained::Done,
    })
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
