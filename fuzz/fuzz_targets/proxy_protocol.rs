//! The PROXY protocol header parser (versions 1 and 2) on any bytes: no panic,
//! a verdict that does not depend on how the bytes arrive (a valid header is
//! never refused while it is still arriving, nor changed by what follows it),
//! and a proxied version 1 header that says the same once written out again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use maitre::http::proxy_protocol::{parse, Header};

fuzz_target!(|data: &[u8]| {
    let Ok(Some((header, len))) = parse(data) else {
        return;
    };
    assert!(len <= data.len());
    for cut in 0..len {
        assert_eq!(parse(&data[..cut]), Ok(None), "a prefix of {cut} bytes");
    }
    assert_eq!(parse(&data[..len]), Ok(Some((header, len))));
    if let Header::Proxied {
        source,
        destination,
    } = header
    {
        let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
        let line = format!(
            "PROXY {family} {} {} {} {}\r\n",
            source.ip(),
            destination.ip(),
            source.port(),
            destination.port()
        );
        assert_eq!(
            parse(line.as_bytes()),
            Ok(Some((header, line.len()))),
            "{line:?}"
        );
    }
});
