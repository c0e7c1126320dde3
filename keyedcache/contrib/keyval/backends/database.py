"""db://: KeyVal stores as rows of KeyValEntry, read through the keyedcache cache."""

from __future__ import annotations

import logging
from typing import Any

from django.db import IntegrityError, connections, router, transaction
from django.utils import timezone

from keyedcache.contrib.keyval.backends.base import Backend, quote_part
from keyedcache.keys import KEY_DELIM
from keyedcache.registry import default_cache
from keyedcache.tokens import new_token

log = logging.getLogger("keyedcache.keyval")

#: First key part of the cached copies of database stores (reserved in keyedcache's key space).
READ_THROUGH_ROOT = "keyval"


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
        # Imported here, not at the top: the app package imports this module
        # while Django is still populating the app registry, before models load.
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
            root = f"{READ_THROUGH_ROOT}{KEY_DELIM}{quote_part(store)}"
            if len(self._roots) < 4096:
                self._roots[store] = root
        return root

    def cache_keys(self, store: str, key: str) -> tuple[str, str]:
        """The cache keys of `key`'s token and of its cached copy."""
        root = self.store_root(store)
        quoted = quote_part(key)
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
