"""KeyedCache's many-key operations: listing, pattern deletes, get_many and set_many."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT

from keyedcache.counters import DELETES, HITS, LOCAL_HITS, MISSES, SETS, counters
from keyedcache.entry import NO_VALUE, UNSEEN, backend_timeout, fresh_value, make_entry
from keyedcache.exceptions import CacheBackendError
from keyedcache.guard import raise_if_unpicklable
from keyedcache.keys import pattern_scan_prefix
from keyedcache.local import current_scope
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


class ManyKeysMixin(CacheParts):
    """Operations on many keys at once (mixed into KeyedCache; see cache.py)."""

    def iter_keys(self, pattern: str = "*", *, strict: bool = False) -> Iterator[str]:
        """Yield the logical keys of live keyedcache entries matching glob `pattern`.

        Streams from the backend (Redis SCAN, a database cursor, memcached's
        LRU crawler, a walk of the file cache); order is the backend's. A
        backend failure ends the listing (logged and counted); with `strict`
        it is raised after that.
        """
        if not self.enabled:
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
