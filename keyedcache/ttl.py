"""KeyedCache's expiry operations (ttl, expire, persist): native, or through the envelope."""

from __future__ import annotations

import datetime
import math
import time
from typing import TYPE_CHECKING, Any

from keyedcache.entry import NO_VALUE, NoValue, backend_timeout, unpack
from keyedcache.local import current_scope
from keyedcache.many import CacheParts
from keyedcache.validation import checked_length

if TYPE_CHECKING:
    from keyedcache.entry import Entry


class TTLMixin(CacheParts):
    """Expiry operations of KeyedCache (mixed in; see cache.py)."""

    def get_entry(self, key: str) -> Entry | None:  # pragma: no cover - KeyedCache defines it
        raise NotImplementedError

    def pttl(self, key: str) -> int | None:
        """Milliseconds until `key` expires: None if it never does, 0 if it is not stored."""
        if not self.enabled:
            return 0
        native = self.guard.call("ttl", key, NO_VALUE, self.adapter.native_ttl, key)
        if native is NotImplemented:
            entry = self.get_entry(key)
            if entry is None:
                return 0
            native = entry.seconds_left()
        if isinstance(native, NoValue):
            return 0
        # The backend keeps an invalidated record until it is reclaimed: it has
        # no TTL as far as callers can tell.
        if self.get_entry(key) is None:
            return 0
        if native is None:
            return None
        return max(math.ceil(float(native) * 1000), 1)

    def ttl(self, key: str) -> int | None:
        """Whole seconds until `key` expires (rounded up): None if never, 0 if not stored."""
        millis = self.pttl(key)
        return millis if millis is None else math.ceil(millis / 1000)

    def seconds_left(self, key: str, entry: Entry) -> float | None:
        """Seconds until `key` (whose `entry` was just read) expires, None for never.

        The backend's own TTL where it has one; otherwise the envelope's, with
        no further read. Not counted; a failure falls back to the envelope.
        """
        try:
            native = self.adapter.native_ttl(key)
        except Exception:
            native = NotImplemented
        if native is NotImplemented or native is NO_VALUE:
            return entry.seconds_left()
        return None if native is None else float(native)

    def expire(self, key: str, length: Any) -> bool:
        """Make `key` expire `length` seconds from now (None: never); say whether it existed."""
        if not self.enabled:
            return False
        timeout = self.adapter.resolve_timeout(checked_length(length, key))
        done = self.guard.call("expire", key, False, self._expire, key, timeout)
        scope = current_scope()
        if scope is not None and timeout is not None and timeout <= 0:
            scope.remember(self.scope_id, key, NO_VALUE)
        return bool(done)

    def _expire(self, key: str, timeout: float | None) -> bool:
        if self.get_entry(key) is None:
            return False  # not stored, or invalidated (kept until it is reclaimed)
        done = self.adapter.native_expire(key, timeout)
        if done is NotImplemented:
            return self._rewrite_expiry(key, timeout)
        if done and (timeout is None or timeout > 0):
            # The envelope of an entry stored with a fractional length
            # holds its exact expiry as its freshness: move that too.
            self._rewrite_expiry(key, timeout, pinned_only=True)
        return bool(done)

    def _rewrite_expiry(
        self, key: str, timeout: float | None, *, pinned_only: bool = False
    ) -> bool:
        # Backends that cannot change an expiry in place: read, then store the
        # entry again with the new one (not atomic with concurrent writers).
        entry = unpack(self.adapter.get(key))
        if entry is None:
            return False
        # Freshness equal to the expiry only records an exact (fractional)
        # expiry, and follows it; a stale window's end of freshness does not.
        pinned = entry.fresh_until is not None and entry.fresh_until == entry.stale_until
        if pinned_only and not pinned:
            return True
        if timeout is not None and timeout <= 0:
            self.adapter.delete(key)
            return True
        drop_at = None if timeout is None else time.time() + timeout
        fresh_until = entry.fresh_until
        if pinned:
            fresh_until = drop_at
        elif fresh_until is not None and drop_at is not None:
            fresh_until = min(fresh_until, drop_at)
        updated = entry._replace(fresh_until=fresh_until, stale_until=drop_at)
        self.adapter.set(key, updated.pack(), backend_timeout(timeout))
        return True

    def expire_at(self, key: str, when: datetime.datetime) -> bool:
        """Make `key` expire at `when` (an aware datetime, or naive in local time)."""
        seconds = when.timestamp() - time.time()
        return self.expire(key, seconds)

    def persist(self, key: str) -> bool:
        """Make `key` never expire; say whether it existed."""
        return self.expire(key, None)
