"""The circuit breaker of each cache alias in this process: closed, open, then one probe."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from keyedcache import conf
from keyedcache.counters import counters

log = logging.getLogger("keyedcache")

#: The states a breaker is in.
CLOSED = "closed"
OPEN = "open"
PROBING = "half-open"

#: What `Breaker.admit` answers: go to the backend, go as the one probe, or skip the backend.
PASS, PROBE, DENY = 0, 1, 2

#: The pseudo key prefix breaker opens are counted under (stats: `breaker_opens`).
BREAKER_PREFIX = "(breaker)"
#: Open times each breaker remembers (for "opens in the last hour").
OPENS_KEPT = 1000
#: Seconds the dashboard's "opens in the last hour" looks back.
RECENT = 3600.0


class CircuitOpenError(ConnectionError):
    """The circuit breaker of a cache alias is open: the call did not go to the backend."""


def is_timeout(exc: BaseException) -> bool:
    """Tell whether `exc` is a timeout (socket.timeout, redis' or a driver's TimeoutError)."""
    return any(cls is TimeoutError or "Timeout" in cls.__name__ for cls in type(exc).__mro__)


def is_stale_connection(exc: BaseException) -> bool:
    """Tell whether `exc` says a connection broke under the call (reset or closed by the
    peer, as a pooled connection to a restarted server does), not that the server is down.

    The next call opens a new connection, so such a failure says little about the server.
    """
    if isinstance(exc, (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)):
        return True
    return any("UnexpectedClose" in cls.__name__ for cls in type(exc).__mro__)


class Breaker:
    """Decides, for one cache alias in this process, whether a call may go to the backend.

    Closed: every call goes. After `failures` consecutive failed calls, or
    `timeouts` consecutive timed-out ones (a timeout costs a caller a whole
    socket timeout, so by default one is enough), it opens: for `cooldown`
    seconds calls skip the backend (the guard answers them with their
    fallback). Then exactly one call goes as a probe while the others keep
    skipping: its success closes the breaker, its failure opens it for
    another cool-down. A breaker with `failures` and `timeouts` both 0 never opens.

    A connection that broke under a call (`is_stale_connection`: each thread's
    client keeps its own socket to a server that restarted) is not counted in
    the run, and a probe that fails that way lets the next call probe at once
    (at most `QUICK_PROBES` times per opening), so stale sockets do not cost
    extra cool-downs.

    The hot path reads `flag[0]` only: 0 while closed with no failure since
    the last success; anything else sends the guard to `admit`.
    """

    #: Immediate re-probes allowed per opening after probes that met a stale connection.
    QUICK_PROBES = 64

    def __init__(
        self,
        alias: str,
        *,
        failures: int = conf.DEFAULT_BREAKER_FAILURES,
        timeouts: int = conf.DEFAULT_BREAKER_TIMEOUTS,
        cooldown: float = conf.DEFAULT_BREAKER_COOLDOWN,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.alias = alias
        self.failures = failures
        self.timeouts = timeouts
        self.cooldown = cooldown
        self.clock = clock
        self.wall = wall
        #: 0 while closed and clean: the one thing the hot path reads.
        self.flag = [0]
        self.state = CLOSED
        #: Unix time of the last change between closed and not closed.
        self.since = wall()
        #: Opens (from closed) since this breaker was made, and their Unix times.
        self.opens = 0
        self._open_times: deque[float] = deque(maxlen=OPENS_KEPT)
        #: The kind (class name) of the failure that opened it last.
        self.last_error = ""
        self._streak = 0
        self._timeout_streak = 0
        self._retry_at = 0.0
        self._quick_probes = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Breaker {self.alias!r} {self.state}>"

    @property
    def enabled(self) -> bool:
        """False when this breaker never opens (both thresholds are 0)."""
        return self.failures > 0 or self.timeouts > 0

    @property
    def is_open(self) -> bool:
        """True while calls skip the backend (open, or half-open with a probe out)."""
        return self.state != CLOSED

    def admit(self) -> int:
        """PASS (call the backend), PROBE (call it as the one probe) or DENY (skip it)."""
        if not self.flag[0]:
            return PASS
        with self._lock:
            if self.state == CLOSED:
                return PASS
            now = self.clock()
            if now < self._retry_at:
                return DENY
            # The cool-down is over (or the last probe never reported): this call probes.
            # Until it reports, every other call is denied for up to one more cool-down.
            self.state = PROBING
            self._retry_at = now + self.cooldown
            return PROBE

    def succeeded(self, verdict: int) -> None:
        """A call admitted with `verdict` reached the backend: reset the failure run, or close."""
        with self._lock:
            if verdict == PROBE and self.state == PROBING:
                down = self.wall() - self.since
                self._close()
                log.info(
                    "keyedcache: the circuit breaker of cache alias %r closed: the backend "
                    "answered after %.1f s",
                    self.alias,
                    down,
                )
            elif verdict == PASS and self.state == CLOSED:
                self._close()

    def failed(self, exc: BaseException, verdict: int = PASS) -> None:
        """A call admitted with `verdict` failed with `exc`: count it, open when the run is long."""
        if not self.enabled:
            return
        with self._lock:
            if verdict == PROBE:
                if self.state == PROBING and (
                    is_stale_connection(exc) and self._quick_probes < self.QUICK_PROBES
                ):
                    self._quick_probes += 1
                    self.state = OPEN
                    self._retry_at = self.clock()  # the next call probes, on another socket
                elif self.state == PROBING:
                    self.state = OPEN
                    self._retry_at = self.clock() + self.cooldown
                    log.debug(
                        "keyedcache: the probe of cache alias %r failed (%s); open for %.1f s more",
                        self.alias,
                        type(exc).__name__,
                        self.cooldown,
                    )
                return
            if self.state != CLOSED or is_stale_connection(exc):
                return  # admitted before the breaker opened, or a broken socket: no run
            self._streak += 1
            if is_timeout(exc):
                self._timeout_streak += 1
            self.flag[0] = 1
            if (self.failures and self._streak >= self.failures) or (
                self.timeouts and self._timeout_streak >= self.timeouts
            ):
                self._open(exc)

    def release(self, verdict: int) -> None:
        """A call admitted with `verdict` ended without a verdict on the backend (not an outage)."""
        if verdict != PROBE:
            return
        with self._lock:
            if self.state == PROBING:
                self.state = OPEN
                self._retry_at = self.clock()  # the next call probes

    def open_error(self) -> CircuitOpenError:
        """The exception a strict caller's CacheBackendError names as its cause."""
        left = max(self._retry_at - self.clock(), 0.0)
        return CircuitOpenError(
            f"the circuit breaker of cache alias {self.alias!r} is {self.state} since "
            f"{time.strftime('%H:%M:%S', time.gmtime(self.since))} UTC after {self.last_error}; "
            f"the backend is probed again in {left:.1f} s"
        )

    def opens_since(self, seconds: float = RECENT) -> int:
        """How many times it opened in the last `seconds` (from closed; probes aside)."""
        start = self.wall() - seconds
        with self._lock:
            return sum(1 for opened in self._open_times if opened >= start)

    def snapshot(self) -> dict[str, Any]:
        """Plain data for the dashboard: state, since when, opens, the thresholds."""
        return {
            "alias": self.alias,
            "state": self.state,
            "since": self.since,
            "opens": self.opens,
            "opens_last_hour": self.opens_since(RECENT),
            "last_error": self.last_error,
            "failures": self.failures,
            "timeouts": self.timeouts,
            "cooldown": self.cooldown,
            "enabled": self.enabled,
        }

    # -- transitions; called with the lock held -------------------------------------

    def _open(self, exc: BaseException) -> None:
        self.state = OPEN
        self._quick_probes = 0
        self._retry_at = self.clock() + self.cooldown
        self.since = self.wall()
        self.opens += 1
        self._open_times.append(self.since)
        self.last_error = type(exc).__name__
        counters.add("breaker_opens", 1, BREAKER_PREFIX)
        log.warning(
            "keyedcache: the circuit breaker of cache alias %r opened after %d failed call%s "
            "in a row (last: %s); calls skip the backend for %.1f s, then one call probes it",
            self.alias,
            self._streak,
            "" if self._streak == 1 else "s",
            self.last_error,
            self.cooldown,
        )

    def _close(self) -> None:
        if self.state != CLOSED:
            self.since = self.wall()
        self.state = CLOSED
        self._quick_probes = 0
        self._streak = 0
        self._timeout_streak = 0
        self.flag[0] = 0

    def _after_fork(self) -> None:
        self._lock = threading.Lock()


#: Never opens: for guards that must not share an alias's breaker (the stats reporter).
def disabled(alias: str) -> Breaker:
    """A breaker that never opens."""
    return Breaker(alias, failures=0, timeouts=0)


# -- one breaker per alias and process ---------------------------------------------------

_breakers: dict[str, Breaker] = {}
_breakers_lock = threading.Lock()


def for_alias(alias: str) -> Breaker:
    """The breaker of cache alias `alias` in this process, built from settings on first use.

    Raises ValueError naming the setting when a KEYEDCACHE_BREAKER_* setting is invalid.
    """
    found = _breakers.get(alias)
    if found is not None:
        return found
    failures, timeouts = conf.DEFAULT_BREAKER_FAILURES, conf.DEFAULT_BREAKER_TIMEOUTS
    cooldown = conf.DEFAULT_BREAKER_COOLDOWN
    if conf.configured():
        failures, timeouts = conf.breaker_failures(), conf.breaker_timeouts()
        cooldown = conf.breaker_cooldown()
    with _breakers_lock:
        found = _breakers.get(alias)
        if found is None:
            found = _breakers[alias] = Breaker(
                alias, failures=failures, timeouts=timeouts, cooldown=cooldown
            )
    return found


def all_breakers() -> list[Breaker]:
    """Every alias's breaker made in this process so far, by alias."""
    with _breakers_lock:
        return sorted(_breakers.values(), key=lambda b: b.alias)


def reset(setting: str | None = None) -> None:
    """Forget every breaker: the next call builds them closed, from current settings."""
    with _breakers_lock:
        _breakers.clear()


def _after_fork_in_child() -> None:
    global _breakers_lock
    _breakers_lock = threading.Lock()
    for found in _breakers.values():
        found._after_fork()


conf.on_change(reset)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
