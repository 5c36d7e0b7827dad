//! Process and thread settings maitre asks of the operating system: each a
//! measured win on one platform and a no-op elsewhere, or (parent) Linux only.

pub mod malloc;
#[cfg(target_os = "linux")]
pub mod parent;
pub mod sched;
