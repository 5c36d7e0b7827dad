//! HTTP/1.1 on bytes alone: request heads (`parse`), request bodies (`body`),
//! responses (`response`), the cached `Date` header (`date`), trusted
//! proxies' forwarding headers (`proxy`) and the PROXY protocol header that
//! may start a connection (`proxy_protocol`). Nothing here
//! touches a socket or Python, so every rule is unit-tested on byte strings.

pub mod body;
pub mod date;
pub mod parse;
pub mod proxy;
pub mod proxy_protocol;
pub mod response;

/// The two HTTP versions a request can carry (httparse rejects anything else).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// `n` in decimal ASCII, written into `buf` without going through `fmt` or the heap.
pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Why a request is refused before it reaches the app; each maps to one status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// 400: malformed head, bad framing, bad chunk.
    BadRequest(&'static str),
    /// 431: the head is larger than `max_request_header_size`.
    HeaderTooLarge,
    /// 431: the head has more than `max_request_headers` fields.
    TooManyHeaders,
    /// 414: the request line is longer than `max_request_line`.
    UriTooLong,
    /// 501: a transfer coding maitre does not implement.
    NotImplemented(&'static str),
    /// 413: the body is larger than `max_request_body_size`.
    BodyTooLarge,
    /// 500: the server could not hold the body (e.g. the temp file failed).
    Internal(&'static str),
    /// 503: the server is stopping and takes in no more request bodies.
    Stopping,
    /// 408: the request head did not arrive within header_timeout.
    HeadTimeout,
    /// 505: a major HTTP version other than 1 (HTTP/2.0, HTTP/3.0).
    VersionNotSupported,
}

impl RequestError {
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            RequestError::BadRequest(_) => (400, "Bad Request"),
            RequestError::HeaderTooLarge | RequestError::TooManyHeaders => {
                (431, "Request Header Fields Too Large")
            }
            RequestError::UriTooLong => (414, "URI Too Long"),
            RequestError::NotImplemented(_) => (501, "Not Implemented"),
            RequestError::BodyTooLarge => (413, "Request Entity Too Large"),
            RequestError::Internal(_) => (500, "Internal Server Error"),
            RequestError::Stopping => (503, "Service Unavailable"),
            RequestError::HeadTimeout => (408, "Request Timeout"),
            RequestError::VersionNotSupported => (505, "HTTP Version Not Supported"),
        }
    }

    pub fn detail(&self) -> &'static str {
        match self {
            RequestError::BadRequest(why)
            | RequestError::Internal(why)
            | RequestError::NotImplemented(why) => why,
            RequestError::HeaderTooLarge => {
                "the request header block exceeds max_request_header_size"
            }
            RequestError::TooManyHeaders => "the request has more than max_request_headers headers",
            RequestError::UriTooLong => "the request line exceeds max_request_line",
            RequestError::BodyTooLarge => "the request body exceeds max_request_body_size",
            RequestError::Stopping => "the server is stopping",
            RequestError::HeadTimeout => "the request head did not arrive within header_timeout",
            RequestError::VersionNotSupported => "maitre speaks HTTP/1.0 and HTTP/1.1",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RequestError;

    #[test]
    fn each_refusal_has_its_status() {
        for (e, code) in [
            (RequestError::BadRequest("x"), 400),
            (RequestError::UriTooLong, 414),
            (RequestError::HeaderTooLarge, 431),
            (RequestError::TooManyHeaders, 431),
            (RequestError::NotImplemented("x"), 501),
            (RequestError::BodyTooLarge, 413),
            (RequestError::VersionNotSupported, 505),
        ] {
            assert_eq!(e.status().0, code, "{e:?}");
            assert!(!e.detail().is_empty());
        }
    }

    #[test]
    fn decimal() {
        for n in [0u64, 7, 10, 1234567890, u64::MAX] {
            assert_eq!(super::decimal(n, &mut [0; 20]), n.to_string().as_bytes());
        }
    }
}
