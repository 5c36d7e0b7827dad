//! Request bodies: the length and chunked decoders (a small state machine fed
//! whatever bytes arrived) and the spool that holds a body in memory, or in an
//! unlinked temporary file once it passes `inbuf_overflow`, as waitress does.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::mem::MaybeUninit;

use super::parse::BodyFraming;
use super::RequestError;
use crate::os::tempfile::{self, Recycled};

/// Chunk-size lines, extensions and trailer lines longer than this are refused.
const MAX_CHUNK_LINE: usize = 4096;

/// Chunk extensions and trailer fields of one body together, in bytes. Both
/// are read and dropped, counted against no other limit: unbounded, a client
/// could keep a connection busy sending them forever (Go's CVE-2023-39326,
/// Node.js's CVE-2024-22019).
const MAX_CHUNK_METADATA: usize = 16 * 1024;

/// Decodes one request body; `feed` returns how many input bytes it consumed.
#[derive(Debug)]
pub enum BodyDecoder {
    Length { remaining: u64 },
    Chunked(ChunkedDecoder),
}

impl BodyDecoder {
    pub fn new(framing: BodyFraming) -> Self {
        match framing {
            BodyFraming::None => BodyDecoder::Length { remaining: 0 },
            BodyFraming::Length(n) => BodyDecoder::Length { remaining: n },
            BodyFraming::Chunked => BodyDecoder::Chunked(ChunkedDecoder::default()),
        }
    }

    /// Feeds `input`, appending body bytes to `out`; returns bytes consumed.
    pub fn feed(
        &mut self,
        input: &[u8],
        out: &mut dyn FnMut(&[u8]) -> Result<(), RequestError>,
    ) -> Result<usize, RequestError> {
        match self {
            BodyDecoder::Length { remaining } => {
                let n = input
                    .len()
                    .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                if n > 0 {
                    out(&input[..n])?;
                }
                *remaining -= n as u64;
                Ok(n)
            }
            BodyDecoder::Chunked(d) => d.feed(input, out),
        }
    }

    pub fn is_done(&self) -> bool {
        match self {
            BodyDecoder::Length { remaining } => *remaining == 0,
            BodyDecoder::Chunked(d) => d.state == ChunkState::Done,
        }
    }
}

/// Where the decoder is in RFC 9112 §7.1's grammar:
/// `chunk-size *( BWS ";" BWS name [ BWS "=" BWS value ] ) CRLF`, then data
/// and CRLF; after the last chunk, `*( field-line CRLF ) CRLF`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Hex digits of the chunk size.
    Size,
    /// Whitespace after the size or a value: only `;` (or more of it) may follow.
    BeforeSemi,
    /// After `;`, before an extension name.
    BeforeName,
    Name,
    /// Whitespace after a name: `;` or `=` may follow.
    AfterName,
    /// After `=`, before the value.
    BeforeValue,
    TokenValue,
    Quoted,
    /// After a backslash inside a quoted string.
    QuotedPair,
    /// After a quoted string's closing quote.
    AfterQuoted,
    /// The LF after the size line's CR.
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// Start of a trailer line, or the final CRLF.
    TrailerStart,
    TrailerName,
    /// After the colon of a trailer field, up to CR.
    TrailerValue,
    TrailerLf,
    /// The LF of the final empty line.
    EndLf,
    Done,
}

impl ChunkState {
    /// Inside a chunk extension or the trailer section: bytes that are dropped.
    fn is_metadata(self) -> bool {
        use ChunkState::*;
        matches!(
            self,
            BeforeSemi
                | BeforeName
                | Name
                | AfterName
                | BeforeValue
                | TokenValue
                | Quoted
                | QuotedPair
                | AfterQuoted
                | TrailerStart
                | TrailerName
                | TrailerValue
                | TrailerLf
                | EndLf
        )
    }
}

/// RFC 9112 §7.1 chunked decoding, byte by byte outside the data. Anything
/// the grammar does not allow is a 400, bare LF included: a lenient chunk
/// parser frames a body differently from a strict proxy (request smuggling).
/// Extensions and trailers are checked and dropped.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: ChunkState,
    size: u64,
    digits: usize,
    line: usize,
    /// Extension and trailer bytes so far; see `MAX_CHUNK_METADATA`.
    metadata: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder {
            state: ChunkState::Size,
            size: 0,
            digits: 0,
            line: 0,
            metadata: 0,
        }
    }
}

impl ChunkedDecoder {
    fn feed(
        &mut self,
        input: &[u8],
        out: &mut dyn FnMut(&[u8]) -> Result<(), RequestError>,
    ) -> Result<usize, RequestError> {
        use ChunkState::*;
        const BAD: RequestError = RequestError::BadRequest("malformed chunked body");
        let mut i = 0;
        while i < input.len() && self.state != Done {
            if self.state == Data {
                let n = (input.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                out(&input[i..i + n])?;
                i += n;
                self.size -= n as u64;
                if self.size == 0 {
                    self.state = DataCr;
                }
                continue;
            }
            let b = input[i];
            i += 1;
            self.line += 1;
            if self.line > MAX_CHUNK_LINE {
                return Err(BAD);
            }
            if self.state.is_metadata() {
                self.metadata += 1;
                if self.metadata > MAX_CHUNK_METADATA {
                    return Err(RequestError::BadRequest(
                        "chunk extensions and trailers over 16 KiB",
                    ));
                }
            }
            self.state = match (self.state, b) {
                (Size, b) if b.is_ascii_hexdigit() => {
                    self.digits += 1;
                    if self.digits > 15 {
                        return Err(BAD);
                    }
                    self.size = self.size * 16 + u64::from(hex_value(b));
                    Size
                }
                (Size, _) if self.digits == 0 => return Err(BAD),
                (Size | Name | TokenValue | AfterQuoted, b'\r') => SizeLf,
                (Size | BeforeSemi | TokenValue | AfterQuoted, b' ' | b'\t') => BeforeSemi,
                (Size | BeforeSemi | Name | AfterName | TokenValue | AfterQuoted, b';') => {
                    BeforeName
                }
                (BeforeName, b' ' | b'\t') => BeforeName,
                (BeforeName | Name, b) if is_tchar(b) => Name,
                (Name | AfterName, b' ' | b'\t') => AfterName,
                (Name | AfterName, b'=') => BeforeValue,
                (BeforeValue, b' ' | b'\t') => BeforeValue,
                (BeforeValue, b'"') => Quoted,
                (BeforeValue | TokenValue, b) if is_tchar(b) => TokenValue,
                (Quoted, b'"') => AfterQuoted,
                (Quoted, b'\\') => QuotedPair,
                (Quoted, b) if is_qdtext(b) => Quoted,
                (QuotedPair, b) if b == b'\t' || b == b' ' || is_vchar_or_obs(b) => Quoted,
                (SizeLf, b'\n') => {
                    self.digits = 0;
                    self.line = 0;
                    if self.size == 0 {
                        TrailerStart
                    } else {
                        Data
                    }
                }
                (DataCr, b'\r') => DataLf,
                (DataLf, b'\n') => {
                    self.line = 0;
                    Size
                }
                (TrailerStart, b'\r') => EndLf,
                (TrailerStart | TrailerName, b) if is_tchar(b) => TrailerName,
                (TrailerName, b':') => TrailerValue,
                (TrailerValue, b'\r') => TrailerLf,
                (TrailerValue, b) if b == b'\t' || b == b' ' || is_vchar_or_obs(b) => TrailerValue,
                (TrailerLf, b'\n') => {
                    self.line = 0;
                    TrailerStart
                }
                (EndLf, b'\n') => Done,
                _ => return Err(BAD),
            };
        }
        Ok(i)
    }
}

/// One `read(2)` into memory nobody has written yet.
#[cfg(unix)]
fn read_uninit(file: &mut File, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the call,
    // and `file` keeps the descriptor open; read(2) writes only the bytes it
    // returns and never reads them.
    let n = unsafe { libc::read(file.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Without `read(2)`, `Read` wants initialised memory: zero it first.
#[cfg(not(unix))]
fn read_uninit(file: &mut File, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    use std::io::Read;
    buf.fill(MaybeUninit::new(0));
    // SAFETY: every byte was just initialised to zero.
    let buf = unsafe { &mut *(buf as *mut [MaybeUninit<u8>] as *mut [u8]) };
    file.read(buf)
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

/// RFC 9110 §5.6.2 `tchar`.
pub fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// `tchar` by byte: one load per byte, where searching the punctuation list
/// cost a dozen instructions (header names are checked byte by byte).
const TCHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'..=b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
            );
        b += 1;
    }
    table
};

/// `VCHAR / obs-text`: visible ASCII or any byte from 0x80.
fn is_vchar_or_obs(b: u8) -> bool {
    matches!(b, 0x21..=0x7e | 0x80..=0xff)
}

/// RFC 9110 §5.6.4 `qdtext`: what a quoted string holds without escaping.
fn is_qdtext(b: u8) -> bool {
    b == b'\t' || b == b' ' || (is_vchar_or_obs(b) && b != b'"' && b != b'\\')
}

/// A body being received: memory first, a temporary file past `overflow` bytes.
/// In memory, `mem` holds the body so far; a body of known length gets `mem`'s
/// capacity at its full size up front, so the socket can read straight into
/// the spare capacity (see `spare`), which is never zeroed first.
#[derive(Debug)]
pub struct Spool {
    mem: Vec<u8>,
    file: Option<Recycled>,
    len: u64,
    overflow: usize,
}

impl Spool {
    pub fn new(overflow: usize) -> Self {
        Spool {
            mem: Vec::new(),
            file: None,
            len: 0,
            overflow,
        }
    }

    /// A spool for a body of `length` bytes: sized once when it fits in memory.
    /// Not zeroed: with the mmap threshold raised (`os::malloc`) a zeroed
    /// 64 KiB buffer cost a 64 KiB memset per request, 40% of an echo's
    /// instructions.
    pub fn with_length(overflow: usize, length: u64) -> Self {
        let mut spool = Spool::new(overflow);
        if let Ok(n) = usize::try_from(length) {
            if n <= overflow {
                spool.mem = Vec::with_capacity(n);
            }
        }
        spool
    }

    /// Bytes received so far (named so clippy does not ask for `is_empty`).
    pub fn received(&self) -> u64 {
        self.len
    }

    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        let filled = self.len as usize;
        if self.file.is_none() && filled + data.len() > self.overflow {
            // A failure is the caller's 500; `tempfile` logs why.
            let mut file = tempfile::POOL.take()?;
            file.write_all(&self.mem[..filled])
                .inspect_err(tempfile::write_failed)?;
            self.mem = Vec::new();
            self.file = Some(file);
        }
        match &mut self.file {
            Some(file) => file.write_all(data).inspect_err(tempfile::write_failed)?,
            None => self.mem.extend_from_slice(data),
        }
        self.len += data.len() as u64;
        Ok(())
    }

    /// The temporary file once the body went there, for a caller that
    /// appends to it itself (`os::splice`); count those bytes with `appended`.
    pub fn file(&self) -> Option<&File> {
        self.file.as_deref()
    }

    /// Takes `n` bytes appended to `file()` as received.
    pub fn appended(&mut self, n: usize) {
        self.len += n as u64;
    }

    /// The room reserved in memory and not yet filled (empty unless made by
    /// `with_length`); mark what was written with `assume_filled`.
    pub fn spare(&mut self) -> &mut [MaybeUninit<u8>] {
        match self.file {
            Some(_) => &mut [],
            None => self.mem.spare_capacity_mut(),
        }
    }

    /// Takes the first `n` bytes of `spare()` as received.
    ///
    /// # Safety
    /// Those `n` bytes must have been initialised (e.g. written by `recv(2)`),
    /// and `n` must not exceed `spare().len()`.
    pub unsafe fn assume_filled(&mut self, n: usize) {
        // SAFETY: the caller guarantees the bytes up to the new length are
        // initialised and within the capacity.
        unsafe { self.mem.set_len(self.mem.len() + n) };
        self.len += n as u64;
    }

    /// Finishes writing; the reader starts at the first body byte.
    pub fn into_reader(mut self) -> io::Result<BodyReader> {
        Ok(match self.file {
            None => {
                self.mem.truncate(self.len as usize);
                BodyReader::Memory {
                    data: self.mem,
                    pos: 0,
                }
            }
            Some(mut file) => {
                file.seek(SeekFrom::Start(0))?;
                BodyReader::File {
                    file: io::BufReader::with_capacity(64 * 1024, file),
                    remaining: self.len,
                }
            }
        })
    }
}

/// A complete body, read by `wsgi.input`.
#[derive(Debug)]
pub enum BodyReader {
    Memory {
        data: Vec<u8>,
        pos: usize,
    },
    File {
        file: io::BufReader<Recycled>,
        remaining: u64,
    },
}

impl BodyReader {
    pub fn empty() -> Self {
        BodyReader::Memory {
            data: Vec::new(),
            pos: 0,
        }
    }

    pub fn remaining(&self) -> u64 {
        match self {
            BodyReader::Memory { data, pos } => (data.len() - pos) as u64,
            BodyReader::File { remaining, .. } => *remaining,
        }
    }

    /// How many bytes a read of up to `limit` (all with `None`) returns.
    pub fn wanted(&self, limit: Option<usize>) -> usize {
        let want = limit
            .map(|l| (l as u64).min(self.remaining()))
            .unwrap_or(self.remaining());
        usize::try_from(want).unwrap_or(usize::MAX)
    }

    /// Fills `buf` (at most `wanted` bytes) from the body; on `Ok`, every
    /// byte of it was written. Nothing reads `buf` before, so it need not be
    /// zeroed: a body in a file goes straight from the file into it.
    pub fn read_into(&mut self, buf: &mut [MaybeUninit<u8>]) -> io::Result<()> {
        match self {
            BodyReader::Memory { data, pos } => {
                let start = *pos;
                *pos += buf.len();
                buf.write_copy_of_slice(&data[start..*pos]);
            }
            BodyReader::File { file, remaining } => {
                let mut filled = 0;
                while filled < buf.len() {
                    let rest = &mut buf[filled..];
                    // As `BufReader::read` does: a read as large as its buffer
                    // bypasses it once it is empty; smaller ones go through it.
                    let got = if file.buffer().is_empty() && rest.len() >= file.capacity() {
                        read_uninit(file.get_mut(), rest)
                    } else {
                        match io::BufRead::fill_buf(file) {
                            Ok(held) => {
                                let n = held.len().min(rest.len());
                                rest[..n].write_copy_of_slice(&held[..n]);
                                io::BufRead::consume(file, n);
                                Ok(n)
                            }
                            Err(e) => Err(e),
                        }
                    };
                    match got {
                        Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                *remaining -= buf.len() as u64;
            }
        }
        Ok(())
    }

    /// Reads up to `limit` bytes (all that is left with `None`); a body in
    /// memory lends its bytes, so the caller copies them once.
    pub fn read(&mut self, limit: Option<usize>) -> io::Result<Cow<'_, [u8]>> {
        let want = self.wanted(limit);
        match self {
            BodyReader::Memory { data, pos } => {
                let start = *pos;
                *pos += want;
                Ok(Cow::Borrowed(&data[start..start + want]))
            }
            BodyReader::File { .. } => {
                let mut out = Vec::with_capacity(want);
                self.read_into(&mut out.spare_capacity_mut()[..want])?;
                // SAFETY: `read_into` returned Ok, so it wrote all `want`
                // bytes, which are within the capacity.
                unsafe { out.set_len(want) };
                Ok(Cow::Owned(out))
            }
        }
    }

    /// Reads through the next `\n` (included), at most `limit` bytes.
    pub fn read_line(&mut self, limit: Option<usize>) -> io::Result<Cow<'_, [u8]>> {
        let limit = limit.unwrap_or(usize::MAX);
        match self {
            BodyReader::Memory { data, pos } => {
                let rest = &data[*pos..];
                let max = rest.len().min(limit);
                let end = rest[..max]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(max, |i| i + 1);
                *pos += end;
                Ok(Cow::Borrowed(&rest[..end]))
            }
            BodyReader::File { file, remaining } => {
                let mut out = Vec::new();
                let max = usize::try_from(*remaining).unwrap_or(usize::MAX).min(limit);
                let mut take = io::Read::take(file, max as u64);
                io::BufRead::read_until(&mut take, b'\n', &mut out)?;
                *remaining -= out.len() as u64;
                Ok(Cow::Owned(out))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tchar_table_is_rfc_9110() {
        let tchars: Vec<u8> = (0..=255u8).filter(|&b| is_tchar(b)).collect();
        let expected =
            b"!#$%&'*+-.0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ^_`abcdefghijklmnopqrstuvwxyz|~";
        assert_eq!(tchars, expected.to_vec());
    }

    fn decode_all(pieces: &[&[u8]]) -> Result<(Vec<u8>, bool, usize), RequestError> {
        let mut d = BodyDecoder::new(BodyFraming::Chunked);
        let mut out = Vec::new();
        let mut consumed = 0;
        for p in pieces {
            consumed += d.feed(p, &mut |b| {
                out.extend_from_slice(b);
                Ok(())
            })?;
        }
        Ok((out, d.is_done(), consumed))
    }

    #[test]
    fn chunked_whole_and_byte_by_byte() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        let (out, done, consumed) = decode_all(&[body]).unwrap();
        assert_eq!(out, b"hello world");
        assert!(done);
        assert_eq!(consumed, body.len() - 4, "stops before the next request");
        let pieces: Vec<&[u8]> = body[..body.len() - 4].chunks(1).collect();
        let (out, done, _) = decode_all(&pieces).unwrap();
        assert_eq!(out, b"hello world");
        assert!(done);
    }

    #[test]
    fn chunked_upper_hex_and_partial() {
        let (out, done, _) = decode_all(&[b"A\r\n0123456789\r\n"]).unwrap();
        assert_eq!(out, b"0123456789");
        assert!(!done);
    }

    #[test]
    fn chunked_errors() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\r\nhelloXX",
            b"1234567890abcdef0\r\n",
            b"0\r\nTrailer\r\n",
            b"0\r\n: no name\r\n",
            b"0\r\nX: nul\x00\r\n",
            b"0\r\n folded\r\n",
            b"0\r\nX : y\r\n",
        ] {
            assert!(decode_all(&[bad]).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn bare_lf_in_chunked_framing_is_refused() {
        for bad in [
            &b"5\nhello\r\n"[..],
            b"5;a=b\nhello\r\n",
            b"5;a\nhello\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhello\r\r\n",
            b"0\n\r\n",
            b"0\r\n\n",
            b"0\r\nX: y\n\r\n",
            b"0\r\nTrailer\n",
        ] {
            assert!(decode_all(&[bad]).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn chunk_size_line_outside_the_grammar_is_refused() {
        for line in [
            // From the differential run against waitress.
            &b"3 junk"[..],
            b"3 1",
            b"3;\x00",
            b"3;a=",
            b"6;5 xt=1",
            // Whitespace only around `;` and `=`, never at the end.
            b"3 ",
            b"3\t",
            b"3;a ",
            b"3;a=b ",
            b"3;a=\"q\" ",
            // Names and values are tokens or quoted strings.
            b"3;",
            b"3;;a",
            b"3;=b",
            b"3;a b",
            b"3;a=b c",
            b"3;a=b=c",
            b"3;a=\"x\"y",
            b"3;a=\"open",
            b"3;a=\"bad\x01\"",
            b"3;a=\"esc\\\x01\"",
            b"3;a=b\x7f",
            b"3;a@=b",
            b"3;a=\xff",
            b"3\x00",
            b"-3",
            b"+3",
            b"0x3",
        ] {
            let mut body = line.to_vec();
            body.extend_from_slice(b"\r\nabc\r\n0\r\n\r\n");
            assert!(decode_all(&[&body]).is_err(), "accepted {line:?}");
            // Byte by byte, the same answer.
            let pieces: Vec<&[u8]> = body.chunks(1).collect();
            assert!(decode_all(&pieces).is_err(), "accepted split {line:?}");
        }
    }

    #[test]
    fn chunk_extensions_within_the_grammar_pass() {
        for line in [
            &b"3"[..],
            b"003",
            b"3;a",
            b"3;a=b",
            b"3;a;b=c",
            b"3 ;a",
            b"3\t;\ta\t=\tb",
            b"3 ; a = \"q\\\"x\"",
            b"3;a=\"\"",
            b"3;a=\"sp ace;semi=eq\"",
            b"3;a=\"\xe9\\\xff\"",
            b"3;a=\"x\" ;b",
            b"3;a=b ;c=d",
            b"3;!#$%&'*+-.^_`|~=!#$%&'*+-.^_`|~",
        ] {
            let mut body = line.to_vec();
            body.extend_from_slice(b"\r\nabc\r\n0;end=\"1\"\r\nX-T: v\t1\r\nY:\r\n\r\n");
            let (out, done, consumed) = decode_all(&[&body]).unwrap();
            assert_eq!(
                (&out[..], done, consumed),
                (&b"abc"[..], true, body.len()),
                "{line:?}"
            );
            let pieces: Vec<&[u8]> = body.chunks(1).collect();
            let (out, done, _) = decode_all(&pieces).unwrap();
            assert_eq!((&out[..], done), (&b"abc"[..], true), "split {line:?}");
        }
        let (out, done, _) = decode_all(&[b"aB\r\n", &[b'z'; 0xab], b"\r\n0\r\n\r\n"]).unwrap();
        assert_eq!((out.len(), done), (0xab, true));
    }

    #[test]
    fn chunk_lines_are_bounded() {
        let mut long = b"3;a=".to_vec();
        long.resize(MAX_CHUNK_LINE + 10, b'b');
        assert!(decode_all(&[&long]).is_err());
        let mut trailer = b"0\r\nX:".to_vec();
        trailer.resize(MAX_CHUNK_LINE + 10, b'v');
        assert!(decode_all(&[&trailer]).is_err());
        // The bound is per line: many lines each under it are fine.
        let mut body = Vec::new();
        for _ in 0..4 {
            body.extend_from_slice(b"1;e=");
            body.resize(body.len() + MAX_CHUNK_LINE - 10, b'e');
            body.extend_from_slice(b"\r\nz\r\n");
        }
        body.extend_from_slice(b"0\r\n\r\n");
        let (out, done, _) = decode_all(&[&body]).unwrap();
        assert_eq!((&out[..], done), (&b"zzzz"[..], true));
    }

    #[test]
    fn extensions_and_trailers_are_bounded_per_body() {
        // Short lines, each within MAX_CHUNK_LINE, add up past the body's budget.
        let ext = |count: usize| {
            let mut body = Vec::new();
            for _ in 0..count {
                body.extend_from_slice(b"1;e=");
                body.resize(body.len() + 1000, b'e');
                body.extend_from_slice(b"\r\nz\r\n");
            }
            body.extend_from_slice(b"0\r\n\r\n");
            body
        };
        let trailers = |count: usize| {
            let mut body = b"1\r\nz\r\n0\r\n".to_vec();
            for i in 0..count {
                body.extend_from_slice(format!("T{i}:").as_bytes());
                body.resize(body.len() + 1000, b'v');
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(b"\r\n");
            body
        };
        for (ok, over) in [(ext(15), ext(17)), (trailers(15), trailers(17))] {
            let (out, done, _) = decode_all(&[&ok]).unwrap();
            assert!(done && out.iter().all(|&b| b == b'z'));
            assert_eq!(
                decode_all(&[&over]).unwrap_err(),
                RequestError::BadRequest("chunk extensions and trailers over 16 KiB")
            );
            let pieces: Vec<&[u8]> = over.chunks(7).collect();
            assert!(decode_all(&pieces).is_err());
        }
        // Extensions and trailers share the one budget.
        let mut both = ext(9);
        both.truncate(both.len() - 2);
        both.extend_from_slice(&trailers(9)[b"1\r\nz\r\n0\r\n".len()..]);
        assert!(decode_all(&[&both]).is_err());
    }

    #[test]
    fn chunk_size_overflow_is_refused() {
        for size in [&b"fffffffffffffff"[..], b"000000000000001"] {
            let mut body = size.to_vec();
            body.extend_from_slice(b"\r\n");
            let (out, done, _) = decode_all(&[&body]).unwrap();
            assert!(out.is_empty() && !done, "{size:?} fits: wait for its data");
        }
        for size in [
            &b"1000000000000000"[..],
            b"ffffffffffffffff",
            b"0000000000000001",
            b"10000000000000000000000",
        ] {
            let mut body = size.to_vec();
            body.extend_from_slice(b"\r\nz\r\n0\r\n\r\n");
            assert!(decode_all(&[&body]).is_err(), "accepted {size:?}");
        }
    }

    #[test]
    fn length_decoder_stops_at_length() {
        let mut d = BodyDecoder::new(BodyFraming::Length(3));
        let mut out = Vec::new();
        let n = d
            .feed(b"abcdef", &mut |b| {
                out.extend_from_slice(b);
                Ok(())
            })
            .unwrap();
        assert_eq!((n, &out[..], d.is_done()), (3, &b"abc"[..], true));
    }

    #[test]
    fn spool_overflows_to_file_and_reads_back() {
        let mut s = Spool::new(4);
        s.write(b"ab\ncd").unwrap();
        s.write(b"ef\ngh").unwrap();
        assert!(s.file.is_some());
        let mut r = s.into_reader().unwrap();
        assert_eq!(r.remaining(), 10);
        assert_eq!(&*r.read_line(None).unwrap(), b"ab\n");
        assert_eq!(&*r.read(Some(2)).unwrap(), b"cd");
        assert_eq!(&*r.read_line(Some(2)).unwrap(), b"ef");
        assert_eq!(&*r.read(None).unwrap(), b"\ngh");
        assert_eq!(&*r.read(None).unwrap(), b"");
    }

    #[test]
    fn file_reads_of_every_size_return_the_body_in_order() {
        let body: Vec<u8> = (0..300_000u32)
            .map(|i| {
                if i % 1000 == 999 {
                    b'\n'
                } else {
                    (i % 251) as u8
                }
            })
            .collect();
        let mut s = Spool::new(1024);
        for piece in body.chunks(70_001) {
            s.write(piece).unwrap();
        }
        let mut r = s.into_reader().unwrap();
        let mut back = Vec::new();
        // Small reads go through the buffer, large ones past it, and a line
        // leaves bytes buffered for the read after it.
        for (i, size) in [1, 7, 65_536, 3, 100_000, 65_537, 4095]
            .iter()
            .cycle()
            .enumerate()
        {
            let piece = if i % 3 == 2 {
                r.read_line(None).unwrap().into_owned()
            } else {
                r.read(Some(*size)).unwrap().into_owned()
            };
            if piece.is_empty() {
                break;
            }
            back.extend_from_slice(&piece);
        }
        assert_eq!(r.remaining(), 0);
        assert!(back == body, "the body came back changed");
    }

    #[test]
    fn sized_spool_fills_in_place() {
        let mut s = Spool::with_length(16, 6);
        assert_eq!(s.spare().len(), 6);
        s.write(b"ab").unwrap();
        let room = s.spare();
        assert_eq!(room.len(), 4);
        for (slot, b) in room.iter_mut().zip(b"cde") {
            slot.write(*b);
        }
        // SAFETY: the loop above initialised 3 bytes of the spare room.
        unsafe { s.assume_filled(3) };
        assert_eq!(s.received(), 5);
        s.write(b"f").unwrap();
        assert!(s.spare().is_empty());
        let mut r = s.into_reader().unwrap();
        assert_eq!(&*r.read(None).unwrap(), b"abcdef");
        // Too large for memory: no room up front, the file takes it.
        let mut s = Spool::with_length(4, 10);
        assert!(s.spare().is_empty());
        s.write(b"0123456789").unwrap();
        assert!(s.file.is_some());
    }

    #[test]
    fn memory_reader_lines() {
        let mut s = Spool::new(1024);
        s.write(b"one\ntwo").unwrap();
        let mut r = s.into_reader().unwrap();
        assert_eq!(&*r.read_line(None).unwrap(), b"one\n");
        assert_eq!(&*r.read_line(None).unwrap(), b"two");
        assert_eq!(&*r.read_line(None).unwrap(), b"");
    }
}
