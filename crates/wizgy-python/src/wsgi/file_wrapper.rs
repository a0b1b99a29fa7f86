//! `wsgi.file_wrapper`: serves a real file with sendfile, anything else by reading blocks.
//!
//! PEP 3333's "optional platform-specific file handling": when the app returns the wrapper we
//! created, and its file has a descriptor of a regular file, the connection sends it straight
//! from the page cache. Otherwise the wrapper is an ordinary iterable of `read(blksize)` blocks.

use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd};

use pyo3::prelude::*;

/// `environ['wsgi.file_wrapper'](filelike, blksize=8192)`.
#[pyclass(module = "wizgy._native")]
pub struct FileWrapper {
    filelike: Py<PyAny>,
    blksize: usize,
}

/// A file ready for sendfile: our own descriptor, the start offset and the byte count.
pub struct SendfileParts {
    pub file: File,
    pub offset: u64,
    pub len: u64,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, blksize=8192))]
    fn new(filelike: Py<PyAny>, blksize: usize) -> Self {
        FileWrapper {
            filelike,
            blksize: blksize.max(1),
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let block = self.filelike.call_method1(py, "read", (self.blksize,))?;
        Ok((block.bind(py).len()? > 0).then_some(block))
    }

    /// Closes the wrapped file (PEP 3333: the wrapper's close() calls the file's).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let filelike = self.filelike.bind(py);
        if filelike.hasattr("close")? {
            filelike.call_method0("close")?;
        }
        Ok(())
    }
}

impl FileWrapper {
    /// The file's descriptor (duplicated, so the app may close its own), current offset and
    /// remaining length, if it is a regular file; `None` means "iterate instead".
    pub fn sendfile_parts(&self, py: Python<'_>) -> PyResult<Option<SendfileParts>> {
        let filelike = self.filelike.bind(py);
        let Ok(fileno) = filelike.call_method0("fileno") else {
            return Ok(None);
        };
        let Ok(fd) = fileno.extract::<i32>() else {
            return Ok(None);
        };
        // Where the app left the file: tell() accounts for Python-level buffering.
        let offset = match filelike
            .call_method0("tell")
            .and_then(|t| t.extract::<u64>())
        {
            Ok(offset) => offset,
            Err(_) => return Ok(None),
        };
        let os = py.import("os")?;
        let duplicate: i32 = os.call_method1("dup", (fd,))?.extract()?;
        // SAFETY: os.dup() has just returned this descriptor to us; no Python object refers to
        // it, so the OwnedFd is its only owner and closes it exactly once.
        #[allow(unsafe_code)]
        let owned = unsafe { OwnedFd::from_raw_fd(duplicate) };
        let file = File::from(owned);
        let metadata = file.metadata()?;
        if !metadata.is_file() {
            return Ok(None);
        }
        Ok(Some(SendfileParts {
            file,
            offset,
            len: metadata.len().saturating_sub(offset),
        }))
    }
}
