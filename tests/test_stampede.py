"""cache_function under a stampede: real backends, real threads, real processes.

Invariant 5: one computation per key at a time, across threads and processes;
waiters get the value, or the stale value when one is allowed.

Body executions are counted outside the cache under test: every execution
appends a line to a file (O_APPEND) in the test's run directory. Callers are
released together by a threading.Barrier or, across processes, by a Gate
(tests.procs: a TCP barrier). Bodies are held on Events or Gates, never on
sleeps; the few bounded polls wait for a *state* (lines in a file, a child's
progress), and every wait has a deadline so that nothing can hang the suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connections

import keyedcache
from keyedcache import cache_function, default_cache, is_cached
from keyedcache import flight as flight_module
from keyedcache.counters import counters
from tests.conftest import BackendConfig
from tests.procs import BoundWorker, ChildError, Gate, append_line, gate_wait, read_lines
from tests.servers import Server

#: Hang guard for joins, child results and bounded polls (never reached when the code works).
DEADLINE = 30.0

#: Backends a cross-process test runs on: they share entries between processes.
CROSS_PROCESS = (
    "db-sqlite",
    "db-postgres",
    "memcached",
    "memcached2",
    "redis",
    "django-redis",
    "valkey",
    "valkey-cluster",
)


# -- helpers usable in this process and in child processes -----------------------------


def wait_for_lines(path: str | Path, count: int, timeout: float = DEADLINE) -> bool:
    """Wait (bounded) until the file has `count` lines; say whether it got there."""
    deadline = time.monotonic() + timeout
    while len(read_lines(path)) < count:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)  # poll interval of a bounded wait for a state
    return True


def record_execution(run_dir: str) -> int:
    """Log one body execution (pid and thread) and return its number (1, 2, ...)."""
    return append_line(
        os.path.join(run_dir, "executions"), f"{os.getpid()} {threading.get_ident()}"
    )


def executions(run_dir: str | Path) -> list[tuple[int, int]]:
    return [
        (int(pid), int(ident))
        for pid, ident in (line.split() for line in read_lines(os.path.join(run_dir, "executions")))
    ]


def wait_until(condition: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    """Poll `condition` until it returns something true (bounded); return that."""
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.005)  # poll interval of a bounded wait for a state


def run_threads(count: int, target: Callable[[int], Any]) -> list[Any]:
    """Run `target(i)` in `count` threads; return their results; raise the first error."""
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = target(i)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()  # this thread's database connections

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE)
    hung = sum(thread.is_alive() for thread in threads)
    if hung:
        raise AssertionError(f"{hung} of {count} callers hang")
    if errors:
        raise errors[0]
    return results


def call_within(func: Callable[[], Any], timeout: float) -> Any:
    """Call `func` on another thread; fail if it has not returned after `timeout` (a hang guard)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = func()
        except BaseException as exc:
            box["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"the call did not return within {timeout}s"
    if "error" in box:
        raise box["error"]
    return box["value"]


def counter(name: str) -> int:
    return counters.snapshot()[name]


@pytest.fixture
def run_dir(tmp_path: Path) -> str:
    """A directory for this test's execution log and signals (shared with children)."""
    return str(tmp_path)


# -- 1. a cold key: the body runs once ----------------------------------------------------


#: Seconds a stampede body holds at most while the other callers get to their waits.
HOLD_LIMIT = 10.0


@cache_function(300, wait=60)
def cold(run_dir: str, callers: int) -> tuple[str, int, int]:
    """Runs once per stampede and names its runner.

    It holds until every other caller is provably waiting for it (logged in
    the run's `waiting` file by `watch_waiters`), so a caller that computed
    too would be seen, not hidden by arriving after the value was stored.
    """
    record_execution(run_dir)
    wait_for_lines(os.path.join(run_dir, "waiting"), callers - 1, HOLD_LIMIT)
    return ("cold", os.getpid(), threading.get_ident())


class _WatchedSource:
    """Wraps a flight's Source: logs each thread the first time it finds the lock taken."""

    def __init__(self, source: Any, path: str) -> None:
        self.source = source
        self.path = path
        self.logged: set[int] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.source, name)

    def acquire(self, key: str, token: str) -> bool | None:
        taken = self.source.acquire(key, token)
        if taken is False and threading.get_ident() not in self.logged:
            self.logged.add(threading.get_ident())
            append_line(self.path, "lock")  # this caller now polls for another's value
        return taken


class _AsyncWatchedSource(_WatchedSource):
    async def acquire(self, key: str, token: str) -> bool | None:  # type: ignore[override]
        taken = await self.source.acquire(key, token)
        if taken is False and not self.logged:
            self.logged.add(0)
            append_line(self.path, "lock")
        return taken


@contextlib.contextmanager
def watch_waiters(run_dir: str) -> Iterator[None]:
    """In this process, log every caller of `cold`/`cold_async_shared` that starts waiting.

    Threads waiting on the in-process flight and callers polling another
    process's lock each add a line to the run's `waiting` file.
    """
    path = os.path.join(run_dir, "waiting")

    class LoggingEvent(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            append_line(path, "flight")
            return super().wait(timeout)

    class LoggingFlight(flight_module._Flight):
        def __init__(self) -> None:
            super().__init__()
            self.done = LoggingEvent()

    original_flight = flight_module._Flight
    sync_flight = cold.memoized.flight
    async_flight = cold_async_shared.memoized.async_flight
    sources = (sync_flight.source, async_flight.source)
    flight_module._Flight = LoggingFlight  # type: ignore[misc]
    sync_flight.source = _WatchedSource(sources[0], path)
    async_flight.source = _AsyncWatchedSource(sources[1], path)
    try:
        yield
    finally:
        flight_module._Flight = original_flight  # type: ignore[misc]
        sync_flight.source, async_flight.source = sources


def call_cold_together(
    run_dir: str, callers: int, threads: int, gate_address: str | None = None
) -> list[tuple[str, int, int]]:
    """Call `cold` from `threads` threads released together (by a Barrier, or a Gate)."""
    barrier = threading.Barrier(threads)

    def one(i: int) -> tuple[str, int, int]:
        if gate_address is None:
            barrier.wait(DEADLINE)
        else:
            gate_wait(gate_address)
        append_line(os.path.join(run_dir, "arrived"))
        return cold(run_dir, callers)

    with watch_waiters(run_dir):
        return run_threads(threads, one)


def test_32_threads_on_a_cold_key_run_the_body_once(backend: BackendConfig, run_dir: str) -> None:
    before = counter("executions")
    results = call_cold_together(run_dir, 32, 32)
    assert len(read_lines(os.path.join(run_dir, "arrived"))) == 32
    assert len(read_lines(os.path.join(run_dir, "waiting"))) == 31  # all waited for the one
    assert len(executions(run_dir)) == 1
    assert counter("executions") - before == 1
    assert len(set(results)) == 1  # every caller got the one computed value
    assert results[0][:2] == ("cold", os.getpid())
    assert cold(run_dir, 32) == results[0]  # and it is what is cached
    assert default_cache().lock_owner(cold.key(run_dir, 32)) is None


@pytest.mark.backends(*CROSS_PROCESS)
def test_4_processes_x_16_threads_on_a_cold_key_run_the_body_once(
    backend: BackendConfig, children: Callable[[int], list[BoundWorker]], run_dir: str
) -> None:
    workers = children(4)
    with Gate() as gate:
        pending = [w.submit(call_cold_together, run_dir, 64, 16, gate.address) for w in workers]
        gate.wait_arrivals(64)  # every thread of every process is at the gate
        gate.open()
        results = [r for p in pending for r in p.result(DEADLINE)]
    assert len(read_lines(os.path.join(run_dir, "arrived"))) == 64
    waiting = Counter(read_lines(os.path.join(run_dir, "waiting")))
    # 15 threads per process waited on their process's flight; the three other
    # processes' leaders polled the shared lock.
    assert waiting == {"flight": 60, "lock": 3}, waiting
    runs = executions(run_dir)
    assert len(runs) == 1, f"the body ran {len(runs)} times: {runs}"
    assert len(results) == 64
    assert set(results) == {results[0]}
    pid = results[0][1]
    assert pid in {w.pid for w in workers}
    assert runs == [(pid, results[0][2])]
    assert cold(run_dir, 64) == results[0]  # the parent reads the value the children share


# -- 2. serve stale while one caller refreshes ----------------------------------------------

#: Per process and per run directory: the address of the Gate a refresh waits at.
_HOLD: dict[str, str] = {}


@cache_function(300, stale=300, wait=60)
def versioned(run_dir: str) -> int:
    """Returns its execution number; a refresh waits at this run's gate when one is set."""
    version = record_execution(run_dir)
    address = _HOLD.get(run_dir)
    if address is not None:
        gate_wait(address)
    return version


def set_hold(run_dir: str, address: str | None) -> None:
    if address is None:
        _HOLD.pop(run_dir, None)
    else:
        _HOLD[run_dir] = address


class _Load:
    """Threads of one process calling `versioned` without pause until told to stop."""

    def __init__(self, run_dir: str, count: int) -> None:
        self.run_dir = run_dir
        self.stop = threading.Event()
        self.calls = [0] * count
        self.last: list[int | None] = [None] * count
        self.seen = [Counter() for _ in range(count)]  # type: list[Counter[int]]
        self.idents = [0] * count
        self.errors: list[str] = []
        self.threads = [
            threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(count)
        ]
        for thread in self.threads:
            thread.start()

    def _loop(self, i: int) -> None:
        self.idents[i] = threading.get_ident()
        try:
            while not self.stop.is_set():
                value = versioned(self.run_dir)
                self.seen[i][value] += 1
                self.last[i] = value
                self.calls[i] += 1
        except BaseException as exc:
            self.errors.append(repr(exc))
        finally:
            connections.close_all()

    def progress(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "threads": [
                (self.idents[i], self.calls[i], self.last[i]) for i in range(len(self.threads))
            ],
            "errors": list(self.errors),
        }


_LOADS: dict[str, _Load] = {}


def start_load(run_dir: str, count: int) -> int:
    _LOADS[run_dir] = _Load(run_dir, count)
    return os.getpid()


def load_progress(run_dir: str) -> dict[str, Any]:
    return _LOADS[run_dir].progress()


def stop_load(run_dir: str) -> dict[str, Any]:
    load = _LOADS.pop(run_dir)
    load.stop.set()
    for thread in load.threads:
        thread.join(DEADLINE)
    _HOLD.pop(run_dir, None)
    report = load.progress()
    report["seen"] = [dict(c) for c in load.seen]
    report["hung"] = sum(t.is_alive() for t in load.threads)
    return report


def stop_load_quietly(run_dir: str) -> None:
    if run_dir in _LOADS:
        stop_load(run_dir)
    _HOLD.pop(run_dir, None)


def expire_now(key: str) -> None:
    """Make the stored entry stale (past fresh, inside its stale window), as time would."""
    store = default_cache()
    entry = store.get_entry(key)
    assert entry is not None and entry.stale_until is not None
    now = time.time()
    store.set_entry(key, entry._replace(fresh_until=now - 1), entry.stale_until - now)


@pytest.mark.backends("db-sqlite", "memcached", "redis")
def test_stale_refreshes_once_per_expiry_while_every_other_caller_gets_the_old_value(
    backend: BackendConfig, children: Callable[[int], list[BoundWorker]], run_dir: str
) -> None:
    workers = children(3)
    assert versioned(run_dir) == 1  # the first fill, from the parent
    key = versioned.key(run_dir)
    for worker in workers:
        worker.run(start_load, run_dir, 3)

    def progress() -> list[dict[str, Any]]:
        return [w.run(load_progress, run_dir) for w in workers]

    def everyone_sees(version: int) -> bool:
        return all(last == version for report in progress() for _, _, last in report["threads"])

    try:
        wait_until(lambda: everyone_sees(1), "every load thread read version 1")
        for refresh in (1, 2, 3):
            with Gate() as gate:
                for worker in workers:
                    worker.run(set_hold, run_dir, gate.address)
                expire_now(key)
                gate.wait_arrivals(1)  # one caller, in some child, refreshes: held here
                runs = executions(run_dir)
                assert len(runs) == refresh + 1, f"refresh {refresh}: the body ran {runs}"
                refresher = runs[-1]
                assert refresher[0] in {w.pid for w in workers}

                # While the refresh is held, every other caller keeps getting
                # answers (the old value) from its own thread: nobody blocks.
                before = {
                    (r["pid"], ident): calls for r in progress() for ident, calls, _ in r["threads"]
                }

                def all_made_progress(
                    refresher: tuple[int, int] = refresher,
                    refresh: int = refresh,
                    before: dict[tuple[int, int], int] = before,
                ) -> bool:
                    reports = progress()
                    for report in reports:
                        for ident, calls, last in report["threads"]:
                            if (report["pid"], ident) == refresher:
                                continue
                            assert last == refresh, "a caller got something but the old value"
                            if calls < before[(report["pid"], ident)] + 3:
                                return False
                    return True

                wait_until(
                    all_made_progress, "every caller returned 3 more times during the refresh"
                )
                assert len(executions(run_dir)) == refresh + 1  # no second refresh meanwhile
                gate.open()
            new = refresh + 1
            wait_until(lambda new=new: everyone_sees(new), f"every caller read version {new}")
        reports = [w.run(stop_load, run_dir) for w in workers]
    finally:
        # Never leave load threads running in a pooled worker (a failed test).
        for worker in workers:
            if worker.worker.alive and not worker.worker.busy:
                worker.run(stop_load_quietly, run_dir)
    assert len(executions(run_dir)) == 4  # the fill and exactly one run per refresh
    for report in reports:
        assert report["errors"] == [] and report["hung"] == 0
        for seen in report["seen"]:
            assert set(seen) <= {1, 2, 3, 4}
    assert versioned(run_dir) == 4


@pytest.mark.backends("locmem", "memcached", "redis")
def test_stale_with_background_the_trigger_gets_the_old_value_at_once(
    backend: BackendConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    refresher = flight_module.Refresher(workers=1, backlog=4)
    monkeypatch.setattr(flight_module, "refresher", refresher)
    runs: list[int] = []
    entered = threading.Event()
    release = threading.Event()

    @cache_function(300, stale=300, background=True)
    def report() -> str:
        runs.append(threading.get_ident())
        if len(runs) > 1:
            entered.set()
            assert release.wait(DEADLINE)
        return f"v{len(runs)}"

    assert report() == "v1"
    key = report.key()
    expire_now(key)
    try:
        # The trigger returns the stale value while its refresh is still held
        # (were it waiting for the refresh, this call could never return).
        assert call_within(report, 10) == "v1"
        assert entered.wait(DEADLINE)
        assert runs[-1] != threading.get_ident()
        assert default_cache().lock_owner(key) is not None  # the refresh holds the lock
        assert [report() for _ in range(10)] == ["v1"] * 10
        assert len(runs) == 2
    finally:
        release.set()
    refresher._pool.shutdown(wait=True)  # type: ignore[union-attr]
    assert report() == "v2"
    assert len(runs) == 2
    assert default_cache().lock_owner(key) is None


# -- 3. the lock holder dies ------------------------------------------------------------------

#: Per process: run directories whose body kills its process while holding the lock.
_DIE_IN: set[str] = set()


@cache_function(300, wait=20, lock_timeout=2)
def fragile(run_dir: str) -> tuple[str, int]:
    record_execution(run_dir)
    if run_dir in _DIE_IN:
        os._exit(1)  # dies holding the lock: no release, no exception
    return ("computed", os.getpid())


def arm_death(run_dir: str) -> None:
    _DIE_IN.add(run_dir)


@pytest.mark.backends("db-sqlite", "db-postgres", "memcached", "redis")
def test_lock_holder_killed_another_caller_takes_over_after_the_lock_timeout(
    backend: BackendConfig, child: BoundWorker, run_dir: str
) -> None:
    key = fragile.key(run_dir)
    child.run(arm_death, run_dir)
    with pytest.raises(ChildError, match="exited with 1"):
        child.submit(fragile, run_dir).result(DEADLINE)
    owner = default_cache().lock_owner(key)
    assert owner is not None and owner.startswith(f"{child.pid}-")  # the dead process holds it
    assert not is_cached(key)
    timeouts = counter("wait_timeouts")

    assert call_within(lambda: fragile(run_dir), DEADLINE) == ("computed", os.getpid())
    assert counter("wait_timeouts") == timeouts  # taken over through the lock, not the wait bound
    assert [pid for pid, _ in executions(run_dir)] == [child.pid, os.getpid()]
    assert default_cache().lock_owner(key) is None
    assert fragile(run_dir) == ("computed", os.getpid())
    assert len(executions(run_dir)) == 2


@pytest.mark.backends("db-sqlite", "db-postgres")
def test_expired_lock_is_taken_over_by_exactly_one_of_two_racing_callers(
    backend: BackendConfig,
) -> None:
    # A dead holder left its lock row behind, expired. Two waiters see it
    # expired at the same moment (both have read it before either writes):
    # exactly one of them may take the lock over.
    store = default_cache()
    key = "takeover::lock"
    stored = store.adapter.lock_key(key)
    made = backend.cache.make_key(stored)
    backend.cache.set(stored, "dead-holder", -5)  # the row stays, expired
    barrier = threading.Barrier(2)
    met: set[int] = set()

    def meet_after_reading_the_lock(
        execute: Any, sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        result = execute(sql, params, many, context)
        ident = threading.get_ident()
        if (
            sql.lstrip().upper().startswith("SELECT")
            and made in list(params or ())
            and ident not in met
        ):
            met.add(ident)
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(5)
        return result

    def take(i: int) -> bool | None:
        with connections[backend.cache_db].execute_wrapper(meet_after_reading_the_lock):
            return store.lock_acquire(key, f"waiter-{i}", 30)

    results = run_threads(2, take)
    assert sorted(results, key=repr) == [False, True], results
    assert store.lock_owner(key) == f"waiter-{results.index(True)}"


# -- 4. the body raises -----------------------------------------------------------------------


class Boom(Exception):
    pass


class _WaitTally:
    """Counts threads waiting on another thread's in-process flight (see `waiting`)."""

    def __init__(self) -> None:
        self.value = 0
        self.cond = threading.Condition()

    def add(self) -> None:
        with self.cond:
            self.value += 1
            self.cond.notify_all()

    def wait_for(self, count: int) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: self.value >= count, DEADLINE), (
                f"only {self.value} of {count} callers wait on the flight"
            )


@pytest.fixture
def waiting(monkeypatch: pytest.MonkeyPatch) -> _WaitTally:
    """Makes the in-process flight count the threads that wait on it."""
    tally = _WaitTally()

    class CountingEvent(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            tally.add()
            return super().wait(timeout)

    class WatchedFlight(flight_module._Flight):
        def __init__(self) -> None:
            super().__init__()
            self.done = CountingEvent()

    monkeypatch.setattr(flight_module, "_Flight", WatchedFlight)
    return tally


@pytest.mark.backends("locmem", "db-sqlite", "memcached", "redis")
def test_body_raises_nothing_cached_lock_released_at_once(backend: BackendConfig) -> None:
    runs: list[int] = []

    @cache_function(300, wait=60)
    def fails_once(x: int) -> int:
        runs.append(x)
        if len(runs) == 1:
            raise Boom
        return x * 10

    key = fails_once.key(1)
    with pytest.raises(Boom):
        fails_once(1)
    assert default_cache().lock_owner(key) is None
    assert default_cache().get_entry(key) is None
    # With the lock left behind, this call would wait up to 60 s: it computes at once.
    assert call_within(lambda: fails_once(1), 10) == 10
    assert runs == [1, 1]
    assert fails_once(1) == 10
    assert runs == [1, 1]


@pytest.mark.backends("locmem", "db-sqlite", "memcached", "redis")
def test_body_raises_waiting_threads_do_not_hang_one_takes_over(
    backend: BackendConfig, waiting: _WaitTally
) -> None:
    runs: list[int] = []
    entered = threading.Event()
    release = threading.Event()

    @cache_function(300, wait=60)
    def fails_first() -> tuple[str, int]:
        runs.append(threading.get_ident())
        if len(runs) == 1:
            entered.set()
            assert release.wait(DEADLINE)
            raise Boom
        return ("ok", len(runs))

    def call(i: int) -> Any:
        if i == 0:
            try:
                return fails_first()
            except Boom as exc:
                return exc
        assert entered.wait(DEADLINE)
        return fails_first()

    def release_when_all_wait() -> None:
        waiting.wait_for(7)
        release.set()

    releaser = threading.Thread(target=release_when_all_wait, daemon=True)
    releaser.start()
    try:
        results = run_threads(8, call)
    finally:
        release.set()
        releaser.join(DEADLINE)
    assert isinstance(results[0], Boom)
    assert results[1:] == [("ok", 2)] * 7
    assert len(runs) == 2  # the failure and one retry, not one per waiter
    assert default_cache().lock_owner(fails_first.key()) is None


#: Per process: run directories whose first `flaky` call fails after its release.
_FLAKY_HOLD: dict[str, tuple[threading.Event, threading.Event]] = {}


@cache_function(300, wait=60)
def flaky(run_dir: str) -> tuple[str, int]:
    number = record_execution(run_dir)
    hold = _FLAKY_HOLD.get(run_dir)
    if hold is not None and number == 1:
        entered, release = hold
        entered.set()
        assert release.wait(DEADLINE)
        raise Boom
    return ("flaky", os.getpid())


def report_polls(run_dir: str | None) -> None:
    """In a child: make `flaky`'s waiter log each pause of its backoff (None: stop)."""
    flight = flaky.memoized.flight
    if run_dir is None:
        flight.sleep = time.sleep
        return

    def sleep(seconds: float) -> None:
        append_line(os.path.join(run_dir, "polls"))
        time.sleep(seconds)

    flight.sleep = sleep


@pytest.mark.backends("db-sqlite", "memcached", "redis")
def test_body_raises_a_waiter_in_another_process_takes_over(
    backend: BackendConfig, child: BoundWorker, run_dir: str
) -> None:
    entered, release = threading.Event(), threading.Event()
    _FLAKY_HOLD[run_dir] = (entered, release)
    child.run(report_polls, run_dir)
    try:
        box: dict[str, Any] = {}

        def lead() -> None:
            try:
                flaky(run_dir)
            except Boom as exc:
                box["raised"] = exc
            finally:
                connections.close_all()

        leader = threading.Thread(target=lead, daemon=True)
        leader.start()
        assert entered.wait(DEADLINE)
        pending = child.submit(flaky, run_dir)
        # The child found the lock taken and polls for the value.
        assert wait_for_lines(os.path.join(run_dir, "polls"), 1)
        release.set()
        leader.join(DEADLINE)
        assert isinstance(box.get("raised"), Boom)
        assert pending.result(DEADLINE) == ("flaky", child.pid)
    finally:
        release.set()
        _FLAKY_HOLD.pop(run_dir, None)
        if child.worker.alive and not child.worker.busy:
            child.run(report_polls, None)
    assert [pid for pid, _ in executions(run_dir)] == [os.getpid(), child.pid]
    assert flaky(run_dir) == ("flaky", child.pid)
    assert default_cache().lock_owner(flaky.key(run_dir)) is None


# -- 5. the wait bound -------------------------------------------------------------------------


def test_lock_held_by_a_foreign_token_that_never_finishes_wait_bound_computes(
    backend: BackendConfig,
) -> None:
    runs: list[int] = []

    @cache_function(300, wait=0.3, lock_timeout=120)
    def blocked(x: int) -> int:
        runs.append(x)
        return x + 1

    store = default_cache()
    key = blocked.key(1)
    assert store.lock_acquire(key, "foreign-token", 120) is True
    before = counter("wait_timeouts")
    assert call_within(lambda: blocked(1), DEADLINE) == 2
    assert counter("wait_timeouts") == before + 1
    assert runs == [1]
    assert store.lock_owner(key) == "foreign-token"  # a caller that gives up steals nothing
    assert blocked(1) == 2  # what it computed was stored
    assert runs == [1]
    assert store.lock_release(key, "foreign-token") is True


# -- 6. backend outage -------------------------------------------------------------------------


@pytest.mark.backends("memcached", "redis")
def test_outage_decorated_function_computes_without_waiting(
    backend: BackendConfig, restart_servers: list[Server]
) -> None:
    runs: list[int] = []

    @cache_function(300, wait=60)
    def during_outage(x: int) -> int:
        runs.append(x)
        return x * 3

    @cache_function(300, wait=60)
    async def async_during_outage(x: int) -> int:
        runs.append(-x)
        return x * 4

    before = counter("wait_timeouts")
    for server in restart_servers:
        server.stop()
    # With wait=60, waiting on the lock would take a minute: a 20 s guard is a hang check.
    assert call_within(lambda: during_outage(1), 20) == 3
    assert call_within(lambda: during_outage(1), 20) == 3
    assert call_within(lambda: asyncio.run(async_during_outage(1)), 20) == 4
    assert runs == [1, 1, -1]  # computed each time: nothing could be stored
    assert counter("wait_timeouts") == before


# -- 7. async functions ----------------------------------------------------------------------


def test_async_decorated_function_is_a_coroutine_function() -> None:
    @cache_function(60)
    async def fetch(x: int) -> int:
        return x

    assert inspect.iscoroutinefunction(fetch)
    assert inspect.iscoroutinefunction(fetch.refresh)
    assert fetch.__wrapped__.__name__ == "fetch"
    assert asyncio.run(fetch(2)) == 2


@pytest.mark.backends("locmem", "memcached", "redis")
def test_async_50_tasks_on_a_cold_key_run_the_body_once(backend: BackendConfig) -> None:
    runs: list[int] = []

    async def main() -> list[Any]:
        all_called = asyncio.Event()
        called = 0

        @cache_function(300, wait=60)
        async def cold_async(x: int) -> tuple[int, int]:
            runs.append(x)
            await asyncio.wait_for(all_called.wait(), DEADLINE)
            return (x, len(runs))

        async def task() -> Any:
            nonlocal called
            called += 1
            if called == 50:
                all_called.set()
            return await cold_async(7)

        return await asyncio.gather(*[task() for _ in range(50)])

    before = counter("executions")
    results = asyncio.run(main())
    assert results == [(7, 1)] * 50
    assert runs == [7]
    assert counter("executions") - before == 1


@pytest.mark.backends("locmem", "memcached")
def test_async_calls_never_share_a_django_cache_object_between_threads(
    backend: BackendConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Django's cache objects are per thread: memcached clients are not thread
    # safe, and one shared between threads mixes up replies (a `get` reading
    # another call's "STORED"). The async decorator must not hand the object
    # of one thread to several.
    users: dict[int, set[int]] = {}
    cache_class = type(backend.cache)
    for name in ("get", "get_many", "set", "set_many", "add", "delete", "delete_many"):
        original = getattr(cache_class, name)

        def spy(self: Any, *args: Any, __original: Any = original, **kwargs: Any) -> Any:
            users.setdefault(id(self), set()).add(threading.get_ident())
            return __original(self, *args, **kwargs)

        monkeypatch.setattr(cache_class, name, spy)

    @cache_function(300, wait=60)
    async def shared(x: int) -> int:
        await asyncio.sleep(0)
        return x

    async def main() -> list[int]:
        return await asyncio.gather(*[shared(i % 5) for i in range(50)])

    assert asyncio.run(main()) == [i % 5 for i in range(50)]
    assert users, "no backend call was seen"
    shared_objects = {obj: sorted(threads) for obj, threads in users.items() if len(threads) > 1}
    assert shared_objects == {}


@cache_function(300, wait=60)
async def cold_async_shared(run_dir: str, callers: int, processes: int) -> tuple[str, int]:
    """Holds until every caller has called and the other processes poll its lock."""
    record_execution(run_dir)
    deadline = time.monotonic() + HOLD_LIMIT
    while (
        len(read_lines(os.path.join(run_dir, "arrived"))) < callers
        or len(read_lines(os.path.join(run_dir, "waiting"))) < processes - 1
    ):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.002)
    return ("async", os.getpid())


def gather_cold_async(
    run_dir: str, callers: int, processes: int, tasks: int, gate_address: str
) -> list[Any]:
    """In a child: wait at the gate, then await `cold_async_shared` from `tasks` tasks."""
    gate_wait(gate_address)

    async def main() -> list[Any]:
        async def one() -> Any:
            append_line(os.path.join(run_dir, "arrived"))
            return await cold_async_shared(run_dir, callers, processes)

        return await asyncio.gather(*[one() for _ in range(tasks)])

    with watch_waiters(run_dir):
        return asyncio.run(main())


@pytest.mark.backends("memcached", "redis")
def test_async_gather_in_two_processes_runs_the_body_once(
    backend: BackendConfig, children: Callable[[int], list[BoundWorker]], run_dir: str
) -> None:
    workers = children(2)
    with Gate() as gate:
        pending = [w.submit(gather_cold_async, run_dir, 50, 2, 25, gate.address) for w in workers]
        gate.wait_arrivals(2)
        gate.open()
        results = [r for p in pending for r in p.result(DEADLINE)]
    assert len(results) == 50
    assert set(results) == {results[0]}
    assert results[0][1] in {w.pid for w in workers}
    assert read_lines(os.path.join(run_dir, "waiting")) == ["lock"]  # the other process polled
    assert len(executions(run_dir)) == 1


# -- 8. early refresh ---------------------------------------------------------------------------


@pytest.mark.backends("locmem", "redis")
def test_early_refresh_recomputes_a_costly_value_before_it_expires(
    backend: BackendConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs: list[float] = []

    @cache_function(10, early=1.0)
    def costly() -> int:
        runs.append(time.time())
        threading.Event().wait(0.05)  # the computation's cost, recorded in the entry
        return len(runs)

    assert costly() == 1
    store = default_cache()
    first = store.get_entry(costly.key())
    assert first is not None and first.cost >= 0.05
    flight = costly.memoized.flight
    # draw 0.5: a head start of cost * ln 2 (~0.035 s) is far from the 10 s left.
    monkeypatch.setattr(flight, "draw", lambda: 0.5)
    assert [costly() for _ in range(5)] == [1] * 5
    # A rare draw: cost * -ln(1e-300) (~35 s) exceeds the time left: refresh now.
    monkeypatch.setattr(flight, "draw", lambda: 1e-300)
    assert costly() == 2
    second = store.get_entry(costly.key())
    assert second is not None and second.fresh_until > first.fresh_until
    assert default_cache().lock_owner(costly.key()) is None


@pytest.mark.backends("locmem", "redis")
def test_without_early_a_hit_never_refreshes(
    backend: BackendConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs: list[int] = []

    @cache_function(10)
    def costly() -> int:
        runs.append(1)
        threading.Event().wait(0.05)
        return len(runs)

    def no_draw() -> float:
        raise AssertionError("early refresh is off: nothing may draw")

    monkeypatch.setattr(costly.memoized.flight, "draw", no_draw)
    assert [costly() for _ in range(20)] == [1] * 20
    assert len(runs) == 1


# -- 9. keys: spellings and methods ---------------------------------------------------------------

SPELLINGS: dict[str, Callable[[Callable[..., Any]], Any]] = {
    "positional": lambda f: f(1, 2),
    "keyword": lambda f: f(1, b=2),
    "all keywords": lambda f: f(a=1, b=2),
    "reordered": lambda f: f(b=2, a=1),
    "default": lambda f: f(1),
}


@pytest.mark.backends("locmem", "memcached")
@pytest.mark.parametrize("invalidated_as", list(SPELLINGS))
@pytest.mark.parametrize("called_as", list(SPELLINGS))
def test_invalidate_works_whichever_spelling_was_used(
    backend: BackendConfig, called_as: str, invalidated_as: str
) -> None:
    runs: list[int] = []

    @cache_function
    def f(a: int, b: int = 2) -> int:
        runs.append(a)
        return a + b

    def helper(name: str) -> Callable[..., Any]:
        return getattr(f, name)

    assert SPELLINGS[called_as](f) == 3
    for spelling in SPELLINGS.values():  # every spelling hits the one entry
        assert spelling(f) == 3
    assert runs == [1]
    assert SPELLINGS[invalidated_as](helper("invalidate")) == [f.key(1, 2)]
    assert not is_cached(f.key(1))
    assert SPELLINGS[called_as](f) == 3
    assert runs == [1, 1]


@pytest.mark.backends("locmem")
def test_spellings_share_one_entry_with_keyword_only_and_var_arguments(
    backend: BackendConfig,
) -> None:
    runs: list[Any] = []

    @cache_function
    def g(a: int, /, b: int = 2, *rest: int, c: int = 3, **extra: int) -> int:
        runs.append(a)
        return a + b + c + sum(rest) + sum(extra.values())

    assert g(1) == g(1, 2) == g(1, b=2) == g(1, c=3) == g(1, 2, c=3) == 6
    assert runs == [1]
    g.invalidate(1, b=2, c=3)
    assert not is_cached(g.key(1))
    assert g(1, c=3) == 6
    assert len(runs) == 2
    assert g(1, 2, 4) == g(1, 2, 4) == 10  # extra positionals are another call
    assert g(1, d=1) == g(1, d=1) == 7  # and so are extra keywords
    assert len(runs) == 4


class Account:
    def __init__(self, ident: int) -> None:
        self.ident = ident
        self.runs: list[tuple[int, int]] = []

    def __cache_key__(self) -> int:
        return self.ident

    @cache_function(300)
    def balance(self, currency: str, scale: int = 1) -> tuple[int, str, int, int]:
        self.runs.append((self.ident, scale))
        return (self.ident, currency, scale, len(self.runs))


@pytest.mark.backends("locmem", "redis")
def test_method_helpers_bind_self(backend: BackendConfig) -> None:
    one, two = Account(1), Account(2)
    assert one.balance("EUR") == (1, "EUR", 1, 1)
    assert two.balance("EUR") == (2, "EUR", 1, 1)
    # .key binds self, applies defaults, and accepts any spelling.
    assert one.balance.key("EUR") == one.balance.key(currency="EUR", scale=1)
    assert one.balance.key("EUR") == Account.balance.key(one, "EUR")
    assert one.balance.key("EUR") != two.balance.key("EUR")
    assert Account(1).balance.key("EUR") == one.balance.key("EUR")  # keyed by __cache_key__
    assert is_cached(one.balance.key("EUR"))
    # .invalidate forgets this instance's call only.
    assert one.balance.invalidate(currency="EUR") == [one.balance.key("EUR")]
    assert not is_cached(one.balance.key("EUR"))
    assert is_cached(two.balance.key("EUR"))
    assert one.balance("EUR") == (1, "EUR", 1, 2)
    assert two.balance("EUR") == (2, "EUR", 1, 1)
    # .refresh computes now for this instance and stores it.
    assert one.balance.refresh("EUR") == (1, "EUR", 1, 3)
    assert one.balance("EUR") == (1, "EUR", 1, 3)
    assert two.balance("EUR") == (2, "EUR", 1, 1)
    assert one.runs == [(1, 1)] * 3 and two.runs == [(2, 1)]


class Catalog:
    loads: list[str] = []

    @classmethod
    @cache_function(300)
    def size(cls, section: str) -> int:
        cls.loads.append(section)
        return len(section)


class SubCatalog(Catalog):
    pass


@pytest.mark.backends("locmem", "redis")
def test_classmethod_is_memoized_per_class(backend: BackendConfig) -> None:
    Catalog.loads.clear()
    assert Catalog.size("books") == 5
    assert Catalog.size("books") == 5
    assert Catalog.loads == ["books"]
    # `cls` is part of the key: a subclass gets its own entry.
    assert SubCatalog.size("books") == 5
    assert SubCatalog.size("books") == 5
    assert Catalog.loads == ["books", "books"]


@pytest.mark.backends("locmem", "redis")
def test_disabled_cache_calls_the_body_without_locking(backend: BackendConfig) -> None:
    runs: list[int] = []

    @cache_function(300)
    def plain(x: int) -> int:
        runs.append(x)
        return x

    keyedcache.cache_enable(False)
    store = default_cache()
    store.lock_acquire(plain.key(1), "foreign", 60)  # would block a caching caller
    try:
        assert call_within(lambda: [plain(1), plain(1)], 10) == [1, 1]
    finally:
        store.lock_release(plain.key(1), "foreign")
        keyedcache.cache_enable(True)
    assert runs == [1, 1]
