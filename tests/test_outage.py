"""Backend outages: with the real Redis/memcached server stopped, callers keep working."""

from __future__ import annotations

import logging
import time

import pytest

from keyedcache import (
    CacheNotRespondingError,
    NotCachedError,
    cache_delete,
    cache_function,
    cache_get,
    cache_require,
    cache_set,
    is_cached,
)
from keyedcache.counters import counters
from tests.conftest import BackendConfig
from tests.servers import Server

pytestmark = pytest.mark.backends(
    "redis", "django-redis", "valkey", "valkey-cluster", "memcached", "memcached2"
)

# Bound for a client to reconnect to a restarted server (a retry loop, not a wait).
RECONNECT_DEADLINE = 30.0

calls: list[int] = []


@cache_function(300)
def compute(x: int) -> int:
    """Counts its executions in `calls`."""
    calls.append(x)
    return x * 10


def errors() -> int:
    return counters.snapshot()["errors"]


def wait_until_served() -> int:
    """Set and read back a batch of keys until all round-trip; return the attempts.

    Sixteen keys (and their generation tokens) land on every memcached server, so
    one good batch means each server is back in every client's rotation.
    """
    deadline = time.monotonic() + RECONNECT_DEADLINE
    attempts = 0
    while True:
        attempts += 1
        keys = [f"recover::{attempts}::{i}" for i in range(16)]
        for key in keys:
            cache_set(key, value=key)
        if all(cache_get(key, default=None) == key for key in keys):
            return attempts
        if time.monotonic() > deadline:
            pytest.fail(f"the cache did not serve again within {RECONNECT_DEADLINE}s")


def stop(servers: list[Server]) -> None:
    for server in servers:
        server.stop()
        assert not server.answers()


def start(servers: list[Server]) -> None:
    for server in servers:
        server.start()


def test_reads_miss_and_writes_are_skipped_while_down(
    backend: BackendConfig, restart_servers: list[Server], caplog: pytest.LogCaptureFixture
) -> None:
    cache_set("out", 1, value="before")
    assert cache_get("out", 1) == "before"
    caplog.set_level(logging.WARNING, logger="keyedcache")
    before = errors()

    stop(restart_servers)
    assert cache_get("out", 1, default="miss") == "miss"
    with pytest.raises(NotCachedError) as raised:
        cache_get("out", 1)
    assert raised.value.key == "out::1"
    assert not is_cached("out", 1)
    cache_set("out", 2, value="during")  # skipped, no exception
    assert cache_get("out", 2, default="miss") == "miss"
    assert cache_delete("out", 1) == []
    assert cache_delete("out", children=True) == []
    assert cache_delete() == []

    assert errors() > before
    failures = [
        r for r in caplog.records if r.name == "keyedcache" and r.levelno >= logging.WARNING
    ]
    assert failures, "the outage was not logged"
    assert "default" in failures[0].getMessage()

    start(restart_servers)
    wait_until_served()
    cache_set("out", value="after")
    assert cache_get("out") == "after"
    cache_set("out", 3, value="three")
    assert cache_get("out", 3) == "three"
    assert cache_delete("out", 3) == ["out::3"]


def test_decorated_function_computes_while_down(
    backend: BackendConfig, restart_servers: list[Server]
) -> None:
    calls.clear()
    assert compute(1) == 10
    assert compute(1) == 10
    assert calls == [1]  # cached while the server is up

    stop(restart_servers)
    before = errors()
    assert compute(2) == 20
    assert compute(2) == 20
    assert calls == [1, 2, 2]  # computed each time, never an exception
    assert errors() > before

    start(restart_servers)
    wait_until_served()
    calls.clear()
    assert compute(3) == 30
    assert compute(3) == 30
    assert calls == [3]  # cached again


def test_cache_require_raises_while_down(
    backend: BackendConfig, restart_servers: list[Server]
) -> None:
    assert cache_require() is True
    stop(restart_servers)
    with pytest.raises(CacheNotRespondingError):
        cache_require()
    start(restart_servers)
    wait_until_served()
    assert cache_require() is True
