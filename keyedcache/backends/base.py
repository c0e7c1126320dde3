"""The adapter contract and the storage-key bookkeeping every adapter shares."""

from __future__ import annotations

import math
import pickle
import threading
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

from django.core.cache import caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache, default_key_func
from django.core.exceptions import ImproperlyConfigured

from keyedcache import keys
from keyedcache.entry import NO_VALUE

# memcached's limit, which Django enforces (by warning) on every backend.
MAX_KEY_LENGTH = 250

#: What decoding a stored value raises when its class is gone or its bytes are
#: corrupt (pickle, zlib, base64). Outages raise other types (OSError,
#: ConnectionError, the clients' own errors, DatabaseError), which the guard handles.
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    pickle.UnpicklingError,
    AttributeError,
    ImportError,
    EOFError,
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    zlib.error,
)


class Undecodable:
    """A stored value that cannot be decoded: a miss for readers, reclaimed by listings."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __repr__(self) -> str:
        return f"<undecodable: {type(self.error).__name__}: {self.error}>"


# A resolved timeout in seconds (None: never expires); the store resolves
# Django's DEFAULT_TIMEOUT before calling an adapter.
Timeout = float | None


def in_batches(items: Iterable[str], size: int = 500, first: int = 10) -> Iterator[list[str]]:
    """`items` in lists, so one backend call serves each list: `first` items, then
    twice as many each time up to `size` (the first results of a long listing
    come early; the later ones in big, cheap batches)."""
    batch: list[str] = []
    limit = min(first, size)
    for item in items:
        batch.append(item)
        if len(batch) >= limit:
            yield batch
            batch = []
            limit = min(limit * 2, size)
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
        # The key function itself, not make_key(""): django-valkey's make_key
        # returns an empty key unchanged, without its prefix and version.
        made_prefix = str(probe.key_func("", probe.key_prefix, probe.version))
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
        return None if self.plain_storage_key(key) else key

    def logical_key(self, stored: str) -> str | None:
        """Read the logical key back from a storage key, or None if it was digested."""
        body = stored[len(self.namespace) + 1 :]
        return None if keys.DIGEST_MARK in body else body

    def resolve_timeout(self, timeout: Any) -> float | None:
        """Turn Django's DEFAULT_TIMEOUT into the alias's default, in seconds."""
        if timeout is DEFAULT_TIMEOUT:
            return self.default_timeout
        return None if timeout is None else float(timeout)

    # -- the raw layer: storage keys in, stored values out ---------------------
    # The stamped layer (stamped.py) builds entries on these; adapters override
    # them with faster native calls where the backend has them.

    def raw_get_many(self, stored_keys: list[str]) -> dict[str, Any]:
        """{storage key: stored value} of the stored ones; Undecodable for values that
        cannot be decoded (their class is gone, their bytes are corrupt)."""
        cache = self.cache
        try:
            return cache.get_many(stored_keys)
        except DECODE_ERRORS:
            pass
        # One value spoiled the batch: read them one by one to find it. An
        # outage raises again here (it is not a decode error) and goes to the guard.
        found: dict[str, Any] = {}
        for stored in stored_keys:
            try:
                value = cache.get(stored, NO_VALUE)
            except DECODE_ERRORS as exc:
                found[stored] = Undecodable(exc)
                continue
            if value is not NO_VALUE:
                found[stored] = value
        return found

    def raw_pickled(self, stored: str) -> bytes | None:
        """The bytes this process holds pickled for `stored`, where it holds them (locmem);
        None elsewhere. Lets listings read a record without unpickling its value."""
        return None

    def raw_heads(self, stored_keys: list[str]) -> dict[str, tuple[int, bytes]]:
        """{stored key: (stored length, first bytes of its pickle)} where the backend can
        read a prefix of a stored value (Redis GETRANGE); {} elsewhere. Lets listings
        read a record's tag, stamp and key without fetching or unpickling its value."""
        return {}

    def raw_get_many_primary(self, stored_keys: list[str]) -> dict[str, Any]:
        """`raw_get_many` from the primary, for what must read its own writes (tokens)."""
        return self.raw_get_many(stored_keys)

    def raw_set_many(self, values: dict[str, Any], timeout: Timeout) -> None:
        """Store every value under its storage key for `timeout` (Django's rules)."""
        self.cache.set_many(values, timeout)

    def raw_add(self, stored: str, value: Any, timeout: Timeout) -> bool:
        """Store `value` only if nothing is stored under `stored`; say whether it stored."""
        return bool(self.cache.add(stored, value, timeout))

    def raw_delete_many(self, stored_keys: list[str]) -> None:
        """Delete the given storage keys."""
        if stored_keys:
            self.cache.delete_many(stored_keys)

    def raw_touch(self, stored: str, timeout: Timeout) -> None:
        """Give `stored` a new expiry without changing its value (nothing if it is absent)."""
        self.cache.touch(stored, timeout)

    def scan(self, stored_prefix: str) -> Iterator[str]:
        """Yield the storage keys that start with `stored_prefix` (live or not)."""
        raise NotImplementedError(
            f"keyedcache cannot list the keys of cache alias {self.alias!r}: its backend "
            "offers no way to enumerate keys"
        )

    def native_ttl(self, key: str) -> Any:
        """Seconds left as the backend itself reports them, None for never, NO_VALUE if absent.

        Returns NotImplemented where the backend cannot tell; the store then
        reads the envelope's own expiry.
        """
        return NotImplemented

    def native_expire(self, key: str, timeout: float | None) -> Any:
        """Change the expiry of `key` natively; NotImplemented where the backend cannot."""
        return NotImplemented

    # -- locks ----------------------------------------------------------
    # Lock records are raw tokens under their own namespace: no envelope, no
    # generation tokens, so `add` stays one atomic backend call.

    def lock_key(self, key: str) -> str:
        """Storage key of the lock named by logical `key`."""
        return keys.storage_key(key, f"{self.namespace}-lock", self.budget)

    @staticmethod
    def lock_ttl(timeout: float) -> float:
        """The backend timeout for a lock held at least `timeout` seconds (whole seconds).

        Backends that count whole seconds (memcached's clock, Django's int() of
        timeouts) may expire an item up to a second early: a lock set at 12.9 s
        for 1 s could go at 13.0 s. Rounding up and adding a second makes a lock
        exclude others for at least `timeout`, and at most a second more.
        """
        return math.ceil(timeout) + 1

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
