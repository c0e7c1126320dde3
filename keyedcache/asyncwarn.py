"""The warning for a sync keyedcache call made on a running event loop, once per call site."""

from __future__ import annotations

import sys
import threading
import warnings
from asyncio import _get_running_loop

from keyedcache import conf
from keyedcache.warnings import KeyedCacheWarning

#: The running event loop of this thread, or None (asyncio's C function: a few
#: tens of nanoseconds, so the sync module functions can ask on every call).
running_loop = _get_running_loop

_seen: set[tuple[str, int]] = set()
_seen_lock = threading.Lock()


class SyncCallInEventLoopWarning(KeyedCacheWarning):
    """A sync keyedcache call blocked a running event loop; its async twin would not."""


def warn_sync_call(function: str, depth: int = 2) -> None:
    """Warn (once per call site) that sync `function` runs on this thread's event loop.

    Called by the module functions only when `running_loop()` found one; off
    unless settings.DEBUG or KEYEDCACHE_ASYNC_WARNINGS is true. `depth` is how
    many frames up the caller's call site is, from here.
    """
    if not conf.async_warnings():
        return
    frame = sys._getframe(depth)
    site = (frame.f_code.co_filename, frame.f_lineno)
    with _seen_lock:
        if site in _seen:
            return
        _seen.add(site)
    warnings.warn(
        f"keyedcache.{function}() was called on a running event loop: the loop is blocked "
        f"until the cache answers. Use `await keyedcache.a{function}(...)` in async code.",
        SyncCallInEventLoopWarning,
        stacklevel=depth + 1,
    )
