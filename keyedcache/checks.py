"""Django system checks for keyedcache's settings."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.base import InvalidCacheBackendError, default_key_func
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from keyedcache import conf
from keyedcache.backends import NATIVE_BACKENDS
from keyedcache.backends.base import MAX_KEY_LENGTH

# Room a storage key needs beyond the namespace: a digest tail and a segment.
_MIN_ROOM = 64


def _has_native_adapter(backend: Any) -> bool:
    path = f"{type(backend).__module__}.{type(backend).__qualname__}"
    return path in NATIVE_BACKENDS


#: Backends a native adapter could serve but keyedcache does not yet know, and
#: what keyedcache cannot do on them (it runs them on its generic adapter).
_NOT_YET_NATIVE = {
    "django_redis.cache.RedisCache": "django-redis",
    "django_valkey.cache.ValkeyCache": "django-valkey",
    "django_valkey.cluster_cache.cache.ClusterValkeyCache": "django-valkey's cluster cache",
}
_GENERIC_LIMITS = (
    "keyedcache cannot list its keys there: cache_keys(), iter_keys(), "
    "cache_delete_pattern(), manage.py keyedcache keys/delete-pattern and the dashboard's "
    "key browser fail, and stats() shows this process only. Reads, writes, deletes, "
    "memoization and locks work, through Django's cache API."
)


@register(Tags.caches)
def check_generic_redis_aliases(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Warn about aliases on a Redis-family backend that keyedcache runs generically."""
    messages: list[CheckMessage] = []
    for alias, config in sorted(settings.CACHES.items()):
        backend = config.get("BACKEND") if isinstance(config, dict) else None
        name = _NOT_YET_NATIVE.get(str(backend))
        if name is not None:
            messages.append(
                Warning(
                    f"CACHES[{alias!r}] uses {name} ({backend}), which keyedcache runs on "
                    f"its generic adapter: {_GENERIC_LIMITS}",
                    hint="Django's own django.core.cache.backends.redis.RedisCache has a "
                    "native adapter; see docs/backends.md.",
                    id="keyedcache.W002",
                )
            )
    return messages


@register(Tags.caches)
def check_keyedcache_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Check KEYEDCACHE_ALIAS, KEYEDCACHE_NAMESPACE and the alias they point at."""
    messages: list[CheckMessage] = []
    alias = conf.setting("KEYEDCACHE_ALIAS", conf.DEFAULT_ALIAS)
    namespace = conf.setting("KEYEDCACHE_NAMESPACE", conf.DEFAULT_NAMESPACE)
    if not isinstance(alias, str) or alias not in settings.CACHES:
        messages.append(
            Error(
                f"KEYEDCACHE_ALIAS is {alias!r}, which is not an alias in settings.CACHES "
                f"(aliases: {', '.join(sorted(settings.CACHES)) or 'none'}).",
                hint="Set KEYEDCACHE_ALIAS to one of the CACHES aliases, "
                "or leave it out for 'default'.",
                id="keyedcache.E001",
            )
        )
        return messages
    if (
        not isinstance(namespace, str)
        or not namespace
        or not all(33 <= ord(c) < 126 and c != ":" for c in namespace)
    ):
        messages.append(
            Error(
                f"KEYEDCACHE_NAMESPACE is {namespace!r}; it must be a non-empty string of "
                "printable ASCII without spaces, ':' or '~'.",
                id="keyedcache.E002",
            )
        )
        return messages
    try:
        backend = caches[alias]
    except (InvalidCacheBackendError, ImportError) as exc:
        messages.append(
            Error(
                f"CACHES[{alias!r}] (KEYEDCACHE_ALIAS) cannot be loaded: {exc}",
                id="keyedcache.E003",
            )
        )
        return messages
    room = MAX_KEY_LENGTH - len(backend.make_key("")) - len(namespace) - 1
    if room < _MIN_ROOM:
        messages.append(
            Error(
                f"CACHES[{alias!r}]['KEY_PREFIX'] and KEYEDCACHE_NAMESPACE leave only {room} "
                f"characters of the {MAX_KEY_LENGTH}-character key limit for keyedcache keys.",
                hint="Shorten KEY_PREFIX or KEYEDCACHE_NAMESPACE.",
                id="keyedcache.E004",
            )
        )
    if backend.key_func is not default_key_func and _has_native_adapter(backend):
        messages.append(
            Warning(
                f"CACHES[{alias!r}] uses a custom KEY_FUNCTION, so keyedcache cannot list its "
                "keys (cache_keys, pattern deletes, the key browser) and reads through "
                "Django's cache API.",
                id="keyedcache.W001",
            )
        )
    return messages
