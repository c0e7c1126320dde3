"""The registry: the one place that decides which KeyedCache serves a cache alias."""

from __future__ import annotations

import threading

from keyedcache import breaker, conf
from keyedcache.cache import KeyedCache

# Built once per (alias, namespace) and kept until a relevant setting changes
# (conf.on_change below): building one builds an adapter, which reads the
# alias's configuration and may open a client.
_built: dict[tuple[str, str], KeyedCache] = {}
# The default one, also in a list read without the lock on every module-function call.
_default: list[KeyedCache | None] = [None]
_lock = threading.RLock()


def get_cache(alias: str | None = None, namespace: str | None = None) -> KeyedCache:
    """The KeyedCache for `alias` (KEYEDCACHE_ALIAS) in `namespace` (KEYEDCACHE_NAMESPACE)."""
    alias = conf.alias() if alias is None else alias
    namespace = conf.namespace() if namespace is None else namespace
    found = _built.get((alias, namespace))
    if found is None:
        with _lock:
            found = _built.get((alias, namespace))
            if found is None:
                found = _built[(alias, namespace)] = KeyedCache(alias, namespace=namespace)
    return found


def default_cache() -> KeyedCache:
    """The KeyedCache built from settings (KEYEDCACHE_ALIAS, KEYEDCACHE_NAMESPACE)."""
    store = _default[0]
    if store is None:
        with _lock:
            store = _default[0]
            if store is None:
                store = _default[0] = get_cache()
    return store


def stats_cache(alias: str | None = None) -> KeyedCache | None:
    """The KeyedCache process records live in: namespace `<namespace>-stats` of `alias`
    (default: the default cache's alias).

    Outside the namespace of entries, so key listings and delete-all never
    see the records. None when the alias cannot cache.
    """
    store = default_cache() if alias is None else get_cache(alias)
    if not store.backend_enabled:
        return None
    return get_cache(store.alias, f"{store.namespace}-stats")


def keyedcache_configure() -> KeyedCache:
    """Rebuild every KeyedCache (and circuit breaker, closed) from settings; return the default."""
    breaker.reset()
    reset()
    return default_cache()


def reset(setting: str | None = None) -> None:
    """Forget every built KeyedCache; the next call builds them from settings."""
    with _lock:
        _built.clear()
        _default[0] = None


conf.on_change(reset)
