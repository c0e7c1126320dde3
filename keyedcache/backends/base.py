"""The adapter contract and the storage-key bookkeeping every adapter shares."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from django.core.cache import caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache, default_key_func
from django.core.exceptions import ImproperlyConfigured

from keyedcache import keys
from keyedcache.entry import NO_VALUE, Entry, is_packed, unpack

# memcached's limit, which Django enforces (by warning) on every backend.
MAX_KEY_LENGTH = 250


# A resolved timeout in seconds (None: never expires); the store resolves
# Django's DEFAULT_TIMEOUT before calling an adapter.
Timeout = float | None


def in_batches(items: Iterable[str], size: int = 500) -> Iterator[list[str]]:
    """`items` in lists of at most `size`, so one backend call serves each list."""
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class Adapter:
    """Stores keyedcache entries in one Django cache alias.

    Subclasses say what their backend can do natively: enumerate keys under a
    prefix, delete them, report a TTL. The store never looks past this class.
    """

    #: Short name shown in stats, the dashboard and the docs' capability table.
    name = "generic"
    #: True when keys under a prefix can be listed from the backend itself.
    enumerates = False
    #: Cap on the memo of logical -> storage keys (a plain dict, cleared when full).
    storage_key_memo_size = 8192

    def __init__(self, alias: str, namespace: str) -> None:
        self.alias = alias
        self.namespace = namespace
        # Django's cache objects are per thread (some clients are not thread
        # safe); hold the one of the calling thread.
        self._local = threading.local()
        self._storage_keys: dict[str, str] = {}
        probe = caches[alias]
        self._local.cache = probe
        self.default_timeout: float | None = probe.default_timeout
        made_prefix = probe.make_key("")
        self.budget = MAX_KEY_LENGTH - len(made_prefix)
        # Checked here, once: a storage key that cannot fit must fail loudly at
        # start-up, not look like a backend outage on every call.
        room = self.budget - len(f"{namespace}-gen:{keys.COLLAPSE_MARK}") - keys.DIGEST_CHARS
        if room < 0:
            raise ImproperlyConfigured(
                f"CACHES[{alias!r}] KEY_PREFIX/VERSION and KEYEDCACHE_NAMESPACE {namespace!r} "
                f"leave no room for keys within the {MAX_KEY_LENGTH}-character limit."
            )
        # With Django's own key function the made key is prefix + storage key,
        # which lets native adapters skip make_key/validate_key on hot paths.
        self.made_prefix: str | None = made_prefix if probe.key_func is default_key_func else None

    # -- plumbing ---------------------------------------------------------

    @property
    def cache(self) -> BaseCache:
        """The Django cache object for this alias in the calling thread."""
        try:
            return self._local.cache  # type: ignore[no-any-return]
        except AttributeError:
            self._local.cache = cache = caches[self.alias]
            return cache

    def storage_key(self, key: str) -> str:
        """Return the storage key of logical `key` (memoized: it is on every read)."""
        stored = self._storage_keys.get(key)
        if stored is None:
            stored = keys.storage_key(key, self.namespace, self.budget)
            if len(self._storage_keys) >= self.storage_key_memo_size:
                self._storage_keys.clear()
            self._storage_keys[key] = stored
        return stored

    def plain_storage_key(self, key: str) -> bool:
        """Tell whether the logical key can be read back from its storage key."""
        return self.storage_key(key) == f"{self.namespace}:{key}"

    def key_to_keep(self, key: str) -> str | None:
        """The logical key to record in the envelope, or None when the storage key tells it."""
        return key if self.keeps_keys or not self.plain_storage_key(key) else None

    def logical_key(self, stored: str) -> str | None:
        """Read the logical key back from a storage key, or None if it was digested."""
        body = stored[len(self.namespace) + 1 :]
        return None if keys.DIGEST_MARK in body else body

    def names_of_stored(self, stored_keys: Iterable[str]) -> Iterator[str]:
        """Logical keys of storage keys: read back from the key itself, or, for digested
        keys, from their envelopes (one batched read per 500 of them)."""
        digested: list[str] = []
        for stored in stored_keys:
            name = self.logical_key(stored)
            if name is not None:
                yield name
                continue
            # Streamed: resolve every 500 digested keys rather than keep them all.
            digested.append(stored)
            if len(digested) >= 500:
                yield from self.names_in_entries(digested)
                digested = []
        if digested:
            yield from self.names_in_entries(digested)

    def names_in_entries(self, stored_keys: list[str]) -> Iterator[str]:
        """Logical keys of digested storage keys, read from their envelopes."""
        found = self.cache.get_many(stored_keys)
        for stored in stored_keys:
            entry = entry_of(found.get(stored, NO_VALUE))
            if entry is not None and entry.key is not None:
                yield entry.key

    def resolve_timeout(self, timeout: Any) -> float | None:
        """Turn Django's DEFAULT_TIMEOUT into the alias's default, in seconds."""
        if timeout is DEFAULT_TIMEOUT:
            return self.default_timeout
        return None if timeout is None else float(timeout)

    # -- entries ----------------------------------------------------------

    def get(self, key: str) -> Any:
        """Return the packed envelope stored for `key`, or NO_VALUE."""
        return self.cache.get(self.storage_key(key), NO_VALUE)

    def get_many(self, key_list: Iterable[str]) -> dict[str, Any]:
        """Return {key: packed envelope} for the keys that are stored."""
        by_storage = {self.storage_key(k): k for k in key_list}
        found = self.cache.get_many(list(by_storage))
        return {by_storage[s]: raw for s, raw in found.items()}

    def set(self, key: str, packed: tuple[Any, ...], timeout: Timeout) -> None:
        """Store the packed envelope under `key` for `timeout` (Django's rules)."""
        self.cache.set(self.storage_key(key), packed, timeout)

    def add(self, key: str, packed: tuple[Any, ...], timeout: Timeout) -> bool:
        """Store only when nothing is stored under `key`; say whether it stored."""
        return bool(self.cache.add(self.storage_key(key), packed, timeout))

    def delete(self, key: str) -> bool:
        """Delete `key` alone; say whether it was there."""
        return bool(self.cache.delete(self.storage_key(key)))

    def delete_many(self, key_list: list[str]) -> int:
        """Delete the given keys; return how many of them were stored.

        One call per key here; adapters whose backend deletes a batch in one
        round trip and reports the count (Redis UNLINK, one SQL DELETE) do so.
        """
        return sum(1 for key in key_list if self.delete(key))

    def delete_subtree(self, key: str) -> list[str] | None:
        """Delete `key` and every key below it; return the deleted keys, or None if unknown."""
        raise NotImplementedError

    def delete_all(self) -> list[str] | None:
        """Delete every keyedcache entry (and nothing else); return keys, or None if unknown."""
        raise NotImplementedError

    #: True when every envelope must carry its logical key (listing reads it back).
    keeps_keys = False

    def list_keys(self, stored_prefix: str) -> Iterator[str]:
        """Yield the logical keys of live entries whose storage key starts with `stored_prefix`."""
        raise NotImplementedError(
            f"keyedcache cannot list the keys of cache alias {self.alias!r}: its backend "
            "offers no way to enumerate keys"
        )

    def set_many(self, packed_by_key: dict[str, tuple[Any, ...]], timeout: Timeout) -> None:
        """Store several packed envelopes in one backend call where the backend allows."""
        self.cache.set_many({self.storage_key(k): p for k, p in packed_by_key.items()}, timeout)

    def native_ttl(self, key: str) -> Any:
        """Seconds left as the backend itself reports them, None for never, NO_VALUE if absent.

        Returns NotImplemented where the backend cannot tell; the store then
        reads the envelope's own expiry.
        """
        return NotImplemented

    def native_expire(self, key: str, timeout: float | None) -> Any:
        """Change the expiry of `key` natively; NotImplemented where the backend cannot."""
        return NotImplemented

    def pin_generations(self, key: str) -> None:
        """Give whatever guards `key` against subtree deletes a fixed value (nothing here).

        For entries that never need a subtree delete (stats records), written
        by many processes: see GenerationalAdapter.pin_generations.
        """

    # -- locks ----------------------------------------------------------
    # Lock records are raw tokens under their own namespace: no envelope, no
    # generation tokens, so `add` stays one atomic backend call.

    def lock_key(self, key: str) -> str:
        """Storage key of the lock named by logical `key`."""
        return keys.storage_key(key, f"{self.namespace}-lock", self.budget)

    @staticmethod
    def lock_ttl(timeout: float) -> float:
        """The backend timeout for a lock held `timeout` seconds (whole seconds here)."""
        # memcached and Django's int() of timeouts would turn 0.5 s into "expired".
        return max(math.ceil(timeout), 1)

    def lock_acquire(self, key: str, token: str, timeout: float) -> bool:
        """Take the lock for `timeout` seconds if nobody holds it; atomic where `add` is."""
        return bool(self.cache.add(self.lock_key(key), token, self.lock_ttl(timeout)))

    def lock_owner(self, key: str) -> str | None:
        """The token holding the lock, or None."""
        owner = self.cache.get(self.lock_key(key))
        return owner if isinstance(owner, str) else None

    def lock_release(self, key: str, token: str) -> bool:
        """Release the lock if `token` holds it; say whether it did.

        Generic version: a read, then a delete. Between the two, a lock that
        overran its timeout could pass to another owner; native adapters do
        the compare-and-delete in one step.
        """
        stored = self.lock_key(key)
        if self.cache.get(stored) != token:
            return False
        self.cache.delete(stored)
        return True

    def lock_extend(self, key: str, token: str, timeout: float) -> bool:
        """Give the lock held by `token` `timeout` more seconds; say whether it did."""
        stored = self.lock_key(key)
        if self.cache.get(stored) != token:
            return False
        self.cache.set(stored, token, self.lock_ttl(timeout))
        return True


class EnumeratingAdapter(Adapter):
    """An adapter whose backend can list the storage keys under a prefix."""

    enumerates = True

    def scan(self, stored_prefix: str) -> Iterator[str]:
        """Yield the storage keys that start with `stored_prefix` and are not expired."""
        raise NotImplementedError

    def delete_stored(self, stored_keys: list[str]) -> None:
        """Delete the given storage keys."""
        self.cache.delete_many(stored_keys)

    def list_keys(self, stored_prefix: str) -> Iterator[str]:
        return self.names_of_stored(self.scan(stored_prefix))

    def delete_subtree(self, key: str) -> list[str] | None:
        targets = set(self.scan(f"{self._subtree_root(key)}{keys.KEY_DELIM}"))
        targets.update(self.scan_exact(self.storage_key(key)))
        targets.update(self._collapsed_descendants(key))
        return self._delete_and_name(targets)

    def delete_all(self) -> list[str] | None:
        return self._delete_and_name(set(self.scan(f"{self.namespace}:")))

    def scan_exact(self, stored: str) -> Iterator[str]:
        """Yield `stored` if it is stored (the subtree's root itself)."""
        if self.cache.get(stored, NO_VALUE) is not NO_VALUE:
            yield stored

    def _subtree_root(self, key: str) -> str:
        return f"{self.namespace}:{keys.safe_path(key)}"

    def _collapsed_descendants(self, key: str) -> Iterator[str]:
        """Descendants whose storage keys were cut above `key` (only for very long keys)."""
        root = self._subtree_root(key)
        tail_room = len(keys.COLLAPSE_MARK) + keys.DIGEST_CHARS
        if len(root) + len(keys.KEY_DELIM) + tail_room <= self.budget:
            return  # every descendant's cut point lies below `key`: the scan saw them
        path = keys.safe_path(key)
        child_prefix = key + keys.KEY_DELIM
        boundaries = {0} | {i + 2 for i in range(len(path)) if path.startswith("::", i)}
        for end in sorted(boundaries):
            head = f"{self.namespace}:{path[:end]}{keys.COLLAPSE_MARK}"
            for stored in self.scan(head):
                entry = unpack(self.cache.get(stored, NO_VALUE))
                if (
                    entry is not None
                    and entry.key is not None
                    and (entry.key == key or entry.key.startswith(child_prefix))
                ):
                    yield stored

    def _delete_and_name(self, targets: set[str]) -> list[str]:
        ordered = sorted(targets)
        names = [self._name_of(stored) for stored in ordered]
        for start in range(0, len(ordered), 500):
            self.delete_stored(ordered[start : start + 500])
        return [name for name in names if name is not None]

    def _name_of(self, stored: str) -> str | None:
        name = self.logical_key(stored)
        if name is not None:
            return name
        entry = unpack(self.cache.get(stored, NO_VALUE))
        return entry.key if entry is not None else None


def entry_of(raw: Any) -> Entry | None:
    """Return the Entry in a raw stored value, None for a miss or foreign data."""
    if raw is NO_VALUE or not is_packed(raw):
        return None
    return unpack(raw)
