"""The async twins of find_by_id, find_by_key and find_by_slug (cache reads on the loop)."""

from __future__ import annotations

import logging
from typing import Any, TypeVar

from keyedcache.aapi import acache_delete, acache_get
from keyedcache.exceptions import NotCachedError
from keyedcache.keys import cache_key
from keyedcache.models import _refreshed, group_key
from keyedcache.registry import default_cache

log = logging.getLogger("keyedcache")

M = TypeVar("M")

# The same steps as models.py, with the cache read awaited (no thread on
# locmem and Redis) and the query made through Django's async ORM.


async def _afind(
    cls: type[M], groupkey: Any, value: Any, lookup: dict[str, Any], raises: bool
) -> M | None:
    try:
        found: M = await acache_get(groupkey, value)
        return found
    except NotCachedError as miss:
        store = default_cache()
        # The basis is read before the query: a save or delete meanwhile wins.
        basis = (await store.aload_for_fill(miss.key))[1]
        try:
            instance: M = await cls._default_manager.aget(**lookup)  # type: ignore[attr-defined]
        except cls.DoesNotExist:  # type: ignore[attr-defined]
            log.debug("keyedcache: no %s %r", groupkey, value)
            if raises:
                raise
            return None
        await store.afill(miss.key, instance, basis)
        return instance


async def _afind_by_field(
    cls: type[M], groupkey: Any, field: str, value: Any, raises: bool
) -> M | None:
    lookup = {f"{field}__exact": value}
    if not _refreshed(cls):
        return await _afind(cls, groupkey, value, lookup, raises)
    key = cache_key(groupkey, value)
    found = await acache_get(key, default=None)
    pk = getattr(found, "pk", None)
    if pk is not None:
        current = await _afind(cls, group_key(cls), pk, {"pk": pk}, False)
        if current is not None and getattr(current, field, None) == value:
            return current
        await acache_delete(key)
    return await _afind(cls, groupkey, value, lookup, raises)


async def afind_by_id(cls: type[M], groupkey: Any, objectid: Any, raises: bool = False) -> M | None:
    """The async twin of `keyedcache.models.find_by_id`."""
    if _refreshed(cls):
        groupkey = group_key(cls)
    return await _afind(cls, groupkey, objectid, {"pk": objectid}, raises)


async def afind_by_key(cls: type[M], groupkey: Any, key: Any, raises: bool = False) -> M | None:
    """The async twin of `keyedcache.models.find_by_key`."""
    return await _afind_by_field(cls, groupkey, "key", key, raises)


async def afind_by_slug(cls: type[M], groupkey: Any, slug: Any, raises: bool = False) -> M | None:
    """The async twin of `keyedcache.models.find_by_slug`."""
    return await _afind_by_field(cls, groupkey, "slug", slug, raises)
