"""Adapter for Django's LocMemCache: enumerates its dict, reads it without re-validating keys."""

from __future__ import annotations

import pickle
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from django.core.cache.backends.locmem import LocMemCache

from keyedcache.backends.base import DECODE_ERRORS, Timeout, Undecodable
from keyedcache.backends.stamped import RECORD_TAG, StampedAdapter
from keyedcache.entry import NO_VALUE
from keyedcache.pickled import tuple_head

_Tables = tuple[dict[str, int], "OrderedDict[str, int]", list[int]]

#: The token tables of each LocMemCache storage (the identity of its shared dict)
#: and made-key prefix.
_TOKENS: dict[tuple[int, str | None], _Tables] = {}
_TOKENS_LOCK = threading.RLock()


def _token_tables(where: tuple[int, str | None]) -> _Tables:
    """(root and subtree tokens, own tokens, [epoch]) of one LocMemCache storage and
    key prefix; the epoch changes with every token, so readers may memoize stamps."""
    with _TOKENS_LOCK:
        found = _TOKENS.get(where)
        if found is None:
            found = _TOKENS[where] = ({}, OrderedDict(), [0])
        return found


class LocMemAdapter(StampedAdapter):
    """Local-memory cache: one process, so "every process" is this one."""

    name = "locmem"
    enumerates = True
    #: Own tokens kept per LOCATION; the oldest go first (their entries then miss).
    max_own_tokens = 100_000

    def __init__(self, alias: str, namespace: str) -> None:
        super().__init__(alias, namespace)
        probe = self.cache
        assert isinstance(probe, LocMemCache)
        # LocMemCache instances of one LOCATION share these module-level objects,
        # so binding them once is right for every thread.
        self._data: OrderedDict[str, bytes] = probe._cache  # type: ignore[attr-defined]
        self._expiry: dict[str, float | None] = probe._expire_info  # type: ignore[attr-defined]
        self._lock: threading.Lock = probe._lock  # type: ignore[attr-defined]
        # Per storage and made-key prefix: aliases sharing a LOCATION with another
        # KEY_PREFIX or VERSION keep their entries, and so their tokens, apart.
        self._gens, self._owns, self._epoch = _token_tables((id(self._data), self.made_prefix))
        #: key -> (epoch, its stamp): a hit reads no token while none changed.
        self._stamps: dict[str, tuple[int, tuple[Any, ...], str]] = {}
        self._tokens_lock = _TOKENS_LOCK
        self._own_head = f"{self.own_namespace}:"
        self._token_heads = (self.gen_namespace, self._own_head)

    # -- generation tokens: plain ints in this process ------------------------------
    # Local memory is this process's alone, so its tokens need not be pickled into
    # the LocMemCache: they live in dicts beside it (one pair per LOCATION), which
    # makes a hit one read of the cache instead of four. Root and subtree tokens
    # are few and kept; own tokens are bounded (oldest dropped first), and a
    # dropped one only turns its entry into a miss.

    def _is_token(self, stored: str) -> bool:
        return stored.startswith(self._token_heads)

    def _token_table(self, stored: str) -> dict[str, int]:
        return self._owns if stored.startswith(self._own_head) else self._gens

    def _record(self, key: str, packed: tuple[Any, ...], stamp: tuple[Any, ...]) -> tuple[Any, ...]:
        # LocMemCache pickles what it stores anyway, and its entries die with this
        # process (a deploy that renames a class starts with an empty cache): the
        # envelope goes in as it is, so a hit unpickles once, not twice.
        return (RECORD_TAG, stamp, key, packed)

    def get(self, key: str) -> Any:
        prefix = self.made_prefix
        if prefix is None:
            return super().get(key)
        memo = self._stamps.get(key)
        if memo is None or memo[0] != self._epoch[0]:
            memo = self._stamp_of(key, prefix)
        stamp = memo[1]
        made = memo[2]
        # LocMemCache.get's steps for one key, as in _read_cache.
        with self._lock:
            expires = self._expiry.get(made, -1)
            if expires is not None and expires <= time.time():
                if expires != -1:
                    self._data.pop(made, None)
                    self._expiry.pop(made, None)
                return NO_VALUE
            pickled = self._data[made]
            self._data.move_to_end(made, last=False)
        try:
            record = pickle.loads(pickled)
        except DECODE_ERRORS as exc:
            return Undecodable(exc)
        # The common case inline (a valid record of this adapter); the rest in _open.
        if type(record) is tuple and len(record) == 4 and record[1] == stamp:
            payload = record[3]
            if type(payload) is tuple and record[0] == RECORD_TAG:
                return payload
        return self._open(record, stamp)

    def _stamp_of(self, key: str, prefix: str) -> tuple[int, tuple[Any, ...], str]:
        """(epoch, stamp, made key) of `key`, memoized until a token changes."""
        epoch = self._epoch[0]  # read before the tokens: a change meanwhile shows
        gens = self.gen_keys(key)
        table = self._gens
        stamp = (*[table.get(g) for g in gens[:-1]], self._owns.get(gens[-1]))
        memo = (epoch, stamp, prefix + self.storage_key(key))
        if len(self._stamps) >= self.storage_key_memo_size:
            self._stamps.clear()
        self._stamps[key] = memo
        return memo

    def raw_get_many(self, stored_keys: list[str]) -> dict[str, Any]:
        if self.made_prefix is None:
            return super().raw_get_many(stored_keys)
        found: dict[str, Any] = {}
        entries: list[str] = []
        for stored in stored_keys:
            if self._is_token(stored):
                token = self._token_table(stored).get(stored)
                if token is not None:
                    found[stored] = token
            else:
                entries.append(stored)
        if entries:
            found.update(self._read_cache(entries))
        return found

    def raw_set_many(self, values: dict[str, Any], timeout: Timeout) -> None:
        if self.made_prefix is None:
            super().raw_set_many(values, timeout)
            return
        entries = {k: v for k, v in values.items() if not self._is_token(k)}
        # Entries first: a value that cannot be pickled fails here, before any
        # token changed, so nothing is half-written.
        if entries:
            super().raw_set_many(entries, timeout)
        with self._tokens_lock:
            for stored, value in values.items():
                if stored in entries:
                    continue
                if timeout is not None and timeout <= 0:
                    self._token_table(stored).pop(stored, None)
                    self._epoch[0] += 1
                else:
                    self._put_token(stored, value)

    def raw_add(self, stored: str, value: Any, timeout: Timeout) -> bool:
        if self.made_prefix is None or not self._is_token(stored):
            return super().raw_add(stored, value, timeout)
        with self._tokens_lock:
            if stored in self._token_table(stored):
                return False
            self._put_token(stored, value)
            return True

    def raw_delete_many(self, stored_keys: list[str]) -> None:
        if self.made_prefix is None:
            super().raw_delete_many(stored_keys)
            return
        with self._tokens_lock:
            for stored in stored_keys:
                if self._is_token(stored):
                    self._token_table(stored).pop(stored, None)
                    self._epoch[0] += 1
        super().raw_delete_many([k for k in stored_keys if not self._is_token(k)])

    def raw_touch(self, stored: str, timeout: Timeout) -> None:
        if self.made_prefix is None or not self._is_token(stored):
            super().raw_touch(stored, timeout)
        # Tokens here do not expire (own tokens are bounded in number instead).

    def _put_token(self, stored: str, value: Any) -> None:
        table = self._token_table(stored)
        table[stored] = value
        if table is self._owns:
            self._owns.move_to_end(stored)
            while len(self._owns) > self.max_own_tokens:
                self._owns.popitem(last=False)
        self._epoch[0] += 1

    # -- entries: the LocMemCache dict, read under its lock ---------------------------

    def _read_cache(self, stored_keys: list[str]) -> dict[str, Any]:
        # The steps of LocMemCache.get for every key under one hold of the lock,
        # minus make_key/validate_key: keyedcache storage keys are valid by construction.
        prefix = self.made_prefix or ""
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

    def raw_pickled(self, stored: str) -> bytes | None:
        if self.made_prefix is None:
            return None
        made = self.made_prefix + stored
        with self._lock:
            expires = self._expiry.get(made, -1)
            if made not in self._data or (expires is not None and expires <= time.time()):
                return None
            return self._data[made]

    def _valid_names(self, stored_keys: list[str]) -> Iterator[str]:
        # Each record's tag, stamp and key are read from the head of its pickle:
        # listings never unpickle values (see keyedcache.pickled).
        heads: dict[str, list[Any]] = {}
        rest: list[str] = []
        for stored in stored_keys:
            pickled = self.raw_pickled(stored)
            head = None if pickled is None else tuple_head(pickled, 3)
            if head and len(head) >= 3 and head[0] == RECORD_TAG and type(head[2]) is str:
                heads[stored] = head
            else:
                rest.append(stored)
        gens = list(dict.fromkeys(g for head in heads.values() for g in self.gen_keys(head[2])))
        tokens = self.raw_get_many_primary(gens) if gens else {}
        doomed = []
        for stored, head in heads.items():
            if head[1] == tuple(tokens.get(g) for g in self.gen_keys(head[2])):
                yield head[2]
            else:
                doomed.append(stored)
        self.raw_delete_many(doomed)
        if rest:
            yield from super()._valid_names(rest)

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
