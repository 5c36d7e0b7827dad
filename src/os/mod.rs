//! What maitre asks of the operating system, each the best way a platform
//! offers with a fallback elsewhere: process and thread settings (malloc,
//! scheduling, dying with the parent on Linux), private anonymous temporary
//! files, sending a file straight to a socket, moving a socket's bytes
//! straight to a file, and enough file descriptors.

pub mod limits;
pub mod malloc;
#[cfg(target_os = "linux")]
pub mod parent;
pub mod sched;
pub mod sendfile;
pub mod splice;
pub mod tempfile;
