"""Checks for the numbers callers pass: lengths, timeouts and waits are finite and in range."""

from __future__ import annotations

import numbers
import sys
from collections.abc import Iterable
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT

#: The longest length, lock timeout or wait keyedcache accepts: 10 years (3650 days).
#: Longer lengths are refused rather than sent to a backend that would reject them
#: (memcached keeps expiry times as 32-bit Unix times, the database cache as datetimes).
MAX_SECONDS = 3650 * 24 * 3600
MAX_TEXT = f"{MAX_SECONDS} (10 years)"
#: The most negative length accepted ("expire at once"); beyond it a float overflows.
_LOWEST = -sys.float_info.max


def is_number(value: Any) -> bool:
    """True for an int, a float or another real number; False for bool, str, Decimal, None."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def seconds(
    value: Any,
    name: str,
    where: str,
    *,
    above_zero: bool = False,
    maximum: float | None = MAX_SECONDS,
) -> float:
    """Return `value` as float seconds, or raise ValueError naming `name` and `where`.

    `value` must be a real number (not a bool), finite, at least 0 (above 0
    with `above_zero`) and at most `maximum` (None: no maximum).
    """
    # Comparisons, not float(): a huge int must be refused, not overflow.
    if (
        is_number(value)
        and (value > 0 if above_zero else value >= 0)
        and value <= (sys.float_info.max if maximum is None else maximum)
    ):
        return float(value)
    lowest = "> 0" if above_zero else ">= 0"
    highest = ""
    if maximum is not None:
        highest = f", at most {MAX_TEXT if maximum == MAX_SECONDS else maximum}"
    raise ValueError(f"{where}: {name} must be a number {lowest}, finite{highest}; got {value!r}")


def length(value: Any, where: str) -> Any:
    """Check a `length`: DEFAULT_TIMEOUT, None (forever), or finite seconds up to MAX_SECONDS.

    Zero and negative numbers (expire at once) are valid. Returns `value`
    unchanged, for the adapter's `resolve_timeout`.
    """
    if value is DEFAULT_TIMEOUT or value is None:
        return value
    if is_number(value) and _LOWEST <= value <= MAX_SECONDS:
        return value
    raise ValueError(
        f"{where}: length must be None (never expire) or a finite number of seconds "
        f"at most {MAX_TEXT}, or 0 or less to expire at once; got {value!r}"
    )


def keys_text(keys: str | Iterable[str]) -> str:
    """`key 'a'`, or `keys 'a', 'b', 'c' and 7 more` for error messages."""
    if isinstance(keys, str):
        return f"key {keys!r}"
    listed = list(keys)
    if len(listed) == 1:
        return f"key {listed[0]!r}"
    shown = ", ".join(repr(key) for key in listed[:3])
    more = f" and {len(listed) - 3} more" if len(listed) > 3 else ""
    return f"keys {shown}{more}"


def checked_length(value: Any, keys: str | Iterable[str]) -> Any:
    """`length(value, ...)` for the write of `keys` (a key, or several): the message names them.

    The cheap common cases (the alias default, None, a plain int or float in
    range) return at once; `keys` is only read to build an error message.
    """
    if value is DEFAULT_TIMEOUT or value is None:
        return value
    kind = type(value)
    if (kind is int or kind is float) and _LOWEST <= value <= MAX_SECONDS:
        return value
    return length(value, keys_text(keys))
