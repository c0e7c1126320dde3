"""This process's stats record: the ticker that times flushes, the flush, fork and exit hooks.

A daemon "ticker" thread takes a checkpoint of the counters every second for
the per-minute series and, every KEYEDCACHE_STATS_FLUSH_INTERVAL seconds (or
after a few hundred operations), asks for a flush; the next counted operation
then writes this process's record (its totals, prefixes and minutes) under its
own key in the `<namespace>-stats` namespace of the keyedcache alias, through
the registry's stats cache and the outage guard. cluster.py adds the records up.
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
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from keyedcache import conf
from keyedcache.breaker import disabled
from keyedcache.counters import SERIES_MINUTES, STATS_PREFIX, counters
from keyedcache.guard import Guard
from keyedcache.registry import stats_cache

log = logging.getLogger("keyedcache")

#: Seconds between two checkpoints of the ticker thread.
TICK = 1.0
#: Format of a process record; a record of another format is ignored.
RECORD_FORMAT = 1
#: The logical keys of process records (in the `<namespace>-stats` namespace).
RECORD_ROOT = "proc"


def _record_ttl() -> float:
    ttl = conf.stats_ttl()
    return float("inf") if ttl is None else ttl


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
        #: Failed stats writes and reads: counted under STATS_PREFIX, a warning a minute.
        self.guard = Guard(
            "(stats)",
            warn_every=self.warn_every,
            warning="keyedcache: could not %(operation)s (%(kind)s: %(error)s); the figures "
            "stay in memory and are written at the next flush",
            # Its failures are not the alias's: flushes skip an alias whose breaker is open.
            breaker=disabled("(stats)"),
        )

    def _new_identity(self) -> None:
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.token = secrets.token_hex(4)
        self.key = f"{RECORD_ROOT}::{self.host}:{self.pid}:{self.token}"
        self.started = time.time()
        #: When this process's record was last written (None: never).
        self.flushed: float | None = None
        #: When this process exited (its last record says so; None: running).
        self.finished: float | None = None
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
        operations = conf.stats_flush_operations()
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
                ttl = conf.stats_ttl()
            except Exception as exc:
                self.failed("prepare the stats flush", exc)
                return False
            if target is None or target.guard.breaker.is_open:
                return False
            record = self.record()
            written = self.guard.call(
                f"write this process's stats to cache alias {target.alias!r}",
                STATS_PREFIX,
                False,
                target.write_record,
                self.key,
                record,
                ttl,
            )
            if not written:
                return False
            self.flushed = record["flushed"]
            self.flushed_total = sum(record["counters"].values())
            self.flushed_calls = record["counters"]["calls"]
            return True
        finally:
            self.lock.release()

    def failed(self, what: str, exc: BaseException) -> None:
        """Count a failed stats write or read as an error; warn at most once a minute."""
        self.guard.failed(what, STATS_PREFIX, exc)

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
            "finished": self.finished,
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
        return conf.stats_flush_interval()
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


def _flush_setting_changed(setting: str) -> None:
    if setting == "KEYEDCACHE_STATS_FLUSH_INTERVAL" and counters._live:
        _first_count()


conf.on_change(_flush_setting_changed)


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
    """At exit, write this process's last record, marked finished.

    Its figures still count in the cluster's totals until the record expires
    (KEYEDCACHE_STATS_TTL), but stats() no longer lists it as a process: a
    `manage.py` run is not a worker.
    """
    try:
        if flush_interval() is None:
            return
    except Exception:  # an invalid setting: no automatic flush
        return
    counted: int = sum(counters.snapshot().values())
    if counted or reporter.flushed is not None:
        reporter.finished = time.time()
        reporter.flush(blocking=False)


atexit.register(_flush_at_exit)


def flush() -> bool:
    """Write this process's record to the backend now; say whether it was written."""
    return reporter.flush(blocking=True)
