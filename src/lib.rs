//! maitre's engine. The Python module `maitre._maitre` exposes `Engine` (and
//! the WSGI helper classes); everything else is internal.

pub mod access_log;
pub mod config;
pub mod conn;
pub mod engine;
pub mod event_loop;
pub mod handoff;
pub mod http;
pub mod net;
pub mod os;
pub mod stats;
pub mod workers;
pub mod wsgi;

use std::sync::OnceLock;

use pyo3::prelude::*;

static LOG_RESET: OnceLock<pyo3_log::ResetHandle> = OnceLock::new();

/// pyo3-log caches Python logger levels; a new server picks up the logging
/// configuration the application has set since import.
pub fn refresh_logging() {
    if let Some(handle) = LOG_RESET.get() {
        handle.reset();
    }
}

#[pymodule]
#[pyo3(name = "_maitre")]
fn maitre_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    if let Ok(handle) = pyo3_log::try_init() {
        let _ = LOG_RESET.set(handle);
    }
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<engine::Engine>()?;
    m.add_class::<engine::Listeners>()?;
    m.add_class::<wsgi::file_wrapper::FileWrapper>()?;
    m.add_class::<wsgi::input::InputStream>()?;
    m.add_class::<wsgi::start_response::StartResponse>()?;
    #[cfg(target_os = "linux")]
    m.add_function(wrap_pyfunction!(os::parent::set_parent_death_signal, m)?)?;
    Ok(())
}
