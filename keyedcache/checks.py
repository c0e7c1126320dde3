"""Django system checks for keyedcache's settings and cached models."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.base import InvalidCacheBackendError, default_key_func
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.utils.module_loading import import_string

from keyedcache import conf
from keyedcache.backends import NATIVE_BACKENDS, NATIVE_CLIENTS
from keyedcache.backends.base import MAX_KEY_LENGTH

# Room a storage key needs beyond the namespace: a digest tail and a segment.
_MIN_ROOM = 64


def _has_native_adapter(backend: Any) -> bool:
    path = f"{type(backend).__module__}.{type(backend).__qualname__}"
    return path in NATIVE_BACKENDS


_GENERIC_LIMITS = (
    "keyedcache cannot list its keys there: cache_keys(), iter_keys(), "
    "cache_delete_pattern(), manage.py keyedcache keys/delete-pattern and the dashboard's "
    "key browser fail, and stats() shows this process only. Reads, writes, deletes, "
    "memoization and locks work, through the backend's own cache API."
)
#: The client class each native library backend uses when OPTIONS names none.
_DEFAULT_CLIENTS = {
    "django_redis.cache.RedisCache": "django_redis.client.default.DefaultClient",
    "django_valkey.cache.ValkeyCache": "django_valkey.client.default.DefaultClient",
    "django_valkey.cluster_cache.cache.ClusterValkeyCache": (
        "django_valkey.cluster_cache.client.default.DefaultClusterClient"
    ),
}


def _client_path(backend: str, options: Any) -> str:
    """The dotted path of the client class an alias of `backend` runs, as settings say it."""
    chosen = options.get("CLIENT_CLASS") if isinstance(options, dict) else None
    if chosen is None:
        return _DEFAULT_CLIENTS.get(backend, "")
    if isinstance(chosen, type):
        return f"{chosen.__module__}.{chosen.__qualname__}"
    try:  # settings may name the class by a re-exported path (django_redis.client.X)
        kind = import_string(str(chosen))
    except ImportError:
        return str(chosen)
    return f"{kind.__module__}.{kind.__qualname__}"


@register(Tags.caches)
def check_generic_redis_aliases(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Warn about Redis/Valkey aliases that keyedcache runs on its generic adapter.

    Read from settings alone (no cache object is built, no server is asked):
    any BACKEND naming Redis or Valkey that is not a native backend with a
    client class the native adapters understand.
    """
    messages: list[CheckMessage] = []
    for alias, config in sorted(settings.CACHES.items()):
        backend = str(config.get("BACKEND", "")) if isinstance(config, dict) else ""
        lowered = backend.lower()
        if "redis" not in lowered and "valkey" not in lowered:
            continue
        if backend in NATIVE_BACKENDS:
            client = _client_path(backend, config.get("OPTIONS"))
            if backend not in _DEFAULT_CLIENTS or client in NATIVE_CLIENTS:
                continue
            reason = (
                f"its client class {client} (sharded and herd clients store keys their own way)"
            )
        else:
            reason = "no native adapter for that backend"
        messages.append(
            Warning(
                f"CACHES[{alias!r}] uses {backend}, which keyedcache runs on its generic "
                f"adapter because of {reason}: {_GENERIC_LIMITS}",
                hint="Native adapters: Django's RedisCache, django-redis and django-valkey "
                "(default and Sentinel clients) and django-valkey's ClusterValkeyCache; "
                "see docs/backends.md.",
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
    made_prefix = str(backend.key_func("", backend.key_prefix, backend.version))
    room = MAX_KEY_LENGTH - len(made_prefix) - len(namespace) - 1
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


@register(Tags.models)
def check_cached_model_names(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Warn when cached models (CachedObjectMixin) of different apps would share their keys.

    Their keys start with the class name (or `cache_group_key`), so two models named
    Product share `Product::3`: each would read the other's instance.
    """
    from keyedcache.models import CachedObjectMixin, group_key

    configs = apps.get_app_configs() if app_configs is None else app_configs
    by_group: dict[str, list[type[Any]]] = defaultdict(list)
    for config in configs:
        for model in config.get_models():
            if issubclass(model, CachedObjectMixin):
                by_group[group_key(model)].append(model)
    messages: list[CheckMessage] = []
    for group, models in sorted(by_group.items()):
        if len(models) < 2:
            continue
        labels = sorted(model._meta.label for model in models)
        messages.append(
            Warning(
                f"The cached models {', '.join(labels)} share the cache keys "
                f"{group!r}::<pk>: each would read and overwrite the others' entries.",
                hint="Give all but one of them a key prefix of their own, e.g. "
                f'cache_group_key = "{labels[-1]}" in the model class (the entries of '
                "models you leave as they are keep their keys).",
                obj=models[-1],
                id="keyedcache.W003",
            )
        )
    return messages
