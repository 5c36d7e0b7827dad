//! A connection's pending output: a queue of buffers in memory, and past
//! `outbuf_overflow` bytes a temporary file (waitress's meaning of the option),
//! so a slow client costs disk rather than memory. Order is kept: once output
//! spills to the file, everything after it goes there until the file drains.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice, Read, Seek, SeekFrom, Write};

use crate::http::body::temp_file;
use crate::workers::Piece;

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

    /// Queues `data`, but when nothing is queued before it, first writes what
    /// `sink` takes at once: output the socket accepts is then never copied,
    /// nor spilled to disk. Returns the bytes written to `sink`.
    pub fn push_through(&mut self, piece: Piece, sink: &mut impl Write) -> io::Result<usize> {
        let mut written = 0;
        if self.is_empty() {
            let data = piece.bytes();
            while written < data.len() {
                match sink.write(&data[written..]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        self.push_from(piece, written)?;
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
                file: temp_file()?,
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
        let mut slices = [IoSlice::new(&[]); 16];
        let mut count = 0;
        for (i, piece) in self.mem.iter().take(slices.len()).enumerate() {
            slices[count] = IoSlice::new(&piece.bytes()[if i == 0 { self.pos } else { 0 }..]);
            count += 1;
        }
        let written = sink.write_vectored(&slices[..count])?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
            out.push_through(Piece::Owned(b"0123456789".to_vec()), &mut sink)
                .unwrap(),
            3
        );
        assert!(out.spill.is_some());
        // Something is queued now: later output waits behind it.
        sink.calls_left = 1;
        assert_eq!(
            out.push_through(Piece::Owned(b"ab".to_vec()), &mut sink)
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
            out.push_through(Piece::Owned(b"hello".to_vec()), &mut sink)
                .unwrap(),
            3
        );
        assert!(out.spill.is_none());
        sink.calls_left = 5;
        out.write_to(&mut sink).unwrap();
        assert_eq!(sink.got, b"hello");
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
