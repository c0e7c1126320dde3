"""Picks the adapter for a cache alias: native where the backend allows, generic elsewhere."""

from __future__ import annotations

from django.core.cache import caches
from django.core.cache.backends.base import default_key_func

from keyedcache.backends.base import Adapter, Undecodable
from keyedcache.backends.generational import FileBasedAdapter, MemcachedAdapter
from keyedcache.backends.stamped import StampedAdapter

__all__ = [
    "NATIVE_BACKENDS",
    "Adapter",
    "StampedAdapter",
    "Undecodable",
    "adapter_class_for",
    "build_adapter",
]

# Matched on the backend's dotted class path, so importing an adapter module
# (and its client library) happens only for the backend in use.
NATIVE_BACKENDS = {
    "django.core.cache.backends.locmem.LocMemCache": "keyedcache.backends.locmem.LocMemAdapter",
    "django.core.cache.backends.db.DatabaseCache": "keyedcache.backends.database.DatabaseAdapter",
    "django.core.cache.backends.redis.RedisCache": "keyedcache.backends.redis.RedisAdapter",
}
_LISTING: dict[str, type[StampedAdapter]] = {
    "django.core.cache.backends.memcached.PyMemcacheCache": MemcachedAdapter,
    "django.core.cache.backends.memcached.PyLibMCCache": MemcachedAdapter,
    "django.core.cache.backends.filebased.FileBasedCache": FileBasedAdapter,
}


def adapter_class_for(alias: str) -> type[StampedAdapter]:
    """Return the adapter class that suits the cache configured as `alias`."""
    from django.utils.module_loading import import_string

    backend = caches[alias]
    path = f"{type(backend).__module__}.{type(backend).__qualname__}"
    if path in _LISTING:
        return _LISTING[path]
    # Native adapters read made keys directly; a custom KEY_FUNCTION hides them.
    if path in NATIVE_BACKENDS and backend.key_func is default_key_func:
        cls: type[StampedAdapter] = import_string(NATIVE_BACKENDS[path])
        return cls
    return StampedAdapter


def build_adapter(alias: str, namespace: str) -> StampedAdapter:
    """Build the adapter for `alias`, storing entries under `namespace`."""
    return adapter_class_for(alias)(alias, namespace)
