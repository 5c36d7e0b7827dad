"""Start one in-process WSGI server on an app from bench/apps.py (run by bench/run.py).

    python launch.py SERVER --app NAME --port N [--threads 4]

SERVER is one of LAUNCHERS below. Servers with their own command line
(granian, gunicorn, ...) are started by run.py directly and are not here.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import apps  # noqa: E402


def maitre(app, host, port, threads):
    from maitre import serve

    serve(app, host=host, port=port, threads=threads, _quiet=True)


def waitress(app, host, port, threads):
    from waitress import serve

    serve(app, host=host, port=port, threads=threads, _quiet=True)


LAUNCHERS = {"maitre": maitre, "waitress": waitress}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("server", choices=sorted(LAUNCHERS))
    p.add_argument("--app", default="app", help="attribute of bench/apps.py")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--threads", type=int, default=4)
    a = p.parse_args()
    LAUNCHERS[a.server](getattr(apps, a.app), a.host, a.port, a.threads)


if __name__ == "__main__":
    main()
