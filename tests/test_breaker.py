"""The per-alias circuit breaker (keyedcache/breaker.py) and how the guard obeys it.

Driven by a fake clock: first on its own and through a Guard, then in front of
real Redis and memcached servers that are killed or hung (SIGSTOP).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from django.test.utils import override_settings

from keyedcache import breaker as breakers
from keyedcache import cache_function, cache_get, cache_set, conf
from keyedcache.breaker import (
    CLOSED,
    OPEN,
    PROBING,
    Breaker,
    CircuitOpenError,
    is_stale_connection,
    is_timeout,
)
from keyedcache.counters import counters
from keyedcache.exceptions import CacheBackendError
from keyedcache.guard import Guard
from keyedcache.registry import default_cache
from tests.conftest import BackendConfig
from tests.servers import Server


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Backend:
    """A stand-in backend call: answers, refuses or times out, and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.mode = "up"

    def __call__(self, key: str) -> str:
        self.calls += 1
        if self.mode == "refuse":
            raise ConnectionError("connection refused")
        if self.mode == "timeout":
            raise TimeoutError("timed out")
        return f"value of {key}"


def make(failures: int = 3, timeouts: int = 1, cooldown: float = 5.0) -> tuple[Guard, FakeClock]:
    clock = FakeClock()
    breaker = Breaker("fake", failures=failures, timeouts=timeouts, cooldown=cooldown, clock=clock)
    return Guard("fake", breaker=breaker), clock


def errors() -> int:
    return counters.snapshot()["errors"]


# -- the state machine, with a fake clock ---------------------------------------------------


def test_opens_after_the_run_of_failures_and_a_success_resets_the_run() -> None:
    guard, _clock = make(failures=3)
    backend = Backend()
    backend.mode = "refuse"
    guard.call("get", "b::1", None, backend, "b::1")
    guard.call("get", "b::1", None, backend, "b::1")
    backend.mode = "up"
    assert guard.call("get", "b::1", None, backend, "b::1") == "value of b::1"
    backend.mode = "refuse"
    guard.call("get", "b::1", None, backend, "b::1")
    guard.call("get", "b::1", None, backend, "b::1")
    assert guard.breaker.state == CLOSED  # two in a row since the success
    guard.call("get", "b::1", None, backend, "b::1")
    assert guard.breaker.state == OPEN
    assert guard.breaker.flag[0]


def test_one_timeout_opens_it_by_default_and_timeouts_0_counts_them_as_failures() -> None:
    guard, _clock = make(failures=3, timeouts=1)
    backend = Backend()
    backend.mode = "timeout"
    guard.call("get", "b::1", None, backend, "b::1")
    assert guard.breaker.state == OPEN

    patient, _clock = make(failures=3, timeouts=0)
    patient.call("get", "b::1", None, backend, "b::1")
    patient.call("get", "b::1", None, backend, "b::1")
    assert patient.breaker.state == CLOSED
    patient.call("get", "b::1", None, backend, "b::1")
    assert patient.breaker.state == OPEN


def test_timeouts_are_recognised_by_class() -> None:
    class RedisTimeoutError(Exception):  # redis.exceptions.TimeoutError is no builtin one
        pass

    assert is_timeout(TimeoutError()) and is_timeout(RedisTimeoutError())
    assert not is_timeout(ConnectionRefusedError()) and not is_timeout(ValueError())


def test_while_open_calls_skip_the_backend_get_the_fallback_and_count_errors() -> None:
    guard, _clock = make(failures=1)
    backend = Backend()
    backend.mode = "refuse"
    guard.call("get", "b::1", "miss", backend, "b::1")
    backend.mode = "up"
    calls = backend.calls
    before = errors()
    fetch = guard.wrap("get", backend, "miss")
    assert guard.call("get", "b::1", "miss", backend, "b::1") == "miss"
    assert guard.call("set", "b::1", None, backend, "b::1") is None
    assert fetch("b::2") == "miss"
    assert backend.calls == calls  # the backend was not touched
    assert errors() == before + 3


def test_strict_calls_and_listings_raise_while_open_naming_the_breaker() -> None:
    guard, _clock = make(failures=1)
    backend = Backend()
    backend.mode = "refuse"
    guard.call("get", "b::1", None, backend, "b::1")
    backend.mode = "up"
    with pytest.raises(CacheBackendError) as raised:
        guard.call("delete", "b::1", None, backend, "b::1", strict=True)
    assert isinstance(raised.value.__cause__, CircuitOpenError)
    assert "circuit breaker" in str(raised.value) and "'fake'" in str(raised.value)
    with pytest.raises(CacheBackendError):
        guard.closed_or_refuse("list keys", "b::*", strict=True)
    assert guard.closed_or_refuse("list keys", "b::*") is False
    assert backend.calls == 1


def test_after_the_cooldown_one_probe_closes_it() -> None:
    guard, clock = make(failures=1, cooldown=5.0)
    backend = Backend()
    backend.mode = "refuse"
    guard.call("get", "b::1", None, backend, "b::1")
    backend.mode = "up"
    clock.advance(4.9)
    assert guard.call("get", "b::1", None, backend, "b::1") is None
    assert backend.calls == 1
    clock.advance(0.2)
    assert guard.call("get", "b::1", None, backend, "b::1") == "value of b::1"
    assert guard.breaker.state == CLOSED and not guard.breaker.flag[0]
    assert guard.call("get", "b::2", None, backend, "b::2") == "value of b::2"


def test_a_failed_probe_opens_it_for_another_cooldown() -> None:
    guard, clock = make(failures=1, cooldown=5.0)
    backend = Backend()
    backend.mode = "refuse"
    guard.call("get", "b::1", None, backend, "b::1")
    clock.advance(5.0)
    assert guard.call("get", "b::1", None, backend, "b::1") is None  # the probe, refused
    assert backend.calls == 2 and guard.breaker.state == OPEN
    backend.mode = "up"
    clock.advance(4.0)
    assert guard.call("get", "b::1", None, backend, "b::1") is None
    assert backend.calls == 2
    clock.advance(1.0)
    assert guard.call("get", "b::1", None, backend, "b::1") == "value of b::1"
    assert guard.breaker.opens == 1  # a failed probe is no new open


def test_exactly_one_probe_goes_while_the_others_keep_failing_fast() -> None:
    guard, clock = make(failures=1, cooldown=5.0)
    backend = Backend()
    backend.mode = "refuse"
    guard.call("get", "b::1", None, backend, "b::1")
    clock.advance(5.0)
    entered, release = threading.Event(), threading.Event()

    def slow_probe(key: str) -> str:
        entered.set()
        release.wait(30)
        return "probed"

    results: list[Any] = []
    prober = threading.Thread(
        target=lambda: results.append(guard.call("get", "b::1", None, slow_probe, "b::1"))
    )
    prober.start()
    try:
        assert entered.wait(30)
        assert guard.breaker.state == PROBING
        backend.mode = "up"
        calls = backend.calls
        others = [guard.call("get", f"b::{i}", "fast", backend, f"b::{i}") for i in range(20)]
        assert others == ["fast"] * 20 and backend.calls == calls
    finally:
        release.set()
        prober.join(30)
    assert results == ["probed"] and guard.breaker.state == CLOSED


def test_broken_connections_are_no_run_and_a_probe_meeting_one_lets_the_next_call_probe() -> None:
    guard, clock = make(failures=2)

    def reset(key: str) -> str:
        raise ConnectionResetError("connection reset by peer")

    for _ in range(10):
        guard.call("get", "b::1", None, reset, "b::1")
    assert guard.breaker.state == CLOSED  # a restarted server's stale sockets fail once each
    backend = Backend()
    backend.mode = "refuse"
    guard.call("get", "b::1", None, backend, "b::1")
    guard.call("get", "b::1", None, backend, "b::1")
    assert guard.breaker.state == OPEN
    clock.advance(5.0)
    guard.call("get", "b::1", None, reset, "b::1")  # the probe met a stale socket
    assert guard.breaker.state == OPEN
    backend.mode = "up"
    assert guard.call("get", "b::1", None, backend, "b::1") == "value of b::1"  # no cool-down
    assert guard.breaker.state == CLOSED


def test_stale_connections_are_recognised() -> None:
    class MemcacheUnexpectedCloseError(Exception):  # pymemcache's, by name
        pass

    assert is_stale_connection(ConnectionResetError()) and is_stale_connection(BrokenPipeError())
    assert is_stale_connection(MemcacheUnexpectedCloseError())
    assert not is_stale_connection(ConnectionRefusedError()) and not is_stale_connection(
        TimeoutError()
    )


def test_a_probe_that_ends_without_a_verdict_lets_the_next_call_probe() -> None:
    guard, clock = make(failures=1)
    backend = Backend()
    backend.mode = "refuse"
    guard.call("get", "b::1", None, backend, "b::1")
    clock.advance(5.0)

    def cannot(key: str) -> None:
        raise NotImplementedError("no such operation here")

    with pytest.raises(NotImplementedError):
        guard.call("ttl", "b::1", None, cannot, "b::1")
    backend.mode = "up"
    assert guard.call("get", "b::1", None, backend, "b::1") == "value of b::1"
    assert guard.breaker.state == CLOSED


def test_async_calls_obey_the_breaker_and_denied_coroutines_are_closed() -> None:
    guard, clock = make(failures=1)
    backend = Backend()

    async def answer(key: str) -> str:
        return backend(key)

    async def scenario() -> list[Any]:
        backend.mode = "refuse"
        first = await guard.acall("get", "b::1", "miss", answer("b::1"))
        backend.mode = "up"
        denied = answer("b::2")
        second = await guard.acall("get", "b::2", "miss", denied)
        assert inspect.getcoroutinestate(denied) == inspect.CORO_CLOSED  # never run
        with pytest.raises(CacheBackendError):
            await guard.acall("delete", "b::2", None, answer("b::2"), strict=True)
        clock.advance(5.0)
        probe = await guard.acall("get", "b::3", "miss", answer("b::3"))
        return [first, second, probe]

    assert asyncio.run(scenario()) == ["miss", "miss", "value of b::3"]
    assert backend.calls == 2 and guard.breaker.state == CLOSED


def test_opening_is_logged_once_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="keyedcache")
    guard, clock = make(failures=2)
    before = counters.snapshot()["breaker_opens"]
    backend = Backend()
    backend.mode = "refuse"
    for _ in range(50):
        guard.call("get", "b::1", None, backend, "b::1")
    opened = [r for r in caplog.records if "circuit breaker" in r.getMessage()]
    assert len(opened) == 1 and opened[0].levelno == logging.WARNING
    assert "'fake'" in opened[0].getMessage() and "ConnectionError" in opened[0].getMessage()
    assert counters.snapshot()["breaker_opens"] == before + 1
    backend.mode = "up"
    clock.advance(5.0)
    guard.call("get", "b::1", None, backend, "b::1")
    closed = [r for r in caplog.records if "closed" in r.getMessage()]
    assert len(closed) == 1 and closed[0].levelno == logging.INFO
    assert guard.breaker.opens_since(3600) == 1


def test_a_breaker_with_both_thresholds_0_never_opens() -> None:
    guard, _clock = make(failures=0, timeouts=0)
    backend = Backend()
    backend.mode = "timeout"
    for _ in range(20):
        guard.call("get", "b::1", None, backend, "b::1")
    assert guard.breaker.state == CLOSED and backend.calls == 20


# -- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KEYEDCACHE_BREAKER_FAILURES", -1),
        ("KEYEDCACHE_BREAKER_FAILURES", 2.5),
        ("KEYEDCACHE_BREAKER_TIMEOUTS", True),
        ("KEYEDCACHE_BREAKER_COOLDOWN", 0),
        ("KEYEDCACHE_BREAKER_COOLDOWN", float("nan")),
        ("KEYEDCACHE_BREAKER_COOLDOWN", "5"),
    ],
)
def test_invalid_settings_are_refused_naming_the_setting(name: str, value: Any) -> None:
    with override_settings(**{name: value}), pytest.raises(ValueError, match=name):
        breakers.for_alias("tuned")


def test_settings_tune_each_alias_breaker_and_a_change_starts_afresh() -> None:
    with override_settings(
        KEYEDCACHE_BREAKER_FAILURES=7, KEYEDCACHE_BREAKER_TIMEOUTS=2, KEYEDCACHE_BREAKER_COOLDOWN=9
    ):
        tuned = breakers.for_alias("tuned")
        assert (tuned.failures, tuned.timeouts, tuned.cooldown) == (7, 2, 9.0)
        assert breakers.for_alias("tuned") is tuned
        assert Guard("tuned").breaker is tuned
    default = breakers.for_alias("tuned")
    assert default is not tuned
    assert (default.failures, default.timeouts, default.cooldown) == (
        conf.DEFAULT_BREAKER_FAILURES,
        conf.DEFAULT_BREAKER_TIMEOUTS,
        conf.DEFAULT_BREAKER_COOLDOWN,
    )


# -- real servers ---------------------------------------------------------------------------


@pytest.fixture
def fake_clock(backend: BackendConfig) -> FakeClock:
    """The fake clock of the default alias's breaker (a fresh breaker per test)."""
    clock = FakeClock()
    default_cache().guard.breaker.clock = clock
    return clock


@pytest.fixture
def hang(restart_servers: list[Server]) -> Iterator[list[Server]]:
    """The backend's servers; SIGSTOPped ones are resumed (SIGCONT) afterwards."""
    yield restart_servers
    for server in restart_servers:
        if server.process is not None:
            os.kill(server.process.pid, signal.SIGCONT)


def freeze(servers: list[Server]) -> None:
    """SIGSTOP every server and wait until the kernel reports it stopped."""
    for server in servers:
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGSTOP)
        _pid, status = os.waitpid(server.process.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status)


def thaw(servers: list[Server]) -> None:
    """SIGCONT every server and wait until the kernel reports it running."""
    for server in servers:
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGCONT)
        _pid, status = os.waitpid(server.process.pid, os.WCONTINUED)
        assert os.WIFCONTINUED(status)


def stop_hard(servers: list[Server]) -> None:
    """kill -9 every server."""
    for server in servers:
        assert server.process is not None
        server.process.kill()
        server.process.wait()
        server.process = None


served: list[int] = []


@cache_function(300)
def doubled(x: int) -> int:
    """Counts its executions in `served`."""
    served.append(x)
    return 2 * x


@pytest.mark.backends("redis", "memcached")
def test_hung_server_opens_the_breaker_and_calls_skip_it_until_the_probe(
    backend: BackendConfig, hang: list[Server], fake_clock: FakeClock
) -> None:
    cache_set("hung", value="cached")
    breaker = default_cache().guard.breaker
    freeze(hang)
    assert cache_get("hung", default="miss") == "miss"  # one socket timeout
    assert breaker.state == OPEN
    thaw(hang)
    # The server answers again, but nobody asks it before the cool-down is over.
    served.clear()
    assert [cache_get("hung", default="miss") for _ in range(5)] == ["miss"] * 5
    assert doubled(4) == 8 and doubled(4) == 8 and served == [4, 4]
    with pytest.raises(CacheBackendError):
        default_cache().delete("hung", strict=True)
    fake_clock.advance(breaker.cooldown)
    assert cache_get("hung", default="miss") == "cached"  # the probe
    assert breaker.state == CLOSED


@pytest.mark.backends("redis", "memcached")
def test_killed_server_opens_the_breaker_after_the_run_and_a_restart_closes_it(
    backend: BackendConfig, restart_servers: list[Server], fake_clock: FakeClock
) -> None:
    breaker = default_cache().guard.breaker
    stop_hard(restart_servers)
    attempts = 0
    while breaker.state == CLOSED:
        attempts += 1
        # A client's socket to the killed server may fail once as closed: not in the run.
        assert attempts <= breaker.failures + 1, "the breaker did not open"
        cache_set("killed", value=attempts)  # refused: skipped
    assert attempts >= breaker.failures
    for server in restart_servers:
        server.start()
    cache_set("killed", value="skipped")  # still open: not written
    fake_clock.advance(breaker.cooldown)
    cache_set("killed", value="written")  # the probe
    assert breaker.state == CLOSED
    assert cache_get("killed") == "written"


computing = threading.Event()
finish = threading.Event()
executions: list[int] = []


@cache_function(300)
def blocking(x: int) -> int:
    """Counts its executions, then waits for `finish`."""
    executions.append(x)
    computing.set()
    finish.wait(30)
    return 3 * x


def waiting_for_a_flight(thread: threading.Thread) -> bool:
    """Tell whether `thread` waits on another thread's computation (single flight's event)."""
    assert thread.ident is not None
    frame = sys._current_frames().get(thread.ident)
    names = []
    while frame is not None:
        names.append(frame.f_code.co_name)
        frame = frame.f_back
    return bool(names) and names[0] == "wait" and "_fill" in names


@pytest.mark.backends("locmem")
def test_single_flight_holds_among_threads_while_the_breaker_is_open(
    backend: BackendConfig, fake_clock: FakeClock
) -> None:
    breaker = default_cache().guard.breaker
    for _ in range(breaker.failures):
        breaker.failed(ConnectionRefusedError("refused"))
    assert breaker.state == OPEN
    executions.clear()
    computing.clear()
    finish.clear()
    results: list[int] = []
    leader = threading.Thread(target=lambda: results.append(blocking(5)))
    leader.start()
    assert computing.wait(30)
    others = [threading.Thread(target=lambda: results.append(blocking(5))) for _ in range(3)]
    for thread in others:
        thread.start()
    try:
        # A bounded look at where the threads are (not a sleep): each must wait on the leader.
        deadline = time.monotonic() + 30
        while not all(waiting_for_a_flight(thread) for thread in others):
            assert all(thread.is_alive() for thread in others), "a caller did not wait"
            assert time.monotonic() < deadline, "the callers never waited for the leader"
    finally:
        finish.set()
        for thread in [leader, *others]:
            thread.join(30)
    assert results == [15] * 4
    assert executions == [5]  # one computation, the backend never asked


@pytest.mark.backends("locmem")
@pytest.mark.django_db
@pytest.mark.urls("tests.urls_dashboard")
def test_the_stats_page_shows_each_breaker_state_since_and_opens(backend: BackendConfig) -> None:
    from django.contrib.auth.models import User

    user = User.objects.create_user("breakerstaff", password="x", is_staff=True)
    client = Client()
    client.force_login(user)
    breaker = default_cache().guard.breaker
    breaker.failed(ConnectionRefusedError("refused"))
    for _ in range(breaker.failures):
        breaker.failed(ConnectionRefusedError("refused"))
    assert breaker.state == OPEN
    page = client.get("/cache/").content.decode()
    assert 'id="kc-breakers"' in page
    row = page.split('id="kc-breakers"')[1].split("</table>")[0]
    assert "<code>default</code>" in row and ">open<" in row
    assert "ConnectionRefusedError" in row and "just now" in row
    assert "circuit breaker open" in page  # the backend card, without a round trip
