"""1.5's entry point: `start_listening()` turns the first-level cache on for every request."""

from __future__ import annotations

from typing import Any

from django.core.signals import request_finished, request_started

from keyedcache.local import close_scope, open_scope


def _open(**kwargs: Any) -> None:
    open_scope()


def _close(**kwargs: Any) -> None:
    close_scope()


def start_listening() -> None:
    """Open a first-level cache scope at each request_started and close it at request_finished.

    This suits WSGI, where a request runs in one thread from start to finish.
    Under ASGI use `keyedcache.middleware.RequestCacheMiddleware` instead: the
    request signals are not sent in the context the view runs in.
    """
    request_started.connect(_open, dispatch_uid="keyedcache.threaded.open")
    request_finished.connect(_close, dispatch_uid="keyedcache.threaded.close")


def stop_listening() -> None:
    """Undo `start_listening()`."""
    request_started.disconnect(dispatch_uid="keyedcache.threaded.open")
    request_finished.disconnect(dispatch_uid="keyedcache.threaded.close")
