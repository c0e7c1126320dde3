"""KeyedCache's async parts shared by its a* methods, and the async many-key and expiry twins."""

from __future__ import annotations

import datetime
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from fnmatch import fnmatchcase
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.core.cache.backends.base import DEFAULT_TIMEOUT

from keyedcache.backends.aio import AsyncAdapter
from keyedcache.backends.apick import build_async_adapter
from keyedcache.counters import DELETES, HITS, LOCAL_HITS, MISSES, SETS, counters
from keyedcache.entry import (
    NO_VALUE,
    UNSEEN,
    Entry,
    NoValue,
    backend_timeout,
    fresh_value,
    make_entry,
    unpack,
)
from keyedcache.exceptions import CacheBackendError
from keyedcache.guard import raise_if_unpicklable
from keyedcache.keys import pattern_scan_prefix
from keyedcache.local import current_scope
from keyedcache.many import CacheParts
from keyedcache.validation import checked_length

T = TypeVar("T")
F = TypeVar("F")

# Three ways to serve an async call, chosen by the alias's async adapter
# (backends/apick.py): `inline` (locmem: no I/O, the sync method runs on the
# loop), `native` (Redis: the same steps with awaited round trips, on the
# loop), or neither (database, file, memcached: the whole sync operation runs
# in one thread hop, as Django's own async cache methods do).


class AsyncParts(CacheParts):
    """What every async twin of KeyedCache uses: the async adapter, the hop, the guard."""

    _aadapter: AsyncAdapter | None = None

    @property
    def aadapter(self) -> AsyncAdapter:
        """The async adapter of this alias (built on first use)."""
        found = self._aadapter
        if found is None:
            found = self._aadapter = build_async_adapter(self.adapter)
        return found

    async def _hop(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run the sync operation `method` in one thread hop."""
        return await sync_to_async(getattr(self, method))(*args, **kwargs)

    async def _guarded(
        self,
        operation: str,
        key: str | None,
        fallback: F,
        pending: Awaitable[T],
        *,
        strict: bool = False,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> T | F:
        """`await pending` through the guard (log, count, fall back; the circuit breaker)."""
        return await self.guard.acall(
            operation, key, fallback, pending, strict=strict, on_error=on_error
        )

    async def _afetch(self, key: str) -> Any:
        return await self._guarded("get", key, NO_VALUE, self.aadapter.get(key))

    async def aget_entry(self, key: str) -> Entry | None:  # pragma: no cover - acache.py
        raise NotImplementedError


class AsyncManyMixin(AsyncParts):
    """The async twins of the many-key and expiry operations (mixed into KeyedCache)."""

    # -- many keys ----------------------------------------------------------------

    async def aget_many(self, key_list: Iterable[str]) -> dict[str, Any]:
        """The async twin of `get_many`."""
        wanted = list(dict.fromkeys(key_list))
        if not self.aadapter.native:
            return await self._hop("get_many", wanted)  # type: ignore[no-any-return]
        if not self.enabled or not wanted:
            return {}
        found: dict[str, Any] = {}
        scope = current_scope()
        table = scope.tables.get(self.scope_id) if scope is not None else None
        if table is not None:
            for key in wanted:
                value = table.get(key, UNSEEN)
                if value is not UNSEEN and value is not NO_VALUE:
                    found[key] = value
                    counters.slots(key)[LOCAL_HITS] += 1
        remaining = [key for key in wanted if key not in found]
        if remaining:
            pending = self.aadapter.get_many(remaining)
            raw_by_key: dict[str, Any] = await self._guarded("get many", remaining[0], {}, pending)
            for key in remaining:
                value = fresh_value(raw_by_key.get(key, NO_VALUE))
                if value is not NO_VALUE:
                    found[key] = value
                counters.slots(key)[HITS if value is not NO_VALUE else MISSES] += 1
                if scope is not None:
                    scope.remember(self.scope_id, key, value)
        return found

    async def aset_many(self, values: dict[str, Any], length: Any = DEFAULT_TIMEOUT) -> None:
        """The async twin of `set_many`: nothing is written if any value cannot be pickled."""
        if not self.aadapter.native:
            await self._hop("set_many", values, length)
            return
        if not self.enabled or not values:
            return
        timeout = self.adapter.resolve_timeout(checked_length(length, values))
        keep = self.adapter.key_to_keep
        packed_by_key = {k: make_entry(v, timeout, key=keep(k)).pack() for k, v in values.items()}
        for key, packed in packed_by_key.items():
            raise_if_unpicklable(key, packed)
            counters.slots(key)[SETS] += 1
        pending = self.aadapter.set_many(packed_by_key, backend_timeout(timeout))
        await self._guarded("set many", next(iter(packed_by_key)), None, pending)
        scope = current_scope()
        if scope is not None:
            fresh = timeout is None or timeout > 0
            for key, value in values.items():
                scope.remember(self.scope_id, key, value if fresh else NO_VALUE)

    async def aiter_keys(self, pattern: str = "*", *, strict: bool = False) -> AsyncIterator[str]:
        """The async twin of `iter_keys`: the matching keys of live entries."""
        if not self.aadapter.native:
            for key in await self._hop("keys", pattern, strict=strict):
                yield key
            return
        if not self.enabled or not self.guard.closed_or_refuse("list keys", pattern, strict=strict):
            return
        prefix = pattern_scan_prefix(pattern, self.namespace)
        try:
            names = await self.aadapter.list_keys(prefix)
        except NotImplementedError:
            raise
        except Exception as exc:
            self.guard.failed("list keys", pattern, exc)
            if strict:
                raise CacheBackendError(self.guard.alias, "list keys", pattern, exc) from exc
            return
        for key in names:
            if fnmatchcase(key, pattern):
                yield key

    async def akeys(self, pattern: str = "*", *, strict: bool = False) -> list[str]:
        """The async twin of `keys`: sorted."""
        return sorted([key async for key in self.aiter_keys(pattern, strict=strict)])

    async def adelete_pattern(self, pattern: str, *, strict: bool = False) -> int:
        """The async twin of `delete_pattern`; return how many entries were deleted."""
        if not self.aadapter.native:
            return await self._hop("delete_pattern", pattern, strict=strict)  # type: ignore[no-any-return]
        doomed = await self.akeys(pattern, strict=strict)
        scope = current_scope()
        deleted = 0
        size = 500
        for start in range(0, len(doomed), size):
            batch = doomed[start : start + size]
            if scope is not None:
                for key in batch:
                    scope.remember(self.scope_id, key, NO_VALUE)
            pending = self.aadapter.delete_many(batch)
            count = await self._guarded("delete", batch[0], 0, pending, strict=strict)
            deleted += count
            for key in batch[:count]:
                counters.slots(key)[DELETES] += 1
        return deleted

    # -- expiry -------------------------------------------------------------------

    async def apttl(self, key: str) -> int | None:
        """The async twin of `pttl`: milliseconds left, None for never, 0 when not stored."""
        if not self.aadapter.native:
            return await self._hop("pttl", key)  # type: ignore[no-any-return]
        if not self.enabled:
            return 0
        native = await self._guarded("ttl", key, NO_VALUE, self.aadapter.native_ttl(key))
        if isinstance(native, NoValue) or await self.aget_entry(key) is None:
            return 0
        if native is None:
            return None
        return max(math.ceil(float(native) * 1000), 1)

    async def attl(self, key: str) -> int | None:
        """The async twin of `ttl`: whole seconds left (rounded up), None, or 0."""
        millis = await self.apttl(key)
        return millis if millis is None else math.ceil(millis / 1000)

    async def aexpire(self, key: str, length: Any) -> bool:
        """The async twin of `expire`: say whether the key existed."""
        if not self.aadapter.native:
            return await self._hop("expire", key, length)  # type: ignore[no-any-return]
        if not self.enabled:
            return False
        timeout = self.adapter.resolve_timeout(checked_length(length, key))
        done = await self._guarded("expire", key, False, self._aexpire(key, timeout))
        scope = current_scope()
        if scope is not None and timeout is not None and timeout <= 0:
            scope.remember(self.scope_id, key, NO_VALUE)
        return bool(done)

    async def _aexpire(self, key: str, timeout: float | None) -> bool:
        entry = unpack(await self.aadapter.get(key))
        if entry is None:
            return False
        done = await self.aadapter.native_expire(key, timeout)
        pinned = entry.fresh_until is not None and entry.fresh_until == entry.stale_until
        # An exact (fractional) expiry lives in the envelope too: move it.
        if done and (timeout is None or timeout > 0) and pinned:
            drop_at = None if timeout is None else time.time() + timeout
            updated = entry._replace(fresh_until=drop_at, stale_until=drop_at)
            await self.aadapter.set(key, updated.pack(), backend_timeout(timeout))
        return bool(done)

    async def aexpire_at(self, key: str, when: datetime.datetime) -> bool:
        """The async twin of `expire_at`."""
        return await self.aexpire(key, when.timestamp() - time.time())

    async def apersist(self, key: str) -> bool:
        """The async twin of `persist`: make `key` never expire."""
        return await self.aexpire(key, None)
