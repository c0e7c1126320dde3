"""How the dashboard writes figures, durations, times and keys as text."""

from __future__ import annotations

import datetime
import math
import time
from typing import Any

from django.conf import settings
from django.utils import timezone

#: What a table shows where there is no figure (an en dash).
NO_FIGURE = "\u2013"


def shown(text: str) -> str:
    """`text` with invisible characters (controls, format marks) written as escapes."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def number(value: int | float) -> str:
    """1234567 -> '1,234,567'."""
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def percent(rate: float | None) -> str:
    """0.5 -> '50.0%'; None (no calls yet) is NO_FIGURE."""
    return NO_FIGURE if rate is None else f"{100 * rate:.1f}%"


def duration(seconds: float | None) -> str:
    """Seconds as '42 s', '3 min 5 s', '2 h 10 min', '4 d 3 h'; None is 'never'."""
    if seconds is None:
        return "never"
    whole = math.ceil(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def when(timestamp: float | None) -> datetime.datetime | None:
    """A Unix timestamp as an aware datetime (the template shows it in the current zone)."""
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc)


def ago(timestamp: Any, now: float | None = None) -> str:
    """'just now', '42 s ago', '3 min ago', ... for a Unix timestamp; NO_FIGURE if none."""
    if not isinstance(timestamp, (int, float)):
        return NO_FIGURE
    seconds = (time.time() if now is None else now) - timestamp
    if seconds < 5:
        return "just now"
    return f"{duration(seconds)} ago"


def clock(timestamp: float) -> str:
    """HH:MM of a Unix timestamp in the current time zone."""
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc)
    if settings.USE_TZ:
        moment = timezone.localtime(moment)
    return moment.strftime("%H:%M")
