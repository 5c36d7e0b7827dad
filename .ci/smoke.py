"""Release smoke test: the installed maitre (not the checkout's) serves its demo app.

Run as a script, so neither the checkout's root nor python/ is on sys.path; portable
(Windows too), for the release workflow's runners that can load the wheel they built.
"""

import subprocess
import sys
import sysconfig
import time
import urllib.request

import maitre

site = sysconfig.get_path("platlib")
assert maitre.__file__.startswith(site), f"maitre is {maitre.__file__}, not in {site}"

server = subprocess.Popen([sys.executable, "-m", "maitre", "--listen=127.0.0.1:8080", "maitre.demo:app"])
try:
    deadline = time.monotonic() + 30
    while True:
        try:
            body = urllib.request.urlopen("http://127.0.0.1:8080/", timeout=2).read()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert b"maitre" in body, body[:200]
    print("the installed wheel served the demo")
finally:
    server.terminate()
    server.wait(timeout=10)
