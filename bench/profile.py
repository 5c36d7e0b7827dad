"""Count the instructions maitre spends per request, under callgrind.

    python bench/profile.py                      # plaintext, 3000 requests
    python bench/profile.py --app echo --requests 1000 --top 40
    python bench/profile.py --keep /tmp/cg       # keep the callgrind file for kcachegrind

wrk's numbers on a shared VM move 10-20% between runs; callgrind counts user-space
instructions, which repeat within about 1.5% whatever else the machine does. So an A/B of
two builds is: install one, run this, install the other, run it again.

What it does: starts maitre (the installed one) on an app from bench/apps.py under
`valgrind --tool=callgrind`, waits for it to answer, zeroes the counters (start-up is not
counted), sends --requests requests one after another on one keep-alive connection, dumps
the counters and kills the server. It prints instructions per request for the whole
process (event loop, workers and Python), the functions with the most instructions of their
own, and the allocator calls per request by caller.

Sequential requests make every request its own batch, so hand-off costs that a loaded
server shares between many requests are counted in full; kernel time (the TCP stack) is
not counted at all. Use it to compare builds, not to predict req/s.
"""

import argparse
import collections
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
HOST = "127.0.0.1"

SERVER = """
import sys
sys.path.insert(0, {bench!r})
import apps, maitre
server = maitre.create_server(getattr(apps, {app!r}), host={host!r}, port={port}, threads={threads})
server.run()
"""

ALLOCATORS = {
    "malloc", "free", "realloc", "calloc", "cfree", "__libc_malloc", "__libc_free",
    "_PyObject_Malloc", "_PyObject_Free", "PyObject_Malloc", "PyObject_Free",
    "PyMem_Malloc", "PyMem_Free", "PyMem_RawMalloc", "PyMem_RawFree",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def request_for(app: str, port: int) -> bytes:
    host = f"Host: {HOST}:{port}\r\n"
    if app == "echo":
        body = b"x" * 65536
        return (f"POST / HTTP/1.1\r\n{host}Content-Length: {len(body)}\r\n\r\n").encode() + body
    return f"GET / HTTP/1.1\r\n{host}\r\n".encode()


def read_response(sock: socket.socket) -> None:
    """Reads one response with a Content-Length (every app in apps.py sets it)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        body += chunk


def wait_until_serving(port: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((HOST, port), timeout=30) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                s.recv(1)
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def self_costs(path: str):
    """Per function: instructions of its own, and allocator calls and their cost by caller."""
    own = collections.Counter()
    alloc_cost = collections.Counter()
    alloc_calls = collections.Counter()
    fn = cfn = None
    call_line = False
    with open(path) as f:
        for line in f:
            if line.startswith("fn="):
                fn = line[3:].strip()
            elif line.startswith("cfn="):
                cfn = line[4:].strip()
            elif line.startswith("calls="):
                call_line = True
                if cfn in ALLOCATORS and fn not in ALLOCATORS:
                    alloc_calls[(cfn, fn)] += int(line[6:].split()[0])
            elif line[:1].isdigit() or line[:1] in "+-*":
                parts = line.split()
                if len(parts) < 2:
                    continue
                if call_line:
                    # The line after calls= is the callee's inclusive cost.
                    call_line = False
                    if cfn in ALLOCATORS and fn not in ALLOCATORS:
                        alloc_cost[(cfn, fn)] += int(parts[1])
                elif fn:
                    own[fn] += int(parts[1])
    return own, alloc_cost, alloc_calls


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--app", default="plaintext", help="plaintext (GET) or echo (64 KiB POST)")
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--keep", help="directory to keep the callgrind output in")
    a = p.parse_args()
    if not shutil.which("valgrind"):
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        subprocess.run(sudo + ["apt-get", "update"], check=True)
        subprocess.run(sudo + ["apt-get", "install", "-y", "valgrind"], check=True)

    out_dir = a.keep or tempfile.mkdtemp(prefix="maitre-callgrind-")
    os.makedirs(out_dir, exist_ok=True)
    port = free_port()
    script = os.path.join(out_dir, "server.py")
    with open(script, "w") as f:
        f.write(SERVER.format(bench=HERE, app=a.app, host=HOST, port=port, threads=a.threads))
    out = os.path.join(out_dir, "callgrind.out")
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--compress-strings=no",
         # sys.executable as it is: resolving a venv's symlink would run the base
         # interpreter, which profiles whatever maitre is installed there instead.
         f"--callgrind-out-file={out}", sys.executable, script],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_serving(port)
        subprocess.run(["callgrind_control", "-z", str(server.pid)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        request = request_for(a.app, port)
        with socket.create_connection((HOST, port), timeout=60) as s:
            for _ in range(a.requests):
                s.sendall(request)
                read_response(s)
        subprocess.run(["callgrind_control", "-d", str(server.pid)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        server.kill()
        server.wait()

    dump = out + ".1"  # the part written by `callgrind_control -d`
    own, alloc_cost, alloc_calls = self_costs(dump)
    total = sum(own.values())
    n = a.requests
    print(f"{a.app}: {total / n:,.0f} instructions per request "
          f"(user space, whole process, {n} sequential requests)")
    print(f"\n{'own/req':>9} {'share':>6}  function")
    for name, cost in own.most_common(a.top):
        print(f"{cost / n:9,.0f} {100 * cost / total:5.1f}%  {name[:100]}")
    print(f"\n{'cost/req':>9} {'calls':>6}  allocator <- caller")
    for (alloc, caller), cost in alloc_cost.most_common(15):
        print(f"{cost / n:9,.0f} {alloc_calls[(alloc, caller)] / n:6.2f}  {alloc} <- {caller[:80]}")
    if a.keep:
        print(f"\ncallgrind output: {dump}")
    else:
        shutil.rmtree(out_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
