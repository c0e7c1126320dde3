"""keyedcache: keyed caching for Django on any cache alias (public API, re-exported)."""

from keyedcache.exceptions import (
    CacheNotRespondingError,
    MethodNotFinishedError,
    NotCachedError,
    UncacheableValueError,
)
from keyedcache.keys import KEY_DELIM, cache_key
from keyedcache.memoize import cache_delete_function, cache_function
from keyedcache.store import (
    KeyedCache,
    cache_delete,
    cache_enable,
    cache_enabled,
    cache_get,
    cache_require,
    cache_set,
    default_cache,
    is_cached,
    keyedcache_configure,
)

__version__ = "2.0.0.dev0"

__all__ = [
    "KEY_DELIM",
    "CacheNotRespondingError",
    "KeyedCache",
    "MethodNotFinishedError",
    "NotCachedError",
    "UncacheableValueError",
    "cache_delete",
    "cache_delete_function",
    "cache_enable",
    "cache_enabled",
    "cache_function",
    "cache_get",
    "cache_key",
    "cache_require",
    "cache_set",
    "default_cache",
    "is_cached",
    "keyedcache_configure",
]
