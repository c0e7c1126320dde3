"""Picks the async adapter of an alias: native (locmem, Redis protocol) or one thread hop."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from keyedcache.backends.aio import AsyncAdapter
from keyedcache.backends.stamped import StampedAdapter

if TYPE_CHECKING:
    from keyedcache.backends.redis import RedisAdapter


def build_async_adapter(sync: StampedAdapter) -> AsyncAdapter:
    """The async adapter for `sync`'s alias: native where the backend has an async path.

    locmem runs in-process with no thread (alocmem.py); Redis-protocol adapters
    whose client is a plain redis/valkey client use its asyncio twin
    (aredis.py); everything else hops to a thread (AsyncAdapter).
    """
    if sync.made_prefix is not None:
        from keyedcache.backends.locmem import LocMemAdapter

        if isinstance(sync, LocMemAdapter):
            from keyedcache.backends.alocmem import AsyncLocMemAdapter

            return AsyncLocMemAdapter(sync)
        redis = _as_redis(sync)
        if redis is not None and getattr(redis, "native_async", True):
            from keyedcache.backends.aredis import AsyncRedisAdapter, supports

            if supports(redis):
                return AsyncRedisAdapter(redis)
    return AsyncAdapter(sync)


def _as_redis(sync: StampedAdapter) -> RedisAdapter | None:
    # A Redis adapter was built, so its module is loaded: no import of a client
    # library for other backends.
    module = sys.modules.get("keyedcache.backends.redis")
    if module is None:
        return None
    redis_class: type[RedisAdapter] = module.RedisAdapter
    return sync if isinstance(sync, redis_class) else None
