"""Signals of cache traffic (reads, memoized executions, single-flight waits), free when unheard.

Three Django signals let other telemetry (a debug-toolbar panel, OpenTelemetry
spans, custom metrics) follow keyedcache's traffic call by call:

- `cache_read`: a read answered (`KeyedCache.get`, `cache_get`, `is_cached`, the
  read of a memoized call); sender the KeyedCache; keyword arguments `alias`,
  `key` (the logical key), `outcome` (`"hit"`, `"miss"`, or `"local_hit"` and
  `"local_miss"`, answered by the request scope without a backend call),
  `operation` (`"get"` or `"memoized"`) and `seconds`.
- `memoized_execution`: a memoized function ran; sender the undecorated function;
  `key` (the call's cache key), `function` (the key root, e.g.
  `func::shop.views.price`) and `seconds` (also sent when the function raised).
- `single_flight_wait`: a caller waited for another caller's computation of the
  same key; sender the undecorated function; `key`, `function`, `seconds` and
  `timed_out` (True when the wait bound ran out and the caller computed itself).

Receivers run in the thread (and context) of the cache call. A receiver that
raises is logged and never breaks the call. Nothing is timed or sent while no
receiver is connected: the hot paths test one flag (`listening[0]`), which
`connect` and `disconnect` keep up to date.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from time import perf_counter
from typing import Any, TypeVar

from django.dispatch import Signal

log = logging.getLogger("keyedcache")

T = TypeVar("T")

#: Outcomes of a read, as sent in `cache_read`'s `outcome`.
HIT = "hit"
MISS = "miss"
LOCAL_HIT = "local_hit"
#: A read the request scope answered as known absent (no backend call).
LOCAL_MISS = "local_miss"

#: True while any keyedcache signal has a receiver (a list: read without a global lookup).
listening = [False]


class TrafficSignal(Signal):
    """A Django Signal that tells keyedcache's hot paths whether anybody listens."""

    def connect(self, *args: Any, **kwargs: Any) -> None:
        """Connect a receiver, as `Signal.connect` does, and turn sending on."""
        super().connect(*args, **kwargs)
        _update()

    def disconnect(self, *args: Any, **kwargs: Any) -> bool:
        """Disconnect a receiver, as `Signal.disconnect` does; sending stops with the last one."""
        done = super().disconnect(*args, **kwargs)
        _update()
        return done


#: A read answered: sender the KeyedCache; alias, key, outcome, operation, seconds.
cache_read = TrafficSignal()
#: A memoized function ran: sender the function; key, function, seconds.
memoized_execution = TrafficSignal()
#: A caller waited for another's computation: sender the function; key, function,
#: seconds, timed_out.
single_flight_wait = TrafficSignal()

SIGNALS = (cache_read, memoized_execution, single_flight_wait)


def _update() -> None:
    listening[0] = any(signal.receivers for signal in SIGNALS)


def _send(signal: Signal, sender: Any, **named: Any) -> None:
    for receiver, result in signal.send_robust(sender, **named):
        if isinstance(result, Exception):
            log.warning(
                "keyedcache: signal receiver %r failed (%s: %s); the cache call went on",
                receiver,
                type(result).__name__,
                result,
                exc_info=result,
            )


def read(cache: Any, key: str, outcome: str, started: float, operation: str = "get") -> None:
    """Send `cache_read` for a read of `key` by `cache` that began at `perf_counter()` `started`."""
    _send(
        cache_read,
        cache,
        alias=cache.alias,
        key=key,
        outcome=outcome,
        operation=operation,
        seconds=perf_counter() - started,
    )


def execution(
    func: Callable[..., T], key: str, function: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> T:
    """Return `func(*args, **kwargs)` (a memoized execution), timed and sent to listeners."""
    started = perf_counter()
    try:
        return func(*args, **kwargs)
    finally:
        seconds = perf_counter() - started
        _send(memoized_execution, func, key=key, function=function, seconds=seconds)


async def aexecution(
    func: Callable[..., Any], key: str, function: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """The async twin of `execution`, for an `async def` function."""
    started = perf_counter()
    try:
        return await func(*args, **kwargs)
    finally:
        seconds = perf_counter() - started
        _send(memoized_execution, func, key=key, function=function, seconds=seconds)


def wait(
    func: Callable[..., Any], key: str, function: str, seconds: float, timed_out: bool
) -> None:
    """Send `single_flight_wait` (only while someone listens)."""
    if listening[0]:
        _send(
            single_flight_wait,
            func,
            key=key,
            function=function,
            seconds=seconds,
            timed_out=timed_out,
        )
