//! One request in a worker thread: build the environ, call the app, send what
//! it returns, always call `close()`, and turn failures into the right answer.

use std::sync::Arc;
use std::time::Instant;

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{IntoPyDict, PyBytes, PyDict, PyList, PyTuple};
use smallvec::SmallVec;

use crate::access_log::{AccessFormat, Entry, Request};
use crate::handoff::{
    Completion, Job, JobBody, Kind, OutputLimits, Pieces, RequestId, WorkerShared,
};
use crate::http::parse::{BodyFraming, RequestHead};
use crate::http::response::{simple_response, RequestInfo};
use crate::http::RequestError;
use crate::stats::{decr, incr};

use super::environ::{self, Built, RequestMeta};
use super::file_wrapper::FileWrapper;
use super::input::InputStream;
use super::start_response::StartResponse;
use super::WsgiContext;

pub struct Task<'a, 'py> {
    py: Python<'py>,
    ctx: &'a WsgiContext,
    shared: &'a WorkerShared,
    job: Job,
    /// When a thread took the job (the end of its queue wait).
    taken_at: Instant,
}

impl<'a, 'py> Task<'a, 'py> {
    pub fn new(
        py: Python<'py>,
        ctx: &'a WsgiContext,
        shared: &'a WorkerShared,
        job: Job,
        taken_at: Instant,
    ) -> Self {
        Task {
            py,
            ctx,
            shared,
            job,
            taken_at,
        }
    }

    pub fn run(self, app: &Bound<'py, PyAny>) {
        let Task {
            py,
            ctx,
            shared,
            job,
            taken_at,
        } = self;
        let Job {
            req: req_id,
            shared: conn_shared,
            head,
            body,
            peer,
            server_port,
            keep_alive,
            queued_at,
        } = job;
        let access = shared.cfg.access_log.as_ref();
        let chunked = head.framing == BodyFraming::Chunked;
        // The app sees a de-chunked body, with its real length.
        let (input, content_length) = match body {
            // No body: the worker's one empty stream, which no read can change.
            JobBody::Ready(reader) if reader.remaining() == 0 => {
                (Ok(ctx.empty_input.bind(py).clone()), chunked.then_some(0))
            }
            JobBody::Ready(reader) => {
                let length = chunked.then_some(reader.remaining());
                (Bound::new(py, InputStream::ready(reader)), length)
            }
            JobBody::Deferred => (
                Bound::new(
                    py,
                    InputStream::deferred(req_id, Arc::clone(&conn_shared), shared.handle.clone()),
                ),
                None,
            ),
        };
        let responder = StartResponse::new(
            req_id,
            Arc::clone(&conn_shared),
            shared.handle.clone(),
            RequestInfo {
                version: head.version,
                is_head: head.is_head(),
                keep_alive,
            },
            ctx.ident.clone(),
            OutputLimits::new(&shared.cfg),
            access.is_some_and(AccessFormat::wants_response_headers),
        );
        let (responder, input) = match (Bound::new(py, responder), input) {
            (Ok(r), Ok(i)) => (r, i),
            (Err(e), _) | (_, Err(e)) => {
                log::error!(target: "maitre", "could not set up a request: {e}");
                shared.handle.send(Completion {
                    req: req_id,
                    data: Pieces::new(),
                    kind: Kind::Abort,
                });
                return;
            }
        };
        let meta = RequestMeta {
            head: &head,
            peer,
            server_port,
            content_length,
        };
        incr(&shared.stats.wk.in_app);
        // The address the log shows: REMOTE_ADDR as built, a trusted proxy's
        // forwarded one included, read before the app can change it.
        let mut remote = None;
        let outcome =
            environ::build(py, ctx, &shared.cfg, &meta, &input).and_then(|built| match built {
                Built::Environ(env) => {
                    if access.is_some() {
                        remote = env
                            .get_item(intern!(py, "REMOTE_ADDR"))
                            .ok()
                            .flatten()
                            .and_then(|a| a.extract::<String>().ok());
                    }
                    call_app(py, app, env, &responder)
                }
                Built::BadProxyHeader(header) => environ::bad_proxy_header(py, &responder, header),
            });
        decr(&shared.stats.wk.in_app);
        let app_time = access.map(|_| taken_at.elapsed());
        if let Err(err) = outcome {
            incr(&shared.stats.wk.app_errors);
            let failed = Failed {
                req: req_id,
                head: &head,
                err,
            };
            fail(py, ctx, shared, failed, &responder, &input);
        }
        let rsp = responder.try_borrow().ok();
        let status = rsp.as_ref().map_or(0, |r| r.status());
        let total = queued_at.elapsed();
        shared.stats.responded(status, total);
        // A level that filters the line out (pyo3-log's cached check) skips formatting it.
        // Asked only with an access log: the check's string searches cost 1,700
        // instructions, a third of building the environ.
        let logged = || log::log_enabled!(target: "maitre::access", log::Level::Info);
        if let (Some(format), Some(app_time), true) =
            (access, app_time, access.is_some() && logged())
        {
            // No environ (the request failed before it): the peer, as REMOTE_ADDR shows it.
            let remote = remote.unwrap_or_else(|| peer.remote_addr());
            let line = format.line(&Entry {
                remote: &remote,
                request: Request::Head(&head),
                status,
                body_bytes: rsp.as_ref().map_or(0, |r| r.body_bytes()),
                queue_wait: taken_at.saturating_duration_since(queued_at),
                app_time,
                total,
                response_headers: rsp.as_ref().map_or(&[], |r| r.logged_headers()),
            });
            log::info!(target: "maitre::access", "{line}");
        }
    }
}

/// Calls the app and sends its response; `close()` is called whatever happens.
fn call_app<'py>(
    py: Python<'py>,
    app: &Bound<'py, PyAny>,
    environ: Bound<'py, PyDict>,
    responder: &Bound<'py, StartResponse>,
) -> PyResult<()> {
    let result = app.call1((environ, responder))?;
    let sent = send_result(py, &result, responder);
    // Plain lists and tuples have no close(); asking would build an
    // AttributeError per request.
    if result.is_exact_instance_of::<PyList>() || result.is_exact_instance_of::<PyTuple>() {
        return sent;
    }
    let closed = match result.getattr_opt(intern!(py, "close")) {
        Ok(Some(close)) => close.call0().map(drop),
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    sent.and(closed)
}

fn as_bytes<'a, 'py>(item: &'a Bound<'py, PyAny>) -> PyResult<&'a Bound<'py, PyBytes>> {
    item.cast::<PyBytes>().map_err(|_| {
        PyTypeError::new_err(format!(
            "the application must return bytes, not {}",
            item.get_type()
                .name()
                .map_or_else(|_| "?".to_owned(), |n| n.to_string())
        ))
    })
}

fn send_result<'py>(
    py: Python<'py>,
    result: &Bound<'py, PyAny>,
    responder: &Bound<'py, StartResponse>,
) -> PyResult<()> {
    // A list or tuple is already complete: send it whole, with its length.
    // Usually one or two items: kept inline, no allocation.
    type Whole<'py> = SmallVec<[Bound<'py, PyBytes>; 4]>;
    if let Ok(wrapper) = result.cast_exact::<FileWrapper>() {
        if let Some((file, offset, available)) = wrapper.borrow().regular_file(py) {
            return borrow(responder)?.send_file(file, offset, available);
        }
    }
    let whole: Option<PyResult<Whole<'py>>> = if let Ok(list) = result.cast_exact::<PyList>() {
        Some(list.iter().map(|i| as_bytes(&i).cloned()).collect())
    } else if let Ok(tuple) = result.cast_exact::<PyTuple>() {
        Some(tuple.iter().map(|i| as_bytes(&i).cloned()).collect())
    } else {
        None
    };
    if let Some(chunks) = whole {
        return borrow(responder)?.send_all(&chunks?);
    }
    for item in result.try_iter()? {
        let item = item?;
        let sent = borrow(responder)?.send_chunk(py, as_bytes(&item)?)?;
        if sent.is_err() {
            return Ok(()); // the client went away; stop asking the app for more
        }
    }
    borrow(responder)?.finish()
}

/// The response state, unless a thread of the app's is inside `write()`
/// (blocked on a slow client): sending from two threads at once is an app
/// error, not a reason to panic.
fn borrow<'py>(responder: &Bound<'py, StartResponse>) -> PyResult<PyRefMut<'py, StartResponse>> {
    responder.try_borrow_mut().map_err(|_| {
        PyRuntimeError::new_err(
            "the response is being written by another thread (write() is in use)",
        )
    })
}

/// An app failure, and the request it happened in.
struct Failed<'a> {
    req: RequestId,
    head: &'a RequestHead,
    err: PyErr,
}

/// The app (or its response) failed: a 500 if the head has not gone out
/// (or the status of the body error the app ran into), else break off; after
/// a complete response, only the log hears of it.
fn fail<'py>(
    py: Python<'py>,
    ctx: &WsgiContext,
    shared: &WorkerShared,
    failed: Failed<'_>,
    responder: &Bound<'py, StartResponse>,
    input: &Bound<'py, InputStream>,
) {
    let Failed { req, head, err } = failed;
    let target = String::from_utf8_lossy(head.target()).into_owned();
    let rsp = responder.try_borrow_mut().ok();
    if rsp.as_ref().is_some_and(|r| r.client_gone()) {
        log::debug!(target: "maitre", "client went away during {target}: {err}");
        if let Some(mut rsp) = rsp {
            rsp.abort();
        }
        return;
    }
    let failure = input.try_borrow().ok().and_then(|i| i.failure().cloned());
    let error = match failure {
        Some(
            e @ (RequestError::BadRequest(_) | RequestError::BodyTooLarge | RequestError::Stopping),
        ) => e,
        _ => {
            let exc = err.clone_ref(py).into_value(py);
            let logged = [("exc_info", exc)].into_py_dict(py).and_then(|kwargs| {
                ctx.logger.bind(py).call_method(
                    intern!(py, "error"),
                    ("Exception while serving %s", &target),
                    Some(&kwargs),
                )
            });
            if let Err(e) = logged {
                log::error!(target: "maitre", "Exception while serving {target}: {err} ({e})");
            }
            RequestError::Internal("")
        }
    };
    let Some(mut rsp) = rsp else {
        // Another thread of the app's holds the response: break it off from
        // here; whatever that thread sends later is for an ended request.
        shared.handle.send(Completion {
            req,
            data: Pieces::new(),
            kind: Kind::Abort,
        });
        return;
    };
    if rsp.finished() {
        return;
    }
    if rsp.head_sent() {
        rsp.abort();
        return;
    }
    let (code, reason) = error.status();
    let detail = match &error {
        RequestError::Internal(_) if shared.cfg.expose_tracebacks => traceback_text(py, ctx, &err),
        RequestError::Internal(_) => {
            "The server encountered an unexpected internal server error".to_owned()
        }
        e => e.detail().to_owned(),
    };
    rsp.replace(
        code,
        simple_response(head.version, code, reason, &detail, ctx.ident.as_deref()),
    );
}

fn traceback_text(py: Python<'_>, ctx: &WsgiContext, err: &PyErr) -> String {
    let exc = err.clone_ref(py).into_value(py).into_bound(py);
    ctx.format_exception
        .bind(py)
        .call1((exc.get_type(), &exc, exc.getattr("__traceback__").ok()))
        .and_then(|lines| lines.extract::<Vec<String>>())
        .map(|lines| lines.concat())
        .unwrap_or_else(|_| err.to_string())
}
