"""CachedObjectMixin and the find_by_* helpers; saved/deleted instances refresh their cache."""

from __future__ import annotations

import copy
import logging
from typing import Any, TypeVar

from django.apps import apps
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.db import models, transaction
from django.db.models.signals import post_delete, post_save

from keyedcache.api import cache_delete, cache_get, cache_set, is_cached
from keyedcache.exceptions import NotCachedError
from keyedcache.keys import cache_key
from keyedcache.registry import default_cache

log = logging.getLogger("keyedcache")

M = TypeVar("M", bound=models.Model)


class CachedObjectMixin:
    """Cache model instances under `<ClassName>::<pk>[::extra parts]`.

    Saving an instance replaces its cached copy and drops the keys below it;
    deleting it drops both, in every process. Set `cache_refresh_on_save =
    False` on the model to manage the cache by hand, as in 1.5.
    """

    #: Refresh the cached copy on save and drop it on delete (post_save/post_delete).
    cache_refresh_on_save = True
    #: The first key part of this model's entries; None: the class name, as in 1.5.
    #: Set it (e.g. "shop.Product") when two cached models share a class name
    #: (system check keyedcache.W003).
    cache_group_key: str | None = None

    def cache_key(self, *args: Any, **kwargs: Any) -> str:
        """Return this instance's key, with `args`/`kwargs` appended as parts."""
        return cache_key([group_key(type(self)), self, *args], **kwargs)

    def cache_get(self, *args: Any, **kwargs: Any) -> Any:
        """Return what is cached under this instance's key (raises NotCachedError)."""
        return cache_get(self.cache_key(*args, **kwargs))

    def cache_set(self, *args: Any, **kwargs: Any) -> None:
        """Cache `value` (default: the instance itself) under this instance's key."""
        value = kwargs.pop("value", self)
        # As cache_set(): omitted, the alias's TIMEOUT; None, never expires.
        length = kwargs.pop("length", DEFAULT_TIMEOUT)
        cache_set(self.cache_key(*args, **kwargs), value=value, length=length)

    def cache_delete(self, *args: Any, **kwargs: Any) -> list[str]:
        """Delete this instance's key and every key below it."""
        key = self.cache_key(*args, **kwargs)
        log.debug("keyedcache: clearing %s", key)
        return cache_delete(key, children=True)

    def cache_reset(self) -> None:
        """Drop the cached copy and its children, then cache the instance afresh."""
        self.cache_delete()
        self.cache_set()

    def is_cached(self, *args: Any, **kwargs: Any) -> bool:
        """Tell whether something is cached under this instance's key."""
        return is_cached(self.cache_key(*args, **kwargs))


def group_key(model: type[Any]) -> str:
    """The first key part of a cached model's entries: `cache_group_key`, else the class name."""
    return getattr(model, "cache_group_key", None) or model.__name__


def _refreshed(cls: type[Any]) -> bool:
    """Whether saves keep `cls`'s own entries in step (a CachedObjectMixin model)."""
    return (
        isinstance(cls, type) and issubclass(cls, CachedObjectMixin) and cls.cache_refresh_on_save
    )


def _find(
    cls: type[M], groupkey: Any, value: Any, lookup: dict[str, Any], raises: bool
) -> M | None:
    try:
        found: M = cache_get(groupkey, value)
        return found
    except NotCachedError as miss:
        store = default_cache()
        # Read before the query: if the row is saved or deleted meanwhile (which
        # replaces or drops the cached copy), the copy loaded here is stored
        # under a basis that no longer holds, and is never served.
        basis = store.load_for_fill(miss.key)[1]
        try:
            instance = cls._default_manager.get(**lookup)
        except cls.DoesNotExist:  # type: ignore[attr-defined]
            log.debug("keyedcache: no %s %r", groupkey, value)
            if raises:
                raise
            return None
        store.fill(miss.key, instance, basis)
        return instance


def _find_by_field(cls: type[M], groupkey: Any, field: str, value: Any, raises: bool) -> M | None:
    lookup = {f"{field}__exact": value}
    if not _refreshed(cls):
        return _find(cls, groupkey, value, lookup, raises)
    # (groupkey, value) holds the instance found, as in 1.5, but saves do not refresh
    # it: a hit only names the row, whose current copy is the instance's own entry.
    key = cache_key(groupkey, value)
    found = cache_get(key, default=None)
    pk = getattr(found, "pk", None)
    if pk is not None:
        current = _find(cls, group_key(cls), pk, {"pk": pk}, False)
        # As text: the key does not tell 5 from "5" either.
        if current is not None and str(getattr(current, field, None)) == str(value):
            return current
        cache_delete(key)  # the row changed its `field`, or is gone
    return _find(cls, groupkey, value, lookup, raises)


def find_by_id(cls: type[M], groupkey: Any, objectid: Any, raises: bool = False) -> M | None:
    """Return the `cls` instance with pk `objectid`, through the cache key (groupkey, objectid).

    For a CachedObjectMixin model that refreshes on save, the entry is the
    instance's own (`instance.cache_key()`), whatever `groupkey` says: the one
    saves refresh.
    """
    if _refreshed(cls):
        groupkey = group_key(cls)
    return _find(cls, groupkey, objectid, {"pk": objectid}, raises)


def find_by_key(cls: type[M], groupkey: Any, key: Any, raises: bool = False) -> M | None:
    """Return the `cls` instance whose `key` field is `key`, through the cache.

    For a CachedObjectMixin model that refreshes on save, a cached lookup is
    checked against the instance's own entry, so saves and deletes are seen.
    """
    return _find_by_field(cls, groupkey, "key", key, raises)


def find_by_slug(cls: type[M], groupkey: Any, slug: Any, raises: bool = False) -> M | None:
    """Return the `cls` instance whose `slug` field is `slug`, as find_by_key does."""
    return _find_by_field(cls, groupkey, "slug", slug, raises)


def _wants_refresh(instance: Any) -> bool:
    return (
        isinstance(instance, CachedObjectMixin)
        and instance.cache_refresh_on_save
        and getattr(instance, "pk", None) is not None
    )


def _holds_expressions(instance: Any) -> bool:
    # save() with F()/expressions leaves them on the instance before Django 6.0:
    # only the database knows the value that was written. Django 6.0 reads them
    # back where the database can return updated rows, and elsewhere leaves the
    # fields deferred: the instance does not hold them either.
    return any(
        field.attname not in instance.__dict__
        or hasattr(instance.__dict__[field.attname], "resolve_expression")
        for field in instance._meta.concrete_fields
    )


def _drop_on_commit(instance: Any, using: str) -> None:
    key = instance.cache_key()
    transaction.on_commit(lambda: cache_delete(key, children=True), using=using)


def _refresh_after_save(
    sender: Any,
    instance: Any,
    raw: bool = False,
    using: str = "default",
    update_fields: Any = None,
    **kwargs: Any,
) -> None:
    if not _wants_refresh(instance):
        return
    if raw or update_fields is not None or _holds_expressions(instance):
        # A fixture row (loaddata), a partial save (fields outside
        # update_fields may hold unsaved changes) or an expression save: drop
        # the stale copy; the next read loads what the database has.
        _drop_on_commit(instance, using)
        return
    # After commit: a rollback must not leave a copy the database never had,
    # and other processes must not re-cache the old row before it commits.
    # Cache the instance as saved: changes made after save() were not written.
    transaction.on_commit(copy.copy(instance).cache_reset, using=using)


def _drop_after_delete(sender: Any, instance: Any, using: str = "default", **kwargs: Any) -> None:
    if _wants_refresh(instance):
        _drop_on_commit(instance, using)


post_save.connect(_refresh_after_save, dispatch_uid="keyedcache.models.refresh_after_save")
post_delete.connect(_drop_after_delete, dispatch_uid="keyedcache.models.drop_after_delete")


# 1.5 code imports this module without "keyedcache" in INSTALLED_APPS; a model
# class outside an installed app would make that import fail, so the dashboard's
# permission model exists only where the app is installed.
if apps.apps_ready and apps.is_installed("keyedcache"):

    class CacheDashboard(models.Model):
        """No table: carries the dashboard's permission and its entry on the admin index.

        A staff user may look at the dashboard at /cache/; deleting keys there also
        needs `keyedcache.delete_cache_keys` (a superuser has it). See docs/dashboard.md.
        """

        class Meta:
            managed = False
            default_permissions = ()
            permissions = [("delete_cache_keys", "Can delete cache keys in the cache dashboard")]
            verbose_name = "cache dashboard"
            verbose_name_plural = "cache dashboard"

        def __str__(self) -> str:
            return "cache dashboard"
