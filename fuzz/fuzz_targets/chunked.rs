//! The chunked decoder on any bytes: no panic, no hang, and the same output
//! and verdict whether the bytes come at once or in small pieces.
#![no_main]

use libfuzzer_sys::fuzz_target;
use maitre::http::body::BodyDecoder;
use maitre::http::parse::BodyFraming;
use maitre::http::RequestError;

/// What decoding `input` fed in pieces of `piece` bytes gives: the body,
/// the bytes consumed, whether the body ended, or the error.
fn decode(input: &[u8], piece: usize) -> Result<(Vec<u8>, usize, bool), RequestError> {
    let mut decoder = BodyDecoder::new(BodyFraming::Chunked);
    let mut out = Vec::new();
    let mut pos = 0;
    for part in input.chunks(piece) {
        let n = decoder.feed(part, &mut |b| {
            out.extend_from_slice(b);
            Ok(())
        })?;
        pos += n;
        if decoder.is_done() {
            return Ok((out, pos, true));
        }
        // Until the body ends, every byte offered is taken.
        assert_eq!(n, part.len(), "bytes left unconsumed mid-body");
    }
    Ok((out, pos, false))
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, body)) = data.split_first() else {
        return;
    };
    let whole = decode(body, body.len().max(1));
    let split = decode(body, usize::from(step % 16) + 1);
    match (&whole, &split) {
        (Ok(a), Ok(b)) if a.2 && b.2 => assert_eq!(a, b),
        // Incomplete: the split run saw the same prefix of the body.
        (Ok(a), Ok(b)) => assert_eq!((&a.0, a.2), (&b.0, b.2)),
        (Err(_), Err(_)) => {}
        _ => panic!("whole {whole:?} but split {split:?}"),
    }
    if let Ok((out, _, _)) = &whole {
        assert!(out.len() <= body.len());
    }
});
