//! Listening sockets: bound and `listen()`ed by socket2 so the backlog is ours
//! to choose (mio's own bind hard-codes it), then handed to mio. And how a
//! connection's socket errors are reported.

pub mod listener;

use std::io;
use std::net::SocketAddr;

use crate::config::Config;

/// A connection's socket failed (a reset, a broken pipe): logged at ERROR with
/// `log_socket_errors`, as waitress logs its "Socket error", else at DEBUG.
pub fn socket_error(cfg: &Config, doing: &str, peer: SocketAddr, e: &io::Error) {
    if cfg.log_socket_errors {
        log::error!(target: "maitre", "Socket error {doing} {peer}: {e}");
    } else {
        log::debug!(target: "maitre", "Socket error {doing} {peer}: {e}");
    }
}
