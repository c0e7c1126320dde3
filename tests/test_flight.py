"""keyedcache.flight, the single-flight algorithm, against an in-memory Source and a fake clock.

No cache and no Django here: a FakeSource holds entries and token locks whose
expiry follows a FakeClock, and the flight's `sleep` advances that clock, so
every poll loop, lock expiry and wait bound is deterministic and instant.
Threads are only used where the algorithm itself coordinates threads (the
in-process flight); they are held with Events, and the tests wait for
*state* (how many threads wait on the flight) rather than for time.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from keyedcache import flight as flight_module
from keyedcache.aflight import AsyncSingleFlight
from keyedcache.entry import Entry
from keyedcache.flight import (
    Policy,
    Refresher,
    SingleFlight,
    refresh_early,
)

T0 = 1_000_000.0  # the fake clock's start
JOIN = 10.0  # hang guard for threads (never reached when the code works)


# -- fakes --------------------------------------------------------------------


class FakeClock:
    """A clock that moves only when told to (or when the flight "sleeps")."""

    def __init__(self, now: float = T0) -> None:
        self.now = now
        self.pauses: list[float] = []
        #: Called after each sleep with the number of sleeps so far.
        self.on_sleep: Callable[[int], None] = lambda n: None

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.pauses.append(seconds)
        self.now += seconds
        self.on_sleep(len(self.pauses))


class RealClock(FakeClock):
    """The wall clock, for the asyncio flight (its poll pauses are real)."""

    def __call__(self) -> float:
        import time

        return time.time()


class FakeSource:
    """Entries and token locks in dicts; lock expiry and freshness follow `clock`."""

    def __init__(
        self, clock: FakeClock, *, fresh: float = 60.0, stale: float = 0.0, lock_ttl: float = 30.0
    ) -> None:
        self.clock = clock
        self.fresh = fresh
        self.stale = stale
        self.lock_ttl = lock_ttl
        self.entries: dict[str, Entry] = {}
        self.locks: dict[str, tuple[str, float]] = {}
        self.down = False
        self.loads = 0
        self.saves: list[tuple[str, Any, float]] = []
        self.acquired: list[str] = []
        self.released: list[str] = []
        self._mutex = threading.Lock()

    # Source protocol
    def load(self, key: str) -> Entry | None:
        self.loads += 1
        if self.down:
            return None
        return self.entries.get(key)

    def load_basis(self, key: str) -> tuple[Entry | None, Any]:
        return self.load(key), None

    def save(self, key: str, value: Any, cost: float, basis: Any = None) -> None:
        if self.down:
            return
        now = self.clock()
        with self._mutex:
            self.saves.append((key, value, cost))
            self.entries[key] = Entry(value, now + self.fresh, now + self.fresh + self.stale, cost)

    def acquire(self, key: str, token: str) -> bool | None:
        if self.down:
            return None
        with self._mutex:
            held = self.locks.get(key)
            if held is not None and held[1] > self.clock():
                return False
            self.locks[key] = (token, self.clock() + self.lock_ttl)
            self.acquired.append(token)
            return True

    def release(self, key: str, token: str) -> None:
        with self._mutex:
            held = self.locks.get(key)
            if held is not None and held[0] == token:
                del self.locks[key]
                self.released.append(token)

    # helpers for the tests
    def owner(self, key: str) -> str | None:
        held = self.locks.get(key)
        return held[0] if held is not None and held[1] > self.clock() else None

    def hold(self, key: str, token: str = "foreign", ttl: float = 1e9) -> None:
        """Another process takes the lock (it holds it `ttl` seconds unless released)."""
        self.locks[key] = (token, self.clock() + ttl)

    def put(
        self, key: str, value: Any, *, fresh_for: float, stale_for: float = 0.0, cost: float = 0.0
    ) -> Entry:
        now = self.clock()
        entry = Entry(value, now + fresh_for, now + fresh_for + stale_for, cost)
        self.entries[key] = entry
        return entry


class AsyncFakeSource:
    """The async face of a FakeSource."""

    def __init__(self, sync: FakeSource) -> None:
        self.sync = sync

    async def load(self, key: str) -> Entry | None:
        await asyncio.sleep(0)  # a real backend call yields to the loop
        return self.sync.load(key)

    async def load_basis(self, key: str) -> tuple[Entry | None, Any]:
        return await self.load(key), None

    async def save(self, key: str, value: Any, cost: float, basis: Any = None) -> None:
        await asyncio.sleep(0)
        self.sync.save(key, value, cost)

    async def acquire(self, key: str, token: str) -> bool | None:
        await asyncio.sleep(0)
        return self.sync.acquire(key, token)

    async def release(self, key: str, token: str) -> None:
        await asyncio.sleep(0)
        self.sync.release(key, token)


class Tally:
    """A thread-safe counter one can wait on (for a state, not for time)."""

    def __init__(self) -> None:
        self.value = 0
        self._cond = threading.Condition()

    def add(self) -> int:
        with self._cond:
            self.value += 1
            self._cond.notify_all()
            return self.value

    def wait_for(self, count: int, timeout: float = JOIN) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self.value >= count, timeout):
                raise AssertionError(f"only {self.value} of {count} reached the point")


class Body:
    """A compute function: counts its runs, can be held on an Event, can raise."""

    def __init__(
        self,
        value: Any = "computed",
        *,
        hold: bool = False,
        raise_on: set[int] | frozenset[int] = frozenset(),
    ) -> None:
        self.value = value
        self.runs = Tally()
        self.entered = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self.raise_on = raise_on
        self.threads: list[int] = []

    def __call__(self) -> Any:
        run = self.runs.add()
        self.threads.append(threading.get_ident())
        self.entered.set()
        assert self.release.wait(JOIN), "the test never released the body"
        if run in self.raise_on:
            raise Boom(run)
        return (self.value, run)


class Boom(Exception):
    pass


class WaitCounter:
    """Counts on_wait_timeout calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


def never_draw() -> float:
    raise AssertionError("draw() must not be called without early refresh")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def source(clock: FakeClock) -> FakeSource:
    return FakeSource(clock)


@pytest.fixture
def timeouts() -> WaitCounter:
    return WaitCounter()


def make_flight(
    source: FakeSource,
    clock: FakeClock,
    timeouts: WaitCounter | None = None,
    draw: Callable[[], float] = never_draw,
    **policy: Any,
) -> SingleFlight:
    return SingleFlight(
        source,
        Policy(**policy),
        on_wait_timeout=timeouts or WaitCounter(),
        clock=clock,
        sleep=clock.sleep,
        draw=draw,
    )


@pytest.fixture
def waiting(monkeypatch: pytest.MonkeyPatch) -> Tally:
    """Counts threads that wait on another thread's in-process flight.

    Replaces the flight's in-process record with one whose `done` event
    counts the threads that wait on it, so a test can hold a leader until
    all its followers are really waiting for it.
    """
    tally = Tally()

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


class Threads:
    """Start callers in threads; collect what each returned or raised."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.results: dict[int, Any] = {}
        self.errors: dict[int, BaseException] = {}

    def start(self, target: Callable[[], Any]) -> int:
        index = len(self.threads)

        def run() -> None:
            try:
                self.results[index] = target()
            except BaseException as exc:
                self.errors[index] = exc

        thread = threading.Thread(target=run, daemon=True)
        self.threads.append(thread)
        thread.start()
        return index

    def join(self) -> None:
        for thread in self.threads:
            thread.join(JOIN)
        hung = [t for t in self.threads if t.is_alive()]
        assert not hung, f"{len(hung)} caller(s) hang"


@pytest.fixture
def threads() -> Iterator[Threads]:
    started = Threads()
    yield started
    started.join()


# -- refresh_early (XFetch) ------------------------------------------------------


def test_refresh_early_needs_a_cost_and_an_expiry():
    assert not refresh_early(Entry("v", T0 + 1, T0 + 1, 0.0), T0, 1.0, 1e-300)
    assert not refresh_early(Entry("v", None, None, 100.0), T0, 1.0, 1e-300)


def test_refresh_early_without_luck_refreshes_only_at_expiry():
    # draw == 1: -ln(1) == 0, so no head start at all.
    entry = Entry("v", T0 + 5, T0 + 5, 100.0)
    assert not refresh_early(entry, T0 + 4.999, 1.0, 1.0)
    assert refresh_early(entry, T0 + 5, 1.0, 1.0)


def test_refresh_early_head_start_is_cost_times_beta_times_minus_log_draw():
    draw = math.exp(-1.0)  # -ln(draw) == 1: the head start is cost * beta
    entry = Entry("v", T0 + 10, T0 + 10, 2.0)
    assert refresh_early(entry, T0 + 8.01, 1.0, draw)  # 1.99 s left < 2 s head start
    assert not refresh_early(entry, T0 + 7.99, 1.0, draw)  # 2.01 s left
    assert refresh_early(entry, T0 + 6.01, 2.0, draw)  # beta 2: a 4 s head start
    assert not refresh_early(entry, T0 + 6.01, 0.5, draw)  # beta 0.5: 1 s
    # A small draw (rare) gives a long head start; slower values start sooner.
    assert refresh_early(entry, T0, 1.0, math.exp(-6.0))
    assert refresh_early(Entry("v", T0 + 10, T0 + 10, 20.0), T0, 1.0, draw)


def test_default_draw_is_in_the_half_open_unit_interval():
    draws = [flight_module._draw() for _ in range(2000)]
    assert all(0.0 < d <= 1.0 for d in draws)
    assert len(set(draws)) > 1900


# -- miss and hit -------------------------------------------------------------------


def test_miss_computes_once_saves_with_cost_and_releases_the_lock(source, clock, timeouts):
    body = Body()
    flight = make_flight(source, clock, timeouts)
    assert flight.get("k", body) == ("computed", 1)
    assert body.runs.value == 1
    [(key, value, cost)] = source.saves
    assert (key, value) == ("k", ("computed", 1))
    assert cost >= 0.0
    assert source.owner("k") is None
    assert source.acquired == source.released and len(source.acquired) == 1
    assert clock.pauses == []
    assert timeouts.calls == 0
    assert flight._flights == {}
    # ... and now it is a hit.
    assert flight.get("k", body) == ("computed", 1)
    assert body.runs.value == 1


def test_fresh_hit_touches_neither_lock_nor_draw(source, clock):
    source.put("k", "cached", fresh_for=10)
    flight = make_flight(source, clock)
    assert flight.get("k", Body()) == "cached"
    assert source.acquired == []


def test_entry_passed_in_is_not_loaded_again(source, clock):
    flight = make_flight(source, clock)
    entry = Entry("given", T0 + 10, T0 + 10, 0.0)
    assert flight.get("k", Body(), entry, loaded=True) == "given"
    assert source.loads == 0


def test_loaded_none_means_a_miss_without_a_second_read(source, clock):
    source.put("k", "would-be-hit", fresh_for=10)
    flight = make_flight(source, clock)
    body = Body()
    # The caller says it found nothing: the flight does not read before
    # locking, only after (to see whether the value arrived meanwhile).
    flight.get("k", body, None, loaded=True)
    assert source.loads == 1


def test_value_stored_between_our_miss_and_our_lock_is_not_computed_again(source, clock):
    # Our read missed; the previous lock holder stored the value before we
    # took the lock. Computing again would break "one computation per key".
    flight = make_flight(source, clock)
    source.put("k", "theirs", fresh_for=10)
    body = Body()
    assert flight.get("k", body, None, loaded=True) == "theirs"
    assert body.runs.value == 0
    assert source.owner("k") is None


# -- threads of one process ----------------------------------------------------------


def test_one_leader_computes_while_threads_wait_on_its_flight(source, clock, waiting, threads):
    body = Body(hold=True)
    flight = make_flight(source, clock)
    for _ in range(8):
        threads.start(lambda: flight.get("k", body))
    waiting.wait_for(7)  # seven followers wait on the leader's in-process event
    assert body.runs.value == 1
    body.release.set()
    threads.join()
    assert threads.errors == {}
    assert set(threads.results.values()) == {("computed", 1)}
    assert body.runs.value == 1
    # Only the leader went to the shared lock: followers never poll the backend.
    assert len(source.acquired) == 1
    assert clock.pauses == []
    assert flight._flights == {}


def test_flights_of_different_keys_do_not_wait_for_each_other(source, clock, threads):
    slow = Body("slow", hold=True)
    fast = Body("fast")
    flight = make_flight(source, clock)
    threads.start(lambda: flight.get("slow", slow))
    assert slow.entered.wait(JOIN)
    assert flight.get("fast", fast) == ("fast", 1)
    slow.release.set()


def test_leader_failure_raises_to_it_and_one_follower_takes_over(source, clock, waiting, threads):
    body = Body(hold=True, raise_on={1})
    flight = make_flight(source, clock)
    leader = threads.start(lambda: flight.get("k", body))
    assert body.entered.wait(JOIN)
    for _ in range(5):
        threads.start(lambda: flight.get("k", body))
    waiting.wait_for(5)
    body.release.set()
    threads.join()
    assert isinstance(threads.errors.pop(leader), Boom)
    assert threads.errors == {}
    assert set(threads.results.values()) == {("computed", 2)}
    assert body.runs.value == 2  # the failed run and exactly one retry
    assert source.owner("k") is None
    assert [s[1] for s in source.saves] == [("computed", 2)]


def test_follower_waits_at_most_wait_then_computes_itself(
    source, clock, timeouts, waiting, threads
):
    # The leader is stuck (held); the follower's wait bound is tiny. The
    # in-process wait is a real Event wait, so `wait` is real seconds here.
    stuck = Body("stuck", hold=True)
    flight = make_flight(source, clock, timeouts, wait=0.05)
    threads.start(lambda: flight.get("k", stuck))
    assert stuck.entered.wait(JOIN)
    mine = Body("mine")
    try:
        assert flight.get("k", mine) == ("mine", 1)
        assert waiting.value == 1
        assert timeouts.calls == 1
        assert mine.runs.value == 1
        assert ("k", ("mine", 1)) in [(k, v) for k, v, _ in source.saves]
    finally:
        stuck.release.set()


# -- other processes (the shared lock) ------------------------------------------------


def test_lock_held_elsewhere_waiter_polls_with_backoff_and_gets_their_value(
    source, clock, timeouts
):
    source.hold("k")

    def other_process_finishes(sleeps: int) -> None:
        if sleeps == 6:
            source.put("k", "theirs", fresh_for=60)
            source.release("k", "foreign")

    clock.on_sleep = other_process_finishes
    body = Body()
    flight = make_flight(source, clock, timeouts, poll_first=0.01, poll_max=0.05)
    assert flight.get("k", body) == "theirs"
    assert body.runs.value == 0
    assert timeouts.calls == 0
    # Doubling from poll_first, capped at poll_max.
    assert clock.pauses == pytest.approx([0.01, 0.02, 0.04, 0.05, 0.05, 0.05])


def test_lock_freed_without_a_value_lets_the_waiter_compute(source, clock, timeouts):
    # The other process failed: it released its lock and stored nothing.
    source.hold("k")
    clock.on_sleep = lambda n: source.release("k", "foreign") if n == 2 else None
    body = Body()
    flight = make_flight(source, clock, timeouts)
    assert flight.get("k", body) == ("computed", 1)
    assert len(clock.pauses) == 2
    assert timeouts.calls == 0
    assert source.owner("k") is None


def test_dead_holder_lock_expires_and_a_waiter_takes_over(source, clock, timeouts):
    # The holder died: its lock is never released, only its timeout frees it.
    source.hold("k", "dead-process", ttl=1.0)
    body = Body()
    flight = make_flight(source, clock, timeouts, wait=30)
    assert flight.get("k", body) == ("computed", 1)
    assert timeouts.calls == 0  # taken over through the lock, not by giving up
    assert 1.0 <= sum(clock.pauses) < 1.2
    assert source.owner("k") is None
    assert [s[1] for s in source.saves] == [("computed", 1)]


def test_wait_bound_on_a_lock_that_never_frees_computes_and_counts(source, clock, timeouts):
    source.hold("k", "forever")
    body = Body()
    flight = make_flight(source, clock, timeouts, wait=2.0)
    assert flight.get("k", body) == ("computed", 1)
    assert timeouts.calls == 1
    assert sum(clock.pauses) == pytest.approx(2.0)  # the last pause is cut to the bound
    assert source.owner("k") == "forever"  # a waiter that gives up steals nothing
    assert [s[1] for s in source.saves] == [("computed", 1)]


def test_waiter_does_not_take_an_expired_value_for_the_new_one(source, clock, timeouts):
    # The old entry outlives its expiry in the backend (memcached keeps whole
    # seconds) while another process recomputes it: a waiter polling for the
    # new value must not return the expired one instead.
    source.put("k", "expired", fresh_for=-5)
    source.hold("k")

    def other_process_finishes(sleeps: int) -> None:
        if sleeps == 3:
            source.put("k", "new", fresh_for=60)
            source.release("k", "foreign")

    clock.on_sleep = other_process_finishes
    flight = make_flight(source, clock, timeouts)
    body = Body()
    assert flight.get("k", body) == "new"
    assert body.runs.value == 0
    assert len(clock.pauses) == 3


def test_source_down_computes_at_once_without_waiting(source, clock, timeouts):
    source.down = True
    body = Body()
    flight = make_flight(source, clock, timeouts, wait=60)
    assert flight.get("k", body) == ("computed", 1)
    assert clock.pauses == []
    assert timeouts.calls == 0
    assert source.saves == []


def test_source_down_with_a_stale_entry_serves_it(source, clock):
    flight = make_flight(source, clock)
    stale = Entry("old", T0 - 1, T0 + 60, 0.1)
    source.down = True
    body = Body()
    assert flight.get("k", body, stale, loaded=True) == "old"
    assert body.runs.value == 0


# -- failures -------------------------------------------------------------------------------


def test_exception_propagates_releases_the_lock_and_caches_nothing(source, clock):
    body = Body(raise_on={1})
    flight = make_flight(source, clock)
    with pytest.raises(Boom):
        flight.get("k", body)
    assert source.owner("k") is None
    assert source.released == source.acquired
    assert source.saves == []
    assert flight._flights == {}
    assert flight.get("k", body) == ("computed", 2)  # at once: nothing left to wait for
    assert clock.pauses == []


def test_exception_in_a_stale_refresh_releases_the_lock_and_keeps_the_stale_value(source, clock):
    source.put("k", "old", fresh_for=-1, stale_for=60)
    body = Body(raise_on={1})
    flight = make_flight(source, clock)
    with pytest.raises(Boom):
        flight.get("k", body)
    assert source.owner("k") is None
    assert source.entries["k"].value == "old"
    assert flight.get("k", body) == ("computed", 2)


# -- stale while revalidate -------------------------------------------------------------------


def test_stale_value_one_caller_refreshes_the_others_get_it_at_once(source, clock, threads):
    source.put("k", "old", fresh_for=-1, stale_for=60)
    body = Body(hold=True)
    flight = make_flight(source, clock)
    refresher = threads.start(lambda: flight.get("k", body))
    assert body.entered.wait(JOIN)
    try:
        # While the refresh is held, every other caller returns the stale
        # value on its own thread: none of them blocks on the refresh.
        for _ in range(20):
            assert flight.get("k", Body("never")) == "old"
        assert body.runs.value == 1
    finally:
        body.release.set()
    threads.join()
    assert threads.results[refresher] == ("computed", 1)
    assert source.entries["k"].value == ("computed", 1)
    assert source.owner("k") is None
    assert flight.get("k", body) == ("computed", 1)


def test_stale_value_with_the_lock_held_elsewhere_is_served_without_computing(source, clock):
    source.put("k", "old", fresh_for=-1, stale_for=60)
    source.hold("k")
    body = Body()
    flight = make_flight(source, clock)
    assert flight.get("k", body) == "old"
    assert body.runs.value == 0
    assert clock.pauses == []


def test_stale_refresh_skips_the_body_when_someone_refreshed_meanwhile(source, clock):
    seen = Entry("old", T0 - 1, T0 + 60, 0.1)
    source.put("k", "refreshed", fresh_for=60)  # written after our read
    body = Body()
    flight = make_flight(source, clock)
    assert flight.get("k", body, seen, loaded=True) == "refreshed"
    assert body.runs.value == 0


def test_past_the_stale_window_callers_wait_like_on_a_miss(source, clock, timeouts):
    source.put("k", "too-old", fresh_for=-10, stale_for=5)  # dropped 5 s ago
    source.hold("k")
    clock.on_sleep = lambda n: (
        (source.put("k", "new", fresh_for=60), source.release("k", "foreign")) if n == 2 else None
    )
    body = Body()
    flight = make_flight(source, clock, timeouts)
    assert flight.get("k", body) == "new"
    assert body.runs.value == 0
    assert len(clock.pauses) == 2


# -- background refresh -------------------------------------------------------------------------


@pytest.fixture
def pool(monkeypatch: pytest.MonkeyPatch) -> Iterator[Refresher]:
    """A private refresher pool (one worker, backlog of one) for the test."""
    refresher = Refresher(workers=1, backlog=1)
    monkeypatch.setattr(flight_module, "refresher", refresher)
    yield refresher
    if refresher._pool is not None:
        refresher._pool.shutdown(wait=True)


def test_background_refresh_returns_the_stale_value_to_the_trigger_too(source, clock, pool):
    source.put("k", "old", fresh_for=-1, stale_for=60)
    body = Body(hold=True)
    flight = make_flight(source, clock, background=True)
    try:
        assert flight.get("k", body) == "old"  # returned while the body is held
        assert body.entered.wait(JOIN)
        assert body.threads[0] != threading.get_ident()  # ran off the caller's thread
        assert source.owner("k") is not None  # the refresh holds the lock
        assert flight.get("k", body) == "old"
        assert body.runs.value == 1
    finally:
        body.release.set()
    pool._pool.shutdown(wait=True)  # type: ignore[union-attr]
    assert source.entries["k"].value == ("computed", 1)
    assert source.owner("k") is None


def test_background_refresh_with_a_full_backlog_serves_stale_and_frees_the_lock(
    source, clock, pool
):
    source.put("a", "old-a", fresh_for=-1, stale_for=60)
    source.put("b", "old-b", fresh_for=-1, stale_for=60)
    held = Body(hold=True)
    flight = make_flight(source, clock, background=True)
    try:
        assert flight.get("a", held) == "old-a"
        assert held.entered.wait(JOIN)
        skipped = Body()
        assert flight.get("b", skipped) == "old-b"
        assert skipped.runs.value == 0
        assert source.owner("b") is None  # not left locked for nobody
    finally:
        held.release.set()


def test_background_refresh_failure_releases_the_lock(source, clock, pool):
    source.put("k", "old", fresh_for=-1, stale_for=60)
    body = Body(raise_on={1})
    flight = make_flight(source, clock, background=True)
    assert flight.get("k", body) == "old"
    pool._pool.shutdown(wait=True)  # type: ignore[union-attr]
    assert body.runs.value == 1
    assert source.owner("k") is None
    assert source.entries["k"].value == "old"


# -- early refresh ---------------------------------------------------------------------------------


def test_early_refresh_with_a_small_draw_recomputes_a_fresh_value(source, clock):
    source.put("k", "current", fresh_for=5, cost=10.0)
    body = Body()
    flight = make_flight(source, clock, early=1.0, draw=lambda: 1e-9)
    assert flight.get("k", body) == ("computed", 1)
    assert body.runs.value == 1
    assert source.entries["k"].value == ("computed", 1)
    assert source.owner("k") is None


def test_early_refresh_with_draw_one_waits_for_expiry(source, clock):
    source.put("k", "current", fresh_for=5, cost=10.0)
    body = Body()
    flight = make_flight(source, clock, early=1.0, draw=lambda: 1.0)
    assert flight.get("k", body) == "current"
    assert body.runs.value == 0


def test_early_refresh_is_off_by_default(source, clock):
    source.put("k", "current", fresh_for=0.001, cost=1000.0)
    body = Body()
    flight = make_flight(source, clock, draw=never_draw)  # early=None
    assert all(flight.get("k", body) == "current" for _ in range(50))
    assert body.runs.value == 0


def test_early_refresh_while_another_caller_refreshes_serves_the_current_value(source, clock):
    source.put("k", "current", fresh_for=5, cost=10.0)
    source.hold("k")
    body = Body()
    flight = make_flight(source, clock, early=1.0, draw=lambda: 1e-9)
    assert flight.get("k", body) == "current"
    assert body.runs.value == 0


def test_early_refresh_in_the_background_returns_the_current_value(source, clock, pool):
    source.put("k", "current", fresh_for=5, cost=10.0)
    body = Body()
    flight = make_flight(source, clock, early=1.0, background=True, draw=lambda: 1e-9)
    assert flight.get("k", body) == "current"
    pool._pool.shutdown(wait=True)  # type: ignore[union-attr]
    assert body.runs.value == 1
    assert source.entries["k"].value == ("computed", 1)


# -- the asyncio twin ---------------------------------------------------------------------


def make_async_flight(
    source: FakeSource,
    timeouts: WaitCounter | None = None,
    draw: Callable[[], float] = never_draw,
    clock: Callable[[], float] | None = None,
    **policy: Any,
) -> AsyncSingleFlight:
    return AsyncSingleFlight(
        AsyncFakeSource(source),
        Policy(**policy),
        on_wait_timeout=timeouts or WaitCounter(),
        clock=clock or source.clock,
        draw=draw,
    )


class AsyncBody:
    def __init__(self, value: Any = "computed", raise_on: frozenset[int] = frozenset()) -> None:
        self.value = value
        self.runs = 0
        self.release = asyncio.Event()
        self.raise_on = raise_on

    async def __call__(self) -> Any:
        self.runs += 1
        run = self.runs
        await self.release.wait()
        if run in self.raise_on:
            raise Boom(run)
        return (self.value, run)


def test_async_many_tasks_one_computation(source):
    flight = make_async_flight(source)

    async def main() -> list[Any]:
        body = AsyncBody()
        tasks = [asyncio.ensure_future(flight.get("k", body)) for _ in range(50)]
        while len(flight._flights) == 0 or body.runs == 0:
            await asyncio.sleep(0)
        for _ in range(20):  # let every task reach its wait on the leader's future
            await asyncio.sleep(0)
        body.release.set()
        results = await asyncio.gather(*tasks)
        assert body.runs == 1
        return results

    results = asyncio.run(main())
    assert set(results) == {("computed", 1)}
    assert len(source.acquired) == 1
    assert source.owner("k") is None
    assert flight._flights == {}


def test_async_leader_failure_lets_one_waiter_take_over(source):
    flight = make_async_flight(source)

    async def main() -> list[Any]:
        body = AsyncBody(raise_on=frozenset({1}))
        tasks = [asyncio.ensure_future(flight.get("k", body)) for _ in range(10)]
        while body.runs == 0:
            await asyncio.sleep(0)
        for _ in range(20):
            await asyncio.sleep(0)
        body.release.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert body.runs == 2
        return results

    results = asyncio.run(main())
    assert sum(isinstance(r, Boom) for r in results) == 1
    assert [r for r in results if not isinstance(r, Boom)] == [("computed", 2)] * 9
    assert source.owner("k") is None


def test_async_source_down_computes_at_once(source, timeouts):
    source.down = True
    flight = make_async_flight(source, timeouts, wait=60)

    async def main() -> Any:
        body = AsyncBody()
        body.release.set()
        return await asyncio.wait_for(flight.get("k", body), JOIN)

    assert asyncio.run(main()) == ("computed", 1)
    assert timeouts.calls == 0
    assert source.saves == []


def test_async_wait_bound_on_a_foreign_lock(source, timeouts):
    import time

    source.hold("k", "forever")
    # Real time here: asyncio.sleep is the poll pause of the async flight.
    flight = make_async_flight(source, timeouts, clock=time.time, wait=0.05)

    async def main() -> Any:
        body = AsyncBody()
        body.release.set()
        return await asyncio.wait_for(flight.get("k", body), JOIN)

    assert asyncio.run(main()) == ("computed", 1)
    assert timeouts.calls == 1
    assert source.owner("k") == "forever"


def test_async_waiter_does_not_take_an_expired_value_for_the_new_one(timeouts):
    import time

    source = FakeSource(RealClock())
    source.put("k", "expired", fresh_for=-5)
    source.hold("k")
    flight = make_async_flight(source, timeouts, clock=time.time, wait=10)

    async def other_process() -> None:
        while source.loads < 3:  # the waiter has looked twice
            await asyncio.sleep(0.001)
        source.put("k", "new", fresh_for=60)
        source.release("k", "foreign")

    async def main() -> Any:
        body = AsyncBody()
        body.release.set()
        other = asyncio.ensure_future(other_process())
        try:
            return await asyncio.wait_for(flight.get("k", body), JOIN), body.runs
        finally:
            other.cancel()

    assert asyncio.run(main()) == ("new", 0)


def test_async_stale_background_refresh_runs_as_a_task(source):
    source.put("k", "old", fresh_for=-1, stale_for=60)
    flight = make_async_flight(source, background=True)

    async def main() -> None:
        body = AsyncBody()
        # Returned before the refresh ran (awaiting it would never return: it is held).
        assert await asyncio.wait_for(flight.get("k", body), JOIN) == "old"
        assert source.owner("k") is not None  # the refresh task holds the lock
        while body.runs == 0:
            await asyncio.sleep(0)
        # The refresh is now held in its task; callers still get the stale value.
        assert await flight.get("k", body) == "old"
        assert body.runs == 1
        assert len(flight._tasks) == 1
        body.release.set()
        (task,) = flight._tasks
        await task
        assert source.entries["k"].value == ("computed", 1)
        assert source.owner("k") is None

    asyncio.run(main())


def test_async_early_refresh_uses_the_draw(source):
    source.put("k", "current", fresh_for=5, cost=10.0)
    flight = make_async_flight(source, early=1.0, draw=lambda: 1e-9)

    async def main() -> Any:
        body = AsyncBody()
        body.release.set()
        return await flight.get("k", body)

    assert asyncio.run(main()) == ("computed", 1)
    late = make_async_flight(source, early=1.0, draw=lambda: 1.0)

    async def again() -> Any:
        body = AsyncBody("again")
        body.release.set()
        return await late.get("k", body)

    assert asyncio.run(again()) == ("computed", 1)  # draw 1.0: no refresh before expiry
