"""The exceptions keyedcache raises; the 1.5 names keep their meaning."""

from __future__ import annotations

from typing import Any


class NotCachedError(Exception):
    """Raised by `cache_get` when nothing is cached under `.key`."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class CacheNotRespondingError(Exception):
    """Raised by `cache_require` when a set/get round trip through the backend fails."""


class CacheBackendError(CacheNotRespondingError):
    """An operation asked to be strict (`strict=True`) did not reach the backend.

    `.alias` names the cache alias, `.operation` what was attempted, `.key` the
    key (or pattern) concerned, and `.__cause__` the backend's own exception.
    """

    def __init__(self, alias: str, operation: str, key: str | None, cause: BaseException) -> None:
        super().__init__(
            f"keyedcache could not {operation} {key!r} on cache alias {alias!r}: "
            f"{type(cause).__name__}: {cause}"
        )
        self.alias = alias
        self.operation = operation
        self.key = key


class MethodNotFinishedError(Exception):
    """Kept for 1.5 code that catches it; keyedcache's single flight never raises it."""

    def __init__(self, f: Any) -> None:
        super().__init__(f)
        self.func = f


class UncacheableValueError(TypeError):
    """Raised when a value cannot be stored (it does not pickle); `.key` names the key."""

    def __init__(self, key: str, cause: BaseException) -> None:
        super().__init__(
            f"keyedcache cannot store the value for key {key!r}: it cannot be pickled "
            f"({type(cause).__name__}: {cause}). Nothing was written."
        )
        self.key = key
        self.cause = cause
