"""Turns the KEYEDCACHE_DEMO_CACHE URL into the demo's CACHES['default'] (and describes it)."""

from __future__ import annotations

from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

ENV_VAR = "KEYEDCACHE_DEMO_CACHE"
TIMEOUT = 300
KEY_PREFIX = "demo"
DB_CACHE_TABLE = "keyedcache_demo_cache"
LOCMEM_LOCATION = "keyedcache-demo"
MEMCACHED_PORT = 11211

FORMS = (
    "unset (locmem), redis://host:port/db, memcached://host:port[,host:port], "
    "db://, file:///absolute/path"
)


def redact(url: str) -> str:
    """Return `url` with its user:password part (and any query password) masked.

    keyedcache's own masker: it finds the userinfo up to the last `@`, whatever
    characters the password holds, where a pattern stopping at the first `@` or
    `/` would leave the rest of the password showing.
    """
    from keyedcache.dashboard.secrets import mask_location

    return mask_location(url)


def _bad(value: str, reason: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(
        f"{ENV_VAR}={redact(value)!r} is not a cache URL this demo understands: {reason}. "
        f"Use one of: {FORMS}."
    )


def _port(value: str, parts: SplitResult) -> int | None:
    try:
        return parts.port
    except ValueError:
        raise _bad(value, "the port is not a number from 0 to 65535") from None


def _redis(value: str) -> dict[str, Any]:
    parts = urlsplit(value)
    if not parts.hostname:
        raise _bad(value, "a Redis URL needs a host")
    _port(value, parts)
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise _bad(value, "the Redis database must be a number, as in redis://host:6379/0")
    return {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": value}


def _memcached(value: str) -> dict[str, Any]:
    servers = value.split("://", 1)[1].rstrip("/")
    locations: list[str] = []
    for server in servers.split(","):
        parts = urlsplit(f"//{server.strip()}")
        if not parts.hostname or parts.path or parts.username:
            raise _bad(value, f"{server.strip()!r} is not host:port")
        port = _port(value, parts) or MEMCACHED_PORT
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        locations.append(f"{host}:{port}")
    return {
        "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
        "LOCATION": locations if len(locations) > 1 else locations[0],
    }


def _file(value: str) -> dict[str, Any]:
    parts = urlsplit(value)
    path = unquote(parts.path)
    if parts.netloc not in ("", "localhost") or not path.startswith("/"):
        raise _bad(value, "a file cache needs an absolute path, as in file:///tmp/demo-cache")
    if path.rstrip("/") == "":
        raise _bad(value, "refusing to use / as the cache directory")
    return {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": path}


def cache_from_env(value: str | None) -> dict[str, Any]:
    """Return the CACHES['default'] entry for a KEYEDCACHE_DEMO_CACHE value (None: locmem)."""
    value = (value or "").strip()
    scheme = value.split("://", 1)[0].lower() if "://" in value else ""
    config: dict[str, Any]
    if not value or value == "locmem://":
        config = {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": LOCMEM_LOCATION,
        }
    elif scheme in ("redis", "rediss"):
        config = _redis(value)
    elif scheme == "memcached":
        config = _memcached(value)
    elif scheme == "db":
        if value.rstrip("/").lower() != "db:":
            raise _bad(value, f"the database cache is just db:// (table {DB_CACHE_TABLE})")
        config = {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": DB_CACHE_TABLE,
        }
    elif scheme == "file":
        config = _file(value)
    else:
        raise _bad(value, "unknown scheme")
    config.update(TIMEOUT=TIMEOUT, KEY_PREFIX=KEY_PREFIX)
    return config


def describe_cache(config: dict[str, Any]) -> str:
    """Return a one-line, password-free description of a CACHES entry."""
    backend = str(config.get("BACKEND", "?")).rsplit(".", 1)[-1]
    location = config.get("LOCATION") or ""
    if isinstance(location, (list, tuple)):
        location = ", ".join(str(item) for item in location)
    return f"{backend} ({redact(str(location))})" if location else backend
