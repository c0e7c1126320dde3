"""Adapter for Django's RedisCache: SCAN with MATCH to list, UNLINK to delete, direct reads."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from keyedcache import keys
from keyedcache.backends.base import MISSING, EnumeratingAdapter


class RedisAdapter(EnumeratingAdapter):
    """Redis or Valkey through django.core.cache.backends.redis.RedisCache."""

    name = "redis"
    scan_count = 1000
    delete_batch = 500

    def _client(self) -> Any:
        # Writes, scans and deletes go to the first server, as Django's own
        # writes do; replicas may lag behind it.
        return self.cache._cache.get_client(write=True)  # type: ignore[attr-defined]

    def get(self, key: str) -> Any:
        if self.made_prefix is None:
            return super().get(key)
        # RedisCacheClient.get takes an already-made key; keyedcache's storage
        # keys need no validation, so skip make_and_validate_key.
        return self.cache._cache.get(self.made_prefix + self.storage_key(key), MISSING)  # type: ignore[attr-defined]

    def scan(self, stored_prefix: str) -> Iterator[str]:
        made_prefix = self.made_prefix
        if made_prefix is None:
            return
        pattern = keys.glob_escape(made_prefix + stored_prefix) + "*"
        start = len(made_prefix)
        for made in self._client().scan_iter(match=pattern, count=self.scan_count):
            yield (made.decode() if isinstance(made, bytes) else made)[start:]

    def delete_stored(self, stored_keys: list[str]) -> None:
        if self.made_prefix is None:
            super().delete_stored(stored_keys)
            return
        client = self._client()
        made = [self.made_prefix + k for k in stored_keys]
        for start in range(0, len(made), self.delete_batch):
            client.unlink(*made[start : start + self.delete_batch])
