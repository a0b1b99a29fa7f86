//! `start_response` and the `write()` callable it returns: PEP 3333's state machine.
//!
//! States: not started → started (head pending) → head sent → finished. The head is sent with
//! the first non-empty body data (or at the end), never earlier, so an app may still replace
//! it with `exc_info` until then. Validation of the status and the fields is the core's
//! (`ResponseHead`); a refusal becomes an exception raised in the app.

use std::fs::File;

use pyo3::exceptions::{PyAssertionError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::types::{PyString, PyTuple};
use wizgy_core::exchange::{AppEvent, Body, EventSender};
use wizgy_core::http1::response::ResponseHead;

use super::{chunk_to_bytes, send_event};

/// The `start_response` callable of one exchange.
#[pyclass(module = "wizgy._native")]
pub struct StartResponse {
    events: EventSender,
    /// Set by start_response, sent with the first body data.
    pending: Option<ResponseHead>,
    /// start_response has been called at least once.
    started: bool,
    /// The head has been handed to the connection: exc_info now re-raises.
    head_sent: bool,
    /// The response is complete (or failed); nothing more is sent.
    finished: bool,
}

#[pymethods]
impl StartResponse {
    /// `start_response(status, response_headers, exc_info=None) -> write`
    #[pyo3(signature = (status, headers, exc_info=None))]
    fn __call__(
        slf: &Bound<'_, Self>,
        status: &Bound<'_, PyAny>,
        headers: &Bound<'_, PyAny>,
        exc_info: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let exc_info = exc_info.filter(|e| !e.is_none());
        {
            let this = slf.borrow();
            match exc_info {
                // PEP 3333: "if exc_info is provided, and the HTTP headers have already been
                // sent, start_response must raise an error, and should re-raise using the
                // exc_info tuple."
                Some(info) if this.head_sent => {
                    let value = info.get_item(1)?;
                    return Err(PyErr::from_value(value));
                }
                Some(_) => {}
                None if this.started => {
                    return Err(PyAssertionError::new_err(
                        "start_response() called a second time without exc_info",
                    ));
                }
                None => {}
            }
        }
        let head = build_head(status, headers)?;
        let mut this = slf.borrow_mut();
        this.pending = Some(head);
        this.started = true;
        drop(this);
        Ok(slf.getattr(pyo3::intern!(slf.py(), "write"))?.unbind())
    }

    /// The `write(data)` callable: sends `data` at once (PEP 3333's imperative API).
    fn write(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let chunk = chunk_to_bytes(data)?;
        if chunk.is_empty() && slf.borrow().head_sent {
            return Ok(());
        }
        send(slf, Body::One(chunk), false)
    }
}

/// Validates the app's status and headers into a core `ResponseHead`.
fn build_head(status: &Bound<'_, PyAny>, headers: &Bound<'_, PyAny>) -> PyResult<ResponseHead> {
    let status = status
        .cast::<PyString>()
        .map_err(|_| PyTypeError::new_err("status must be a str such as '200 OK'"))?;
    let mut head =
        ResponseHead::new(status.to_str()?).map_err(|e| PyValueError::new_err(e.to_string()))?;
    for item in headers.try_iter().map_err(|_| {
        PyTypeError::new_err("response_headers must be a list of (name, value) tuples")
    })? {
        let item = item?;
        let pair = item
            .cast::<PyTuple>()
            .ok()
            .filter(|t| t.len() == 2)
            .ok_or_else(|| {
                PyTypeError::new_err("each response header must be a (name, value) tuple of str")
            })?;
        let as_str = |index: usize| -> PyResult<PyBackedStr> {
            let value = pair.get_item(index)?;
            if !value.is_instance_of::<PyString>() {
                return Err(PyTypeError::new_err(format!(
                    "response header names and values must be str, not {}",
                    value.get_type().name()?
                )));
            }
            value.extract()
        };
        let (name, value) = (as_str(0)?, as_str(1)?);
        head.push(&name, &value)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
    }
    Ok(head)
}

/// Sends body pieces (and the head, the first time); `end` completes the response.
///
/// The object is borrowed only to take the head and update the state, never while waiting for
/// room in the channel (which releases the GIL): another thread of the app may call write()
/// meanwhile, and must find the object free.
pub fn send(start: &Bound<'_, StartResponse>, body: Body, end: bool) -> PyResult<()> {
    let (events, head) = {
        let mut this = start.try_borrow_mut()?;
        if this.finished {
            return Ok(());
        }
        let head = this.take_head()?;
        this.finished = end;
        (this.events.clone(), head)
    };
    let bytes = body.len();
    send_event(
        start.py(),
        &events,
        AppEvent::Send { head, body, end },
        bytes,
    )
}

/// Sends a file with sendfile; completes the response.
pub fn send_file(
    start: &Bound<'_, StartResponse>,
    file: File,
    offset: u64,
    len: u64,
) -> PyResult<()> {
    let (events, head) = {
        let mut this = start.try_borrow_mut()?;
        let head = this.take_head()?;
        this.finished = true;
        (this.events.clone(), head)
    };
    send_event(
        start.py(),
        &events,
        AppEvent::SendFile {
            head,
            file,
            offset,
            len,
        },
        0,
    )
}

/// Reports an app failure: a 500 if nothing was sent, otherwise the connection is cut.
pub fn fail(start: &Bound<'_, StartResponse>) {
    let events = match start.try_borrow_mut() {
        Ok(mut this) if !this.finished => {
            this.finished = true;
            this.events.clone()
        }
        _ => return,
    };
    let _ = send_event(start.py(), &events, AppEvent::Fail, 0);
}

impl StartResponse {
    /// Whether the response head has been handed to the connection.
    pub fn is_head_sent(&self) -> bool {
        self.head_sent
    }

    pub fn new(events: EventSender) -> Self {
        StartResponse {
            events,
            pending: None,
            started: false,
            head_sent: false,
            finished: false,
        }
    }

    /// Takes the pending head the first time body data goes out.
    fn take_head(&mut self) -> PyResult<Option<ResponseHead>> {
        if self.head_sent {
            return Ok(None);
        }
        let head = self.pending.take().ok_or_else(|| {
            PyAssertionError::new_err("the app sent body data before calling start_response()")
        })?;
        self.head_sent = true;
        Ok(Some(head))
    }
}
