"""Counters of cache traffic in this process: exact, per key prefix, lock-free on the hot path.

Counting touches memory only: each thread increments lists it alone writes,
one list per top-level key prefix, found through a small per-thread table
keyed by the whole key. This module imports nothing of Django or of the rest
of keyedcache; reporting.py writes the figures to the backend and cluster.py
adds up every process's (see docs/stats.md).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import deque
from collections.abc import Callable

COUNTER_NAMES = (
    "calls",
    "hits",
    "misses",
    "local_hits",
    "sets",
    "deletes",
    "errors",
    "executions",
    "wait_timeouts",
    "decode_errors",
    "waits",
    "breaker_opens",
    "local_misses",
)
(
    CALLS,
    HITS,
    MISSES,
    LOCAL_HITS,
    SETS,
    DELETES,
    ERRORS,
    EXECUTIONS,
    WAIT_TIMEOUTS,
    DECODE_ERRORS,
    WAITS,
    BREAKER_OPENS,
    LOCAL_MISSES,
) = range(len(COUNTER_NAMES))
_INDEX = {name: i for i, name in enumerate(COUNTER_NAMES)}
_WIDTH = len(COUNTER_NAMES)

#: The counters of the per-minute series.
SERIES_NAMES = ("calls", "hits", "misses", "local_hits", "errors")
#: Minutes the series covers.
SERIES_MINUTES = 60

#: Most distinct key prefixes counted per process; the rest are counted as OTHER.
MAX_PREFIXES = 200
OTHER = "(other)"
#: The prefix of counts that concern no key (a delete-all).
NO_KEY = "(no key)"
#: The prefix stats flushes and reads count their failures under.
STATS_PREFIX = "(stats)"
#: Keys each thread remembers the prefix list of (a dict, cleared when full).
KEY_TABLE_SIZE = 2048
#: Prefixes each thread remembers the route of (the admitted ones never exceed MAX_PREFIXES).
_ROUTE_TABLE_SIZE = 4 * MAX_PREFIXES
#: First key segment of memoized functions, whose prefix keeps a second segment.
_FUNC = "func"
#: Set when a flush is wanted; seen by the next count that misses its thread's key table.
_flush_due = [False]


def key_prefix(key: str) -> str:
    """The top-level prefix `key` is counted under.

    The first segment (`product::12` -> `product`), or the first two for
    memoized functions (`func::shop.views.price::(1,)` -> `func::shop.views.price`).
    """
    head, sep, rest = key.partition("::")
    if sep and head == _FUNC:
        return f"{_FUNC}::{rest.partition('::')[0]}"
    return head


class _KeyTable(dict[str | None, list[int]]):
    """One thread's counters: key -> the counter list of its prefix, for recent keys.

    The hot path is one lookup in this dict; a key it does not hold goes to
    `__missing__` (no exception raised). Only the owning thread writes the lists.
    """

    __slots__ = ("__weakref__", "counters", "own", "route")

    def __init__(self, counters: ProcessCounters) -> None:
        super().__init__()
        self.counters = counters
        #: prefix -> counter list of every prefix this thread counted; None until
        #: the thread's first count registers it.
        self.own: dict[str, list[int]] | None = None
        #: prefix -> its counter list (OTHER's list for prefixes over the cap).
        self.route: dict[str, list[int]] = {}

    def __missing__(self, key: str | None) -> list[int]:
        """A key this thread has not counted lately: find its prefix's list, remember it."""
        # key_prefix() inlined: this runs for every key new to the table.
        if key is None:
            prefix = NO_KEY
        else:
            head, sep, rest = key.partition("::")
            prefix = f"{_FUNC}::{rest.partition('::')[0]}" if sep and head == _FUNC else head
        counts = self.route.get(prefix)
        if counts is None:
            counts = self.counters._route(self, prefix)
        if len(self) >= KEY_TABLE_SIZE:
            self.clear()
        self[key] = counts
        if _flush_due[0]:
            self.counters._flush_requested()
        return counts


class ProcessCounters(threading.local):
    """Exact counters for one process, per key prefix, without a lock on the hot path.

    `slots(key)` returns the calling thread's counter list for the prefix of
    `key`, to increment by index (HITS, MISSES, SETS, ...). Each list is
    written by one thread only, so no update is lost; `snapshot` adds up every
    live thread's lists and those of threads that have ended.

    The object is a `threading.local`: `slots` is, in each thread, the bound
    `__getitem__` of that thread's _KeyTable, so a count is one thread-local
    attribute read and one dict lookup in C, with no Python frame. Everything
    else lives in `__slots__`, which a `threading.local` shares between threads.

    `calls` is not incremented on the hot path: every read counts exactly one
    of HITS, LOCAL_HITS, MISSES (the backend had nothing) or LOCAL_MISSES (the
    request scope knew the key absent), so calls is their sum (plus whatever is
    added to the CALLS slot directly, for calls without an outcome).
    """

    __slots__ = (
        "_live",
        "_lock",
        "_mark",
        "_minutes",
        "_prefixes",
        "_retired",
        "max_prefixes",
        "on_first_count",
        "on_flush_due",
    )

    #: In each thread: the counter list of a key's prefix (see the class docstring).
    slots: Callable[[str | None], list[int]]

    def __new__(cls, max_prefixes: int = MAX_PREFIXES) -> ProcessCounters:
        self = super().__new__(cls)
        self._setup(max_prefixes)
        return self

    def __init__(self, max_prefixes: int = MAX_PREFIXES) -> None:
        # Runs once in every thread that uses the object (threading.local).
        self.slots = _KeyTable(self).__getitem__

    def _setup(self, max_prefixes: int) -> None:
        self.max_prefixes = max_prefixes
        self._lock = threading.Lock()
        #: id -> (prefix -> counter list, weak reference to the table) of each live
        #: thread that has counted. Weak: a thread's end frees its table, whose
        #: finalizer folds the lists into _retired.
        self._live: dict[int, tuple[dict[str, list[int]], weakref.ref[_KeyTable]]] = {}
        #: prefix -> totals of threads that have ended.
        self._retired: dict[str, list[int]] = {}
        #: The prefixes counted under their own name (at most max_prefixes).
        self._prefixes: set[str] = set()
        #: Series totals at the last checkpoint, and [minute, *series] buckets.
        self._mark = [0] * len(SERIES_NAMES)
        self._minutes: deque[list[int]] = deque(maxlen=SERIES_MINUTES + 1)
        #: Called when a thread counts for the first time.
        self.on_first_count: Callable[[], None] | None = None
        #: Called by the first counting thread that sees a requested flush.
        self.on_flush_due: Callable[[], None] | None = None

    # -- the hot path is `slots` (see the class docstring) and _KeyTable.__missing__ --

    def _flush_requested(self) -> None:
        _flush_due[0] = False
        hook = self.on_flush_due
        if hook is not None:
            hook()

    def _register(self, table: _KeyTable) -> None:
        own: dict[str, list[int]] = {}
        with self._lock:
            table.own = own
            self._live[id(table)] = (own, weakref.ref(table))
        weakref.finalize(table, self._retire, id(table))
        hook = self.on_first_count
        if hook is not None:
            hook()

    def _route(self, table: _KeyTable, prefix: str) -> list[int]:
        """The counter list of `prefix` in `table` (registering the thread on its first count)."""
        if table.own is None:
            self._register(table)
        with self._lock:
            name = prefix
            if name not in self._prefixes:
                if len(self._prefixes) < self.max_prefixes:
                    self._prefixes.add(name)
                else:
                    name = OTHER
            own = table.own
            assert own is not None
            counts = own.get(name)
            if counts is None:
                counts = own[name] = [0] * _WIDTH
        if len(table.route) >= _ROUTE_TABLE_SIZE:
            table.route.clear()
        table.route[prefix] = counts
        return counts

    def _retire(self, ident: int) -> None:
        with self._lock:
            found = self._live.pop(ident, None)
            if found is not None:
                for prefix, counts in found[0].items():
                    total = self._retired.get(prefix)
                    if total is None:
                        self._retired[prefix] = list(counts)
                    else:
                        for i, value in enumerate(counts):
                            total[i] += value

    def add(self, name: str, amount: int = 1, key: str | None = None) -> None:
        """Add `amount` to the counter `name`, for the prefix of `key`."""
        self.slots(key)[_INDEX[name]] += amount

    # -- reading --------------------------------------------------------------

    def _lists(self) -> list[tuple[str, list[int]]]:
        """Every (prefix, counter list) of this process; call with the lock held."""
        found = list(self._retired.items())
        for own, _table in list(self._live.values()):
            found.extend(own.items())
        return found

    @staticmethod
    def _figures(counts: list[int]) -> dict[str, int]:
        figures = dict(zip(COUNTER_NAMES, counts, strict=True))
        figures["calls"] += (
            figures["hits"] + figures["local_hits"] + figures["misses"] + figures["local_misses"]
        )
        return figures

    def snapshot(self) -> dict[str, int]:
        """Return every counter summed over this process's threads and prefixes."""
        with self._lock:
            return self._snapshot()

    def _snapshot(self) -> dict[str, int]:
        totals = [0] * _WIDTH
        for _prefix, counts in self._lists():
            for i, value in enumerate(counts):
                totals[i] += value
        return self._figures(totals)

    def by_prefix(self) -> dict[str, dict[str, int]]:
        """Return {prefix: {counter: value}} for this process (over the cap: OTHER)."""
        merged: dict[str, list[int]] = {}
        with self._lock:
            for prefix, counts in self._lists():
                total = merged.get(prefix)
                if total is None:
                    merged[prefix] = list(counts)
                else:
                    for i, value in enumerate(counts):
                        total[i] += value
        return {prefix: self._figures(counts) for prefix, counts in merged.items() if any(counts)}

    def checkpoint(self, now: float | None = None) -> dict[str, int]:
        """Add what was counted since the last checkpoint to the current minute; return totals."""
        minute = int((time.time() if now is None else now) // 60)
        with self._lock:
            totals = self._snapshot()
            current = [totals[name] for name in SERIES_NAMES]
            delta = [max(c - m, 0) for c, m in zip(current, self._mark, strict=True)]
            self._mark = current
            if any(delta):
                if self._minutes and self._minutes[-1][0] == minute:
                    bucket = self._minutes[-1]
                    for i, value in enumerate(delta, 1):
                        bucket[i] += value
                else:
                    self._minutes.append([minute, *delta])
        return totals

    def minutes(self) -> dict[int, list[int]]:
        """{minute number (Unix time // 60): [calls, hits, misses, local_hits, errors]}."""
        with self._lock:
            return {bucket[0]: list(bucket[1:]) for bucket in self._minutes}

    # -- control --------------------------------------------------------------

    def reset(self) -> None:
        """Set every counter (and the minute series) back to 0, in every thread.

        The prefix cap starts afresh too: the next MAX_PREFIXES prefixes counted
        get rows of their own.

        Meant for tests and a quiet moment: an increment racing with the reset
        in another thread may survive it.
        """
        with self._lock:
            self._retired = {}
            self._prefixes = set()  # the cap counts afresh
            tables = []
            for own, ref in self._live.values():
                for counts in own.values():
                    counts[:] = [0] * _WIDTH
                tables.append(ref())
            self._mark = [0] * len(SERIES_NAMES)
            self._minutes.clear()
        for table in tables:
            if table is not None:
                table.route.clear()
                table.clear()

    def request_flush(self) -> None:
        """Have the next thread that counts call `on_flush_due` (free for the hot path).

        Every thread's key table is emptied, so each thread's next count goes
        through `_KeyTable.__missing__`, where the request is seen.
        """
        _flush_due[0] = True
        with self._lock:
            tables = [ref() for _own, ref in self._live.values()]
        for table in tables:
            if table is not None:
                table.clear()

    def _after_fork(self) -> None:
        # The child starts from zero: its record must not repeat the parent's counts.
        self._lock = threading.Lock()
        self.reset()
        _flush_due[0] = False


counters = ProcessCounters()


def hit_rate(figures: dict[str, int]) -> float | None:
    """(hits + local_hits) / calls, or None before the first call."""
    calls = figures.get("calls", 0)
    if not calls:
        return None
    return (figures.get("hits", 0) + figures.get("local_hits", 0)) / calls
