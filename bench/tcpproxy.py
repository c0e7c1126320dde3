"""A TCP forwarder to stand between a client and a shared server, so chaos benches can kill
(kill -9) or hang (SIGSTOP) the path to it without touching the server itself.

    python bench/tcpproxy.py LISTEN_PORT TARGET_PORT    (prints "ready" once listening)
"""

from __future__ import annotations

import asyncio
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    target_reader, target_writer = await asyncio.open_connection("127.0.0.1", int(sys.argv[2]))
    await asyncio.gather(
        _pipe(reader, target_writer), _pipe(target_reader, writer), return_exceptions=True
    )


async def _serve() -> None:
    server = await asyncio.start_server(_handle, "127.0.0.1", int(sys.argv[1]))
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(_serve())
