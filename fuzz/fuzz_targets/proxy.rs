//! The trusted-proxy header parser (`Forwarded`, `X-Forwarded-*`) on any
//! values and settings: no panic, no hang, and only trusted headers used.
#![no_main]

use libfuzzer_sys::fuzz_target;
use maitre::http::proxy::{forwarding, HeaderSet, ProxyConfig, Values, ALL_HEADERS};

fuzz_target!(|data: &[u8]| {
    let Some((&[bits, count], rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let mut trusted = HeaderSet::EMPTY;
    for (i, h) in ALL_HEADERS.into_iter().enumerate() {
        if bits & (1 << i) != 0 {
            trusted.insert(h);
        }
    }
    let cfg = ProxyConfig {
        trusted_proxy: Some("*".into()),
        count: usize::from(count % 5),
        trusted,
        clear_untrusted: true,
        log_untrusted: false,
    };
    // One value per line, given to the six headers in turn (repeats are joined).
    let pairs = rest
        .split(|&b| b == b'\n')
        .zip(ALL_HEADERS.into_iter().cycle())
        .map(|(value, h)| (h.title().as_bytes(), value));
    let values = Values::collect(pairs);
    let scheme: &[u8] = if bits & 0x80 != 0 { b"https" } else { b"http" };
    if let Ok(f) = forwarding(&values, &cfg, scheme, &mut |_| {}) {
        for h in ALL_HEADERS {
            if f.rewritten(h).is_some() {
                assert!(trusted.contains(h), "{h:?} rewritten but not trusted");
            }
        }
    }
});
