"""Where KeyVal stores live, chosen by URL (KEYEDCACHE_KEYVAL_BACKEND): parsing and the registry."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

from django.conf import settings
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.exceptions import ImproperlyConfigured

from keyedcache import conf
from keyedcache.contrib.keyval.backends.base import Backend, quote_part
from keyedcache.contrib.keyval.backends.cached import CACHE_STORE_ROOT, CacheBackend
from keyedcache.contrib.keyval.backends.database import READ_THROUGH_ROOT, DatabaseBackend
from keyedcache.contrib.keyval.backends.locmem import LocmemBackend

__all__ = [
    "CACHE_STORE_ROOT",
    "DEFAULT_URL",
    "READ_THROUGH_ROOT",
    "SCHEMES",
    "SETTING",
    "TIMEOUT_SETTING",
    "Backend",
    "BackendURLError",
    "CacheBackend",
    "DatabaseBackend",
    "LocmemBackend",
    "build_backend",
    "configured_url",
    "get_backend",
    "keyval_timeout",
    "quote_part",
    "reset",
]

SETTING = "KEYEDCACHE_KEYVAL_BACKEND"
TIMEOUT_SETTING = "KEYEDCACHE_KEYVAL_TIMEOUT"
DEFAULT_URL = conf.DEFAULT_KEYVAL_BACKEND
SCHEMES = ("db", "cache", "locmem")


class BackendURLError(ImproperlyConfigured):
    """A store URL (KEYEDCACHE_KEYVAL_BACKEND) cannot be used; `.check_id` names the check."""

    def __init__(self, message: str, check_id: str = "keyedcache.E101", hint: str | None = None):
        super().__init__(message)
        self.check_id = check_id
        self.hint = hint


def keyval_timeout() -> Any:
    """KEYEDCACHE_KEYVAL_TIMEOUT: seconds a cached copy lives (default: the alias's TIMEOUT)."""
    timeout = conf.keyval_timeout()
    if timeout is DEFAULT_TIMEOUT or timeout is None:
        return timeout
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise BackendURLError(
            f"{TIMEOUT_SETTING} is {timeout!r}; it must be a positive number of seconds, "
            "or None to keep cached copies until they are replaced.",
            check_id="keyedcache.E104",
        )
    return timeout


def _bad(
    url: object, problem: str, hint: str | None = None, check_id: str = "keyedcache.E101"
) -> BackendURLError:
    return BackendURLError(f"{SETTING} is {url!r}: {problem}", check_id, hint)


_FORMS_HINT = "Use 'db://', 'db://?using=<database alias>', 'cache://<cache alias>' or 'locmem://'."


def _known_alias(url: str, alias: str | None, setting: str, check_id: str) -> str | None:
    """`alias` if it is None or a key of settings.`setting`; else the BackendURLError."""
    known = getattr(settings, setting)
    if alias is not None and alias not in known:
        raise _bad(
            url,
            f"{alias!r} is not an alias in settings.{setting} ({', '.join(sorted(known))}).",
            check_id=check_id,
        )
    return alias


def build_backend(url: object) -> Backend:
    """Build the backend `url` names; raise BackendURLError (ImproperlyConfigured) if it cannot."""
    if not isinstance(url, str) or "://" not in url:
        raise _bad(url, "not a store URL.", _FORMS_HINT)
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme not in SCHEMES:
        raise _bad(url, f"unknown scheme {scheme!r}.", _FORMS_HINT)
    if parts.path or parts.fragment:
        raise _bad(url, "a store URL has no path or fragment.", _FORMS_HINT)
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise _bad(url, f"cannot read the options {parts.query!r}.", _FORMS_HINT) from None
    options = dict(pairs)
    names = [name for name, _ in pairs]
    allowed = {"using"} if scheme == "db" else set()
    wrong = sorted({name for name in names if name not in allowed or names.count(name) > 1})
    if wrong:
        raise _bad(url, f"unknown or repeated option(s) {', '.join(wrong)}.", _FORMS_HINT)
    if scheme == "db":
        if parts.netloc:
            raise _bad(
                url,
                f"a table name ({parts.netloc!r}) cannot be chosen.",
                "db:// always uses keyval's migrated table, keyedcache_keyval_entry; store "
                "names keep stores apart. To put it in another database, use "
                "'db://?using=<database alias>'.",
            )
        using = _known_alias(url, options.get("using"), "DATABASES", "keyedcache.E102")
        return DatabaseBackend(url, using, keyval_timeout())
    if scheme == "cache":
        alias = _known_alias(url, parts.netloc or None, "CACHES", "keyedcache.E103")
        return CacheBackend(url, alias)
    if parts.netloc:
        raise _bad(url, "locmem:// takes no location.", _FORMS_HINT)
    return LocmemBackend(url)


def configured_url() -> Any:
    """The store URL in settings (KEYEDCACHE_KEYVAL_BACKEND, default 'db://')."""
    return conf.keyval_backend()


# Built once per URL and kept until a relevant setting changes (reset below).
_built: dict[str, Backend] = {}
_default: list[Backend | None] = [None]


def get_backend(url: str | None = None) -> Backend:
    """The backend for `url`, or for the configured URL when None (built once, then reused)."""
    if url is None:
        backend = _default[0]
        if backend is None:
            backend = _default[0] = get_backend(configured_url())
        return backend
    backend = _built.get(url)
    if backend is None:
        backend = _built.setdefault(url, build_backend(url))
    return backend


def reset(setting: str | None = None) -> None:
    """Forget every built backend; the next call builds them from the current settings."""
    _built.clear()
    _default[0] = None


conf.on_change(reset)
