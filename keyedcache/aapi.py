"""The async module functions (acache_get, acache_set, ...): key parts in, KeyedCache.a* out."""

from __future__ import annotations

import datetime
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT

from keyedcache.api import _key_of, _logical
from keyedcache.entry import NO_VALUE
from keyedcache.keys import cache_key, key_from
from keyedcache.registry import _default, default_cache

log = logging.getLogger("keyedcache")

# Each function is the twin of the one in api.py without the leading "a", with
# the same arguments and results. On locmem and Redis they run on the event
# loop (no thread); on other backends each call is one thread hop.


async def acache_get(*keys: Any, default: Any = NO_VALUE, **pairs: Any) -> Any:
    """The value cached under the key, or `default`, or NotCachedError (see `cache_get`)."""
    key = key_from(keys, pairs) if keys else _key_of("acache_get", keys, pairs)
    return await (_default[0] or default_cache()).aget(key, default)


async def acache_set(
    *keys: Any,
    value: Any = NO_VALUE,
    length: Any = DEFAULT_TIMEOUT,
    skiplog: bool = False,
    **pairs: Any,
) -> None:
    """Cache `value` under the key for `length` seconds (see `cache_set`)."""
    if value is NO_VALUE:
        raise TypeError("acache_set() needs the value to store as value=...")
    key = _key_of("acache_set", keys, pairs)
    if not skiplog:
        log.debug("keyedcache: set %r", key)
    await default_cache().aset(key, value, length)


async def acache_delete(*keys: Any, children: bool = False, **pairs: Any) -> list[str]:
    """Delete the key (`children`: its subtree too); no keys: every entry (as `cache_delete`)."""
    if not keys and not pairs:
        return await default_cache().adelete_all()
    return await default_cache().adelete(cache_key(*keys, **pairs), children=children)


async def ais_cached(*keys: Any, **pairs: Any) -> bool:
    """Tell whether a value is cached under the key."""
    return await default_cache().ais_cached(_key_of("ais_cached", keys, pairs))


async def acache_get_many(keys: Iterable[Any]) -> dict[str, Any]:
    """{key: value} for the cached ones of `keys` (strings or tuples of parts)."""
    return await default_cache().aget_many([_logical(key) for key in keys])


async def acache_set_many(mapping: dict[Any, Any], length: Any = DEFAULT_TIMEOUT) -> None:
    """Cache every value of `mapping` under its key (a string or a tuple of parts)."""
    values = {_logical(key): value for key, value in mapping.items()}
    await default_cache().aset_many(values, length)


async def acache_add(
    *keys: Any, value: Any = NO_VALUE, length: Any = DEFAULT_TIMEOUT, **pairs: Any
) -> bool:
    """Cache `value` only if nothing is cached under the key; say whether it stored."""
    if value is NO_VALUE:
        raise TypeError("acache_add() needs the value to store as value=...")
    return await default_cache().aadd(_key_of("acache_add", keys, pairs), value, length)


async def acache_ttl(*keys: Any, **pairs: Any) -> int | None:
    """Whole seconds until the key expires: None if it never does, 0 if it is not cached."""
    return await default_cache().attl(_key_of("acache_ttl", keys, pairs))


async def acache_pttl(*keys: Any, **pairs: Any) -> int | None:
    """Milliseconds until the key expires: None if it never does, 0 if it is not cached."""
    return await default_cache().apttl(_key_of("acache_pttl", keys, pairs))


async def acache_expire(*keys: Any, length: Any, **pairs: Any) -> bool:
    """Make the key expire `length` seconds from now; say whether it was cached."""
    return await default_cache().aexpire(_key_of("acache_expire", keys, pairs), length)


async def acache_expire_at(*keys: Any, when: datetime.datetime, **pairs: Any) -> bool:
    """Make the key expire at datetime `when`; say whether it was cached."""
    return await default_cache().aexpire_at(_key_of("acache_expire_at", keys, pairs), when)


async def acache_persist(*keys: Any, **pairs: Any) -> bool:
    """Make the key never expire; say whether it was cached."""
    return await default_cache().apersist(_key_of("acache_persist", keys, pairs))


async def aiter_keys(pattern: str = "*") -> AsyncIterator[str]:
    """Yield the keys of keyedcache entries matching glob `pattern` (`async for`)."""
    async for key in default_cache().aiter_keys(pattern):
        yield key


async def acache_keys(pattern: str = "*") -> list[str]:
    """The sorted list of keys of keyedcache entries matching glob `pattern`."""
    return await default_cache().akeys(pattern)


async def acache_delete_pattern(pattern: str) -> int:
    """Delete the keyedcache entries whose keys match glob `pattern`; return how many."""
    return await default_cache().adelete_pattern(pattern)
