"""Single flight: one computation per key across threads, tasks and processes (storage-agnostic)."""

from __future__ import annotations

import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from keyedcache.entry import Entry
from keyedcache.tokens import Backoff, new_token

log = logging.getLogger("keyedcache")

# The algorithm below knows nothing of caches: a Source loads entries, saves
# values and holds token locks. memoize.py binds it to a KeyedCache.


class Source(Protocol):
    """What single flight needs from storage."""

    def load(self, key: str) -> Entry | None:
        """The stored entry, fresh or stale, or None."""

    def load_basis(self, key: str) -> tuple[Entry | None, Any]:
        """`load`, plus an opaque basis read before computing, for `save`."""

    def save(self, key: str, value: Any, cost: float, basis: Any = None) -> None:
        """Store a computed value that took `cost` seconds.

        `basis` is what `load_basis` returned before the computation: storage
        uses it so that a value computed before an invalidation is never
        stored as current. None: computed without such a read.
        """

    def acquire(self, key: str, token: str) -> bool | None:
        """Take the key's lock; False when someone holds it, None when storage is down."""

    def release(self, key: str, token: str) -> None:
        """Release the key's lock if `token` holds it."""


class AsyncSource(Protocol):
    """The async twin of Source."""

    async def load(self, key: str) -> Entry | None: ...
    async def load_basis(self, key: str) -> tuple[Entry | None, Any]: ...
    async def save(self, key: str, value: Any, cost: float, basis: Any = None) -> None: ...
    async def acquire(self, key: str, token: str) -> bool | None: ...
    async def release(self, key: str, token: str) -> None: ...


@dataclass(frozen=True)
class Policy:
    """How callers of one memoized function share work."""

    #: Longest a caller waits for another's computation before computing itself.
    wait: float = 30.0
    #: Refresh stale values off the caller's path (thread pool, or a task for async).
    background: bool = False
    #: XFetch beta for probabilistic early refresh; None turns it off.
    early: float | None = None
    #: First and longest pause between two looks at the backend while waiting.
    poll_first: float = 0.005
    poll_max: float = 0.1


def refresh_early(entry: Entry, now: float, beta: float, draw: float) -> bool:
    """XFetch (Vattani et al., VLDB 2015): refresh before expiry with rising probability.

    `draw` is uniform in (0, 1]. A value that took `cost` seconds to compute
    is refreshed at `now` when `now + cost * beta * -ln(draw)` reaches its
    fresh-until time, so slow values and near expiries refresh sooner.
    """
    if entry.fresh_until is None or entry.cost <= 0:
        return False
    return now - entry.cost * beta * math.log(draw) >= entry.fresh_until


def _written_since(latest: Entry | None, seen: Entry | None, now: float) -> bool:
    """Tell whether a fresh entry replaced `seen` (None: nothing was there) meanwhile.

    Checked right after taking the lock: the previous holder may have stored
    the value between our miss and our lock, and computing it again would
    break "one computation per key".
    """
    if latest is None or not latest.is_fresh(now):
        return False
    return seen is None or latest.fresh_until != seen.fresh_until


def _servable(entry: Entry | None, now: float) -> bool:
    """Tell whether a waiter may return `entry`: fresh, or stale within its window.

    A Source may return an entry past its stale window (the backend drops it
    a little later, or another machine's clock runs behind ours): a waiter
    must keep waiting for the new value rather than return that one.
    """
    return entry is not None and (entry.stale_until is None or entry.stale_until > now)


def _draw() -> float:
    return 1.0 - random.random()  # in (0, 1]: log() needs it non-zero


class _Flight:
    """One in-process computation that other threads of this process wait for."""

    __slots__ = ("done", "ok", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False
        self.value: Any = None


class Refresher:
    """A small bounded pool that runs background refreshes for one process."""

    def __init__(self, workers: int = 2, backlog: int = 32) -> None:
        self._workers = workers
        self._backlog = backlog
        self._reset()

    def _reset(self) -> None:
        self._slots = threading.BoundedSemaphore(self._backlog)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def submit(self, job: Callable[[], Any]) -> bool:
        """Run `job` in the pool; False (and nothing runs) when the backlog is full."""
        if not self._slots.acquire(blocking=False):
            return False
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._workers, "keyedcache-refresh")
            pool = self._pool
        slots = self._slots

        def run() -> None:
            try:
                job()
            except Exception:
                # Nobody waits on a background refresh: say it failed here.
                log.warning("keyedcache: a background refresh failed", exc_info=True)
            finally:
                slots.release()

        pool.submit(run)
        return True


refresher = Refresher()

# A forked child (gunicorn --preload, multiprocessing) inherits the parent's
# pool object but not its threads: give it a fresh one.
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=refresher._reset)


class SingleFlight:
    """Serve `key` from the source, computing it once however many callers ask."""

    def __init__(
        self,
        source: Source,
        policy: Policy,
        *,
        on_wait_timeout: Callable[[], None] = lambda: None,
        on_refresh_error: Callable[[], None] = lambda: None,
        on_wait: Callable[[str, float, bool], None] = lambda key, seconds, timed_out: None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        draw: Callable[[], float] = _draw,
    ) -> None:
        self.source = source
        self.policy = policy
        self.on_wait_timeout = on_wait_timeout
        self.on_refresh_error = on_refresh_error
        #: Called with (key, seconds, timed_out) after waiting for another's computation.
        self.on_wait = on_wait
        self.clock = clock
        self.sleep = sleep
        self.draw = draw
        self._flights: dict[str, _Flight] = {}
        self._flights_lock = threading.Lock()

    def get(
        self,
        key: str,
        compute: Callable[[], Any],
        entry: Entry | None = None,
        *,
        loaded: bool = False,
    ) -> Any:
        """Return the value for `key`, computing it at most once across callers.

        `entry` is what the caller already loaded (with `loaded=True`, None
        means it found nothing, so the source is not read again).
        """
        if entry is None and not loaded:
            entry = self.source.load(key)
        if entry is not None:
            now = self.clock()
            fresh = entry.is_fresh(now)
            early = self.policy.early
            if fresh and (early is None or not refresh_early(entry, now, early, self.draw())):
                return entry.value
            if entry.stale_until is None or entry.stale_until > now:
                return self._refresh(key, compute, entry)
        return self._fill(key, compute)

    # -- a value exists: one caller refreshes, the others are served it ----------

    def _refresh(self, key: str, compute: Callable[[], Any], entry: Entry) -> Any:
        token = new_token(with_pid=True)
        if not self.source.acquire(key, token):
            return entry.value  # someone refreshes it now (or storage is down)
        if self.policy.background:
            if refresher.submit(lambda: self._background(key, compute, token, entry)):
                return entry.value
            self.source.release(key, token)
            return entry.value
        return self._compute_then_release(key, compute, token, entry)

    def _background(
        self, key: str, compute: Callable[[], Any], token: str, seen: Entry | None
    ) -> None:
        try:
            self._compute_then_release(key, compute, token, seen)
        except Exception:
            self.on_refresh_error()
            raise  # the Refresher logs it

    def _compute_then_release(
        self, key: str, compute: Callable[[], Any], token: str, seen: Entry | None
    ) -> Any:
        try:
            # Read before computing: what the computation starts from is the
            # basis its result is stored under (see Source.save).
            latest, basis = self.source.load_basis(key)
            if _written_since(latest, seen, self.clock()):
                return latest.value  # type: ignore[union-attr]
            return self._compute_and_save(key, compute, basis)
        finally:
            self.source.release(key, token)

    def _compute_and_save(self, key: str, compute: Callable[[], Any], basis: Any = None) -> Any:
        started = time.perf_counter()
        value = compute()
        self.source.save(key, value, time.perf_counter() - started, basis)
        return value

    # -- nothing stored: one caller fills it, the others wait for it -------------

    def _fill(self, key: str, compute: Callable[[], Any]) -> Any:
        deadline = self.clock() + self.policy.wait
        while True:
            with self._flights_lock:
                flight = self._flights.get(key)
                leader = flight is None
                if flight is None:
                    flight = self._flights[key] = _Flight()
            if leader:
                return self._lead(key, compute, flight, deadline)
            # Another thread of this process computes it: wait on its event.
            waited = time.perf_counter()
            if not flight.done.wait(max(deadline - self.clock(), 0)):
                self.on_wait(key, time.perf_counter() - waited, True)
                self.on_wait_timeout()
                return self._compute_and_save(key, compute)
            self.on_wait(key, time.perf_counter() - waited, False)
            if flight.ok:
                return flight.value
            # The leader failed: loop, and one of the waiters takes over.

    def _lead(self, key: str, compute: Callable[[], Any], flight: _Flight, deadline: float) -> Any:
        try:
            flight.value = self._fill_across_processes(key, compute, deadline)
            flight.ok = True
            return flight.value
        finally:
            with self._flights_lock:
                del self._flights[key]
            flight.done.set()

    def _fill_across_processes(self, key: str, compute: Callable[[], Any], deadline: float) -> Any:
        backoff = Backoff(self.policy.poll_first, self.policy.poll_max, deadline, clock=self.clock)
        waited: float | None = None  # when this caller began waiting for another process
        while True:
            token = new_token(with_pid=True)
            acquired = self.source.acquire(key, token)
            if acquired is None:
                return compute()  # storage is down: just compute (saving would fail too)
            if acquired:
                if waited is not None:  # the other process gave up its lock: our turn
                    self.on_wait(key, time.perf_counter() - waited, False)
                return self._compute_then_release(key, compute, token, None)
            # Another process computes it: look for its value with a bounded backoff.
            waited = time.perf_counter() if waited is None else waited
            pause = backoff.next_pause()
            if pause is None:
                self.on_wait(key, time.perf_counter() - waited, True)
                self.on_wait_timeout()
                return self._compute_and_save(key, compute)
            self.sleep(pause)
            entry = self.source.load(key)
            if _servable(entry, self.clock()):
                self.on_wait(key, time.perf_counter() - waited, False)
                return entry.value  # type: ignore[union-attr]
