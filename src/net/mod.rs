//! Sockets: listening ones bound and `listen()`ed by socket2 so the backlog is
//! ours to choose (mio's own bind hard-codes it), then handed to mio; the
//! stream of a connection, TCP or Unix; the addresses the environ shows; and
//! how a connection's socket errors are reported.

/// Runs `$body` with `$s` bound to the socket inside `$self`, an enum `$ty`
/// with a `Tcp` and (on Unix) a `Unix` variant: what a listener and a stream
/// do is the same call on either kind.
macro_rules! each {
    ($ty:ident, $self:expr, $s:ident => $body:expr) => {
        match $self {
            $ty::Tcp($s) => $body,
            #[cfg(unix)]
            $ty::Unix($s) => $body,
        }
    };
}

/// `mio::event::Source` for such an enum: registration goes to the socket inside.
macro_rules! delegate_source {
    ($ty:ident) => {
        impl mio::event::Source for $ty {
            fn register(
                &mut self,
                registry: &mio::Registry,
                token: mio::Token,
                interests: mio::Interest,
            ) -> std::io::Result<()> {
                each!($ty, self, s => s.register(registry, token, interests))
            }

            fn reregister(
                &mut self,
                registry: &mio::Registry,
                token: mio::Token,
                interests: mio::Interest,
            ) -> std::io::Result<()> {
                each!($ty, self, s => s.reregister(registry, token, interests))
            }

            fn deregister(&mut self, registry: &mio::Registry) -> std::io::Result<()> {
                each!($ty, self, s => s.deregister(registry))
            }
        }
    };
}

pub mod listener;
pub mod stream;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

/// Who is at the other end of a connection (`REMOTE_ADDR`, `REMOTE_PORT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Ip(SocketAddr),
    /// A Unix socket's client, which has no address: waitress shows
    /// `localhost` and the port `None`.
    Local,
}

impl Peer {
    /// A TCP client on a loopback address (IPv4-mapped ones included).
    pub fn is_loopback(&self) -> bool {
        match self {
            Peer::Ip(addr) => addr.ip().to_canonical().is_loopback(),
            Peer::Local => false,
        }
    }

    /// `REMOTE_ADDR` as text: the IP, or `localhost` for a unix socket's client.
    pub fn remote_addr(&self) -> String {
        match self {
            Peer::Ip(addr) => addr.ip().to_string(),
            Peer::Local => "localhost".to_owned(),
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Ip(addr) => addr.fmt(f),
            Peer::Local => f.write_str("a unix socket client"),
        }
    }
}

/// What a connection arrived at (`SERVER_PORT`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerPort {
    Tcp(u16),
    /// A Unix socket: waitress shows its path.
    Unix(Arc<str>),
}

/// A connection's socket failed. The client going away (a reset, a broken
/// pipe) is no error: waitress closes quietly then, and logs at INFO only that
/// a client left while its request was being served (`serving` names it),
/// here only if `log_socket_errors` (the option) asks. Any other failure is
/// logged at ERROR with `log_socket_errors`, as waitress logs its "Socket
/// error", else at DEBUG.
pub fn socket_error(
    log_socket_errors: bool,
    doing: &str,
    peer: Peer,
    e: &io::Error,
    serving: Option<&str>,
) {
    if is_disconnect(e) {
        match serving {
            Some(request) if log_socket_errors => {
                log::info!(target: "maitre", "Client disconnected while serving {request}");
            }
            _ => log::debug!(target: "maitre", "{peer} disconnected ({doing} it: {e})"),
        }
    } else if log_socket_errors {
        log::error!(target: "maitre", "Socket error {doing} {peer}: {e}");
    } else {
        log::debug!(target: "maitre", "Socket error {doing} {peer}: {e}");
    }
}

/// The errors waitress's `_DISCONNECTED` treats as the peer having gone.
fn is_disconnect(e: &io::Error) -> bool {
    const ESHUTDOWN: i32 = 108;
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::NotConnected
    ) || (cfg!(target_os = "linux") && e.raw_os_error() == Some(ESHUTDOWN))
}

#[cfg(test)]
mod tests {
    use super::Peer;

    #[test]
    fn loopback_peers_are_told_apart() {
        let peer = |s: &str| Peer::Ip(s.parse().unwrap());
        for loopback in [
            "127.0.0.1:1",
            "127.9.8.7:1",
            "[::1]:1",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert!(peer(loopback).is_loopback(), "{loopback}");
        }
        for other in ["192.0.2.2:1", "[::ffff:10.0.0.1]:1", "[2001:db8::1]:1"] {
            assert!(!peer(other).is_loopback(), "{other}");
        }
        assert!(
            !Peer::Local.is_loopback(),
            "a Unix socket's client keeps sendfile"
        );
    }
}
