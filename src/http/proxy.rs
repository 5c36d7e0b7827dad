//! Forwarding headers from a trusted proxy (`trusted_proxy*` options), read
//! exactly as waitress 3 reads them, so an app moved from waitress sees the same
//! `REMOTE_ADDR`, `HTTP_HOST`, `SERVER_*` and `wsgi.url_scheme`.
//!
//! waitress works on the header values as latin-1 `str`s; every step here is the
//! same step on bytes (one byte per code point), including where Python's
//! `strip()` and `lower()` reach beyond ASCII, so the results match byte for byte.

use std::borrow::Cow;

/// The headers a proxy sets. The discriminant is the bit in a `HeaderSet`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyHeader {
    Forwarded = 0,
    XForwardedFor = 1,
    XForwardedHost = 2,
    XForwardedProto = 3,
    XForwardedPort = 4,
    XForwardedBy = 5,
}

use ProxyHeader::*;

pub const ALL_HEADERS: [ProxyHeader; 6] = [
    XForwardedFor,
    XForwardedHost,
    XForwardedProto,
    XForwardedPort,
    XForwardedBy,
    Forwarded,
];

impl ProxyHeader {
    /// The header a name (any case) stands for. Cheap for every other name:
    /// the request-head loop asks this of each header.
    pub fn of(name: &[u8]) -> Option<ProxyHeader> {
        if name.len() == 9 {
            return name.eq_ignore_ascii_case(b"forwarded").then_some(Forwarded);
        }
        if name.len() < 14 || !name[..12].eq_ignore_ascii_case(b"x-forwarded-") {
            return None;
        }
        let rest = &name[12..];
        [
            (&b"for"[..], XForwardedFor),
            (b"host", XForwardedHost),
            (b"proto", XForwardedProto),
            (b"port", XForwardedPort),
            (b"by", XForwardedBy),
        ]
        .into_iter()
        .find(|(suffix, _)| rest.eq_ignore_ascii_case(suffix))
        .map(|(_, h)| h)
    }

    /// As `trusted_proxy_headers` spells it.
    pub fn option_name(self) -> &'static str {
        match self {
            Forwarded => "forwarded",
            XForwardedFor => "x-forwarded-for",
            XForwardedHost => "x-forwarded-host",
            XForwardedProto => "x-forwarded-proto",
            XForwardedPort => "x-forwarded-port",
            XForwardedBy => "x-forwarded-by",
        }
    }

    /// As logs and error responses name it.
    pub fn title(self) -> &'static str {
        match self {
            Forwarded => "Forwarded",
            XForwardedFor => "X-Forwarded-For",
            XForwardedHost => "X-Forwarded-Host",
            XForwardedProto => "X-Forwarded-Proto",
            XForwardedPort => "X-Forwarded-Port",
            XForwardedBy => "X-Forwarded-By",
        }
    }

    pub fn environ_key(self) -> &'static str {
        match self {
            Forwarded => "HTTP_FORWARDED",
            XForwardedFor => "HTTP_X_FORWARDED_FOR",
            XForwardedHost => "HTTP_X_FORWARDED_HOST",
            XForwardedProto => "HTTP_X_FORWARDED_PROTO",
            XForwardedPort => "HTTP_X_FORWARDED_PORT",
            XForwardedBy => "HTTP_X_FORWARDED_BY",
        }
    }
}

/// A set of proxy headers, one bit each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeaderSet(u8);

impl HeaderSet {
    pub const EMPTY: HeaderSet = HeaderSet(0);
    pub const ALL: HeaderSet = HeaderSet(0b11_1111);

    pub fn contains(self, h: ProxyHeader) -> bool {
        self.0 & (1 << h as u8) != 0
    }

    pub fn insert(&mut self, h: ProxyHeader) {
        self.0 |= 1 << h as u8;
    }

    pub fn remove(&mut self, h: ProxyHeader) {
        self.0 &= !(1 << h as u8);
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// In a fixed order, for logs.
    pub fn iter(self) -> impl Iterator<Item = ProxyHeader> {
        ALL_HEADERS.into_iter().filter(move |&h| self.contains(h))
    }
}

/// The proxy options, as the engine holds them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyConfig {
    /// `trusted_proxy`: a peer address as `REMOTE_ADDR` writes it, or `*`.
    pub trusted_proxy: Option<String>,
    /// `trusted_proxy_count`: how many hops of a chain to believe; 0 believes
    /// them all (waitress slices `[-0:]`, the whole list).
    pub count: usize,
    /// `trusted_proxy_headers`.
    pub trusted: HeaderSet,
    pub clear_untrusted: bool,
    pub log_untrusted: bool,
}

impl Default for ProxyConfig {
    /// waitress's defaults: no proxy, and every proxy header cleared.
    fn default() -> Self {
        ProxyConfig {
            trusted_proxy: None,
            count: 1,
            trusted: HeaderSet::EMPTY,
            clear_untrusted: true,
            log_untrusted: false,
        }
    }
}

impl ProxyConfig {
    /// Whether forwarding headers from a peer (its `REMOTE_ADDR` text) are believed.
    pub fn trusts(&self, remote_addr: &[u8]) -> bool {
        self.trusted_proxy
            .as_deref()
            .is_some_and(|t| t == "*" || t.as_bytes() == remote_addr)
    }
}

/// One request's proxy headers, each as waitress's parser holds it: the
/// values of repeated headers joined with `, `.
#[derive(Debug, Default)]
pub struct Values([Option<Vec<u8>>; 6]);

impl Values {
    /// From the request's (name, value) pairs; values already trimmed of
    /// spaces and tabs, as the head parser hands them out.
    pub fn collect<'a>(pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> Values {
        let mut values = Values::default();
        for (name, value) in pairs {
            let Some(h) = ProxyHeader::of(name) else {
                continue;
            };
            match &mut values.0[h as usize] {
                Some(joined) => {
                    joined.extend_from_slice(b", ");
                    joined.extend_from_slice(value);
                }
                slot => *slot = Some(value.to_vec()),
            }
        }
        values
    }

    pub fn get(&self, h: ProxyHeader) -> Option<&[u8]> {
        self.0[h as usize].as_deref()
    }
}

/// What a trusted proxy's headers change in the environ; `None` leaves a key as it is.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Forwarding {
    pub url_scheme: Option<Vec<u8>>,
    pub http_host: Option<Vec<u8>>,
    pub server_name: Option<Vec<u8>>,
    pub server_port: Option<Vec<u8>>,
    /// Also `REMOTE_HOST`.
    pub remote_addr: Option<Vec<u8>>,
    pub remote_port: Option<Vec<u8>>,
    /// Chained headers cut down to the trusted hops (as waitress rewrites them).
    pub rewritten: Vec<(ProxyHeader, Vec<u8>)>,
    /// The proxy headers not believed: cleared with `clear_untrusted_proxy_headers`.
    pub untrusted: HeaderSet,
}

impl Forwarding {
    pub fn rewritten(&self, h: ProxyHeader) -> Option<&[u8]> {
        self.rewritten
            .iter()
            .find(|(r, _)| *r == h)
            .map(|(_, v)| v.as_slice())
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum ProxyError {
    /// A malformed header: 400 naming `header`, as waitress answers.
    Malformed {
        header: &'static str,
        reason: &'static str,
        value: Vec<u8>,
    },
    /// A client address that is empty once stripped. waitress accepts the
    /// header, then fails on the address with an `IndexError`: a 500.
    EmptyAddress,
}

fn malformed(h: ProxyHeader, reason: &'static str, value: &[u8]) -> ProxyError {
    ProxyError::Malformed {
        header: h.title(),
        reason,
        value: value.to_vec(),
    }
}

/// Python's `str.isspace()` for a latin-1 code point.
fn is_py_space(b: u8) -> bool {
    matches!(b, 0x09..=0x0d | 0x1c..=0x20 | 0x85 | 0xa0)
}

/// Python's `str.strip()` on latin-1 text.
pub fn py_strip(mut v: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = v {
        if !is_py_space(*first) {
            break;
        }
        v = rest;
    }
    while let [rest @ .., last] = v {
        if !is_py_space(*last) {
            break;
        }
        v = rest;
    }
    v
}

/// Python's `str.lower()` on latin-1 text: ASCII and À-Þ (but not ×).
pub fn py_lower(v: &[u8]) -> Vec<u8> {
    v.iter()
        .map(|&b| match b {
            b'A'..=b'Z' | 0xc0..=0xd6 | 0xd8..=0xde => b + 32,
            b => b,
        })
        .collect()
}

/// RFC 7230 qdtext.
fn is_qdtext(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff)
}

/// What may follow a backslash in a quoted-pair.
fn is_pair_char(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff)
}

/// waitress's `undquote`: a whole quoted-string loses its quotes and escapes;
/// a value with no quote at either end stays; anything else is malformed.
pub fn undquote(v: &[u8]) -> Result<Cow<'_, [u8]>, &'static str> {
    const BAD: &str = "Invalid quoting in value";
    let (starts, ends) = (v.first() == Some(&b'"'), v.last() == Some(&b'"'));
    if !starts && !ends {
        return Ok(Cow::Borrowed(v));
    }
    if !(starts && ends && v.len() >= 2) {
        return Err(BAD);
    }
    let inner = &v[1..v.len() - 1];
    let mut out = Vec::with_capacity(inner.len());
    let mut bytes = inner.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'\\' => match bytes.next() {
                Some(&next) if is_pair_char(next) => out.push(next),
                _ => return Err(BAD),
            },
            b if is_qdtext(b) => out.push(b),
            _ => return Err(BAD),
        }
    }
    Ok(Cow::Owned(out))
}

/// Python's `items[-count:]` for `count >= 0`.
fn tail<T>(items: &[T], count: usize) -> &[T] {
    match count {
        0 => items,
        n => &items[items.len().saturating_sub(n)..],
    }
}

/// `",".join(parts).strip()`.
fn join_stripped(parts: &[&[u8]]) -> Vec<u8> {
    py_strip(&parts.join(&b","[..])).to_vec()
}

/// Python's `s.rsplit(":", 1)` when `s` holds a colon.
fn rsplit_colon(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = s.iter().rposition(|&b| b == b':')?;
    Some((&s[..i], &s[i + 1..]))
}

/// `[addr]` loses its brackets; an empty address is waitress's IndexError.
fn strip_brackets(addr: &[u8]) -> Result<Vec<u8>, ProxyError> {
    match addr {
        [] => Err(ProxyError::EmptyAddress),
        [b'[', inner @ .., b']'] => Ok(inner.to_vec()),
        _ => Ok(addr.to_vec()),
    }
}

/// A `, `-separated chain, each entry stripped and unquoted, cut to the
/// trusted hops; with the header's rewritten value.
fn chain(
    h: ProxyHeader,
    value: &[u8],
    count: usize,
    bracket_v6: bool,
) -> Result<(Vec<u8>, Vec<u8>), ProxyError> {
    let raw: Vec<&[u8]> = value.split(|&b| b == b',').collect();
    let mut hops = Vec::with_capacity(raw.len());
    for hop in &raw {
        let hop = undquote(py_strip(hop)).map_err(|why| malformed(h, why, value))?;
        // An IPv6 address without its port gets brackets, so that a port
        // can be told from the address later on.
        let unbracketed_v6 =
            !hop.contains(&b'.') && hop.contains(&b':') && hop.last() != Some(&b']');
        if bracket_v6 && unbracketed_v6 {
            hops.push([&b"["[..], &hop, b"]"].concat());
        } else {
            hops.push(hop.into_owned());
        }
    }
    // `raw` always holds at least one entry, and so does its tail.
    let first = tail(&hops, count).first().cloned().unwrap_or_default();
    Ok((first, join_stripped(tail(&raw, count))))
}

/// A single-valued header (X-Forwarded-Proto, -Port), unquoted.
fn single(h: ProxyHeader, value: Option<&[u8]>) -> Result<Vec<u8>, ProxyError> {
    let raw = value.unwrap_or_default();
    let v = undquote(raw).map_err(|why| malformed(h, why, raw))?;
    if v.contains(&b',') {
        return Err(malformed(
            h,
            "Unspecified behavior for multiple values found in header",
            raw,
        ));
    }
    Ok(v.into_owned())
}

/// One element of a `Forwarded` header: (for, host, proto); `by` is parsed but unused.
type Element = (Vec<u8>, Vec<u8>, Vec<u8>);

fn forwarded_element(
    element: &[u8],
    warn_unknown: &mut dyn FnMut(&[u8]),
) -> Result<Element, &'static str> {
    let (mut for_, mut host, mut proto) = (Vec::new(), Vec::new(), Vec::new());
    for pair in py_strip(element).split(|&b| b == b';') {
        let pair = py_lower(pair);
        if pair.is_empty() {
            continue;
        }
        let Some(eq) = pair.iter().position(|&b| b == b'=') else {
            return Err("Invalid forwarded-pair missing \"=\"");
        };
        let (token, value) = (&pair[..eq], &pair[eq + 1..]);
        if py_strip(token) != token {
            return Err("Token may not be surrounded by whitespace");
        }
        if py_strip(value) != value {
            return Err("Value may not be surrounded by whitespace");
        }
        match token {
            b"by" => {
                undquote(value)?;
            }
            b"for" => for_ = undquote(value)?.into_owned(),
            b"host" => host = undquote(value)?.into_owned(),
            b"proto" => proto = undquote(value)?.into_owned(),
            other => warn_unknown(other),
        }
    }
    Ok((for_, host, proto))
}

/// What a trusted proxy's headers mean, as waitress's `parse_proxy_headers`
/// decides it. `url_scheme` is the configured scheme; `warn_unknown` hears of
/// each `Forwarded` token waitress does not know (it logs them).
pub fn forwarding(
    values: &Values,
    cfg: &ProxyConfig,
    url_scheme: &[u8],
    warn_unknown: &mut dyn FnMut(&[u8]),
) -> Result<Forwarding, ProxyError> {
    let trusted = cfg.trusted;
    let mut out = Forwarding {
        untrusted: HeaderSet::ALL,
        ..Forwarding::default()
    };
    let mut client = Vec::new();
    let (mut host, mut proto, mut port) = (Vec::new(), Vec::new(), Vec::new());

    if let (true, Some(v)) = (trusted.contains(XForwardedFor), values.get(XForwardedFor)) {
        let (first, rewritten) = chain(XForwardedFor, v, cfg.count, true)?;
        client = first;
        out.untrusted.remove(XForwardedFor);
        out.rewritten.push((XForwardedFor, rewritten));
    }
    if let (true, Some(v)) = (trusted.contains(XForwardedHost), values.get(XForwardedHost)) {
        let (first, rewritten) = chain(XForwardedHost, v, cfg.count, false)?;
        host = first;
        out.untrusted.remove(XForwardedHost);
        out.rewritten.push((XForwardedHost, rewritten));
    }
    if trusted.contains(XForwardedProto) {
        proto = single(XForwardedProto, values.get(XForwardedProto))?;
        out.untrusted.remove(XForwardedProto);
    }
    if trusted.contains(XForwardedPort) {
        port = single(XForwardedPort, values.get(XForwardedPort))?;
        out.untrusted.remove(XForwardedPort);
    }
    if trusted.contains(XForwardedBy) {
        // Not used, but the app may read it.
        out.untrusted.remove(XForwardedBy);
    }
    let mut forwarded: &[u8] = b"";
    if trusted.contains(Forwarded) {
        forwarded = values.get(Forwarded).unwrap_or_default();
        out.untrusted = HeaderSet::ALL;
        out.untrusted.remove(Forwarded);
    }
    if !forwarded.is_empty() {
        let raw: Vec<&[u8]> = forwarded.split(|&b| b == b',').collect();
        let elements = raw
            .iter()
            .map(|e| forwarded_element(e, warn_unknown))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|why| malformed(Forwarded, why, forwarded))?;
        out.rewritten
            .push((Forwarded, join_stripped(tail(&raw, cfg.count))));
        // The oldest trusted hop that says something wins: proxies nearer to
        // us may rewrite the host or scheme, the client's view is the first.
        port.clear();
        for (f, h, p) in tail(&elements, cfg.count).iter().rev() {
            if !f.is_empty() {
                client = f.clone();
            }
            if !h.is_empty() {
                host = h.clone();
            }
            if !p.is_empty() {
                proto = p.clone();
            }
        }
    }

    let mut scheme = url_scheme.to_vec();
    if !proto.is_empty() {
        let proto = py_lower(&proto);
        if proto != b"http" && proto != b"https" {
            return Err(ProxyError::Malformed {
                header: if forwarded.is_empty() {
                    "X-Forwarded-Proto"
                } else {
                    "Forwarded Proto="
                },
                reason: "unsupported proto value",
                value: proto,
            });
        }
        if port.is_empty() {
            port = if proto == b"http" { &b"80"[..] } else { b"443" }.to_vec();
        }
        scheme.clone_from(&proto);
        out.url_scheme = Some(proto);
    }
    if !host.is_empty() {
        match rsplit_colon(&host).filter(|_| host.last() != Some(&b']')) {
            // A port in the host beats X-Forwarded-Port and the scheme's port.
            Some((name, host_port)) => {
                port = host_port.to_vec();
                out.server_name = Some(py_strip(name).to_vec());
                out.http_host = Some(host.clone());
            }
            None => {
                out.server_name = Some(host.clone());
                let default_port = match port.as_slice() {
                    b"80" => scheme == b"http",
                    b"443" => scheme == b"https",
                    _ => port.is_empty(),
                };
                out.http_host = Some(if default_port {
                    host
                } else {
                    [&host[..], b":", &port].concat()
                });
            }
        }
    }
    if !port.is_empty() {
        out.server_port = Some(port);
    }
    if !client.is_empty() {
        match rsplit_colon(&client).filter(|_| client.last() != Some(&b']')) {
            Some((addr, client_port)) => {
                out.remote_addr = Some(strip_brackets(py_strip(addr))?);
                out.remote_port = Some(py_strip(client_port).to_vec());
            }
            None => out.remote_addr = Some(strip_brackets(py_strip(&client))?),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(headers: &[ProxyHeader], count: usize) -> ProxyConfig {
        let mut trusted = HeaderSet::EMPTY;
        for &h in headers {
            trusted.insert(h);
        }
        ProxyConfig {
            trusted_proxy: Some("*".into()),
            count,
            trusted,
            clear_untrusted: true,
            log_untrusted: false,
        }
    }

    fn values(head: &[(&str, &str)]) -> Values {
        Values::collect(head.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    }

    fn run(head: &[(&str, &str)], trusted: &[ProxyHeader], count: usize) -> Forwarding {
        forwarding(&values(head), &cfg(trusted, count), b"http", &mut |_| {}).expect("accepted")
    }

    fn err(head: &[(&str, &str)], trusted: &[ProxyHeader]) -> ProxyError {
        forwarding(&values(head), &cfg(trusted, 1), b"http", &mut |_| {}).expect_err("refused")
    }

    fn s(v: &Option<Vec<u8>>) -> Option<&str> {
        v.as_deref().map(|b| std::str::from_utf8(b).unwrap())
    }

    #[test]
    fn names() {
        assert_eq!(ProxyHeader::of(b"X-Forwarded-For"), Some(XForwardedFor));
        assert_eq!(ProxyHeader::of(b"x-forwarded-PORT"), Some(XForwardedPort));
        assert_eq!(ProxyHeader::of(b"FORWARDED"), Some(Forwarded));
        assert_eq!(ProxyHeader::of(b"x-forwarded-by"), Some(XForwardedBy));
        assert_eq!(ProxyHeader::of(b"x-forwarded-server"), None);
        assert_eq!(ProxyHeader::of(b"x-forwarded"), None);
        assert_eq!(ProxyHeader::of(b"host"), None);
        for h in ALL_HEADERS {
            assert_eq!(ProxyHeader::of(h.option_name().as_bytes()), Some(h));
            assert_eq!(ProxyHeader::of(h.title().as_bytes()), Some(h));
        }
        let mut set = HeaderSet::ALL;
        set.remove(Forwarded);
        assert!(!set.contains(Forwarded) && set.contains(XForwardedBy));
        assert_eq!(set.iter().count(), 5);
    }

    #[test]
    fn python_string_steps() {
        assert_eq!(py_strip(b" \x85\xa0a b\x0b\x1f"), b"a b");
        assert_eq!(py_strip(b"\xa1x"), b"\xa1x");
        assert_eq!(py_lower(b"HTTPS\xc0\xd7\xde\xdf"), b"https\xe0\xd7\xfe\xdf");
        assert_eq!(&*undquote(b"plain").unwrap(), b"plain");
        assert_eq!(&*undquote(b"\"a\\\"b\\\\c\"").unwrap(), b"a\"b\\c");
        assert_eq!(&*undquote(b"\"\"").unwrap(), b"");
        for bad in [
            &b"\""[..],
            b"\"a",
            b"a\"",
            b"\"a\"b\"",
            b"\"a\\\"",
            b"\"a\x01\"",
        ] {
            assert!(undquote(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn x_forwarded_for_chain_and_count() {
        let head = [("X-Forwarded-For", "192.0.2.1, 198.51.100.2, 203.0.113.3")];
        let f = run(&head, &[XForwardedFor], 1);
        assert_eq!(s(&f.remote_addr), Some("203.0.113.3"));
        assert_eq!(f.remote_port, None);
        assert_eq!(f.rewritten(XForwardedFor), Some(&b"203.0.113.3"[..]));
        assert!(!f.untrusted.contains(XForwardedFor));
        assert!(f.untrusted.contains(XForwardedProto));
        let f = run(&head, &[XForwardedFor], 2);
        assert_eq!(s(&f.remote_addr), Some("198.51.100.2"));
        assert_eq!(
            f.rewritten(XForwardedFor),
            Some(&b"198.51.100.2, 203.0.113.3"[..])
        );
        for count in [0, 3, 10] {
            let f = run(&head, &[XForwardedFor], count);
            assert_eq!(s(&f.remote_addr), Some("192.0.2.1"));
        }
    }

    #[test]
    fn x_forwarded_for_addresses() {
        let addr = |v: &str| {
            let f = run(&[("X-Forwarded-For", v)], &[XForwardedFor], 1);
            (
                s(&f.remote_addr).map(str::to_owned),
                s(&f.remote_port).map(str::to_owned),
            )
        };
        let pair = |a: &str, p: Option<&str>| (Some(a.to_owned()), p.map(str::to_owned));
        assert_eq!(addr("2001:db8::1"), pair("2001:db8::1", None));
        assert_eq!(addr("[2001:db8::1]:8080"), pair("[2001:db8::1]:8080", None));
        assert_eq!(addr("\"[2001:db8::1]\""), pair("2001:db8::1", None));
        assert_eq!(addr("192.0.2.1:4000"), pair("192.0.2.1", Some("4000")));
        assert_eq!(addr("\"192.0.2.1\""), pair("192.0.2.1", None));
        assert_eq!(addr("unknown"), pair("unknown", None));
        // Repeated headers are one chain.
        let f = run(
            &[
                ("X-Forwarded-For", "1.1.1.1"),
                ("x-forwarded-for", "2.2.2.2"),
            ],
            &[XForwardedFor],
            2,
        );
        assert_eq!(s(&f.remote_addr), Some("1.1.1.1"));
        assert_eq!(f.rewritten(XForwardedFor), Some(&b"1.1.1.1, 2.2.2.2"[..]));
        // Nothing usable: the peer's address stays.
        assert_eq!(
            run(&[("X-Forwarded-For", "")], &[XForwardedFor], 1).remote_addr,
            None
        );
        assert_eq!(
            err(&[("X-Forwarded-For", "\"1.2.3.4")], &[XForwardedFor]),
            malformed(XForwardedFor, "Invalid quoting in value", b"\"1.2.3.4")
        );
        assert_eq!(
            forwarding(
                &values(&[("X-Forwarded-For", "\" \"")]),
                &cfg(&[XForwardedFor], 1),
                b"http",
                &mut |_| {}
            ),
            Err(ProxyError::EmptyAddress)
        );
    }

    #[test]
    fn host_proto_port() {
        let all = [XForwardedHost, XForwardedProto, XForwardedPort];
        let f = run(
            &[
                ("X-Forwarded-Host", "example.com"),
                ("X-Forwarded-Proto", "HTTPS"),
            ],
            &all,
            1,
        );
        assert_eq!(s(&f.url_scheme), Some("https"));
        assert_eq!(s(&f.http_host), Some("example.com"));
        assert_eq!(s(&f.server_name), Some("example.com"));
        assert_eq!(s(&f.server_port), Some("443"));
        let f = run(
            &[
                ("X-Forwarded-Host", "example.com"),
                ("X-Forwarded-Proto", "http"),
                ("X-Forwarded-Port", "8080"),
            ],
            &all,
            1,
        );
        assert_eq!(s(&f.http_host), Some("example.com:8080"));
        assert_eq!(s(&f.server_port), Some("8080"));
        // 443 over http is not the scheme's port: it is kept in the host.
        let f = run(
            &[
                ("X-Forwarded-Host", "example.com"),
                ("X-Forwarded-Port", "443"),
            ],
            &all,
            1,
        );
        assert_eq!(s(&f.http_host), Some("example.com:443"));
        assert_eq!(f.url_scheme, None);
        // A port in the host wins.
        let f = run(
            &[
                ("X-Forwarded-Host", "example.com:81"),
                ("X-Forwarded-Port", "82"),
            ],
            &all,
            1,
        );
        assert_eq!(s(&f.http_host), Some("example.com:81"));
        assert_eq!(s(&f.server_name), Some("example.com"));
        assert_eq!(s(&f.server_port), Some("81"));
        let f = run(&[("X-Forwarded-Host", "[::1]")], &all, 1);
        assert_eq!(s(&f.server_name), Some("[::1]"));
        let f = run(&[("X-Forwarded-Host", "a.example, b.example")], &all, 1);
        assert_eq!(s(&f.http_host), Some("b.example"));
        assert_eq!(f.rewritten(XForwardedHost), Some(&b"b.example"[..]));
        // Without the headers, nothing changes; a chained header counts as
        // trusted only when present, a single-valued one always.
        assert_eq!(
            run(&[], &all, 1),
            Forwarding {
                untrusted: {
                    let mut u = HeaderSet::ALL;
                    u.remove(XForwardedProto);
                    u.remove(XForwardedPort);
                    u
                },
                ..Forwarding::default()
            }
        );
    }

    #[test]
    fn malformed_single_values() {
        assert_eq!(
            err(&[("X-Forwarded-Proto", "ftp")], &[XForwardedProto]),
            ProxyError::Malformed {
                header: "X-Forwarded-Proto",
                reason: "unsupported proto value",
                value: b"ftp".to_vec()
            }
        );
        assert!(matches!(
            err(&[("X-Forwarded-Proto", "http, https")], &[XForwardedProto]),
            ProxyError::Malformed {
                header: "X-Forwarded-Proto",
                ..
            }
        ));
        assert!(matches!(
            err(&[("X-Forwarded-Port", "80, 81")], &[XForwardedPort]),
            ProxyError::Malformed {
                header: "X-Forwarded-Port",
                ..
            }
        ));
        assert!(matches!(
            err(&[("X-Forwarded-Port", "\"80")], &[XForwardedPort]),
            ProxyError::Malformed {
                header: "X-Forwarded-Port",
                ..
            }
        ));
        // Untrusted headers are never parsed.
        let f = run(&[("X-Forwarded-Proto", "ftp")], &[XForwardedFor], 1);
        assert!(f.untrusted.contains(XForwardedProto));
    }

    #[test]
    fn forwarded_header() {
        let head = [(
            "Forwarded",
            "for=192.0.2.60;proto=http;by=203.0.113.43, For=\"[2001:db8::1]:4711\";Host=Example.com;proto=https",
        )];
        let f = run(&head, &[Forwarded], 1);
        assert_eq!(s(&f.remote_addr), Some("2001:db8::1"));
        assert_eq!(s(&f.remote_port), Some("4711"));
        assert_eq!(s(&f.http_host), Some("example.com"));
        assert_eq!(s(&f.url_scheme), Some("https"));
        assert_eq!(s(&f.server_port), Some("443"));
        assert_eq!(
            f.rewritten(Forwarded),
            Some(&b"For=\"[2001:db8::1]:4711\";Host=Example.com;proto=https"[..])
        );
        let mut untrusted = HeaderSet::ALL;
        untrusted.remove(Forwarded);
        assert_eq!(f.untrusted, untrusted);
        // Two hops: the older one's values win where it has them.
        let f = run(&head, &[Forwarded], 2);
        assert_eq!(s(&f.remote_addr), Some("192.0.2.60"));
        assert_eq!(s(&f.url_scheme), Some("http"));
        assert_eq!(s(&f.http_host), Some("example.com"));
        assert_eq!(s(&f.server_port), Some("80"));
        let mut unknown = Vec::new();
        forwarding(
            &values(&[("Forwarded", "for=1.2.3.4;secret=x;;")]),
            &cfg(&[Forwarded], 1),
            b"http",
            &mut |t| unknown.push(t.to_vec()),
        )
        .unwrap();
        assert_eq!(unknown, vec![b"secret".to_vec()]);
        // X-Forwarded-* is ignored (and untrusted) when Forwarded is trusted.
        let f = run(&[("X-Forwarded-For", "9.9.9.9")], &[Forwarded], 1);
        assert_eq!(f.remote_addr, None);
        assert!(f.untrusted.contains(XForwardedFor));
    }

    #[test]
    fn malformed_forwarded() {
        for bad in [
            "for",
            "for =1.2.3.4",
            "for= 1.2.3.4",
            "for=\"1.2.3.4",
            "for=1.2.3.4, proto",
        ] {
            assert!(
                matches!(
                    err(&[("Forwarded", bad)], &[Forwarded]),
                    ProxyError::Malformed {
                        header: "Forwarded",
                        ..
                    }
                ),
                "{bad}"
            );
        }
        assert_eq!(
            err(&[("Forwarded", "proto=gopher")], &[Forwarded]),
            ProxyError::Malformed {
                header: "Forwarded Proto=",
                reason: "unsupported proto value",
                value: b"gopher".to_vec()
            }
        );
    }

    #[test]
    fn trust() {
        let mut c = cfg(&[XForwardedFor], 1);
        assert!(c.trusts(b"10.0.0.1"));
        c.trusted_proxy = Some("10.0.0.1".into());
        assert!(c.trusts(b"10.0.0.1"));
        assert!(!c.trusts(b"10.0.0.2"));
        c.trusted_proxy = None;
        assert!(!c.trusts(b"10.0.0.1"));
    }
}
