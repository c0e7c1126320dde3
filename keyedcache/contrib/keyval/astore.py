"""KeyVal's async twins (aget, aset, ...): each runs its sync operation in one thread hop."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async

# keyval's default store keeps its values in the database, which Django only
# reaches from synchronous code: each async twin runs the sync operation in one
# thread-sensitive hop (as Django's own async ORM methods do), so a store
# behaves the same whichever way it is called.


class AsyncKeyValMixin:
    """The async twins of KeyVal's operations (mixed into KeyVal; see store.py)."""

    __slots__ = ()

    async def _hop(self, method: str, *args: Any) -> Any:
        return await sync_to_async(getattr(self, method))(*args)

    async def aset(self, key: str, value: Any) -> bool:
        """The async twin of `set`: True if the key was new."""
        return bool(await self._hop("set", key, value))

    async def aget(self, key: str) -> Any:
        """The async twin of `get`: the value, or KeyError."""
        return await self._hop("get", key)

    async def aget_default(self, key: str, default: Any = None) -> Any:
        """The async twin of `get_default`."""
        return await self._hop("get_default", key, default)

    async def aexists(self, key: str) -> bool:
        """The async twin of `exists`."""
        return bool(await self._hop("exists", key))

    async def apop(self, key: str) -> Any:
        """The async twin of `pop`: the value, deleted; KeyError when there is none."""
        return await self._hop("pop", key)

    async def apop_default(self, key: str, default: Any = None) -> Any:
        """The async twin of `pop_default`."""
        return await self._hop("pop_default", key, default)

    async def adelete(self, key: str, ignore_keyerror: bool = False) -> bool:
        """The async twin of `delete`: whether the key existed (KeyError unless ignored)."""
        return bool(await self._hop("delete", key, ignore_keyerror))

    async def aflush(self) -> int:
        """The async twin of `flush`: how many keys were deleted."""
        return int(await self._hop("flush"))

    async def akeys(self) -> list[str]:
        """The async twin of `keys`: sorted."""
        return await self._hop("keys")  # type: ignore[no-any-return]

    async def aitems(self) -> list[tuple[str, Any]]:
        """The async twin of `items`: (key, value) pairs sorted by key."""
        return await self._hop("items")  # type: ignore[no-any-return]

    async def alen(self) -> int:
        """The async twin of `len(store)`."""
        return int(await self._hop("__len__"))
