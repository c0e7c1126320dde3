"""KeyedCache: keyedcache's operations on one cache alias, every backend call behind one guard."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from django.core.cache import caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.dummy import DummyCache

from keyedcache.acache import AsyncCacheMixin
from keyedcache.backends import StampedAdapter, Undecodable, build_adapter
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
from keyedcache.exceptions import CacheNotRespondingError, NotCachedError
from keyedcache.fills import FillsMixin
from keyedcache.guard import Guard, raise_if_unpicklable
from keyedcache.local import current_scope
from keyedcache.lock import DEFAULT_LOCK_TIMEOUT, CacheLock
from keyedcache.many import ManyKeysMixin
from keyedcache.signals import HIT, LOCAL_HIT, LOCAL_MISS, MISS, listening
from keyedcache.signals import read as signal_read
from keyedcache.ttl import TTLMixin
from keyedcache.validation import checked_length

#: keyedcache on or off in this process (`cache_enable`); a list so it is shared, not rebound.
switch = [True]


class KeyedCache(FillsMixin, ManyKeysMixin, TTLMixin, AsyncCacheMixin):
    """keyedcache's operations on one Django cache alias.

    Reads that fail because the backend is down are misses, writes that fail
    are skipped; the guard logs (rate-limited) and counts both as errors.
    Get one from `keyedcache.registry.get_cache(alias)` rather than building
    it: the registry builds one per alias and keeps it while settings stay.
    """

    def __init__(self, alias: str = "default", *, namespace: str = "keyedcache") -> None:
        self.alias = alias
        self.namespace = namespace
        backend = caches[alias]
        #: False when the alias cannot cache: the dummy backend or TIMEOUT 0.
        self.backend_enabled = not isinstance(backend, DummyCache) and backend.default_timeout != 0
        self.adapter: StampedAdapter = build_adapter(alias, namespace)
        #: The one door of every backend call (see guard.py).
        self.guard = Guard(alias)
        #: Names this cache's table in a first-level scope.
        self.scope_id = f"{alias}\x00{namespace}"
        #: The raw stored value of a key, or NO_VALUE; a failing backend reads as NO_VALUE.
        self._fetch: Callable[[str], Any] = self.guard.wrap("get", self.adapter.get, NO_VALUE)

    def __repr__(self) -> str:
        return f"<KeyedCache alias={self.alias!r} adapter={self.adapter.name!r}>"

    @property
    def enabled(self) -> bool:
        """True when this alias caches and keyedcache is enabled (`cache_enable`)."""
        return self.backend_enabled and switch[0]

    # -- what the backend can do (for the dashboard and the command) --------

    @property
    def adapter_name(self) -> str:
        """The adapter's short name (redis, database, memcached, ...)."""
        return self.adapter.name

    @property
    def enumerates(self) -> bool:
        """True when the backend can list its keys cheaply itself (a scan, a query, a dict).

        Deletes never list: a children delete reports the key itself, a
        delete-all reports nothing, on every backend (both are O(1)).
        """
        return self.adapter.enumerates

    def storage_key(self, key: str) -> str:
        """The key logical `key` is stored under (before the alias's KEY_PREFIX/VERSION)."""
        return self.adapter.storage_key(key)

    # -- reads ------------------------------------------------------------

    def get(self, key: str, default: Any = NO_VALUE) -> Any:
        """Return the value cached under logical `key`.

        On a miss return `default`, or raise NotCachedError(key) when no
        default is given. A cached None, False, 0 or '' is a hit. Inside a
        first-level scope, a key is read from the backend once per scope.
        """
        if self.backend_enabled and switch[0]:
            counts = counters.slots(key)
            started = time.perf_counter() if listening[0] else 0.0  # 0.0: nobody listens
            scope = current_scope()
            raw = None
            if scope is None:
                raw = self._fetch(key)
                value = fresh_value(raw)
            else:
                table = scope.tables.get(self.scope_id)
                value = UNSEEN if table is None else table.get(key, UNSEEN)
                if value is UNSEEN:
                    raw = self._fetch(key)
                    value = fresh_value(raw)
                    scope.remember(self.scope_id, key, value)
                elif value is not NO_VALUE:
                    counts[LOCAL_HITS] += 1
                    if started:
                        signal_read(self, key, LOCAL_HIT, started)
                    return value
            if value is not NO_VALUE:
                counts[HITS] += 1
                if started:
                    signal_read(self, key, HIT, started)
                return value
            # raw is None only when the request scope knew the key absent: no backend read.
            counts[LOCAL_MISSES if raw is None and scope is not None else MISSES] += 1
            if started:
                local = raw is None and scope is not None
                signal_read(self, key, LOCAL_MISS if local else MISS, started)
            if type(raw) is Undecodable:
                self.guard.decode_failed(key, raw.error)
        if default is NO_VALUE:
            raise NotCachedError(key)
        return default

    def read(self, key: str) -> tuple[Any, tuple[Any, ...] | None]:
        """Read `key` for memoization: `(value, packed)` for a fresh hit,
        `(NO_VALUE, packed)` when only a stale entry is stored, `(NO_VALUE, None)`
        on a miss. Counted like `get`; fresh hits go through the first-level
        scope (`packed` is None for a scope hit).
        """
        if not (self.backend_enabled and switch[0]):
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
        raw = self._fetch(key)
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
        # A stale envelope still serves single flight (stale-while-revalidate).
        return NO_VALUE, (raw if is_packed(raw) else None)

    def get_entry(self, key: str) -> Entry | None:
        """Return the whole stored Entry for `key`, stale or not, or None (not counted)."""
        if not self.enabled:
            return None
        return unpack(self._fetch(key))

    def peek_many(self, key_list: list[str]) -> dict[str, Entry]:
        """The stored entries (stale ones too) of `key_list`, not counted as cache traffic.

        One backend call where the backend allows; if that call fails, each
        key is read on its own (the guard logs and counts the failures). An entry
        that cannot be decoded comes back with its `Undecodable` marker as the
        value (its repr says why), so the dashboard can show it for deletion.
        """
        if not key_list or not self.enabled:
            return {}
        try:
            found = self.adapter.get_many(key_list)
        except Exception:
            return {key: entry for key in key_list if (entry := self.get_entry(key)) is not None}
        entries: dict[str, Entry] = {}
        for key, raw in found.items():
            entry = Entry(raw) if type(raw) is Undecodable else unpack(raw)
            if entry is not None:
                entries[key] = entry
        return entries

    def is_cached(self, key: str) -> bool:
        """Tell whether a fresh value is cached under `key`."""
        return self.get(key, default=UNSEEN) is not UNSEEN

    # -- writes -----------------------------------------------------------

    def set(self, key: str, value: Any, length: Any = DEFAULT_TIMEOUT) -> None:
        """Cache `value` under `key` for `length` seconds (None: forever; 0: expire now)."""
        if not self.enabled:
            return
        timeout = self.adapter.resolve_timeout(checked_length(length, key))
        self.set_entry(key, make_entry(value, timeout, key=self.adapter.key_to_keep(key)), timeout)

    def set_entry(self, key: str, entry: Entry, timeout: float | None) -> None:
        """Store a prepared Entry; the backend drops it after `timeout` seconds."""
        if not self.enabled:
            return
        packed = entry.pack()
        counters.slots(key)[SETS] += 1
        self.guard.call(
            "set",
            key,
            None,
            self.adapter.set,
            key,
            packed,
            backend_timeout(timeout),
            on_error=lambda _exc: raise_if_unpicklable(key, packed),
        )
        scope = current_scope()
        if scope is not None:
            fresh = timeout is None or timeout > 0
            scope.remember(self.scope_id, key, entry.value if fresh else NO_VALUE)

    def add_entry(self, key: str, entry: Entry, timeout: float | None) -> bool:
        """Store `entry` only if nothing is stored under `key`; say whether it stored."""
        if not self.enabled:
            return False
        packed = entry.pack()
        return self.guard.call(
            "add",
            key,
            False,
            self.adapter.add,
            key,
            packed,
            backend_timeout(timeout),
            on_error=lambda _exc: raise_if_unpicklable(key, packed),
        )

    def write_record(self, key: str, value: Any, ttl: float | None) -> bool:
        """Store `value` under `key` for the stats reporter: not counted, failures raised.

        Entries of this kind need no subtree deletes, so on backends that
        guard entries with generation tokens the tokens get one fixed value
        (see `StampedAdapter.set_pinned`).
        """
        entry = make_entry(value, ttl, key=self.adapter.key_to_keep(key))
        self.adapter.set_pinned(key, entry.pack(), ttl)
        return True

    # -- deletes ----------------------------------------------------------

    def delete(self, key: str, *, children: bool = False, strict: bool = False) -> list[str]:
        """Delete `key` (and with `children`, every key below it); return deleted keys.

        Where the backend cannot list keys (memcached, file-based), a children
        delete returns only `key` itself, if it was cached. When the backend
        fails the delete did not happen: it returns [] (logged and counted), or
        with `strict` raises CacheBackendError.
        """
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
            subtree = self.adapter.delete_subtree
            return self.guard.call("delete", key, None, subtree, key, strict=strict) or []
        deleted = self.guard.call("delete", key, False, self.adapter.delete, key, strict=strict)
        return [key] if deleted else []

    def delete_all(self, *, strict: bool = False) -> list[str]:
        """Delete every keyedcache entry in this alias, and nothing else stored there.

        A backend failure returns [] (logged and counted), or with `strict`
        raises CacheBackendError.
        """
        if not self.enabled:
            return []
        counters.slots(None)[DELETES] += 1
        scope = current_scope()
        if scope is not None:
            scope.forget_all(self.scope_id)
        everything = self.adapter.delete_all
        return self.guard.call("delete all", "*", None, everything, strict=strict) or []

    def add(self, key: str, value: Any, length: Any = DEFAULT_TIMEOUT) -> bool:
        """Store `value` only if nothing is stored under `key`; say whether it stored."""
        if not self.enabled:
            return False
        timeout = self.adapter.resolve_timeout(checked_length(length, key))
        added = self.add_entry(
            key, make_entry(value, timeout, key=self.adapter.key_to_keep(key)), timeout
        )
        scope = current_scope()
        if added and scope is not None:
            scope.remember(self.scope_id, key, value)
        return added

    # -- locks ------------------------------------------------------------

    def lock(
        self,
        key: str,
        *,
        timeout: float = DEFAULT_LOCK_TIMEOUT,
        blocking: bool = True,
        blocking_timeout: float | None = None,
    ) -> CacheLock:
        """A lock named `key`, mutually exclusive across processes (see CacheLock)."""
        return CacheLock(
            self, key, timeout=timeout, blocking=blocking, blocking_timeout=blocking_timeout
        )

    def lock_acquire(self, key: str, token: str, timeout: float) -> bool | None:
        """Take the lock named `key` for `token`; None when the backend does not answer."""
        return self.guard.call("lock", key, None, self.adapter.lock_acquire, key, token, timeout)

    def lock_release(self, key: str, token: str) -> bool:
        """Release the lock named `key` if `token` holds it; say whether it did."""
        return self.guard.call("unlock", key, False, self.adapter.lock_release, key, token)

    def lock_extend(self, key: str, token: str, timeout: float) -> bool:
        """Extend the lock held by `token` to `timeout` seconds from now."""
        return self.guard.call(
            "extend lock", key, False, self.adapter.lock_extend, key, token, timeout
        )

    def lock_owner(self, key: str) -> str | None:
        """The token holding the lock named `key`, or None (also when the backend fails)."""
        return self.guard.call("lock owner", key, None, self.adapter.lock_owner, key)

    # -- health -----------------------------------------------------------

    def require(self) -> bool | None:
        """Do a real set/get round trip; raise CacheNotRespondingError if it fails."""
        if not self.enabled:
            return None
        # The probe lives outside the namespace of logical keys, so it can
        # neither clash with a user's key nor show up in listings.
        backend = self.adapter.cache
        probe_key = f"{self.namespace}-probe:{threading.get_ident()}"
        probe = f"{time.time_ns()}"
        try:
            backend.set(probe_key, probe, 60)
            answer = backend.get(probe_key)
            backend.delete(probe_key)
        except Exception as exc:
            raise CacheNotRespondingError(
                f"cache alias {self.alias!r} did not answer a set/get round trip: {exc}"
            ) from exc
        if answer != probe:
            raise CacheNotRespondingError(
                f"cache alias {self.alias!r} did not return the value just stored"
            )
        return True
