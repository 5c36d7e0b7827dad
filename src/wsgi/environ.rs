//! Builds the environ dict (PEP 3333): native strings are latin-1, PATH_INFO is
//! percent-decoded, headers become `HTTP_*` (names with `_` are dropped so they
//! cannot pose as their `-` twins), repeats are joined with `, `.

use std::borrow::Cow;
use std::cell::RefCell;
use std::io::Write;
use std::net::IpAddr;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};
use pyo3::{ffi, intern};

use crate::config::Config;
use crate::http::parse::RequestHead;
use crate::http::proxy::{self, Forwarding, HeaderSet, ProxyError, ProxyHeader};
use crate::http::{decimal, Version};
use crate::net::{Peer, ServerPort};

use super::input::InputStream;
use super::start_response::StartResponse;
use super::WsgiContext;

/// Bytes to a Python str, one code point per byte (latin-1), by CPython's
/// own decoder: one pass, no Rust string on the way.
pub fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyString>> {
    // SAFETY: the pointer and length describe `bytes`, which outlives the call
    // (CPython copies them); a null `errors` means strict, which cannot fail
    // for latin-1 (every byte is a code point). The result is a new reference,
    // or null with an exception set (out of memory), which becomes the Err.
    let obj = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyUnicode_DecodeLatin1(
                bytes.as_ptr().cast(),
                bytes.len() as ffi::Py_ssize_t,
                std::ptr::null(),
            ),
        )
    }?;
    Ok(obj.cast_into::<PyString>()?)
}

/// Splits a request target into (path, query), as waitress does: the
/// fragment (`#...`, which clients should not send) is dropped first; then
/// origin form, absolute form (`http://host/path`, whose path may be empty),
/// or anything else (`*`) as it is.
pub fn split_target(target: &[u8]) -> (&[u8], &[u8]) {
    let mut path = match target.iter().position(|&b| b == b'#') {
        Some(i) => &target[..i],
        None => target,
    };
    if !path.starts_with(b"/") {
        if let Some(i) = path.windows(3).position(|w| w == b"://") {
            let after = &path[i + 3..];
            path = match after.iter().position(|&b| b == b'/' || b == b'?') {
                Some(j) => &after[j..],
                None => b"",
            };
        }
    }
    match path.iter().position(|&b| b == b'?') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (path, b""),
    }
}

/// Leading slashes collapse to one (`//a` is `/a`), as in waitress.
pub fn collapse_leading_slashes(path: &[u8]) -> &[u8] {
    match path.iter().position(|&b| b != b'/') {
        _ if !path.starts_with(b"//") => path,
        Some(i) => &path[i - 1..],
        None => b"/",
    }
}

/// `%XX` to the byte it names; malformed escapes stay as they are.
pub fn percent_decode(input: &[u8]) -> Cow<'_, [u8]> {
    if !input.contains(&b'%') {
        return Cow::Borrowed(input);
    }
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' && i + 2 < input.len() {
            if let (Some(h), Some(l)) = (hex(input[i + 1]), hex(input[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(input[i]);
        i += 1;
    }
    Cow::Owned(out)
}

/// A port as a Python str, without a Rust `String` on the way.
fn number<'py>(py: Python<'py>, n: u16) -> PyResult<Bound<'py, PyString>> {
    latin1(py, decimal(n.into(), &mut [0; 20]))
}

/// REMOTE_ADDR: a Unix socket's client is `localhost`, as in waitress.
fn peer_text(peer: Peer, buf: &mut [u8; 64]) -> &[u8] {
    match peer {
        Peer::Ip(addr) => ip_text(addr.ip(), buf),
        Peer::Local => b"localhost",
    }
}

/// REMOTE_ADDR: IPv4 written by hand (the common case, and `fmt` costs more
/// than the rest of the environ key); IPv6 through `fmt`, still on the stack.
fn ip_text(ip: IpAddr, buf: &mut [u8; 64]) -> &[u8] {
    let mut len = 0;
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[len] = b'.';
                    len += 1;
                }
                let mut scratch = [0; 20];
                let digits = decimal(octet.into(), &mut scratch);
                buf[len..len + digits.len()].copy_from_slice(digits);
                len += digits.len();
            }
        }
        IpAddr::V6(v6) => {
            let mut rest = &mut buf[..];
            // 45 bytes is the longest IPv6 text, so this cannot run out of room.
            if write!(rest, "{v6}").is_ok() {
                len = 64 - rest.len();
            }
        }
    }
    &buf[..len]
}

/// PATH_INFO once `url_prefix` (the SCRIPT_NAME) is taken off its front.
pub fn strip_prefix<'a>(path: &'a [u8], prefix: &str) -> &'a [u8] {
    let prefix = prefix.as_bytes();
    if prefix.is_empty() {
        return path;
    }
    match path.strip_prefix(prefix) {
        Some(rest) if rest.is_empty() || rest.starts_with(b"/") => rest,
        _ => path,
    }
}

/// `Content-Type` → `CONTENT_TYPE`, `X-Foo` → `HTTP_X_FOO`; `None` for names with `_`.
pub fn environ_key(name: &[u8]) -> Option<String> {
    if name.contains(&b'_') {
        return None;
    }
    if name.eq_ignore_ascii_case(b"content-type") {
        return Some("CONTENT_TYPE".to_owned());
    }
    if name.eq_ignore_ascii_case(b"content-length") {
        return Some("CONTENT_LENGTH".to_owned());
    }
    let mut key = String::with_capacity(5 + name.len());
    key.push_str("HTTP_");
    key.extend(name.iter().map(|&b| match b {
        b'-' => '_',
        b => char::from(b.to_ascii_uppercase()),
    }));
    Some(key)
}

/// Header names most requests carry and their environ keys. Each worker makes
/// the keys once, as interned strings (see `HeaderKeys`), so a request builds
/// no key string for them.
const COMMON_HEADERS: [(&str, &str); 16] = [
    ("host", "HTTP_HOST"),
    ("user-agent", "HTTP_USER_AGENT"),
    ("accept", "HTTP_ACCEPT"),
    ("accept-encoding", "HTTP_ACCEPT_ENCODING"),
    ("accept-language", "HTTP_ACCEPT_LANGUAGE"),
    ("connection", "HTTP_CONNECTION"),
    ("cookie", "HTTP_COOKIE"),
    ("content-type", "CONTENT_TYPE"),
    ("content-length", "CONTENT_LENGTH"),
    ("authorization", "HTTP_AUTHORIZATION"),
    ("referer", "HTTP_REFERER"),
    ("origin", "HTTP_ORIGIN"),
    ("cache-control", "HTTP_CACHE_CONTROL"),
    ("if-none-match", "HTTP_IF_NONE_MATCH"),
    ("x-forwarded-for", "HTTP_X_FORWARDED_FOR"),
    ("x-forwarded-proto", "HTTP_X_FORWARDED_PROTO"),
];

/// The environ keys of `COMMON_HEADERS`, made once per worker.
pub struct HeaderKeys(Vec<Py<PyString>>);

impl HeaderKeys {
    pub fn new(py: Python<'_>) -> Self {
        HeaderKeys(
            COMMON_HEADERS
                .iter()
                .map(|(_, key)| PyString::intern(py, key).unbind())
                .collect(),
        )
    }

    /// The environ key for a header name; `None` for names with `_`.
    fn key<'py>(&self, py: Python<'py>, name: &[u8]) -> Option<Bound<'py, PyString>> {
        let common = COMMON_HEADERS
            .iter()
            .position(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name));
        match common {
            Some(i) => Some(self.0[i].bind(py).clone()),
            None => environ_key(name).map(|key| PyString::new(py, &key)),
        }
    }
}

/// The address strings of recent connections (SERVER_PORT, REMOTE_ADDR,
/// REMOTE_PORT), made once per worker and connection instead of once per
/// request: formatting them was 5% of a plaintext request's instructions.
/// Direct-mapped on the peer's port, so it is bounded and needs no eviction;
/// a collision just formats again.
pub struct AddrStrings {
    slots: RefCell<Vec<Option<AddrEntry>>>,
}

struct AddrEntry {
    peer: Peer,
    server_port: ServerPort,
    strings: [Py<PyString>; 3],
}

const ADDR_SLOTS: usize = 256;

impl Default for AddrStrings {
    fn default() -> Self {
        AddrStrings {
            slots: RefCell::new((0..ADDR_SLOTS).map(|_| None).collect()),
        }
    }
}

impl AddrStrings {
    /// (SERVER_PORT, REMOTE_ADDR, REMOTE_PORT) for a connection.
    fn get<'py>(
        &self,
        py: Python<'py>,
        peer: Peer,
        server_port: &ServerPort,
    ) -> PyResult<[Bound<'py, PyString>; 3]> {
        let mut slots = self.slots.borrow_mut();
        let port = match peer {
            Peer::Ip(addr) => addr.port(),
            Peer::Local => 0,
        };
        let slot = &mut slots[usize::from(port) % ADDR_SLOTS];
        if let Some(e) = slot
            .as_ref()
            .filter(|e| e.peer == peer && e.server_port == *server_port)
        {
            return Ok(e.strings.each_ref().map(|s| s.bind(py).clone()));
        }
        let strings = [
            match server_port {
                ServerPort::Tcp(n) => number(py, *n)?,
                ServerPort::Unix(path) => PyString::new(py, path),
            },
            latin1(py, peer_text(peer, &mut [0; 64]))?,
            match peer {
                Peer::Ip(addr) => number(py, addr.port())?,
                // waitress: str(None), a Unix socket's peer having no port.
                Peer::Local => intern!(py, "None").clone(),
            },
        ];
        *slot = Some(AddrEntry {
            peer,
            server_port: server_port.clone(),
            strings: strings.each_ref().map(|s| s.clone().unbind()),
        });
        Ok(strings)
    }
}

/// REQUEST_METHOD: the usual methods as interned strings.
fn method<'py>(py: Python<'py>, method: &[u8]) -> PyResult<Bound<'py, PyString>> {
    let known = match method {
        b"GET" => intern!(py, "GET"),
        b"POST" => intern!(py, "POST"),
        b"HEAD" => intern!(py, "HEAD"),
        b"PUT" => intern!(py, "PUT"),
        b"DELETE" => intern!(py, "DELETE"),
        b"PATCH" => intern!(py, "PATCH"),
        b"OPTIONS" => intern!(py, "OPTIONS"),
        other => return latin1(py, other),
    };
    Ok(known.clone())
}

/// The keys `build` sets on every request (`WsgiContext` gives the base
/// environ a placeholder for each).
pub const PER_REQUEST_KEYS: [&str; 11] = [
    "REQUEST_METHOD",
    "PATH_INFO",
    "QUERY_STRING",
    "REQUEST_URI",
    "SERVER_PROTOCOL",
    "SERVER_PORT",
    "REMOTE_ADDR",
    "REMOTE_HOST",
    "REMOTE_PORT",
    "wsgi.input",
    "wsgi.errors",
];

pub struct RequestMeta<'a> {
    pub head: &'a RequestHead,
    pub peer: Peer,
    pub server_port: ServerPort,
    /// The length of a de-chunked body: replaces CONTENT_LENGTH and hides
    /// Transfer-Encoding, which no longer describes what `wsgi.input` yields.
    pub content_length: Option<u64>,
}

/// What the app is called with, or what is answered instead.
pub enum Built<'py> {
    Environ(Bound<'py, PyDict>),
    /// A trusted proxy sent this header malformed: 400, as waitress answers.
    BadProxyHeader(&'static str),
}

/// A trusted proxy's headers, read for a request from it; `None` from any
/// other peer, and at no cost when no proxy is configured. With
/// `proxy_protocol` every connection comes from a trusted proxy (others are
/// closed), whatever client its PROXY header names.
fn forwarding(
    cfg: &Config,
    meta: &RequestMeta,
) -> PyResult<Result<Option<Forwarding>, &'static str>> {
    let proxy = &cfg.proxy;
    if proxy.trusted_proxy.is_none() {
        return Ok(Ok(None));
    }
    let peer = peer_text(meta.peer, &mut [0; 64]).to_vec();
    if !cfg.proxy_protocol && !proxy.trusts(&peer) {
        return Ok(Ok(None));
    }
    let values = proxy::Values::collect(meta.head.header_pairs());
    let mut warn_unknown = |token: &[u8]| {
        log::warn!(target: "maitre", "Unknown Forwarded token: {}", Latin1(token));
    };
    match proxy::forwarding(&values, proxy, cfg.url_scheme.as_bytes(), &mut warn_unknown) {
        Ok(f) => Ok(Ok(Some(f))),
        Err(ProxyError::Malformed {
            header,
            reason,
            value,
        }) => {
            log::warn!(
                target: "maitre",
                "Malformed proxy header \"{header}\" from \"{}\": {reason} value: {}",
                Latin1(&peer),
                Latin1(&value)
            );
            Ok(Err(header))
        }
        // waitress fails here with an IndexError: the app's 500.
        Err(ProxyError::EmptyAddress) => Err(PyValueError::new_err(
            "a trusted proxy forwarded an empty client address",
        )),
    }
}

/// Bytes shown as latin-1 text in a log line.
struct Latin1<'a>(&'a [u8]);

impl std::fmt::Display for Latin1<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0
            .iter()
            .try_for_each(|&b| write!(f, "{}", char::from(b)))
    }
}

pub fn build<'py>(
    py: Python<'py>,
    ctx: &WsgiContext,
    cfg: &Config,
    meta: &RequestMeta,
    input: &Bound<'py, InputStream>,
) -> PyResult<Built<'py>> {
    let forwarded = match forwarding(cfg, meta)? {
        Ok(f) => f,
        Err(header) => return Ok(Built::BadProxyHeader(header)),
    };
    // The proxy headers the app does not see: all of them unless a trusted
    // proxy vouched for some, as waitress clears them by default.
    let hidden = match (&forwarded, cfg.proxy.clear_untrusted) {
        (_, false) => HeaderSet::EMPTY,
        (Some(f), true) => f.untrusted,
        (None, true) => HeaderSet::ALL,
    };
    let env = ctx.base_environ.bind(py).copy()?;
    let head = meta.head;
    let target = head.target();
    let (path, query) = split_target(target);
    let path = percent_decode(path);
    let path = strip_prefix(collapse_leading_slashes(&path), &cfg.url_prefix);
    env.set_item(intern!(py, "REQUEST_METHOD"), method(py, head.method())?)?;
    let path_info = latin1(py, path)?;
    // Usually the target is the path as it is: one string serves both keys.
    let request_uri = if path == target {
        path_info.clone()
    } else {
        latin1(py, target)?
    };
    env.set_item(intern!(py, "PATH_INFO"), path_info)?;
    env.set_item(intern!(py, "REQUEST_URI"), request_uri)?;
    env.set_item(intern!(py, "QUERY_STRING"), latin1(py, query)?)?;
    let protocol = match head.version {
        Version::Http10 => intern!(py, "HTTP/1.0"),
        Version::Http11 => intern!(py, "HTTP/1.1"),
    };
    env.set_item(intern!(py, "SERVER_PROTOCOL"), protocol)?;
    let [server_port, ip, port] = ctx.addr_strings.get(py, meta.peer, &meta.server_port)?;
    env.set_item(intern!(py, "SERVER_PORT"), server_port)?;
    env.set_item(intern!(py, "REMOTE_ADDR"), &ip)?;
    env.set_item(intern!(py, "REMOTE_HOST"), ip)?;
    env.set_item(intern!(py, "REMOTE_PORT"), port)?;
    let mut removed = HeaderSet::EMPTY;
    for (name, value) in head.header_pairs() {
        if meta.content_length.is_some()
            && (name.eq_ignore_ascii_case(b"content-length")
                || name.eq_ignore_ascii_case(b"transfer-encoding"))
        {
            continue;
        }
        if let Some(h) = ProxyHeader::of(name) {
            if hidden.contains(h) {
                removed.insert(h);
                continue;
            }
            if forwarded.as_ref().is_some_and(|f| f.rewritten(h).is_some()) {
                continue; // set below, cut to the trusted hops
            }
        }
        let Some(key) = ctx.header_keys.key(py, name) else {
            continue;
        };
        let value = crate::http::parse::trim(value);
        match env.get_item(&key)? {
            Some(prev) => {
                let joined = format!("{}, {}", prev.extract::<String>()?, latin1(py, value)?);
                env.set_item(key, joined)?;
            }
            None => env.set_item(key, latin1(py, value)?)?,
        }
    }
    if let Some(f) = &forwarded {
        apply_forwarding(py, &env, f)?;
    }
    if !removed.is_empty() && cfg.proxy.log_untrusted {
        let names: Vec<&str> = removed.iter().map(ProxyHeader::title).collect();
        log::warn!(
            target: "maitre",
            "Removed untrusted headers ({}). maitre recommends these be removed upstream.",
            names.join(", ")
        );
    }
    if let Some(n) = meta.content_length {
        env.set_item(intern!(py, "CONTENT_LENGTH"), n.to_string())?;
    }
    env.set_item(intern!(py, "wsgi.input"), input)?;
    env.set_item(
        intern!(py, "wsgi.errors"),
        ctx.sys.bind(py).getattr(intern!(py, "stderr"))?,
    )?;
    Ok(Built::Environ(env))
}

/// Writes what a trusted proxy's headers changed into the environ.
fn apply_forwarding(py: Python<'_>, env: &Bound<'_, PyDict>, f: &Forwarding) -> PyResult<()> {
    for (h, value) in &f.rewritten {
        env.set_item(h.environ_key(), latin1(py, value)?)?;
    }
    let keys: [(&[&str], &Option<Vec<u8>>); 6] = [
        (&["wsgi.url_scheme"], &f.url_scheme),
        (&["HTTP_HOST"], &f.http_host),
        (&["SERVER_NAME"], &f.server_name),
        (&["SERVER_PORT"], &f.server_port),
        (&["REMOTE_ADDR", "REMOTE_HOST"], &f.remote_addr),
        (&["REMOTE_PORT"], &f.remote_port),
    ];
    for (names, value) in keys {
        if let Some(value) = value {
            let value = latin1(py, value)?;
            for &name in names {
                env.set_item(name, &value)?;
            }
        }
    }
    Ok(())
}

/// Answers a malformed proxy header as waitress does, without the app.
pub fn bad_proxy_header(
    py: Python<'_>,
    responder: &Bound<'_, StartResponse>,
    header: &str,
) -> PyResult<()> {
    let body =
        format!("Bad Request\r\n\r\nHeader \"{header}\" malformed.\r\n\r\n(generated by maitre)");
    responder.call1((
        "400 Bad Request",
        vec![("Content-Type", "text/plain; charset=utf-8")],
    ))?;
    responder
        .try_borrow_mut()?
        .send_all(&[PyBytes::new(py, body.as_bytes())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(split_target(b"/a/b?x=1&y"), (&b"/a/b"[..], &b"x=1&y"[..]));
        assert_eq!(split_target(b"/a"), (&b"/a"[..], &b""[..]));
        assert_eq!(split_target(b"http://h:1/p?q"), (&b"/p"[..], &b"q"[..]));
        assert_eq!(split_target(b"http://h"), (&b""[..], &b""[..]));
        assert_eq!(split_target(b"http://h?q"), (&b""[..], &b"q"[..]));
        assert_eq!(split_target(b"*"), (&b"*"[..], &b""[..]));
        // The fragment goes first, even before a `?` inside it.
        assert_eq!(split_target(b"/a#f?x"), (&b"/a"[..], &b""[..]));
        assert_eq!(split_target(b"/a?q#f"), (&b"/a"[..], &b"q"[..]));
        assert_eq!(split_target(b"http://h/p#f"), (&b"/p"[..], &b""[..]));
        assert_eq!(split_target(b"#f"), (&b""[..], &b""[..]));
    }

    #[test]
    fn leading_slashes() {
        assert_eq!(collapse_leading_slashes(b"//a//b"), b"/a//b");
        assert_eq!(collapse_leading_slashes(b"///"), b"/");
        assert_eq!(collapse_leading_slashes(b"/a"), b"/a");
        assert_eq!(collapse_leading_slashes(b""), b"");
        assert_eq!(collapse_leading_slashes(b"*"), b"*");
    }

    #[test]
    fn percent() {
        assert_eq!(&*percent_decode(b"/caf%C3%A9"), b"/caf\xc3\xa9");
        assert_eq!(&*percent_decode(b"/a%2Fb"), b"/a/b");
        assert_eq!(&*percent_decode(b"/bad%zz%4"), b"/bad%zz%4");
        assert_eq!(&*percent_decode(b"%41"), b"A");
        assert_eq!(&*percent_decode(b"%"), b"%");
        assert!(matches!(
            percent_decode(b"/plain"),
            Cow::Borrowed(b"/plain")
        ));
    }

    #[test]
    fn ip_texts() {
        for ip in [
            "127.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "10.20.3.4",
            "::1",
            "fe80::1:2",
        ] {
            let addr: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(addr, &mut [0; 64]), ip.as_bytes());
        }
        let longest: IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
            .parse()
            .unwrap();
        assert_eq!(
            ip_text(longest, &mut [0; 64]),
            longest.to_string().as_bytes()
        );
    }

    #[test]
    fn prefixes() {
        assert_eq!(strip_prefix(b"/app/x", "/app"), b"/x");
        assert_eq!(strip_prefix(b"/app", "/app"), b"");
        assert_eq!(strip_prefix(b"/application", "/app"), b"/application");
        assert_eq!(strip_prefix(b"/x", ""), b"/x");
    }

    #[test]
    fn keys() {
        assert_eq!(
            environ_key(b"User-Agent").as_deref(),
            Some("HTTP_USER_AGENT")
        );
        assert_eq!(
            environ_key(b"content-type").as_deref(),
            Some("CONTENT_TYPE")
        );
        assert_eq!(
            environ_key(b"Content-Length").as_deref(),
            Some("CONTENT_LENGTH")
        );
        assert_eq!(environ_key(b"X_Forwarded_For"), None);
    }
}
