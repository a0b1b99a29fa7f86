//! `wsgi.errors`: a text stream whose writes go to the error log, unformatted.

use pyo3::prelude::*;

/// The `wsgi.errors` stream (PEP 3333: `write`, `writelines`, `flush`).
#[pyclass(module = "wizgy._native", frozen)]
pub struct ErrorStream;

#[pymethods]
impl ErrorStream {
    fn write(&self, text: &str) -> usize {
        wizgy_core::logging::write_error_log(text.as_bytes());
        text.chars().count()
    }

    fn writelines(&self, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for line in lines.try_iter()? {
            let line = line?;
            self.write(line.extract::<&str>()?);
        }
        Ok(())
    }

    /// Every write is already flushed.
    fn flush(&self) {}
}
