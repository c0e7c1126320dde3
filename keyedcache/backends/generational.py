"""Subtree deletes for backends that cannot list keys: generation tokens on every prefix."""

from __future__ import annotations

import itertools
import pickle
import socket
import tempfile
import time
import urllib.parse
import zlib
from collections.abc import Iterator
from typing import Any

from keyedcache import keys
from keyedcache.backends.base import Adapter, Timeout, entry_of, in_batches
from keyedcache.entry import NO_VALUE
from keyedcache.tokens import new_token

# Every proper ancestor of a key (and the root) has a generation token; an
# entry records the tokens it was written under and is valid only while they
# are all unchanged. A subtree delete of `k` deletes `k` itself and replaces
# the token of prefix `k`, which guards everything below it. Replacing is a
# plain `set`: no atomic increment is needed, so it is safe on every backend,
# and reading value + tokens is one `get_many` round trip. Leaf keys get no
# token of their own, so tokens stay few (one per branch, not one per key).


#: The generation token of entries that never need a subtree delete (pin_generations).
PINNED_TOKEN = "keyedcache-stats-1"


class GenerationalAdapter(Adapter):
    """Adapter for any Django cache: tokens make subtree and delete-all deletes O(1)."""

    name = "generic"

    def __init__(self, alias: str, namespace: str) -> None:
        super().__init__(alias, namespace)
        self.gen_namespace = f"{namespace}-gen"
        self._gen_keys: dict[str, list[str]] = {}

    def gen_keys(self, key: str) -> list[str]:
        """Storage keys of the tokens guarding `key`: the root and each proper ancestor."""
        found = self._gen_keys.get(key)
        if found is None:
            # Every '::' boundary, overlapping ones too: 'a:::x' is below both
            # 'a' and 'a:', exactly as the prefix scans of native adapters see it.
            found = [self.gen_namespace] + [
                self.prefix_gen_key(key[:cut])
                for cut in range(len(key))
                if key.startswith(keys.KEY_DELIM, cut)
            ]
            if len(self._gen_keys) >= self.storage_key_memo_size:
                self._gen_keys.clear()
            self._gen_keys[key] = found
        return found

    def pin_generations(self, key: str) -> None:
        """Give the tokens guarding `key` one fixed value, where none is set yet.

        Tokens are created on first write with `add`; the file-based cache's
        `add` is not atomic, so two processes writing for the first time at
        once could each create a token, the later orphaning the other's
        entry. Entries that need no subtree deletes (stats records) use a
        fixed token written by every process alike, which makes that race harmless.
        """
        cache = self.cache
        for gen in self.gen_keys(key):
            cache.add(gen, PINNED_TOKEN, None)

    def prefix_gen_key(self, prefix: str) -> str:
        """Storage key of the token that guards every key below `prefix`."""
        return keys.storage_key(prefix, self.gen_namespace, self.budget)

    def get(self, key: str) -> Any:
        stored = self.storage_key(key)
        gens = self.gen_keys(key)
        found = self.cache.get_many([stored, *gens])
        return self._valid(found.get(stored, NO_VALUE), [found.get(g) for g in gens])

    def get_many(self, key_list: Any) -> dict[str, Any]:
        key_list = list(key_list)
        wanted: set[str] = set()
        for key in key_list:
            wanted.add(self.storage_key(key))
            wanted.update(self.gen_keys(key))
        found = self.cache.get_many(list(wanted))
        result: dict[str, Any] = {}
        for key in key_list:
            packed = self._valid(
                found.get(self.storage_key(key), NO_VALUE),
                [found.get(g) for g in self.gen_keys(key)],
            )
            if packed is not NO_VALUE:
                result[key] = packed
        return result

    @staticmethod
    def _valid(raw: Any, tokens: list[Any]) -> Any:
        if raw is NO_VALUE or type(raw) is not tuple or len(raw) != 2:
            return NO_VALUE
        written_under, packed = raw
        if None in tokens or tuple(tokens) != written_under:
            return NO_VALUE
        return packed

    def current_tokens(self, key: str) -> tuple[str, ...]:
        """Return the tokens guarding `key`, creating the missing ones."""
        gens = self.gen_keys(key)
        tokens = self._tokens(gens)
        return tuple(tokens[gen] for gen in gens)

    def _tokens(self, gens: list[str]) -> dict[str, str]:
        """Read the given tokens in one round trip, creating the missing ones."""
        cache = self.cache
        found: dict[str, str] = cache.get_many(gens)
        for gen in gens:
            if found.get(gen) is None:
                token = new_token(6)
                # add, so two writers creating the same token agree on one value
                if not cache.add(gen, token, None):
                    token = cache.get(gen) or token
                found[gen] = token
        return found

    def set_many(self, packed_by_key: dict[str, tuple[Any, ...]], timeout: Timeout) -> None:
        gens = sorted({gen for key in packed_by_key for gen in self.gen_keys(key)})
        tokens = self._tokens(gens)
        self.cache.set_many(
            {
                self.storage_key(key): (tuple(tokens[g] for g in self.gen_keys(key)), packed)
                for key, packed in packed_by_key.items()
            },
            timeout,
        )

    def set(self, key: str, packed: tuple[Any, ...], timeout: Timeout) -> None:
        self.cache.set(self.storage_key(key), (self.current_tokens(key), packed), timeout)

    def add(self, key: str, packed: tuple[Any, ...], timeout: Timeout) -> bool:
        stored = self.storage_key(key)
        wrapped = (self.current_tokens(key), packed)
        if self.cache.add(stored, wrapped, timeout):
            return True
        # An entry orphaned by a subtree delete still occupies the slot.
        if self.get(key) is not NO_VALUE:
            return False
        self.cache.delete(stored)
        return bool(self.cache.add(stored, wrapped, timeout))

    def delete(self, key: str) -> bool:
        existed = self.get(key) is not NO_VALUE
        self.cache.delete(self.storage_key(key))
        return existed

    def delete_many(self, key_list: list[str]) -> int:
        # Two round trips for the whole batch: which are valid, then delete all.
        present = self.get_many(key_list)
        self.cache.delete_many([self.storage_key(key) for key in key_list])
        return len(present)

    def delete_subtree(self, key: str) -> list[str] | None:
        existed = self.delete(key)
        self.cache.set(self.prefix_gen_key(key), new_token(6), None)
        return [key] if existed else []

    def delete_all(self) -> list[str] | None:
        self.cache.set(self.gen_namespace, new_token(6), None)
        return None

    # -- listing: the backend's raw keys, then a token check ------------------

    def raw_keys(self, stored_prefix: str) -> Iterator[str]:
        """Yield logical keys stored under `stored_prefix`, orphaned ones included."""
        raise NotImplementedError(
            f"keyedcache cannot list the keys of cache alias {self.alias!r}: its backend "
            "offers no way to enumerate keys"
        )

    def list_keys(self, stored_prefix: str) -> Iterator[str]:
        for batch in in_batches(self.raw_keys(stored_prefix)):
            yield from self.get_many(batch)


class MemcachedAdapter(GenerationalAdapter):
    """memcached (pymemcache, pylibmc): generation tokens; listing by LRU crawler dumps."""

    name = "memcached"
    socket_timeout = 5.0

    def _servers(self) -> list[str]:
        servers = getattr(self.cache, "_servers", [])
        return [servers] if isinstance(servers, str) else list(servers)

    #: Bytes of matching keys a listing keeps in memory before spooling them to disk.
    spool_in_memory = 1 << 20

    def raw_keys(self, stored_prefix: str) -> Iterator[str]:
        made_prefix = self.made_prefix
        if made_prefix is None:
            yield from super().raw_keys(stored_prefix)
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
            yield from self.names_of_stored(line[:-1].decode() for line in spool)

    def names_in_entries(self, stored_keys: list[str]) -> Iterator[str]:
        """Logical keys of digested storage keys, read from their envelopes."""
        if not stored_keys:
            return
        for raw in self.cache.get_many(stored_keys).values():
            if type(raw) is tuple and len(raw) == 2:
                entry = entry_of(raw[1])
                if entry is not None and entry.key is not None:
                    yield entry.key

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
        deadline = time.monotonic() + self.socket_timeout
        pause = 0.005
        while True:
            sock.sendall(commands[0] + b"\r\n")
            first = next(lines, b"")
            if first.startswith(b"BUSY"):
                if time.monotonic() + pause > deadline:
                    raise ConnectionError("memcached's LRU crawler stayed busy")
                time.sleep(pause)  # another crawl is running: bounded backoff polling
                pause = min(pause * 2, 0.2)
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


class FileBasedAdapter(GenerationalAdapter):
    """Django's file-based cache: hashed file names, so generation tokens; listing reads files."""

    name = "filebased"
    # File names are digests: listing reads the logical key from each envelope.
    keeps_keys = True

    def raw_keys(self, stored_prefix: str) -> Iterator[str]:
        prefix = stored_prefix[len(self.namespace) + 1 :]
        cache: Any = self.cache
        now = time.time()
        for path in cache._list_cache_files():
            try:
                with open(path, "rb") as handle:
                    expires = pickle.load(handle)
                    if expires is not None and expires < now:
                        continue
                    raw = pickle.loads(zlib.decompress(handle.read()))
            except (OSError, EOFError, pickle.UnpicklingError, zlib.error):
                continue  # removed or rewritten while we looked
            entry = entry_of(raw[1]) if type(raw) is tuple and len(raw) == 2 else None
            if (
                entry is not None
                and entry.key is not None
                and keys.safe_path(entry.key).startswith(prefix)
                # The file of this key in this namespace, not another
                # namespace's entry for the same logical key.
                and cache._key_to_file(self.storage_key(entry.key)) == path
            ):
                yield entry.key
