"""keyedcache: keyed caching for Django on any cache alias (public API, re-exported)."""

from keyedcache.aapi import (
    acache_add,
    acache_delete,
    acache_delete_pattern,
    acache_expire,
    acache_expire_at,
    acache_get,
    acache_get_many,
    acache_keys,
    acache_persist,
    acache_pttl,
    acache_set,
    acache_set_many,
    acache_ttl,
    ais_cached,
    aiter_keys,
)
from keyedcache.api import (
    cache_add,
    cache_delete,
    cache_delete_pattern,
    cache_enable,
    cache_enabled,
    cache_expire,
    cache_expire_at,
    cache_get,
    cache_get_many,
    cache_keys,
    cache_lock,
    cache_persist,
    cache_pttl,
    cache_require,
    cache_set,
    cache_set_many,
    cache_ttl,
    is_cached,
    iter_keys,
)
from keyedcache.cache import KeyedCache
from keyedcache.cluster import deprecated_global as _deprecated_global
from keyedcache.cluster import stats
from keyedcache.exceptions import (
    CacheBackendError,
    CacheNotRespondingError,
    MethodNotFinishedError,
    NotCachedError,
    UncacheableValueError,
)
from keyedcache.keys import KEY_DELIM, cache_key
from keyedcache.local import request_cache
from keyedcache.lock import CacheLock, LockError, LockNotOwnedError
from keyedcache.memoize import cache_delete_function, cache_function
from keyedcache.registry import default_cache, keyedcache_configure

__version__ = "2.0.0.dev0"

__all__ = [
    "KEY_DELIM",
    "CacheBackendError",
    "CacheLock",
    "CacheNotRespondingError",
    "KeyedCache",
    "LockError",
    "LockNotOwnedError",
    "MethodNotFinishedError",
    "NotCachedError",
    "UncacheableValueError",
    "acache_add",
    "acache_delete",
    "acache_delete_pattern",
    "acache_expire",
    "acache_expire_at",
    "acache_get",
    "acache_get_many",
    "acache_keys",
    "acache_persist",
    "acache_pttl",
    "acache_set",
    "acache_set_many",
    "acache_ttl",
    "ais_cached",
    "aiter_keys",
    "cache_add",
    "cache_delete",
    "cache_delete_function",
    "cache_delete_pattern",
    "cache_enable",
    "cache_enabled",
    "cache_expire",
    "cache_expire_at",
    "cache_function",
    "cache_get",
    "cache_get_many",
    "cache_key",
    "cache_keys",
    "cache_lock",
    "cache_persist",
    "cache_pttl",
    "cache_require",
    "cache_set",
    "cache_set_many",
    "cache_ttl",
    "default_cache",
    "is_cached",
    "iter_keys",
    "keyedcache_configure",
    "request_cache",
    "stats",
]


def __getattr__(name: str) -> object:
    """The keyedcache 1.5 globals CACHE_CALLS, CACHE_HITS and CACHED_KEYS (deprecated)."""
    return _deprecated_global(name)
