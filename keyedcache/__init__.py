"""keyedcache: keyed caching for Django on any cache alias (public API, re-exported)."""

from keyedcache.exceptions import (
    CacheNotRespondingError,
    MethodNotFinishedError,
    NotCachedError,
    UncacheableValueError,
)
from keyedcache.keys import KEY_DELIM, cache_key
from keyedcache.local import request_cache
from keyedcache.lock import CacheLock, LockError, LockNotOwnedError
from keyedcache.memoize import cache_delete_function, cache_function
from keyedcache.store import (
    KeyedCache,
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
    default_cache,
    is_cached,
    iter_keys,
    keyedcache_configure,
)

__version__ = "2.0.0.dev0"

__all__ = [
    "KEY_DELIM",
    "CacheLock",
    "CacheNotRespondingError",
    "KeyedCache",
    "LockError",
    "LockNotOwnedError",
    "MethodNotFinishedError",
    "NotCachedError",
    "UncacheableValueError",
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
]
