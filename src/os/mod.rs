//! Process and thread settings maitre asks of the operating system, each a
//! measured win on one platform and a no-op elsewhere; and private anonymous
//! temporary files, made the best way each platform offers.

pub mod malloc;
pub mod sched;
pub mod sendfile;
pub mod tempfile;
