"""Async Redis/Valkey: the asyncio client on one connection pool per event loop, no thread hop."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import threading
import weakref
from typing import Any

from keyedcache import keys
from keyedcache.backends.astamped import AsyncStampedAdapter
from keyedcache.backends.base import DECODE_ERRORS, Timeout, Undecodable
from keyedcache.backends.redis import _EXTEND, _RELEASE, RedisAdapter, _seconds
from keyedcache.backends.resp import LeanConnection, lean_settings
from keyedcache.entry import NO_VALUE

#: Client class of each supported sync client library -> (its asyncio module, client name).
_ASYNC_TWINS = {
    ("redis", "Redis"): ("redis.asyncio", "Redis"),
    ("valkey", "Valkey"): ("valkey.asyncio", "Valkey"),
}
#: The sync connection classes whose asyncio twin has the same name.
_CONNECTIONS = frozenset({"Connection", "SSLConnection", "UnixDomainSocketConnection"})
#: Loops whose clients are kept at most per adapter (closed loops are dropped first).
MAX_LOOPS = 16


def _twin_of(client: Any) -> tuple[Any, str] | None:
    """(asyncio module, client class name) for a plain sync redis/valkey client, else None."""
    cls = type(client)
    library = cls.__module__.split(".", 1)[0]
    found = _ASYNC_TWINS.get((library, cls.__name__))
    if found is None:
        return None
    pool = getattr(client, "connection_pool", None)
    connection_class = getattr(pool, "connection_class", None)
    if connection_class is None or connection_class.__name__ not in _CONNECTIONS:
        return None  # Sentinel-managed or custom connections: not ours to rebuild
    return importlib.import_module(found[0]), found[1]


def supports(sync: RedisAdapter) -> bool:
    """Tell whether the asyncio twin of `sync`'s clients can be built (plain pools only)."""
    try:
        return _twin_of(sync._client()) is not None and _twin_of(sync._reader()) is not None
    except Exception:
        return False


def _accepted(connection_class: Any) -> set[str]:
    names: set[str] = set()
    for cls in connection_class.__mro__:
        init = cls.__dict__.get("__init__")
        if init is not None:
            names.update(inspect.signature(init).parameters)
    return names


def async_client_like(client: Any) -> Any:
    """A new asyncio client with the connection settings of sync `client`'s pool.

    Plain settings (address, database, credentials, timeouts, TLS options) are
    carried over; objects bound to the sync library (its parser, retry and
    notification handlers) are left for the asyncio library to choose.
    """
    twin = _twin_of(client)
    if twin is None:
        raise TypeError(f"no asyncio twin for the client {client!r}")
    module, client_name = twin
    pool = client.connection_pool
    connection_class = getattr(module.connection, pool.connection_class.__name__)
    accepted = _accepted(connection_class)
    plain = (str, bytes, int, float, bool, type(None))
    kwargs = {
        name: value
        for name, value in pool.connection_kwargs.items()
        if name in accepted
        and not name.startswith(("orig_", "maint"))
        and (isinstance(value, plain) or name == "credential_provider")
    }
    async_pool = module.ConnectionPool(
        connection_class=connection_class, max_connections=pool.max_connections, **kwargs
    )
    return getattr(module, client_name)(connection_pool=async_pool)


class _Clients:
    """One event loop's clients: redis.asyncio for everything, lean connections for MGET."""

    __slots__ = ("lean_reader", "lean_writer", "reader", "writer")

    def __init__(self, writer_sync: Any, reader_sync: Any) -> None:
        same = reader_sync.connection_pool is writer_sync.connection_pool
        self.writer = async_client_like(writer_sync)
        self.reader = self.writer if same else async_client_like(reader_sync)
        self.lean_writer = _lean(writer_sync)
        self.lean_reader = self.lean_writer if same else _lean(reader_sync)

    async def aclose(self) -> None:
        """Close every connection of these clients."""
        for lean in {id(c): c for c in (self.lean_writer, self.lean_reader) if c}.values():
            lean.close()
        for client in {id(c): c for c in (self.writer, self.reader)}.values():
            await client.connection_pool.disconnect()


def _lean(client: Any) -> LeanConnection | None:
    settings = lean_settings(client.connection_pool)
    return None if settings is None else LeanConnection(settings)


class AsyncRedisAdapter(AsyncStampedAdapter):
    """The RedisAdapter's raw calls on redis.asyncio (or valkey.asyncio), on the event loop."""

    def __init__(self, sync: RedisAdapter) -> None:
        super().__init__(sync)
        self.sync: RedisAdapter = sync
        self.prefix: str = sync.made_prefix or ""
        # The sync adapter's hooks hand out the backend's own encoder and decoder.
        self._dumps = sync._dumps()
        self._loads = sync._loads()
        #: event loop -> its _Clients: a pool belongs to the loop that opened it.
        self._by_loop: weakref.WeakKeyDictionary[Any, _Clients] = weakref.WeakKeyDictionary()
        self._last: tuple[Any, _Clients] | None = None
        self._building = threading.Lock()

    # -- clients: one pair per event loop -------------------------------------------

    def _clients(self) -> _Clients:
        loop = asyncio.get_running_loop()
        last = self._last
        if last is not None and last[0] is loop:
            return last[1]
        with self._building:  # loops of several threads may build at once
            pair = self._by_loop.get(loop)
            if pair is None:
                for old in [old for old in self._by_loop if old.is_closed()]:
                    del self._by_loop[old]
                if len(self._by_loop) >= MAX_LOOPS:
                    self._by_loop.clear()
                pair = self._by_loop[loop] = _Clients(self.sync._client(), self.sync._reader())
        self._last = (loop, pair)
        return pair

    async def aclose(self) -> None:
        """Disconnect the pools of the running event loop (they reopen on the next call)."""
        loop = asyncio.get_running_loop()
        pair = self._by_loop.pop(loop, None)
        self._last = None
        if pair is not None:
            await pair.aclose()

    # -- the raw layer ---------------------------------------------------------------

    async def raw_get_many(self, stored_keys: list[str]) -> dict[str, Any]:
        clients = self._clients()
        return await self._mget(clients.reader, clients.lean_reader, stored_keys)

    async def raw_get_many_primary(self, stored_keys: list[str]) -> dict[str, Any]:
        clients = self._clients()
        return await self._mget(clients.writer, clients.lean_writer, stored_keys)

    async def _mget(self, client: Any, lean: Any, stored_keys: list[str]) -> dict[str, Any]:
        prefix = self.prefix
        made = [prefix + s for s in stored_keys]
        raws = await (lean.execute("MGET", *made) if lean is not None else client.mget(made))
        loads = self._loads
        found: dict[str, Any] = {}
        for stored, raw in zip(stored_keys, raws, strict=True):
            if raw is None:
                continue
            try:
                found[stored] = loads(raw)
            except DECODE_ERRORS as exc:
                found[stored] = Undecodable(exc)
        return found

    async def raw_set_many(self, values: dict[str, Any], timeout: Timeout) -> None:
        prefix = self.prefix
        seconds = _seconds(timeout)
        dumps = self._dumps
        # Every value encoded before anything is sent: nothing half-written.
        encoded = {prefix + stored: dumps(value) for stored, value in values.items()}
        pipeline = self._clients().writer.pipeline(transaction=False)
        for made, data in encoded.items():
            if seconds == 0:
                pipeline.delete(made)
            else:
                pipeline.set(made, data, ex=seconds)
        await pipeline.execute()

    async def raw_add(self, stored: str, value: Any, timeout: Timeout) -> bool:
        seconds = _seconds(timeout)
        if seconds == 0:
            return False
        made = self.prefix + stored
        return bool(await self._clients().writer.set(made, self._dumps(value), ex=seconds, nx=True))

    async def raw_delete_many(self, stored_keys: list[str]) -> None:
        client = self._clients().writer
        made = [self.prefix + k for k in stored_keys]
        batch = self.sync.delete_batch
        for start in range(0, len(made), batch):
            await client.unlink(*made[start : start + batch])

    async def raw_touch(self, stored: str, timeout: Timeout) -> None:
        seconds = _seconds(timeout)
        made = self.prefix + stored
        if seconds is None:
            await self._clients().writer.persist(made)
        else:
            await self._clients().writer.expire(made, seconds)

    async def scan(self, stored_prefix: str) -> list[str]:
        pattern = keys.glob_escape(self.prefix + stored_prefix) + "*"
        start = len(self.prefix)
        found: list[str] = []
        client = self._clients().writer
        async for made in client.scan_iter(match=pattern, count=self.sync.scan_count):
            found.append((made.decode() if isinstance(made, bytes) else made)[start:])
        return found

    # -- locks --------------------------------------------------------------------

    def _lock_key(self, key: str) -> str:
        return self.prefix + self.sync.lock_key(key)

    async def lock_acquire(self, key: str, token: str, timeout: float) -> bool:
        millis = max(int(timeout * 1000), 1)
        client = self._clients().writer
        return bool(await client.set(self._lock_key(key), token, nx=True, px=millis))

    async def lock_owner(self, key: str) -> str | None:
        owner = await self._clients().writer.get(self._lock_key(key))
        return owner.decode() if isinstance(owner, bytes) else owner

    async def lock_release(self, key: str, token: str) -> bool:
        return bool(await self._clients().writer.eval(_RELEASE, 1, self._lock_key(key), token))

    async def lock_extend(self, key: str, token: str, timeout: float) -> bool:
        millis = max(int(timeout * 1000), 1)
        client = self._clients().writer
        return bool(await client.eval(_EXTEND, 1, self._lock_key(key), token, millis))

    # -- ttl ----------------------------------------------------------------------

    async def native_ttl(self, key: str) -> Any:
        millis = await self._clients().writer.pttl(self.prefix + self.sync.storage_key(key))
        if millis == -2:
            return NO_VALUE
        return None if millis == -1 else millis / 1000

    async def native_expire(self, key: str, timeout: float | None) -> Any:
        made = self.prefix + self.sync.storage_key(key)
        own = self.prefix + self.sync.own_gen_key(key)
        client = self._clients().writer
        if timeout is None:
            await client.persist(own)
            await client.persist(made)
            return bool(await client.exists(made))
        if timeout <= 0:
            return bool(await client.delete(made))
        millis = max(int(timeout * 1000), 1)
        await client.pexpire(own, millis)
        return bool(await client.pexpire(made, millis))
