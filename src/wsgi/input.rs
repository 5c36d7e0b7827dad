//! `wsgi.input`: a file-like reader over the request body. A body the loop has
//! not read yet (`Expect: 100-continue`) is asked for on the first read: the
//! loop then sends `100 Continue`, receives the body, and hands it over.

use std::borrow::Cow;
use std::mem::MaybeUninit;
use std::sync::Arc;

use pyo3::exceptions::{PyIOError, PyOverflowError, PyStopIteration};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::handoff::{Completion, ConnShared, Kind, LoopHandle, Pieces, RequestId};
use crate::http::body::BodyReader;
use crate::http::RequestError;

enum Source {
    Ready(BodyReader),
    Deferred {
        req: RequestId,
        shared: Arc<ConnShared>,
        handle: LoopHandle,
    },
    Failed(RequestError),
}

#[pyclass(module = "maitre._maitre")]
pub struct InputStream {
    source: Source,
}

impl InputStream {
    pub fn ready(body: BodyReader) -> Self {
        InputStream {
            source: Source::Ready(body),
        }
    }

    pub fn deferred(req: RequestId, shared: Arc<ConnShared>, handle: LoopHandle) -> Self {
        InputStream {
            source: Source::Deferred {
                req,
                shared,
                handle,
            },
        }
    }

    /// The framing error a read ran into, if any: it decides the error status.
    pub fn failure(&self) -> Option<&RequestError> {
        match &self.source {
            Source::Failed(e) => Some(e),
            _ => None,
        }
    }

    fn reader(&mut self, py: Python<'_>) -> PyResult<&mut BodyReader> {
        if let Source::Deferred {
            req,
            shared,
            handle,
        } = &self.source
        {
            handle.send(Completion {
                req: *req,
                data: Pieces::new(),
                kind: Kind::Continue,
            });
            let shared = Arc::clone(shared);
            self.source = match py.detach(|| shared.wait_body()) {
                Some(Ok(body)) => Source::Ready(body),
                Some(Err(e)) => Source::Failed(e),
                None => Source::Failed(RequestError::BadRequest(
                    "the client closed the connection before sending the body",
                )),
            };
        }
        match &mut self.source {
            Source::Ready(body) => Ok(body),
            Source::Failed(e) => Err(PyIOError::new_err(e.detail())),
            Source::Deferred { .. } => unreachable!("resolved above"),
        }
    }

    /// Runs a read with the GIL released when it may touch the disk.
    fn with_reader<'py>(
        &mut self,
        py: Python<'py>,
        f: impl for<'r> FnOnce(&'r mut BodyReader) -> std::io::Result<Cow<'r, [u8]>> + Send,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let reader = self.reader(py)?;
        let data = match reader {
            BodyReader::Memory { .. } => f(reader),
            BodyReader::File { .. } => py.detach(|| f(reader)),
        }?;
        Ok(PyBytes::new(py, &data))
    }
}

/// Python's convention: a negative or missing size means "all".
fn limit(size: Option<isize>) -> Option<usize> {
    size.and_then(|s| usize::try_from(s).ok())
}

#[pymethods]
impl InputStream {
    #[pyo3(signature = (size = None))]
    fn read<'py>(&mut self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        let reader = self.reader(py)?;
        if let BodyReader::File { .. } = reader {
            // Straight from the file into the new bytes object: no copy
            // between, and no zeroing first (`PyBytes::new_with` zeroes: a
            // 64 KiB memset per read, 2% of a spooled upload's CPU).
            let n = reader.wanted(limit(size));
            let len = ffi::Py_ssize_t::try_from(n).map_err(|_| PyOverflowError::new_err(()))?;
            // SAFETY: with a null pointer, PyBytes_FromStringAndSize returns a
            // new bytes object of `len` bytes with uninitialised contents (or
            // null and an exception, which `from_owned_ptr_or_err` returns).
            // Ours is its only reference until `read` returns it, so its
            // storage may be written, with the GIL released too: no other
            // thread can reach it, and bytes are not tracked by the GC.
            // `read_into` writes every byte before Ok; on an error the object
            // is dropped unread.
            unsafe {
                let ptr = ffi::PyBytes_FromStringAndSize(std::ptr::null(), len);
                let bytes = Bound::from_owned_ptr_or_err(py, ptr)?.cast_into_unchecked::<PyBytes>();
                let data = ffi::PyBytes_AsString(ptr).cast::<MaybeUninit<u8>>();
                let buf = std::slice::from_raw_parts_mut(data, n);
                py.detach(|| reader.read_into(buf))?;
                return Ok(bytes);
            }
        }
        self.with_reader(py, |r| r.read(limit(size)))
    }

    #[pyo3(signature = (size = None))]
    fn readline<'py>(
        &mut self,
        py: Python<'py>,
        size: Option<isize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        self.with_reader(py, |r| r.read_line(limit(size)))
    }

    #[pyo3(signature = (hint = None))]
    fn readlines<'py>(
        &mut self,
        py: Python<'py>,
        hint: Option<isize>,
    ) -> PyResult<Bound<'py, PyList>> {
        let hint = limit(hint).filter(|&h| h > 0);
        let lines = PyList::empty(py);
        let mut total = 0;
        loop {
            let line = self.readline(py, None)?;
            let n = line.as_bytes().len();
            if n == 0 {
                break;
            }
            lines.append(line)?;
            total += n;
            if hint.is_some_and(|h| total >= h) {
                break;
            }
        }
        Ok(lines)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let line = self.readline(py, None)?;
        if line.as_bytes().is_empty() {
            return Err(PyStopIteration::new_err(()));
        }
        Ok(line)
    }
}
