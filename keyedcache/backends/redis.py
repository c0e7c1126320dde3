"""Adapter for Django's RedisCache: MGET reads, pipelined writes, SCAN listings, Lua locks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from keyedcache import keys
from keyedcache.backends.base import DECODE_ERRORS, Timeout, Undecodable
from keyedcache.backends.stamped import RECORD_TAG, StampedAdapter
from keyedcache.entry import NO_VALUE
from keyedcache.pickled import tuple_head

# Compare-and-delete and compare-and-expire in one step, so only the owner
# of a lock can release or extend it, even after it overran its timeout.
_RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)
_EXTEND = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
)


def _seconds(timeout: Timeout) -> int | None:
    """Django RedisCache's rule for a resolved timeout: whole seconds, None never expires.

    Done here rather than through the cache object, because django-valkey's
    caches are not Django BaseCache subclasses and lack get_backend_timeout.
    """
    return None if timeout is None else max(0, int(timeout))


class RedisAdapter(StampedAdapter):
    """Redis or Valkey through django.core.cache.backends.redis.RedisCache."""

    name = "redis"
    enumerates = True
    scan_count = 1000
    delete_batch = 500

    def _connect(self, write: bool) -> Any:
        """A client of the backend: the primary when `write`, else a replica if any."""
        return self.cache._cache.get_client(write=write)  # type: ignore[attr-defined]

    def _dumps(self) -> Any:
        """The backend's own value encoder (bytes, or a raw int it stores as a number)."""
        return self.cache._cache._serializer.dumps  # type: ignore[attr-defined]

    def _loads(self) -> Any:
        """The backend's own value decoder, the inverse of `_dumps`."""
        return self.cache._cache._serializer.loads  # type: ignore[attr-defined]

    def _mget_raw(self, client: Any, made_keys: list[str]) -> list[Any]:
        """The raw values of `made_keys`, in order (one MGET; a cluster splits it per slot)."""
        return client.mget(made_keys)  # type: ignore[no-any-return]

    def _client(self) -> Any:
        # Writes, scans, tokens and deletes go to the primary, as the backend's
        # own writes do; replicas may lag behind it. Django builds a new
        # redis.Redis object per call; one per thread is enough (it only
        # wraps the shared connection pool) and halves the cost of a hit.
        local = self._local
        try:
            return local.redis_writer
        except AttributeError:
            local.redis_writer = self._connect(True)
            return local.redis_writer

    def _reader(self) -> Any:
        """This thread's read client: a replica when there are several."""
        local = self._local
        try:
            return local.redis_reader
        except AttributeError:
            local.redis_reader = self._connect(False)
            return local.redis_reader

    # -- the raw layer: made keys straight to the client ---------------------------
    # The same steps as RedisCacheClient, minus make_and_validate_key (keyedcache's
    # storage keys are valid by construction) and with one decode per value, so a
    # value that cannot be decoded spoils only itself.

    def raw_get_many(self, stored_keys: list[str]) -> dict[str, Any]:
        if self.made_prefix is None:
            return super().raw_get_many(stored_keys)
        return self._mget(self._reader(), stored_keys)

    def raw_get_many_primary(self, stored_keys: list[str]) -> dict[str, Any]:
        if self.made_prefix is None:
            return super().raw_get_many(stored_keys)
        return self._mget(self._client(), stored_keys)

    def _mget(self, client: Any, stored_keys: list[str]) -> dict[str, Any]:
        """One MGET of the made keys on `client`, each value decoded on its own."""
        prefix = self.made_prefix or ""
        raws = self._mget_raw(client, [prefix + s for s in stored_keys])
        loads = self._loads()
        found: dict[str, Any] = {}
        for stored, raw in zip(stored_keys, raws, strict=True):
            if raw is None:
                continue
            try:
                found[stored] = loads(raw)
            except DECODE_ERRORS as exc:
                found[stored] = Undecodable(exc)
        return found

    def raw_set_many(self, values: dict[str, Any], timeout: Timeout) -> None:
        prefix = self.made_prefix
        if prefix is None:
            super().raw_set_many(values, timeout)
            return
        seconds = _seconds(timeout)
        dumps = self._dumps()
        pipeline = self._client().pipeline(transaction=False)
        for stored, value in values.items():
            if seconds == 0:
                pipeline.delete(prefix + stored)  # Django's rule: 0 expires at once
            else:
                pipeline.set(prefix + stored, dumps(value), ex=seconds)
        pipeline.execute()

    def raw_add(self, stored: str, value: Any, timeout: Timeout) -> bool:
        if self.made_prefix is None:
            return super().raw_add(stored, value, timeout)
        seconds = _seconds(timeout)
        if seconds == 0:
            return False
        made = self.made_prefix + stored
        return bool(self._client().set(made, self._dumps()(value), ex=seconds, nx=True))

    def raw_delete_many(self, stored_keys: list[str]) -> None:
        if self.made_prefix is None:
            super().raw_delete_many(stored_keys)
            return
        client = self._client()
        made = [self.made_prefix + k for k in stored_keys]
        for start in range(0, len(made), self.delete_batch):
            client.unlink(*made[start : start + self.delete_batch])

    def raw_touch(self, stored: str, timeout: Timeout) -> None:
        if self.made_prefix is None:
            super().raw_touch(stored, timeout)
            return
        seconds = _seconds(timeout)
        made = self.made_prefix + stored
        if seconds is None:
            self._client().persist(made)
        else:
            self._client().expire(made, seconds)

    # -- listings: a record's head, not its value -------------------------------

    #: Bytes of a record read to find its tag, stamp and key (a longer key: a full read).
    head_bytes = 4096

    def plain_pickles(self) -> bool:
        """True when stored records are plain pickles whose head can be parsed (no compressor)."""
        return True

    def raw_heads(self, stored_keys: list[str]) -> dict[str, tuple[int, bytes]]:
        prefix = self.made_prefix
        if prefix is None or not stored_keys or not self.plain_pickles():
            return {}
        pipeline = self._client().pipeline(transaction=False)
        for stored in stored_keys:
            pipeline.strlen(prefix + stored)
            pipeline.getrange(prefix + stored, 0, self.head_bytes - 1)
        replies = pipeline.execute()
        return {
            stored: (int(replies[2 * i]), bytes(replies[2 * i + 1]))
            for i, stored in enumerate(stored_keys)
            if replies[2 * i]
        }

    def _valid_names(self, stored_keys: list[str]) -> Iterator[str]:
        # The tag, stamp and key of each record come from its first bytes, so a
        # listing of big values moves kilobytes, not the values (from the primary,
        # like every read a listing makes before it reclaims anything).
        heads: dict[str, list[Any]] = {}
        rest: list[str] = []
        found = self.raw_heads(stored_keys)
        for stored in stored_keys:
            part = found.get(stored)
            head = None if part is None else tuple_head(part[1], 3)
            if head and len(head) >= 3 and head[0] == RECORD_TAG and type(head[2]) is str:
                heads[stored] = head
            else:
                rest.append(stored)
        gens = list(dict.fromkeys(g for head in heads.values() for g in self.gen_keys(head[2])))
        tokens = self.raw_get_many_primary(gens) if gens else {}
        doomed = []
        for stored, head in heads.items():
            if head[1] == tuple(tokens.get(g) for g in self.gen_keys(head[2])):
                yield head[2]
            else:
                doomed.append(stored)
        self.raw_delete_many(doomed)
        if rest:
            yield from super()._valid_names(rest)

    def scan(self, stored_prefix: str) -> Iterator[str]:
        made_prefix = self.made_prefix
        if made_prefix is None:
            yield from super().scan(stored_prefix)
            return
        pattern = keys.glob_escape(made_prefix + stored_prefix) + "*"
        start = len(made_prefix)
        for made in self._client().scan_iter(match=pattern, count=self.scan_count):
            yield (made.decode() if isinstance(made, bytes) else made)[start:]

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
        # The own token lives as long as its entry (else the entry turns invalid).
        own = self.made_prefix + self.own_gen_key(key)
        client = self._client()
        if timeout is None:
            client.persist(own)
            client.persist(made)  # 0 both for "no such key" and "had no TTL"
            return bool(client.exists(made))
        if timeout <= 0:
            return bool(client.delete(made))
        millis = max(int(timeout * 1000), 1)
        client.pexpire(own, millis)
        return bool(client.pexpire(made, millis))
