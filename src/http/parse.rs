//! Request heads: httparse does the tokenising; this file decides what the head
//! means for framing (RFC 9112 §6): body length, persistence, `Expect`.
//! Framing is decided here and only here.

use std::mem::MaybeUninit;

use super::{RequestError, Version};

/// Headers parsed into a stack array; a head with more is parsed again into
/// a heap array, so only `max_request_header_size` limits the count.
const STACK_HEADERS: usize = 128;

/// Empty lines ignored before a request line (RFC 9112 §2.2 asks for at least
/// one); more is a 400, so a stream of CRLF is not buffered and rescanned.
const MAX_EMPTY_LINES: usize = 4;

/// A byte range inside a `RequestHead`'s bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn within(base: &[u8], part: &[u8]) -> Span {
        // httparse hands out sub-slices of `base`, so the offset is exact.
        let start = part.as_ptr() as usize - base.as_ptr() as usize;
        Span {
            start: start as u32,
            end: (start + part.len()) as u32,
        }
    }

    pub fn of<'a>(&self, raw: &'a [u8]) -> &'a [u8] {
        &raw[self.start as usize..self.end as usize]
    }
}

/// How the request body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    None,
    Length(u64),
    Chunked,
}

/// A parsed request head, owning a copy of its bytes so it can cross threads.
#[derive(Debug)]
pub struct RequestHead {
    /// The head's bytes (`raw_len` of them), then the header table: per
    /// header, four native-endian u32 (name start and end, value start and
    /// end). One allocation per request, and a `Job` small enough to move.
    buf: Vec<u8>,
    raw_len: usize,
    pub method: Span,
    pub target: Span,
    pub version: Version,
    pub framing: BodyFraming,
    /// The client's wish: HTTP/1.1 unless `Connection: close`, HTTP/1.0 only with `keep-alive`.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request that has a body.
    pub expect_continue: bool,
}

impl RequestHead {
    pub fn method(&self) -> &[u8] {
        self.method.of(&self.buf[..self.raw_len])
    }

    pub fn target(&self) -> &[u8] {
        self.target.of(&self.buf[..self.raw_len])
    }

    pub fn is_head(&self) -> bool {
        self.method() == b"HEAD"
    }

    pub fn header_pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let (raw, table) = self.buf.split_at(self.raw_len);
        table.chunks_exact(ENTRY).map(move |entry| {
            let word = |i: usize| {
                let mut w = [0; 4];
                w.copy_from_slice(&entry[4 * i..4 * i + 4]);
                u32::from_ne_bytes(w) as usize
            };
            (&raw[word(0)..word(1)], &raw[word(2)..word(3)])
        })
    }
}

/// Bytes per header in `RequestHead::buf`'s table.
const ENTRY: usize = 16;

/// Parses one request head from the front of `buf`.
///
/// `Ok(None)` means more bytes are needed; `Ok(Some((head, n)))` consumed `n` bytes.
pub fn parse_head(
    buf: &[u8],
    max_header_size: usize,
) -> Result<Option<(RequestHead, usize)>, RequestError> {
    let skip = leading_empty_lines(buf)?;
    let buf = &buf[skip..];
    // Uninitialised: filling 128 empty headers cost more than parsing a short head.
    let mut headers = [const { MaybeUninit::<httparse::Header>::uninit() }; STACK_HEADERS];
    let mut spill = Vec::new();
    let mut req = httparse::Request::new(&mut []);
    let mut result = req.parse_with_uninit_headers(buf, &mut headers);
    if result == Err(httparse::Error::TooManyHeaders) {
        // One slot per line within the limit (and one for a line still
        // arriving) fits any head within it; running out means it is over.
        let window = &buf[..buf.len().min(max_header_size)];
        spill.reserve_exact(window.iter().filter(|&&b| b == b'\n').count() + 1);
        req = httparse::Request::new(&mut []);
        result = req.parse_with_uninit_headers(buf, spill.spare_capacity_mut());
    }
    let status = match result {
        Ok(s) => s,
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::HeaderTooLarge),
        Err(httparse::Error::Version) => {
            return Err(RequestError::BadRequest("unsupported HTTP version"))
        }
        Err(_) => return Err(RequestError::BadRequest("malformed request head")),
    };
    let len = match status {
        httparse::Status::Partial => {
            if buf.len() > max_header_size {
                return Err(RequestError::HeaderTooLarge);
            }
            return Ok(None);
        }
        httparse::Status::Complete(len) => len,
    };
    if len > max_header_size {
        return Err(RequestError::HeaderTooLarge);
    }
    if has_bare_lf(&buf[..len]) {
        // httparse takes a lone LF as a line end; a proxy that splits lines
        // on CRLF only would see a different request (request smuggling).
        return Err(RequestError::BadRequest("bare LF in the request head"));
    }
    let version = match req.version {
        Some(0) => Version::Http10,
        _ => Version::Http11,
    };
    let (Some(method), Some(path)) = (req.method, req.path) else {
        return Err(RequestError::BadRequest("malformed request line"));
    };
    if method.bytes().any(|b| b.is_ascii_lowercase()) {
        // Methods are case-sensitive, and every registered one is upper
        // case: `get` is no GET. waitress refuses it (nginx drops it); so do we.
        return Err(RequestError::BadRequest("malformed HTTP method"));
    }
    let mut owned = Vec::with_capacity(len + ENTRY * req.headers.len());
    owned.extend_from_slice(&buf[..len]);
    let span = |part: &[u8]| Span::within(&buf[..len], part);
    let mut head = RequestHead {
        method: span(method.as_bytes()),
        target: span(path.as_bytes()),
        version,
        framing: BodyFraming::None,
        keep_alive: version == Version::Http11,
        expect_continue: false,
        buf: Vec::new(),
        raw_len: len,
    };
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut hosts = 0;
    let mut expect_continue = false;
    let (mut conn_close, mut conn_keep_alive) = (false, false);
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        let value = trim(h.value);
        for s in [span(name), span(h.value)] {
            owned.extend_from_slice(&s.start.to_ne_bytes());
            owned.extend_from_slice(&s.end.to_ne_bytes());
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            if content_length.is_some() {
                return Err(RequestError::BadRequest("repeated Content-Length"));
            }
            content_length = Some(
                parse_content_length(value)
                    .ok_or(RequestError::BadRequest("malformed Content-Length"))?,
            );
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // Only a single `chunked` is understood; anything else could be
            // framed differently by a proxy in front of us (request smuggling).
            if chunked || !value.eq_ignore_ascii_case(b"chunked") {
                return Err(RequestError::BadRequest(
                    "unsupported Transfer-Encoding (only a single chunked is accepted)",
                ));
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',') {
                let token = trim(token);
                conn_close |= token.eq_ignore_ascii_case(b"close");
                conn_keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case(b"expect") {
            expect_continue = value.eq_ignore_ascii_case(b"100-continue");
        }
    }
    if version == Version::Http11 && hosts != 1 {
        // RFC 9112 §3.2: exactly one Host for HTTP/1.1.
        return Err(RequestError::BadRequest(
            "HTTP/1.1 requires exactly one Host header",
        ));
    }
    head.framing = match (content_length, chunked) {
        (Some(_), true) => {
            return Err(RequestError::BadRequest(
                "both Content-Length and Transfer-Encoding",
            ))
        }
        (_, true) if version == Version::Http10 => {
            return Err(RequestError::BadRequest(
                "Transfer-Encoding in an HTTP/1.0 request",
            ))
        }
        (_, true) => BodyFraming::Chunked,
        (Some(0), false) | (None, false) => BodyFraming::None,
        (Some(n), false) => BodyFraming::Length(n),
    };
    head.keep_alive = match version {
        Version::Http11 => !conn_close,
        Version::Http10 => conn_keep_alive && !conn_close,
    };
    head.expect_continue =
        expect_continue && version == Version::Http11 && head.framing != BodyFraming::None;
    head.buf = owned;
    Ok(Some((head, skip + len)))
}

/// Bytes of CRLF empty lines before the request line. httparse would skip any
/// number of them, CRLF or bare LF, so the bound is enforced here first.
fn leading_empty_lines(buf: &[u8]) -> Result<usize, RequestError> {
    let mut i = 0;
    loop {
        if buf[i..].starts_with(b"\r\n") {
            i += 2;
            if i > 2 * MAX_EMPTY_LINES {
                return Err(RequestError::BadRequest(
                    "too many empty lines before the request line",
                ));
            }
        } else if buf[i..].starts_with(b"\n") {
            return Err(RequestError::BadRequest("bare LF before the request line"));
        } else {
            return Ok(i);
        }
    }
}

/// Whether any LF in `head` lacks its CR. Branch-free over the whole head so
/// that it vectorises: the common, valid head pays a few nanoseconds.
fn has_bare_lf(head: &[u8]) -> bool {
    let Some((&first, rest)) = head.split_first() else {
        return false;
    };
    let lone = head.iter().zip(rest).fold(false, |bad, (&prev, &b)| {
        bad | ((b == b'\n') & (prev != b'\r'))
    });
    (first == b'\n') | lone
}

/// `1*DIGIT` and nothing else: no sign, no list, no spaces inside, no overflow.
pub fn parse_content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

pub fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Option<(RequestHead, usize)>, RequestError> {
        parse_head(s.as_bytes(), 8192)
    }

    fn ok(s: &str) -> RequestHead {
        parse(s).expect("valid").expect("complete").0
    }

    fn bad(s: &str) -> RequestError {
        parse(s).expect_err("should be rejected")
    }

    #[test]
    fn simple_get() {
        let (h, n) = parse("GET /a?b=c HTTP/1.1\r\nHost: x\r\n\r\nrest")
            .unwrap()
            .unwrap();
        assert_eq!(n, 32);
        assert_eq!(h.method(), b"GET");
        assert_eq!(h.target(), b"/a?b=c");
        assert_eq!(h.version, Version::Http11);
        assert!(h.keep_alive);
        assert_eq!(h.framing, BodyFraming::None);
        let hs: Vec<_> = h.header_pairs().collect();
        assert_eq!(hs, vec![(&b"Host"[..], &b"x"[..])]);
    }

    #[test]
    fn every_header_in_order_after_leading_lines() {
        let (h, _) = parse("\r\nPOST /p HTTP/1.1\r\nHost: x\r\nX-A:  1 \r\nX-Empty:\r\nX-A: two\r\nContent-Length: 0\r\n\r\n")
            .unwrap()
            .unwrap();
        let hs: Vec<_> = h.header_pairs().collect();
        assert_eq!(
            hs,
            vec![
                (&b"Host"[..], &b"x"[..]),
                (b"X-A", b"1"),
                (b"X-Empty", b""),
                (b"X-A", b"two"),
                (b"Content-Length", b"0"),
            ]
        );
        assert_eq!(h.method(), b"POST");
        assert_eq!(h.target(), b"/p");
    }

    #[test]
    fn methods_are_tokens_in_upper_case() {
        for method in ["PROPFIND", "M-SEARCH", "PURGE", "X_1"] {
            let h = ok(&format!("{method} / HTTP/1.1\r\nHost: x\r\n\r\n"));
            assert_eq!(h.method(), method.as_bytes());
        }
    }

    #[test]
    fn partial_needs_more() {
        assert!(parse("GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
    }

    #[test]
    fn leading_crlf_ignored() {
        let (h, n) = parse("\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.method(), b"GET");
        assert_eq!(n, 29);
    }

    #[test]
    fn persistence_rules() {
        assert!(!ok("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!ok("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(ok("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(!ok("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n").keep_alive);
    }

    #[test]
    fn body_framing() {
        let h = ok("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(h.framing, BodyFraming::Length(5));
        let h = ok("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n");
        assert_eq!(h.framing, BodyFraming::Chunked);
        let h = ok("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(h.framing, BodyFraming::None);
    }

    #[test]
    fn framing_errors_are_400() {
        for req in [
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1,2\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GARBAGE\r\n\r\n",
            "GET / HTTP/2.0\r\n\r\n",
            "get / HTTP/1.1\r\nHost: x\r\n\r\n",
            "Get / HTTP/1.1\r\nHost: x\r\n\r\n",
            "M-search * HTTP/1.1\r\nHost: x\r\n\r\n",
        ] {
            assert!(
                matches!(bad(req), RequestError::BadRequest(_)),
                "not rejected: {req:?}"
            );
        }
    }

    #[test]
    fn header_limits_are_431() {
        let long = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
            "a".repeat(200)
        );
        assert_eq!(
            parse_head(long.as_bytes(), 100).unwrap_err(),
            RequestError::HeaderTooLarge
        );
        // Incomplete but already over the limit.
        assert_eq!(
            parse_head(&long.as_bytes()[..150], 100).unwrap_err(),
            RequestError::HeaderTooLarge
        );
    }

    fn with_headers(count: usize) -> String {
        let many: String = (0..count).map(|i| format!("X{i}: y\r\n")).collect();
        format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n")
    }

    #[test]
    fn header_count_is_limited_by_size_alone() {
        for count in [STACK_HEADERS, STACK_HEADERS + 1, 500] {
            let req = with_headers(count);
            let (h, n) = parse_head(req.as_bytes(), req.len()).unwrap().unwrap();
            assert_eq!(n, req.len());
            assert_eq!(h.header_pairs().count(), count + 1);
            let last = format!("X{}", count - 1);
            assert_eq!(h.header_pairs().last(), Some((last.as_bytes(), &b"y"[..])));
            assert_eq!(
                parse_head(req.as_bytes(), req.len() - 1).unwrap_err(),
                RequestError::HeaderTooLarge
            );
            // Incomplete, within the limit: wait for more.
            assert!(parse_head(&req.as_bytes()[..req.len() - 3], req.len())
                .unwrap()
                .is_none());
        }
        // The smallest header lines: one heap slot per line still suffices.
        let tiny: String = (0..300).map(|_| "a:\r\n").collect();
        let req = format!("GET / HTTP/1.1\r\nHost: x\r\n{tiny}\r\nbody");
        let (h, _) = parse_head(req.as_bytes(), 8192).unwrap().unwrap();
        assert_eq!(h.header_pairs().count(), 301);
        for cut in [req.len() - 6, req.len() - 7, req.len() - 8] {
            assert!(parse_head(&req.as_bytes()[..cut], 8192).unwrap().is_none());
        }
    }

    #[test]
    fn bare_lf_in_head_is_400() {
        for req in [
            "POST /echo HTTP/1.1\nHost: x\nContent-Length: 3\n\nabc",
            "GET / HTTP/1.1\nHost: x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\n\n",
            "\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
            "\r\n\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
        ] {
            assert!(
                matches!(bad(req), RequestError::BadRequest(_)),
                "not rejected: {req:?}"
            );
        }
        // A bare LF in the body is none of the head's business.
        let req = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n\n\n";
        let (_, n) = parse(req).unwrap().unwrap();
        assert_eq!(n, req.len() - 2);
        // A lone CR is httparse's to refuse.
        assert!(matches!(
            bad("GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n"),
            RequestError::BadRequest(_)
        ));
        assert!(!has_bare_lf(b""));
        assert!(has_bare_lf(b"\n"));
        assert!(has_bare_lf(b"a\r\r\n\n"));
        assert!(!has_bare_lf(b"\r\na\r\n\r\n"));
    }

    #[test]
    fn empty_lines_before_request_line_are_bounded() {
        let get = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let few = format!("{}{get}", "\r\n".repeat(MAX_EMPTY_LINES));
        let (h, n) = parse(&few).unwrap().unwrap();
        assert_eq!((h.method(), n), (&b"GET"[..], few.len()));
        // Only empty lines so far: wait, until there are too many of them.
        assert!(parse(&"\r\n".repeat(MAX_EMPTY_LINES)).unwrap().is_none());
        assert!(parse(&format!("{}\r", "\r\n".repeat(MAX_EMPTY_LINES)))
            .unwrap()
            .is_none());
        for flood in [
            "\r\n".repeat(MAX_EMPTY_LINES + 1),
            format!("{}{get}", "\r\n".repeat(MAX_EMPTY_LINES + 1)),
            "\r\n".repeat(1 << 20),
        ] {
            assert!(matches!(
                parse_head(flood.as_bytes(), 1 << 30),
                Err(RequestError::BadRequest(_))
            ));
        }
        assert!(matches!(
            bad("\r\n\rGET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            RequestError::BadRequest(_)
        ));
    }

    #[test]
    fn expect_continue_only_with_body_on_11() {
        let h =
            ok("POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
        assert!(h.expect_continue);
        let h = ok("GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n");
        assert!(!h.expect_continue);
        let h = ok("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
        assert!(!h.expect_continue);
    }

    #[test]
    fn content_length_parser() {
        assert_eq!(parse_content_length(b"0"), Some(0));
        assert_eq!(parse_content_length(b"123"), Some(123));
        assert_eq!(parse_content_length(b""), None);
        assert_eq!(parse_content_length(b"99999999999999999999"), None);
        assert_eq!(parse_content_length(b"1 2"), None);
    }
}
