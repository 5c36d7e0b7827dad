//! Request heads: httparse does the tokenising; this file decides what the head
//! means for framing (RFC 9112 §6): body length, persistence, `Expect`.
//! Framing is decided here and only here.

use std::mem::MaybeUninit;

use super::{RequestError, Version};

/// Headers parsed into a stack array; a head with more is parsed again into
/// a heap array, so only the limits bound the count.
const STACK_HEADERS: usize = 128;

/// `" HTTP/1.1"`: what follows the request-target on a request line.
const VERSION_LEN: usize = 9;

/// The bounds a request head is parsed within (the options of the same names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadLimits {
    /// `max_request_header_size`: request line and header fields, in bytes (431).
    pub header_size: usize,
    /// `max_request_line`: the request line without its CRLF, in bytes (414).
    pub request_line: usize,
    /// `max_request_headers`: header field lines (431).
    pub headers: usize,
}

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

    /// Bytes it holds on the heap.
    pub fn heap_size(&self) -> usize {
        self.buf.capacity()
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

/// A request line whose version httparse refused: RFC 9110 2.5 says a later
/// HTTP/1.x minor version is answered as the highest 1.x the server speaks
/// (1.1), and another major version gets 505; anything else is malformed.
fn newer_version(
    buf: &[u8],
    limits: &HeadLimits,
    path: Option<&str>,
) -> Result<Option<(RequestHead, usize)>, RequestError> {
    let at = match path {
        Some(path) => Span::within(buf, path.as_bytes()).end as usize + 1,
        None => return Err(RequestError::BadRequest("malformed request line")),
    };
    match buf.get(at..).unwrap_or_default() {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor, rest @ ..]
            if (b'2'..=b'9').contains(minor) && !rest.first().is_some_and(u8::is_ascii_digit) =>
        {
            // Only the minor digit changes, so every span and length holds.
            let mut as_11 = buf.to_vec();
            as_11[at + 7] = b'1';
            parse_head(&as_11, limits)
        }
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor, ..]
            if (b'2'..=b'9').contains(major) && minor.is_ascii_digit() =>
        {
            Err(RequestError::VersionNotSupported)
        }
        _ => Err(RequestError::BadRequest("unsupported HTTP version")),
    }
}

/// Bytes per header in `RequestHead::buf`'s table.
const ENTRY: usize = 16;

/// Parses one request head from the front of `buf`.
///
/// `Ok(None)` means more bytes are needed; `Ok(Some((head, n)))` consumed `n` bytes.
pub fn parse_head(
    buf: &[u8],
    limits: &HeadLimits,
) -> Result<Option<(RequestHead, usize)>, RequestError> {
    let skip = leading_empty_lines(buf)?;
    let buf = &buf[skip..];
    // Uninitialised: filling 128 empty headers cost more than parsing a short head.
    let mut headers = [const { MaybeUninit::<httparse::Header>::uninit() }; STACK_HEADERS];
    let mut slots = limits.headers.min(STACK_HEADERS);
    let mut spill = Vec::new();
    let mut req = httparse::Request::new(&mut []);
    let mut result = req.parse_with_uninit_headers(buf, &mut headers[..slots]);
    if result == Err(httparse::Error::TooManyHeaders) && slots < limits.headers {
        // One slot per line within the size limit (and one for a line still
        // arriving) fits any head within it; running out of those means it
        // is over the size, running out of `limits.headers` over the count.
        let window = &buf[..buf.len().min(limits.header_size)];
        let lines = window.iter().filter(|&&b| b == b'\n').count() + 1;
        slots = lines.min(limits.headers);
        spill.reserve_exact(slots);
        req = httparse::Request::new(&mut []);
        result = req.parse_with_uninit_headers(buf, &mut spill.spare_capacity_mut()[..slots]);
    }
    let status = match result {
        Ok(s) => s,
        Err(httparse::Error::TooManyHeaders) if slots == limits.headers => {
            return Err(RequestError::TooManyHeaders)
        }
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::HeaderTooLarge),
        Err(httparse::Error::Version) => {
            let reread = newer_version(buf, limits, req.path)?;
            return Ok(reread.map(|(head, len)| (head, skip + len)));
        }
        Err(_) => return Err(RequestError::BadRequest("malformed request head")),
    };
    // The request line is the method, the target, and 9 bytes: its length
    // comes from the target's end, without a scan. Until the target ends,
    // everything received is request line.
    let line_len = match req.path {
        Some(path) => Span::within(buf, path.as_bytes()).end as usize + VERSION_LEN,
        None => buf.len(),
    };
    if line_len > limits.request_line {
        return Err(RequestError::UriTooLong);
    }
    let len = match status {
        httparse::Status::Partial => {
            if buf.len() > limits.header_size {
                return Err(RequestError::HeaderTooLarge);
            }
            return Ok(None);
        }
        httparse::Status::Complete(len) => len,
    };
    if len > limits.header_size {
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
    check_target(method.as_bytes(), path.as_bytes())?;
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
    let (mut transfer_encoding, mut chunked) = (false, false);
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
            // RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has
            // faulty framing, whatever it says.
            if version == Version::Http10 {
                return Err(RequestError::BadRequest(
                    "Transfer-Encoding in an HTTP/1.0 request",
                ));
            }
            transfer_encoding = true;
            // The codings of every line in order; only one `chunked` is
            // understood. Anything else could be framed differently by a
            // proxy in front of us (request smuggling).
            for coding in value.split(|&b| b == b',').map(trim) {
                if coding.is_empty() {
                    continue; // RFC 9110 §5.6.1: empty list elements are ignored
                }
                if !coding.eq_ignore_ascii_case(b"chunked") {
                    return Err(RequestError::NotImplemented(
                        "unsupported Transfer-Encoding (only chunked is understood)",
                    ));
                }
                if chunked {
                    return Err(RequestError::BadRequest("chunked applied more than once"));
                }
                chunked = true;
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',') {
                let token = trim(token);
                conn_close |= token.eq_ignore_ascii_case(b"close");
                conn_keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case(b"host") {
            // RFC 9110 §7.2: an invalid Host value is a 400, like a missing one.
            if split_host(value).is_none() {
                return Err(RequestError::BadRequest("malformed Host header"));
            }
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
    if transfer_encoding && !chunked {
        return Err(RequestError::BadRequest("empty Transfer-Encoding"));
    }
    head.framing = match (content_length, chunked) {
        (Some(_), true) => {
            return Err(RequestError::BadRequest(
                "both Content-Length and Transfer-Encoding",
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

/// The request-target's form must suit the method (RFC 9112 §3.2):
/// origin-form (`/p?q`) for any method but CONNECT, absolute-form
/// (`http://host/p`, http or https) likewise, authority-form (`host:port`)
/// for CONNECT alone, asterisk-form (`*`) for OPTIONS alone. Anything else
/// (`GET foo`) would be read differently by different servers.
fn check_target(method: &[u8], target: &[u8]) -> Result<(), RequestError> {
    let connect = method == b"CONNECT";
    let ok = match target {
        [b'/', ..] => !connect,
        b"*" => method == b"OPTIONS",
        // RFC 9112 §3.2.3: `uri-host ":" port`.
        _ if connect => split_host(target).is_some_and(|(h, p)| !h.is_empty() && p.len() > 1),
        _ => is_absolute_form(target),
    };
    if ok {
        Ok(())
    } else {
        Err(RequestError::BadRequest(
            "request-target not in a form its method allows",
        ))
    }
}

/// `http[s]://authority[/path][?query]` with an authority that has a host
/// and no userinfo (RFC 9110 §4.2.4: userinfo is an error).
fn is_absolute_form(target: &[u8]) -> bool {
    let rest = match target.iter().position(|&b| b == b':') {
        Some(colon) => {
            let scheme = &target[..colon];
            if !scheme.eq_ignore_ascii_case(b"http") && !scheme.eq_ignore_ascii_case(b"https") {
                return false;
            }
            &target[colon + 1..]
        }
        None => return false,
    };
    let Some(rest) = rest.strip_prefix(b"//") else {
        return false;
    };
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    split_host(&rest[..end]).is_some_and(|(host, _)| !host.is_empty())
}

/// Splits `uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986 §3.2.2) into the
/// host and the port with its colon, if it is one: an IP-literal in
/// brackets, or a reg-name (IPv4 addresses included) of unreserved
/// characters, sub-delims and percent-escapes; then an optional decimal port.
fn split_host(value: &[u8]) -> Option<(&[u8], &[u8])> {
    let host_end = match value {
        [b'[', inner @ ..] => {
            let close = inner.iter().position(|&b| b == b']')?;
            let literal = &inner[..close];
            let hex = |b: &u8| b.is_ascii_hexdigit() || *b == b':' || *b == b'.';
            if literal.is_empty() || !literal.iter().all(hex) {
                return None;
            }
            close + 2
        }
        _ => {
            let end = value.iter().position(|&b| b == b':').unwrap_or(value.len());
            if !is_reg_name(&value[..end]) {
                return None;
            }
            end
        }
    };
    let (host, port) = value.split_at(host_end);
    match port {
        [] => Some((host, port)),
        [b':', digits @ ..] if digits.iter().all(u8::is_ascii_digit) => Some((host, port)),
        _ => None,
    }
}

/// RFC 3986 `reg-name`: `*( unreserved / pct-encoded / sub-delims )`.
fn is_reg_name(name: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&b) = name.get(i) {
        if b == b'%' {
            let escape = name.get(i + 1..i + 3);
            if !escape.is_some_and(|e| e.iter().all(u8::is_ascii_hexdigit)) {
                return false;
            }
            i += 3;
        } else if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'_' | b'~' | b'!' | b'$' | b'&'..=b',' | b';' | b'='
            )
        {
            i += 1;
        } else {
            return false;
        }
    }
    true
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

    fn limits(header_size: usize) -> HeadLimits {
        HeadLimits {
            header_size,
            request_line: 8190,
            headers: 1000,
        }
    }

    fn parse(s: &str) -> Result<Option<(RequestHead, usize)>, RequestError> {
        parse_head(s.as_bytes(), &limits(8192))
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
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GARBAGE\r\n\r\n",
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

    fn rejected(req: &[u8], limits: &HeadLimits) -> RequestError {
        parse_head(req, limits).expect_err(&format!("accepted {:?}", String::from_utf8_lossy(req)))
    }

    fn all_400(reqs: &[&[u8]]) {
        for req in reqs {
            let e = rejected(req, &limits(8192));
            assert!(
                matches!(e, RequestError::BadRequest(_)),
                "{e:?} for {:?}",
                String::from_utf8_lossy(req)
            );
        }
    }

    fn all_ok(reqs: &[&[u8]]) {
        for req in reqs {
            let parsed = parse_head(req, &limits(8192));
            assert!(
                matches!(parsed, Ok(Some(_))),
                "{:?} for {:?}",
                parsed.err(),
                String::from_utf8_lossy(req)
            );
        }
    }

    #[test]
    fn later_minor_versions_are_11_and_other_majors_505() {
        for line in ["HTTP/1.2", "HTTP/1.9"] {
            let req = format!("GET /a HTTP/{}\r\nHost: x\r\n\r\n", &line[5..]);
            let h = ok(&req);
            assert_eq!((h.version, h.keep_alive), (Version::Http11, true), "{line}");
            assert_eq!(h.target(), b"/a");
            // After empty lines, the length counts them too.
            let (_, n) = parse(&format!("\r\n{req}")).unwrap().unwrap();
            assert_eq!(n, req.len() + 2);
            // Still HTTP/1.1's rules: Host is required.
            assert!(matches!(
                bad("GET / HTTP/1.2\r\n\r\n"),
                RequestError::BadRequest(_)
            ));
            // Arriving byte by byte, it waits for the rest like any head.
            assert!(parse("GET / HTTP/1.2").unwrap().is_none());
            assert!(parse("GET / HTTP/1.2\r\nHo").unwrap().is_none());
        }
        for req in [
            "GET / HTTP/2.0\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET / HTTP/3.1\r\n",
        ] {
            assert!(
                matches!(bad(req), RequestError::VersionNotSupported),
                "{req:?}"
            );
        }
        for req in [
            "GET / HTTP/1.2x\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.23\r\n\r\n",
            "GET / HTTP/0.9\r\n\r\n",
            "GET / HTTP/2\r\n\r\n",
        ] {
            assert!(matches!(bad(req), RequestError::BadRequest(_)), "{req:?}");
        }
    }

    #[test]
    fn request_line_grammar() {
        all_400(&[
            b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /  HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET\t/ HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /\tHTTP/1.1\r\nHost: x\r\n\r\n",
            b" GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1 \r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1 x\r\nHost: x\r\n\r\n",
            b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / http/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/0.9\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.10\r\nHost: x\r\n\r\n",
            b"GET / HTTP/11\r\nHost: x\r\n\r\n",
            b"GET /\r\n\r\n",
            b"GET\r\n\r\n",
            b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /\xff HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\rHost: x\r\n\r\n",
            b"GET\x00/ HTTP/1.1\r\nHost: x\r\n\r\n",
        ]);
        all_ok(&[
            b"GET /caf\xc3\xa9?a=b&c=%20#frag HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /{}|^`\"<> HTTP/1.1\r\nHost: x\r\n\r\n",
        ]);
    }

    #[test]
    fn request_line_over_max_request_line_is_414() {
        let limits = limits(1 << 16);
        let line = |target_len: usize| format!("GET /{} HTTP/1.1", "a".repeat(target_len - 1));
        // Exactly at the limit (the CRLF is not counted), then one over.
        let at = line(limits.request_line - 13);
        assert_eq!(at.len(), limits.request_line);
        let ok = format!("{at}\r\nHost: x\r\n\r\n");
        assert!(parse_head(ok.as_bytes(), &limits).unwrap().is_some());
        let over = format!("{}\r\nHost: x\r\n\r\n", line(limits.request_line - 12));
        assert_eq!(rejected(over.as_bytes(), &limits), RequestError::UriTooLong);
        // Still arriving: refused once the target alone is over, or once the
        // bytes so far are, without waiting for the line's end.
        assert_eq!(
            rejected(&over.as_bytes()[..limits.request_line + 3], &limits),
            RequestError::UriTooLong
        );
        let endless = "GET /".to_string() + &"a".repeat(limits.request_line);
        assert_eq!(
            rejected(endless.as_bytes(), &limits),
            RequestError::UriTooLong
        );
        let method = "A".repeat(limits.request_line + 1);
        assert_eq!(
            rejected(method.as_bytes(), &limits),
            RequestError::UriTooLong
        );
        assert!(
            parse_head(&endless.as_bytes()[..limits.request_line], &limits)
                .unwrap()
                .is_none()
        );
        // The line limit is checked before the size limit.
        let small = HeadLimits {
            header_size: 100,
            request_line: 50,
            headers: 10,
        };
        assert_eq!(rejected(over.as_bytes(), &small), RequestError::UriTooLong);
    }

    #[test]
    fn request_target_forms_suit_the_method() {
        all_ok(&[
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
            b"OPTIONS /p HTTP/1.1\r\nHost: x\r\n\r\n",
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
            b"CONNECT [::1]:8080 HTTP/1.1\r\nHost: x\r\n\r\n",
            b"CONNECT 10.0.0.1:80 HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET http://example.com/p?q HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET HTTPS://example.com HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET http://example.com:8080?q HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET http://[2001:db8::1]:80/ HTTP/1.1\r\nHost: x\r\n\r\n",
            b"OPTIONS http://h/ HTTP/1.1\r\nHost: x\r\n\r\n",
        ]);
        all_400(&[
            // Relative, or not in any form.
            b"GET foo HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET foo/bar HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET ?q HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET #f HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET ../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET \\ HTTP/1.1\r\nHost: x\r\n\r\n",
            // Asterisk-form on another method; longer than `*`.
            b"GET * HTTP/1.1\r\nHost: x\r\n\r\n",
            b"DELETE * HTTP/1.1\r\nHost: x\r\n\r\n",
            b"OPTIONS ** HTTP/1.1\r\nHost: x\r\n\r\n",
            b"OPTIONS *x HTTP/1.1\r\nHost: x\r\n\r\n",
            // Authority-form on another method; CONNECT in another form.
            b"GET example.com:80 HTTP/1.1\r\nHost: x\r\n\r\n",
            b"POST example.com:80 HTTP/1.1\r\nHost: x\r\n\r\n",
            b"CONNECT / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"CONNECT * HTTP/1.1\r\nHost: x\r\n\r\n",
            b"CONNECT http://example.com/ HTTP/1.1\r\nHost: x\r\n\r\n",
            b"CONNECT example.com HTTP/1.1\r\nHost: x\r\n\r\n",
            b"CONNECT example.com: HTTP/1.1\r\nHost: x\r\n\r\n",
            b"CONNECT :443 HTTP/1.1\r\nHost: x\r\n\r\n",
            b"CONNECT a@example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n",
            // Absolute-form: http or https, `//`, a host, no userinfo.
            b"GET ftp://example.com/ HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET http:/example.com/ HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET http:example.com HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET http:// HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET http:///p HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET http://:80/p HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET http://user@example.com/ HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET http://a b/ HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET http://ex%zzample.com/ HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET http://example.com:8x/ HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET http://[::1/ HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET :// HTTP/1.1\r\nHost: x\r\n\r\n",
        ]);
    }

    #[test]
    fn header_name_and_value_characters() {
        all_400(&[
            b"GET / HTTP/1.1\r\nHost: x\r\nX Y: z\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX\x00: y\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n: y\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX(: y\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX\"q: y\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX/Y: y\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n\xc3\xa9: y\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nNo colon\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x7fb\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x0bb\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x1bb\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX: y\r\r\n",
        ]);
        let req = b"GET / HTTP/1.1\r\nHost: x\r\nX-!#$%&'*+.^_`|~: a\tb \x80\xff\r\n\r\n";
        let (h, _) = parse_head(req, &limits(8192)).unwrap().unwrap();
        let pairs: Vec<_> = h.header_pairs().collect();
        assert_eq!(pairs[1], (&b"X-!#$%&'*+.^_`|~"[..], &b"a\tb \x80\xff"[..]));
    }

    #[test]
    fn obs_fold_and_whitespace_around_names_are_400() {
        all_400(&[
            b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n\tb\r\n\r\n",
            b"GET / HTTP/1.1\r\n Host: x\r\n\r\n",
            b"GET / HTTP/1.1\r\n\tHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost\t: x\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n",
        ]);
    }

    #[test]
    fn one_valid_host() {
        all_ok(&[
            b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: EXAMPLE.com.\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: 192.0.2.1:80\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: [::ffff:192.0.2.1]\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a_b-c~d%41!$&'()*+,;=\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: \r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x:\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
        ]);
        all_400(&[
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\\b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a@b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a,b\x22\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a:b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a:80:80\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a%2\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: []\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: [v1.x]\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: caf\xc3\xa9\r\n\r\n",
            b"GET / HTTP/1.0\r\nHost: a b\r\n\r\n",
        ]);
    }

    #[test]
    fn transfer_encoding_is_one_final_chunked() {
        for (req, framing) in [
            ("Transfer-Encoding: chunked", BodyFraming::Chunked),
            ("Transfer-Encoding: CHUNKED", BodyFraming::Chunked),
            ("Transfer-Encoding: , chunked ,", BodyFraming::Chunked),
        ] {
            let h = ok(&format!("POST / HTTP/1.1\r\nHost: x\r\n{req}\r\n\r\n"));
            assert_eq!(h.framing, framing);
        }
        for coding in [
            "gzip",
            "identity",
            "gzip, chunked",
            "chunked, gzip",
            "chunked;q=1",
            "chunked\u{a0}",
            "xchunked",
        ] {
            let req = format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {coding}\r\n\r\n");
            assert!(
                matches!(bad(&req), RequestError::NotImplemented(_)),
                "{coding:?}"
            );
        }
        let two_lines = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(bad(two_lines), RequestError::NotImplemented(_)));
        let with_length = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
        assert!(matches!(bad(with_length), RequestError::NotImplemented(_)));
        all_400(&[
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: ,\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\x0b\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        ]);
    }

    #[test]
    fn content_length_is_one_decimal_number() {
        all_400(&[
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x10\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1e3\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1.0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\ncontent-length: 4\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \xd9\xa3\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000000000\r\n\r\n",
        ]);
        let h = ok("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \t007 \r\n\r\n");
        assert_eq!(h.framing, BodyFraming::Length(7));
        let h = ok("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999999999\r\n\r\n");
        assert_eq!(h.framing, BodyFraming::Length(999_999_999_999_999_999));
    }

    #[test]
    fn header_count_over_max_request_headers_is_431() {
        for max in [1, 10, STACK_HEADERS, STACK_HEADERS + 1, 300] {
            let limits = HeadLimits {
                header_size: 1 << 20,
                request_line: 8190,
                headers: max,
            };
            // `with_headers(n)` has n + 1 fields, Host included.
            let at = with_headers(max - 1);
            let (h, _) = parse_head(at.as_bytes(), &limits).unwrap().unwrap();
            assert_eq!(h.header_pairs().count(), max);
            let over = with_headers(max);
            assert_eq!(
                rejected(over.as_bytes(), &limits),
                RequestError::TooManyHeaders
            );
            assert_eq!(RequestError::TooManyHeaders.status().0, 431);
        }
    }

    #[test]
    fn header_limits_are_431() {
        let long = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
            "a".repeat(200)
        );
        assert_eq!(
            parse_head(long.as_bytes(), &limits(100)).unwrap_err(),
            RequestError::HeaderTooLarge
        );
        // Incomplete but already over the limit.
        assert_eq!(
            parse_head(&long.as_bytes()[..150], &limits(100)).unwrap_err(),
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
            let (h, n) = parse_head(req.as_bytes(), &limits(req.len()))
                .unwrap()
                .unwrap();
            assert_eq!(n, req.len());
            assert_eq!(h.header_pairs().count(), count + 1);
            let last = format!("X{}", count - 1);
            assert_eq!(h.header_pairs().last(), Some((last.as_bytes(), &b"y"[..])));
            assert_eq!(
                parse_head(req.as_bytes(), &limits(req.len() - 1)).unwrap_err(),
                RequestError::HeaderTooLarge
            );
            // Incomplete, within the limit: wait for more.
            assert!(
                parse_head(&req.as_bytes()[..req.len() - 3], &limits(req.len()))
                    .unwrap()
                    .is_none()
            );
        }
        // The smallest header lines: one heap slot per line still suffices.
        let tiny: String = (0..300).map(|_| "a:\r\n").collect();
        let req = format!("GET / HTTP/1.1\r\nHost: x\r\n{tiny}\r\nbody");
        let (h, _) = parse_head(req.as_bytes(), &limits(8192)).unwrap().unwrap();
        assert_eq!(h.header_pairs().count(), 301);
        for cut in [req.len() - 6, req.len() - 7, req.len() - 8] {
            assert!(parse_head(&req.as_bytes()[..cut], &limits(8192))
                .unwrap()
                .is_none());
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
                parse_head(flood.as_bytes(), &limits(1 << 30)),
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
