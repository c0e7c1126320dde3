"""locmem://: KeyVal stores as dicts in this process's memory."""

from __future__ import annotations

import threading

from keyedcache.contrib.keyval.backends.base import Backend

# Module-level: the data outlives backend objects, which are rebuilt on settings changes.
_LOCMEM: dict[str, dict[str, bytes]] = {}
_LOCMEM_LOCK = threading.Lock()


class LocmemBackend(Backend):
    """A dict in this process: every process has its own stores; gone when it exits."""

    def load(self, store: str, key: str) -> bytes | None:
        with _LOCMEM_LOCK:
            return _LOCMEM.get(store, {}).get(key)

    def save(self, store: str, key: str, data: bytes) -> bool:
        with _LOCMEM_LOCK:
            values = _LOCMEM.setdefault(store, {})
            new = key not in values
            values[key] = data
            return new

    def remove(self, store: str, key: str) -> bool:
        return self.take(store, key) is not None

    def take(self, store: str, key: str) -> bytes | None:
        with _LOCMEM_LOCK:
            return _LOCMEM.get(store, {}).pop(key, None)

    def keys(self, store: str) -> list[str]:
        with _LOCMEM_LOCK:
            return sorted(_LOCMEM.get(store, {}))

    def items(self, store: str) -> list[tuple[str, bytes]]:
        with _LOCMEM_LOCK:
            return sorted(_LOCMEM.get(store, {}).items())

    def count(self, store: str) -> int:
        with _LOCMEM_LOCK:
            return len(_LOCMEM.get(store, {}))

    def flush(self, store: str) -> int:
        with _LOCMEM_LOCK:
            return len(_LOCMEM.pop(store, {}))

    def flush_all(self) -> None:
        with _LOCMEM_LOCK:
            _LOCMEM.clear()
