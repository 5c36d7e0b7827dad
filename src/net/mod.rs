//! Listening sockets: bound and `listen()`ed by socket2 so the backlog is ours
//! to choose (mio's own bind hard-codes it), then handed to mio.

pub mod listener;
