"""cache_function: memoize a function under a key built from its name and bound arguments."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, overload

from django.conf import settings
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.signals import setting_changed

from keyedcache import store
from keyedcache.keys import KEY_DELIM, canonical_bytes, digest
from keyedcache.stats import EXECUTIONS, counters

F = TypeVar("F", bound=Callable[..., Any])

# Stored under func::<module>.<qualname>::<digest of the bound arguments>, so a
# children delete of func::<module>.<qualname> forgets every call.
FUNC_ROOT = "func"
_MISS: Any = object()


def function_key_root(func: Callable[..., Any]) -> str:
    """Return the key below which every cached call of `func` is stored."""
    func = getattr(func, "__keyedcache_origin__", func)
    return KEY_DELIM.join((FUNC_ROOT, f"{func.__module__}.{func.__qualname__}"))


# KeyedCaches for the `alias=` option, shared by every function using that alias
# and rebuilt when the cache settings change (as the default one is).
_alias_caches: dict[str, store.KeyedCache] = {}


def alias_cache(alias: str) -> store.KeyedCache:
    """Return the KeyedCache for `alias`, in the configured KEYEDCACHE_NAMESPACE."""
    cache = _alias_caches.get(alias)
    if cache is None:
        namespace = getattr(settings, "KEYEDCACHE_NAMESPACE", store.DEFAULT_NAMESPACE)
        cache = _alias_caches[alias] = store.KeyedCache(alias, namespace=namespace)
    return cache


def _forget_alias_caches(*, setting: str, **kwargs: Any) -> None:
    if setting in store.RELEVANT_SETTINGS:
        _alias_caches.clear()


setting_changed.connect(_forget_alias_caches, dispatch_uid="keyedcache.memoize.reset")


class Memoized:
    """The state behind one decorated function: its key rules and where it caches."""

    def __init__(
        self,
        func: Callable[..., Any],
        length: Any,
        *,
        key: Callable[..., Any] | None = None,
        unless: Callable[[Any], bool] | None = None,
        alias: str | None = None,
    ) -> None:
        self.func = func
        self.length = length
        self.key_func = key
        self.unless = unless
        self.alias = alias
        self.signature = inspect.signature(func)
        self.root = function_key_root(func)

    def store(self) -> store.KeyedCache:
        """The KeyedCache this function caches in (the default one unless `alias`)."""
        if self.alias is None:
            return store.default_cache()
        return alias_cache(self.alias)

    def key(self, *args: Any, **kwargs: Any) -> str:
        """Return the cache key the call `func(*args, **kwargs)` uses."""
        if self.key_func is not None:
            parts = self.key_func(*args, **kwargs)
            if not isinstance(parts, (list, tuple)):
                parts = (parts,)
            try:
                encoded = canonical_bytes(tuple(parts))
            except TypeError as exc:
                raise TypeError(
                    f"cache_function cannot key {self.root}: its key= function returned "
                    f"a part with no stable cache key. {exc}"
                ) from None
            return KEY_DELIM.join((self.root, digest(encoded)))
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        # Bound by name and in signature order, so f(1, 2), f(1, b=2) and
        # f(a=1, b=2) share one entry; the type-tagged encoding keeps f(1)
        # and f('1') apart.
        try:
            encoded = canonical_bytes(list(bound.arguments.items()))
        except TypeError:
            raise self._unkeyable(bound.arguments) from None
        return KEY_DELIM.join((self.root, digest(encoded)))

    def _unkeyable(self, arguments: dict[str, Any]) -> TypeError:
        for name, value in arguments.items():
            try:
                canonical_bytes(value)
            except TypeError as exc:
                return TypeError(
                    f"cache_function cannot key {self.root}: argument {name!r} has no "
                    f"stable cache key. {exc}"
                )
        return TypeError(f"cache_function cannot key {self.root}")  # pragma: no cover

    def call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Return the cached result of the call, computing and storing it on a miss."""
        cache = self.store()
        if not cache.enabled:
            return self.func(*args, **kwargs)
        key = self.key(*args, **kwargs)
        value = cache.get(key, _MISS)
        if value is _MISS:
            value = self.compute(cache, key, args, kwargs)
        return value

    def compute(
        self, cache: store.KeyedCache, key: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Run the function and store its result (unless `unless` rejects it)."""
        counters.slots()[EXECUTIONS] += 1
        value = self.func(*args, **kwargs)
        if self.unless is None or not self.unless(value):
            cache.set(key, value, self.length)
        return value


@overload
def cache_function(length: F) -> F: ...
@overload
def cache_function(
    length: Any = ...,
    *,
    key: Callable[..., Any] | None = ...,
    unless: Callable[[Any], bool] | None = ...,
    alias: str | None = ...,
) -> Callable[[F], F]: ...
def cache_function(
    length: Any = DEFAULT_TIMEOUT,
    *,
    key: Callable[..., Any] | None = None,
    unless: Callable[[Any], bool] | None = None,
    alias: str | None = None,
) -> Any:
    """Memoize a function in keyedcache for `length` seconds (default: the alias TIMEOUT).

    Usable as `@cache_function`, `@cache_function(60)` or with options. The
    result exposes `.invalidate(*args, **kwargs)`, `.refresh(...)`, `.key(...)`
    and `__wrapped__`.
    """
    if callable(length):
        return cache_function()(length)

    def decorator(func: F) -> F:
        memo = Memoized(func, length, key=key, unless=unless, alias=alias)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return memo.call(args, kwargs)

        def invalidate(*args: Any, **kwargs: Any) -> list[str]:
            """Forget the cached result of this one call."""
            return memo.store().delete(memo.key(*args, **kwargs))

        def refresh(*args: Any, **kwargs: Any) -> Any:
            """Compute the call now, store the result and return it."""
            return memo.compute(memo.store(), memo.key(*args, **kwargs), args, kwargs)

        wrapper.invalidate = invalidate  # type: ignore[attr-defined]
        wrapper.refresh = refresh  # type: ignore[attr-defined]
        wrapper.key = memo.key  # type: ignore[attr-defined]
        wrapper.memoized = memo  # type: ignore[attr-defined]
        wrapper.__keyedcache_origin__ = func  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator


def cache_delete_function(func: Callable[..., Any]) -> list[str]:
    """Forget every cached call of `func` (decorated or not), in every process."""
    memo = getattr(func, "memoized", None)
    cache = memo.store() if isinstance(memo, Memoized) else store.default_cache()
    return cache.delete(function_key_root(func), children=True)
