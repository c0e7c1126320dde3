"""Pure: the envelope a value is stored in (value, fresh-until, stale-until, cost)."""

from __future__ import annotations

import enum
import math
import time
from typing import Any, Final, Literal, NamedTuple


class NoValue(enum.Enum):
    """Markers for "there is no value here", distinct from every storable value.

    An enum so that type checkers understand `x is NO_VALUE` narrowing, and
    falsy so that `if value:` never mistakes a marker for data. `None`,
    `False`, `0` and `''` are legitimate cached values, which is why plain
    `None` cannot play this role.
    """

    #: Nothing stored, nothing found, no default given, or known to be absent.
    NO_VALUE = "NO_VALUE"
    #: A request scope has not looked this key up yet (it may still be absent).
    UNSEEN = "UNSEEN"

    def __bool__(self) -> Literal[False]:
        return False

    def __repr__(self) -> str:
        return f"<{self.value}>"


NO_VALUE: Final = NoValue.NO_VALUE
UNSEEN: Final = NoValue.UNSEEN

# The first item of every stored envelope. Bump it when the layout changes:
# an envelope of another format then reads as a miss instead of as garbage.
ENTRY_FORMAT = 1


class Entry(NamedTuple):
    """One cached value and the times that govern it.

    `fresh_until` is when the value stops being fresh (None: fresh for as long
    as it is stored); `stale_until` is when the backend drops it (None: never);
    `cost` is how many seconds computing it took (0 for plain sets); `key` is
    the logical key, kept only when the storage key cannot be read back into it.
    """

    value: Any
    fresh_until: float | None = None
    stale_until: float | None = None
    cost: float = 0.0
    key: str | None = None

    def pack(self) -> tuple[Any, ...]:
        """Return the plain tuple that is pickled into the backend."""
        # A plain tuple pickles smaller and loads faster than a class instance.
        packed: tuple[Any, ...] = (
            ENTRY_FORMAT,
            self.value,
            self.fresh_until,
            self.stale_until,
            self.cost,
        )
        if self.key is not None:
            packed += (self.key,)
        return packed

    def is_fresh(self, now: float | None = None) -> bool:
        """Tell whether the value is still fresh at `now` (default: the current time)."""
        if self.fresh_until is None:
            return True
        return (time.time() if now is None else now) < self.fresh_until

    def seconds_left(self, now: float | None = None) -> float | None:
        """Seconds until the backend drops the entry; None when it never expires."""
        if self.stale_until is None:
            return None
        return max(self.stale_until - (time.time() if now is None else now), 0.0)


def is_packed(raw: Any) -> bool:
    """Tell whether `raw` is an envelope written by this version of keyedcache."""
    return type(raw) is tuple and len(raw) >= 5 and raw[0] == ENTRY_FORMAT


def fresh_value(raw: Any) -> Any:
    """The value in envelope `raw` if it is still fresh, else NO_VALUE (the read hot path)."""
    if (
        type(raw) is tuple
        and len(raw) >= 5
        and raw[0] == ENTRY_FORMAT
        and (raw[2] is None or raw[2] > time.time())
    ):
        return raw[1]
    return NO_VALUE


def unpack(raw: Any) -> Entry | None:
    """Return the Entry in `raw`, or None when `raw` is not a keyedcache envelope."""
    if not is_packed(raw):
        return None
    return Entry(raw[1], raw[2], raw[3], raw[4], raw[5] if len(raw) > 5 else None)


def make_entry(
    value: Any,
    timeout: float | None,
    *,
    stale: float = 0.0,
    cost: float = 0.0,
    key: str | None = None,
    now: float | None = None,
) -> Entry:
    """Build the entry for `value` stored for `timeout` seconds (None: forever).

    With `stale`, the value stays stored `stale` seconds after it stops being
    fresh, so a caller can be served it while one caller refreshes it.
    """
    if timeout is None:
        return Entry(value, None, None, cost, key)
    now = time.time() if now is None else now
    fresh_until = now + timeout
    # Without a stale window, freshness is the backend's own expiry: recording
    # None spares every read a clock call. Not for fractional timeouts: the
    # backend keeps those up to a second longer (see backend_timeout).
    exact = stale or timeout != int(timeout)
    return Entry(
        value,
        fresh_until if exact else None,
        fresh_until + stale,
        cost,
        key,
    )


def backend_timeout(timeout: float | None) -> float | None:
    """The timeout to hand the backend: fractions rounded up to whole seconds.

    memcached and Django's Redis and memcached backends cut timeouts to whole
    seconds, so 0.5 would mean "already expired"; the entry's own fresh-until
    time keeps freshness exact.
    """
    if timeout is None or timeout <= 0 or timeout == int(timeout):
        return timeout
    return float(math.ceil(timeout))
