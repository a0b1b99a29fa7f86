//! PEP 3333: one module per object the app sees, plus the exchange driver.

pub mod environ;
pub mod errors;
pub mod exchange;
pub mod file_wrapper;
pub mod input;
pub mod start_response;

use bytes::Bytes;
use pyo3::create_exception;
use pyo3::exceptions::{PyOSError, PyTypeError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyByteArray, PyBytes, PyString};
use wizgy_core::exchange::{AppEvent, EventSender, SendError};

create_exception!(
    _native,
    ClientDisconnected,
    PyOSError,
    "The client closed the connection; raised by write() and wsgi.input reads."
);

/// Pieces at least this big are handed to the connection without a copy: the bytes object
/// is kept alive and its buffer written directly (the connection writes it with writev).
/// Smaller ones are copied (cheaper than keeping the object: its reference is dropped on
/// the I/O thread, queued in pyo3's pool until an app thread next holds the GIL, and the
/// connection copies small pieces into one buffer anyway). Same size as the connection's
/// `COALESCE_LIMIT`.
const ZERO_COPY_MIN: usize = 4 * 1024;

/// Converts one response chunk to `Bytes`; a `str` chunk is an app error (PEP 3333: the
/// body is bytestrings only).
pub fn chunk_to_bytes(item: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    if let Ok(bytes) = item.cast::<PyBytes>() {
        let data = bytes.as_bytes();
        if data.len() < ZERO_COPY_MIN {
            return Ok(Bytes::copy_from_slice(data));
        }
        let backed: PyBackedBytes = bytes.clone().into();
        return Ok(Bytes::from_owner(backed));
    }
    if item.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "response body chunks must be bytes, not str (PEP 3333); encode the str first",
        ));
    }
    if let Ok(array) = item.cast::<PyByteArray>() {
        return Ok(Bytes::from(array.to_vec()));
    }
    Err(PyTypeError::new_err(format!(
        "response body chunks must be bytes, not {}",
        item.get_type().name()?
    )))
}

/// Sends an event carrying `bytes` of response body to the connection, blocking (without the
/// GIL) only while there is no room. Fails with [`ClientDisconnected`] when the connection is
/// gone.
pub fn send_event(
    py: Python<'_>,
    events: &EventSender,
    event: AppEvent,
    bytes: usize,
) -> PyResult<()> {
    let sent = match events.try_send(event, bytes) {
        Err(SendError::Full(event)) => py.detach(|| events.send_blocking(event, bytes)),
        other => other,
    };
    sent.map_err(|_| ClientDisconnected::new_err("client disconnected"))
}
