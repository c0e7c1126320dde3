"""keyedcache.signals: read outcomes, memoized executions and single-flight waits as sent."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from keyedcache import cache_function, cache_get, cache_set, request_cache, signals
from keyedcache.counters import counters


class Recorder:
    """Receives one signal and keeps every call's keyword arguments."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, sender: Any, **named: Any) -> None:
        named.pop("signal")
        self.calls.append({"sender": sender, **named})


@pytest.fixture
def reads() -> Iterator[Recorder]:
    recorder = Recorder()
    signals.cache_read.connect(recorder)
    yield recorder
    signals.cache_read.disconnect(recorder)


@pytest.fixture
def executions() -> Iterator[Recorder]:
    recorder = Recorder()
    signals.memoized_execution.connect(recorder)
    yield recorder
    signals.memoized_execution.disconnect(recorder)


@pytest.fixture
def waits() -> Iterator[Recorder]:
    recorder = Recorder()
    signals.single_flight_wait.connect(recorder)
    yield recorder
    signals.single_flight_wait.disconnect(recorder)


def outcomes(recorder: Recorder) -> list[tuple[str, str, str]]:
    return [(c["key"], c["outcome"], c["operation"]) for c in recorder.calls]


def test_the_flag_follows_connections() -> None:
    assert signals.listening[0] is False  # nobody listens in the test suite by default
    recorder = Recorder()
    signals.memoized_execution.connect(recorder)
    assert signals.listening[0] is True
    signals.memoized_execution.disconnect(recorder)
    assert signals.listening[0] is False


def test_reads_send_their_outcome(reads: Recorder) -> None:
    cache_set("sig", "a", value=0)  # a falsy value is a hit
    cache_get("sig", "a")
    cache_get("sig", "b", default=None)
    with request_cache():
        cache_get("sig", "a")
        cache_get("sig", "a")
        cache_get("sig", "b", default=None)
        cache_get("sig", "b", default=None)
    assert outcomes(reads) == [
        ("sig::a", "hit", "get"),
        ("sig::b", "miss", "get"),
        ("sig::a", "hit", "get"),
        ("sig::a", "local_hit", "get"),
        ("sig::b", "miss", "get"),
        ("sig::b", "local_miss", "get"),
    ]
    assert {c["alias"] for c in reads.calls} == {"default"}
    assert all(c["seconds"] >= 0 for c in reads.calls)
    assert all(c["sender"].alias == "default" for c in reads.calls)


def test_nothing_is_sent_without_listeners() -> None:
    recorder = Recorder()
    signals.cache_read.connect(recorder)
    signals.cache_read.disconnect(recorder)
    cache_get("sig", "quiet", default=None)
    assert recorder.calls == []
    assert signals.listening[0] is False


RUNS: list[int] = []


@cache_function(60)
def doubled(x: int) -> int:
    RUNS.append(x)
    return 2 * x


def test_a_memoized_call_sends_its_read_and_its_execution(
    reads: Recorder, executions: Recorder
) -> None:
    doubled.invalidate(21)
    assert doubled(21) == 42
    assert doubled(21) == 42
    key = doubled.key(21)
    assert outcomes(reads) == [(key, "miss", "memoized"), (key, "hit", "memoized")]
    assert len(executions.calls) == 1
    (run,) = executions.calls
    assert (run["key"], run["function"]) == (key, "func::tests.test_signals.doubled")
    assert run["sender"] is doubled.__wrapped__
    assert run["seconds"] >= 0


@cache_function(60)
async def tripled(x: int) -> int:
    return 3 * x


def test_an_async_memoized_call_sends_its_execution(executions: Recorder) -> None:
    tripled.invalidate(5)
    assert asyncio.run(tripled(5)) == 15
    assert [c["key"] for c in executions.calls] == [tripled.key(5)]


class _ReportingEvent(threading.Event):
    """An Event that says (through `entered`) when a thread starts waiting on it."""

    def __init__(self, entered: threading.Event) -> None:
        super().__init__()
        self.entered = entered

    def wait(self, timeout: float | None = None) -> bool:
        self.entered.set()
        return super().wait(timeout)


WAIT_RUNS: list[int] = []


@cache_function(60)
def slow(x: int) -> int:
    WAIT_RUNS.append(x)
    return x


def test_a_caller_waiting_for_another_thread_is_counted_and_sent(waits: Recorder) -> None:
    slow.invalidate(7)
    key = slow.key(7)
    memo = slow.memoized
    waiting = threading.Event()
    results: list[int] = []
    waiter = threading.Thread(target=lambda: results.append(slow(7)))

    def lead() -> int:
        # In the leading thread, while its flight is registered: make the
        # flight's event report the waiter, start the waiter, and return
        # only once the waiter waits.
        memo.flight._flights[key].done = _ReportingEvent(waiting)
        waiter.start()
        assert waiting.wait(30)
        return memo._run((7,), {})

    before = counters.snapshot()["waits"]
    assert memo.flight.get(key, lead, None, loaded=True) == 7
    waiter.join(30)
    assert results == [7]
    assert WAIT_RUNS.count(7) == 1  # the waiter got the leader's value
    assert counters.snapshot()["waits"] == before + 1
    (wait,) = waits.calls
    assert (wait["key"], wait["function"], wait["timed_out"]) == (
        key,
        "func::tests.test_signals.slow",
        False,
    )
    assert wait["sender"] is slow.__wrapped__ and wait["seconds"] >= 0


def test_a_failing_receiver_is_logged_and_the_read_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(sender: Any, **named: Any) -> None:
        raise RuntimeError("receiver bug")

    signals.cache_read.connect(broken)
    try:
        cache_set("sig", "robust", value="v")
        with caplog.at_level(logging.WARNING, logger="keyedcache"):
            assert cache_get("sig", "robust") == "v"
    finally:
        signals.cache_read.disconnect(broken)
    assert "receiver bug" in caplog.text


@pytest.mark.backends("locmem", "redis", "valkey")
def test_async_reads_send_their_outcome(backend: Any, reads: Recorder) -> None:
    # On Redis-family backends acache_get has its own native path (no thread hop):
    # it must report the same outcomes as the sync read does.
    from keyedcache import acache_get

    cache_set("asig", "a", value=0)

    async def run() -> None:
        await acache_get("asig", "a")
        await acache_get("asig", "b", default=None)
        with request_cache():
            await acache_get("asig", "a")
            await acache_get("asig", "a")
            await acache_get("asig", "b", default=None)
            await acache_get("asig", "b", default=None)

    asyncio.run(run())
    assert outcomes(reads) == [
        ("asig::a", "hit", "get"),
        ("asig::b", "miss", "get"),
        ("asig::a", "hit", "get"),
        ("asig::a", "local_hit", "get"),
        ("asig::b", "miss", "get"),
        ("asig::b", "local_miss", "get"),
    ]
