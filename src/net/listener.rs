use std::io;
use std::net::SocketAddr;

use mio::net::TcpListener;
use socket2::{Domain, Protocol, Socket, Type};

/// One bound, listening TCP socket.
pub struct Listener {
    pub socket: TcpListener,
    pub addr: SocketAddr,
}

impl Listener {
    /// Binds `addr` and listens with `backlog`, as waitress does: address reuse
    /// on Unix (a restart must not wait out TIME_WAIT), v6 sockets v6-only so
    /// `[::]` and `0.0.0.0` can both be bound on one port.
    pub fn bind(addr: SocketAddr, backlog: i32) -> io::Result<Listener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        #[cfg(unix)]
        socket.set_reuse_address(true)?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.bind(&addr.into())?;
        socket.listen(backlog)?;
        socket.set_nonblocking(true)?;
        let std_listener: std::net::TcpListener = socket.into();
        let addr = std_listener.local_addr()?;
        Ok(Listener {
            socket: TcpListener::from_std(std_listener),
            addr,
        })
    }
}
