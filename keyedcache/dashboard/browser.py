"""The key browser's reads: keys counted per next segment, glob searches, key metadata."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from keyedcache import conf
from keyedcache.cache import KeyedCache
from keyedcache.dashboard.formatting import duration
from keyedcache.entry import Entry
from keyedcache.keys import KEY_DELIM, glob_literal

#: Rows per page of the key browser.
PAGE_SIZE = 50
#: Distinct branches one listing keeps counts for, even in a full count.
MAX_BRANCHES = 10_000

_GLOB_META = re.compile(r"[*?\[]")
_DIGITS = re.compile(r"([0-9]+)")


def scan_limit() -> int:
    """Keys read for one page of the key browser unless the user asks for a full count.

    KEYEDCACHE_DASHBOARD_SCAN_LIMIT, and never less than a page.
    """
    return conf.dashboard_scan_limit(PAGE_SIZE)


def natural(text: str) -> tuple[Any, ...]:
    """Sort key putting 2 before 10 and page2 before page10 (numbers first, then text)."""
    if text.isdecimal() and text.isascii():  # most segments are ids: the fast path
        return (0, int(text), text)
    return (1, [int(part) if i % 2 else part for i, part in enumerate(_DIGITS.split(text))])


@dataclass(slots=True)
class Child:
    """One row of a branch: the next key segment, the keys below it, and whether it is a key."""

    segment: str
    key: str
    count: int = 0
    is_key: bool = False
    meta: dict[str, Any] = field(default_factory=dict)
    #: A key at or below this row (a reference for links when the row's key is long).
    sample: str = ""

    @property
    def is_branch(self) -> bool:
        """True when keys lie below this segment (not only the key of that name)."""
        return self.count > (1 if self.is_key else 0)


@dataclass
class Listing:
    """What one scan of a branch (or a search) found."""

    rows: list[Child]
    read: int
    truncated: bool
    overflow: int = 0


def _closing(keys: Iterator[str]) -> Callable[[], None]:
    close = getattr(keys, "close", None)
    return close if callable(close) else (lambda: None)


def scan_branch(store: KeyedCache, branch: str | None, limit: int | None) -> Listing:
    """Count the keys below `branch` (None: the root) per next segment, streaming.

    Reads at most `limit` keys (None: all of them) and keeps counts for at
    most MAX_BRANCHES distinct segments; the rest are only counted. Raises
    CacheBackendError when the backend fails (never a silently short listing).
    """
    pattern = "*" if branch is None else glob_literal(branch) + KEY_DELIM + "*"
    cut = 0 if branch is None else len(branch) + len(KEY_DELIM)
    base = "" if branch is None else branch + KEY_DELIM
    children: dict[str, Child] = {}
    read = overflow = 0
    truncated = False
    keys = store.iter_keys(pattern, strict=True)
    try:
        for key in keys:
            if limit is not None and read >= limit:
                truncated = True
                break
            read += 1
            segment, sep, _rest = key[cut:].partition(KEY_DELIM)
            child = children.get(segment)
            if child is None:
                if len(children) >= MAX_BRANCHES:
                    overflow += 1
                    continue
                child = children[segment] = Child(segment, base + segment, sample=key)
            child.count += 1
            if not sep:
                child.is_key = True
    finally:
        _closing(keys)()
    rows = sorted(children.values(), key=lambda c: natural(c.segment))
    return Listing(rows, read, truncated, overflow)


def search_keys(store: KeyedCache, pattern: str, limit: int | None) -> Listing:
    """The keys matching glob `pattern`, at most `limit` of them, in natural order.

    Raises CacheBackendError when the backend fails.
    """
    found: list[Child] = []
    truncated = False
    keys = store.iter_keys(pattern, strict=True)
    try:
        for key in keys:
            if limit is not None and len(found) >= limit:
                truncated = True
                break
            found.append(Child(key, key, 1, True, sample=key))
    finally:
        _closing(keys)()
    found.sort(key=lambda c: natural(c.key))
    return Listing(found, len(found), truncated)


def search_pattern(query: str) -> str:
    """The glob a search box query stands for: as typed, or `*query*` without wildcards."""
    return query if _GLOB_META.search(query) else f"*{glob_literal(query)}*"


def key_meta(store: KeyedCache, keys: list[str]) -> dict[str, dict[str, Any]]:
    """TTL, stored size and freshness of stored keys: {key: meta}; keys no longer stored
    are left out.

    Reads with `peek_stored` and `seconds_left`: values are not unpickled (their
    size is what is stored, their times come from the end of the pickle), and
    browsing is not counted as cache traffic.
    """
    metas = {}
    now = time.time()
    for key, stored in store.peek_stored(keys).items():
        envelope = Entry(None, stored.fresh_until, stored.stale_until)
        ttl = store.seconds_left(key, envelope)
        unknown = not stored.known and ttl is None
        metas[key] = {
            "stored": stored,
            "ttl": "unknown" if unknown else duration(ttl),
            "ttl_seconds": ttl,
            "size": stored.size,
            "fresh": stored.is_fresh(now),
            "undecodable": stored.undecodable,
        }
    return metas
