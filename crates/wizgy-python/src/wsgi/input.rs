//! `wsgi.input`: a binary file-like object over the request body, read on demand.
//!
//! Reading asks the connection for the next piece and waits without the GIL; nothing is read
//! before the app asks (so `100 Continue` goes out on the first read). EOF is sticky, and a
//! read never waits past the end of the body.

use bytes::{Bytes, BytesMut};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use tokio::sync::mpsc;
use wizgy_core::exchange::{AppEvent, BodyPiece, EventSender};

use super::{send_event, ClientDisconnected};

/// The `wsgi.input` stream of one exchange.
#[pyclass(module = "wizgy._native")]
pub struct WsgiInput {
    /// Unread bytes of the current piece.
    buf: Bytes,
    events: EventSender,
    /// Where more body comes from; `None` once there is no more to ask for.
    body: Option<mpsc::Receiver<BodyPiece>>,
    /// Why the body cannot be read; raised again by every later read, so an app never takes
    /// a cut-off body for a complete one.
    error: Option<&'static str>,
}

impl WsgiInput {
    pub fn new(
        initial: Bytes,
        events: EventSender,
        body: Option<mpsc::Receiver<BodyPiece>>,
    ) -> Self {
        WsgiInput {
            buf: initial,
            events,
            body,
            error: None,
        }
    }

    /// Fetches the next piece into `buf`. Returns false at the end of the body.
    fn fill(&mut self, py: Python<'_>) -> PyResult<bool> {
        while self.buf.is_empty() {
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
    fn read_into(&mut self, py: Python<'_>, limit: Option<usize>, line: bool) -> PyResult<Bytes> {
        let mut out: Option<BytesMut> = None;
        loop {
            let wanted = match (limit, &out) {
                (Some(limit), Some(out)) => limit - out.len(),
                (Some(limit), None) => limit,
                (None, _) => usize::MAX,
            };
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
            let piece = self.buf.split_to(take);
            match &mut out {
                // The common case, one piece: no copy until the bytes object is made.
                None if found_newline || take == wanted => return Ok(piece),
                None => out = Some(BytesMut::from(&piece[..])),
                Some(out) => out.extend_from_slice(&piece),
            }
            if found_newline {
                break;
            }
        }
        Ok(out.map(BytesMut::freeze).unwrap_or_default())
    }
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
        let data = self.read_into(py, limit(size), false)?;
        Ok(PyBytes::new(py, &data))
    }

    /// `readline(size=-1)`: one line including its `\n`, or up to `size` bytes of it.
    #[pyo3(signature = (size=None))]
    fn readline<'py>(
        &mut self,
        py: Python<'py>,
        size: Option<isize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let data = self.read_into(py, limit(size), true)?;
        Ok(PyBytes::new(py, &data))
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
            lines.append(PyBytes::new(py, &line))?;
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
        Ok((!line.is_empty()).then(|| PyBytes::new(py, &line)))
    }
}
