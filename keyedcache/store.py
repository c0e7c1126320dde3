"""KeyedCache, bound to one cache alias, and the module functions that use the default one."""

from __future__ import annotations

import datetime
import logging
import math
import pickle
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from fnmatch import fnmatchcase
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.dummy import DummyCache
from django.core.signals import setting_changed

from keyedcache.backends import MISSING, Adapter, build_adapter
from keyedcache.entry import ENTRY_FORMAT, Entry, backend_timeout, is_packed, make_entry, unpack
from keyedcache.exceptions import CacheNotRespondingError, NotCachedError, UncacheableValueError
from keyedcache.keys import cache_key, key_from, pattern_scan_prefix
from keyedcache.local import ABSENT, current_scope
from keyedcache.lock import DEFAULT_LOCK_TIMEOUT, CacheLock
from keyedcache.stats import DELETES, ERRORS, HITS, LOCAL_HITS, MISSES, SETS, counters

log = logging.getLogger("keyedcache")

DEFAULT_NAMESPACE = "keyedcache"

# Sentinel for "no default given": cache_get then raises NotCachedError.
_RAISE: Any = object()
# A key the first-level scope has not seen yet.
_UNSEEN: Any = object()


class KeyedCache:
    """keyedcache's operations on one Django cache alias.

    Reads that fail because the backend is down are misses, writes that fail
    are skipped; both are logged (rate-limited) and counted as errors.
    """

    #: Seconds between two outage warnings for one alias (the count is exact).
    warn_every = 10.0

    def __init__(self, alias: str = "default", *, namespace: str = DEFAULT_NAMESPACE) -> None:
        self.alias = alias
        self.namespace = namespace
        backend = caches[alias]
        #: False when the alias cannot cache: the dummy backend or TIMEOUT 0.
        self.backend_enabled = not isinstance(backend, DummyCache) and backend.default_timeout != 0
        self.adapter: Adapter = build_adapter(alias, namespace)
        #: Names this cache's table in a first-level scope.
        self.scope_id = f"{alias}\x00{namespace}"
        self._last_warning = 0.0

    def __repr__(self) -> str:
        return f"<KeyedCache alias={self.alias!r} adapter={self.adapter.name!r}>"

    @property
    def enabled(self) -> bool:
        """True when this alias caches and keyedcache is enabled (`cache_enable`)."""
        return self.backend_enabled and _enabled[0]

    # -- failures ---------------------------------------------------------

    def _failed(self, operation: str, key: str, exc: BaseException) -> None:
        counters.slots(key)[ERRORS] += 1
        now = time.monotonic()
        if now - self._last_warning >= self.warn_every:
            self._last_warning = now
            log.warning(
                "keyedcache: %s of %r on cache alias %r failed (%s: %s); "
                "treating it as a miss/skip until the backend answers again",
                operation,
                key,
                self.alias,
                type(exc).__name__,
                exc,
            )
        else:
            log.debug("keyedcache: %s of %r failed: %r", operation, key, exc)

    # -- reads ------------------------------------------------------------

    def get(self, key: str, default: Any = _RAISE) -> Any:
        """Return the value cached under logical `key`.

        On a miss return `default`, or raise NotCachedError(key) when no
        default is given. A cached None, False, 0 or '' is a hit. Inside a
        first-level scope, a key is read from the backend once per scope.
        """
        if self.backend_enabled and _enabled[0]:
            counts = counters.slots(key)
            scope = current_scope()
            if scope is None:
                value = self._read(key)
            else:
                table = scope.tables.get(self.scope_id)
                value = _UNSEEN if table is None else table.get(key, _UNSEEN)
                if value is _UNSEEN:
                    value = self._read(key)
                    scope.remember(self.scope_id, key, value)
                elif value is not ABSENT:
                    counts[LOCAL_HITS] += 1
                    return value
            if value is not ABSENT:
                counts[HITS] += 1
                return value
            counts[MISSES] += 1
        if default is _RAISE:
            raise NotCachedError(key)
        return default

    def _fetch(self, key: str) -> Any:
        """The raw stored value of `key`, or MISSING; a failing backend reads as MISSING."""
        try:
            return self.adapter.get(key)
        except Exception as exc:
            self._failed("get", key, exc)
            return MISSING

    def _read(self, key: str) -> Any:
        """Return the fresh value stored for `key`, or ABSENT (also when the backend fails)."""
        raw = self._fetch(key)
        # Inline envelope check rather than unpack(): this is the hot path.
        if (
            type(raw) is tuple
            and len(raw) >= 5
            and raw[0] == ENTRY_FORMAT
            and (raw[2] is None or raw[2] > time.time())
        ):
            return raw[1]
        return ABSENT

    def read(self, key: str) -> tuple[Any, tuple[Any, ...] | None]:
        """Read `key` for memoization: `(value, packed)` for a fresh hit,
        `(ABSENT, packed)` when only a stale entry is stored, `(ABSENT, None)`
        on a miss. Counted like `get`; fresh hits go through the first-level
        scope (`packed` is None for a scope hit).
        """
        if not (self.backend_enabled and _enabled[0]):
            return ABSENT, None
        counts = counters.slots(key)
        scope = current_scope()
        if scope is not None:
            table = scope.tables.get(self.scope_id)
            if table is not None:
                value = table.get(key, ABSENT)
                if value is not ABSENT:
                    counts[LOCAL_HITS] += 1
                    return value, None
        raw = self._fetch(key)
        if type(raw) is tuple and len(raw) >= 5 and raw[0] == ENTRY_FORMAT:
            if raw[2] is None or raw[2] > time.time():
                counts[HITS] += 1
                if scope is not None:
                    scope.remember(self.scope_id, key, raw[1])
                return raw[1], raw
            counts[MISSES] += 1
            return ABSENT, raw
        counts[MISSES] += 1
        return ABSENT, None

    def get_entry(self, key: str) -> Entry | None:
        """Return the whole stored Entry for `key`, stale or not, or None."""
        if not self.enabled:
            return None
        raw = self._fetch(key)
        return None if raw is MISSING else unpack(raw)

    def is_cached(self, key: str) -> bool:
        """Tell whether a fresh value is cached under `key`."""
        return self.get(key, default=ABSENT) is not ABSENT

    # -- writes -----------------------------------------------------------

    def set(self, key: str, value: Any, length: Any = DEFAULT_TIMEOUT) -> None:
        """Cache `value` under `key` for `length` seconds (None: forever; 0: expire now)."""
        if not self.enabled:
            return
        timeout = self.adapter.resolve_timeout(length)
        self.set_entry(key, make_entry(value, timeout, key=self.adapter.key_to_keep(key)), timeout)

    def set_entry(self, key: str, entry: Entry, timeout: float | None) -> None:
        """Store a prepared Entry; the backend drops it after `timeout` seconds."""
        if not self.enabled:
            return
        packed = entry.pack()
        counters.slots(key)[SETS] += 1
        try:
            self.adapter.set(key, packed, backend_timeout(timeout))
        except Exception as exc:
            self._raise_if_unpicklable(key, packed)
            self._failed("set", key, exc)
        scope = current_scope()
        if scope is not None:
            fresh = timeout is None or timeout > 0
            scope.remember(self.scope_id, key, entry.value if fresh else ABSENT)

    def add_entry(self, key: str, entry: Entry, timeout: float | None) -> bool:
        """Store `entry` only if nothing is stored under `key`; say whether it stored."""
        if not self.enabled:
            return False
        packed = entry.pack()
        try:
            return self.adapter.add(key, packed, backend_timeout(timeout))
        except Exception as exc:
            self._raise_if_unpicklable(key, packed)
            self._failed("add", key, exc)
            return False

    @staticmethod
    def _raise_if_unpicklable(key: str, packed: tuple[Any, ...]) -> None:
        try:
            pickle.dumps(packed, pickle.HIGHEST_PROTOCOL)
        except Exception as cause:
            raise UncacheableValueError(key, cause) from cause

    # -- deletes ----------------------------------------------------------

    def delete(self, key: str, *, children: bool = False) -> list[str]:
        """Delete `key` (and with `children`, every key below it); return deleted keys.

        Where the backend cannot list keys (memcached, file-based), a children
        delete returns only `key` itself, if it was cached.
        """
        if not self.enabled:
            return []
        counters.slots(key)[DELETES] += 1
        scope = current_scope()
        if scope is not None:
            if children:
                scope.forget_subtree(self.scope_id, key)
            else:
                scope.remember(self.scope_id, key, ABSENT)
        try:
            if children:
                return self.adapter.delete_subtree(key) or []
            return [key] if self.adapter.delete(key) else []
        except Exception as exc:
            self._failed("delete", key, exc)
            return []

    def delete_all(self) -> list[str]:
        """Delete every keyedcache entry in this alias, and nothing else stored there."""
        if not self.enabled:
            return []
        counters.slots(None)[DELETES] += 1
        scope = current_scope()
        if scope is not None:
            scope.forget_all(self.scope_id)
        try:
            return self.adapter.delete_all() or []
        except Exception as exc:
            self._failed("delete all", "*", exc)
            return []

    # -- listing, patterns, TTL, bulk ---------------------------------------

    def iter_keys(self, pattern: str = "*") -> Iterator[str]:
        """Yield the logical keys of live keyedcache entries matching glob `pattern`.

        Streams from the backend (Redis SCAN, a database cursor, memcached's
        LRU crawler, a walk of the file cache); order is the backend's.
        """
        if not self.enabled:
            return
        prefix = pattern_scan_prefix(pattern, self.namespace)
        try:
            for key in self.adapter.list_keys(prefix):
                if fnmatchcase(key, pattern):
                    yield key
        except NotImplementedError:
            raise
        except Exception as exc:
            self._failed("list keys", pattern, exc)

    def keys(self, pattern: str = "*") -> list[str]:
        """The sorted list of logical keys matching glob `pattern`."""
        return sorted(self.iter_keys(pattern))

    #: Keys deleted per backend call by `delete_pattern`.
    delete_batch = 500

    def delete_pattern(
        self, pattern: str, *, progress: Callable[[int, int], object] | None = None
    ) -> int:
        """Delete every entry whose key matches glob `pattern`; return how many.

        The matching keys are listed first, then deleted in batches (one
        backend call per batch where the backend allows); `progress(done,
        total)` is called after each batch.
        """
        doomed = list(self.iter_keys(pattern))
        scope = current_scope()
        deleted = 0
        for start in range(0, len(doomed), self.delete_batch):
            batch = doomed[start : start + self.delete_batch]
            if scope is not None:
                for key in batch:
                    scope.remember(self.scope_id, key, ABSENT)
            try:
                count = self.adapter.delete_many(batch)
            except Exception as exc:
                self._failed("delete", batch[0], exc)
                count = 0
            deleted += count
            # A batch delete tells how many, not which: keys that vanished
            # between listing and delete are rare, so count the first ones.
            for key in batch[:count]:
                counters.slots(key)[DELETES] += 1
            if progress is not None:
                progress(start + len(batch), len(doomed))
        return deleted

    def pttl(self, key: str) -> int | None:
        """Milliseconds until `key` expires: None if it never does, 0 if it is not stored."""
        if not self.enabled:
            return 0
        try:
            native = self.adapter.native_ttl(key)
        except Exception as exc:
            self._failed("ttl", key, exc)
            return 0
        if native is NotImplemented:
            entry = self.get_entry(key)
            if entry is None:
                return 0
            native = entry.seconds_left()
        if native is MISSING:
            return 0
        if native is None:
            return None
        return max(math.ceil(float(native) * 1000), 1)

    def ttl(self, key: str) -> int | None:
        """Whole seconds until `key` expires (rounded up): None if never, 0 if not stored."""
        millis = self.pttl(key)
        return millis if millis is None else math.ceil(millis / 1000)

    def expire(self, key: str, length: Any) -> bool:
        """Make `key` expire `length` seconds from now (None: never); say whether it existed."""
        if not self.enabled:
            return False
        timeout = self.adapter.resolve_timeout(length)
        try:
            done = self.adapter.native_expire(key, timeout)
            if done is NotImplemented:
                done = self._rewrite_expiry(key, timeout)
            elif done and (timeout is None or timeout > 0):
                # The envelope of an entry stored with a fractional length
                # holds its exact expiry as its freshness: move that too.
                self._rewrite_expiry(key, timeout, pinned_only=True)
        except Exception as exc:
            self._failed("expire", key, exc)
            return False
        scope = current_scope()
        if scope is not None and timeout is not None and timeout <= 0:
            scope.remember(self.scope_id, key, ABSENT)
        return bool(done)

    def _rewrite_expiry(
        self, key: str, timeout: float | None, *, pinned_only: bool = False
    ) -> bool:
        # Backends that cannot change an expiry in place: read, then store the
        # entry again with the new one (not atomic with concurrent writers).
        entry = unpack(self.adapter.get(key))
        if entry is None:
            return False
        # Freshness equal to the expiry only records an exact (fractional)
        # expiry, and follows it; a stale window's end of freshness does not.
        pinned = entry.fresh_until is not None and entry.fresh_until == entry.stale_until
        if pinned_only and not pinned:
            return True
        if timeout is not None and timeout <= 0:
            self.adapter.delete(key)
            return True
        drop_at = None if timeout is None else time.time() + timeout
        fresh_until = entry.fresh_until
        if pinned:
            fresh_until = drop_at
        elif fresh_until is not None and drop_at is not None:
            fresh_until = min(fresh_until, drop_at)
        updated = entry._replace(fresh_until=fresh_until, stale_until=drop_at)
        self.adapter.set(key, updated.pack(), backend_timeout(timeout))
        return True

    def expire_at(self, key: str, when: datetime.datetime) -> bool:
        """Make `key` expire at `when` (an aware datetime, or naive in local time)."""
        seconds = when.timestamp() - time.time()
        return self.expire(key, seconds)

    def persist(self, key: str) -> bool:
        """Make `key` never expire; say whether it existed."""
        return self.expire(key, None)

    def add(self, key: str, value: Any, length: Any = DEFAULT_TIMEOUT) -> bool:
        """Store `value` only if nothing is stored under `key`; say whether it stored."""
        if not self.enabled:
            return False
        timeout = self.adapter.resolve_timeout(length)
        added = self.add_entry(
            key, make_entry(value, timeout, key=self.adapter.key_to_keep(key)), timeout
        )
        scope = current_scope()
        if added and scope is not None:
            scope.remember(self.scope_id, key, value)
        return added

    def get_many(self, key_list: Iterable[str]) -> dict[str, Any]:
        """Return {key: value} for keys with a fresh value, in one backend call if possible."""
        wanted = list(dict.fromkeys(key_list))
        if not self.enabled or not wanted:
            return {}
        slots = counters.slots
        found: dict[str, Any] = {}
        scope = current_scope()
        table = scope.tables.get(self.scope_id) if scope is not None else None
        if table is not None:
            for key in wanted:
                value = table.get(key, _UNSEEN)
                if value is not _UNSEEN and value is not ABSENT:
                    found[key] = value
                    slots(key)[LOCAL_HITS] += 1
        remaining = [key for key in wanted if key not in found]
        if remaining:
            try:
                raw_by_key = self.adapter.get_many(remaining)
            except Exception as exc:
                self._failed("get many", remaining[0], exc)
                raw_by_key = {}
            now = time.time()
            for key in remaining:
                raw = raw_by_key.get(key, MISSING)
                fresh = is_packed(raw) and (raw[2] is None or raw[2] > now)
                if fresh:
                    found[key] = raw[1]
                    slots(key)[HITS] += 1
                else:
                    slots(key)[MISSES] += 1
                if scope is not None:
                    scope.remember(self.scope_id, key, raw[1] if fresh else ABSENT)
        return found

    def set_many(self, values: dict[str, Any], length: Any = DEFAULT_TIMEOUT) -> None:
        """Store several values at once; nothing is written if any of them cannot be pickled."""
        if not self.enabled or not values:
            return
        timeout = self.adapter.resolve_timeout(length)
        packed_by_key = {
            key: make_entry(value, timeout, key=self.adapter.key_to_keep(key)).pack()
            for key, value in values.items()
        }
        # Check every value before writing any: a backend may write them one by one.
        for key, packed in packed_by_key.items():
            self._raise_if_unpicklable(key, packed)
        for key in packed_by_key:
            counters.slots(key)[SETS] += 1
        try:
            self.adapter.set_many(packed_by_key, backend_timeout(timeout))
        except Exception as exc:
            self._failed("set many", next(iter(packed_by_key)), exc)
        scope = current_scope()
        if scope is not None:
            fresh = timeout is None or timeout > 0
            for key, value in values.items():
                scope.remember(self.scope_id, key, value if fresh else ABSENT)

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

    # -- locks ------------------------------------------------------------

    def lock_acquire(self, key: str, token: str, timeout: float) -> bool | None:
        """Take the lock named `key` for `token`; None when the backend does not answer."""
        try:
            return self.adapter.lock_acquire(key, token, timeout)
        except Exception as exc:
            self._failed("lock", key, exc)
            return None

    def lock_release(self, key: str, token: str) -> bool:
        """Release the lock named `key` if `token` holds it; say whether it did."""
        try:
            return self.adapter.lock_release(key, token)
        except Exception as exc:
            self._failed("unlock", key, exc)
            return False

    def lock_extend(self, key: str, token: str, timeout: float) -> bool:
        """Extend the lock held by `token` to `timeout` seconds from now."""
        try:
            return self.adapter.lock_extend(key, token, timeout)
        except Exception as exc:
            self._failed("extend lock", key, exc)
            return False

    def lock_owner(self, key: str) -> str | None:
        """The token holding the lock named `key`, or None (also when the backend fails)."""
        try:
            return self.adapter.lock_owner(key)
        except Exception as exc:
            self._failed("lock owner", key, exc)
            return None

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


# -- the default instance and the module functions -------------------------

# A list so the flag is shared without a `global` statement in every caller.
_enabled = [True]
_default: KeyedCache | None = None
_default_lock = threading.Lock()

RELEVANT_SETTINGS = {"CACHES", "KEYEDCACHE_ALIAS", "KEYEDCACHE_NAMESPACE"}


def default_cache() -> KeyedCache:
    """Return the KeyedCache built from settings (KEYEDCACHE_ALIAS, KEYEDCACHE_NAMESPACE)."""
    store = _default
    if store is None:
        with _default_lock:
            store = _default
            if store is None:
                store = _build_default()
    return store


def _build_default() -> KeyedCache:
    global _default
    alias = getattr(settings, "KEYEDCACHE_ALIAS", "default")
    namespace = getattr(settings, "KEYEDCACHE_NAMESPACE", DEFAULT_NAMESPACE)
    _default = KeyedCache(alias, namespace=namespace)
    return _default


def keyedcache_configure() -> KeyedCache:
    """Rebuild the default KeyedCache from the current settings and return it."""
    with _default_lock:
        return _build_default()


def _reset_on_setting_change(*, setting: str, **kwargs: Any) -> None:
    global _default
    if setting in RELEVANT_SETTINGS:
        _default = None


setting_changed.connect(_reset_on_setting_change, dispatch_uid="keyedcache.store.reset")


def cache_enable(state: bool = True) -> None:
    """Turn keyedcache on or off in this process (off: gets miss, sets do nothing)."""
    _enabled[0] = bool(state)


def cache_enabled() -> bool:
    """Tell whether keyedcache caches: enabled, and the alias is not dummy or TIMEOUT 0."""
    return _enabled[0] and default_cache().backend_enabled


def _key_of(function: str, keys: tuple[Any, ...], pairs: dict[str, Any]) -> str:
    if not keys and not pairs:
        raise ValueError(f"{function}() needs at least one key part, e.g. {function}('product', 1)")
    return key_from(keys, pairs)


def cache_get(*keys: Any, default: Any = _RAISE, **pairs: Any) -> Any:
    """Return the value cached under the key built from `keys` and `pairs`.

    On a miss return `default`, or raise NotCachedError (its `.key` is the
    cache key) when no default is given.
    """
    key = key_from(keys, pairs) if keys else _key_of("cache_get", keys, pairs)
    return (_default or default_cache()).get(key, default)


def cache_set(
    *keys: Any,
    value: Any = _RAISE,
    length: Any = DEFAULT_TIMEOUT,
    skiplog: bool = False,
    **pairs: Any,
) -> None:
    """Cache `value` under the key built from `keys` and `pairs`.

    `length` is in seconds: omitted, the alias's TIMEOUT; None, forever; 0, expire now.
    """
    if value is _RAISE:
        raise TypeError("cache_set() needs the value to store as value=...")
    key = _key_of("cache_set", keys, pairs)
    if not skiplog:
        log.debug("keyedcache: set %r", key)
    default_cache().set(key, value, length)


def cache_delete(*keys: Any, children: bool = False, **pairs: Any) -> list[str]:
    """Delete the key built from `keys` and `pairs` (with `children`, its subtree too).

    With no keys at all, delete every keyedcache entry and nothing else in the
    cache. Returns the deleted keys where the backend can tell.
    """
    if not keys and not pairs:
        return default_cache().delete_all()
    return default_cache().delete(cache_key(*keys, **pairs), children=children)


def is_cached(*keys: Any, **pairs: Any) -> bool:
    """Tell whether a value is cached under the key built from `keys` and `pairs`."""
    return default_cache().is_cached(_key_of("is_cached", keys, pairs))


def cache_require() -> bool | None:
    """Raise CacheNotRespondingError unless a set/get round trip through the cache works."""
    return default_cache().require()


# -- portable operations as module functions -----------------------------------


def _logical(key: Any) -> str:
    """A key given as a string is used as it is; a tuple or list is a list of parts."""
    if isinstance(key, str):
        return key
    if isinstance(key, (tuple, list)):
        return key_from(tuple(key), {})
    raise TypeError(f"a key must be a string or a tuple of key parts, not {key!r}")


def iter_keys(pattern: str = "*") -> Iterator[str]:
    """Yield the keys of keyedcache entries matching glob `pattern` (`*`, `?`, `[...]`)."""
    return default_cache().iter_keys(pattern)


def cache_keys(pattern: str = "*") -> list[str]:
    """The sorted list of keys of keyedcache entries matching glob `pattern`."""
    return default_cache().keys(pattern)


def cache_delete_pattern(pattern: str) -> int:
    """Delete the keyedcache entries whose keys match glob `pattern`; return how many."""
    return default_cache().delete_pattern(pattern)


def cache_ttl(*keys: Any, **pairs: Any) -> int | None:
    """Whole seconds until the key expires: None if it never does, 0 if it is not cached."""
    return default_cache().ttl(_key_of("cache_ttl", keys, pairs))


def cache_pttl(*keys: Any, **pairs: Any) -> int | None:
    """Milliseconds until the key expires: None if it never does, 0 if it is not cached."""
    return default_cache().pttl(_key_of("cache_pttl", keys, pairs))


def cache_expire(*keys: Any, length: Any, **pairs: Any) -> bool:
    """Make the key expire `length` seconds from now; say whether it was cached."""
    return default_cache().expire(_key_of("cache_expire", keys, pairs), length)


def cache_expire_at(*keys: Any, when: datetime.datetime, **pairs: Any) -> bool:
    """Make the key expire at datetime `when`; say whether it was cached."""
    return default_cache().expire_at(_key_of("cache_expire_at", keys, pairs), when)


def cache_persist(*keys: Any, **pairs: Any) -> bool:
    """Make the key never expire; say whether it was cached."""
    return default_cache().persist(_key_of("cache_persist", keys, pairs))


def cache_add(*keys: Any, value: Any = _RAISE, length: Any = DEFAULT_TIMEOUT, **pairs: Any) -> bool:
    """Cache `value` only if nothing is cached under the key; say whether it stored."""
    if value is _RAISE:
        raise TypeError("cache_add() needs the value to store as value=...")
    return default_cache().add(_key_of("cache_add", keys, pairs), value, length)


def cache_get_many(keys: Iterable[Any]) -> dict[str, Any]:
    """Return {key: value} for the cached ones of `keys` (strings or tuples of parts)."""
    return default_cache().get_many([_logical(key) for key in keys])


def cache_set_many(mapping: dict[Any, Any], length: Any = DEFAULT_TIMEOUT) -> None:
    """Cache every value of `mapping` under its key (a string or a tuple of parts)."""
    default_cache().set_many({_logical(key): value for key, value in mapping.items()}, length)


def cache_lock(
    *keys: Any,
    timeout: float = DEFAULT_LOCK_TIMEOUT,
    blocking: bool = True,
    blocking_timeout: float | None = None,
    **pairs: Any,
) -> CacheLock:
    """A lock named by the key, exclusive across processes; use it as a context manager."""
    return default_cache().lock(
        _key_of("cache_lock", keys, pairs),
        timeout=timeout,
        blocking=blocking,
        blocking_timeout=blocking_timeout,
    )
