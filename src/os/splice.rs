//! A request body bound for its temporary file, moved there from the socket
//! without passing through the loop's memory: on Linux `splice(2)` hands the
//! socket's buffers to a pipe and the pipe's to the file, so the kernel copies
//! each byte once (into the page cache) where `recv` plus `write` copied it
//! twice. Elsewhere there is no pipe and the loop reads through its buffer.

use std::io;

#[cfg(target_os = "linux")]
pub use linux::Pipe;

/// Where `splice(2)` is not: `new` gives none, so no caller ever holds one.
#[cfg(not(target_os = "linux"))]
pub enum Pipe {}

#[cfg(not(target_os = "linux"))]
impl Pipe {
    pub fn new(_capacity: usize) -> Option<Pipe> {
        None
    }

    pub fn capacity(&self) -> usize {
        match *self {}
    }

    pub fn splice(
        &mut self,
        _socket: &crate::net::stream::Stream,
        _file: &std::fs::File,
        _max: usize,
    ) -> io::Result<Spliced> {
        match *self {}
    }
}

/// One splice's outcome: the bytes taken from the socket, and whether the
/// file took them all (the bytes it refused are dropped).
pub struct Spliced {
    pub read: usize,
    pub written: io::Result<()>,
}

#[cfg(target_os = "linux")]
mod linux {
    use std::fs::File;
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

    use super::Spliced;
    use crate::net::stream::Stream;

    /// One event loop's pipe. Empty between calls: whatever a call puts in
    /// goes to the file or is read out and dropped before it returns.
    pub struct Pipe {
        read: OwnedFd,
        write: OwnedFd,
        capacity: usize,
        /// Bytes left in the pipe by a failed `discard`.
        stale: usize,
    }

    impl Pipe {
        /// A non-blocking pipe holding up to `capacity` bytes where the
        /// kernel allows that much (`/proc/sys/fs/pipe-max-size`), else its
        /// default; `None` when no pipe can be had (the descriptor limit).
        pub fn new(capacity: usize) -> Option<Pipe> {
            let mut fds: [libc::c_int; 2] = [-1; 2];
            // SAFETY: `fds` is a valid array of two c_ints for pipe2 to fill.
            if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
                return None;
            }
            // SAFETY: pipe2 succeeded, so both descriptors are open and ours
            // alone; each OwnedFd closes one exactly once.
            let (read, write) =
                unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
            let wanted = libc::c_int::try_from(capacity).unwrap_or(libc::c_int::MAX);
            // SAFETY: fcntl on a descriptor we own; F_SETPIPE_SZ and
            // F_GETPIPE_SZ take and return an int. A refused size leaves
            // the default, which F_GETPIPE_SZ reports.
            let size = unsafe {
                libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, wanted);
                libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ)
            };
            Some(Pipe {
                read,
                write,
                capacity: usize::try_from(size).ok().filter(|&n| n > 0)?,
                stale: 0,
            })
        }

        /// The most one `splice` call moves.
        pub fn capacity(&self) -> usize {
            self.capacity
        }

        /// Moves up to `max` bytes (at most `capacity`) from `socket` to
        /// `file` at its position. An error is the socket's (`WouldBlock`
        /// when it has nothing); the file's is in `Spliced::written`.
        pub fn splice(&mut self, socket: &Stream, file: &File, max: usize) -> io::Result<Spliced> {
            self.discard()?;
            let sock = socket.sock_ref();
            let read = splice(
                sock.as_raw_fd(),
                self.write.as_raw_fd(),
                max.min(self.capacity),
            )?;
            let mut left = read;
            let mut written = Ok(());
            while left > 0 {
                match splice(self.read.as_raw_fd(), file.as_raw_fd(), left) {
                    Ok(0) => {
                        written = Err(io::ErrorKind::WriteZero.into());
                        break;
                    }
                    Ok(n) => left -= n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        written = Err(e);
                        break;
                    }
                }
            }
            self.stale = left;
            // Failing, it leaves `stale` for the next call, which tries again
            // before it splices anything; these bytes count as read either way.
            let _ = self.discard();
            Ok(Spliced { read, written })
        }

        /// Empties the pipe of the bytes a file refused. Reading a pipe that
        /// holds data does not fail; if it ever did, no splice happens until
        /// it worked, so those bytes can never end up in another body.
        fn discard(&mut self) -> io::Result<()> {
            let mut sink = [0u8; 4096];
            while self.stale > 0 {
                let want = self.stale.min(sink.len());
                // SAFETY: `sink` is valid for `want` bytes of writes and the
                // descriptor is ours and open.
                let n =
                    unsafe { libc::read(self.read.as_raw_fd(), sink.as_mut_ptr().cast(), want) };
                match usize::try_from(n) {
                    Ok(n) if n > 0 => self.stale -= n,
                    Ok(_) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Err(_) => {
                        let e = io::Error::last_os_error();
                        if e.kind() != io::ErrorKind::Interrupted {
                            return Err(e);
                        }
                    }
                }
            }
            Ok(())
        }
    }

    /// `splice(2)` between two descriptors at their positions, without
    /// blocking on the pipe.
    fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
        // SAFETY: both descriptors are open for the call (borrowed from
        // their owners), and null offsets ask for neither to be written.
        let n = unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::net::stream::Stream;
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn socket_bytes_land_in_the_file_in_order() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let socket = Stream::Tcp(mio::net::TcpStream::from_std(server));
        let mut pipe = Pipe::new(64 * 1024).unwrap();
        let mut file = crate::os::tempfile::create().unwrap();
        let sent: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        client.write_all(&sent).unwrap();
        drop(client);
        let mut total = 0;
        loop {
            match pipe.splice(&socket, &file, usize::MAX) {
                Ok(s) if s.read == 0 => break,
                Ok(s) => {
                    assert!(s.read <= pipe.capacity());
                    s.written.unwrap();
                    total += s.read;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(total, sent.len());
        let mut back = Vec::new();
        file.seek(SeekFrom::Start(0)).unwrap();
        file.read_to_end(&mut back).unwrap();
        assert!(back == sent, "the file holds other bytes");
    }
}
