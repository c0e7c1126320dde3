"""KeyedCache's async twins (aget, aset, ...): native adapters on the loop, others in one hop."""

from __future__ import annotations

import time
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT

from keyedcache.amany import AsyncManyMixin
from keyedcache.backends import Undecodable
from keyedcache.counters import DELETES, HITS, LOCAL_HITS, LOCAL_MISSES, MISSES, SETS, counters
from keyedcache.entry import (
    NO_VALUE,
    UNSEEN,
    Entry,
    backend_timeout,
    fresh_value,
    is_packed,
    make_entry,
    unpack,
)
from keyedcache.exceptions import NotCachedError
from keyedcache.guard import raise_if_unpicklable
from keyedcache.local import current_scope
from keyedcache.signals import HIT, LOCAL_HIT, LOCAL_MISS, MISS, listening
from keyedcache.signals import read as signal_read
from keyedcache.validation import checked_length


class AsyncCacheMixin(AsyncManyMixin):
    """The async twins of KeyedCache's operations (mixed into KeyedCache; see cache.py).

    How each call is served (on the loop, or in one thread hop) is explained in amany.py.
    """

    # -- reads ------------------------------------------------------------------

    async def aget(self, key: str, default: Any = NO_VALUE) -> Any:
        """The async twin of `get`: the value, `default`, or NotCachedError(key)."""
        adapter = self._aadapter or self.aadapter
        if adapter.inline:
            return self.get(key, default)  # type: ignore[attr-defined]
        if not adapter.native:
            return await self._hop("get", key, default)
        if self.enabled:
            counts = counters.slots(key)
            started = time.perf_counter() if listening[0] else 0.0  # 0.0: nobody listens
            scope = current_scope()
            table = None if scope is None else scope.tables.get(self.scope_id)
            value = UNSEEN if table is None else table.get(key, UNSEEN)
            if value is not UNSEEN and value is not NO_VALUE:
                counts[LOCAL_HITS] += 1
                if started:
                    signal_read(self, key, LOCAL_HIT, started)
                return value
            raw: Any = NO_VALUE
            fetched = value is UNSEEN  # else the request scope knew the key absent
            if fetched:
                raw = await self._afetch(key)
                value = fresh_value(raw)
                if scope is not None:
                    scope.remember(self.scope_id, key, value)
            if value is not NO_VALUE:
                counts[HITS] += 1
                if started:
                    signal_read(self, key, HIT, started)
                return value
            counts[MISSES if fetched else LOCAL_MISSES] += 1
            if started:
                signal_read(self, key, MISS if fetched else LOCAL_MISS, started)
            if type(raw) is Undecodable:
                self.guard.decode_failed(key, raw.error)
        if default is NO_VALUE:
            raise NotCachedError(key)
        return default

    async def aread(self, key: str) -> tuple[Any, tuple[Any, ...] | None]:
        """The async twin of `read` (memoization's read: value, and the stored envelope)."""
        adapter = self._aadapter or self.aadapter
        if adapter.inline:
            return self.read(key)  # type: ignore[attr-defined,no-any-return]
        if not adapter.native:
            return await self._hop("read", key)  # type: ignore[no-any-return]
        if not self.enabled:
            return NO_VALUE, None
        counts = counters.slots(key)
        started = time.perf_counter() if listening[0] else 0.0  # 0.0: nobody listens
        scope = current_scope()
        if scope is not None:
            table = scope.tables.get(self.scope_id)
            if table is not None:
                value = table.get(key, NO_VALUE)
                if value is not NO_VALUE:
                    counts[LOCAL_HITS] += 1
                    if started:
                        signal_read(self, key, LOCAL_HIT, started, "memoized")
                    return value, None
        raw = await self._afetch(key)
        value = fresh_value(raw)
        if value is not NO_VALUE:
            counts[HITS] += 1
            if started:
                signal_read(self, key, HIT, started, "memoized")
            if scope is not None:
                scope.remember(self.scope_id, key, value)
            return value, raw
        counts[MISSES] += 1
        if started:
            signal_read(self, key, MISS, started, "memoized")
        if type(raw) is Undecodable:
            self.guard.decode_failed(key, raw.error)
        return NO_VALUE, (raw if is_packed(raw) else None)

    async def aget_entry(self, key: str) -> Entry | None:
        """The async twin of `get_entry` (the stored Entry, stale or not; not counted)."""
        if not self.aadapter.native:
            return await self._hop("get_entry", key)  # type: ignore[no-any-return]
        if not self.enabled:
            return None
        return unpack(await self._afetch(key))

    async def ais_cached(self, key: str) -> bool:
        """The async twin of `is_cached`."""
        return await self.aget(key, default=UNSEEN) is not UNSEEN

    # -- writes -----------------------------------------------------------------

    async def aset(self, key: str, value: Any, length: Any = DEFAULT_TIMEOUT) -> None:
        """The async twin of `set`."""
        if not self.aadapter.native:
            return await self._hop("set", key, value, length)  # type: ignore[no-any-return]
        if not self.enabled:
            return
        timeout = self.adapter.resolve_timeout(checked_length(length, key))
        entry = make_entry(value, timeout, key=self.adapter.key_to_keep(key))
        await self.aset_entry(key, entry, timeout)

    async def aset_entry(self, key: str, entry: Entry, timeout: float | None) -> None:
        """The async twin of `set_entry`."""
        if not self.aadapter.native:
            return await self._hop("set_entry", key, entry, timeout)  # type: ignore[no-any-return]
        if not self.enabled:
            return
        packed = entry.pack()
        counters.slots(key)[SETS] += 1
        await self._guarded(
            "set",
            key,
            None,
            self.aadapter.set(key, packed, backend_timeout(timeout)),
            on_error=lambda _exc: raise_if_unpicklable(key, packed),
        )
        scope = current_scope()
        if scope is not None:
            fresh = timeout is None or timeout > 0
            scope.remember(self.scope_id, key, entry.value if fresh else NO_VALUE)

    async def aadd(self, key: str, value: Any, length: Any = DEFAULT_TIMEOUT) -> bool:
        """The async twin of `add`: store only if nothing is stored; say whether it stored."""
        if not self.aadapter.native:
            return await self._hop("add", key, value, length)  # type: ignore[no-any-return]
        if not self.enabled:
            return False
        timeout = self.adapter.resolve_timeout(checked_length(length, key))
        packed = make_entry(value, timeout, key=self.adapter.key_to_keep(key)).pack()
        added = await self._guarded(
            "add",
            key,
            False,
            self.aadapter.add(key, packed, backend_timeout(timeout)),
            on_error=lambda _exc: raise_if_unpicklable(key, packed),
        )
        scope = current_scope()
        if added and scope is not None:
            scope.remember(self.scope_id, key, value)
        return added

    # -- fills (memoization) --------------------------------------------------------

    async def aload_for_fill(self, key: str) -> tuple[Entry | None, Any]:
        """The async twin of `load_for_fill`: the stored entry and the basis of a fill."""
        if not self.aadapter.native:
            return await self._hop("load_for_fill", key)  # type: ignore[no-any-return]
        if not self.enabled:
            return None, None
        found = await self._guarded("get", key, None, self.aadapter.read_basis(key))
        if found is None:
            return None, None
        raw, basis = found
        if type(raw) is Undecodable:
            self.guard.decode_failed(key, raw.error)
        return unpack(raw), basis

    async def afill_entry(self, key: str, entry: Entry, timeout: float | None, basis: Any) -> None:
        """The async twin of `fill_entry`: store a computed entry under its basis."""
        if not self.aadapter.native:
            await self._hop("fill_entry", key, entry, timeout, basis)
            return
        if not self.enabled:
            return
        packed = entry.pack()
        counters.slots(key)[SETS] += 1
        if basis is None:
            found = await self._guarded("get", key, None, self.aadapter.read_basis(key))
            if found is None:
                return
            basis = found[1]
        await self._guarded(
            "set",
            key,
            None,
            self.aadapter.fill(key, packed, backend_timeout(timeout), basis),
            on_error=lambda _exc: raise_if_unpicklable(key, packed),
        )
        scope = current_scope()
        if scope is not None:
            fresh = timeout is None or timeout > 0
            scope.remember(self.scope_id, key, entry.value if fresh else NO_VALUE)

    async def afill(self, key: str, value: Any, basis: Any, length: Any = DEFAULT_TIMEOUT) -> None:
        """The async twin of `fill`: store a value loaded after `aload_for_fill` read `basis`."""
        if not self.enabled:
            return
        timeout = self.adapter.resolve_timeout(length)
        entry = make_entry(value, timeout, key=self.adapter.key_to_keep(key))
        await self.afill_entry(key, entry, timeout, basis)

    # -- deletes ----------------------------------------------------------------

    async def adelete(self, key: str, *, children: bool = False, strict: bool = False) -> list[str]:
        """The async twin of `delete` (with `children`, the whole subtree)."""
        if not self.aadapter.native:
            return await self._hop("delete", key, children=children, strict=strict)  # type: ignore[no-any-return]
        if not self.enabled:
            return []
        counters.slots(key)[DELETES] += 1
        scope = current_scope()
        if scope is not None:
            if children:
                scope.forget_subtree(self.scope_id, key)
            else:
                scope.remember(self.scope_id, key, NO_VALUE)
        if children:
            pending = self.aadapter.delete_subtree(key)
            return await self._guarded("delete", key, None, pending, strict=strict) or []
        gone = await self._guarded("delete", key, False, self.aadapter.delete(key), strict=strict)
        return [key] if gone else []

    async def adelete_all(self, *, strict: bool = False) -> list[str]:
        """The async twin of `delete_all`."""
        if not self.aadapter.native:
            return await self._hop("delete_all", strict=strict)  # type: ignore[no-any-return]
        if not self.enabled:
            return []
        counters.slots(None)[DELETES] += 1
        scope = current_scope()
        if scope is not None:
            scope.forget_all(self.scope_id)
        pending = self.aadapter.delete_all()
        return await self._guarded("delete all", "*", None, pending, strict=strict) or []

    # -- locks ----------------------------------------------------------------------

    async def alock_acquire(self, key: str, token: str, timeout: float) -> bool | None:
        """The async twin of `lock_acquire` (None when the backend does not answer)."""
        if not self.aadapter.native:
            return await self._hop("lock_acquire", key, token, timeout)  # type: ignore[no-any-return]
        return await self._guarded(
            "lock", key, None, self.aadapter.lock_acquire(key, token, timeout)
        )

    async def alock_release(self, key: str, token: str) -> bool:
        """The async twin of `lock_release`."""
        if not self.aadapter.native:
            return await self._hop("lock_release", key, token)  # type: ignore[no-any-return]
        return await self._guarded("unlock", key, False, self.aadapter.lock_release(key, token))

    async def alock_extend(self, key: str, token: str, timeout: float) -> bool:
        """The async twin of `lock_extend`."""
        if not self.aadapter.native:
            return await self._hop("lock_extend", key, token, timeout)  # type: ignore[no-any-return]
        pending = self.aadapter.lock_extend(key, token, timeout)
        return await self._guarded("extend lock", key, False, pending)

    async def alock_owner(self, key: str) -> str | None:
        """The async twin of `lock_owner`."""
        if not self.aadapter.native:
            return await self._hop("lock_owner", key)  # type: ignore[no-any-return]
        return await self._guarded("lock owner", key, None, self.aadapter.lock_owner(key))
