"""Counters of cache traffic, kept per process in memory (no backend call on the hot path)."""

from __future__ import annotations

import threading
from collections import Counter

COUNTER_NAMES = (
    "calls",
    "hits",
    "misses",
    "local_hits",
    "sets",
    "deletes",
    "errors",
    "executions",
)


class ProcessCounters:
    """Counters for one process; increments are plain dict updates under the GIL."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def add(self, name: str, amount: int = 1) -> None:
        """Add `amount` to the counter `name`."""
        # Counter += under the GIL can lose an update only across a thread switch
        # inside the bytecode pair; exact totals matter, so take the lock.
        with self._lock:
            self.counts[name] += amount

    def snapshot(self) -> dict[str, int]:
        """Return a copy of every counter, the absent ones as 0."""
        with self._lock:
            return {name: self.counts.get(name, 0) for name in COUNTER_NAMES}

    def reset(self) -> None:
        """Set every counter back to 0."""
        with self._lock:
            self.counts.clear()


counters = ProcessCounters()
