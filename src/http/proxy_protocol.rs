//! The PROXY protocol header (HAProxy's spec, versions 1 and 2) that a load
//! balancer sends first on each connection with `send-proxy`/`send-proxy-v2`:
//! who the client is and what it connected to. Parsed on bytes alone, before
//! the request head.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The version 2 signature: never the start of an HTTP request.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
const V1_PREFIX: &[u8] = b"PROXY ";
/// A version 1 line is 107 bytes at most, CRLF included.
const V1_MAX: usize = 107;

/// What a header says about the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Header {
    /// The client (`source`) and the address it connected to (`destination`).
    Proxied {
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// The connection's own addresses stand: a `LOCAL` command (the proxy's
    /// health check), or addresses the spec says to ignore (`UNKNOWN`,
    /// `UNSPEC`, and Unix paths, which have no place in the environ).
    Local,
}

/// Why a connection is refused; the text goes in a debug log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// Parses the header at the start of `buf`: `Ok(None)` until it is all
/// there, then the header and its length in bytes.
pub fn parse(buf: &[u8]) -> Result<Option<(Header, usize)>, Malformed> {
    let seen = buf.len().min(V2_SIGNATURE.len());
    if buf[..seen] == V2_SIGNATURE[..seen] {
        return if buf.len() < 16 {
            Ok(None)
        } else {
            parse_v2(buf)
        };
    }
    let seen = buf.len().min(V1_PREFIX.len());
    if buf[..seen] != V1_PREFIX[..seen] {
        return Err(Malformed("no PROXY protocol header"));
    }
    let window = &buf[..buf.len().min(V1_MAX)];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(end) => parse_v1(&buf[..end]).map(|h| Some((h, end + 2))),
        None if buf.len() >= V1_MAX => Err(Malformed("a version 1 line longer than 107 bytes")),
        None => Ok(None),
    }
}

/// `PROXY TCP4|TCP6 <src> <dst> <srcport> <dstport>` or `PROXY UNKNOWN ...`.
fn parse_v1(line: &[u8]) -> Result<Header, Malformed> {
    let mut fields = line[V1_PREFIX.len()..].split(|&b| b == b' ');
    let protocol = fields.next().unwrap_or_default();
    if protocol == b"UNKNOWN" {
        return Ok(Header::Local); // the rest is to be ignored
    }
    let v6 = match protocol {
        b"TCP4" => false,
        b"TCP6" => true,
        _ => return Err(Malformed("an unknown version 1 protocol")),
    };
    let mut next = || {
        fields
            .next()
            .ok_or(Malformed("a version 1 line missing fields"))
    };
    let (src, dst, src_port, dst_port) = (next()?, next()?, next()?, next()?);
    if fields.next().is_some() {
        return Err(Malformed("a version 1 line with extra fields"));
    }
    let ip = |text: &[u8]| -> Result<IpAddr, Malformed> {
        let text = std::str::from_utf8(text).map_err(|_| Malformed("a non-ASCII address"))?;
        let parsed = if v6 {
            text.parse::<Ipv6Addr>().map(IpAddr::V6)
        } else {
            text.parse::<Ipv4Addr>().map(IpAddr::V4)
        };
        parsed.map_err(|_| Malformed("an address not of its protocol's family"))
    };
    Ok(Header::Proxied {
        source: SocketAddr::new(ip(src)?, port(src_port)?),
        destination: SocketAddr::new(ip(dst)?, port(dst_port)?),
    })
}

/// A version 1 port: decimal, 0 to 65535, no leading zero.
fn port(text: &[u8]) -> Result<u16, Malformed> {
    let bad = Malformed("a malformed version 1 port");
    if text.is_empty() || text.len() > 5 || (text[0] == b'0' && text.len() > 1) {
        return Err(bad);
    }
    text.iter()
        .try_fold(0u32, |n, &b| match b {
            b'0'..=b'9' => Ok(n * 10 + u32::from(b - b'0')),
            _ => Err(bad),
        })
        .and_then(|n| u16::try_from(n).map_err(|_| bad))
}

/// Signature, version and command, family and transport, length, addresses,
/// then TLVs (skipped: nothing in them changes the environ).
fn parse_v2(buf: &[u8]) -> Result<Option<(Header, usize)>, Malformed> {
    let (version, command) = (buf[12] >> 4, buf[12] & 0x0f);
    if version != 2 {
        return Err(Malformed("a version 2 signature with another version"));
    }
    let (family, transport) = (buf[13] >> 4, buf[13] & 0x0f);
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let Some(block) = buf.get(16..16 + len) else {
        return Ok(None);
    };
    let total = 16 + len;
    match command {
        0x0 => return Ok(Some((Header::Local, total))), // LOCAL: the family is ignored
        0x1 => {}
        _ => return Err(Malformed("an unknown version 2 command")),
    }
    let needed = match family {
        0x0 => return Ok(Some((Header::Local, total))), // UNSPEC
        0x1 => 12,
        0x2 => 36,
        0x3 => 216,
        _ => return Err(Malformed("an unknown version 2 address family")),
    };
    if block.len() < needed {
        return Err(Malformed(
            "a version 2 address block too short for its family",
        ));
    }
    if transport != 0x1 {
        return Err(Malformed(
            "a version 2 header for a transport that is not a stream",
        ));
    }
    let header = match family {
        0x1 => {
            let ip = |at: usize| {
                IpAddr::from(<[u8; 4]>::try_from(&block[at..at + 4]).unwrap_or_default())
            };
            Header::Proxied {
                source: SocketAddr::new(ip(0), be16(block, 8)),
                destination: SocketAddr::new(ip(4), be16(block, 10)),
            }
        }
        0x2 => {
            let ip = |at: usize| {
                IpAddr::from(<[u8; 16]>::try_from(&block[at..at + 16]).unwrap_or_default())
            };
            Header::Proxied {
                source: SocketAddr::new(ip(0), be16(block, 32)),
                destination: SocketAddr::new(ip(16), be16(block, 34)),
            }
        }
        _ => Header::Local, // AF_UNIX: paths, no address for REMOTE_ADDR
    };
    Ok(Some((header, total)))
}

fn be16(block: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([block[at], block[at + 1]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn proxied(src: &str, dst: &str) -> Header {
        Header::Proxied {
            source: addr(src),
            destination: addr(dst),
        }
    }

    fn v2(command: u8, family_transport: u8, block: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family_transport);
        h.extend_from_slice(&(block.len() as u16).to_be_bytes());
        h.extend_from_slice(block);
        h
    }

    fn inet4_block() -> Vec<u8> {
        [[192, 0, 2, 1], [10, 0, 0, 2]]
            .concat()
            .into_iter()
            .chain(56324u16.to_be_bytes())
            .chain(443u16.to_be_bytes())
            .collect()
    }

    #[test]
    fn v1_tcp4_and_tcp6() {
        let line = b"PROXY TCP4 192.0.2.1 10.0.0.2 56324 443\r\nGET / HTTP/1.1\r\n";
        assert_eq!(
            parse(line),
            Ok(Some((proxied("192.0.2.1:56324", "10.0.0.2:443"), 41)))
        );
        let line = b"PROXY TCP6 2001:db8::1 ::1 65535 0\r\n";
        assert_eq!(
            parse(line),
            Ok(Some((
                proxied("[2001:db8::1]:65535", "[::1]:0"),
                line.len()
            )))
        );
    }

    #[test]
    fn v1_unknown_keeps_the_connections_addresses() {
        assert_eq!(parse(b"PROXY UNKNOWN\r\n"), Ok(Some((Header::Local, 15))));
        let line = b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nrest";
        assert_eq!(parse(line), Ok(Some((Header::Local, line.len() - 4))));
    }

    #[test]
    fn v1_malformed() {
        for line in [
            &b"PROXY TCP4 192.0.2.1 10.0.0.2 56324\r\n"[..],
            b"PROXY TCP4 192.0.2.1 10.0.0.2 56324 443 9\r\n",
            b"PROXY TCP4 2001:db8::1 10.0.0.2 1 2\r\n",
            b"PROXY TCP6 192.0.2.1 ::1 1 2\r\n",
            b"PROXY TCP4 192.0.2.1 10.0.0.2 65536 443\r\n",
            b"PROXY TCP4 192.0.2.1 10.0.0.2 080 443\r\n",
            b"PROXY TCP4 192.0.2.1 10.0.0.2 -1 443\r\n",
            b"PROXY TCP4 192.0.2.1  10.0.0.2 1 443\r\n",
            b"PROXY TCP4 192.0.2.01 10.0.0.2 1 443\r\n",
            b"PROXY UDP4 192.0.2.1 10.0.0.2 1 443\r\n",
            b"PROXY \xff\r\n",
        ] {
            assert!(parse(line).is_err(), "{}", String::from_utf8_lossy(line));
        }
        let long = [&b"PROXY UNKNOWN "[..], &[b'x'; 100]].concat();
        assert_eq!(
            parse(&long),
            Err(Malformed("a version 1 line longer than 107 bytes"))
        );
    }

    #[test]
    fn no_header_is_refused_as_soon_as_it_shows() {
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\n"),
            Err(Malformed("no PROXY protocol header"))
        );
        assert!(parse(b"PROPFIND / HTTP/1.1\r\n").is_err());
        assert!(parse(b"\r\n\r\n\0\r\nQUIX").is_err());
    }

    #[test]
    fn truncated_headers_wait_for_more() {
        let v1 = b"PROXY TCP4 192.0.2.1 10.0.0.2 56324 443\r\n";
        let v2 = v2(1, 0x11, &inet4_block());
        for whole in [&v1[..], &v2[..]] {
            for cut in 0..whole.len() {
                assert_eq!(parse(&whole[..cut]), Ok(None), "cut at {cut}");
            }
            assert!(parse(whole).unwrap().is_some());
        }
    }

    #[test]
    fn v2_inet_and_inet6_with_tlvs_skipped() {
        let mut block = inet4_block();
        block.extend_from_slice(&[0x04, 0x00, 0x01, 0x00]); // a NOOP TLV
        let h = [v2(1, 0x11, &block), b"GET /".to_vec()].concat();
        assert_eq!(
            parse(&h),
            Ok(Some((proxied("192.0.2.1:56324", "10.0.0.2:443"), 16 + 16)))
        );
        let mut block = Vec::new();
        block.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        block.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        block.extend_from_slice(&8080u16.to_be_bytes());
        block.extend_from_slice(&80u16.to_be_bytes());
        assert_eq!(
            parse(&v2(1, 0x21, &block)),
            Ok(Some((proxied("[2001:db8::1]:8080", "[::1]:80"), 16 + 36)))
        );
    }

    #[test]
    fn v2_local_unspec_and_unix_keep_the_connections_addresses() {
        // LOCAL: the family and addresses are ignored, whatever they say.
        assert_eq!(parse(&v2(0, 0x00, b"")), Ok(Some((Header::Local, 16))));
        assert_eq!(
            parse(&v2(0, 0x11, &inet4_block())),
            Ok(Some((Header::Local, 28)))
        );
        assert_eq!(parse(&v2(1, 0x00, b"")), Ok(Some((Header::Local, 16))));
        assert_eq!(
            parse(&v2(1, 0x31, &[0; 216])),
            Ok(Some((Header::Local, 232)))
        );
    }

    #[test]
    fn v2_malformed() {
        let block = inet4_block();
        let mut bad_version = v2(1, 0x11, &block);
        bad_version[12] = 0x11;
        let mut bad_command = v2(1, 0x11, &block);
        bad_command[12] = 0x22;
        for h in [
            bad_version,
            bad_command,
            v2(1, 0x41, &block),      // no such family
            v2(1, 0x11, &block[..8]), // too short for INET
            v2(1, 0x21, &block),      // too short for INET6
            v2(1, 0x12, &block),      // a datagram
        ] {
            assert!(parse(&h).is_err(), "{h:?}");
        }
    }
}
