"""The async adapter interface and its default: the sync adapter's calls, one thread hop each."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async

from keyedcache.backends.base import Timeout
from keyedcache.backends.stamped import StampedAdapter


class AsyncAdapter:
    """The async twin of a StampedAdapter's operations, as KeyedCache's a* methods use them.

    This default runs each operation of the sync adapter through asgiref's
    `sync_to_async` (thread sensitive, as Django's own async cache methods):
    one thread hop per call. It serves backends without an async client
    (database, file, memcached) and configurations the native adapters do
    not handle. Native subclasses (alocmem.py, aredis.py) make no hop.
    """

    #: True when calls run on the event loop itself, with no thread hop.
    native = False
    #: True when the sync operations may run right on the event loop (no I/O: locmem).
    inline = False

    def __init__(self, sync: StampedAdapter) -> None:
        self.sync = sync
        self.name = sync.name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} for {self.sync.name!r} alias={self.sync.alias!r}>"

    async def _hop(self, method: str, *args: Any) -> Any:
        return await sync_to_async(getattr(self.sync, method))(*args)

    # -- reads ------------------------------------------------------------------

    async def get(self, key: str) -> Any:
        """The packed envelope stored for `key`, NO_VALUE, or Undecodable."""
        return await self._hop("get", key)

    async def get_many(self, key_list: list[str]) -> dict[str, Any]:
        """{key: packed envelope (or Undecodable)} for the keys with a valid record."""
        return await self._hop("get_many", key_list)  # type: ignore[no-any-return]

    async def read_basis(self, key: str) -> tuple[Any, tuple[Any, ...]]:
        """The stored envelope (stale too) and the stamp a fill stores its result under."""
        return await self._hop("read_basis", key)  # type: ignore[no-any-return]

    # -- writes -----------------------------------------------------------------

    async def set(self, key: str, packed: tuple[Any, ...], timeout: Timeout) -> None:
        """Store `packed` as the current value of `key` (racing fills lose)."""
        await self._hop("set", key, packed, timeout)

    async def set_many(self, packed_by_key: dict[str, tuple[Any, ...]], timeout: Timeout) -> None:
        """Store several values at once, each as the current one."""
        await self._hop("set_many", packed_by_key, timeout)

    async def fill(
        self, key: str, packed: tuple[Any, ...], timeout: Timeout, basis: tuple[Any, ...]
    ) -> None:
        """Store a computed value under the stamp read before computing it."""
        await self._hop("fill", key, packed, timeout, basis)

    async def add(self, key: str, packed: tuple[Any, ...], timeout: Timeout) -> bool:
        """Store only when no valid entry is stored under `key`; say whether it stored."""
        return bool(await self._hop("add", key, packed, timeout))

    # -- deletes ----------------------------------------------------------------

    async def delete(self, key: str) -> bool:
        """Delete `key` alone; say whether a valid entry was there."""
        return bool(await self._hop("delete", key))

    async def delete_many(self, key_list: list[str]) -> int:
        """Delete the given keys; return how many held a valid entry."""
        return int(await self._hop("delete_many", key_list))

    async def delete_subtree(self, key: str) -> list[str] | None:
        """Delete `key` and every key below it (see StampedAdapter.delete_subtree)."""
        return await self._hop("delete_subtree", key)  # type: ignore[no-any-return]

    async def delete_all(self) -> list[str] | None:
        """Delete every entry of the namespace."""
        return await self._hop("delete_all")  # type: ignore[no-any-return]

    # -- listing, expiry --------------------------------------------------------

    async def list_keys(self, stored_prefix: str) -> list[str]:
        """The logical keys of valid entries under `stored_prefix` (one hop for the listing)."""
        return await sync_to_async(_listed)(self.sync, stored_prefix)

    async def native_ttl(self, key: str) -> Any:
        """Seconds left (None: never, NO_VALUE: absent), or NotImplemented (see Adapter)."""
        return await self._hop("native_ttl", key)

    async def native_expire(self, key: str, timeout: float | None) -> Any:
        """Change the expiry natively, or NotImplemented (see Adapter)."""
        return await self._hop("native_expire", key, timeout)

    # -- locks ------------------------------------------------------------------

    async def lock_acquire(self, key: str, token: str, timeout: float) -> bool:
        """Take the lock named `key` for `timeout` seconds if nobody holds it."""
        return bool(await self._hop("lock_acquire", key, token, timeout))

    async def lock_owner(self, key: str) -> str | None:
        """The token holding the lock, or None."""
        return await self._hop("lock_owner", key)  # type: ignore[no-any-return]

    async def lock_release(self, key: str, token: str) -> bool:
        """Release the lock if `token` holds it; say whether it did."""
        return bool(await self._hop("lock_release", key, token))

    async def lock_extend(self, key: str, token: str, timeout: float) -> bool:
        """Give the lock held by `token` `timeout` more seconds; say whether it did."""
        return bool(await self._hop("lock_extend", key, token, timeout))


def _listed(sync: StampedAdapter, stored_prefix: str) -> list[str]:
    return list(sync.list_keys(stored_prefix))
