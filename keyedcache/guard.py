"""The outage guard: the one door every backend call goes through (log, count, fall back)."""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from keyedcache.breaker import DENY, PASS, Breaker, for_alias
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

    Every failure also goes to the alias's circuit breaker (breaker.py): while
    it is open, calls skip the backend and get their fallback at once (counted
    as errors; strict calls raise CacheBackendError), until one probe finds
    the backend back. While it is closed and clean, it costs one list read.
    """

    __slots__ = (
        "_flag",
        "_last_decode_warning",
        "_last_warning",
        "alias",
        "breaker",
        "warn_every",
        "warning",
    )

    #: The warning logged for a failure; fields: operation, key, alias, kind, error.
    OUTAGE_WARNING = (
        "keyedcache: %(operation)s of %(key)r on cache alias %(alias)r failed "
        "(%(kind)s: %(error)s); treating it as a miss/skip until the backend answers again"
    )

    def __init__(
        self,
        alias: str,
        *,
        warn_every: float = 10.0,
        warning: str = OUTAGE_WARNING,
        breaker: Breaker | None = None,
    ) -> None:
        self.alias = alias
        #: The circuit breaker: the alias's own in this process unless one is given.
        self.breaker = for_alias(alias) if breaker is None else breaker
        self._flag = self.breaker.flag
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
        if self._flag[0]:
            return self._watched(operation, key, fallback, func, args, strict, on_error)
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

    def _watched(
        self,
        operation: str,
        key: str | None,
        fallback: F,
        func: Callable[..., T],
        args: tuple[Any, ...],
        strict: bool,
        on_error: Callable[[BaseException], None] | None,
    ) -> T | F:
        """`call` while the breaker is not closed and clean: ask it first, tell it the outcome."""
        breaker = self.breaker
        verdict = breaker.admit()
        if verdict == DENY:
            return self.refused(operation, key, fallback, strict=strict)
        settled = False
        try:
            result = func(*args)
        except NotImplementedError:
            raise
        except Exception as exc:
            if on_error is not None:
                on_error(exc)
            settled = True
            self._failed(operation, key, exc, verdict)
            if strict:
                raise CacheBackendError(self.alias, operation, key, exc) from exc
            return fallback
        else:
            settled = True
            breaker.succeeded(verdict)
            return result
        finally:
            if not settled:
                breaker.release(verdict)

    async def acall(
        self,
        operation: str,
        key: str | None,
        fallback: F,
        pending: Awaitable[T],
        *,
        strict: bool = False,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> T | F:
        """`await pending`, guarded as `call` guards a sync call, breaker included.

        When the breaker keeps the call from the backend, `pending` is closed
        unawaited (a coroutine) and the fallback returned (strict: raised).
        """
        verdict = self.breaker.admit()
        if verdict == DENY:
            close = getattr(pending, "close", None)
            if close is not None:
                close()
            return self.refused(operation, key, fallback, strict=strict)
        settled = False
        try:
            result = await pending
        except NotImplementedError:
            raise
        except Exception as exc:
            if on_error is not None:
                on_error(exc)
            settled = True
            self._failed(operation, key, exc, verdict)
            if strict:
                raise CacheBackendError(self.alias, operation, key, exc) from exc
            return fallback
        else:
            settled = True
            if verdict != PASS or self._flag[0]:
                self.breaker.succeeded(verdict)
            return result
        finally:
            if not settled:
                self.breaker.release(verdict)

    def refused(self, operation: str, key: str | None, fallback: F, *, strict: bool = False) -> F:
        """Answer a call the open breaker keeps from the backend: counted, not logged.

        With `strict`, raise CacheBackendError whose cause says the breaker is open.
        """
        counters.slots(key)[ERRORS] += 1
        if strict:
            cause = self.breaker.open_error()
            raise CacheBackendError(self.alias, operation, key, cause) from cause
        return fallback

    def closed_or_refuse(self, operation: str, key: str | None, *, strict: bool = False) -> bool:
        """True when the breaker lets calls through; else `refused` (False, or raise if strict).

        For operations that do not go through `call` (listings): they never probe.
        """
        if not self.breaker.is_open:
            return True
        self.refused(operation, key, False, strict=strict)
        return False

    def wrap(self, operation: str, func: Callable[[str], T], fallback: F) -> Callable[[str], T | F]:
        """`func(key)` guarded like `call` does, as one closure for a hot path.

        The read path runs this on every cache hit: a closure made once costs
        one frame per call, where `call` would add argument packing on top.
        """
        failed = self.failed
        flag = self._flag
        watched = self._watched

        def guarded(key: str) -> T | F:
            if flag[0]:
                return watched(operation, key, fallback, func, (key,), False, None)
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
        """Log (rate-limited), count one failed backend call and tell the breaker."""
        self._failed(operation, key, exc, PASS)

    def _failed(self, operation: str, key: str | None, exc: BaseException, verdict: int) -> None:
        counters.slots(key)[ERRORS] += 1
        self.breaker.failed(exc, verdict)
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
