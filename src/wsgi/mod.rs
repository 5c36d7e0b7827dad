//! The Python side of a request (PEP 3333): the environ, `start_response` and
//! `write`, `wsgi.input`, `wsgi.file_wrapper`, and the task that calls the app.

pub mod environ;
pub mod file_wrapper;
pub mod input;
pub mod start_response;
pub mod task;

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

use crate::config::Config;
use crate::http::body::BodyReader;
use file_wrapper::FileWrapper;

/// Per-worker Python objects made once, not once a request.
pub struct WsgiContext {
    /// The environ keys that never change; each request starts from a copy.
    pub base_environ: Py<PyDict>,
    pub logger: Py<PyAny>,
    pub format_exception: Py<PyAny>,
    pub sys: Py<PyModule>,
    /// The `Server` header value, shared by every response.
    pub ident: Option<Arc<str>>,
    pub header_keys: environ::HeaderKeys,
    pub addr_strings: environ::AddrStrings,
    /// `wsgi.input` of every request without a body: at its end for good, so shared.
    pub empty_input: Py<input::InputStream>,
}

/// Keys a dict of 32 slots holds (two thirds); one more grows it to 64.
const SMALL_TABLE_KEYS: usize = 21;

/// Gives the base environ the table of 64 slots, so that each request's copy
/// (CPython copies a dict's table at its size) takes about 20 headers in place.
/// The base fills a table of 32, so every copy grew at its first header: a new
/// table with every key inserted again, 500 instructions (3% of maitre's own) a
/// request. Spare keys, added then removed, make the table grow once, here.
/// (Removed keys must stay under a third of the entries, or the copy falls back
/// to inserting key by key into a table sized for the keys alone.)
fn grow_table(base: &Bound<'_, PyDict>) -> PyResult<()> {
    let spares: Vec<String> = (base.len()..=SMALL_TABLE_KEYS)
        .map(|i| format!("maitre.spare.{i}"))
        .collect();
    for spare in &spares {
        base.set_item(spare, base.py().None())?;
    }
    for spare in &spares {
        base.del_item(spare)?;
    }
    Ok(())
}

impl WsgiContext {
    pub fn new(py: Python<'_>, cfg: &Config) -> PyResult<Self> {
        let base = PyDict::new(py);
        // Interned keys: `environ::build` sets its keys with `intern!`, the
        // same objects, so each lookup is an identity check.
        let key = |k: &str| PyString::intern(py, k);
        base.set_item(key("wsgi.version"), PyTuple::new(py, [1, 0])?)?;
        base.set_item(key("wsgi.url_scheme"), &cfg.url_scheme)?;
        base.set_item(key("wsgi.multithread"), true)?;
        base.set_item(key("wsgi.multiprocess"), cfg.multiprocess)?;
        base.set_item(key("wsgi.run_once"), false)?;
        base.set_item(key("wsgi.input_terminated"), true)?;
        base.set_item(key("wsgi.file_wrapper"), py.get_type::<FileWrapper>())?;
        base.set_item(key("SERVER_NAME"), &cfg.server_name)?;
        base.set_item(key("SCRIPT_NAME"), &cfg.url_prefix)?;
        if let Some(ident) = &cfg.ident {
            base.set_item(key("SERVER_SOFTWARE"), ident)?;
        }
        // Placeholders for the keys every request sets. A copy of the base
        // then has room for them (CPython clones a dict's table at its size),
        // so a request overwrites in place instead of resizing the dict twice.
        for name in environ::PER_REQUEST_KEYS {
            base.set_item(key(name), py.None())?;
        }
        grow_table(&base)?;
        let logger = py
            .import("logging")?
            .getattr("getLogger")?
            .call1(("maitre",))?;
        Ok(WsgiContext {
            base_environ: base.unbind(),
            logger: logger.unbind(),
            format_exception: py
                .import("traceback")?
                .getattr("format_exception")?
                .unbind(),
            sys: py.import("sys")?.unbind(),
            ident: cfg.ident.as_deref().map(Arc::from),
            header_keys: environ::HeaderKeys::new(py),
            addr_strings: environ::AddrStrings::default(),
            empty_input: Py::new(py, input::InputStream::ready(BodyReader::empty()))?,
        })
    }
}
