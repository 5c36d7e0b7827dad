//! Process and thread settings maitre asks of the operating system, each a
//! measured win on one platform and a no-op elsewhere.

pub mod malloc;
pub mod sched;
