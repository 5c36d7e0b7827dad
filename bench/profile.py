"""Count the instructions maitre spends per request, under callgrind.

    python bench/profile.py                      # plaintext, 3000 requests
    python bench/profile.py --app echo --requests 1000 --top 40
    python bench/profile.py --keep /tmp/cg       # keep the callgrind file for kcachegrind
    python bench/profile.py --app flask_json --requests 2000 --alone   # maitre's share

wrk's numbers on a shared VM move 10-20% between runs; callgrind counts user-space
instructions, which repeat within about 1.5% whatever else the machine does. So an A/B of
two builds is: install one, run this, install the other, run it again.

What it does: starts maitre (the installed one) on an app from bench/apps.py under
`valgrind --tool=callgrind`, waits for it to answer, zeroes the counters (start-up is not
counted), sends --requests requests one after another on one keep-alive connection, dumps
the counters and kills the server. It prints instructions per request for the whole
process (event loop, workers and Python), the functions with the most instructions of their
own, and the allocator calls per request by caller.

With --alone it then runs the same number of calls of the app without a server (bench/alone.py's
loop, same environ) under callgrind too, and prints the difference: the instructions maitre
adds to each request, and the functions that make it up (own cost per request, server minus
alone; negative where the app alone spends more, e.g. its copy of the environ).

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

# The app alone (--alone): warmed up, then --requests calls between two pauses in which
# the counters are zeroed and dumped (it waits for a line on stdin at each).
ALONE = """
import sys
sys.path.insert(0, {bench!r})
import alone, apps
call = alone.caller(getattr(apps, {app!r}), alone.maitre_environ("/"))
for _ in range(200):
    call(None)
print("ready", flush=True)
sys.stdin.readline()
for _ in range({requests}):
    call(None)
print("done", flush=True)
sys.stdin.readline()
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


def callgrind(out_dir: str, name: str, script: str, drive, pipes: bool = False) -> str:
    """Runs `script` under callgrind; `drive(proc)` is a generator that yields once when the
    part to count starts (the counters are zeroed) and once when it has ended (they are
    dumped). With `pipes` the script's stdin and stdout are pipes to talk to it through.
    Returns the file of the dumped part."""
    path = os.path.join(out_dir, f"{name}.py")
    with open(path, "w") as f:
        f.write(script)
    out = os.path.join(out_dir, f"{name}.callgrind.out")
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--compress-strings=no",
         # sys.executable as it is: resolving a venv's symlink would run the base
         # interpreter, which profiles whatever maitre is installed there instead.
         f"--callgrind-out-file={out}", sys.executable, path],
        stdin=subprocess.PIPE if pipes else None,
        stdout=subprocess.PIPE if pipes else subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, text=True,
    )
    steps = drive(proc)
    try:
        for option in ("-z", "-d"):
            next(steps)
            subprocess.run(["callgrind_control", option, str(proc.pid)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        proc.kill()
        proc.wait()
    return out + ".1"  # the part written by `callgrind_control -d`


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--app", default="plaintext", help="an app of bench/apps.py: echo gets a 64 KiB POST, the others a GET")
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--keep", help="directory to keep the callgrind output in")
    p.add_argument("--alone", action="store_true",
                   help="also count the app alone (GET apps) and print the difference")
    a = p.parse_args()
    if not shutil.which("valgrind"):
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        subprocess.run(sudo + ["apt-get", "update"], check=True)
        subprocess.run(sudo + ["apt-get", "install", "-y", "valgrind"], check=True)

    out_dir = a.keep or tempfile.mkdtemp(prefix="maitre-callgrind-")
    os.makedirs(out_dir, exist_ok=True)
    port = free_port()
    request = request_for(a.app, port)

    def send_requests(proc):
        wait_until_serving(port)
        yield
        with socket.create_connection((HOST, port), timeout=60) as s:
            for _ in range(a.requests):
                s.sendall(request)
                read_response(s)
        yield

    dump = callgrind(out_dir, "server",
                     SERVER.format(bench=HERE, app=a.app, host=HOST, port=port,
                                   threads=a.threads), send_requests)
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
    if a.alone:
        def step(proc):
            for _ in range(2):  # "ready" (warmed up), then "done"
                proc.stdout.readline()
                yield
                proc.stdin.write("\n")
                proc.stdin.flush()

        alone_dump = callgrind(out_dir, "alone",
                               ALONE.format(bench=HERE, app=a.app, requests=n), step,
                               pipes=True)
        alone_own = self_costs(alone_dump)[0]
        alone_total = sum(alone_own.values())
        print(f"\napp alone: {alone_total / n:,.0f} instructions per call; maitre adds "
              f"{(total - alone_total) / n:,.0f} per request "
              f"({100 * (total - alone_total) / total:.1f}% of the server's)")
        diff = collections.Counter()
        for name, cost in own.items():
            diff[name.split("'")[0]] += cost
        for name, cost in alone_own.items():
            diff[name.split("'")[0]] -= cost
        print(f"\n{'diff/req':>9}  function (server minus alone, own cost)")
        for name, cost in sorted(diff.items(), key=lambda kv: -abs(kv[1]))[:a.top]:
            print(f"{cost / n:9,.0f}  {name[:100]}")
    if a.keep:
        print(f"\ncallgrind output in {out_dir}")
    else:
        shutil.rmtree(out_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
