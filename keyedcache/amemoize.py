"""The async side of cache_function: single flight's async source on KeyedCache's a* methods."""

from __future__ import annotations

from typing import Any, Protocol

from keyedcache.cache import KeyedCache
from keyedcache.entry import Entry


class AsyncMemo(Protocol):
    """What the async source needs of a memoized function (memoize.Memoized)."""

    lock_timeout: float

    def store(self) -> KeyedCache:
        """The KeyedCache the function caches in."""
        ...

    def to_save(
        self, cache: KeyedCache, key: str, value: Any, cost: float
    ) -> tuple[Entry, float | None] | None:
        """The entry to store for a computed value and its timeout; None: store nothing."""
        ...


async def asave(
    memo: AsyncMemo, cache: KeyedCache, key: str, value: Any, cost: float, basis: Any = None
) -> None:
    """The async twin of `Memoized.save`: store a computed value under its basis."""
    planned = memo.to_save(cache, key, value, cost)
    if planned is not None:
        await cache.afill_entry(key, planned[0], planned[1], basis)


class AsyncCacheSource:
    """Single flight's async view of a KeyedCache, for one memoized `async def` function.

    Every call is the KeyedCache's async twin: on the event loop for locmem and
    Redis, one thread hop (thread sensitive, as Django's own) for the others.
    """

    def __init__(self, memo: AsyncMemo) -> None:
        self.memo = memo

    async def load(self, key: str) -> Entry | None:
        """The stored entry, fresh or stale, or None."""
        return await self.memo.store().aget_entry(key)

    async def load_basis(self, key: str) -> tuple[Entry | None, Any]:
        """The stored entry and the basis a fill is stored under."""
        return await self.memo.store().aload_for_fill(key)

    async def save(self, key: str, value: Any, cost: float, basis: Any = None) -> None:
        """Store a computed value under `basis` (see Source.save)."""
        await asave(self.memo, self.memo.store(), key, value, cost, basis)

    async def acquire(self, key: str, token: str) -> bool | None:
        """Take the key's lock for the memo's lock timeout (None: the backend is down)."""
        return await self.memo.store().alock_acquire(key, token, self.memo.lock_timeout)

    async def release(self, key: str, token: str) -> None:
        """Release the key's lock if `token` holds it."""
        await self.memo.store().alock_release(key, token)
