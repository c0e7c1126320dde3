"""Entries stamped with generation tokens: O(1) subtree deletes; fills lose to invalidations."""

from __future__ import annotations

import os
import pickle
import time
from collections.abc import Iterable, Iterator
from typing import Any

from keyedcache import keys
from keyedcache.backends.base import DECODE_ERRORS, Adapter, Timeout, Undecodable, in_batches
from keyedcache.entry import NO_VALUE
from keyedcache.tokens import Backoff

# How it works. Every key has tokens guarding it: the root token of the
# namespace, a "subtree" token for each proper ancestor prefix, and an "own"
# token of the key itself. An entry is stored as a record stamped with the
# values those tokens had, and it is valid only while they all still have them.
#
# - delete(k) replaces k's own token; a children delete of k also replaces k's
#   subtree token; delete-all replaces the root token. Each is one write, O(1)
#   whatever else the backend holds; nothing is scanned. Replacing is a plain
#   set of a random value: no atomic increment is needed, on any backend.
# - A read fetches the record and its tokens in one round trip (get_many).
# - A plain set (authoritative) writes a new own token with the record, so a
#   slower fill racing it loses. A fill (a memoized body, find_by_*) stamps its
#   record with the tokens it read *before* computing: if anything above or at
#   the key was invalidated meanwhile, the record is born invalid.
# - Invalid records are never served. They are reclaimed by their TTL, by the
#   next write of the key, and by listings (which delete the ones they meet).
# - The value is pickled inside the record, so a value whose class is gone
#   spoils only itself: the stamp and the key stay readable, listings and
#   deletes keep working, and readers see a miss.

#: First item of every record; a stored value of another shape is not an entry.
RECORD_TAG = "kc2"
#: Token of entries that never need a subtree delete (stats records; pin_generations).
PINNED_TOKEN = 1


def new_generation() -> int:
    """A random generation token: a positive 62-bit int (stored raw by Redis and memcached)."""
    return int.from_bytes(os.urandom(8), "big") >> 2


class StampedAdapter(Adapter):
    """Stores keyedcache entries as stamped records; any Django cache can hold them."""

    #: Seconds an own token created for a key that is being filled lives at most
    #: (a fill then gives it its entry's expiry); only bounds memory, never correctness.
    own_token_ttl = 86400.0
    #: Seconds a writer keeps trying to create a missing token on a busy backend.
    token_wait = 1.0

    def __init__(self, alias: str, namespace: str) -> None:
        super().__init__(alias, namespace)
        self.gen_namespace = f"{namespace}-gen"
        self.own_namespace = f"{namespace}-own"
        self._gen_keys: dict[str, list[str]] = {}
        self._pinned: set[str] = set()

    def key_to_keep(self, key: str) -> str | None:
        """Nothing to keep in the envelope: every record names its key."""
        return None

    # -- tokens ---------------------------------------------------------------

    def gen_keys(self, key: str) -> list[str]:
        """Storage keys of the tokens guarding `key`: root, each proper ancestor, its own."""
        found = self._gen_keys.get(key)
        if found is None:
            # Every '::' boundary, overlapping ones too: 'a:::x' is below both
            # 'a' and 'a:', exactly as a prefix listing sees it.
            found = [
                self.gen_namespace,
                *(
                    self.prefix_gen_key(key[:cut])
                    for cut in range(len(key))
                    if key.startswith(keys.KEY_DELIM, cut)
                ),
                self.own_gen_key(key),
            ]
            if len(self._gen_keys) >= self.storage_key_memo_size:
                self._gen_keys.clear()
            self._gen_keys[key] = found
        return found

    def prefix_gen_key(self, prefix: str) -> str:
        """Storage key of the token that guards every key below `prefix`."""
        return keys.storage_key(prefix, self.gen_namespace, self.budget)

    def own_gen_key(self, key: str) -> str:
        """Storage key of the token of `key` itself."""
        return keys.storage_key(key, self.own_namespace, self.budget)

    def _tokens(self, gens: list[str], own_ttl: Timeout) -> dict[str, Any]:
        """The current values of `gens`, creating the missing ones (the last with `own_ttl`)."""
        found = self.raw_get_many_primary(gens)
        own = gens[-1]
        for gen in gens:
            if type(found.get(gen)) is not int:
                found[gen] = self._create_token(gen, own_ttl if gen == own else None)
        return found

    def _create_token(self, gen: str, ttl: Timeout) -> int:
        """Create the missing token `gen`, or read the one a racing writer created."""
        backoff = Backoff(0.002, 0.05, time.monotonic() + self.token_wait)
        while True:
            token = new_generation()
            # add: two writers creating the same token agree on one value.
            if self.raw_add(gen, token, ttl):
                return token
            stored = self.raw_get_many_primary([gen]).get(gen)
            if type(stored) is int:
                return stored
            # Neither ours nor another's: the add failed without saying so (the
            # database cache turns a busy database into False). Try again shortly.
            if not backoff.sleep():
                break
        # A stamp with a token nobody stored would make entries that can never be
        # read, and break `add`: report it as the failure it is.
        raise ConnectionError(f"could not create the generation token {gen!r}")

    def pin_generations(self, key: str) -> None:
        """Give the tokens guarding `key` one fixed value, where none is set yet.

        For entries that need no deletes of their own (stats records, written
        by every process): a fixed token, written by all alike, makes the race
        of two processes creating a token at once (non-atomic `add` of the
        file-based cache) harmless.
        """
        for gen in self.gen_keys(key):
            self.raw_add(gen, PINNED_TOKEN, None)

    def set_pinned(self, key: str, packed: tuple[Any, ...], timeout: Timeout) -> None:
        """Store `packed` under pinned tokens: for entries rewritten often by their one
        writer and never invalidated one by one (stats records). One read, one write
        (the tokens are pinned once per process and key)."""
        if key not in self._pinned:
            self.pin_generations(key)
            self._pinned.add(key)
        gens = self.gen_keys(key)
        tokens = self.raw_get_many_primary(gens)
        stamp = tuple(tokens.get(g, PINNED_TOKEN) for g in gens)
        self.raw_set_many({self.storage_key(key): self._record(key, packed, stamp)}, timeout)

    # -- records --------------------------------------------------------------

    def _record(self, key: str, packed: tuple[Any, ...], stamp: tuple[Any, ...]) -> tuple[Any, ...]:
        payload = pickle.dumps(packed, pickle.HIGHEST_PROTOCOL)
        return (RECORD_TAG, stamp, key, payload)

    @staticmethod
    def _open(record: Any, tokens: list[Any] | tuple[Any, ...]) -> Any:
        """The packed envelope in `record` if its stamp matches `tokens`; else NO_VALUE.

        Undecodable when the stamp matches but the value cannot be decoded.
        """
        if type(record) is not tuple or len(record) != 4 or record[0] != RECORD_TAG:
            return record if type(record) is Undecodable else NO_VALUE
        if record[1] != tuple(tokens):
            return NO_VALUE
        payload = record[3]
        if type(payload) is not bytes:
            return payload  # kept unpickled (LocMemAdapter._record)
        try:
            return pickle.loads(payload)
        except DECODE_ERRORS as exc:
            return Undecodable(exc)

    # -- reads ----------------------------------------------------------------

    def get(self, key: str) -> Any:
        """The packed envelope stored for `key`, NO_VALUE, or Undecodable."""
        stored = self.storage_key(key)
        gens = self.gen_keys(key)
        found = self.raw_get_many([stored, *gens])
        return self._open(found.get(stored, NO_VALUE), [found.get(g) for g in gens])

    def _slot(self, key: str) -> Any:
        """What `key`'s slot holds, from the primary (not counted as a read of it):
        True for a valid record, False for an invalidated one, None for nothing."""
        record, tokens = self._primary_read(key)
        if record is NO_VALUE:
            return None
        # An entry that cannot be decoded is a miss for readers: like an
        # invalidated one, its slot may be taken.
        opened = self._open(record, tokens)
        return opened is not NO_VALUE and type(opened) is not Undecodable

    def _primary_read(self, key: str) -> tuple[Any, list[Any]]:
        """`key`'s stored record (or NO_VALUE) and its tokens, in one read of the primary."""
        stored = self.storage_key(key)
        gens = self.gen_keys(key)
        found = self.raw_get_many_primary([stored, *gens])
        return found.get(stored, NO_VALUE), [found.get(g) for g in gens]

    def _holds(self, key: str) -> bool:
        """Whether a valid record is stored for `key`."""
        return self._slot(key) is True

    def get_many(self, key_list: Iterable[str]) -> dict[str, Any]:
        """{key: packed envelope (or Undecodable)} for the keys with a valid record."""
        key_list = list(key_list)
        wanted: dict[str, None] = {}
        for key in key_list:
            wanted[self.storage_key(key)] = None
            wanted.update(dict.fromkeys(self.gen_keys(key)))
        found = self.raw_get_many(list(wanted))
        result: dict[str, Any] = {}
        for key in key_list:
            opened = self._open(
                found.get(self.storage_key(key), NO_VALUE),
                [found.get(g) for g in self.gen_keys(key)],
            )
            if opened is not NO_VALUE:
                result[key] = opened
        return result

    def read_basis(self, key: str) -> tuple[Any, tuple[Any, ...]]:
        """What a fill needs before it computes: the stored envelope (stale ones too,
        or NO_VALUE) and the stamp to write its result under (missing tokens created)."""
        record, tokens = self._primary_read(key)
        opened = self._open(record, tokens)
        if any(type(t) is not int for t in tokens):
            gens = self.gen_keys(key)
            created = self._tokens(gens, self.own_token_ttl)
            tokens = [created[g] for g in gens]
        return opened, tuple(tokens)

    # -- writes ---------------------------------------------------------------

    def set(self, key: str, packed: tuple[Any, ...], timeout: Timeout) -> None:
        """Store `packed` as the current value: a new own token, so racing fills lose."""
        gens = self.gen_keys(key)
        above = gens[:-1]
        tokens = self._tokens(above, None) if above else {}
        own = new_generation()
        stamp = (*(tokens[g] for g in above), own)
        self.raw_set_many(
            {self.storage_key(key): self._record(key, packed, stamp), gens[-1]: own}, timeout
        )

    def set_many(self, packed_by_key: dict[str, tuple[Any, ...]], timeout: Timeout) -> None:
        """Store several values at once, each with a new own token."""
        above = sorted({g for key in packed_by_key for g in self.gen_keys(key)[:-1]})
        tokens = self._tokens(above, None) if above else {}
        values: dict[str, Any] = {}
        for key, packed in packed_by_key.items():
            gens = self.gen_keys(key)
            own = new_generation()
            stamp = (*(tokens[g] for g in gens[:-1]), own)
            values[self.storage_key(key)] = self._record(key, packed, stamp)
            values[gens[-1]] = own
        self.raw_set_many(values, timeout)

    def fill(
        self, key: str, packed: tuple[Any, ...], timeout: Timeout, basis: tuple[Any, ...]
    ) -> None:
        """Store a computed value under the stamp read before computing it (`read_basis`).

        If the key, an ancestor or the namespace was invalidated since, the
        record is born invalid: a reader sees a miss, never the old result.
        """
        stored = self.storage_key(key)
        self.raw_set_many({stored: self._record(key, packed, basis)}, timeout)
        # The own token must live as long as the entry (it was created with a
        # bounded TTL); touch keeps its value, so an invalidation is never undone.
        self.raw_touch(self.gen_keys(key)[-1], timeout)

    def add(self, key: str, packed: tuple[Any, ...], timeout: Timeout) -> bool:
        """Store only when no valid entry is stored under `key`; say whether it stored."""
        stored = self.storage_key(key)
        gens = self.gen_keys(key)
        tokens = self._tokens(gens, timeout)
        record = self._record(key, packed, tuple(tokens[g] for g in gens))
        if self.raw_add(stored, record, timeout):
            self.raw_touch(gens[-1], timeout)
            return True
        slot = self._slot(key)
        if slot is True:
            return False
        if slot is False:
            # An invalidated record still occupies the slot: free it. (Only then:
            # deleting an empty slot could delete the record a racing add just made.)
            self.raw_delete_many([stored])
        added = self.raw_add(stored, record, timeout)
        if added:
            self.raw_touch(gens[-1], timeout)
        return added

    # -- deletes: O(1), whatever else is stored -----------------------------------

    def delete(self, key: str) -> bool:
        """Delete `key` alone; say whether a valid entry was there."""
        existed = self._holds(key)
        self._invalidate({self.own_gen_key(key)}, [self.storage_key(key)])
        return existed

    def delete_many(self, key_list: list[str]) -> int:
        """Delete the given keys; return how many of them held a valid entry."""
        present = self.get_many(key_list)
        self._invalidate(
            {self.own_gen_key(key) for key in key_list},
            [self.storage_key(key) for key in key_list],
        )
        return len(present)

    def delete_subtree(self, key: str) -> list[str] | None:
        """Delete `key` and everything below it: two new tokens, one delete; returns [key]
        if it held a valid entry (the keys below are not listed: that would need a scan)."""
        existed = self.delete(key)
        self.raw_set_many({self.prefix_gen_key(key): new_generation()}, None)
        return [key] if existed else []

    def delete_all(self) -> list[str] | None:
        """Delete every entry of the namespace: one new root token."""
        self.raw_set_many({self.gen_namespace: new_generation()}, None)
        return None

    def _invalidate(self, own_keys: Iterable[str], stored_keys: list[str]) -> None:
        # The records first, then new own tokens: if the backend fails on the way,
        # either nothing happened or the key itself is gone, never a delete that
        # reports failure but hid the key. (A fill that writes between the two
        # calls is born invalid once the tokens change, a round trip later.)
        self.raw_delete_many(stored_keys)
        self.raw_set_many({g: new_generation() for g in own_keys}, self.own_token_ttl)

    # -- listing: the backend's keys, then the stamps ----------------------------

    def list_keys(self, stored_prefix: str) -> Iterator[str]:
        """Yield the logical keys of valid entries whose storage key starts with `stored_prefix`.

        Invalid and undecodable records met on the way are deleted (reclaimed).
        """
        for batch in in_batches(self.scan(stored_prefix)):
            yield from self._valid_names(batch)

    def _valid_names(self, stored_keys: list[str]) -> Iterator[str]:
        # From the primary: a lagging replica could make a listing delete a
        # record it sees as invalid that is valid by now.
        records = self.raw_get_many_primary(stored_keys)
        named: dict[str, Any] = {}
        doomed: list[str] = []
        for stored in stored_keys:
            record = records.get(stored, NO_VALUE)
            if type(record) is tuple and len(record) == 4 and record[0] == RECORD_TAG:
                named[stored] = record
            elif record is not NO_VALUE:
                doomed.append(stored)  # undecodable, or not an entry of this layout
        gens = list(dict.fromkeys(g for r in named.values() for g in self.gen_keys(r[2])))
        tokens = self.raw_get_many_primary(gens) if gens else {}
        for stored, record in named.items():
            key = record[2]
            if record[1] == tuple(tokens.get(g) for g in self.gen_keys(key)):
                yield key
            else:
                doomed.append(stored)
        self.raw_delete_many(doomed)
