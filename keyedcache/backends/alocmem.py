"""Async locmem: the sync adapter's in-process calls made right on the event loop, no thread."""

from __future__ import annotations

from typing import Any

from keyedcache.backends.aio import AsyncAdapter
from keyedcache.backends.base import Timeout
from keyedcache.backends.locmem import LocMemAdapter


class AsyncLocMemAdapter(AsyncAdapter):
    """Local memory needs no I/O: each call is the sync adapter's, run in the loop's thread.

    The only wait is LocMemCache's own lock, held for a dict lookup; a thread
    hop would cost a hundred times more than the call itself.
    """

    native = True
    #: KeyedCache may call its sync methods right on the event loop (no I/O at all).
    inline = True

    def __init__(self, sync: LocMemAdapter) -> None:
        super().__init__(sync)
        self.sync: LocMemAdapter = sync

    async def get(self, key: str) -> Any:
        return self.sync.get(key)

    async def get_many(self, key_list: list[str]) -> dict[str, Any]:
        return self.sync.get_many(key_list)

    async def read_basis(self, key: str) -> tuple[Any, tuple[Any, ...]]:
        return self.sync.read_basis(key)

    async def set(self, key: str, packed: tuple[Any, ...], timeout: Timeout) -> None:
        self.sync.set(key, packed, timeout)

    async def set_many(self, packed_by_key: dict[str, tuple[Any, ...]], timeout: Timeout) -> None:
        self.sync.set_many(packed_by_key, timeout)

    async def fill(
        self, key: str, packed: tuple[Any, ...], timeout: Timeout, basis: tuple[Any, ...]
    ) -> None:
        self.sync.fill(key, packed, timeout, basis)

    async def add(self, key: str, packed: tuple[Any, ...], timeout: Timeout) -> bool:
        return self.sync.add(key, packed, timeout)

    async def delete(self, key: str) -> bool:
        return self.sync.delete(key)

    async def delete_many(self, key_list: list[str]) -> int:
        return self.sync.delete_many(key_list)

    async def delete_subtree(self, key: str) -> list[str] | None:
        return self.sync.delete_subtree(key)

    async def delete_all(self) -> list[str] | None:
        return self.sync.delete_all()

    async def list_keys(self, stored_prefix: str) -> list[str]:
        return list(self.sync.list_keys(stored_prefix))

    async def native_ttl(self, key: str) -> Any:
        return self.sync.native_ttl(key)

    async def native_expire(self, key: str, timeout: float | None) -> Any:
        return self.sync.native_expire(key, timeout)

    async def lock_acquire(self, key: str, token: str, timeout: float) -> bool:
        return self.sync.lock_acquire(key, token, timeout)

    async def lock_owner(self, key: str) -> str | None:
        return self.sync.lock_owner(key)

    async def lock_release(self, key: str, token: str) -> bool:
        return self.sync.lock_release(key, token)

    async def lock_extend(self, key: str, token: str, timeout: float) -> bool:
        return self.sync.lock_extend(key, token, timeout)
