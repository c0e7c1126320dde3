"""Adapter for Django's LocMemCache: enumerates its dict, reads it without re-validating keys."""

from __future__ import annotations

import pickle
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from django.core.cache.backends.locmem import LocMemCache

from keyedcache.backends.base import DECODE_ERRORS, Undecodable
from keyedcache.backends.stamped import StampedAdapter
from keyedcache.entry import NO_VALUE


class LocMemAdapter(StampedAdapter):
    """Local-memory cache: one process, so "every process" is this one."""

    name = "locmem"
    enumerates = True

    def __init__(self, alias: str, namespace: str) -> None:
        super().__init__(alias, namespace)
        probe = self.cache
        assert isinstance(probe, LocMemCache)
        # LocMemCache instances of one LOCATION share these module-level objects,
        # so binding them once is right for every thread.
        self._data: OrderedDict[str, bytes] = probe._cache  # type: ignore[attr-defined]
        self._expiry: dict[str, float | None] = probe._expire_info  # type: ignore[attr-defined]
        self._lock: threading.Lock = probe._lock  # type: ignore[attr-defined]

    def raw_get_many(self, stored_keys: list[str]) -> dict[str, Any]:
        if self.made_prefix is None:
            return super().raw_get_many(stored_keys)
        # The steps of LocMemCache.get for every key under one hold of the lock,
        # minus make_key/validate_key: keyedcache storage keys are valid by construction.
        prefix = self.made_prefix
        data, expiry = self._data, self._expiry
        pickled: dict[str, bytes] = {}
        now = time.time()
        with self._lock:
            for stored in stored_keys:
                made = prefix + stored
                expires = expiry.get(made, -1)
                if expires is not None and expires <= now:
                    if expires != -1:
                        data.pop(made, None)
                        expiry.pop(made, None)
                    continue
                pickled[stored] = data[made]
                data.move_to_end(made, last=False)
        found: dict[str, Any] = {}
        for stored, value in pickled.items():
            try:
                found[stored] = pickle.loads(value)
            except DECODE_ERRORS as exc:
                found[stored] = Undecodable(exc)
        return found

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
        own = self.made_prefix + self.own_gen_key(key)
        now = time.time()
        with self._lock:
            expires = self._expiry.get(made, -1)
            if made not in self._data or (expires is not None and expires <= now):
                return False
            # The own token lives as long as its entry (else the entry turns invalid).
            for target in (made, own):
                if target in self._data:
                    self._expiry[target] = None if timeout is None else now + timeout
        return True
