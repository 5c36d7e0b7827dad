//! `wsgi.file_wrapper`: iterates a file-like object in blocks and closes it;
//! over a regular file (on Unix) the worker hands the file itself to the
//! event loop, which sends it (see `os::sendfile`) while the worker goes on.

use std::fs::File;

use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

#[pyclass(module = "maitre._maitre")]
pub struct FileWrapper {
    #[pyo3(get)]
    filelike: Py<PyAny>,
    #[pyo3(get)]
    block_size: usize,
}

impl FileWrapper {
    /// The wrapped file, when it is a binary regular file the loop can send:
    /// a duplicate of its descriptor, the app's current position in it (as
    /// the file object reports it, read-ahead included), and the bytes after.
    #[cfg(unix)]
    pub fn regular_file(&self, py: Python<'_>) -> Option<(File, u64, u64)> {
        use std::os::fd::BorrowedFd;
        let f = self.filelike.bind(py);
        let fd: i32 = f.call_method0("fileno").ok()?.extract().ok()?;
        if fd < 0 {
            return None;
        }
        // SAFETY: `fd` is the descriptor the file object (alive, and held
        // with the GIL) just reported open; it is only borrowed for the
        // duplication below, which fails cleanly (EBADF) if it was not.
        let owned = unsafe { BorrowedFd::borrow_raw(fd) }
            .try_clone_to_owned()
            .ok()?;
        let file = File::from(owned);
        let meta = file.metadata().ok()?;
        // A text file's reads are str: only a binary file goes as it is.
        let binary = f
            .call_method1("read", (0,))
            .is_ok_and(|b| b.is_instance_of::<PyBytes>());
        if !meta.is_file() || !binary {
            return None;
        }
        let offset: u64 = f.call_method0("tell").ok()?.extract().ok()?;
        Some((file, offset, meta.len().saturating_sub(offset)))
    }

    #[cfg(not(unix))]
    pub fn regular_file(&self, _py: Python<'_>) -> Option<(File, u64, u64)> {
        None
    }
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, block_size = 8192))]
    fn new(filelike: Py<PyAny>, block_size: usize) -> Self {
        FileWrapper {
            filelike,
            block_size: block_size.max(1),
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let block = self
            .filelike
            .bind(py)
            .call_method1("read", (self.block_size,))?;
        let empty = match block.cast::<PyBytes>() {
            Ok(b) => b.as_bytes().is_empty(),
            Err(_) => block.len()? == 0,
        };
        if empty {
            return Err(PyStopIteration::new_err(()));
        }
        Ok(block)
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let f = self.filelike.bind(py);
        if f.hasattr("close")? {
            f.call_method0("close")?;
        }
        Ok(())
    }
}
