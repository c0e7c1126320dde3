"""Counters of cache traffic, kept per process in memory (no backend call on the hot path)."""

from __future__ import annotations

import threading
import weakref

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


class _Slots:
    """One thread's counters; its death folds them into the retired totals."""

    __slots__ = ("__weakref__", "counts")

    def __init__(self) -> None:
        self.counts = [0] * len(COUNTER_NAMES)


class ProcessCounters:
    """Exact counters for one process without a lock on the hot path.

    Each thread increments its own list (only that thread writes it, so no
    update is lost); `snapshot` adds up every live thread's list and the
    totals of threads that have ended.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self._live: dict[int, list[int]] = {}
        self._retired = [0] * len(COUNTER_NAMES)

    def slots(self) -> list[int]:
        """Return the calling thread's counter list, to increment by index (CALLS, HITS, ...)."""
        try:
            return self._local.slots.counts  # type: ignore[no-any-return]
        except AttributeError:
            return self._register()

    def _register(self) -> list[int]:
        holder = _Slots()
        with self._lock:
            self._live[id(holder)] = holder.counts
        weakref.finalize(holder, self._retire, id(holder))
        self._local.slots = holder
        return holder.counts

    def _retire(self, ident: int) -> None:
        with self._lock:
            counts = self._live.pop(ident, None)
            if counts is not None:
                for i, value in enumerate(counts):
                    self._retired[i] += value

    def add(self, name: str, amount: int = 1) -> None:
        """Add `amount` to the counter `name`."""
        self.slots()[_INDEX[name]] += amount

    def snapshot(self) -> dict[str, int]:
        """Return every counter summed over this process's threads."""
        with self._lock:
            totals = list(self._retired)
            for counts in self._live.values():
                for i, value in enumerate(counts):
                    totals[i] += value
        return dict(zip(COUNTER_NAMES, totals, strict=True))

    def reset(self) -> None:
        """Set every counter back to 0 (for tests and the dashboard's reset button)."""
        with self._lock:
            self._retired = [0] * len(COUNTER_NAMES)
            for counts in self._live.values():
                counts[:] = [0] * len(COUNTER_NAMES)


counters = ProcessCounters()
