//! A connection's pending output: a queue of buffers in memory, and past
//! `outbuf_overflow` bytes a temporary file (waitress's meaning of the option),
//! so a slow client costs disk rather than memory. Order is kept: once output
//! spills to the file, everything after it goes there until the file drains.
//! When the file cannot be made or written (`TMPDIR` missing, disk full), the
//! output stays in memory instead, bounded by the worker's wait at
//! `outbuf_high_watermark`: a response is slower to drain, never cut short.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice, Read, Seek, SeekFrom, Write};

use crate::handoff::{Piece, Pieces};
use crate::net::stream::Sink;
use crate::os::tempfile;

/// Bytes read back from the spill file per write attempt.
const SPILL_READ: usize = 64 * 1024;

pub struct OutBuffer {
    /// Pieces in order; a file piece among them holds no memory, and is never
    /// spilled (it is a file already).
    mem: VecDeque<Piece>,
    /// Bytes of `mem.front()` already written (for pieces in memory).
    pos: usize,
    /// Bytes the pieces in `mem` hold in memory.
    mem_len: usize,
    spill: Option<Spill>,
    overflow: usize,
    /// Making the spill file failed: no new try (nor log line) per write
    /// until the buffer has drained.
    spill_failed: bool,
    /// Makes the spill file; a field so tests can make it fail.
    create_file: fn() -> io::Result<File>,
    /// File pieces go through memory rather than `Sink::send_file`: see
    /// `copying_files`.
    copy_files: bool,
}

struct Spill {
    file: File,
    read_at: u64,
    write_at: u64,
    /// Read back from the file, not yet written to the socket.
    chunk: Vec<u8>,
    chunk_pos: usize,
    /// Output queued once writing the file failed; it follows the file's
    /// contents out.
    after: VecDeque<Piece>,
}

impl Spill {
    fn new(file: File) -> Self {
        Spill {
            file,
            read_at: 0,
            write_at: 0,
            chunk: Vec::new(),
            chunk_pos: 0,
            after: VecDeque::new(),
        }
    }

    fn push(&mut self, piece: Piece, start: usize) {
        // A file piece queues behind the file, and so does all that follows.
        if let (true, Some(bytes)) = (self.after.is_empty(), piece.memory()) {
            match self.append(&bytes[start..]) {
                Ok(()) => return,
                Err(e) => tempfile::write_failed(&e),
            }
        }
        let piece = match (start, piece.memory()) {
            (1.., Some(bytes)) => Piece::Owned(bytes[start..].to_vec()),
            _ => piece,
        };
        self.after.push_back(piece);
    }

    /// On failure `write_at` stays put: bytes written past it are never read.
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(self.write_at))?;
        self.file.write_all(data)?;
        self.write_at += data.len() as u64;
        Ok(())
    }
}

impl OutBuffer {
    pub fn new(overflow: usize) -> Self {
        OutBuffer {
            mem: VecDeque::new(),
            pos: 0,
            mem_len: 0,
            spill: None,
            overflow,
            spill_failed: false,
            create_file: tempfile::create,
            copy_files: false,
        }
    }

    /// Whether file pieces are read into memory and written, rather than
    /// handed to `Sink::send_file` (`sendfile(2)`); for loopback clients.
    /// Their kernel copies every byte to the client anyway, on the client's
    /// CPU, and copying out of sendfile's page-cache pages (cold in the CPU's
    /// caches, a fragment per 4 KiB page) was measured to cost a client such
    /// as wrk two to three times what copying out of the buffers a write just
    /// filled costs. Copying here moves about that much work to the server
    /// (the sum stays within about 10%), off the client's core, which was
    /// the bottleneck. A card sending to a remote client reads the pages
    /// itself: there sendfile saves the server its copy. Unix socket clients
    /// were measured to save less than the server would spend.
    pub fn copying_files(mut self, copy: bool) -> Self {
        self.copy_files = copy;
        self
    }

    pub fn is_empty(&self) -> bool {
        self.mem.is_empty() && self.spill.is_none()
    }

    /// Bytes held in memory (not in the spill file).
    pub fn in_memory(&self) -> usize {
        let after = self
            .spill
            .as_ref()
            .map_or(0, |s| s.after.iter().map(Piece::in_memory).sum::<usize>());
        self.mem_len.saturating_sub(self.pos) + after
    }

    /// Queues `pieces`, but when nothing is queued before them, first writes
    /// what `sink` takes at once, all pieces in one vectored call (a head and
    /// its body leave together): output the socket accepts is then never
    /// copied, nor spilled to disk. Returns the bytes written to `sink`.
    pub fn push_through(&mut self, pieces: Pieces, sink: &mut impl Sink) -> io::Result<usize> {
        let written = if self.is_empty() {
            write_vectored_until_blocked(&pieces, sink)?
        } else {
            0
        };
        let mut skip = written;
        for piece in pieces {
            let start = skip.min(piece.len());
            skip -= start;
            self.push_from(piece, start);
        }
        Ok(written)
    }

    pub fn push(&mut self, piece: Piece) {
        self.push_from(piece, 0)
    }

    /// Queues the piece from byte `start` on (only ever non-zero when the
    /// buffer is empty: see `push_through`).
    fn push_from(&mut self, piece: Piece, start: usize) {
        let len = piece.len();
        if start >= len {
            return;
        }
        if let Some(spill) = &mut self.spill {
            return spill.push(piece, start);
        }
        if self.mem.is_empty() {
            self.spill_failed = false;
        }
        let ram = piece.in_memory();
        if ram > 0 && self.mem_len + ram - start > self.overflow && !self.spill_failed {
            // `tempfile` logs a failure.
            match (self.create_file)() {
                Ok(file) => return self.spill.insert(Spill::new(file)).push(piece, start),
                Err(_) => self.spill_failed = true,
            }
        }
        if self.mem.is_empty() {
            self.pos = start;
        }
        self.mem_len += ram;
        self.mem.push_back(piece);
    }

    /// Writes as much as `sink` takes; returns the bytes written. Stops at
    /// `WouldBlock` (returned as `Ok` with what was written before it).
    pub fn write_to(&mut self, sink: &mut impl Sink) -> io::Result<usize> {
        let mut total = 0;
        loop {
            let result = if let Some(Piece::File(file)) = self.mem.front_mut() {
                if file.is_empty() {
                    self.mem.pop_front();
                    continue;
                }
                if self.copy_files {
                    file.copy_to(sink)
                } else {
                    sink.send_file(file)
                }
            } else if !self.mem.is_empty() {
                self.write_mem(sink)
            } else if let Some(spill) = &mut self.spill {
                if spill.chunk_pos == spill.chunk.len() {
                    if spill.read_at == spill.write_at {
                        // Drained: back to memory, where what queued behind
                        // the file goes first.
                        let after = std::mem::take(&mut spill.after);
                        self.mem_len = after.iter().map(Piece::in_memory).sum();
                        self.mem = after;
                        self.pos = 0;
                        self.spill = None;
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

    /// Writes the pieces in memory up to the first file piece.
    fn write_mem(&mut self, sink: &mut impl Write) -> io::Result<usize> {
        let written = write_pieces(self.mem.iter(), self.pos, sink)?;
        let mut n = written;
        while n > 0 {
            let Some(front) = self.mem.front().filter(|p| p.memory().is_some()) else {
                break;
            };
            let front_len = front.in_memory();
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

/// One vectored write of `pieces`, the first from byte `skip` on, up to the
/// first file piece.
fn write_pieces<'a>(
    pieces: impl Iterator<Item = &'a Piece>,
    mut skip: usize,
    sink: &mut impl Write,
) -> io::Result<usize> {
    let mut slices = [IoSlice::new(&[]); MAX_SLICES];
    let mut count = 0;
    for piece in pieces {
        let Some(bytes) = piece.memory() else { break };
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

/// Writes `pieces` in order until done, a file piece, or the sink would
/// block; returns the bytes written.
fn write_vectored_until_blocked(pieces: &[Piece], sink: &mut impl Write) -> io::Result<usize> {
    let total: usize = pieces
        .iter()
        .map_while(Piece::memory)
        .map(<[u8]>::len)
        .sum();
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
    use crate::os::sendfile::FilePiece;
    use smallvec::smallvec;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A sink that takes at most `room` bytes per call, then would block.
    struct Trickle {
        got: Vec<u8>,
        room: usize,
        calls_left: usize,
    }

    impl Sink for Trickle {}
    impl Sink for Gulp {}

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
            out.push(Piece::Owned(piece));
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
        out.push(Piece::Owned(vec![1]));
        assert!(out.spill.is_none());
    }

    /// Pushes 50 pieces of 1 to 7 bytes; returns what they add up to.
    fn push_pieces(out: &mut OutBuffer, first: u8) -> Vec<u8> {
        let mut expected = Vec::new();
        for i in first..first + 50 {
            let piece = vec![i; (i as usize % 7) + 1];
            expected.extend_from_slice(&piece);
            out.push(Piece::Owned(piece));
        }
        expected
    }

    fn drain(out: &mut OutBuffer) -> Vec<u8> {
        let mut sink = Trickle {
            got: Vec::new(),
            room: 3,
            calls_left: 0,
        };
        while !out.is_empty() {
            sink.calls_left = 5;
            out.write_to(&mut sink).unwrap();
        }
        sink.got
    }

    #[test]
    fn spill_file_that_cannot_be_made_keeps_output_in_memory_in_order() {
        static TRIES: AtomicUsize = AtomicUsize::new(0);
        let mut out = OutBuffer::new(10);
        out.create_file = || {
            TRIES.fetch_add(1, Ordering::Relaxed);
            Err(io::ErrorKind::NotFound.into())
        };
        let expected = push_pieces(&mut out, 0);
        assert!(out.spill.is_none());
        assert_eq!(out.mem_len, expected.len(), "all of it held in memory");
        assert_eq!(TRIES.load(Ordering::Relaxed), 1, "one try until drained");
        assert_eq!(drain(&mut out), expected);
        // Drained: the next output past overflow tries the file again.
        push_pieces(&mut out, 0);
        assert_eq!(TRIES.load(Ordering::Relaxed), 2);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn output_after_a_failed_spill_write_follows_the_file_out() {
        use std::os::fd::AsRawFd;
        let mut out = OutBuffer::new(10);
        let mut expected = push_pieces(&mut out, 0);
        let spill = out.spill.as_mut().unwrap();
        // The same file, read-only now: writes fail as on a full disk.
        let path = format!("/proc/self/fd/{}", spill.file.as_raw_fd());
        spill.file = File::open(path).unwrap();
        let written = spill.write_at;
        expected.extend(push_pieces(&mut out, 50));
        let spill = out.spill.as_ref().unwrap();
        assert_eq!(spill.write_at, written, "nothing more went to the file");
        assert_eq!(spill.after.len(), 50);
        assert_eq!(drain(&mut out), expected);
        assert!(out.spill.is_none());
    }

    /// Takes everything, counting the file pieces offered to `send_file`.
    struct FileSink {
        got: Vec<u8>,
        send_file_calls: usize,
    }

    impl Write for FileSink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.got.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Sink for FileSink {
        fn send_file(&mut self, file: &mut FilePiece) -> io::Result<usize> {
            self.send_file_calls += 1;
            file.copy_to(self)
        }
    }

    #[test]
    fn file_pieces_go_to_send_file_unless_copying_files() {
        let data: Vec<u8> = (0..600_000u32).map(|i| (i % 249) as u8).collect();
        for copy in [false, true] {
            let mut file = tempfile::create().unwrap();
            file.write_all(&data).unwrap();
            let mut out = OutBuffer::new(100).copying_files(copy);
            out.push(Piece::Owned(b"head|".to_vec()));
            out.push(Piece::File(FilePiece::new(file, 9, 500_000)));
            out.push(Piece::Owned(b"|tail".to_vec()));
            let mut sink = FileSink {
                got: Vec::new(),
                send_file_calls: 0,
            };
            out.write_to(&mut sink).unwrap();
            assert!(out.is_empty());
            assert_eq!(sink.got.len(), 500_010);
            assert_eq!(&sink.got[..5], b"head|");
            assert_eq!(&sink.got[5..500_005], &data[9..500_009]);
            assert_eq!(&sink.got[500_005..], b"|tail");
            assert_eq!(sink.send_file_calls > 0, !copy, "copying_files({copy})");
        }
    }
}
