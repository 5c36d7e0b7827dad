//! The engine's view of the options. Python's `maitre.options` owns the table,
//! the defaults and the validation; this only reads the already-checked values.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::access_log::{AccessFormat, COMBINED};
use crate::http::parse::HeadLimits;
use crate::http::proxy::{HeaderSet, ProxyConfig, ProxyHeader, ALL_HEADERS};

/// A `listen` entry: a TCP address, or a Unix socket's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(String),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Vec<ListenAddr>,
    /// Permissions of the Unix socket files maitre makes.
    pub unix_socket_perms: u32,
    pub threads: usize,
    pub backlog: i32,
    pub connection_limit: usize,
    pub channel_timeout: Duration,
    /// How long a client has to send a request head, or to start a body the
    /// app asked for (see `Conn::deadline`).
    pub header_timeout: Duration,
    /// How long a stop waits for requests already received.
    pub graceful_timeout: Duration,
    pub cleanup_interval: Duration,
    pub recv_bytes: usize,
    pub max_request_header_size: usize,
    /// Longest request line (414) and most header fields (431).
    pub max_request_line: usize,
    pub max_request_headers: usize,
    pub max_request_body_size: u64,
    pub inbuf_overflow: usize,
    pub outbuf_overflow: usize,
    pub outbuf_high_watermark: usize,
    pub ident: Option<String>,
    pub expose_tracebacks: bool,
    pub url_scheme: String,
    pub url_prefix: String,
    pub server_name: String,
    /// `trusted_proxy*`, `clear_untrusted_proxy_headers`, `log_untrusted_proxy_headers`.
    pub proxy: ProxyConfig,
    /// Each connection starts with a PROXY protocol header, from a trusted proxy.
    pub proxy_protocol: bool,
    /// Socket errors on connections logged at ERROR (else DEBUG), as waitress.
    pub log_socket_errors: bool,
    /// One of several worker processes (`workers > 1`): `wsgi.multiprocess`.
    pub multiprocess: bool,
    /// Worker processes (1: this process serves).
    pub workers: usize,
    /// Each worker has its own listening socket per TCP address, in one
    /// `SO_REUSEPORT` group (Linux), instead of all sharing one.
    pub reuse_port: bool,
    /// A backlog the kernel clamps is an error rather than a warning.
    pub strict_backlog: bool,
    /// Where the metrics endpoint listens, if anywhere.
    pub metrics: Option<SocketAddr>,
    /// The access log's format, when it is on.
    pub access_log: Option<AccessFormat>,
}

/// Reads one option; `extract` names the option in its error.
fn item<T>(d: &Bound<'_, PyDict>, key: &str) -> PyResult<T>
where
    T: for<'a, 'py> FromPyObject<'a, 'py, Error = PyErr>,
{
    match d.get_item(key)? {
        Some(v) => v
            .extract()
            .map_err(|e| PyValueError::new_err(format!("engine option {key}: {e}"))),
        None => Err(PyValueError::new_err(format!(
            "engine option {key} is missing"
        ))),
    }
}

fn numeric(host: &str, port: u16, option: &str) -> PyResult<SocketAddr> {
    let ip: IpAddr = host.parse().map_err(|_| {
        PyValueError::new_err(format!("{option}: {host:?} is not a numeric IP address"))
    })?;
    Ok(SocketAddr::new(ip, port))
}

impl Config {
    pub fn head_limits(&self) -> HeadLimits {
        HeadLimits {
            header_size: self.max_request_header_size,
            request_line: self.max_request_line,
            headers: self.max_request_headers,
        }
    }

    pub fn from_dict(d: &Bound<'_, PyDict>) -> PyResult<Config> {
        let listen: Vec<(String, Py<PyAny>)> = item(d, "listen")?;
        let listen = listen
            .into_iter()
            .map(|(host, port)| listen_addr(&host, port.bind(d.py())))
            .collect::<PyResult<Vec<_>>>()?;
        let secs =
            |key: &str| -> PyResult<Duration> { Ok(Duration::from_secs(item::<u64>(d, key)?)) };
        Ok(Config {
            listen,
            unix_socket_perms: item(d, "unix_socket_perms")?,
            threads: item(d, "threads")?,
            backlog: item(d, "backlog")?,
            connection_limit: item(d, "connection_limit")?,
            channel_timeout: secs("channel_timeout")?,
            header_timeout: secs("header_timeout")?,
            graceful_timeout: secs("graceful_timeout")?,
            cleanup_interval: secs("cleanup_interval")?.max(Duration::from_millis(100)),
            recv_bytes: item::<usize>(d, "recv_bytes")?.max(1),
            max_request_header_size: item(d, "max_request_header_size")?,
            max_request_line: item(d, "max_request_line")?,
            max_request_headers: item(d, "max_request_headers")?,
            max_request_body_size: item(d, "max_request_body_size")?,
            inbuf_overflow: item(d, "inbuf_overflow")?,
            outbuf_overflow: item(d, "outbuf_overflow")?,
            outbuf_high_watermark: item(d, "outbuf_high_watermark")?,
            ident: item(d, "ident")?,
            expose_tracebacks: item(d, "expose_tracebacks")?,
            url_scheme: item(d, "url_scheme")?,
            url_prefix: item(d, "url_prefix")?,
            server_name: item(d, "server_name")?,
            multiprocess: item::<usize>(d, "workers")? > 1,
            workers: item(d, "workers")?,
            reuse_port: item(d, "reuse_port")?,
            strict_backlog: item(d, "strict_backlog")?,
            metrics: item::<Option<(String, u16)>>(d, "metrics")?
                .map(|(host, port)| numeric(&host, port, "metrics"))
                .transpose()?,
            access_log: access_log(d)?,
            proxy: proxy_config(d)?,
            proxy_protocol: item(d, "proxy_protocol")?,
            log_socket_errors: item(d, "log_socket_errors")?,
        })
    }
}

/// `(ip, port)`, or `("unix", path)` as `effective_listen` shows it too.
fn listen_addr(host: &str, port: &Bound<'_, PyAny>) -> PyResult<ListenAddr> {
    if host == "unix" {
        if !cfg!(unix) {
            return Err(PyValueError::new_err(
                "unix sockets (unix_socket, unix: in listen) need a Unix system",
            ));
        }
        return Ok(ListenAddr::Unix(port.extract().map_err(|e| {
            PyValueError::new_err(format!("listen: a unix socket path: {e}"))
        })?));
    }
    let ip: IpAddr = host.parse().map_err(|_| {
        PyValueError::new_err(format!("listen: {host:?} is not a numeric IP address"))
    })?;
    let port: u16 = port
        .extract()
        .map_err(|e| PyValueError::new_err(format!("listen: port of {host}: {e}")))?;
    Ok(ListenAddr::Tcp(SocketAddr::new(ip, port)))
}

fn access_log(d: &Bound<'_, PyDict>) -> PyResult<Option<AccessFormat>> {
    // Checked even when off, so a typo shows before the log is turned on.
    let format: Option<String> = item(d, "access_log_format")?;
    let format = AccessFormat::parse(format.as_deref().unwrap_or(COMBINED))
        .map_err(PyValueError::new_err)?;
    Ok(item::<bool>(d, "access_log")?.then_some(format))
}

fn proxy_config(d: &Bound<'_, PyDict>) -> PyResult<ProxyConfig> {
    let names: HashSet<String> = item(d, "trusted_proxy_headers")?;
    let mut trusted = HeaderSet::EMPTY;
    for name in &names {
        let known = ALL_HEADERS.into_iter().find(|h| h.option_name() == name);
        let h: ProxyHeader = known.ok_or_else(|| {
            PyValueError::new_err(format!("trusted_proxy_headers: unknown header {name:?}"))
        })?;
        trusted.insert(h);
    }
    Ok(ProxyConfig {
        trusted_proxy: item(d, "trusted_proxy")?,
        count: item::<Option<usize>>(d, "trusted_proxy_count")?.unwrap_or(1),
        trusted,
        clear_untrusted: item(d, "clear_untrusted_proxy_headers")?,
        log_untrusted: item(d, "log_untrusted_proxy_headers")?,
    })
}
