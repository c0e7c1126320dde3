"""Adapters for memcached (listing by LRU crawler dumps) and the file-based cache (file walks)."""

from __future__ import annotations

import itertools
import os
import pickle
import socket
import tempfile
import time
import urllib.parse
import zlib
from collections.abc import Iterator
from typing import Any

from keyedcache import keys
from keyedcache.backends.base import DECODE_ERRORS
from keyedcache.backends.stamped import RECORD_TAG, StampedAdapter
from keyedcache.tokens import Backoff

#: A cache file that cannot be read now (removed meanwhile) or cannot be decoded.
_UNREADABLE: tuple[type[BaseException], ...] = (OSError, *DECODE_ERRORS)


class MemcachedAdapter(StampedAdapter):
    """memcached (pymemcache, pylibmc): generation tokens; listing by LRU crawler dumps."""

    name = "memcached"
    socket_timeout = 5.0

    def _servers(self) -> list[str]:
        servers = getattr(self.cache, "_servers", [])
        return [servers] if isinstance(servers, str) else list(servers)

    #: Bytes of matching keys a listing keeps in memory before spooling them to disk.
    spool_in_memory = 1 << 20

    def scan(self, stored_prefix: str) -> Iterator[str]:
        made_prefix = self.made_prefix
        if made_prefix is None:
            yield from super().scan(stored_prefix)
            return
        wanted = made_prefix + stored_prefix
        # Each server's dump is read to its end before any other request:
        # while a crawl waits for its client to read on, memcached can hold
        # locks that a get on another connection needs, and that get (say, the
        # caller checking the keys listed so far) would never return. The
        # matching keys wait in a spool, on disk beyond `spool_in_memory`.
        with tempfile.SpooledTemporaryFile(max_size=self.spool_in_memory) as spool:
            for server in self._servers():
                for made in self._metadump(server, wanted):
                    spool.write(made[len(made_prefix) :].encode() + b"\n")
            spool.seek(0)
            for line in spool:
                yield line[:-1].decode()

    #: Crawl commands, best first: `metadump hash` walks the hash table and sees
    #: every item once; the LRU walk of `metadump all` (servers without hash
    #: mode) can miss items the LRU maintainer moves between LRUs meanwhile.
    metadump_commands = (b"lru_crawler metadump hash", b"lru_crawler metadump all")

    def _metadump(self, server: str, wanted: str) -> Iterator[str]:
        """Stream the live keys starting with `wanted` from one server's LRU crawler."""
        if server.startswith("unix:"):
            family, address = socket.AF_UNIX, server[5:]
        else:
            host, _, port = server.rpartition(":")
            family, address = socket.AF_INET, (host, int(port))  # type: ignore[assignment]
        now = time.time()
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.socket_timeout)
            sock.connect(address)
            lines = _lines(sock)
            first = self._start_crawl(sock, lines)
            for line in itertools.chain([first], lines):
                if line == b"END":
                    return
                fields = dict(part.split(b"=", 1) for part in line.split() if b"=" in part)
                if b"key" not in fields:
                    raise ConnectionError(f"memcached {server}: unexpected metadump line {line!r}")
                made = urllib.parse.unquote(fields[b"key"].decode())
                expires = int(fields.get(b"exp", b"-1"))
                if made.startswith(wanted) and (expires == -1 or expires > now):
                    yield made
            raise ConnectionError(f"memcached {server} closed the connection during metadump")

    def _start_crawl(self, sock: socket.socket, lines: Iterator[bytes]) -> bytes:
        """Start a metadump on `sock`; return its first line (a key line or END).

        One crawl runs at a time on a server (another listing, or memcached's
        own background crawl): BUSY means ask again shortly, within the
        socket timeout.
        """
        commands = list(self.metadump_commands)
        backoff = Backoff(0.005, 0.2, time.monotonic() + self.socket_timeout)
        while True:
            sock.sendall(commands[0] + b"\r\n")
            first = next(lines, b"")
            if first.startswith(b"BUSY"):
                # Another crawl is running: ask again after a bounded, doubling pause.
                if not backoff.sleep():
                    raise ConnectionError("memcached's LRU crawler stayed busy")
                continue
            if first.startswith(b"BADCLASS") and len(commands) > 1:
                commands.pop(0)  # no hash mode on this server: the LRU walk
                continue
            if first == b"END" or first.startswith(b"key="):
                return first
            raise ConnectionError(f"memcached refused the metadump: {first!r}")


def _lines(sock: socket.socket) -> Iterator[bytes]:
    """The lines a socket receives, without their line ends, until it closes."""
    pending = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line.rstrip(b"\r")


class FileBasedAdapter(StampedAdapter):
    """Django's file-based cache: hashed file names, so generation tokens; listing reads files."""

    name = "filebased"

    def scan(self, stored_prefix: str) -> Iterator[str]:
        # File names are digests of the made keys: each file's record names its key.
        prefix = stored_prefix[len(self.namespace) + 1 :]
        cache: Any = self.cache
        if os.path.exists(cache._dir) and not os.path.isdir(cache._dir):
            # Django's listing would answer [] here: say the cache cannot be read.
            raise NotADirectoryError(f"the file cache directory {cache._dir!r} is not a directory")
        now = time.time()
        for path in cache._list_cache_files():
            try:
                with open(path, "rb") as handle:
                    expires = pickle.load(handle)
                    if expires is not None and expires < now:
                        continue
                    record = pickle.loads(zlib.decompress(handle.read()))
            except _UNREADABLE:
                # Removed or rewritten while we looked, or not ours to read: a
                # file that cannot be decoded cannot say whose it is, so it stays.
                continue
            if type(record) is not tuple or len(record) != 4 or record[0] != RECORD_TAG:
                continue
            key = record[2]
            stored = self.storage_key(key)
            # The file of this key in this namespace, not another namespace's entry
            # for the same logical key.
            if keys.safe_path(key).startswith(prefix) and cache._key_to_file(stored) == path:
                yield stored
