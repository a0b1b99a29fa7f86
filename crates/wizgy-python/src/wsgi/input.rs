//! `wsgi.input`: a binary file-like object over the request body, read on demand.
//!
//! Reading asks the connection for the next piece and waits without the GIL; nothing is read
//! before the app asks (so `100 Continue` goes out on the first read). EOF is sticky, and a
//! read never waits past the end of the body.

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use tokio::sync::mpsc;
use wizgy_core::exchange::{AppEvent, Body, BodyPiece, EventSender};

use super::{send_event, ClientDisconnected};

/// The `wsgi.input` stream of one exchange.
#[pyclass(module = "wizgy._native")]
pub struct WsgiInput {
    /// Unread bytes of the current piece.
    buf: Bytes,
    /// The piece after it, when the body read before the app came in two.
    queued: Bytes,
    events: EventSender,
    /// Where more body comes from; `None` once there is no more to ask for.
    body: Option<mpsc::Receiver<BodyPiece>>,
    /// Why the body cannot be read; raised again by every later read, so an app never takes
    /// a cut-off body for a complete one.
    error: Option<&'static str>,
}

impl WsgiInput {
    pub fn new(
        initial: [Bytes; 2],
        events: EventSender,
        body: Option<mpsc::Receiver<BodyPiece>>,
    ) -> Self {
        let [buf, queued] = initial;
        WsgiInput {
            buf,
            queued,
            events,
            body,
            error: None,
        }
    }

    /// Fetches the next piece into `buf`. Returns false at the end of the body.
    fn fill(&mut self, py: Python<'_>) -> PyResult<bool> {
        while self.buf.is_empty() {
            if !self.queued.is_empty() {
                self.buf = std::mem::take(&mut self.queued);
                break;
            }
            if let Some(reason) = self.error {
                return Err(ClientDisconnected::new_err(reason));
            }
            let Some(body) = self.body.as_mut() else {
                return Ok(false);
            };
            if send_event(py, &self.events, AppEvent::ReadBody, 0).is_err() {
                self.fail("client disconnected before the body was complete");
                continue;
            }
            match py.detach(|| body.blocking_recv()) {
                Some(BodyPiece::Data(data)) => self.buf = data,
                Some(BodyPiece::End) => self.body = None,
                // The connection is gone before saying the body ended: it did not.
                None => self.fail("client disconnected before the body was complete"),
                Some(BodyPiece::Error(reason)) => self.fail(reason),
            }
        }
        Ok(true)
    }

    fn fail(&mut self, reason: &'static str) {
        self.body = None;
        self.error = Some(reason);
    }

    /// Reads up to `limit` bytes (all when `None`), stopping after `\n` when `line` is set.
    /// The bytes come back as the pieces they arrived in; [`into_bytes`] copies them once,
    /// into the `bytes` object the app gets.
    fn read_into(&mut self, py: Python<'_>, limit: Option<usize>, line: bool) -> PyResult<Body> {
        let mut pieces = Body::default();
        let mut len = 0;
        loop {
            let wanted = limit.map_or(usize::MAX, |limit| limit - len);
            if wanted == 0 || !self.fill(py)? {
                break;
            }
            let mut take = wanted.min(self.buf.len());
            let mut found_newline = false;
            if line {
                if let Some(i) = memchr_newline(&self.buf[..take]) {
                    take = i + 1;
                    found_newline = true;
                }
            }
            pieces.push(self.buf.split_to(take));
            len += take;
            if found_newline {
                break;
            }
        }
        Ok(pieces)
    }
}

/// The `bytes` object made from `pieces`: the one copy of body bytes on their way to the app.
fn into_bytes(py: Python<'_>, pieces: Body) -> Bound<'_, PyBytes> {
    let pieces = match pieces {
        Body::One(piece) => return PyBytes::new(py, &piece),
        Body::Many(pieces) => pieces,
    };
    let total = pieces.iter().map(Bytes::len).sum::<usize>();
    let Ok(len) = pyo3::ffi::Py_ssize_t::try_from(total) else {
        unreachable!("a body piece is far smaller than isize::MAX")
    };
    // SAFETY: with a NULL source, PyBytes_FromStringAndSize makes a bytes object of `len`
    // uninitialised bytes that the caller must fill before anyone else sees it; the loop
    // below writes exactly `len` bytes (the pieces' lengths sum to it) into the buffer
    // PyBytes_AsString points at, before the object is returned. The GIL is held (`py`).
    // (pyo3's PyBytes::new_with zero-fills the buffer first: a memset as large as the body.)
    #[allow(unsafe_code)]
    let bytes = unsafe {
        let ptr = pyo3::ffi::PyBytes_FromStringAndSize(std::ptr::null(), len);
        if !ptr.is_null() {
            let mut at = pyo3::ffi::PyBytes_AsString(ptr).cast::<u8>();
            for piece in &pieces {
                std::ptr::copy_nonoverlapping(piece.as_ptr(), at, piece.len());
                at = at.add(piece.len());
            }
        }
        Bound::from_owned_ptr_or_err(py, ptr)
    };
    // Fails only out of memory, where PyBytes::new panics too.
    let bytes = bytes.expect("allocating the bytes of a body read");
    bytes
        .cast_into::<PyBytes>()
        .expect("PyBytes_FromStringAndSize returns bytes")
}

fn memchr_newline(data: &[u8]) -> Option<usize> {
    data.iter().position(|&b| b == b'\n')
}

/// `None` or a negative size means "no limit", as for io.RawIOBase.
fn limit(size: Option<isize>) -> Option<usize> {
    size.and_then(|s| usize::try_from(s).ok())
}

#[pymethods]
impl WsgiInput {
    /// `read(size=-1)`: up to `size` bytes; fewer only at the end of the body.
    #[pyo3(signature = (size=None))]
    fn read<'py>(&mut self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        Ok(into_bytes(py, self.read_into(py, limit(size), false)?))
    }

    /// `readline(size=-1)`: one line including its `\n`, or up to `size` bytes of it.
    #[pyo3(signature = (size=None))]
    fn readline<'py>(
        &mut self,
        py: Python<'py>,
        size: Option<isize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        Ok(into_bytes(py, self.read_into(py, limit(size), true)?))
    }

    /// `readlines(hint=-1)`: lines until the end, or until `hint` bytes have been read.
    #[pyo3(signature = (hint=None))]
    fn readlines<'py>(
        &mut self,
        py: Python<'py>,
        hint: Option<isize>,
    ) -> PyResult<Bound<'py, PyList>> {
        let hint = limit(hint).filter(|&h| h > 0);
        let lines = PyList::empty(py);
        let mut total = 0;
        loop {
            let line = self.read_into(py, None, true)?;
            if line.is_empty() {
                break;
            }
            total += line.len();
            lines.append(into_bytes(py, line))?;
            if hint.is_some_and(|h| total >= h) {
                break;
            }
        }
        Ok(lines)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let line = self.read_into(py, None, true)?;
        Ok((!line.is_empty()).then(|| into_bytes(py, line)))
    }
}
