"""Where KeyVal stores live, chosen by URL (KEYEDCACHE_KEYVAL_BACKEND): db://, cache://, locmem://."""

from __future__ import annotations

import abc
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

from django.conf import settings
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import IntegrityError, connections, router, transaction
from django.utils import timezone

from keyedcache.keys import KEY_DELIM
from keyedcache.store import KeyedCache, default_cache

log = logging.getLogger("keyedcache.keyval")

SETTING = "KEYEDCACHE_KEYVAL_BACKEND"
TIMEOUT_SETTING = "KEYEDCACHE_KEYVAL_TIMEOUT"
DEFAULT_URL = "db://"
SCHEMES = ("db", "cache", "locmem")

#: First key part of the cached copies of database stores (reserved in keyedcache's key space).
READ_THROUGH_ROOT = "keyval"
#: First key part of cache:// stores.
CACHE_STORE_ROOT = "keyval-store"

T = TypeVar("T")
_MISS: Any = object()


class BackendURLError(ImproperlyConfigured):
    """A store URL (KEYEDCACHE_KEYVAL_BACKEND) cannot be used; `.check_id` names the check."""

    def __init__(self, message: str, check_id: str = "keyedcache.E101", hint: str | None = None):
        super().__init__(message)
        self.check_id = check_id
        self.hint = hint


def new_token() -> str:
    """A random token: a cached copy is valid only while its key's token is unchanged."""
    return os.urandom(8).hex()


def _quote(text: str) -> str:
    # Store names and keys may contain '::': escaping ':' (and '%') keeps each one
    # a single key part, so ('a', 'b::c') and ('a::b', 'c') never share a cache key.
    if ":" in text or "%" in text:
        return text.replace("%", "%25").replace(":", "%3A")
    return text


# -- the contract ---------------------------------------------------------------


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


# -- db:// ---------------------------------------------------------------------------


class _AfterCommit:
    """What one transaction does to the cache once it commits: one per transaction and backend.

    Writes only gather here: invalidating before the commit would let another
    process cache the old row again. A savepoint rollback drops this object
    only when it was registered inside that savepoint, and then every later
    write gathered here was inside it too (savepoints nest), so nothing is lost.
    """

    def __init__(self, backend: DatabaseBackend) -> None:
        self.backend = backend
        self.written: set[tuple[str, str]] = set()
        self.flushed: set[str] = set()
        self.flushed_all = False
        # Keys this transaction read from the database on a miss: cached after
        # commit, read again outside the transaction (see DatabaseBackend.load).
        self.fills: set[tuple[str, str]] = set()

    def covers(self, store: str, key: str) -> bool:
        """Tell whether this transaction changed `key` (written, or its store flushed)."""
        return self.flushed_all or store in self.flushed or (store, key) in self.written

    def __call__(self) -> None:
        self.backend.after_commit(self)


class DatabaseBackend(Backend):
    """Rows of KeyValEntry in one database, read through the keyedcache cache.

    A cached copy is tagged with its key's token, and counts only while the
    token is unchanged. A reader stores a new token *before* it reads the
    database, so a copy tagged with the current token was read after every
    commit that preceded that token. A write replaces the token once its
    transaction commits. So a reader that fetched the row before the commit
    and caches it afterwards tags it with an outdated token: nobody is served
    a value older than the last write that has returned.
    """

    persistent = True
    #: Inserts lost to a concurrent insert (then overwritten), before giving up.
    attempts = 5

    def __init__(self, url: str, using: str | None, timeout: Any) -> None:
        super().__init__(url)
        from keyedcache.contrib.keyval.models import KeyValEntry

        self.model = KeyValEntry
        # The database the routers pick for writes, for reads too: a lagging
        # replica would put old values into the cache.
        self.using: str = using or router.db_for_write(KeyValEntry)
        self.timeout = timeout
        self._roots: dict[str, str] = {}

    def _rows(self) -> Any:
        return self.model._default_manager.using(self.using)

    def _select(self, store: str, key: str) -> bytes | None:
        found = list(self._rows().filter(store=store, key=key).values_list("value", flat=True)[:1])
        return bytes(found[0]) if found else None

    # -- cache keys ------------------------------------------------------------

    def store_root(self, store: str) -> str:
        """The cache key below which every cached copy of `store` lives."""
        root = self._roots.get(store)
        if root is None:
            root = f"{READ_THROUGH_ROOT}{KEY_DELIM}{_quote(store)}"
            if len(self._roots) < 4096:
                self._roots[store] = root
        return root

    def cache_keys(self, store: str, key: str) -> tuple[str, str]:
        """The cache keys of `key`'s token and of its cached copy."""
        root = self.store_root(store)
        quoted = _quote(key)
        return f"{root}{KEY_DELIM}t{KEY_DELIM}{quoted}", f"{root}{KEY_DELIM}v{KEY_DELIM}{quoted}"

    # -- reads -------------------------------------------------------------------

    def load(self, store: str, key: str) -> bytes | None:
        if connections[self.using].in_atomic_block:
            return self._load_in_transaction(store, key)
        cache = default_cache()
        if not cache.enabled:
            return self._select(store, key)
        token_key, copy_key = self.cache_keys(store, key)
        # Token and copy in one round trip: the copy counts only if it carries
        # the token read with it, exactly as when read one after the other.
        found = cache.get_many([token_key, copy_key])
        token = found.get(token_key)
        if token is None:
            token = new_token()
            cache.set(token_key, token, self.timeout)
        else:
            copy = found.get(copy_key)
            if type(copy) is tuple and len(copy) == 2 and copy[0] == token:
                data: bytes | None = copy[1]
                return data
        # Autocommit: this query sees every commit made before the token was stored.
        data = self._select(store, key)
        cache.set(copy_key, (token, data), self.timeout)
        return data

    def _load_in_transaction(self, store: str, key: str) -> bytes | None:
        job = self._job(create=False)
        if job is not None and job.covers(store, key):
            # Changed by this transaction: only its own database view has the value.
            return self._select(store, key)
        cache = default_cache()
        if cache.enabled:
            token_key, copy_key = self.cache_keys(store, key)
            found = cache.get_many([token_key, copy_key])
            token = found.get(token_key)
            if token is not None:
                copy = found.get(copy_key)
                if type(copy) is tuple and len(copy) == 2 and copy[0] == token:
                    data: bytes | None = copy[1]
                    return data
        # A transaction may see an older snapshot (SQLite, REPEATABLE READ) or its
        # own raw writes: not for the cache. Cache the key after the commit.
        data = self._select(store, key)
        if cache.enabled:
            (job or self._changed()).fills.add((store, key))
        return data

    # -- writes --------------------------------------------------------------------

    def _job(self, *, create: bool) -> _AfterCommit | None:
        """This transaction's _AfterCommit (registering one when `create`); call inside atomic."""
        for entry in reversed(connections[self.using].run_on_commit):
            func = entry[1]
            if type(func) is _AfterCommit and func.backend is self:
                return func
        if not create:
            return None
        job = _AfterCommit(self)
        transaction.on_commit(job, using=self.using)
        return job

    def _changed(self) -> _AfterCommit:
        job = self._job(create=True)
        assert job is not None
        return job

    def after_commit(self, job: _AfterCommit) -> None:
        """Invalidate what `job`'s transaction changed, then cache what it read."""
        cache = default_cache()
        if job.flushed_all:
            cache.delete(READ_THROUGH_ROOT, children=True)
        else:
            for store in job.flushed:
                cache.delete(self.store_root(store), children=True)
            for store, key in job.written:
                if store not in job.flushed:
                    cache.set(self.cache_keys(store, key)[0], new_token(), self.timeout)
        for store, key in job.fills:
            try:
                self.load(store, key)
            except Exception as exc:  # the commit happened: never fail it over a cache fill
                log.warning("keyval: caching %r of %r after commit failed: %r", key, store, exc)

    def save(self, store: str, key: str, data: bytes) -> bool:
        rows = self._rows().filter(store=store, key=key)
        with transaction.atomic(using=self.using):
            self._changed().written.add((store, key))
            for attempt in range(self.attempts):
                if rows.update(value=data, updated=timezone.now()):
                    return False
                try:
                    with transaction.atomic(using=self.using):
                        self._rows().create(store=store, key=key, value=data)
                    return True
                except IntegrityError:
                    # A concurrent writer inserted the key first (and committed):
                    # overwrite its row. Another round only if it was deleted again.
                    if attempt == self.attempts - 1:
                        raise
        raise AssertionError("unreachable")  # pragma: no cover

    def remove(self, store: str, key: str) -> bool:
        with transaction.atomic(using=self.using):
            deleted = self._rows().filter(store=store, key=key).delete()[0]
            if deleted:
                self._changed().written.add((store, key))
        return bool(deleted)

    def take(self, store: str, key: str) -> bytes | None:
        rows = self._rows().filter(store=store, key=key)
        with transaction.atomic(using=self.using):
            # Lock the row with a write first: PostgreSQL and MySQL take its row
            # lock, SQLite its write lock, so a concurrent pop waits here and then
            # finds no row. (SELECT ... FOR UPDATE is a no-op on SQLite, whose
            # deferred transaction could then fail on the later DELETE.)
            if not rows.update(updated=timezone.now()):
                return None
            data = self._select(store, key)
            rows.delete()
            self._changed().written.add((store, key))
        return data

    def keys(self, store: str) -> list[str]:
        return sorted(self._rows().filter(store=store).values_list("key", flat=True))

    def items(self, store: str) -> list[tuple[str, bytes]]:
        rows = self._rows().filter(store=store).values_list("key", "value")
        return sorted((key, bytes(value)) for key, value in rows)

    def count(self, store: str) -> int:
        return int(self._rows().filter(store=store).count())

    def flush(self, store: str) -> int:
        with transaction.atomic(using=self.using):
            deleted = int(self._rows().filter(store=store).delete()[0])
            if deleted:
                self._changed().flushed.add(store)
        return deleted

    def flush_all(self) -> None:
        with transaction.atomic(using=self.using):
            self._rows().all().delete()
            self._changed().flushed_all = True


# -- cache:// -----------------------------------------------------------------------


class CacheBackend(Backend):
    """Each store is one entry (a dict) in a cache alias: not persistent.

    Writes take the store's lock (keyedcache's token lock, across processes), so
    concurrent writers lose nothing. The cache may evict a store at any time,
    and during a cache outage stores read as empty and writes are lost.
    """

    #: Seconds a dead writer can hold a store's lock; seconds a writer waits for it.
    lock_timeout = 10.0
    lock_wait = 30.0

    def __init__(self, url: str, alias: str | None) -> None:
        super().__init__(url)
        self.alias = alias
        self._cache: KeyedCache | None = None

    @property
    def cache(self) -> KeyedCache:
        """The KeyedCache the stores live in."""
        if self._cache is None:
            default = default_cache()
            if self.alias is None or self.alias == default.alias:
                self._cache = default
            else:
                self._cache = KeyedCache(self.alias, namespace=default.namespace)
        return self._cache

    def _key(self, store: str) -> str:
        return f"{CACHE_STORE_ROOT}{KEY_DELIM}{_quote(store)}"

    def _read(self, store: str) -> dict[str, bytes]:
        found = self.cache.get(self._key(store), None)
        return found if isinstance(found, dict) else {}

    @contextlib.contextmanager
    def _locked(self, store: str) -> Iterator[None]:
        cache, name, token = self.cache, self._key(store), new_token()
        deadline = time.monotonic() + self.lock_wait
        pause = 0.001
        while True:
            held = cache.lock_acquire(name, token, self.lock_timeout)
            if held is not False:
                break  # taken, or None: the cache does not answer (the write is lost anyway)
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"KeyVal store {store!r} on cache alias {cache.alias!r} stayed locked "
                    f"for {self.lock_wait:g}s"
                )
            time.sleep(pause)  # waiting for another writer to release the lock
            pause = min(pause * 2, 0.05)
        try:
            yield
        finally:
            if held:
                cache.lock_release(name, token)

    def _change(self, store: str, change: Callable[[dict[str, bytes]], T]) -> T:
        with self._locked(store):
            # From the backend itself: a request scope may hold an older copy.
            entry = self.cache.get_entry(self._key(store))
            data = dict(entry.value) if entry is not None and isinstance(entry.value, dict) else {}
            before = data.copy()
            result = change(data)
            if data != before:
                if data:
                    self.cache.set(self._key(store), data, None)
                else:
                    self.cache.delete(self._key(store))
            return result

    def load(self, store: str, key: str) -> bytes | None:
        return self._read(store).get(key)

    def save(self, store: str, key: str, data: bytes) -> bool:
        def put(values: dict[str, bytes]) -> bool:
            new = key not in values
            values[key] = data
            return new

        return self._change(store, put)

    def remove(self, store: str, key: str) -> bool:
        return self.take(store, key) is not None

    def take(self, store: str, key: str) -> bytes | None:
        return self._change(store, lambda values: values.pop(key, None))

    def keys(self, store: str) -> list[str]:
        return sorted(self._read(store))

    def items(self, store: str) -> list[tuple[str, bytes]]:
        return sorted(self._read(store).items())

    def count(self, store: str) -> int:
        return len(self._read(store))

    def flush(self, store: str) -> int:
        def clear(values: dict[str, bytes]) -> int:
            count = len(values)
            values.clear()
            return count

        return self._change(store, clear)

    def flush_all(self) -> None:
        self.cache.delete(CACHE_STORE_ROOT, children=True)


# -- locmem:// ----------------------------------------------------------------------

# Module-level: the data outlives backend objects, which are rebuilt on settings changes.
_LOCMEM: dict[str, dict[str, bytes]] = {}
_LOCMEM_LOCK = threading.Lock()


class LocmemBackend(Backend):
    """A dict in this process: every process has its own stores; gone when it exits."""

    def load(self, store: str, key: str) -> bytes | None:
        with _LOCMEM_LOCK:
            return _LOCMEM.get(store, {}).get(key)

    def save(self, store: str, key: str, data: bytes) -> bool:
        with _LOCMEM_LOCK:
            values = _LOCMEM.setdefault(store, {})
            new = key not in values
            values[key] = data
            return new

    def remove(self, store: str, key: str) -> bool:
        return self.take(store, key) is not None

    def take(self, store: str, key: str) -> bytes | None:
        with _LOCMEM_LOCK:
            return _LOCMEM.get(store, {}).pop(key, None)

    def keys(self, store: str) -> list[str]:
        with _LOCMEM_LOCK:
            return sorted(_LOCMEM.get(store, {}))

    def items(self, store: str) -> list[tuple[str, bytes]]:
        with _LOCMEM_LOCK:
            return sorted(_LOCMEM.get(store, {}).items())

    def count(self, store: str) -> int:
        with _LOCMEM_LOCK:
            return len(_LOCMEM.get(store, {}))

    def flush(self, store: str) -> int:
        with _LOCMEM_LOCK:
            return len(_LOCMEM.pop(store, {}))

    def flush_all(self) -> None:
        with _LOCMEM_LOCK:
            _LOCMEM.clear()


# -- URLs and settings ------------------------------------------------------------


def keyval_timeout() -> Any:
    """KEYEDCACHE_KEYVAL_TIMEOUT: seconds a cached copy lives (default: the alias's TIMEOUT)."""
    timeout = getattr(settings, TIMEOUT_SETTING, DEFAULT_TIMEOUT)
    if timeout is DEFAULT_TIMEOUT or timeout is None:
        return timeout
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise BackendURLError(
            f"{TIMEOUT_SETTING} is {timeout!r}; it must be a positive number of seconds, "
            "or None to keep cached copies until they are replaced.",
            check_id="keyedcache.E104",
        )
    return timeout


def _bad(
    url: object, problem: str, hint: str | None = None, check_id: str = "keyedcache.E101"
) -> BackendURLError:
    return BackendURLError(f"{SETTING} is {url!r}: {problem}", check_id, hint)


_FORMS_HINT = "Use 'db://', 'db://?using=<database alias>', 'cache://<cache alias>' or 'locmem://'."


def build_backend(url: object) -> Backend:
    """Build the backend `url` names; raise BackendURLError (ImproperlyConfigured) if it cannot."""
    if not isinstance(url, str) or "://" not in url:
        raise _bad(url, "not a store URL.", _FORMS_HINT)
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme not in SCHEMES:
        raise _bad(url, f"unknown scheme {scheme!r}.", _FORMS_HINT)
    if parts.path or parts.fragment:
        raise _bad(url, "a store URL has no path or fragment.", _FORMS_HINT)
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise _bad(url, f"cannot read the options {parts.query!r}.", _FORMS_HINT) from None
    options = dict(pairs)
    names = [name for name, _ in pairs]
    allowed = {"using"} if scheme == "db" else set()
    wrong = sorted({name for name in names if name not in allowed or names.count(name) > 1})
    if wrong:
        raise _bad(url, f"unknown or repeated option(s) {', '.join(wrong)}.", _FORMS_HINT)
    if scheme == "db":
        if parts.netloc:
            raise _bad(
                url,
                f"a table name ({parts.netloc!r}) cannot be chosen.",
                "db:// always uses keyval's migrated table, keyedcache_keyval_entry; store "
                "names keep stores apart. To put it in another database, use "
                "'db://?using=<database alias>'.",
            )
        using = options.get("using")
        if using is not None and using not in settings.DATABASES:
            raise _bad(
                url,
                f"{using!r} is not an alias in settings.DATABASES "
                f"({', '.join(sorted(settings.DATABASES))}).",
                check_id="keyedcache.E102",
            )
        return DatabaseBackend(url, using, keyval_timeout())
    if scheme == "cache":
        alias = parts.netloc or None
        if alias is not None and alias not in settings.CACHES:
            raise _bad(
                url,
                f"{alias!r} is not an alias in settings.CACHES "
                f"({', '.join(sorted(settings.CACHES))}).",
                check_id="keyedcache.E103",
            )
        return CacheBackend(url, alias)
    if parts.netloc:
        raise _bad(url, "locmem:// takes no location.", _FORMS_HINT)
    return LocmemBackend(url)


def configured_url() -> Any:
    """The store URL in settings (KEYEDCACHE_KEYVAL_BACKEND, default 'db://')."""
    return getattr(settings, SETTING, DEFAULT_URL)


_built: dict[str, Backend] = {}
_default: list[Backend | None] = [None]


def get_backend(url: str | None = None) -> Backend:
    """The backend for `url`, or for the configured URL when None (built once, then reused)."""
    if url is None:
        backend = _default[0]
        if backend is None:
            backend = _default[0] = get_backend(configured_url())
        return backend
    backend = _built.get(url)
    if backend is None:
        backend = _built.setdefault(url, build_backend(url))
    return backend


_RELEVANT = {"CACHES", "DATABASES", "DATABASE_ROUTERS"}


def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting in _RELEVANT or setting.startswith("KEYEDCACHE_"):
        _built.clear()
        _default[0] = None


setting_changed.connect(_reset, dispatch_uid="keyedcache.contrib.keyval.backends.reset")
