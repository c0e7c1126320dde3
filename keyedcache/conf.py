"""Every KEYEDCACHE_* setting: its default, its validation, and the reset when settings change."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from keyedcache.validation import MAX_SECONDS, MAX_TEXT, is_number

#: Defaults of the settings (docs/api.md lists them all).
DEFAULT_ALIAS = "default"
DEFAULT_NAMESPACE = "keyedcache"
DEFAULT_REQUEST_CACHE_SIZE = 5000
DEFAULT_STATS_FLUSH_INTERVAL = 5.0
DEFAULT_STATS_FLUSH_OPERATIONS = 500
DEFAULT_STATS_TTL = 3600.0
DEFAULT_DASHBOARD_SCAN_LIMIT = 10_000
DEFAULT_KEYVAL_BACKEND = "db://"
DEFAULT_BREAKER_FAILURES = 5
DEFAULT_BREAKER_TIMEOUTS = 1
DEFAULT_BREAKER_COOLDOWN = 5.0

#: Django settings whose change makes every built KeyedCache (and keyval backend) stale.
CACHE_SETTINGS = frozenset({"CACHES", "DATABASES", "DATABASE_ROUTERS"})


def setting(name: str, default: Any) -> Any:
    """The raw value of setting `name`, or `default` (system checks validate raw values)."""
    return getattr(settings, name, default)


def alias() -> str:
    """KEYEDCACHE_ALIAS: the cache alias keyedcache uses by default ('default')."""
    return str(setting("KEYEDCACHE_ALIAS", DEFAULT_ALIAS))


def namespace() -> str:
    """KEYEDCACHE_NAMESPACE: the first segment of every storage key ('keyedcache')."""
    return str(setting("KEYEDCACHE_NAMESPACE", DEFAULT_NAMESPACE))


def request_cache_size() -> int:
    """KEYEDCACHE_REQUEST_CACHE_SIZE: most keys one request scope remembers per cache."""
    size = setting("KEYEDCACHE_REQUEST_CACHE_SIZE", DEFAULT_REQUEST_CACHE_SIZE)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValueError(f"KEYEDCACHE_REQUEST_CACHE_SIZE must be a non-negative int, got {size!r}")
    return size


def seconds(name: str, default: float) -> float | None:
    """A duration setting in seconds; None, False or 0 turn the feature off (None)."""
    value = setting(name, default)
    if value is None or value is False:
        return None
    if not is_number(value) or not 0 <= value <= MAX_SECONDS:  # NaN fails the comparison
        raise ValueError(
            f"{name} must be None or a number of seconds from 0 to {MAX_TEXT}, got {value!r}"
        )
    return float(value) or None


def stats_flush_interval() -> float | None:
    """KEYEDCACHE_STATS_FLUSH_INTERVAL in seconds; None: no automatic flush.

    Raises ValueError for an invalid value and ImproperlyConfigured when
    settings are not configured; the reporter turns both into "off".
    """
    return seconds("KEYEDCACHE_STATS_FLUSH_INTERVAL", DEFAULT_STATS_FLUSH_INTERVAL)


def stats_flush_operations() -> int:
    """KEYEDCACHE_STATS_FLUSH_OPERATIONS: counted calls after which a flush is due sooner."""
    value = setting("KEYEDCACHE_STATS_FLUSH_OPERATIONS", DEFAULT_STATS_FLUSH_OPERATIONS)
    return int(value or 0)


def stats_ttl() -> float | None:
    """KEYEDCACHE_STATS_TTL: seconds a process record outlives its last flush (None: forever)."""
    return seconds("KEYEDCACHE_STATS_TTL", DEFAULT_STATS_TTL)


def dashboard_scan_limit(page_size: int) -> int:
    """KEYEDCACHE_DASHBOARD_SCAN_LIMIT: keys the browser lists before it asks, at least a page."""
    limit = setting("KEYEDCACHE_DASHBOARD_SCAN_LIMIT", DEFAULT_DASHBOARD_SCAN_LIMIT)
    return max(int(limit), page_size)


def count(name: str, default: int) -> int:
    """A setting that is a count: an int from 0 up (0 turns its feature off)."""
    value = setting(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be an int of 0 or more, got {value!r}")
    return value


def breaker_failures() -> int:
    """KEYEDCACHE_BREAKER_FAILURES: failed calls in a row that open an alias's breaker (5)."""
    return count("KEYEDCACHE_BREAKER_FAILURES", DEFAULT_BREAKER_FAILURES)


def breaker_timeouts() -> int:
    """KEYEDCACHE_BREAKER_TIMEOUTS: timed-out calls in a row that open it (1; 0: no own limit)."""
    return count("KEYEDCACHE_BREAKER_TIMEOUTS", DEFAULT_BREAKER_TIMEOUTS)


def breaker_cooldown() -> float:
    """KEYEDCACHE_BREAKER_COOLDOWN: seconds an open breaker skips the backend before a probe (5)."""
    value = setting("KEYEDCACHE_BREAKER_COOLDOWN", DEFAULT_BREAKER_COOLDOWN)
    if not is_number(value) or not 0 < value <= MAX_SECONDS:  # NaN fails the comparison
        raise ValueError(
            f"KEYEDCACHE_BREAKER_COOLDOWN must be a number of seconds above 0 and at most "
            f"{MAX_TEXT}, got {value!r}"
        )
    return float(value)


def keyval_backend() -> Any:
    """KEYEDCACHE_KEYVAL_BACKEND: the store URL of keyval (validated where it is parsed)."""
    return setting("KEYEDCACHE_KEYVAL_BACKEND", DEFAULT_KEYVAL_BACKEND)


def keyval_timeout() -> Any:
    """KEYEDCACHE_KEYVAL_TIMEOUT as set: seconds, None, or DEFAULT_TIMEOUT when unset."""
    return setting("KEYEDCACHE_KEYVAL_TIMEOUT", DEFAULT_TIMEOUT)


def async_warnings() -> bool:
    """KEYEDCACHE_ASYNC_WARNINGS: warn of sync calls made on an event loop (default: DEBUG)."""
    value = setting("KEYEDCACHE_ASYNC_WARNINGS", None)
    return bool(setting("DEBUG", False) if value is None else value)


def configured() -> bool:
    """Tell whether Django's settings can be read (False in a bare interpreter)."""
    try:
        settings.INSTALLED_APPS  # noqa: B018 - touching a setting is the test
    except ImproperlyConfigured:
        return False
    return True


# -- change tracking -----------------------------------------------------------------

_generation = [0]
_listeners: list[Callable[[str], None]] = []
_listeners_lock = threading.Lock()


def generation() -> int:
    """A number that changes whenever a setting keyedcache depends on changes."""
    return _generation[0]


def on_change(listener: Callable[[str], None]) -> Callable[[str], None]:
    """Call `listener(setting)` after a KEYEDCACHE_* or cache/database setting changes."""
    with _listeners_lock:
        if listener not in _listeners:
            _listeners.append(listener)
    return listener


def relevant(setting: str) -> bool:
    """Tell whether a change of `setting` concerns keyedcache."""
    return setting in CACHE_SETTINGS or setting.startswith("KEYEDCACHE_")


def _setting_changed(*, setting: str, **kwargs: Any) -> None:
    if not relevant(setting):
        return
    _generation[0] += 1
    for listener in list(_listeners):
        listener(setting)


setting_changed.connect(_setting_changed, dispatch_uid="keyedcache.conf.changed")
