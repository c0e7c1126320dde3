"""System checks for keyval's settings: KEYEDCACHE_KEYVAL_BACKEND and KEYEDCACHE_KEYVAL_TIMEOUT."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, Tags, register

from keyedcache.contrib.keyval.backends import (
    BackendURLError,
    build_backend,
    configured_url,
    keyval_timeout,
)


@register(Tags.caches)
def check_keyval_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Check that the store URL can be used and the cache timeout makes sense."""
    messages: list[CheckMessage] = []
    for check in (keyval_timeout, lambda: build_backend(configured_url())):
        try:
            check()
        except BackendURLError as exc:
            message = Error(str(exc), hint=exc.hint, id=exc.check_id)
            if message not in messages:  # db:// reads the timeout too
                messages.append(message)
    return messages
