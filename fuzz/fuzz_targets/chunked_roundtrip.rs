//! Differential: decode(encode(x)) = x. A body is chunk-encoded in any way
//! RFC 9112 §7.1 allows (chunk sizes, hex case, leading zeros, extensions with
//! token or quoted values, whitespace around `;` and `=`, trailers), fed in
//! pieces of any size, and must decode to the same bytes, ending exactly
//! where the encoding ends.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use maitre::http::body::BodyDecoder;
use maitre::http::parse::BodyFraming;

const TCHAR: &[u8] =
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

#[derive(Arbitrary, Debug)]
struct Input {
    chunks: Vec<Chunk>,
    last: Vec<Ext>,
    trailers: Vec<(Vec<u8>, Vec<u8>)>,
    piece: u8,
    /// The next request on the connection: never consumed.
    after: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
struct Chunk {
    data: Vec<u8>,
    upper: bool,
    zeros: u8,
    exts: Vec<Ext>,
}

#[derive(Arbitrary, Debug)]
struct Ext {
    name: Vec<u8>,
    value: Option<(bool, Vec<u8>)>,
    spaced: bool,
}

/// Any bytes as a non-empty token, at most 32 long.
fn token(raw: &[u8], out: &mut Vec<u8>) {
    let raw = &raw[..raw.len().min(32)];
    out.extend(raw.iter().map(|&b| TCHAR[usize::from(b) % TCHAR.len()]));
    if raw.is_empty() {
        out.push(b'x');
    }
}

fn extensions(exts: &[Ext], out: &mut Vec<u8>) {
    for ext in exts.iter().take(8) {
        let ws: &[u8] = if ext.spaced { b" \t" } else { b"" };
        out.extend_from_slice(ws);
        out.push(b';');
        out.extend_from_slice(ws);
        token(&ext.name, out);
        if let Some((quoted, value)) = &ext.value {
            out.extend_from_slice(ws);
            out.push(b'=');
            out.extend_from_slice(ws);
            if *quoted {
                out.push(b'"');
                for &b in value.iter().take(32) {
                    match b {
                        b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
                        b'\t' | b' '..=b'~' | 0x80.. => out.push(b),
                        _ => out.push(b'?'), // no control character is allowed
                    }
                }
                out.push(b'"');
            } else {
                token(value, out);
            }
        }
    }
}

fn encode(input: &Input) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in input.chunks.iter().filter(|c| !c.data.is_empty()) {
        out.resize(out.len() + usize::from(chunk.zeros % 4), b'0');
        let size = if chunk.upper {
            format!("{:X}", chunk.data.len())
        } else {
            format!("{:x}", chunk.data.len())
        };
        out.extend_from_slice(size.as_bytes());
        extensions(&chunk.exts, &mut out);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&chunk.data);
        out.extend_from_slice(b"\r\n");
    }
    out.push(b'0');
    extensions(&input.last, &mut out);
    out.extend_from_slice(b"\r\n");
    for (name, value) in input.trailers.iter().take(8) {
        token(name, &mut out);
        out.push(b':');
        for &b in value.iter().take(64) {
            out.push(match b {
                b'\t' | b' '..=b'~' | 0x80.. => b,
                _ => b'?',
            });
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

fuzz_target!(|input: Input| {
    let body: Vec<u8> = input
        .chunks
        .iter()
        .flat_map(|c| c.data.iter().copied())
        .collect();
    let encoded = encode(&input);
    let mut wire = encoded.clone();
    wire.extend_from_slice(&input.after);
    let mut decoder = BodyDecoder::new(BodyFraming::Chunked);
    let mut out = Vec::new();
    let mut consumed = 0;
    for part in wire.chunks(usize::from(input.piece) + 1) {
        consumed += decoder
            .feed(part, &mut |b| {
                out.extend_from_slice(b);
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{e:?} decoding {:?}", String::from_utf8_lossy(&encoded)));
        if decoder.is_done() {
            break;
        }
    }
    assert!(decoder.is_done(), "not done after the whole encoding");
    assert_eq!(consumed, encoded.len(), "did not stop where the body ends");
    assert_eq!(out, body);
});
