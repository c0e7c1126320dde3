"""Adapter for Django's RedisCache: SCAN with MATCH to list, UNLINK to delete, direct reads."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from keyedcache import keys
from keyedcache.backends.base import EnumeratingAdapter
from keyedcache.entry import NO_VALUE

# Compare-and-delete and compare-and-expire in one step, so only the owner
# of a lock can release or extend it, even after it overran its timeout.
_RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)
_EXTEND = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
)


class RedisAdapter(EnumeratingAdapter):
    """Redis or Valkey through django.core.cache.backends.redis.RedisCache."""

    name = "redis"
    scan_count = 1000
    delete_batch = 500

    def _client(self) -> Any:
        # Writes, scans and deletes go to the first server, as Django's own
        # writes do; replicas may lag behind it. Django builds a new
        # redis.Redis object per call; one per thread is enough (it only
        # wraps the shared connection pool) and halves the cost of a hit.
        local = self._local
        try:
            return local.redis_writer
        except AttributeError:
            local.redis_writer = self.cache._cache.get_client(write=True)  # type: ignore[attr-defined]
            return local.redis_writer

    def _reader(self) -> tuple[Any, Any]:
        """This thread's read client (a replica when there are several) and value decoder."""
        local = self._local
        try:
            return local.redis_reader  # type: ignore[no-any-return]
        except AttributeError:
            client = self.cache._cache  # type: ignore[attr-defined]
            local.redis_reader = (client.get_client(write=False), client._serializer.loads)
            return local.redis_reader  # type: ignore[no-any-return]

    def get(self, key: str) -> Any:
        if self.made_prefix is None:
            return super().get(key)
        # The same steps as RedisCacheClient.get, minus make_and_validate_key
        # (keyedcache's storage keys are valid by construction).
        client, loads = self._reader()
        raw = client.get(self.made_prefix + self.storage_key(key))
        return NO_VALUE if raw is None else loads(raw)

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

    def delete_many(self, key_list: list[str]) -> int:
        if self.made_prefix is None:
            return super().delete_many(key_list)
        client = self._client()
        made = [self.made_prefix + self.storage_key(key) for key in key_list]
        deleted = 0
        for start in range(0, len(made), self.delete_batch):
            deleted += int(client.unlink(*made[start : start + self.delete_batch]))
        return deleted

    # -- locks: plain tokens with SET NX PX, released by a Lua compare ----------

    def _made_lock_key(self, key: str) -> str:
        return self.cache.make_key(self.lock_key(key))

    def lock_acquire(self, key: str, token: str, timeout: float) -> bool:
        millis = max(int(timeout * 1000), 1)
        return bool(self._client().set(self._made_lock_key(key), token, nx=True, px=millis))

    def lock_owner(self, key: str) -> str | None:
        owner = self._client().get(self._made_lock_key(key))
        return owner.decode() if isinstance(owner, bytes) else owner

    def lock_release(self, key: str, token: str) -> bool:
        return bool(self._client().eval(_RELEASE, 1, self._made_lock_key(key), token))

    def lock_extend(self, key: str, token: str, timeout: float) -> bool:
        millis = max(int(timeout * 1000), 1)
        return bool(self._client().eval(_EXTEND, 1, self._made_lock_key(key), token, millis))

    # -- ttl: Redis knows it exactly ----------------------------------------------

    def native_ttl(self, key: str) -> Any:
        if self.made_prefix is None:
            return NotImplemented
        millis = self._client().pttl(self.made_prefix + self.storage_key(key))
        if millis == -2:
            return NO_VALUE
        return None if millis == -1 else millis / 1000

    def native_expire(self, key: str, timeout: float | None) -> Any:
        if self.made_prefix is None:
            return NotImplemented
        made = self.made_prefix + self.storage_key(key)
        client = self._client()
        if timeout is None:
            client.persist(made)  # 0 both for "no such key" and "had no TTL"
            return bool(client.exists(made))
        if timeout <= 0:
            return bool(client.delete(made))
        return bool(client.pexpire(made, max(int(timeout * 1000), 1)))
