"""The lean pipelined RESP connection (keyedcache/backends/resp.py) against a real Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis

from keyedcache.backends.resp import LeanConnection, lean_settings
from tests.servers import RedisServer


def settings(server: RedisServer, **changes: Any) -> dict[str, Any]:
    found = lean_settings(redis.Redis(port=server.port, socket_timeout=5).connection_pool)
    assert found is not None
    found.update(changes)
    return found


def test_concurrent_commands_each_get_their_own_reply(redis_server: RedisServer) -> None:
    client = redis.Redis(port=redis_server.port)
    client.mset({f"resp-{i}": str(i) for i in range(100)})
    lean = LeanConnection(settings(redis_server))

    async def body() -> list[Any]:
        return await asyncio.gather(*[lean.execute("GET", f"resp-{i}") for i in range(100)])

    assert asyncio.run(body()) == [str(i).encode() for i in range(100)]


def test_mget_replies_with_none_for_missing_keys(redis_server: RedisServer) -> None:
    redis.Redis(port=redis_server.port).set("resp-there", b"v")
    lean = LeanConnection(settings(redis_server))
    reply = asyncio.run(lean.execute("MGET", "resp-there", "resp-missing"))
    assert reply == [b"v", None]


def test_a_cancelled_caller_does_not_shift_the_replies(redis_server: RedisServer) -> None:
    redis.Redis(port=redis_server.port).set("resp-after", b"mine")
    lean = LeanConnection(settings(redis_server))

    async def body() -> Any:
        await lean.execute("PING")  # connected
        blocked = asyncio.ensure_future(lean.execute("BLPOP", "resp-empty-list", "0.2"))
        await asyncio.sleep(0)  # the BLPOP is written
        blocked.cancel()
        # Queued behind the BLPOP on the same socket: it must get GET's reply.
        return await lean.execute("GET", "resp-after")

    assert asyncio.run(body()) == b"mine"


def test_select_picks_the_database(redis_server: RedisServer) -> None:
    redis.Redis(port=redis_server.port, db=3).set("resp-db", b"three")
    lean = LeanConnection(settings(redis_server, db=3))
    assert asyncio.run(lean.execute("GET", "resp-db")) == b"three"


def test_an_error_reply_raises_naming_it(redis_server: RedisServer) -> None:
    lean = LeanConnection(settings(redis_server))
    with pytest.raises(ConnectionError, match="unknown command"):
        asyncio.run(lean.execute("NO-SUCH-COMMAND"))


def test_a_silent_server_times_out_and_the_next_call_reconnects() -> None:
    accepted: list[int] = []

    async def body() -> list[str]:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.append(1)
            await reader.read()  # never answers

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        lean = LeanConnection(
            {
                "host": "127.0.0.1",
                "port": port,
                "db": 0,
                "username": None,
                "password": None,
                "timeout": 0.05,
                "connect_timeout": 1.0,
            }
        )
        outcomes = []
        for _ in range(2):
            try:
                await lean.execute("GET", "x")
            except TimeoutError as exc:
                outcomes.append(type(exc).__name__)
        lean.close()
        server.close()
        return outcomes

    assert asyncio.run(body()) == ["TimeoutError", "TimeoutError"]
    assert len(accepted) == 2  # the timed-out connection was dropped, a new one opened


def test_a_refused_connection_raises_connection_error(redis_server: RedisServer) -> None:
    from tests.servers import free_port

    lean = LeanConnection(settings(redis_server, port=free_port()))
    with pytest.raises(ConnectionError):
        asyncio.run(lean.execute("PING"))


def test_settings_it_cannot_honour_leave_redis_asyncio_in_charge() -> None:
    plain = redis.Redis(port=6379).connection_pool
    assert lean_settings(plain) is not None
    assert lean_settings(redis.Redis(port=6379, decode_responses=True).connection_pool) is None
    assert lean_settings(redis.Redis(port=6379, ssl=True).connection_pool) is None
    assert lean_settings(redis.Redis(unix_socket_path="/tmp/x.sock").connection_pool) is None
    assert lean_settings(redis.Redis(port=6379, protocol=3).connection_pool) is None
