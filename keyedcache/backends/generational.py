"""Subtree deletes for backends that cannot list keys: generation tokens on every prefix."""

from __future__ import annotations

import os
from typing import Any

from keyedcache import keys
from keyedcache.backends.base import MISSING, Adapter, Timeout

# Every proper ancestor of a key (and the root) has a generation token; an
# entry records the tokens it was written under and is valid only while they
# are all unchanged. A subtree delete of `k` deletes `k` itself and replaces
# the token of prefix `k`, which guards everything below it. Replacing is a
# plain `set`: no atomic increment is needed, so it is safe on every backend,
# and reading value + tokens is one `get_many` round trip. Leaf keys get no
# token of their own, so tokens stay few (one per branch, not one per key).


def new_token() -> str:
    """Return a fresh generation token (random: no counter to race on)."""
    return os.urandom(6).hex()


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

    def prefix_gen_key(self, prefix: str) -> str:
        """Storage key of the token that guards every key below `prefix`."""
        return keys.storage_key(prefix, self.gen_namespace, self.budget)

    def get(self, key: str) -> Any:
        stored = self.storage_key(key)
        gens = self.gen_keys(key)
        found = self.cache.get_many([stored, *gens])
        return self._valid(found.get(stored, MISSING), [found.get(g) for g in gens])

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
                found.get(self.storage_key(key), MISSING),
                [found.get(g) for g in self.gen_keys(key)],
            )
            if packed is not MISSING:
                result[key] = packed
        return result

    @staticmethod
    def _valid(raw: Any, tokens: list[Any]) -> Any:
        if raw is MISSING or type(raw) is not tuple or len(raw) != 2:
            return MISSING
        written_under, packed = raw
        if None in tokens or tuple(tokens) != written_under:
            return MISSING
        return packed

    def current_tokens(self, key: str) -> tuple[str, ...]:
        """Return the tokens guarding `key`, creating the missing ones."""
        gens = self.gen_keys(key)
        cache = self.cache
        found = cache.get_many(gens)
        tokens = []
        for gen in gens:
            token = found.get(gen)
            if token is None:
                token = new_token()
                # add, so two writers creating the same token agree on one value
                if not cache.add(gen, token, None):
                    token = cache.get(gen) or token
            tokens.append(token)
        return tuple(tokens)

    def set(self, key: str, packed: tuple[Any, ...], timeout: Timeout) -> None:
        self.cache.set(self.storage_key(key), (self.current_tokens(key), packed), timeout)

    def add(self, key: str, packed: tuple[Any, ...], timeout: Timeout) -> bool:
        stored = self.storage_key(key)
        wrapped = (self.current_tokens(key), packed)
        if self.cache.add(stored, wrapped, timeout):
            return True
        # An entry orphaned by a subtree delete still occupies the slot.
        if self.get(key) is not MISSING:
            return False
        self.cache.delete(stored)
        return bool(self.cache.add(stored, wrapped, timeout))

    def delete(self, key: str) -> bool:
        existed = self.get(key) is not MISSING
        self.cache.delete(self.storage_key(key))
        return existed

    def delete_subtree(self, key: str) -> list[str] | None:
        existed = self.delete(key)
        self.cache.set(self.prefix_gen_key(key), new_token(), None)
        return [key] if existed else []

    def delete_all(self) -> list[str] | None:
        self.cache.set(self.gen_namespace, new_token(), None)
        return None


class MemcachedAdapter(GenerationalAdapter):
    """memcached (pymemcache, pylibmc): no key listing, so generation tokens."""

    name = "memcached"


class FileBasedAdapter(GenerationalAdapter):
    """Django's file-based cache: file names are hashes, so generation tokens."""

    name = "filebased"
