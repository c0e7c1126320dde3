"""A lean pipelined RESP connection per event loop, for the hot read path (MGET) of async Redis."""

from __future__ import annotations

import asyncio
import collections
from typing import Any

try:  # hiredis parses replies and packs commands in C; without it, no fast path
    import hiredis
except ImportError:  # pragma: no cover - the [redis] extra installs it
    hiredis = None  # type: ignore[assignment]

# Why: redis.asyncio takes a connection from its pool (under an asyncio lock)
# for every command and runs some 250 Python calls around one round trip, so an
# awaited hit cost about twice a sync one. Here every command of one event loop
# is written to one socket as it comes and its reply resolves a future, in
# order: concurrent tasks pipeline for free and a hit is a few dozen calls.
# Only what a hit needs goes this way (MGET); everything else stays on
# redis.asyncio. Connection settings this connection does not speak (TLS, unix
# sockets, credential providers, RESP3, decoded responses) keep redis.asyncio.

#: Connection settings a lean connection can honour (others make it unsupported).
_UNDERSTOOD = frozenset(
    {
        "host",
        "port",
        "db",
        "username",
        "password",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "socket_keepalive_options",
        "retry_on_timeout",
        "retry_on_error",
        "retry",
        "encoding",
        "encoding_errors",
        "decode_responses",
        "health_check_interval",
        "client_name",
        "lib_name",
        "lib_version",
        "driver_info",
        "protocol",
        "parser_class",
        "socket_read_size",
        "legacy_responses",
    }
)


def lean_settings(pool: Any) -> dict[str, Any] | None:
    """The settings of a lean connection like sync `pool`'s, or None when it cannot be one."""
    if not hasattr(hiredis, "pack_command") or pool.connection_class.__name__ != "Connection":
        return None
    kwargs = {
        k: v for k, v in pool.connection_kwargs.items() if not k.startswith(("orig_", "maint"))
    }
    kwargs.pop("himport_registry", None)
    # Settings it does not know are fine only when unset (None): a credential
    # provider, a connect callback and the like change what a connection does.
    unknown = [k for k in set(kwargs) - _UNDERSTOOD if kwargs[k] is not None]
    if unknown or kwargs.get("decode_responses"):
        return None
    if kwargs.get("protocol") not in (None, 2, "2"):
        return None
    return {
        "host": kwargs.get("host", "localhost"),
        "port": int(kwargs.get("port", 6379)),
        "db": int(kwargs.get("db") or 0),
        "username": kwargs.get("username"),
        "password": kwargs.get("password"),
        "timeout": kwargs.get("socket_timeout"),
        "connect_timeout": kwargs.get("socket_connect_timeout", kwargs.get("socket_timeout")),
    }


class _Protocol(asyncio.Protocol):
    """Replies are matched to waiting futures in the order the commands were written."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        waiting = self.waiting
        while True:
            try:
                reply = reader.gets()
            except Exception as exc:  # a corrupt stream: nothing after it can be trusted
                self.fail(ConnectionError(f"unreadable reply from Redis: {exc}"))
                return
            if reply is False:
                return
            if not waiting:
                self.fail(ConnectionError("a Redis reply nobody asked for"))
                return
            future = waiting.popleft()
            if future.done():
                continue  # its caller gave up (cancelled); the reply is dropped in order
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(ConnectionError(f"Redis answered an error: {reply}"))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._fail_waiting(ConnectionError(f"the Redis connection was lost ({exc or 'closed'})"))

    def fail(self, exc: Exception) -> None:
        """Drop the connection and fail every waiting command with `exc`."""
        self.lost = True
        if self.transport is not None:
            self.transport.abort()
        self._fail_waiting(exc)

    def _fail_waiting(self, exc: Exception) -> None:
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(exc)


class LeanConnection:
    """One pipelined connection to one Redis server, for the event loop that uses it."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings
        self.timeout: float | None = settings["timeout"]
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None

    async def _connect(self) -> _Protocol:
        if self._connecting is not None:
            return await asyncio.shield(self._connecting)
        loop = asyncio.get_running_loop()
        self._connecting = loop.create_future()
        try:
            settings = self.settings
            opening = loop.create_connection(_Protocol, settings["host"], settings["port"])
            _, protocol = await asyncio.wait_for(opening, settings["connect_timeout"])
            if settings["password"] is not None:
                auth = [settings["username"], settings["password"]]
                await self._send(protocol, "AUTH", *[a for a in auth if a is not None])
            if settings["db"]:
                await self._send(protocol, "SELECT", settings["db"])
        except BaseException as exc:
            failed = exc if isinstance(exc, Exception) else ConnectionError("connect cancelled")
            self._connecting.set_exception(failed)
            self._connecting.exception()  # retrieved: no "never retrieved" warning
            raise
        finally:
            connecting, self._connecting = self._connecting, None
        self._protocol = protocol
        connecting.set_result(protocol)
        return protocol

    async def _send(self, protocol: _Protocol, *args: Any) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        protocol.waiting.append(future)
        protocol.transport.write(hiredis.pack_command(args))  # type: ignore[union-attr]
        if self.timeout is None:
            return await future
        timer = asyncio.get_running_loop().call_later(
            self.timeout, protocol.fail, TimeoutError(f"Redis did not answer in {self.timeout}s")
        )
        try:
            return await future
        finally:
            timer.cancel()

    async def execute(self, *args: Any) -> Any:
        """Send one command and return its reply (ConnectionError/TimeoutError on failure)."""
        protocol = self._protocol
        if protocol is None or protocol.lost or protocol.transport.is_closing():  # type: ignore[union-attr]
            protocol = await self._connect()
        return await self._send(protocol, *args)

    def close(self) -> None:
        """Close the connection (the next command opens a new one)."""
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
