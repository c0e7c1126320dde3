"""The Backend contract every KeyVal store URL implements, and the helpers backends share."""

from __future__ import annotations

import abc


def quote_part(text: str) -> str:
    """`text` with ':' and '%' escaped, so that it stays one part of a keyedcache key."""
    # Store names and keys may contain '::': escaping ':' (and '%') keeps each one
    # a single key part, so ('a', 'b::c') and ('a::b', 'c') never share a cache key.
    if ":" in text or "%" in text:
        return text.replace("%", "%25").replace(":", "%3A")
    return text


class Backend(abc.ABC):
    """The keys of every store in one place; values travel as pickled bytes."""

    #: True when stored values survive a restart of every process.
    persistent = False

    def __init__(self, url: str) -> None:
        self.url = url

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url!r}>"

    @abc.abstractmethod
    def load(self, store: str, key: str) -> bytes | None:
        """The pickled value of `key`, or None when the store has no such key."""

    @abc.abstractmethod
    def save(self, store: str, key: str, data: bytes) -> bool:
        """Store `data` under `key`; True if the key was new, False if it was overwritten."""

    @abc.abstractmethod
    def remove(self, store: str, key: str) -> bool:
        """Delete `key`; say whether it existed."""

    @abc.abstractmethod
    def take(self, store: str, key: str) -> bytes | None:
        """Delete `key` and return its pickled value (None when absent), atomically."""

    @abc.abstractmethod
    def keys(self, store: str) -> list[str]:
        """The store's keys, sorted."""

    @abc.abstractmethod
    def items(self, store: str) -> list[tuple[str, bytes]]:
        """The store's (key, pickled value) pairs, sorted by key."""

    @abc.abstractmethod
    def count(self, store: str) -> int:
        """How many keys the store holds."""

    @abc.abstractmethod
    def flush(self, store: str) -> int:
        """Delete every key of the store; return how many there were."""

    @abc.abstractmethod
    def flush_all(self) -> None:
        """Delete every key of every store."""
