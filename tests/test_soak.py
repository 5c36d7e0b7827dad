"""The soak's short form (tests/soak.py runs the full million): 20,000 mixed
requests leave the server's threads and descriptors where they were after the
warm-up, and its resident memory within a small bound."""

from __future__ import annotations

import sys

import pytest

import soak


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_soak_stays_flat():
    result = soak.soak(20_000, clients=16)
    assert not result["failures"], result["failures"][:10]
    start, end = result["start"], result["end"]
    assert end["threads"] == start["threads"], (start, end)
    assert end["fds"] == start["fds"], (start, end)
    assert end["rss_kib"] - start["rss_kib"] < 16 * 1024, (start, end)
    for word in ("ERROR", "Traceback", "Socket error"):
        assert word not in result["log"], result["log"][-3000:]
