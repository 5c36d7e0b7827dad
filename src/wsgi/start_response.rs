//! `start_response` and `write` (PEP 3333), and the response state they share
//! with the task: the head the app declared, the encoder once it went out, and
//! the hand-off of bytes to the event loop with back-pressure.

use std::fs::File;
use std::sync::Arc;

use pyo3::exceptions::{PyAssertionError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use crate::handoff::{
    Completion, ConnShared, Kind, LoopHandle, OutputLimits, Piece, Pieces, PyBytesSlice, RequestId,
};
use crate::http::body::is_tchar;
use crate::http::parse::parse_content_length;
use crate::http::response::{RequestInfo, ResponseEncoder, ResponseHead};
use crate::os::sendfile::FilePiece;

/// Headers an application must not send (PEP 3333); `Connection` is allowed
/// so an app can ask for the connection to close.
const HOP_BY_HOP: [&str; 7] = [
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
];

/// The client went away: stop producing the response.
pub struct ClientGone;

#[pyclass(module = "maitre._maitre")]
pub struct StartResponse {
    req_id: RequestId,
    shared: Arc<ConnShared>,
    handle: LoopHandle,
    req: RequestInfo,
    ident: Option<Arc<str>>,
    limits: OutputLimits,
    head: Option<ResponseHead>,
    encoder: Option<ResponseEncoder>,
    /// Output being built, and the pieces before it (see `push_body`).
    out: Vec<u8>,
    pieces: Pieces,
    finished: bool,
    /// The status sent, once its head has gone out (0 before).
    status: u16,
    /// The body length of a response maitre made in the app's place.
    replaced_body: u64,
    /// The app's headers, kept only for an access log that shows one.
    logged_headers: Option<Vec<(String, String)>>,
}

/// Body chunks this large are written from the app's own `bytes` object:
/// copying them costs more than the bookkeeping.
const ZERO_COPY_MIN: usize = 16 * 1024;

impl StartResponse {
    pub fn new(
        req_id: RequestId,
        shared: Arc<ConnShared>,
        handle: LoopHandle,
        req: RequestInfo,
        ident: Option<Arc<str>>,
        limits: OutputLimits,
        keep_headers: bool,
    ) -> Self {
        StartResponse {
            req_id,
            shared,
            handle,
            req,
            ident,
            limits,
            head: None,
            encoder: None,
            out: Vec::new(),
            pieces: Pieces::new(),
            finished: false,
            status: 0,
            replaced_body: 0,
            logged_headers: keep_headers.then(Vec::new),
        }
    }

    pub fn head_sent(&self) -> bool {
        self.encoder.is_some()
    }

    pub fn client_gone(&self) -> bool {
        self.shared.is_closed()
    }

    /// The response is complete (or broken off): nothing more may be sent.
    pub fn finished(&self) -> bool {
        self.finished
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    /// Body bytes sent, the app's or those of a response made in its place.
    pub fn body_bytes(&self) -> u64 {
        self.encoder
            .as_ref()
            .map_or(self.replaced_body, ResponseEncoder::written)
    }

    /// The headers of the response sent, if they were kept for the access log.
    pub fn logged_headers(&self) -> &[(String, String)] {
        self.logged_headers.as_deref().unwrap_or_default()
    }

    /// Writes the head into the output if it has not gone out yet.
    fn start(&mut self, known_len: Option<u64>) -> PyResult<()> {
        if self.encoder.is_none() {
            let Some(head) = self.head.take() else {
                return Err(PyAssertionError::new_err(
                    "the application sent body data before calling start_response",
                ));
            };
            self.status = head.code;
            // Drain: the client must not send another request on this connection.
            let req = RequestInfo {
                keep_alive: self.req.keep_alive && !self.handle.stopping(),
                ..self.req
            };
            self.encoder = Some(ResponseEncoder::start(
                &mut self.out,
                req,
                head,
                known_len,
                self.ident.as_deref(),
            ));
        }
        Ok(())
    }

    /// Sends one body chunk (with the head first, if it has not gone out).
    /// PEP 3333: each chunk is handed on before the next is asked for.
    pub fn send_chunk(
        &mut self,
        py: Python<'_>,
        chunk: &Bound<'_, PyBytes>,
    ) -> PyResult<Result<(), ClientGone>> {
        if self.finished {
            if chunk.as_bytes().is_empty() {
                return Ok(Ok(()));
            }
            return Err(PyRuntimeError::new_err(
                "body data after the response ended (past its Content-Length, or written \
                 after it was complete)",
            ));
        }
        if chunk.as_bytes().is_empty() && self.encoder.is_none() {
            return Ok(Ok(())); // headers wait for the first non-empty chunk
        }
        self.start(None)?;
        self.push_body(chunk);
        if self
            .encoder
            .as_ref()
            .is_some_and(ResponseEncoder::is_complete)
        {
            // The declared length is all there: head, body and end go to the
            // loop as one message (a framework's one-chunk response).
            self.end();
            return Ok(Ok(()));
        }
        Ok(self.flush(py, Kind::More))
    }

    /// Adds a body chunk to the output: copied when small, else as a piece of
    /// its own that the loop writes from the `bytes` object itself.
    fn push_body(&mut self, chunk: &Bound<'_, PyBytes>) {
        let Some(encoder) = &mut self.encoder else {
            return;
        };
        let data = chunk.as_bytes();
        if data.len() >= ZERO_COPY_MIN {
            if let Some(suffix) = encoder.body_by_reference(&mut self.out, data.len()) {
                if !self.out.is_empty() {
                    self.pieces
                        .push(Piece::Owned(std::mem::take(&mut self.out)));
                }
                let garbage = self.handle.garbage.sender();
                self.pieces
                    .push(Piece::Python(PyBytesSlice::new(chunk, garbage)));
                self.out.extend_from_slice(suffix);
                return;
            }
        }
        encoder.body(&mut self.out, data);
    }

    /// Sends a whole body the app handed over at once (a list or tuple), so the
    /// length is known and head, body and end travel as one completion.
    pub fn send_all(&mut self, chunks: &[Bound<'_, PyBytes>]) -> PyResult<()> {
        let total: usize = chunks.iter().map(|c| c.as_bytes().len()).sum();
        // Head and a small body share the head's buffer: one allocation.
        if let (Some(head), true) = (&mut self.head, total < ZERO_COPY_MIN) {
            head.reserve(total + 128);
        }
        self.start(Some(total as u64))?;
        for chunk in chunks {
            self.push_body(chunk);
        }
        self.end();
        Ok(())
    }

    /// Sends `available` bytes of a regular file from `offset` as the body:
    /// the loop sends them from the file, and the response ends here.
    pub fn send_file(&mut self, file: File, offset: u64, available: u64) -> PyResult<()> {
        self.start(Some(available))?;
        if let Some(encoder) = &mut self.encoder {
            let (len, suffix) = encoder.body_by_file(&mut self.out, available);
            if len > 0 {
                if !self.out.is_empty() {
                    self.pieces
                        .push(Piece::Owned(std::mem::take(&mut self.out)));
                }
                self.pieces
                    .push(Piece::File(FilePiece::new(file, offset, len)));
                self.out.extend_from_slice(suffix);
            }
        }
        self.end();
        Ok(())
    }

    /// Ends the response (an empty body if nothing was sent).
    pub fn finish(&mut self) -> PyResult<()> {
        if self.finished {
            return Ok(());
        }
        self.start(Some(0))?;
        self.end();
        Ok(())
    }

    fn end(&mut self) {
        let keep_alive = self
            .encoder
            .as_mut()
            .is_some_and(|e| e.finish(&mut self.out));
        self.finished = true;
        let _ = self.flush_kind(Kind::End { keep_alive });
    }

    /// The response broke off after its head went out: flush and close.
    pub fn abort(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        let _ = self.flush_kind(Kind::Abort);
    }

    /// Replaces the response with a server-made one (an error before the head went out).
    pub fn replace(&mut self, status: u16, (response, body): (Vec<u8>, u64)) {
        self.status = status;
        self.replaced_body = body;
        self.pieces.clear();
        self.out = response;
        self.finished = true;
        let _ = self.flush_kind(Kind::End { keep_alive: false });
    }

    fn flush_kind(&mut self, kind: Kind) -> Result<(), ClientGone> {
        if self.shared.request_ended(self.req_id.seq) {
            // Broken off while another thread held the response.
            return Err(ClientGone);
        }
        let mut data = std::mem::take(&mut self.pieces);
        if !self.out.is_empty() {
            data.push(Piece::Owned(std::mem::take(&mut self.out)));
        }
        self.shared.hand_over(data.iter().map(Piece::len).sum());
        if self.handle.send(Completion {
            req: self.req_id,
            data,
            kind,
        }) {
            Ok(())
        } else {
            Err(ClientGone)
        }
    }

    /// Hands buffered bytes to the loop; waits (GIL released) while the
    /// connection's unsent output is over its limits (see `OutputLimits`).
    fn flush(&mut self, py: Python<'_>, kind: Kind) -> Result<(), ClientGone> {
        self.flush_kind(kind)?;
        // A streaming worker may run for long: free what the loop has written.
        self.handle.garbage.release(py);
        let shared = &self.shared;
        if shared.is_closed() {
            return Err(ClientGone);
        }
        if shared.full(self.limits) {
            let limits = self.limits;
            if !py.detach(|| shared.wait_room(limits)) {
                return Err(ClientGone);
            }
        }
        Ok(())
    }

    fn set_head(&mut self, status: &Bound<'_, PyAny>, headers: &Bound<'_, PyAny>) -> PyResult<()> {
        let status = status
            .cast::<PyString>()
            .map_err(|_| PyAssertionError::new_err(format!("status {status} is not a string")))?
            .to_str()?;
        if has_break(status, false) {
            return Err(PyValueError::new_err(
                "carriage return/line feed character present in status",
            ));
        }
        let code = status
            .get(..3)
            .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
            .filter(|_| status.len() == 3 || status.as_bytes()[3] == b' ')
            .and_then(|c| c.parse::<u16>().ok())
            .filter(|&c| c >= 100)
            .ok_or_else(|| {
                PyValueError::new_err(format!(
                    "status {status:?} must start with a three-digit code and a space, e.g. '200 OK'"
                ))
            })?;
        if code < 200 {
            // A client reads a 1xx as interim and waits for the real answer.
            return Err(PyValueError::new_err(format!(
                "status {status:?} is informational (1xx): a WSGI application must send a final status"
            )));
        }
        let mut head = ResponseHead::new(self.req.version, code, status)
            .map_err(|c| not_latin1("status", status, c))?;
        if let Some(kept) = &mut self.logged_headers {
            kept.clear(); // start_response again with exc_info replaces the head
        }
        for item in headers.try_iter()? {
            let item = item?;
            let (name, value): (Bound<'_, PyAny>, Bound<'_, PyAny>) =
                item.extract().map_err(|_| {
                    PyAssertionError::new_err(format!("header {item} is not a (name, value) tuple"))
                })?;
            let (Ok(name), Ok(value)) = (name.cast::<PyString>(), value.cast::<PyString>()) else {
                return Err(PyAssertionError::new_err(format!(
                    "header name and value must be strings: {item}"
                )));
            };
            let (name, value) = (name.to_str()?, value.to_str()?);
            if !is_token(name) {
                return Err(PyValueError::new_err(format!(
                    "invalid header name {name:?}"
                )));
            }
            if has_break(value, true) {
                return Err(PyValueError::new_err(
                    "carriage return/line feed character present in header value",
                ));
            }
            if name.eq_ignore_ascii_case("content-length") {
                let n = parse_content_length(value.trim().as_bytes()).ok_or_else(|| {
                    PyValueError::new_err(format!("invalid Content-Length {value:?}"))
                })?;
                match head.content_length.replace(n) {
                    // The same length twice frames the same: send it once.
                    Some(prev) if prev == n => continue,
                    // Which one frames the body is a guess a proxy may make differently.
                    Some(prev) => {
                        return Err(PyValueError::new_err(format!(
                            "conflicting Content-Length headers: {prev} and {n}"
                        )))
                    }
                    None => {}
                }
            } else if name.eq_ignore_ascii_case("connection") {
                head.close |= value
                    .split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("close"));
            } else if HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name)) {
                return Err(PyAssertionError::new_err(format!(
                    "{name} is a hop-by-hop header; a WSGI application cannot send it (PEP 3333)"
                )));
            }
            head.push_header(name, value)
                .map_err(|c| not_latin1(name, value, c))?;
            if let Some(kept) = &mut self.logged_headers {
                kept.push((name.to_owned(), value.to_owned()));
            }
        }
        self.head = Some(head);
        Ok(())
    }
}

/// PEP 3333: status and headers are native strings holding latin-1 only.
fn not_latin1(what: &str, text: &str, c: char) -> PyErr {
    PyValueError::new_err(format!(
        "{what} value {text:?} holds {c:?}, which latin-1 cannot encode; \
         HTTP headers carry latin-1 only (PEP 3333): encode it, e.g. as RFC 8187 or percent-escapes"
    ))
}

fn is_token(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(is_tchar)
}

/// CR, LF (or NUL, `nul`) in a status or header value: a scan of the bytes,
/// cheaper than `str::contains` with a list of chars.
fn has_break(text: &str, nul: bool) -> bool {
    text.bytes()
        .any(|b| b == b'\r' || b == b'\n' || (nul && b == 0))
}

#[pymethods]
impl StartResponse {
    /// `start_response(status, headers, exc_info=None)` → `write`.
    #[pyo3(signature = (status, headers, exc_info = None))]
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        status: &Bound<'py, PyAny>,
        headers: &Bound<'py, PyAny>,
        exc_info: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let exc_info = exc_info.filter(|e| !e.is_none());
        {
            let mut this = slf.borrow_mut();
            match exc_info {
                Some(info) if this.head_sent() => {
                    // Too late to change the response: re-raise for the server to handle.
                    return Err(PyErr::from_value(info.get_item(1)?));
                }
                None if this.head.is_some() || this.head_sent() => {
                    return Err(PyAssertionError::new_err(
                        "start_response called a second time without providing exc_info",
                    ));
                }
                _ => {}
            }
            this.set_head(status, headers)?;
        }
        slf.getattr(pyo3::intern!(slf.py(), "write"))
    }

    /// The legacy `write(data)` callable start_response returns.
    fn write(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let data = data.cast::<PyBytes>().map_err(|_| {
            PyTypeError::new_err(format!(
                "write() argument must be bytes, not {}",
                data.get_type()
                    .name()
                    .map_or_else(|_| "?".into(), |n| n.to_string())
            ))
        })?;
        match self.send_chunk(py, data)? {
            Ok(()) => Ok(()),
            Err(ClientGone) => Err(pyo3::exceptions::PyConnectionAbortedError::new_err(
                "the client closed the connection, or the response was broken off",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{has_break, is_token};

    #[test]
    fn header_names_are_tokens() {
        assert!(is_token("X-Custom_Name"));
        assert!(is_token("!#$%&'*+-.^_`|~"));
        assert!(!is_token(""));
        assert!(!is_token("Bad Name"));
        assert!(!is_token("Bad:Name"));
        assert!(!is_token("Bad(Name)"));
        assert!(!is_token("Café"));
    }

    #[test]
    fn breaks_in_status_and_values() {
        assert!(!has_break("200 OK", false));
        assert!(has_break("200 OK\r\nX: y", false));
        assert!(has_break("a\nb", false));
        assert!(!has_break("a\0b", false));
        assert!(has_break("a\0b", true));
        assert!(!has_break("text/plain; charset=utf-8", true));
    }
}
