"""KeyedCache's fills: read a basis before computing, store the result under it (invariant 9)."""

from __future__ import annotations

from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT

from keyedcache.backends import Undecodable
from keyedcache.counters import SETS, counters
from keyedcache.entry import NO_VALUE, Entry, backend_timeout, make_entry, unpack
from keyedcache.guard import raise_if_unpicklable
from keyedcache.local import current_scope
from keyedcache.many import CacheParts


class FillsMixin(CacheParts):
    """Loads and stores for values computed from other data (mixed into KeyedCache).

    A memoized body or `find_by_id` reads a basis first (`load_for_fill`),
    computes or queries, then stores under that basis (`fill`): if the key, an
    ancestor or the namespace was invalidated meanwhile, the stored value is
    never served. A plain `set` is the opposite: it outranks racing fills.
    """

    def load_for_fill(self, key: str) -> tuple[Entry | None, Any]:
        """What a fill reads before it computes: the stored entry (stale too, or None)
        and the basis to store its result under (`fill_entry`). Not counted.

        The basis records the generation tokens of `key` and its ancestors: a
        fill stored under it is invalid if any of them changed meanwhile.
        """
        if not self.enabled:
            return None, None
        found = self.guard.call("get", key, None, self.adapter.read_basis, key)
        if found is None:
            return None, None  # the backend is down: a fill will not be stored either
        raw, basis = found
        if type(raw) is Undecodable:
            self.guard.decode_failed(key, raw.error)
        return unpack(raw), basis

    def fill(self, key: str, value: Any, basis: Any, length: Any = DEFAULT_TIMEOUT) -> None:
        """Store `value`, loaded or computed after `load_for_fill(key)` returned `basis`.

        Unlike `set`, it never outranks an invalidation or a `set` that came
        after the basis was read: then the value is not served.
        """
        if not self.enabled:
            return
        timeout = self.adapter.resolve_timeout(length)
        entry = make_entry(value, timeout, key=self.adapter.key_to_keep(key))
        self.fill_entry(key, entry, timeout, basis)

    def fill_entry(self, key: str, entry: Entry, timeout: float | None, basis: Any) -> None:
        """Store a computed entry under the basis read before computing it.

        With no basis (the backend was down when it was read, or the caller
        computed without reading), the entry is stored under the current
        tokens, as `set_entry` does but without outranking racing fills.
        """
        if not self.enabled:
            return
        packed = entry.pack()
        counters.slots(key)[SETS] += 1
        if basis is None:
            found = self.guard.call("get", key, None, self.adapter.read_basis, key)
            if found is None:
                return
            basis = found[1]
        self.guard.call(
            "set",
            key,
            None,
            self.adapter.fill,
            key,
            packed,
            backend_timeout(timeout),
            basis,
            on_error=lambda _exc: raise_if_unpicklable(key, packed),
        )
        scope = current_scope()
        if scope is not None:
            # Within one request the scope is a snapshot: it may keep the
            # computed value even if an invalidation made the stored one invalid.
            fresh = timeout is None or timeout > 0
            scope.remember(self.scope_id, key, entry.value if fresh else NO_VALUE)
