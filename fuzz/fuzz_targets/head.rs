//! The request-head parser on any bytes: no panic, no out-of-bounds span, and
//! a head's verdict does not depend on how its bytes arrive (a valid head is
//! never refused while it is still arriving, nor changed by what follows it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use maitre::http::parse::{parse_head, BodyFraming, HeadLimits};
use maitre::http::Version;

fuzz_target!(|data: &[u8]| {
    let Some((&[size, line, count], buf)) = data.split_first_chunk::<3>() else {
        return;
    };
    // Small limits half of the time, so that every limit is reached.
    let limits = if size & 1 == 0 {
        HeadLimits {
            header_size: 262144,
            request_line: 8190,
            headers: 1000,
        }
    } else {
        HeadLimits {
            header_size: 16 + usize::from(size) * 8,
            request_line: 8 + usize::from(line) * 2,
            headers: 1 + usize::from(count % 200),
        }
    };
    let Ok(parsed) = parse_head(buf, &limits) else {
        return;
    };
    let Some((head, n)) = parsed else {
        // At most 4 empty lines (8 bytes) are skipped before the head.
        assert!(
            buf.len() <= limits.header_size + 8,
            "over the size, yet waiting"
        );
        return;
    };
    assert!(n <= buf.len());
    assert!(!head.method().is_empty() && !head.target().is_empty());
    assert!(head.header_pairs().count() <= limits.headers);
    for (name, value) in head.header_pairs() {
        assert!(!name.is_empty());
        assert!(!value.contains(&b'\n') && !value.contains(&b'\r'));
    }
    if head.framing == BodyFraming::Chunked {
        assert_eq!(head.version, Version::Http11);
    }
    if head.expect_continue {
        assert_ne!(head.framing, BodyFraming::None);
    }
    // Alone, the head parses the same; cut short, it waits for more.
    let (again, m) = parse_head(&buf[..n], &limits)
        .expect("the head alone is valid")
        .expect("the head alone is complete");
    assert_eq!(m, n);
    assert_eq!(again.target(), head.target());
    assert_eq!(again.framing, head.framing);
    for cut in [n / 2, n.saturating_sub(1), usize::from(line) % n.max(1)] {
        if cut < n {
            assert!(
                matches!(parse_head(&buf[..cut], &limits), Ok(None)),
                "a valid head refused after {cut} of its {n} bytes"
            );
        }
    }
});
