"""Start one in-process WSGI server on an app from bench/apps.py (run by bench/run.py).

    python launch.py SERVER --app NAME --port N [--threads 4] [--connection-limit N]
                     [--backlog N] [--workers N [--reuse-port]] [--unix-socket PATH] [--proxy protocol|xff]
                     [--metrics-port N] [--access-log]

SERVER is one of LAUNCHERS below. Servers with their own command line
(granian, gunicorn, ...) are started by run.py directly and are not here.
--connection-limit / --backlog are only passed for cases that need many connections
(idle5000); otherwise every server runs with its defaults. --unix-socket (the unix case)
listens there instead of on the port; --proxy (the proxy case) reads the client's address
from HAProxy on 127.0.0.1: the PROXY protocol (maitre only) or X-Forwarded-For.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import apps  # noqa: E402
from rlimit import raise_nofile


def fronted(a):
    """The options of the unix and proxy cases, the same names in maitre and waitress."""
    if a.unix_socket:
        return {"unix_socket": a.unix_socket}
    if a.proxy == "protocol":
        return {"proxy_protocol": True, "trusted_proxy": "127.0.0.1"}
    if a.proxy == "xff":
        return {"trusted_proxy": "127.0.0.1", "trusted_proxy_headers": "x-forwarded-for"}
    return {}


def maitre(app, a):
    from maitre import serve

    kw = fronted(a)
    if a.connection_limit:
        kw["connection_limit"] = a.connection_limit
    if a.backlog:
        kw["backlog"] = a.backlog
    if a.workers:
        # Hook for maitre's `workers=N` (N processes sharing the listening socket): run.py
        # only passes --workers once `maitre.Options(workers=2)` is accepted.
        kw["workers"] = a.workers
        if a.reuse_port:
            kw["reuse_port"] = True  # a listening socket per worker (SO_REUSEPORT)
    if a.metrics_port:
        kw["metrics"] = f"{a.host}:{a.metrics_port}"
    if a.access_log:
        import logging

        # The whole Python side of a line (record, handler, formatter, write), with
        # nothing piling up on disk.
        handler = logging.FileHandler(os.devnull)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access = logging.getLogger("maitre.access")
        access.addHandler(handler)
        access.setLevel(logging.INFO)
        access.propagate = False
        kw["access_log"] = True
    if not a.unix_socket:
        kw.update(host=a.host, port=a.port)
    serve(app, threads=a.threads, _quiet=True, **kw)


def waitress(app, a):
    from waitress import serve

    kw = fronted(a)
    if a.connection_limit:
        kw["connection_limit"] = a.connection_limit
        # waitress's loop uses select() unless told otherwise, and select() cannot watch a
        # descriptor above FD_SETSIZE (1024): with thousands of connections it needs poll().
        kw["asyncore_use_poll"] = True
    if a.backlog:
        kw["backlog"] = a.backlog
    if not a.unix_socket:
        kw.update(host=a.host, port=a.port)
    serve(app, threads=a.threads, _quiet=True, **kw)


def pyruvate(app, a):
    import pyruvate

    # pyruvate has no connection limit or backlog option. Keep-alive is off by default
    # (max_reuse_count=0: every response closes its connection) and that is how it runs here:
    # with max_reuse_count > 0, pyruvate 1.6.1 never answers the second request on a
    # connection (see bench/README.md).
    pyruvate.serve(app, f"{a.host}:{a.port}", a.threads)


LAUNCHERS = {"maitre": maitre, "waitress": waitress, "pyruvate": pyruvate}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("server", choices=sorted(LAUNCHERS))
    p.add_argument("--app", default="app", help="attribute of bench/apps.py")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--connection-limit", type=int, default=0)
    p.add_argument("--backlog", type=int, default=0)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--reuse-port", action="store_true")
    p.add_argument("--metrics-port", type=int, default=0)
    p.add_argument("--access-log", action="store_true")
    p.add_argument("--unix-socket", default="")
    p.add_argument("--proxy", choices=["protocol", "xff"])
    a = p.parse_args()
    raise_nofile()
    LAUNCHERS[a.server](getattr(apps, a.app), a)


if __name__ == "__main__":
    main()
