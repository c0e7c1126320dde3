"""The module functions of the public API: key parts in, the default KeyedCache's operations out."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT

from keyedcache.asyncwarn import running_loop, warn_sync_call
from keyedcache.cache import switch
from keyedcache.entry import NO_VALUE
from keyedcache.keys import cache_key, key_from
from keyedcache.lock import DEFAULT_LOCK_TIMEOUT, CacheLock
from keyedcache.registry import _default, default_cache

log = logging.getLogger("keyedcache")


def cache_enable(state: bool = True) -> None:
    """Turn keyedcache on or off in this process (off: gets miss, sets do nothing)."""
    switch[0] = bool(state)


def cache_enabled() -> bool:
    """Tell whether keyedcache caches: enabled, and the alias is not dummy or TIMEOUT 0."""
    return switch[0] and default_cache().backend_enabled


def _key_of(function: str, keys: tuple[Any, ...], pairs: dict[str, Any]) -> str:
    if not keys and not pairs:
        raise ValueError(f"{function}() needs at least one key part, e.g. {function}('product', 1)")
    return key_from(keys, pairs)


def cache_get(*keys: Any, default: Any = NO_VALUE, **pairs: Any) -> Any:
    """Return the value cached under the key built from `keys` and `pairs`.

    On a miss return `default`, or raise NotCachedError (its `.key` is the
    cache key) when no default is given.
    """
    if running_loop() is not None:
        warn_sync_call("cache_get")
    key = key_from(keys, pairs) if keys else _key_of("cache_get", keys, pairs)
    return (_default[0] or default_cache()).get(key, default)


def cache_set(
    *keys: Any,
    value: Any = NO_VALUE,
    length: Any = DEFAULT_TIMEOUT,
    skiplog: bool = False,
    **pairs: Any,
) -> None:
    """Cache `value` under the key built from `keys` and `pairs`.

    `length` is in seconds: omitted, the alias's TIMEOUT; None, forever; 0, expire now.
    """
    if running_loop() is not None:
        warn_sync_call("cache_set")
    if value is NO_VALUE:
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
    if running_loop() is not None:
        warn_sync_call("cache_delete")
    if not keys and not pairs:
        return default_cache().delete_all()
    return default_cache().delete(cache_key(*keys, **pairs), children=children)


def is_cached(*keys: Any, **pairs: Any) -> bool:
    """Tell whether a value is cached under the key built from `keys` and `pairs`."""
    if running_loop() is not None:
        warn_sync_call("is_cached")
    return default_cache().is_cached(_key_of("is_cached", keys, pairs))


def cache_require() -> bool | None:
    """Raise CacheNotRespondingError unless a set/get round trip through the cache works."""
    return default_cache().require()


# -- portable operations -------------------------------------------------------------


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
    if running_loop() is not None:
        warn_sync_call("cache_keys")
    return default_cache().keys(pattern)


def cache_delete_pattern(pattern: str) -> int:
    """Delete the keyedcache entries whose keys match glob `pattern`; return how many."""
    if running_loop() is not None:
        warn_sync_call("cache_delete_pattern")
    return default_cache().delete_pattern(pattern)


def cache_ttl(*keys: Any, **pairs: Any) -> int | None:
    """Whole seconds until the key expires: None if it never does, 0 if it is not cached."""
    if running_loop() is not None:
        warn_sync_call("cache_ttl")
    return default_cache().ttl(_key_of("cache_ttl", keys, pairs))


def cache_pttl(*keys: Any, **pairs: Any) -> int | None:
    """Milliseconds until the key expires: None if it never does, 0 if it is not cached."""
    if running_loop() is not None:
        warn_sync_call("cache_pttl")
    return default_cache().pttl(_key_of("cache_pttl", keys, pairs))


def cache_expire(*keys: Any, length: Any, **pairs: Any) -> bool:
    """Make the key expire `length` seconds from now; say whether it was cached."""
    if running_loop() is not None:
        warn_sync_call("cache_expire")
    return default_cache().expire(_key_of("cache_expire", keys, pairs), length)


def cache_expire_at(*keys: Any, when: datetime.datetime, **pairs: Any) -> bool:
    """Make the key expire at datetime `when`; say whether it was cached."""
    if running_loop() is not None:
        warn_sync_call("cache_expire_at")
    return default_cache().expire_at(_key_of("cache_expire_at", keys, pairs), when)


def cache_persist(*keys: Any, **pairs: Any) -> bool:
    """Make the key never expire; say whether it was cached."""
    if running_loop() is not None:
        warn_sync_call("cache_persist")
    return default_cache().persist(_key_of("cache_persist", keys, pairs))


def cache_add(
    *keys: Any, value: Any = NO_VALUE, length: Any = DEFAULT_TIMEOUT, **pairs: Any
) -> bool:
    """Cache `value` only if nothing is cached under the key; say whether it stored."""
    if running_loop() is not None:
        warn_sync_call("cache_add")
    if value is NO_VALUE:
        raise TypeError("cache_add() needs the value to store as value=...")
    return default_cache().add(_key_of("cache_add", keys, pairs), value, length)


def cache_get_many(keys: Iterable[Any]) -> dict[str, Any]:
    """Return {key: value} for the cached ones of `keys` (strings or tuples of parts)."""
    if running_loop() is not None:
        warn_sync_call("cache_get_many")
    return default_cache().get_many([_logical(key) for key in keys])


def cache_set_many(mapping: dict[Any, Any], length: Any = DEFAULT_TIMEOUT) -> None:
    """Cache every value of `mapping` under its key (a string or a tuple of parts)."""
    if running_loop() is not None:
        warn_sync_call("cache_set_many")
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
