"""KeyedCache, bound to one cache alias, and the module functions that use the default one."""

from __future__ import annotations

import logging
import pickle
import threading
import time
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.dummy import DummyCache
from django.core.signals import setting_changed

from keyedcache.backends import MISSING, Adapter, build_adapter
from keyedcache.entry import ENTRY_FORMAT, Entry, make_entry, unpack
from keyedcache.exceptions import CacheNotRespondingError, NotCachedError, UncacheableValueError
from keyedcache.keys import cache_key, key_from
from keyedcache.local import ABSENT, current_scope
from keyedcache.stats import CALLS, HITS, LOCAL_HITS, MISSES, counters

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
        counters.add("errors")
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
            counts = counters.slots()
            counts[CALLS] += 1
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

    def _read(self, key: str) -> Any:
        """Return the fresh value stored for `key`, or ABSENT (also when the backend fails)."""
        try:
            raw = self.adapter.get(key)
        except Exception as exc:
            self._failed("get", key, exc)
            return ABSENT
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
        counts = counters.slots()
        counts[CALLS] += 1
        scope = current_scope()
        if scope is not None:
            table = scope.tables.get(self.scope_id)
            if table is not None:
                value = table.get(key, ABSENT)
                if value is not ABSENT:
                    counts[LOCAL_HITS] += 1
                    return value, None
        try:
            raw = self.adapter.get(key)
        except Exception as exc:
            self._failed("get", key, exc)
            raw = MISSING
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
        try:
            raw = self.adapter.get(key)
        except Exception as exc:
            self._failed("get", key, exc)
            return None
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
        self.set_entry(key, make_entry(value, timeout, key=self._key_to_keep(key)), timeout)

    def set_entry(self, key: str, entry: Entry, timeout: float | None) -> None:
        """Store a prepared Entry; the backend drops it after `timeout` seconds."""
        if not self.enabled:
            return
        packed = entry.pack()
        counters.add("sets")
        try:
            self.adapter.set(key, packed, timeout)
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
            return self.adapter.add(key, packed, timeout)
        except Exception as exc:
            self._raise_if_unpicklable(key, packed)
            self._failed("add", key, exc)
            return False

    def _key_to_keep(self, key: str) -> str | None:
        # Keep the logical key in the envelope only where the storage key
        # cannot be read back into it (digested or cut segments).
        return None if self.adapter.plain_storage_key(key) else key

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
        counters.add("deletes")
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
        counters.add("deletes")
        scope = current_scope()
        if scope is not None:
            scope.forget_all(self.scope_id)
        try:
            return self.adapter.delete_all() or []
        except Exception as exc:
            self._failed("delete all", "*", exc)
            return []

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
