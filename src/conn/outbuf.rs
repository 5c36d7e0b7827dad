//! A connection's pending output: a queue of buffers in memory, and past
//! `outbuf_overflow` bytes a temporary file (waitress's meaning of the option),
//! so a slow client costs disk rather than memory. Order is kept: once output
//! spills to the file, everything after it goes there until the file drains.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice, Read, Seek, SeekFrom, Write};

use crate::os::tempfile;
use crate::workers::{Piece, Pieces};

/// Bytes read back from the spill file per write attempt.
const SPILL_READ: usize = 64 * 1024;

pub struct OutBuffer {
    mem: VecDeque<Piece>,
    /// Bytes of `mem.front()` already written.
    pos: usize,
    mem_len: usize,
    spill: Option<Spill>,
    overflow: usize,
}

struct Spill {
    file: File,
    read_at: u64,
    write_at: u64,
    /// Read back from the file, not yet written to the socket.
    chunk: Vec<u8>,
    chunk_pos: usize,
}

impl OutBuffer {
    pub fn new(overflow: usize) -> Self {
        OutBuffer {
            mem: VecDeque::new(),
            pos: 0,
            mem_len: 0,
            spill: None,
            overflow,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.mem.is_empty() && self.spill.is_none()
    }

    /// Queues `pieces`, but when nothing is queued before them, first writes
    /// what `sink` takes at once, all pieces in one vectored call (a head and
    /// its body leave together): output the socket accepts is then never
    /// copied, nor spilled to disk. Returns the bytes written to `sink`.
    pub fn push_through(&mut self, pieces: Pieces, sink: &mut impl Write) -> io::Result<usize> {
        let written = if self.is_empty() {
            write_vectored_until_blocked(&pieces, sink)?
        } else {
            0
        };
        let mut skip = written;
        for piece in pieces {
            let start = skip.min(piece.bytes().len());
            skip -= start;
            self.push_from(piece, start)?;
        }
        Ok(written)
    }

    pub fn push(&mut self, piece: Piece) -> io::Result<()> {
        self.push_from(piece, 0)
    }

    /// Queues the piece from byte `start` on (only ever non-zero when the
    /// buffer is empty: see `push_through`).
    fn push_from(&mut self, piece: Piece, start: usize) -> io::Result<()> {
        let len = piece.bytes().len();
        if start >= len {
            return Ok(());
        }
        if self.spill.is_none() && self.mem_len + len - start <= self.overflow {
            if self.mem.is_empty() {
                self.pos = start;
            }
            self.mem_len += len;
            self.mem.push_back(piece);
            return Ok(());
        }
        let data = piece.bytes();
        let spill = match &mut self.spill {
            Some(spill) => spill,
            None => self.spill.insert(Spill {
                file: tempfile::create()?,
                read_at: 0,
                write_at: 0,
                chunk: Vec::new(),
                chunk_pos: 0,
            }),
        };
        spill.file.seek(SeekFrom::Start(spill.write_at))?;
        spill.file.write_all(&data[start..])?;
        spill.write_at += (data.len() - start) as u64;
        Ok(())
    }

    /// Writes as much as `sink` takes; returns the bytes written. Stops at
    /// `WouldBlock` (returned as `Ok` with what was written before it).
    pub fn write_to(&mut self, sink: &mut impl Write) -> io::Result<usize> {
        let mut total = 0;
        loop {
            let result = if !self.mem.is_empty() {
                self.write_mem(sink)
            } else if let Some(spill) = &mut self.spill {
                if spill.chunk_pos == spill.chunk.len() {
                    if spill.read_at == spill.write_at {
                        self.spill = None; // drained: back to memory
                        continue;
                    }
                    let n = (spill.write_at - spill.read_at).min(SPILL_READ as u64) as usize;
                    spill.chunk.resize(n, 0);
                    spill.file.seek(SeekFrom::Start(spill.read_at))?;
                    spill.file.read_exact(&mut spill.chunk)?;
                    spill.read_at += n as u64;
                    spill.chunk_pos = 0;
                }
                sink.write(&spill.chunk[spill.chunk_pos..])
                    .inspect(|&n| spill.chunk_pos += n)
            } else {
                return Ok(total);
            };
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => total += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(total),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn write_mem(&mut self, sink: &mut impl Write) -> io::Result<usize> {
        let written = write_pieces(self.mem.iter(), self.pos, sink)?;
        let mut n = written;
        while n > 0 {
            let Some(front) = self.mem.front() else { break };
            let front_len = front.bytes().len();
            let left = front_len - self.pos;
            if n < left {
                self.pos += n;
                break;
            }
            n -= left;
            self.mem_len -= front_len;
            self.mem.pop_front();
            self.pos = 0;
        }
        Ok(written)
    }
}

/// At most this many buffers per `writev`.
const MAX_SLICES: usize = 16;

/// One vectored write of `pieces`, the first from byte `skip` on.
fn write_pieces<'a>(
    pieces: impl Iterator<Item = &'a Piece>,
    mut skip: usize,
    sink: &mut impl Write,
) -> io::Result<usize> {
    let mut slices = [IoSlice::new(&[]); MAX_SLICES];
    let mut count = 0;
    for piece in pieces {
        let bytes = piece.bytes();
        if skip >= bytes.len() {
            skip -= bytes.len();
            continue;
        }
        slices[count] = IoSlice::new(&bytes[skip..]);
        skip = 0;
        count += 1;
        if count == MAX_SLICES {
            break;
        }
    }
    match count {
        // One buffer: a plain send, the kernel's shortest path.
        1 => sink.write(&slices[0]),
        _ => sink.write_vectored(&slices[..count]),
    }
}

/// Writes `pieces` in order until done or the sink would block; returns the
/// bytes written.
fn write_vectored_until_blocked(pieces: &[Piece], sink: &mut impl Write) -> io::Result<usize> {
    let total: usize = pieces.iter().map(|p| p.bytes().len()).sum();
    let mut written = 0;
    while written < total {
        match write_pieces(pieces.iter(), written, sink) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use smallvec::smallvec;

    /// A sink that takes at most `room` bytes per call, then would block.
    struct Trickle {
        got: Vec<u8>,
        room: usize,
        calls_left: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.calls_left == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.calls_left -= 1;
            let n = buf.len().min(self.room);
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn push_through_writes_first_and_queues_the_rest_in_order() {
        let mut out = OutBuffer::new(4);
        let mut sink = Trickle {
            got: Vec::new(),
            room: 3,
            calls_left: 1,
        };
        // The socket takes 3 bytes; 7 stay queued, past overflow: spilled.
        assert_eq!(
            out.push_through(smallvec![Piece::Owned(b"0123456789".to_vec())], &mut sink)
                .unwrap(),
            3
        );
        assert!(out.spill.is_some());
        // Something is queued now: later output waits behind it.
        sink.calls_left = 1;
        assert_eq!(
            out.push_through(smallvec![Piece::Owned(b"ab".to_vec())], &mut sink)
                .unwrap(),
            0
        );
        while !out.is_empty() {
            sink.calls_left = 5;
            out.write_to(&mut sink).unwrap();
        }
        assert_eq!(sink.got, b"0123456789ab");
        // A partly written buffer that fits stays in memory, from its offset.
        let mut out = OutBuffer::new(100);
        sink.got.clear();
        sink.calls_left = 1;
        assert_eq!(
            out.push_through(smallvec![Piece::Owned(b"hello".to_vec())], &mut sink)
                .unwrap(),
            3
        );
        assert!(out.spill.is_none());
        sink.calls_left = 5;
        out.write_to(&mut sink).unwrap();
        assert_eq!(sink.got, b"hello");
    }

    /// Takes everything offered, counting the calls.
    struct Gulp {
        got: Vec<u8>,
        calls: usize,
    }

    impl Write for Gulp {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            bufs.iter().for_each(|b| self.got.extend_from_slice(b));
            Ok(bufs.iter().map(|b| b.len()).sum())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn pieces_leave_in_one_vectored_write_or_queue_from_where_it_stopped() {
        let pieces = || {
            smallvec![
                Piece::Owned(b"head|".to_vec()),
                Piece::Owned(b"body".to_vec()),
            ]
        };
        let mut out = OutBuffer::new(100);
        let mut sink = Gulp {
            got: Vec::new(),
            calls: 0,
        };
        assert_eq!(out.push_through(pieces(), &mut sink).unwrap(), 9);
        assert_eq!((&sink.got[..], sink.calls), (&b"head|body"[..], 1));
        assert!(out.is_empty());
        // A sink that stops inside the first piece: the rest is queued in order.
        let mut trickle = Trickle {
            got: Vec::new(),
            room: 3,
            calls_left: 1,
        };
        assert_eq!(out.push_through(pieces(), &mut trickle).unwrap(), 3);
        trickle.calls_left = 10;
        out.write_to(&mut trickle).unwrap();
        assert_eq!(trickle.got, b"head|body");
    }

    #[test]
    fn order_is_kept_across_memory_and_file() {
        let mut out = OutBuffer::new(10);
        let mut expected = Vec::new();
        for i in 0..50u8 {
            let piece = vec![i; (i as usize % 7) + 1];
            expected.extend_from_slice(&piece);
            out.push(Piece::Owned(piece)).unwrap();
        }
        assert!(
            out.spill.is_some(),
            "past overflow the output spills to a file"
        );
        let mut sink = Trickle {
            got: Vec::new(),
            room: 3,
            calls_left: 5,
        };
        while !out.is_empty() {
            sink.calls_left = 5;
            out.write_to(&mut sink).unwrap();
        }
        assert_eq!(sink.got, expected);
        // Drained: new output goes to memory again.
        out.push(Piece::Owned(vec![1])).unwrap();
        assert!(out.spill.is_none());
    }
}
