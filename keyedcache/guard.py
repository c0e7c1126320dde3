"""The outage guard: the one door every backend call goes through (log, count, fall back)."""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Callable
from typing import Any, TypeVar

from keyedcache.counters import DECODE_ERRORS, ERRORS, counters
from keyedcache.exceptions import CacheBackendError, UncacheableValueError

log = logging.getLogger("keyedcache")

T = TypeVar("T")
F = TypeVar("F")


class Guard:
    """Owns what happens when a backend call of one cache alias fails.

    A failed call is logged (a warning at most every `warn_every` seconds per
    guard, debug lines in between), counted as an error under the key's
    prefix, and answered with the caller's fallback: a miss for reads, a skip
    for writes. Callers never see the exception unless they ask for it
    (`strict=True`: CacheBackendError, for operations whose result must be truthful).
    """

    __slots__ = ("_last_decode_warning", "_last_warning", "alias", "warn_every", "warning")

    #: The warning logged for a failure; fields: operation, key, alias, kind, error.
    OUTAGE_WARNING = (
        "keyedcache: %(operation)s of %(key)r on cache alias %(alias)r failed "
        "(%(kind)s: %(error)s); treating it as a miss/skip until the backend answers again"
    )

    def __init__(
        self, alias: str, *, warn_every: float = 10.0, warning: str = OUTAGE_WARNING
    ) -> None:
        self.alias = alias
        #: Seconds between two outage warnings (the error count stays exact).
        self.warn_every = warn_every
        self.warning = warning
        self._last_warning = -1e18
        self._last_decode_warning = -1e18

    def call(
        self,
        operation: str,
        key: str | None,
        fallback: F,
        func: Callable[..., T],
        *args: Any,
        strict: bool = False,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> T | F:
        """Return `func(*args)`, or `fallback` when it raises (after `failed`).

        With `strict`, raise CacheBackendError (naming the alias, the operation
        and the key) instead of returning the fallback: for callers that must
        report truthfully whether the operation happened. `on_error(exc)` runs
        first and may raise instead (a value that cannot be pickled is the
        caller's bug, not an outage). NotImplementedError is never an outage:
        it says the backend cannot do the operation at all.
        """
        try:
            return func(*args)
        except NotImplementedError:
            raise
        except Exception as exc:
            if on_error is not None:
                on_error(exc)
            self.failed(operation, key, exc)
            if strict:
                raise CacheBackendError(self.alias, operation, key, exc) from exc
            return fallback

    def wrap(self, operation: str, func: Callable[[str], T], fallback: F) -> Callable[[str], T | F]:
        """`func(key)` guarded like `call` does, as one closure for a hot path.

        The read path runs this on every cache hit: a closure made once costs
        one frame per call, where `call` would add argument packing on top.
        """
        failed = self.failed

        def guarded(key: str) -> T | F:
            try:
                return func(key)
            except NotImplementedError:
                raise
            except Exception as exc:
                failed(operation, key, exc)
                return fallback

        return guarded

    def decode_failed(self, key: str, error: BaseException) -> None:
        """Count and log (rate-limited) an entry that cannot be decoded: a miss, not an outage.

        Its class was renamed or removed by a deploy, or its bytes are corrupt;
        the entry is served as a miss until it is written again or deleted.
        """
        counters.slots(key)[DECODE_ERRORS] += 1
        now = time.monotonic()
        if now - self._last_decode_warning >= self.warn_every:
            self._last_decode_warning = now
            log.warning(
                "keyedcache: the entry %r in cache alias %r cannot be decoded (%s: %s); "
                "it reads as a miss until it is written again or deleted",
                key,
                self.alias,
                type(error).__name__,
                error,
            )
        else:
            log.debug("keyedcache: undecodable entry %r: %r", key, error)

    def failed(self, operation: str, key: str | None, exc: BaseException) -> None:
        """Log (rate-limited) and count one failed backend call."""
        counters.slots(key)[ERRORS] += 1
        now = time.monotonic()
        if now - self._last_warning >= self.warn_every:
            self._last_warning = now
            fields = {
                "operation": operation,
                "key": key,
                "alias": self.alias,
                "kind": type(exc).__name__,
                "error": exc,
            }
            log.warning(self.warning, fields)
        else:
            log.debug("keyedcache: %s of %r failed: %r", operation, key, exc)


def raise_if_unpicklable(key: str, packed: Any) -> None:
    """Raise UncacheableValueError naming `key` when `packed` cannot be pickled.

    Used as a guard's `on_error` for writes: a value that cannot be pickled is
    the caller's bug, not an outage, so it must raise instead of being skipped.
    """
    try:
        pickle.dumps(packed, pickle.HIGHEST_PROTOCOL)
    except Exception as cause:
        raise UncacheableValueError(key, cause) from cause
