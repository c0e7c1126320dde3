"""Stamped entries on an async raw layer: StampedAdapter's steps, its pure helpers reused."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from keyedcache.backends.aio import AsyncAdapter
from keyedcache.backends.base import Timeout, Undecodable, in_batches
from keyedcache.backends.stamped import RECORD_TAG, new_generation
from keyedcache.entry import NO_VALUE
from keyedcache.tokens import Backoff

# Which tokens guard a key (gen_keys), what a record looks like (_record) and
# when it is valid (_open) are the sync adapter's own pure methods, called
# here: only the order of the round trips is written again, with `await`.
# See stamped.py for why each step is where it is.


class AsyncStampedAdapter(AsyncAdapter):
    """StampedAdapter's operations over async raw calls (subclasses provide them)."""

    native = True

    # -- the async raw layer (storage keys in, stored values out) -----------------

    async def raw_get_many(self, stored_keys: list[str]) -> dict[str, Any]:
        """{storage key: stored value} of the stored ones (Undecodable where it cannot decode)."""
        raise NotImplementedError

    async def raw_get_many_primary(self, stored_keys: list[str]) -> dict[str, Any]:
        """`raw_get_many` from the primary (tokens must read their own writes)."""
        return await self.raw_get_many(stored_keys)

    async def raw_set_many(self, values: dict[str, Any], timeout: Timeout) -> None:
        """Store every value under its storage key for `timeout`."""
        raise NotImplementedError

    async def raw_add(self, stored: str, value: Any, timeout: Timeout) -> bool:
        """Store `value` only if nothing is stored under `stored`; say whether it stored."""
        raise NotImplementedError

    async def raw_delete_many(self, stored_keys: list[str]) -> None:
        """Delete the given storage keys."""
        raise NotImplementedError

    async def raw_touch(self, stored: str, timeout: Timeout) -> None:
        """Give `stored` a new expiry without changing its value."""
        raise NotImplementedError

    async def scan(self, stored_prefix: str) -> list[str]:
        """The storage keys that start with `stored_prefix`."""
        raise NotImplementedError

    # -- reads ------------------------------------------------------------------

    async def get(self, key: str) -> Any:
        sync = self.sync
        stored = sync.storage_key(key)
        gens = sync.gen_keys(key)
        found = await self.raw_get_many([stored, *gens])
        return sync._open(found.get(stored, NO_VALUE), [found.get(g) for g in gens])

    async def get_many(self, key_list: list[str]) -> dict[str, Any]:
        sync = self.sync
        wanted: dict[str, None] = {}
        for key in key_list:
            wanted[sync.storage_key(key)] = None
            wanted.update(dict.fromkeys(sync.gen_keys(key)))
        found = await self.raw_get_many(list(wanted))
        result: dict[str, Any] = {}
        for key in key_list:
            opened = sync._open(
                found.get(sync.storage_key(key), NO_VALUE),
                [found.get(g) for g in sync.gen_keys(key)],
            )
            if opened is not NO_VALUE:
                result[key] = opened
        return result

    async def _primary_read(self, key: str) -> tuple[Any, list[Any]]:
        stored = self.sync.storage_key(key)
        gens = self.sync.gen_keys(key)
        found = await self.raw_get_many_primary([stored, *gens])
        return found.get(stored, NO_VALUE), [found.get(g) for g in gens]

    async def _slot(self, key: str) -> bool | None:
        record, tokens = await self._primary_read(key)
        if record is NO_VALUE:
            return None
        opened = self.sync._open(record, tokens)
        return opened is not NO_VALUE and type(opened) is not Undecodable

    async def read_basis(self, key: str) -> tuple[Any, tuple[Any, ...]]:
        record, tokens = await self._primary_read(key)
        opened = self.sync._open(record, tokens)
        if any(type(t) is not int for t in tokens):
            gens = self.sync.gen_keys(key)
            created = await self._tokens(gens, self.sync.own_token_ttl)
            tokens = [created[g] for g in gens]
        return opened, tuple(tokens)

    # -- tokens -----------------------------------------------------------------

    async def _tokens(self, gens: list[str], own_ttl: Timeout) -> dict[str, Any]:
        found = await self.raw_get_many_primary(gens)
        own = gens[-1]
        for gen in gens:
            if type(found.get(gen)) is not int:
                found[gen] = await self._create_token(gen, own_ttl if gen == own else None)
        return found

    async def _create_token(self, gen: str, ttl: Timeout) -> int:
        backoff = Backoff(0.002, 0.05, time.monotonic() + self.sync.token_wait)
        while True:
            token = new_generation()
            if await self.raw_add(gen, token, ttl):
                return token
            stored = (await self.raw_get_many_primary([gen])).get(gen)
            if type(stored) is int:
                return stored
            pause = backoff.next_pause()
            if pause is None:
                break
            await asyncio.sleep(pause)
        raise ConnectionError(f"could not create the generation token {gen!r}")

    # -- writes -----------------------------------------------------------------

    async def set(self, key: str, packed: tuple[Any, ...], timeout: Timeout) -> None:
        sync = self.sync
        gens = sync.gen_keys(key)
        above = gens[:-1]
        tokens = await self._tokens(above, None) if above else {}
        own = new_generation()
        stamp = (*(tokens[g] for g in above), own)
        record = sync._record(key, packed, stamp)
        await self.raw_set_many({sync.storage_key(key): record, gens[-1]: own}, timeout)

    async def set_many(self, packed_by_key: dict[str, tuple[Any, ...]], timeout: Timeout) -> None:
        sync = self.sync
        above = sorted({g for key in packed_by_key for g in sync.gen_keys(key)[:-1]})
        tokens = await self._tokens(above, None) if above else {}
        values: dict[str, Any] = {}
        for key, packed in packed_by_key.items():
            gens = sync.gen_keys(key)
            own = new_generation()
            stamp = (*(tokens[g] for g in gens[:-1]), own)
            values[sync.storage_key(key)] = sync._record(key, packed, stamp)
            values[gens[-1]] = own
        await self.raw_set_many(values, timeout)

    async def fill(
        self, key: str, packed: tuple[Any, ...], timeout: Timeout, basis: tuple[Any, ...]
    ) -> None:
        sync = self.sync
        record = sync._record(key, packed, basis)
        await self.raw_set_many({sync.storage_key(key): record}, timeout)
        await self.raw_touch(sync.gen_keys(key)[-1], timeout)

    async def add(self, key: str, packed: tuple[Any, ...], timeout: Timeout) -> bool:
        sync = self.sync
        stored = sync.storage_key(key)
        gens = sync.gen_keys(key)
        tokens = await self._tokens(gens, timeout)
        record = sync._record(key, packed, tuple(tokens[g] for g in gens))
        if await self.raw_add(stored, record, timeout):
            await self.raw_touch(gens[-1], timeout)
            return True
        slot = await self._slot(key)
        if slot is True:
            return False
        if slot is False:
            await self.raw_delete_many([stored])
        added = await self.raw_add(stored, record, timeout)
        if added:
            await self.raw_touch(gens[-1], timeout)
        return added

    # -- deletes ----------------------------------------------------------------

    async def delete(self, key: str) -> bool:
        existed = await self._slot(key) is True
        await self._invalidate({self.sync.own_gen_key(key)}, [self.sync.storage_key(key)])
        return existed

    async def delete_many(self, key_list: list[str]) -> int:
        present = await self.get_many(key_list)
        await self._invalidate(
            {self.sync.own_gen_key(key) for key in key_list},
            [self.sync.storage_key(key) for key in key_list],
        )
        return len(present)

    async def delete_subtree(self, key: str) -> list[str] | None:
        existed = await self.delete(key)
        await self.raw_set_many({self.sync.prefix_gen_key(key): new_generation()}, None)
        return [key] if existed else []

    async def delete_all(self) -> list[str] | None:
        await self.raw_set_many({self.sync.gen_namespace: new_generation()}, None)
        return None

    async def _invalidate(self, own_keys: Iterable[str], stored_keys: list[str]) -> None:
        await self.raw_delete_many(stored_keys)
        await self.raw_set_many({g: new_generation() for g in own_keys}, self.sync.own_token_ttl)

    # -- listing ----------------------------------------------------------------

    async def list_keys(self, stored_prefix: str) -> list[str]:
        names: list[str] = []
        for batch in in_batches(await self.scan(stored_prefix)):
            names.extend(await self._valid_names(batch))
        return names

    async def _valid_names(self, stored_keys: list[str]) -> list[str]:
        sync = self.sync
        records = await self.raw_get_many_primary(stored_keys)
        named: dict[str, Any] = {}
        doomed: list[str] = []
        for stored in stored_keys:
            record = records.get(stored, NO_VALUE)
            if type(record) is tuple and len(record) == 4 and record[0] == RECORD_TAG:
                named[stored] = record
            elif record is not NO_VALUE:
                doomed.append(stored)
        gens = list(dict.fromkeys(g for r in named.values() for g in sync.gen_keys(r[2])))
        tokens = await self.raw_get_many_primary(gens) if gens else {}
        valid: list[str] = []
        for stored, record in named.items():
            key = record[2]
            if record[1] == tuple(tokens.get(g) for g in sync.gen_keys(key)):
                valid.append(key)
            else:
                doomed.append(stored)
        await self.raw_delete_many(doomed)
        return valid
