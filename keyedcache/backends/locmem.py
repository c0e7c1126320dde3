"""Adapter for Django's LocMemCache: enumerates its dict, reads it without re-validating keys."""

from __future__ import annotations

import pickle
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Any

from django.core.cache.backends.locmem import LocMemCache

from keyedcache.backends.base import EnumeratingAdapter
from keyedcache.entry import NO_VALUE


class LocMemAdapter(EnumeratingAdapter):
    """Local-memory cache: one process, so "every process" is this one."""

    name = "locmem"

    def __init__(self, alias: str, namespace: str) -> None:
        super().__init__(alias, namespace)
        probe = self.cache
        assert isinstance(probe, LocMemCache)
        # LocMemCache instances of one LOCATION share these module-level objects,
        # so binding them once is right for every thread.
        self._data: OrderedDict[str, bytes] = probe._cache  # type: ignore[attr-defined]
        self._expiry: dict[str, float | None] = probe._expire_info  # type: ignore[attr-defined]
        self._lock: threading.Lock = probe._lock  # type: ignore[attr-defined]

    def get(self, key: str) -> Any:
        if self.made_prefix is None:
            return super().get(key)
        # Same steps as LocMemCache.get, minus make_key/validate_key: keyedcache
        # storage keys are valid by construction.
        made = self.made_prefix + self.storage_key(key)
        with self._lock:
            expires = self._expiry.get(made, -1)
            if expires is not None and expires <= time.time():
                if expires != -1:
                    self._data.pop(made, None)
                    self._expiry.pop(made, None)
                return NO_VALUE
            pickled = self._data[made]
            self._data.move_to_end(made, last=False)
        return pickle.loads(pickled)

    def get_many(self, key_list: Iterable[str]) -> dict[str, Any]:
        if self.made_prefix is None:
            return super().get_many(key_list)
        # The steps of get for every key under one hold of the lock (Django's
        # get_many would make, validate and lock each key on its own).
        prefix = self.made_prefix
        found: dict[str, bytes] = {}
        now = time.time()
        with self._lock:
            for key in key_list:
                made = prefix + self.storage_key(key)
                expires = self._expiry.get(made, -1)
                if expires is not None and expires <= now:
                    if expires != -1:
                        self._data.pop(made, None)
                        self._expiry.pop(made, None)
                    continue
                found[key] = self._data[made]
                self._data.move_to_end(made, last=False)
        return {key: pickle.loads(pickled) for key, pickled in found.items()}

    def scan(self, stored_prefix: str) -> Iterator[str]:
        prefix = self.made_prefix
        if prefix is None:
            return
        made = prefix + stored_prefix
        now = time.time()
        with self._lock:
            found = [
                k
                for k in self._data
                if k.startswith(made) and ((exp := self._expiry.get(k)) is None or exp > now)
            ]
        for k in found:
            yield k[len(prefix) :]

    # -- ttl: the expiry table is right here --------------------------------

    def native_ttl(self, key: str) -> Any:
        if self.made_prefix is None:
            return NotImplemented
        made = self.made_prefix + self.storage_key(key)
        now = time.time()
        with self._lock:
            if made not in self._data:
                return NO_VALUE
            expires = self._expiry.get(made)
        if expires is None:
            return None
        return NO_VALUE if expires <= now else expires - now

    def native_expire(self, key: str, timeout: float | None) -> Any:
        if self.made_prefix is None:
            return NotImplemented
        made = self.made_prefix + self.storage_key(key)
        now = time.time()
        with self._lock:
            expires = self._expiry.get(made, -1)
            if made not in self._data or (expires is not None and expires <= now):
                return False
            self._expiry[made] = None if timeout is None else now + timeout
        return True
