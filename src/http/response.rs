//! Responses: the head (status line, the app's headers, the framing and
//! persistence headers we add) and the body encoder that keeps the wire honest
//! (never more than a declared Content-Length; chunked or close-delimited when
//! the length is unknown; no body where HTTP forbids one).

use super::{date, decimal, Version};

/// What the request means for its response.
#[derive(Clone, Copy, Debug)]
pub struct RequestInfo {
    pub version: Version,
    pub is_head: bool,
    /// The client's persistence wish (already false when the server is stopping).
    pub keep_alive: bool,
}

/// How the response body is delimited on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyEncoding {
    /// HEAD, 1xx, 204 and 304: headers only.
    Empty,
    Length(u64),
    Chunked,
    /// HTTP/1.0 without a length: the end of the body is the end of the connection.
    UntilClose,
}

/// A response's status line and the app's headers, already encoded for the
/// wire (latin-1, PEP 3333) in the buffer the whole response will be written
/// to, so a response costs one allocation, not one per header.
#[derive(Debug)]
pub struct ResponseHead {
    wire: Vec<u8>,
    pub code: u16,
    /// The app's own Content-Length, parsed.
    pub content_length: Option<u64>,
    /// The app said `Connection: close`.
    pub close: bool,
    has_date: bool,
    has_server: bool,
}

/// Room for a typical head and a small body in the head's first allocation.
const HEAD_CAPACITY: usize = 512;

impl ResponseHead {
    /// Starts with the status line; `status` is what the app passed, e.g.
    /// `200 OK`. Fails with the first character latin-1 cannot carry.
    pub fn new(version: Version, code: u16, status: &str) -> Result<Self, char> {
        let mut head = ResponseHead::open(version, code);
        push_latin1(&mut head.wire, status)?;
        head.wire.extend_from_slice(b"\r\n");
        Ok(head)
    }

    /// A head whose status line is still to be written after `HTTP/1.x `.
    fn open(version: Version, code: u16) -> Self {
        let mut wire = Vec::with_capacity(HEAD_CAPACITY);
        wire.extend_from_slice(version.as_str().as_bytes());
        wire.push(b' ');
        ResponseHead {
            wire,
            code,
            content_length: None,
            close: false,
            has_date: false,
            has_server: false,
        }
    }

    /// Adds one of the app's headers (its name already checked to be a token).
    /// `Connection` is left out: the server writes its own, saying what it will do.
    pub fn push_header(&mut self, name: &str, value: &str) -> Result<(), char> {
        if name.eq_ignore_ascii_case("connection") {
            return Ok(());
        }
        self.has_date |= name.eq_ignore_ascii_case("date");
        self.has_server |= name.eq_ignore_ascii_case("server");
        let mark = self.wire.len();
        self.wire.extend_from_slice(name.as_bytes());
        self.wire.extend_from_slice(b": ");
        push_latin1(&mut self.wire, value).inspect_err(|_| self.wire.truncate(mark))?;
        self.wire.extend_from_slice(b"\r\n");
        Ok(())
    }

    /// Makes room for `n` more bytes (a body about to be copied in after the head).
    pub fn reserve(&mut self, n: usize) {
        self.wire.reserve(n);
    }
}

/// Appends `s` encoded as latin-1; fails on the first character above U+00FF.
pub fn push_latin1(out: &mut Vec<u8>, s: &str) -> Result<(), char> {
    if s.is_ascii() {
        out.extend_from_slice(s.as_bytes());
        return Ok(());
    }
    for c in s.chars() {
        out.push(u8::try_from(c).map_err(|_| c)?);
    }
    Ok(())
}

/// Writes one response's bytes into an output buffer.
#[derive(Debug)]
pub struct ResponseEncoder {
    pub encoding: BodyEncoding,
    written: u64,
    keep_alive: bool,
}

impl ResponseEncoder {
    /// Writes the head and returns the encoder for the body. `known_len` is the
    /// full body length when the server already holds all of it. An empty
    /// `out` takes over the head's buffer instead of copying it.
    pub fn start(
        out: &mut Vec<u8>,
        req: RequestInfo,
        head: ResponseHead,
        known_len: Option<u64>,
        ident: Option<&str>,
    ) -> Self {
        let no_body_status = head.code < 200 || head.code == 204 || head.code == 304;
        let length = head.content_length.or(known_len);
        let mut keep_alive = req.keep_alive && !head.close;
        let encoding = if no_body_status || req.is_head {
            BodyEncoding::Empty
        } else if let Some(n) = length {
            BodyEncoding::Length(n)
        } else if req.version == Version::Http11 {
            BodyEncoding::Chunked
        } else {
            keep_alive = false;
            BodyEncoding::UntilClose
        };
        if out.is_empty() {
            *out = head.wire;
        } else {
            out.extend_from_slice(&head.wire);
        }
        if head.content_length.is_none() && !no_body_status {
            // A HEAD answered with no body says nothing of a GET's length.
            if let Some(n) = known_len.filter(|&n| n > 0 || !req.is_head) {
                header(out, b"Content-Length", decimal(n, &mut [0; 20]));
            }
        }
        if encoding == BodyEncoding::Chunked {
            header(out, b"Transfer-Encoding", b"chunked");
        }
        if !keep_alive {
            header(out, b"Connection", b"close");
        } else if req.version == Version::Http10 {
            header(out, b"Connection", b"Keep-Alive");
        }
        if !head.has_date {
            out.extend_from_slice(b"Date: ");
            date::append_now(out);
            out.extend_from_slice(b"\r\n");
        }
        if let (false, Some(ident)) = (head.has_server, ident) {
            header(out, b"Server", ident.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        ResponseEncoder {
            encoding,
            written: 0,
            keep_alive,
        }
    }

    /// Appends body bytes in the chosen encoding. Bytes past a declared
    /// Content-Length are dropped and the connection will close.
    pub fn body(&mut self, out: &mut Vec<u8>, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        match self.encoding {
            BodyEncoding::Empty => {}
            BodyEncoding::Length(n) => {
                let room = n - self.written;
                let take = (data.len() as u64).min(room) as usize;
                out.extend_from_slice(&data[..take]);
                self.written += take as u64;
                if take < data.len() {
                    self.keep_alive = false;
                }
            }
            BodyEncoding::Chunked => {
                push_hex(out, data.len());
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(data);
                out.extend_from_slice(b"\r\n");
                self.written += data.len() as u64;
            }
            BodyEncoding::UntilClose => {
                out.extend_from_slice(data);
                self.written += data.len() as u64;
            }
        }
    }

    /// For a body chunk of `len` bytes the caller sends from its own buffer
    /// (no copy): writes the framing that goes before it into `out` and
    /// returns what goes after it; `None` when the chunk must go through
    /// `body` instead (to be truncated or dropped).
    pub fn body_by_reference(&mut self, out: &mut Vec<u8>, len: usize) -> Option<&'static [u8]> {
        match self.encoding {
            BodyEncoding::Length(n) if self.written + len as u64 <= n => {
                self.written += len as u64;
                Some(b"")
            }
            BodyEncoding::UntilClose => {
                self.written += len as u64;
                Some(b"")
            }
            BodyEncoding::Chunked if len > 0 => {
                push_hex(out, len);
                out.extend_from_slice(b"\r\n");
                self.written += len as u64;
                Some(b"\r\n")
            }
            _ => None,
        }
    }

    /// For a file body of `available` bytes the loop sends itself: writes the
    /// framing that goes before it into `out`, and returns how many of its
    /// bytes go out (none for HEAD, at most the declared length) and what
    /// goes after them.
    pub fn body_by_file(&mut self, out: &mut Vec<u8>, available: u64) -> (u64, &'static [u8]) {
        let len = match self.encoding {
            BodyEncoding::Empty => 0,
            BodyEncoding::Length(n) => available.min(n - self.written),
            BodyEncoding::Chunked | BodyEncoding::UntilClose => available,
        };
        if len == 0 {
            return (0, b"");
        }
        self.written += len;
        if self.encoding != BodyEncoding::Chunked {
            return (len, b"");
        }
        push_hex(out, len as usize);
        out.extend_from_slice(b"\r\n");
        (len, b"\r\n")
    }

    /// Body bytes sent so far (without chunked framing).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// A declared length has been sent in full: nothing more can follow.
    pub fn is_complete(&self) -> bool {
        matches!(self.encoding, BodyEncoding::Length(n) if self.written == n)
    }

    /// Ends the body; returns whether the connection may carry another request.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> bool {
        match self.encoding {
            BodyEncoding::Chunked => out.extend_from_slice(b"0\r\n\r\n"),
            // Fewer bytes than declared: the client would wait for the rest.
            BodyEncoding::Length(n) if self.written < n => self.keep_alive = false,
            BodyEncoding::UntilClose => self.keep_alive = false,
            _ => {}
        }
        self.keep_alive
    }
}

fn header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn push_hex(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// A complete response the server writes on its own (errors, 100 Continue is
/// separate), and the length of its body (for the access log); always closes
/// the connection.
pub fn simple_response(
    version: Version,
    code: u16,
    reason: &str,
    detail: &str,
    ident: Option<&str>,
) -> (Vec<u8>, u64) {
    let body = format!("{reason}\r\n\r\n{detail}\r\n");
    // Server-made: the reasons and header values are ASCII, written as they are.
    let mut head = ResponseHead::open(version, code);
    head.wire
        .extend_from_slice(format!("{code} {reason}\r\n").as_bytes());
    header(
        &mut head.wire,
        b"Content-Type",
        b"text/plain; charset=utf-8",
    );
    header(
        &mut head.wire,
        b"Content-Length",
        decimal(body.len() as u64, &mut [0; 20]),
    );
    head.content_length = Some(body.len() as u64);
    head.close = true;
    let mut out = Vec::new();
    let req = RequestInfo {
        version,
        is_head: false,
        keep_alive: false,
    };
    let mut enc = ResponseEncoder::start(&mut out, req, head, None, ident);
    enc.body(&mut out, body.as_bytes());
    enc.finish(&mut out);
    (out, body.len() as u64)
}

pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn head(
        version: Version,
        status: &str,
        headers: &[(&str, &str)],
        cl: Option<u64>,
    ) -> ResponseHead {
        let mut h = ResponseHead::new(version, status[..3].parse().unwrap(), status).unwrap();
        for (name, value) in headers {
            h.push_header(name, value).unwrap();
        }
        h.content_length = cl;
        h
    }

    /// A response with no app headers, its head written: (output, encoder).
    fn started(
        req: RequestInfo,
        status: &str,
        cl: Option<u64>,
        known: Option<u64>,
    ) -> (Vec<u8>, ResponseEncoder) {
        let mut out = Vec::new();
        let e = ResponseEncoder::start(
            &mut out,
            req,
            head(req.version, status, &[], cl),
            known,
            None,
        );
        (out, e)
    }

    /// An HTTP/1.1 response whose app declared `Content-Length: n`, head written.
    fn declared(n: u64) -> (Vec<u8>, ResponseEncoder) {
        let mut out = Vec::new();
        let h = head(
            Version::Http11,
            "200 OK",
            &[("Content-Length", &n.to_string())],
            Some(n),
        );
        let e = ResponseEncoder::start(&mut out, H11, h, None, None);
        (out, e)
    }

    const H11: RequestInfo = RequestInfo {
        version: Version::Http11,
        is_head: false,
        keep_alive: true,
    };

    fn text(v: &[u8]) -> String {
        String::from_utf8_lossy(v).into_owned()
    }

    #[test]
    fn known_length_adds_content_length() {
        let mut out = Vec::new();
        let mut e = ResponseEncoder::start(
            &mut out,
            H11,
            head(H11.version, "200 OK", &[], None),
            Some(5),
            Some("maitre"),
        );
        e.body(&mut out, b"hello");
        assert!(e.finish(&mut out));
        let t = text(&out);
        assert!(
            t.starts_with("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nDate: "),
            "{t}"
        );
        assert!(t.ends_with("GMT\r\nServer: maitre\r\n\r\nhello"), "{t}");
    }

    #[test]
    fn unknown_length_is_chunked_on_11() {
        let (mut out, mut e) = started(H11, "200 OK", None, None);
        let start = out.len();
        e.body(&mut out, b"hello");
        e.body(&mut out, b"");
        e.body(&mut out, b"0123456789abcdef!");
        assert!(e.finish(&mut out));
        assert!(text(&out[..start]).contains("Transfer-Encoding: chunked\r\n"));
        assert_eq!(
            text(&out[start..]),
            "5\r\nhello\r\n11\r\n0123456789abcdef!\r\n0\r\n\r\n"
        );
    }

    #[test]
    fn unknown_length_on_10_closes() {
        let req = RequestInfo {
            version: Version::Http10,
            ..H11
        };
        let (mut out, mut e) = started(req, "200 OK", None, None);
        e.body(&mut out, b"abc");
        assert!(!e.finish(&mut out));
        let t = text(&out);
        assert!(t.starts_with("HTTP/1.0 200 OK\r\n"));
        assert!(t.contains("Connection: close\r\n"));
        assert!(t.ends_with("\r\n\r\nabc"));
    }

    #[test]
    fn keep_alive_on_10_is_announced() {
        let req = RequestInfo {
            version: Version::Http10,
            ..H11
        };
        let (mut out, mut e) = started(req, "200 OK", Some(0), None);
        assert!(e.finish(&mut out));
        assert!(text(&out).contains("Connection: Keep-Alive\r\n"));
    }

    #[test]
    fn never_more_than_declared() {
        let (mut out, mut e) = declared(3);
        let start = out.len();
        e.body(&mut out, b"abcdef");
        assert!(!e.finish(&mut out));
        assert_eq!(&out[start..], b"abc");
    }

    #[test]
    fn body_by_reference_frames_or_declines() {
        let (mut out, mut e) = declared(5);
        let start = out.len();
        assert_eq!(e.body_by_reference(&mut out, 5), Some(&b""[..]));
        assert_eq!(out.len(), start);
        assert_eq!(
            e.body_by_reference(&mut out, 1),
            None,
            "past the declared length"
        );
        assert!(e.finish(&mut out));

        let (mut out, mut e) = started(H11, "200 OK", None, None);
        let start = out.len();
        assert_eq!(e.body_by_reference(&mut out, 26), Some(&b"\r\n"[..]));
        assert_eq!(&out[start..], b"1a\r\n");

        let req = RequestInfo {
            is_head: true,
            ..H11
        };
        let (mut out, mut e) = started(req, "200 OK", None, None);
        assert_eq!(e.body_by_reference(&mut out, 5), None, "HEAD sends no body");
    }

    #[test]
    fn file_bodies_are_framed_and_bounded() {
        // Declared shorter than the file: only the declared length goes out.
        let (mut out, mut e) = declared(10);
        let start = out.len();
        assert_eq!(e.body_by_file(&mut out, 25), (10, &b""[..]));
        assert_eq!(out.len(), start, "no framing for a length body");
        assert!(e.finish(&mut out));
        // Declared longer: the file, then the connection closes.
        let (mut out, mut e) = declared(10);
        assert_eq!(e.body_by_file(&mut out, 4).0, 4);
        assert!(!e.finish(&mut out));
        // Chunked (never chosen for files today, but framed right): one chunk.
        let (mut out, mut e) = started(H11, "200 OK", None, None);
        let start = out.len();
        assert_eq!(e.body_by_file(&mut out, 26), (26, &b"\r\n"[..]));
        assert_eq!(&out[start..], b"1a\r\n");
        // HEAD: nothing.
        let req = RequestInfo {
            is_head: true,
            ..H11
        };
        let (mut out, mut e) = started(req, "200 OK", None, Some(5));
        assert_eq!(e.body_by_file(&mut out, 5).0, 0);
    }

    #[test]
    fn fewer_than_declared_closes() {
        let (mut out, mut e) = declared(10);
        e.body(&mut out, b"abc");
        assert!(!e.finish(&mut out));
    }

    #[test]
    fn no_body_statuses_and_head() {
        for (status, req) in [
            ("204 No Content", H11),
            ("304 Not Modified", H11),
            (
                "200 OK",
                RequestInfo {
                    is_head: true,
                    ..H11
                },
            ),
        ] {
            let (mut out, mut e) = started(req, status, None, Some(5));
            let start = out.len();
            e.body(&mut out, b"hello");
            assert!(e.finish(&mut out), "{status}");
            assert_eq!(out.len(), start, "{status}: no body bytes");
            assert!(!text(&out).contains("chunked"));
        }
        // HEAD still announces the length a GET would have.
        let mut out = Vec::new();
        let req = RequestInfo {
            is_head: true,
            ..H11
        };
        ResponseEncoder::start(
            &mut out,
            req,
            head(req.version, "200 OK", &[], None),
            Some(5),
            None,
        );
        assert!(text(&out).contains("Content-Length: 5\r\n"));
    }

    #[test]
    fn app_connection_close_and_own_date_server() {
        let mut out = Vec::new();
        let mut h = head(
            Version::Http11,
            "200 OK",
            &[("Connection", "close"), ("Date", "x"), ("Server", "app")],
            Some(0),
        );
        h.close = true;
        let mut e = ResponseEncoder::start(&mut out, H11, h, None, Some("maitre"));
        assert!(!e.finish(&mut out));
        let t = text(&out);
        assert_eq!(t.matches("Date:").count(), 1);
        assert!(t.contains("Server: app\r\n") && !t.contains("maitre"));
        assert_eq!(t.matches("Connection:").count(), 1);
        assert!(t.contains("Connection: close\r\n"));
    }

    #[test]
    fn headers_are_latin1() {
        let mut h = head(Version::Http11, "200 Ça va", &[("X-Name", "café")], Some(0));
        assert_eq!(h.push_header("X-Euro", "5 €"), Err('€'));
        let mut out = Vec::new();
        ResponseEncoder::start(&mut out, H11, h, None, None);
        assert!(out.starts_with(b"HTTP/1.1 200 \xc7a va\r\nX-Name: caf\xe9\r\nDate: "));
        assert!(
            !text(&out).contains("X-Euro"),
            "a failed header leaves nothing behind"
        );
        assert_eq!(
            ResponseHead::new(Version::Http11, 200, "200 €").err(),
            Some('€')
        );
    }

    #[test]
    fn simple_response_is_complete() {
        let (r, body) = simple_response(Version::Http11, 400, "Bad Request", "why", Some("maitre"));
        let t = text(&r);
        assert!(t.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(t.contains("Connection: close\r\n"));
        assert!(t.contains("Content-Length: 20\r\n"), "{t}");
        assert!(t.ends_with("\r\n\r\nBad Request\r\n\r\nwhy\r\n"));
        assert_eq!(body, 20);
    }
}
