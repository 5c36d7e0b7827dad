//! A response body that is a regular file (`wsgi.file_wrapper` over a real
//! file), sent by the event loop: with `sendfile(2)` on Linux, the kernel
//! copying page cache to socket; elsewhere, to a loopback client (see
//! `OutBuffer::copying_files`), and on Linux where a file refuses sendfile,
//! by positional reads through a buffer. The loop owns its own
//! descriptor (a duplicate), so the app may close its file at once, and reads
//! at explicit offsets, so the app's file position is never moved.

use std::fs::File;
use std::io::{self, Write};

/// Bytes read per block where the file goes through memory: a quarter of
/// the reads and writes of 64 KiB blocks, and measured cheaper per byte for
/// both ends of a loopback connection; still small beside a socket's buffer.
const BLOCK: usize = 256 * 1024;

pub struct FilePiece {
    file: File,
    offset: u64,
    /// Bytes still to send from the file, after `buf`.
    remaining: u64,
    /// Read from the file, not yet written (the fallback's buffer).
    buf: Vec<u8>,
    pos: usize,
}

impl FilePiece {
    pub fn new(file: File, offset: u64, len: u64) -> Self {
        FilePiece {
            file,
            offset,
            remaining: len,
            buf: Vec::new(),
            pos: 0,
        }
    }

    /// Bytes still to send.
    pub fn len(&self) -> u64 {
        self.remaining + (self.buf.len() - self.pos) as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sends what `sink` takes of the rest through memory; returns the bytes
    /// written. A file shorter than promised is an error: the response it
    /// belongs to cannot be completed.
    pub fn copy_to(&mut self, sink: &mut impl Write) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            if self.remaining == 0 {
                return Ok(0);
            }
            let want = self.remaining.min(BLOCK as u64) as usize;
            self.buf.resize(want, 0);
            let got = read_at(&self.file, &mut self.buf, self.offset)?;
            if got == 0 {
                return Err(shrank());
            }
            self.buf.truncate(got);
            self.pos = 0;
            self.offset += got as u64;
            self.remaining -= got as u64;
        }
        let n = sink.write(&self.buf[self.pos..])?;
        self.pos += n;
        Ok(n)
    }

    /// Sends what the socket takes with `sendfile(2)`, falling back to
    /// `copy_to` for files the kernel will not send that way.
    #[cfg(target_os = "linux")]
    pub fn send_to(
        &mut self,
        socket: &mut (impl Write + std::os::fd::AsRawFd),
    ) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        if self.pos < self.buf.len() || self.remaining == 0 {
            return self.copy_to(socket);
        }
        let mut offset = self.offset as libc::off_t;
        let count = self.remaining.min(isize::MAX as u64) as usize;
        // SAFETY: both descriptors are open for the duration of the call
        // (owned by `self.file` and borrowed from `socket`), and `offset`
        // is a valid, exclusively borrowed off_t the kernel updates.
        let n = unsafe {
            libc::sendfile(
                socket.as_raw_fd(),
                self.file.as_raw_fd(),
                &mut offset,
                count,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => self.copy_to(socket),
                _ => Err(e),
            };
        }
        if n == 0 {
            return Err(shrank());
        }
        self.offset = offset as u64;
        self.remaining -= n as u64;
        Ok(n as usize)
    }

    #[cfg(not(target_os = "linux"))]
    pub fn send_to(&mut self, socket: &mut impl Write) -> io::Result<usize> {
        self.copy_to(socket)
    }
}

fn shrank() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the file ended before its announced length",
    )
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(file, buf, offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom};
    use std::net::{TcpListener, TcpStream};

    fn file_with(data: &[u8]) -> File {
        let mut f = crate::os::tempfile::create().unwrap();
        f.write_all(data).unwrap();
        f.seek(SeekFrom::Start(3)).unwrap(); // the app's position: never moved
        f
    }

    #[test]
    fn copies_a_range_through_memory_in_blocks() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut piece = FilePiece::new(file_with(&data), 10, 150_000);
        let mut out = Vec::new();
        while !piece.is_empty() {
            assert!(piece.copy_to(&mut out).unwrap() > 0);
        }
        assert_eq!(out, &data[10..150_010]);
        assert_eq!(piece.file.stream_position().unwrap(), 3);
    }

    /// Takes at most `room` bytes per write, and every other write would block.
    struct Trickle {
        got: Vec<u8>,
        room: usize,
        block_next: bool,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.block_next = !self.block_next;
            if !self.block_next {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.room);
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_block_partly_written_goes_on_from_where_the_sink_stopped() {
        let data: Vec<u8> = (0..(2 * BLOCK as u32 + 99))
            .map(|i| (i % 241) as u8)
            .collect();
        let mut piece = FilePiece::new(file_with(&data), 5, data.len() as u64 - 5);
        let mut sink = Trickle {
            got: Vec::new(),
            room: 100_003,
            block_next: false,
        };
        while !piece.is_empty() {
            match piece.copy_to(&mut sink) {
                Ok(n) => assert!(n > 0),
                Err(e) => assert_eq!(e.kind(), io::ErrorKind::WouldBlock),
            }
        }
        assert_eq!(sink.got, &data[5..]);
    }

    #[test]
    fn a_file_shorter_than_announced_is_an_error() {
        let mut piece = FilePiece::new(file_with(b"abcdef"), 0, 10);
        let mut out = Vec::new();
        assert_eq!(piece.copy_to(&mut out).unwrap(), 6);
        let e = piece.copy_to(&mut out).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn sends_a_range_to_a_socket() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            client.read_to_end(&mut got).unwrap();
            got
        });
        let mut piece = FilePiece::new(file_with(&data), 7, 2_500_000);
        while !piece.is_empty() {
            piece.send_to(&mut server).unwrap();
        }
        drop(server);
        assert_eq!(reader.join().unwrap(), &data[7..2_500_007]);
    }
}
