"""Real faults under multi-process load: Redis and memcached killed (kill -9) and hung (SIGSTOP).

Two worker processes run four threads each of mixed cache_get / cache_set /
memoized calls / children deletes while the test kills or hangs the server and
brings it back. No caller may see an exception or a wrong value, each process's
circuit breaker must open, and each process must round-trip a set/get again
once the server is back. Speed figures are in bench/bench_chaos.py, not here.

PostgreSQL is the machine's shared server: it is not killed here. Its fault is
a terminated connection (pg_terminate_backend); bench/bench_chaos.py kills and
hangs a TCP proxy in front of it instead.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import BackendConfig
from tests.procs import BoundWorker, Gate, gate_wait
from tests.servers import Server

pytestmark = pytest.mark.backends("redis", "memcached")

#: One short socket timeout and no client-side retries (docs/backends.md).
FAST_OPTIONS = {
    "redis": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    "memcached": {"connect_timeout": 0.5, "timeout": 0.5, "retry_attempts": 0, "dead_timeout": 0},
}
#: Bound of the loops below (each one makes real calls; none sleeps).
DEADLINE = 60.0


def chaos_load(started: str, opened: str, threads: int = 4) -> dict[str, Any]:
    """In a child: run mixed load in `threads` threads across the fault the parent makes.

    Waits at gate `started` (the parent breaks the server), drives calls until this
    process's breaker opens, waits at gate `opened` (the parent restores the server),
    then makes set/get round trips until one succeeds. Returns the figures.
    """
    import keyedcache
    from keyedcache import breaker as breakers
    from keyedcache.registry import default_cache

    breakers.reset()  # a fresh breaker for this test, even in a reused worker
    keyedcache.keyedcache_configure()
    breaker = default_cache().guard.breaker

    @keyedcache.cache_function(60)
    def doubled(x: int) -> int:
        return 2 * x

    stop = threading.Event()
    lock = threading.Lock()
    figures: dict[str, Any] = {"calls": 0, "raised": [], "wrong": 0}

    def caller(n: int) -> None:
        calls = wrong = 0
        raised: list[str] = []
        while not stop.is_set():
            calls += 1
            key = f"chaos::{n}::{calls % 20}"
            try:
                kind = calls % 10
                if kind < 5:
                    got = keyedcache.cache_get(key, default=None)
                    wrong += got is not None and got != ("v", key)
                elif kind < 8:
                    wrong += doubled(calls % 30) != 2 * (calls % 30)
                elif kind < 9:
                    keyedcache.cache_set(key, value=("v", key), length=30)
                else:
                    keyedcache.cache_delete(f"chaos::{n}", children=True)
            except Exception as exc:
                raised.append(repr(exc))
        with lock:
            figures["calls"] += calls
            figures["wrong"] += wrong
            figures["raised"] += raised[:5]

    pool = [threading.Thread(target=caller, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    try:
        gate_wait(started)
        deadline = time.monotonic() + DEADLINE
        while not breaker.is_open and time.monotonic() < deadline:
            keyedcache.cache_get("chaos::watch", default=None)
        figures["opens"] = breaker.opens
        gate_wait(opened)
        deadline = time.monotonic() + DEADLINE
        attempt, served = 0, False
        while not served and time.monotonic() < deadline:
            attempt += 1
            keyedcache.cache_set("chaos::back", os.getpid(), value=attempt)
            served = keyedcache.cache_get("chaos::back", os.getpid(), default=None) == attempt
        figures["served"] = served
        figures["closed"] = not breaker.is_open
    finally:
        stop.set()
        for thread in pool:
            thread.join()
    return figures


def kill(servers: list[Server]) -> Callable[[], None]:
    """kill -9 the servers; return what starts them again."""
    for server in servers:
        assert server.process is not None
        server.process.kill()
        server.process.wait()
        server.process = None

    def restart() -> None:
        for server in servers:
            server.start()

    return restart


def hang(servers: list[Server]) -> Callable[[], None]:
    """SIGSTOP the servers (waiting until they are stopped); return what resumes them."""
    for server in servers:
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGSTOP)
        _pid, status = os.waitpid(server.process.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status)

    def resume() -> None:
        for server in servers:
            assert server.process is not None
            os.kill(server.process.pid, signal.SIGCONT)

    return resume


@pytest.fixture
def resumed(restart_servers: list[Server]) -> Iterator[list[Server]]:
    """The backend's servers; a hung one is resumed (then restarted if it was killed)."""
    yield restart_servers
    for server in restart_servers:
        if server.process is not None:
            os.kill(server.process.pid, signal.SIGCONT)


@pytest.mark.parametrize("fault", [kill, hang], ids=["kill-9", "sigstop"])
def test_callers_see_no_fault_the_breaker_opens_and_service_returns(
    backend: BackendConfig,
    resumed: list[Server],
    children: Callable[[int], list[BoundWorker]],
    fault: Callable[[list[Server]], Callable[[], None]],
) -> None:
    config = backend.variant(OPTIONS=FAST_OPTIONS[backend.name])
    env = backend.env({"KEYEDCACHE_BREAKER_COOLDOWN": 1.0}, caches={"default": config})
    workers = [BoundWorker(child.worker, env) for child in children(2)]
    with Gate() as started, Gate() as opened:
        pending = [worker.submit(chaos_load, started.address, opened.address) for worker in workers]
        started.wait_arrivals(len(workers))
        restore = fault(resumed)
        started.open()
        try:
            opened.wait_arrivals(len(workers))
        finally:
            restore()
        opened.open()
        results = [p.result(timeout=DEADLINE * 3) for p in pending]
    for figures in results:
        assert figures["raised"] == []
        assert figures["wrong"] == 0
        assert figures["calls"] > 0
        assert figures["opens"] >= 1, "the breaker did not open"
        assert figures["served"] and figures["closed"], "service did not return"


@pytest.mark.backends("db-postgres")
def test_a_terminated_database_connection_is_replaced_before_the_next_query(
    backend: BackendConfig,
) -> None:
    """PostgreSQL ends this thread's connection (a real fault, not the shared server's
    death): the next call misses, the one after it reconnects, outside any request."""
    import psycopg
    from django.db import connections

    import keyedcache

    keyedcache.cache_set("severed", value="kept")
    connection = connections[backend.cache_db]
    pid = connection.connection.info.backend_pid
    settings = connection.settings_dict
    with psycopg.connect(
        host=settings["HOST"],
        port=settings["PORT"],
        user=settings["USER"],
        dbname=settings["NAME"],
        autocommit=True,
    ) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    assert keyedcache.cache_get("severed", default="miss") == "miss"  # failed: a miss
    assert keyedcache.cache_get("severed") == "kept"  # a new connection
    assert connection.connection.info.backend_pid != pid
