"""KeyedCache's many-key operations: listing, pattern deletes, get_many and set_many."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any, NamedTuple

from django.core.cache.backends.base import DEFAULT_TIMEOUT

from keyedcache.backends.base import Undecodable
from keyedcache.backends.stamped import RECORD_TAG
from keyedcache.counters import DELETES, HITS, LOCAL_HITS, MISSES, SETS, counters
from keyedcache.entry import NO_VALUE, UNSEEN, backend_timeout, fresh_value, make_entry
from keyedcache.exceptions import CacheBackendError
from keyedcache.guard import raise_if_unpicklable
from keyedcache.keys import pattern_scan_prefix
from keyedcache.local import current_scope
from keyedcache.pickled import float_or_none, tuple_head, tuple_tail
from keyedcache.validation import checked_length

if TYPE_CHECKING:
    from keyedcache.backends import StampedAdapter
    from keyedcache.guard import Guard


class CacheParts:
    """What KeyedCache's mixins use of it (declared here for type checkers; cache.py sets it)."""

    adapter: StampedAdapter
    guard: Guard
    namespace: str
    scope_id: str

    @property
    def enabled(self) -> bool:  # pragma: no cover - KeyedCache defines it
        raise NotImplementedError


class Stored(NamedTuple):
    """What a listing shows of a stored entry, read without unpickling its value."""

    #: Bytes stored for the entry (its pickled value and envelope).
    size: int
    fresh_until: float | None = None
    stale_until: float | None = None
    cost: float | None = None
    #: False when the envelope's times could not be read from the pickle.
    known: bool = True
    #: True when the stored record itself cannot be decoded.
    undecodable: bool = False

    def is_fresh(self, now: float) -> bool:
        """Whether the value is fresh at `now` (unknown times count as fresh)."""
        return self.fresh_until is None or now < self.fresh_until


#: Stored bytes above which a listing reads only a record's head where it can (times unknown).
BIG_RECORD = 1 << 20


def _stored(size: int, pickled: bytes | memoryview) -> Stored:
    """A Stored of `size` bytes, its times read from the end of the pickled envelope."""
    tail = tuple_tail(pickled, 3)
    if tail is None:
        return Stored(size, known=False)
    fresh_until, stale_until, cost = (float_or_none(item) for item in tail)
    return Stored(size, fresh_until, stale_until, cost)


class ManyKeysMixin(CacheParts):
    """Operations on many keys at once (mixed into KeyedCache; see cache.py)."""

    def iter_keys(self, pattern: str = "*", *, strict: bool = False) -> Iterator[str]:
        """Yield the logical keys of live keyedcache entries matching glob `pattern`.

        Streams from the backend (Redis SCAN, a database cursor, memcached's
        LRU crawler, a walk of the file cache); order is the backend's. A
        backend failure ends the listing (logged and counted); with `strict`
        it is raised after that.
        """
        if not self.enabled or not self.guard.closed_or_refuse("list keys", pattern, strict=strict):
            return
        prefix = pattern_scan_prefix(pattern, self.namespace)
        try:
            for key in self.adapter.list_keys(prefix):
                if fnmatchcase(key, pattern):
                    yield key
        except NotImplementedError:
            raise
        except Exception as exc:
            self.guard.failed("list keys", pattern, exc)
            if strict:
                raise CacheBackendError(self.guard.alias, "list keys", pattern, exc) from exc

    def peek_stored(self, key_list: list[str]) -> dict[str, Stored]:
        """{key: Stored} for the keys of `key_list` holding a valid entry, values not unpickled.

        For listings: the size is what is stored, the times come from the end
        of the pickled envelope, and records are read one at a time, so a few
        big values are never all in memory at once. Not counted as cache
        traffic; a backend failure leaves the key out (logged and counted).
        """
        if not key_list or not self.enabled:
            return {}
        found: dict[str, Stored] = {}
        for key in key_list:
            stored = self.guard.call("peek", key, None, self._peek_one, key)
            if stored is not None:
                found[key] = stored
        return found

    def _peek_one(self, key: str) -> Stored | None:
        adapter = self.adapter
        storage = adapter.storage_key(key)
        gens = adapter.gen_keys(key)
        big = adapter.raw_heads([storage]).get(storage)
        if big is not None and big[0] > BIG_RECORD:
            # Only the head of a big record (Redis): its key and stamp, never its value.
            head = tuple_head(big[1], 3)
            if head is not None and len(head) >= 3 and head[0] == RECORD_TAG:
                tokens = adapter.raw_get_many_primary(gens)
                if head[1] != tuple(tokens.get(g) for g in gens):
                    return None
                return Stored(big[0], known=False)
        pickled = adapter.raw_pickled(storage)
        if pickled is not None:
            # The whole record as the backend pickled it: ("kc2", stamp, key, envelope).
            head = tuple_head(pickled, 3)
            if head is not None and len(head) >= 3 and head[0] == RECORD_TAG:
                tokens = adapter.raw_get_many(gens)
                if head[1] != tuple(tokens.get(g) for g in gens):
                    return None
                return _stored(len(pickled), pickled)
        found = adapter.raw_get_many([storage, *gens])
        record = found.get(storage, NO_VALUE)
        if type(record) is Undecodable:
            return Stored(0, known=False, undecodable=True)
        if type(record) is not tuple or len(record) != 4 or record[0] != RECORD_TAG:
            return None
        if record[1] != tuple(found.get(g) for g in gens):
            return None
        payload = record[3]  # the pickled envelope: its value stays pickled
        if isinstance(payload, bytes):
            return _stored(len(payload), payload)
        return Stored(0, known=False)

    def key_of(self, storage: str) -> str | None:
        """The logical key of the entry stored under storage key `storage`, or None.

        Reads the key the record names (never its value), for links that carry a
        storage key instead of a very long key; anything that is not one of this
        namespace's entries is None. Not counted as cache traffic.
        """
        if not self.enabled or not storage.startswith(f"{self.namespace}:"):
            return None
        key = self.guard.call("peek", None, None, self._key_of, storage)
        if isinstance(key, str) and self.adapter.storage_key(key) == storage:
            return key
        return None

    def _key_of(self, storage: str) -> Any:
        adapter = self.adapter
        big = adapter.raw_heads([storage]).get(storage)
        if big is not None:  # the key from the record's head (Redis), not the whole record
            head = tuple_head(big[1], 3)
            if head is not None and len(head) >= 3 and head[0] == RECORD_TAG:
                return head[2]
        pickled = adapter.raw_pickled(storage)
        if pickled is not None:
            head = tuple_head(pickled, 3)
            if head is not None and len(head) >= 3 and head[0] == RECORD_TAG:
                return head[2]
        record = adapter.raw_get_many([storage]).get(storage)
        if type(record) is tuple and len(record) == 4 and record[0] == RECORD_TAG:
            return record[2]
        return None

    def keys(self, pattern: str = "*", *, strict: bool = False) -> list[str]:
        """The sorted list of logical keys matching glob `pattern` (`strict`: see iter_keys)."""
        return sorted(self.iter_keys(pattern, strict=strict))

    #: Keys deleted per backend call by `delete_pattern`.
    delete_batch = 500

    def delete_pattern(
        self,
        pattern: str,
        *,
        progress: Callable[[int, int], object] | None = None,
        strict: bool = False,
    ) -> int:
        """Delete every entry whose key matches glob `pattern`; return how many.

        The matching keys are listed first, then deleted in batches (one
        backend call per batch where the backend allows); `progress(done,
        total)` is called after each batch. With `strict`, a failed listing or
        batch raises CacheBackendError (batches deleted before it stay deleted).
        """
        doomed = list(self.iter_keys(pattern, strict=strict))
        scope = current_scope()
        deleted = 0
        for start in range(0, len(doomed), self.delete_batch):
            batch = doomed[start : start + self.delete_batch]
            if scope is not None:
                for key in batch:
                    scope.remember(self.scope_id, key, NO_VALUE)
            count = self.guard.call(
                "delete", batch[0], 0, self.adapter.delete_many, batch, strict=strict
            )
            deleted += count
            # A batch delete tells how many, not which: keys that vanished
            # between listing and delete are rare, so count the first ones.
            for key in batch[:count]:
                counters.slots(key)[DELETES] += 1
            if progress is not None:
                progress(start + len(batch), len(doomed))
        return deleted

    def get_many(self, key_list: Iterable[str]) -> dict[str, Any]:
        """Return {key: value} for keys with a fresh value, in one backend call if possible."""
        wanted = list(dict.fromkeys(key_list))
        if not self.enabled or not wanted:
            return {}
        slots = counters.slots
        found: dict[str, Any] = {}
        scope = current_scope()
        table = scope.tables.get(self.scope_id) if scope is not None else None
        if table is not None:
            for key in wanted:
                value = table.get(key, UNSEEN)
                if value is not UNSEEN and value is not NO_VALUE:
                    found[key] = value
                    slots(key)[LOCAL_HITS] += 1
        remaining = [key for key in wanted if key not in found]
        if remaining:
            raw_by_key = self.guard.call(
                "get many", remaining[0], {}, self.adapter.get_many, remaining
            )
            for key in remaining:
                value = fresh_value(raw_by_key.get(key, NO_VALUE))
                if value is not NO_VALUE:
                    found[key] = value
                    slots(key)[HITS] += 1
                else:
                    slots(key)[MISSES] += 1
                if scope is not None:
                    scope.remember(self.scope_id, key, value)
        return found

    def set_many(self, values: dict[str, Any], length: Any = DEFAULT_TIMEOUT) -> None:
        """Store several values at once; nothing is written if any of them cannot be pickled."""
        if not self.enabled or not values:
            return
        timeout = self.adapter.resolve_timeout(checked_length(length, values))
        packed_by_key = {
            key: make_entry(value, timeout, key=self.adapter.key_to_keep(key)).pack()
            for key, value in values.items()
        }
        # Check every value before writing any: a backend may write them one by one.
        for key, packed in packed_by_key.items():
            raise_if_unpicklable(key, packed)
        for key in packed_by_key:
            counters.slots(key)[SETS] += 1
        self.guard.call(
            "set many",
            next(iter(packed_by_key)),
            None,
            self.adapter.set_many,
            packed_by_key,
            backend_timeout(timeout),
        )
        scope = current_scope()
        if scope is not None:
            fresh = timeout is None or timeout > 0
            for key, value in values.items():
                scope.remember(self.scope_id, key, value if fresh else NO_VALUE)
