//! A connection's socket: TCP, or on Unix a Unix domain socket. One enum
//! rather than generics over the whole connection: the match per call costs
//! a predictable branch, and TCP connections pay nothing else. `Sink` is what
//! a connection's output is written to: this socket, or in tests any writer.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;

use mio::net::TcpStream;
#[cfg(unix)]
use mio::net::UnixStream;
use socket2::SockRef;

use crate::os::sendfile::FilePiece;

/// Where output goes: the client's socket, or in tests any writer.
pub trait Sink: Write {
    /// Sends what it takes of a file piece; returns the bytes sent.
    fn send_file(&mut self, file: &mut FilePiece) -> io::Result<usize>
    where
        Self: Sized,
    {
        file.copy_to(self)
    }
}

#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(UnixStream),
}

impl Stream {
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        each!(Stream, self, s => s.shutdown(how))
    }

    /// The socket for socket2's calls (`recv` into uninitialised memory).
    pub fn sock_ref(&self) -> SockRef<'_> {
        each!(Stream, self, s => SockRef::from(s))
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        each!(Stream, self, s => s.read(buf))
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        each!(Stream, self, s => s.write(buf))
    }

    /// Forwarded: the default would write only the first buffer.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        each!(Stream, self, s => s.write_vectored(bufs))
    }

    fn flush(&mut self) -> io::Result<()> {
        each!(Stream, self, s => s.flush())
    }
}

/// `sendfile(2)` takes any stream socket, Unix ones included.
impl Sink for Stream {
    fn send_file(&mut self, file: &mut FilePiece) -> io::Result<usize> {
        file.send_to(self)
    }
}

#[cfg(unix)]
impl std::os::fd::AsRawFd for Stream {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        each!(Stream, self, s => s.as_raw_fd())
    }
}

delegate_source!(Stream);
