"""cache://: each KeyVal store as one dict entry in a cache alias, written under its lock."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from keyedcache.cache import KeyedCache
from keyedcache.contrib.keyval.backends.base import Backend, quote_part
from keyedcache.keys import KEY_DELIM
from keyedcache.registry import get_cache
from keyedcache.tokens import Backoff, new_token

#: First key part of cache:// stores.
CACHE_STORE_ROOT = "keyval-store"

T = TypeVar("T")


class CacheBackend(Backend):
    """Each store is one entry (a dict) in a cache alias: not persistent.

    Writes take the store's lock (keyedcache's token lock, across processes), so
    concurrent writers lose nothing. The cache may evict a store at any time,
    and during a cache outage stores read as empty and writes are lost.
    """

    #: Seconds a dead writer can hold a store's lock; seconds a writer waits for it.
    lock_timeout = 10.0
    lock_wait = 30.0

    def __init__(self, url: str, alias: str | None) -> None:
        super().__init__(url)
        self.alias = alias

    @property
    def cache(self) -> KeyedCache:
        """The KeyedCache the stores live in (KEYEDCACHE_ALIAS's when the URL names none)."""
        return get_cache(self.alias)

    def _key(self, store: str) -> str:
        return f"{CACHE_STORE_ROOT}{KEY_DELIM}{quote_part(store)}"

    def _read(self, store: str) -> dict[str, bytes]:
        found = self.cache.get(self._key(store), None)
        return found if isinstance(found, dict) else {}

    @contextlib.contextmanager
    def _locked(self, store: str) -> Iterator[None]:
        cache, name, token = self.cache, self._key(store), new_token()
        backoff = Backoff(0.001, 0.05, deadline=time.monotonic() + self.lock_wait)
        while True:
            held = cache.lock_acquire(name, token, self.lock_timeout)
            if held is not False:
                break  # taken, or None: the cache does not answer (the write is lost anyway)
            # Waiting for another writer to release the lock.
            if not backoff.sleep():
                raise TimeoutError(
                    f"KeyVal store {store!r} on cache alias {cache.alias!r} stayed locked "
                    f"for {self.lock_wait:g}s"
                )
        try:
            yield
        finally:
            if held:
                cache.lock_release(name, token)

    def _change(self, store: str, change: Callable[[dict[str, bytes]], T]) -> T:
        with self._locked(store):
            # From the backend itself: a request scope may hold an older copy.
            entry = self.cache.get_entry(self._key(store))
            data = dict(entry.value) if entry is not None and isinstance(entry.value, dict) else {}
            before = data.copy()
            result = change(data)
            if data != before:
                if data:
                    self.cache.set(self._key(store), data, None)
                else:
                    self.cache.delete(self._key(store))
            return result

    def load(self, store: str, key: str) -> bytes | None:
        return self._read(store).get(key)

    def save(self, store: str, key: str, data: bytes) -> bool:
        def put(values: dict[str, bytes]) -> bool:
            new = key not in values
            values[key] = data
            return new

        return self._change(store, put)

    def remove(self, store: str, key: str) -> bool:
        return self.take(store, key) is not None

    def take(self, store: str, key: str) -> bytes | None:
        return self._change(store, lambda values: values.pop(key, None))

    def keys(self, store: str) -> list[str]:
        return sorted(self._read(store))

    def items(self, store: str) -> list[tuple[str, bytes]]:
        return sorted(self._read(store).items())

    def count(self, store: str) -> int:
        return len(self._read(store))

    def flush(self, store: str) -> int:
        def clear(values: dict[str, bytes]) -> int:
            count = len(values)
            values.clear()
            return count

        return self._change(store, clear)

    def flush_all(self) -> None:
        self.cache.delete(CACHE_STORE_ROOT, children=True)
