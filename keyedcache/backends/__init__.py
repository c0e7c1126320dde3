"""Picks the adapter for a cache alias: native where the backend allows, generic elsewhere."""

from __future__ import annotations

from django.core.cache import caches
from django.core.cache.backends.base import default_key_func

from keyedcache.backends.base import Adapter, Undecodable
from keyedcache.backends.generational import FileBasedAdapter, MemcachedAdapter
from keyedcache.backends.stamped import StampedAdapter

__all__ = [
    "NATIVE_BACKENDS",
    "NATIVE_CLIENTS",
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
    "django_redis.cache.RedisCache": "keyedcache.backends.redisclients.DjangoRedisAdapter",
    "django_valkey.cache.ValkeyCache": "keyedcache.backends.redisclients.ValkeyAdapter",
    "django_valkey.cluster_cache.cache.ClusterValkeyCache": (
        "keyedcache.backends.redisclients.ValkeyClusterAdapter"
    ),
}
#: Backends whose own cache API needs a variant of the generic adapter.
_GENERIC = {
    "django_valkey.cluster_cache.cache.ClusterValkeyCache": (
        "keyedcache.backends.redisclients.GenericClusterAdapter"
    ),
}
#: The client classes (OPTIONS["CLIENT_CLASS"]) of django-redis and django-valkey
#: whose storage the native adapters understand. The sharded clients spread keys
#: over servers by their own hash ring and the herd clients wrap every value, so
#: those run on the generic adapter, through the library's own cache API.
NATIVE_CLIENTS = frozenset(
    {
        "django_redis.client.default.DefaultClient",
        "django_redis.client.sentinel.SentinelClient",
        "django_valkey.client.default.DefaultClient",
        "django_valkey.client.sentinel.SentinelClient",
        "django_valkey.cluster_cache.client.default.DefaultClusterClient",
    }
)
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
        if not _native_client(backend):
            return StampedAdapter
        cls: type[StampedAdapter] = import_string(NATIVE_BACKENDS[path])
        return cls
    if path in _GENERIC:
        generic: type[StampedAdapter] = import_string(_GENERIC[path])
        return generic
    return StampedAdapter


def _native_client(backend: object) -> bool:
    """False when a django-redis/django-valkey cache runs a client the adapters don't know."""
    client = getattr(type(backend), "client", None)
    if client is None:  # Django's own backends: no pluggable client
        return True
    kind = type(backend.client)  # type: ignore[attr-defined]
    return f"{kind.__module__}.{kind.__qualname__}" in NATIVE_CLIENTS


def build_adapter(alias: str, namespace: str) -> StampedAdapter:
    """Build the adapter for `alias`, storing entries under `namespace`."""
    return adapter_class_for(alias)(alias, namespace)
