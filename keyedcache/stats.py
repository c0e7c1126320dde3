"""Counters of cache traffic: per process in memory, summed over processes through the backend.

Counting (the hot path) touches memory only: each thread increments lists it
alone writes, one list per top-level key prefix, found through a small
per-thread table keyed by the whole key. A daemon "ticker" thread takes a
checkpoint every second for the per-minute series and, every
KEYEDCACHE_STATS_FLUSH_INTERVAL seconds (or after a few hundred operations),
asks for a flush; the next counted operation then writes this process's record
(its totals, prefixes and minutes) under its own key in the `<namespace>-stats`
namespace of the keyedcache alias. `stats()` adds up every live record.
See docs/stats.md.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import secrets
import socket
import threading
import time
import warnings
import weakref
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

if TYPE_CHECKING:
    from keyedcache.backends import Adapter
    from keyedcache.store import KeyedCache

log = logging.getLogger("keyedcache")

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

#: Seconds between two checkpoints of the ticker thread.
TICK = 1.0
#: Defaults of the settings (see docs/stats.md).
DEFAULT_FLUSH_INTERVAL = 5.0
DEFAULT_FLUSH_OPERATIONS = 500
DEFAULT_RECORD_TTL = 3600.0
#: Format of a process record; a record of another format is ignored.
RECORD_FORMAT = 1
#: The logical keys of process records (in the `<namespace>-stats` namespace).
RECORD_ROOT = "proc"


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
    of HITS, LOCAL_HITS or MISSES, so calls = hits + local_hits + misses (plus
    whatever is added to the CALLS slot directly, for calls without an outcome).
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
        figures["calls"] += figures["hits"] + figures["local_hits"] + figures["misses"]
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


# -- this process's record and the flushes ---------------------------------------------


def _setting(name: str, default: Any) -> Any:
    from django.conf import settings

    return getattr(settings, name, default)


def _record_ttl() -> float:
    ttl = _seconds("KEYEDCACHE_STATS_TTL", DEFAULT_RECORD_TTL)
    return float("inf") if ttl is None else ttl


def _seconds(name: str, default: float) -> float | None:
    """A duration setting in seconds; None or 0 turn the feature off."""
    value = _setting(name, default)
    if value is None or value is False:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{name} must be a number of seconds or None, got {value!r}")
    return float(value) or None


class _Reporter:
    """This process's identity, its flushes and the ticker thread that times them."""

    #: Seconds between two warnings about failed stats writes or reads.
    warn_every = 60.0

    def __init__(self) -> None:
        #: Held while a record is written (one flush at a time).
        self.lock = threading.Lock()
        self._ticker_lock = threading.Lock()
        self._new_identity()
        self.ticker: threading.Thread | None = None
        self.stop = threading.Event()
        self._last_warning = -1e9

    def _new_identity(self) -> None:
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.token = secrets.token_hex(4)
        self.key = f"{RECORD_ROOT}::{self.host}:{self.pid}:{self.token}"
        self.started = time.time()
        #: When this process's record was last written (None: never).
        self.flushed: float | None = None
        #: calls, and the sum of every counter, in the last record written.
        self.flushed_calls = 0
        self.flushed_total = 0
        self.last_attempt = time.monotonic()

    # -- ticker ---------------------------------------------------------------

    def ensure_ticker(self) -> None:
        """Start the daemon ticker thread if this process has none (none survives a fork)."""
        ticker = self.ticker
        if ticker is not None and ticker.is_alive():
            return
        with self._ticker_lock:
            if self.ticker is not None and self.ticker.is_alive():
                return
            self.stop = threading.Event()
            self.ticker = threading.Thread(
                target=self._tick_forever, args=(self.stop,), name="keyedcache-stats", daemon=True
            )
            self.ticker.start()

    def _tick_forever(self, stop: threading.Event) -> None:
        while not stop.wait(TICK):
            try:
                if not self.tick():
                    return  # automatic flushing was turned off (a setting change restarts it)
            except Exception as exc:  # never let the ticker die of a bad moment
                log.debug("keyedcache: stats tick failed: %r", exc)

    def tick(self) -> bool:
        """Take a checkpoint; request a flush when one is due (memory only: no backend call).

        Returns False when automatic flushing is off (KEYEDCACHE_STATS_FLUSH_INTERVAL None).
        """
        totals = counters.checkpoint()
        interval = flush_interval()
        if interval is None:
            return False
        operations = _setting("KEYEDCACHE_STATS_FLUSH_OPERATIONS", DEFAULT_FLUSH_OPERATIONS)
        since = time.monotonic() - self.last_attempt
        if sum(totals.values()) == self.flushed_total:
            # Nothing new: only keep the record alive (it expires after the TTL).
            if self.flushed is not None and since >= max(interval, _record_ttl() / 2):
                counters.request_flush()
            return True
        busy = operations and totals["calls"] - self.flushed_calls >= operations
        if since >= interval or (busy and since >= TICK):
            counters.request_flush()
        return True

    # -- flushing -------------------------------------------------------------

    def auto_flush(self) -> None:
        """Flush requested by the ticker, run by a thread that is counting an operation."""
        self.last_attempt = time.monotonic()
        if flush_interval() is None:
            return  # turned off since the request
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self.flush(blocking=False)
            return
        # An event loop thread must not wait for the backend: flush from a worker thread.
        threading.Thread(
            target=self._flush_and_close, name="keyedcache-stats-flush", daemon=True
        ).start()

    def _flush_and_close(self) -> None:
        try:
            self.flush(blocking=True)
        finally:
            with contextlib.suppress(Exception):
                from django.db import connections

                connections.close_all()  # this thread's connections only

    def flush(self, *, blocking: bool = True) -> bool:
        """Write this process's record now; say whether it was written."""
        if not self.lock.acquire(blocking=blocking):
            return False
        try:
            self.last_attempt = time.monotonic()
            try:
                target = stats_cache()
                ttl = _seconds("KEYEDCACHE_STATS_TTL", DEFAULT_RECORD_TTL)
            except Exception as exc:
                self.failed("prepare the stats flush", exc)
                return False
            if target is None:
                return False
            record = self.record()
            try:
                from keyedcache.entry import make_entry

                adapter = target.adapter
                _seed_generation_tokens(adapter, self.key)
                entry = make_entry(record, ttl, key=adapter.key_to_keep(self.key))
                adapter.set(self.key, entry.pack(), ttl)
            except Exception as exc:
                self.failed(f"write this process's stats to cache alias {target.alias!r}", exc)
                return False
            self.flushed = record["flushed"]
            self.flushed_total = sum(record["counters"].values())
            self.flushed_calls = record["counters"]["calls"]
            return True
        finally:
            self.lock.release()

    def failed(self, what: str, exc: BaseException) -> None:
        """Count a failed stats write or read as an error; warn at most once a minute."""
        counters.slots(STATS_PREFIX)[ERRORS] += 1
        now = time.monotonic()
        if now - self._last_warning >= self.warn_every:
            self._last_warning = now
            log.warning(
                "keyedcache: could not %s (%s: %s); the figures stay in memory and are "
                "written at the next flush",
                what,
                type(exc).__name__,
                exc,
            )
        else:
            log.debug("keyedcache: could not %s: %r", what, exc)

    def record(self) -> dict[str, Any]:
        """This process's figures, as written to the backend (plain, JSON-able data)."""
        now = time.time()
        totals = counters.checkpoint(now)
        return {
            "format": RECORD_FORMAT,
            "id": self.key[len(RECORD_ROOT) + 2 :],
            "host": self.host,
            "pid": self.pid,
            "started": self.started,
            "flushed": now,
            "counters": totals,
            "prefixes": counters.by_prefix(),
            "minutes": {
                str(minute): values
                for minute, values in counters.minutes().items()
                if minute > now // 60 - SERIES_MINUTES
            },
        }

    def after_fork(self) -> None:
        self.lock = threading.Lock()
        self._ticker_lock = threading.Lock()
        self.ticker = None
        self._new_identity()


reporter = _Reporter()


def flush_interval() -> float | None:
    """KEYEDCACHE_STATS_FLUSH_INTERVAL in seconds; None: no automatic flush (nor ticker)."""
    try:
        return _seconds("KEYEDCACHE_STATS_FLUSH_INTERVAL", DEFAULT_FLUSH_INTERVAL)
    except ImproperlyConfigured:  # settings not configured: nowhere to flush to
        return None
    except ValueError as exc:  # never raise into a cache operation: say it, flush by hand
        if not _warned_bad_interval:
            _warned_bad_interval.append(True)
            log.warning("keyedcache: %s; automatic stats flushes are off", exc)
        return None


_warned_bad_interval: list[bool] = []


def _first_count() -> None:
    if flush_interval() is not None:
        reporter.ensure_ticker()


def _flush_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "KEYEDCACHE_STATS_FLUSH_INTERVAL" and counters._live:
        _first_count()


setting_changed.connect(_flush_setting_changed, dispatch_uid="keyedcache.stats.interval")


def _auto_flush() -> None:
    reporter.auto_flush()


counters.on_first_count = _first_count
counters.on_flush_due = _auto_flush


def _after_fork_in_child() -> None:
    counters._after_fork()
    reporter.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _flush_at_exit() -> None:
    """Write the figures counted since the last flush when the interpreter exits."""
    try:
        if flush_interval() is None:
            return
    except Exception:  # an invalid setting: no automatic flush
        return
    total = sum(counters.snapshot().values())
    if total and total != reporter.flushed_total:
        reporter.flush(blocking=False)


atexit.register(_flush_at_exit)


#: The generation token of the stats namespace on backends that use tokens (see below).
STATS_TOKEN = "keyedcache-stats-1"


def _seed_generation_tokens(adapter: Adapter, key: str) -> None:
    """Give the tokens guarding `key` one fixed value, where the adapter uses tokens.

    Adapters for backends that cannot list or delete by prefix (memcached,
    file-based) guard every entry with random generation tokens, created on
    first write with `add`. The file-based cache's `add` is not atomic, so two
    processes flushing for the first time at once could each create a token,
    the later one orphaning the other's record until its next flush. Records
    need no subtree deletes: a fixed token, written by every process alike,
    makes that race harmless.
    """
    gen_keys = getattr(adapter, "gen_keys", None)
    if gen_keys is None:
        return
    cache = adapter.cache
    for gen in gen_keys(key):
        cache.add(gen, STATS_TOKEN, None)


def stats_cache() -> KeyedCache | None:
    """The KeyedCache the process records live in: namespace `<namespace>-stats`.

    On the keyedcache alias, outside the namespace of entries, so key listings
    and delete-all never see the records. None when the alias cannot cache.
    """
    from keyedcache.store import KeyedCache, default_cache

    store = default_cache()
    if not store.backend_enabled:
        return None
    return KeyedCache(store.alias, namespace=f"{store.namespace}-stats")


def flush() -> bool:
    """Write this process's record to the backend now; say whether it was written."""
    return reporter.flush(blocking=True)


# -- the whole cluster -----------------------------------------------------------------


def _read_records(target: KeyedCache) -> list[dict[str, Any]]:
    """Every live process record in `target` (this process's own included)."""
    from keyedcache.entry import is_packed
    from keyedcache.keys import pattern_scan_prefix

    adapter = target.adapter
    names = [
        key
        for key in adapter.list_keys(pattern_scan_prefix(f"{RECORD_ROOT}::*", target.namespace))
        if key.startswith(f"{RECORD_ROOT}::")
    ]
    found: list[dict[str, Any]] = []
    now = time.time()
    for start in range(0, len(names), 500):
        for raw in adapter.get_many(names[start : start + 500]).values():
            if not is_packed(raw) or (raw[2] is not None and raw[2] <= now):
                continue
            record = raw[1]
            if isinstance(record, dict) and record.get("format") == RECORD_FORMAT:
                found.append(record)
    return found


def _add_into(total: dict[str, int], more: dict[str, Any]) -> None:
    for name in COUNTER_NAMES:
        total[name] = total.get(name, 0) + int(more.get(name, 0))


def hit_rate(figures: dict[str, int]) -> float | None:
    """(hits + local_hits) / calls, or None before the first call."""
    calls = figures.get("calls", 0)
    if not calls:
        return None
    return (figures.get("hits", 0) + figures.get("local_hits", 0)) / calls


def stats(*, flush: bool = False) -> dict[str, Any]:
    """Cache figures of every worker process, of this process, per prefix and per minute.

    `totals` adds up the last record of every live process (this one's live
    figures instead of its record): exact once each has flushed. With
    `flush=True` this process writes its record first. When the records
    cannot be read (outage, a backend that cannot list keys), the totals are
    this process's and `cluster` is False. Everything returned is plain,
    JSON-able data; times are Unix timestamps.
    """
    if flush:
        reporter.flush(blocking=True)
    mine = reporter.record()
    mine["current"] = True
    mine["flushed"] = reporter.flushed
    records = [mine]
    cluster = False
    alias = namespace = None
    try:
        target = stats_cache()
        if target is not None:
            alias, namespace = target.alias, target.namespace
            records += [r for r in _read_records(target) if r.get("id") != mine["id"]]
            cluster = True
    except Exception as exc:
        reporter.failed("read the stats of the other processes", exc)

    totals: dict[str, int] = {}
    prefixes: dict[str, dict[str, int]] = {}
    minutes: dict[int, list[int]] = {}
    for record in records:
        _add_into(totals, record.get("counters", {}))
        for prefix, figures in record.get("prefixes", {}).items():
            _add_into(prefixes.setdefault(prefix, {}), figures)
        for minute, values in record.get("minutes", {}).items():
            bucket = minutes.setdefault(int(minute), [0] * len(SERIES_NAMES))
            for i, value in enumerate(values[: len(SERIES_NAMES)]):
                bucket[i] += int(value)

    now = time.time()
    this_minute = int(now // 60)
    empty = [0] * len(SERIES_NAMES)
    series = [
        {"minute": minute * 60, **dict(zip(SERIES_NAMES, minutes.get(minute, empty), strict=True))}
        for minute in range(this_minute - SERIES_MINUTES + 1, this_minute + 1)
    ]
    table = _prefix_table(prefixes)
    processes = sorted(
        (
            {
                "id": record.get("id"),
                "host": record.get("host"),
                "pid": record.get("pid"),
                "started": record.get("started"),
                "flushed": record.get("flushed"),
                "current": bool(record.get("current")),
                **{name: int(record.get("counters", {}).get(name, 0)) for name in COUNTER_NAMES},
            }
            for record in records
        ),
        key=lambda p: (str(p["host"]), int(p["pid"] or 0), str(p["id"])),
    )
    return {
        "totals": totals,
        "hit_rate": hit_rate(totals),
        "process": {
            "id": mine["id"],
            "host": mine["host"],
            "pid": mine["pid"],
            "started": mine["started"],
            "flushed": reporter.flushed,
            "counters": mine["counters"],
            "hit_rate": hit_rate(mine["counters"]),
        },
        "processes": processes,
        "process_count": len(processes),
        "prefixes": table,
        "minutes": series,
        "cluster": cluster,
        "alias": alias,
        "namespace": namespace,
        "time": now,
    }


def _prefix_table(prefixes: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    """Rows sorted by calls, at most MAX_PREFIXES (the rest added into OTHER)."""
    ranked = sorted(
        (item for item in prefixes.items() if item[0] != OTHER),
        key=lambda item: (-item[1].get("calls", 0), item[0]),
    )
    kept = dict(ranked[: MAX_PREFIXES - 1])
    other: dict[str, int] = {}
    for _prefix, figures in [*ranked[MAX_PREFIXES - 1 :], (OTHER, prefixes.get(OTHER, {}))]:
        _add_into(other, figures)
    if any(other.values()):
        kept[OTHER] = other
    rows: list[dict[str, Any]] = [
        {"prefix": prefix, **figures, "hit_rate": hit_rate(figures)}
        for prefix, figures in kept.items()
    ]
    rows.sort(key=lambda row: (-int(row.get("calls", 0)), str(row["prefix"])))
    return rows


# -- the 1.5 module globals --------------------------------------------------------------

DEPRECATED_GLOBALS = {
    "CACHE_CALLS": "keyedcache.stats()['process']['counters']['calls']",
    "CACHE_HITS": "keyedcache.stats()['process']['counters'] (hits + local_hits)",
    "CACHED_KEYS": "keyedcache.cache_keys()",
}


def deprecated_global(name: str) -> Any:
    """The value of a keyedcache 1.5 module global, with a DeprecationWarning.

    Raises AttributeError for any other name (keyedcache's module __getattr__).
    """
    if name not in DEPRECATED_GLOBALS:
        raise AttributeError(f"module 'keyedcache' has no attribute {name!r}")
    warnings.warn(
        f"keyedcache.{name} is deprecated; use {DEPRECATED_GLOBALS[name]}",
        DeprecationWarning,
        stacklevel=3,
    )
    if name == "CACHED_KEYS":
        from keyedcache.store import default_cache

        try:
            return dict.fromkeys(default_cache().keys(), True)
        except NotImplementedError:
            return {}  # a backend keyedcache cannot list keys of
    figures = counters.snapshot()
    if name == "CACHE_CALLS":
        return figures["calls"]
    return figures["hits"] + figures["local_hits"]
