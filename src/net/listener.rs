use std::io;
use std::net::SocketAddr;
#[cfg(unix)]
use std::os::fd::BorrowedFd;
#[cfg(unix)]
use std::sync::Arc;

use mio::net::TcpListener;
#[cfg(unix)]
use mio::net::UnixListener;
use pyo3::IntoPyObject;
use socket2::{Domain, Protocol, Socket, Type};

use super::stream::Stream;
use super::{Peer, ServerPort};

/// One bound, listening socket.
pub struct Listener {
    pub socket: ListenSocket,
    /// `SERVER_PORT` of its connections.
    pub server_port: ServerPort,
    /// Where it listens, for `effective_listen`.
    pub effective: (String, Port),
    /// With `reuse_port`: the worker slot whose socket this is (the others
    /// serve their own). `None`: every worker serves it.
    pub worker: Option<usize>,
    /// A socket the caller bound (`sockets=`): its blocking mode to give back.
    #[cfg(unix)]
    borrowed: Option<Borrowed>,
    /// Its accepted sockets come with TCP_NODELAY already set (Linux copies
    /// the listener's), which saves a setsockopt per connection.
    nodelay_inherited: bool,
}

pub enum ListenSocket {
    Tcp(TcpListener),
    #[cfg(unix)]
    Unix(UnixListener),
}

/// Where a listener listens, as `effective_listen` shows it (as waitress's
/// `effective_host, effective_port`): `(ip, port)` or `("unix", path)`.
#[derive(Clone, Debug, IntoPyObject)]
pub enum Port {
    Number(u16),
    Path(String),
}

/// What a socket the caller handed over needs given back when maitre is
/// done with it: O_NONBLOCK is shared with the caller's descriptor, and only
/// the process that took the socket gives it back (worker processes share
/// the same open socket, which the others still serve on).
#[cfg(unix)]
struct Borrowed {
    was_nonblocking: bool,
    pid: u32,
}

impl Listener {
    /// How reports name it: `ip:port`, `[ip6]:port` or `unix:PATH`.
    pub fn shown(&self) -> String {
        match &self.effective {
            (host, Port::Number(p)) if host.contains(':') => format!("[{host}]:{p}"),
            (host, Port::Number(p)) => format!("{host}:{p}"),
            (_, Port::Path(path)) => format!("unix:{path}"),
        }
    }

    pub fn kind(&self) -> &'static str {
        match &self.socket {
            ListenSocket::Tcp(_) => "tcp",
            #[cfg(unix)]
            ListenSocket::Unix(_) => "unix",
        }
    }

    #[cfg(unix)]
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        each!(ListenSocket, &self.socket, l => l.as_raw_fd())
    }
}

/// A bare TCP listener, bound as `Listener::bind` binds (the metrics
/// endpoint's, which serves no app).
pub fn bind_tcp(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    let socket = bound_tcp_socket(addr, false)?;
    socket.listen(backlog)?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// A TCP socket bound to `addr` as waitress binds: address reuse on Unix (a
/// restart must not wait out TIME_WAIT), v6 sockets v6-only so `[::]` and
/// `0.0.0.0` can both be bound on one port; with `reuse_port`, in the
/// port's `SO_REUSEPORT` group (Linux only).
fn bound_tcp_socket(addr: SocketAddr, reuse_port: bool) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    if reuse_port {
        #[cfg(target_os = "linux")]
        socket.set_reuse_port(true)?;
        // Elsewhere SO_REUSEPORT does not spread connections (the options refuse it).
        #[cfg(not(target_os = "linux"))]
        return Err(io::ErrorKind::Unsupported.into());
    }
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // Accepted sockets inherit it on Linux (see `Listener::tcp`).
    let _ = socket.set_tcp_nodelay(true);
    socket.bind(&addr.into())?;
    Ok(socket)
}

impl Listener {
    /// Binds `addr` and listens with `backlog` (see `bound_tcp_socket`).
    pub fn bind(addr: SocketAddr, backlog: i32) -> io::Result<Listener> {
        let socket = bound_tcp_socket(addr, false)?;
        socket.listen(backlog)?;
        Self::tcp(socket)
    }

    /// `workers` listening sockets on `addr`, each with its own accept queue of
    /// `backlog`, in one `SO_REUSEPORT` group: the kernel spreads new
    /// connections over them by a hash of their addresses, and worker `i`
    /// serves socket `i` (`reuse_port`).
    ///
    /// All are made here, in the parent before fork, rather than each in its
    /// worker: the parent keeps every one open, so a worker that dies or stops
    /// takes no queued connection with it (closing a listener resets its
    /// queue unless `net.ipv4.tcp_migrate_req` is set) and its replacement
    /// inherits the queue; a port in use or a bad address fails the start, not
    /// a worker; and the parent can read every queue for `stats()`.
    pub fn bind_group(addr: SocketAddr, backlog: i32, workers: usize) -> io::Result<Vec<Listener>> {
        // First an ordinary bind: a port already in use fails it with
        // EADDRINUSE even when the holder is another SO_REUSEPORT group of
        // this user (which the sockets below would join, silently splitting
        // its traffic with it), and port 0 picks the group's port. It is
        // dropped at once, not kept to hold the port: a bound socket without
        // SO_REUSEPORT keeps the group's sockets from binding; the group's
        // listening sockets hold the port from then on.
        let port = match bound_tcp_socket(addr, false)?.local_addr()?.as_socket() {
            Some(bound) => bound.port(),
            None => addr.port(),
        };
        let addr = SocketAddr::new(addr.ip(), port);
        (0..workers)
            .map(|slot| {
                let socket = bound_tcp_socket(addr, true)?;
                socket.listen(backlog)?;
                let mut listener = Self::tcp(socket)?;
                listener.worker = Some(slot);
                Ok(listener)
            })
            .collect()
    }

    fn tcp(socket: Socket) -> io::Result<Listener> {
        socket.set_nonblocking(true)?;
        let nodelay_inherited = cfg!(target_os = "linux") && socket.tcp_nodelay().unwrap_or(false);
        let std_listener: std::net::TcpListener = socket.into();
        let addr = std_listener.local_addr()?;
        Ok(Listener {
            socket: ListenSocket::Tcp(TcpListener::from_std(std_listener)),
            server_port: ServerPort::Tcp(addr.port()),
            effective: (addr.ip().to_string(), Port::Number(addr.port())),
            worker: None,
            #[cfg(unix)]
            borrowed: None,
            nodelay_inherited,
        })
    }

    /// Binds a Unix socket at `path` with permissions `perms` and listens. A
    /// socket file left by a dead server is replaced; one a live server
    /// listens on stays its own, and binding fails with EADDRINUSE.
    #[cfg(unix)]
    pub fn bind_unix(path: &str, perms: u32, backlog: i32) -> io::Result<Listener> {
        use std::os::unix::fs::PermissionsExt;
        let addr = socket2::SockAddr::unix(path)?;
        remove_stale(path, &addr)?;
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        socket.bind(&addr)?;
        // Before listen(): until then a client is refused, never let in early.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(perms))?;
        socket.listen(backlog)?;
        Self::unix(socket, path)
    }

    #[cfg(unix)]
    fn unix(socket: Socket, path: &str) -> io::Result<Listener> {
        socket.set_nonblocking(true)?;
        let std_listener: std::os::unix::net::UnixListener = socket.into();
        Ok(Listener {
            socket: ListenSocket::Unix(UnixListener::from_std(std_listener)),
            server_port: ServerPort::Unix(Arc::from(path)),
            effective: ("unix".to_owned(), Port::Path(path.to_owned())),
            worker: None,
            borrowed: None,
            nodelay_inherited: false,
        })
    }

    /// Serves a socket the caller bound (`sockets=`) on a duplicate of its
    /// descriptor, so the caller's stays open. A socket already listening
    /// keeps its own backlog; one that is only bound listens with `backlog`.
    #[cfg(unix)]
    pub fn adopt(fd: BorrowedFd<'_>, backlog: i32) -> io::Result<Listener> {
        let socket = Socket::from(fd.try_clone_to_owned()?);
        let unsupported = || {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "only TCP (IPv4, IPv6) and Unix stream sockets can be served",
            )
        };
        if socket.r#type()? != Type::STREAM {
            return Err(unsupported());
        }
        if !is_listening(&socket)? {
            socket.listen(backlog)?;
        }
        let was_nonblocking = socket.nonblocking()?;
        let local = socket.local_addr()?;
        let mut listener = match local.domain() {
            Domain::IPV4 | Domain::IPV6 => Self::tcp(socket)?,
            Domain::UNIX => {
                let path = local
                    .as_pathname()
                    .map(|p| p.to_string_lossy().into_owned());
                Self::unix(socket, path.as_deref().unwrap_or(""))?
            }
            _ => return Err(unsupported()),
        };
        listener.borrowed = Some(Borrowed {
            was_nonblocking,
            pid: std::process::id(),
        });
        Ok(listener)
    }

    /// Accepts a connection (TCP ones without Nagle's delay: small responses
    /// must not wait for it).
    pub fn accept(&self) -> io::Result<(Stream, Peer)> {
        match &self.socket {
            ListenSocket::Tcp(l) => {
                let (stream, peer) = l.accept()?;
                if !self.nodelay_inherited {
                    let _ = stream.set_nodelay(true);
                }
                Ok((Stream::Tcp(stream), Peer::Ip(peer)))
            }
            #[cfg(unix)]
            ListenSocket::Unix(l) => {
                let (stream, _) = l.accept()?;
                Ok((Stream::Unix(stream), Peer::Local))
            }
        }
    }
}

#[cfg(unix)]
impl Drop for Listener {
    fn drop(&mut self) {
        let Some(b) = &self.borrowed else { return };
        if b.pid == std::process::id() {
            let _ = self.socket_ref().set_nonblocking(b.was_nonblocking);
        }
    }
}

#[cfg(unix)]
impl Listener {
    fn socket_ref(&self) -> socket2::SockRef<'_> {
        each!(ListenSocket, &self.socket, l => socket2::SockRef::from(l))
    }
}

delegate_source!(ListenSocket);

/// Removes the socket file at `path` when no server listens on it any more
/// (connecting is refused). Anything else is left for `bind` to report: a
/// live server's socket (its clients keep it), or a file that is no socket.
#[cfg(unix)]
fn remove_stale(path: &str, addr: &socket2::SockAddr) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {}
        _ => return Ok(()),
    }
    let probe = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    // Non-blocking: a live server with a full backlog must not hang us.
    probe.set_nonblocking(true)?;
    match probe.connect(addr) {
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

/// Whether `listen()` was called on the socket already. Where the OS cannot
/// say, it is assumed not: listening again only sets the backlog.
#[cfg(unix)]
fn is_listening(socket: &Socket) -> io::Result<bool> {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    return socket.is_listener();
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    {
        let _ = socket;
        Ok(false)
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use socket2::SockRef;
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    use std::os::unix::net::{UnixListener as StdUnixListener, UnixStream as StdUnixStream};

    fn temp_path(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("maitre-listener-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        path
    }

    #[test]
    fn accepted_tcp_sockets_have_nodelay() {
        for l in [
            Listener::bind("127.0.0.1:0".parse().unwrap(), 8).unwrap(),
            Listener::bind_group("127.0.0.1:0".parse().unwrap(), 8, 1)
                .unwrap()
                .remove(0),
        ] {
            let addr = l.socket_ref().local_addr().unwrap().as_socket().unwrap();
            let _client = std::net::TcpStream::connect(addr).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(10));
            let (Stream::Tcp(s), _) = l.accept().unwrap() else {
                panic!("a TCP listener accepted a non-TCP stream");
            };
            assert!(
                s.nodelay().unwrap(),
                "small responses must not wait for Nagle"
            );
        }
    }

    #[test]
    fn binds_a_unix_socket_with_the_permissions_asked() {
        let path = temp_path("perms.sock");
        let p = path.to_str().unwrap();
        let l = Listener::bind_unix(p, 0o640, 8).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
        assert_eq!(l.server_port, ServerPort::Unix(Arc::from(p)));
        let _client = StdUnixStream::connect(&path).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(10));
        let (_, peer) = l.accept().unwrap();
        assert_eq!(peer, Peer::Local);
    }

    #[test]
    fn a_stale_socket_file_is_replaced() {
        let path = temp_path("stale.sock");
        drop(StdUnixListener::bind(&path).unwrap()); // its server died: the file stays
        assert!(path.exists());
        let _l = Listener::bind_unix(path.to_str().unwrap(), 0o600, 8).unwrap();
        StdUnixStream::connect(&path).expect("the new socket listens");
    }

    #[test]
    fn a_live_servers_socket_is_refused_and_kept() {
        let path = temp_path("live.sock");
        let live = StdUnixListener::bind(&path).unwrap();
        let e = Listener::bind_unix(path.to_str().unwrap(), 0o600, 8)
            .err()
            .expect("refused");
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert!(e.raw_os_error().is_some());
        let _client = StdUnixStream::connect(&path).expect("still the live server's");
        live.set_nonblocking(true).unwrap();
        // The probe's connection and this one both reach the live server.
        assert!(live.accept().is_ok());
    }

    #[test]
    fn a_path_that_is_no_socket_is_left_alone() {
        let path = temp_path("file.sock");
        std::fs::write(&path, b"data").unwrap();
        let e = Listener::bind_unix(path.to_str().unwrap(), 0o600, 8)
            .err()
            .expect("refused");
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_reuseport_group_shares_one_port_and_refuses_a_taken_one() {
        let group = Listener::bind_group("127.0.0.1:0".parse().unwrap(), 8, 3).unwrap();
        let ports: Vec<_> = group.iter().map(|l| l.server_port.clone()).collect();
        assert!(ports
            .iter()
            .all(|p| *p == ports[0] && *p != ServerPort::Tcp(0)));
        assert_eq!(
            group.iter().map(|l| l.worker).collect::<Vec<_>>(),
            [Some(0), Some(1), Some(2)]
        );
        // Taken, by this group too: a second group must not join it.
        let ServerPort::Tcp(port) = ports[0] else {
            panic!("a TCP port")
        };
        let again = Listener::bind_group(SocketAddr::from(([127, 0, 0, 1], port)), 8, 2);
        assert_eq!(
            again.err().map(|e| e.kind()),
            Some(io::ErrorKind::AddrInUse)
        );
    }

    #[test]
    fn an_adopted_socket_keeps_its_descriptor_and_blocking_mode() {
        use std::os::fd::AsFd;
        let path = temp_path("adopted.sock");
        let mine = StdUnixListener::bind(&path).unwrap();
        let l = Listener::adopt(mine.as_fd(), 8).unwrap();
        assert_eq!(l.effective.0, "unix");
        assert!(matches!(&l.effective.1, Port::Path(p) if p == path.to_str().unwrap()));
        assert!(SockRef::from(&mine).nonblocking().unwrap());
        drop(l);
        assert!(!SockRef::from(&mine).nonblocking().unwrap());
        let _client = StdUnixStream::connect(&path).unwrap();
        assert!(mine.accept().is_ok(), "the caller's socket still serves");
    }
}
