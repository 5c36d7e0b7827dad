#!/usr/bin/env python3
"""How `workers=N` spreads connections and requests over its workers, with the shared
accept queue and with `reuse_port=True`: the per-worker numbers of the parent's stats().

    python bench/balance.py                          # workers=2, wrk -c50 -d5s, both modes
    python bench/balance.py --workers 16 --connections 512 --wrk-threads 8 \\
        --server-cpus 0-15 --client-cpus 16-31

For each mode: start maitre (bench/apps.py's plaintext app) in a child process, warm up
with wrk for 1 s, read stats(), run wrk, read stats() again, and print each worker's
share of the connections accepted and the requests served during the measured run, and
wrk's req/s. wrk opens its connections at the start and keeps them, so the connection
split is decided in the first milliseconds and the request split follows from it;
--close opens one per request instead.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import textwrap
from typing import List, Optional

BENCH = os.path.dirname(os.path.abspath(__file__))

# Serves apps.plaintext; prints its port, then answers each line on stdin with stats().
SERVER = textwrap.dedent(
    """
    import json, sys, threading
    sys.path.insert(0, sys.argv[1])
    import apps, maitre

    # reuse_port only when on: the shared-queue mode also runs on a maitre without it.
    extra = {"reuse_port": True} if sys.argv[3] == "1" else {}
    server = maitre.create_server(apps.plaintext, listen="127.0.0.1:0", threads=4,
                                  workers=int(sys.argv[2]), **extra)
    print(server.effective_port, flush=True)

    def answer():
        for _ in sys.stdin:
            print(json.dumps(server.stats()), flush=True)

    threading.Thread(target=answer, daemon=True).start()
    server.run()
    """
)


def pinned(cpus: Optional[str], argv: List[str]) -> List[str]:
    return ["taskset", "-c", cpus, *argv] if cpus else argv


class Server:
    def __init__(self, workers: int, reuse_port: bool, cpus: Optional[str]) -> None:
        self.proc = subprocess.Popen(
            pinned(cpus, [sys.executable, "-c", SERVER, BENCH, str(workers),
                          "1" if reuse_port else "0"]),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline())
        self.workers = workers

    def stats(self) -> dict:
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def per_worker(self) -> dict:
        """slot -> (connections accepted, requests), once every worker counts."""
        while True:
            workers = self.stats()["workers"]
            if len(workers) == self.workers:
                return {w["worker"]: (w["connections"]["accepted"], w["requests"]["total"])
                        for w in workers}

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def wrk(port: int, a: argparse.Namespace, seconds: int) -> float:
    out = subprocess.run(
        pinned(a.client_cpus, ["wrk", f"-t{a.wrk_threads}", f"-c{a.connections}",
                               f"-d{seconds}s", *(["-H", "Connection: close"] if a.close else []),
                               f"http://127.0.0.1:{port}/"]),
        capture_output=True, text=True, check=True).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(found.group(1)) if found else 0.0


def measure(a: argparse.Namespace, reuse_port: bool) -> None:
    server = Server(a.workers, reuse_port, a.server_cpus)
    try:
        wrk(server.port, a, 1)  # warm-up: every worker is up and has run the app
        before = server.per_worker()
        rps = wrk(server.port, a, a.duration)
        after = server.per_worker()
    finally:
        server.stop()
    conns = {w: after[w][0] - before[w][0] for w in after}
    reqs = {w: after[w][1] - before[w][1] for w in after}
    total_c, total_r = sum(conns.values()) or 1, sum(reqs.values()) or 1
    mode = "reuse_port=True (a queue per worker)" if reuse_port else "shared accept queue"
    print(f"{mode}: {rps:,.0f} req/s")
    for w in sorted(conns):
        print(f"  worker {w}: {conns[w]:5d} connections ({conns[w] / total_c:6.1%}), "
              f"{reqs[w]:9d} requests ({reqs[w] / total_r:6.1%})")
    if min(reqs.values()):
        print(f"  busiest / idlest worker (requests): "
              f"{max(reqs.values()) / min(reqs.values()):.2f}")
    else:
        print("  busiest / idlest worker (requests): a worker served none")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--duration", type=int, default=5, help="seconds of the measured wrk run")
    p.add_argument("--wrk-threads", type=int, default=1)
    p.add_argument("--server-cpus", help="taskset -c list for the server (default: none)")
    p.add_argument("--client-cpus", help="taskset -c list for wrk (default: none)")
    p.add_argument("--close", action="store_true",
                   help="a new connection per request (wrk -H 'Connection: close')")
    p.add_argument("--mode", choices=["shared", "reuseport", "both"], default="both")
    a = p.parse_args()
    if a.mode in ("shared", "both"):
        measure(a, reuse_port=False)
    if a.mode in ("reuseport", "both"):
        measure(a, reuse_port=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
