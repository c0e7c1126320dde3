"""cache_function: memoize a function under a key built from its name and bound arguments."""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable
from typing import Any, TypeVar, overload

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.signals import setting_changed

from keyedcache.entry import Entry, unpack
from keyedcache.flight import AsyncSingleFlight, Policy, SingleFlight
from keyedcache.keys import KEY_DELIM, canonical_bytes, digest
from keyedcache.local import ABSENT
from keyedcache.stats import ERRORS, EXECUTIONS, WAIT_TIMEOUTS, counters
from keyedcache.store import (
    DEFAULT_NAMESPACE,
    RELEVANT_SETTINGS,
    KeyedCache,
    default_cache,
)

F = TypeVar("F", bound=Callable[..., Any])

# Stored under func::<module>.<qualname>::<arguments>, so a children delete of
# func::<module>.<qualname> forgets every call.
FUNC_ROOT = "func"
DEFAULT_WAIT = 30.0

# Arguments of these exact types are written into the key as their repr,
# which is readable and tells 1, '1', 1.0 and True apart.
_PLAIN = frozenset({str, int, float, bool, type(None)})
_PLAIN_KEY_MAX = 64


def function_key_root(func: Callable[..., Any]) -> str:
    """Return the key below which every cached call of `func` is stored."""
    func = getattr(func, "__keyedcache_origin__", func)
    return KEY_DELIM.join((FUNC_ROOT, f"{func.__module__}.{func.__qualname__}"))


# KeyedCaches for the `alias=` option, shared by every function using that alias
# and rebuilt when the cache settings change (as the default one is).
_alias_caches: dict[str, KeyedCache] = {}


def alias_cache(alias: str) -> KeyedCache:
    """Return the KeyedCache for `alias`, in the configured KEYEDCACHE_NAMESPACE."""
    cache = _alias_caches.get(alias)
    if cache is None:
        namespace = getattr(settings, "KEYEDCACHE_NAMESPACE", DEFAULT_NAMESPACE)
        cache = _alias_caches[alias] = KeyedCache(alias, namespace=namespace)
    return cache


def _forget_alias_caches(*, setting: str, **kwargs: Any) -> None:
    if setting in RELEVANT_SETTINGS:
        _alias_caches.clear()


setting_changed.connect(_forget_alias_caches, dispatch_uid="keyedcache.memoize.reset")


class _Binder:
    """Binds call arguments to parameter order, fast for plain signatures."""

    def __init__(self, func: Callable[..., Any]) -> None:
        self.signature = inspect.signature(func)
        params = list(self.signature.parameters.values())
        simple_kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD,)
        # Only plain "def f(a, b=2)" signatures take the fast path; anything
        # with *args, **kwargs, keyword-only or positional-only goes through
        # Signature.bind, which also gives Python's own error messages.
        self.simple = all(p.kind in simple_kinds for p in params)
        self.names = tuple(p.name for p in params)
        self.defaults = {p.name: p.default for p in params if p.default is not p.empty}

    def values(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        """Return every parameter's value, defaults applied, in signature order."""
        if self.simple:
            if not kwargs and len(args) == len(self.names):
                return args
            found = self._fill(args, kwargs)
            if found is not None:
                return found
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return tuple(bound.arguments.values())

    def _fill(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...] | None:
        if len(args) > len(self.names):
            return None
        out = list(args)
        used = 0
        for name in self.names[len(args) :]:
            if name in kwargs:
                out.append(kwargs[name])
                used += 1
            elif name in self.defaults:
                out.append(self.defaults[name])
            else:
                return None  # missing argument: let Signature.bind say so
        return tuple(out) if used == len(kwargs) else None


def _is_plain(value: Any, depth: int = 0) -> bool:
    kind = type(value)
    if kind in _PLAIN:
        return True
    # Tuples and lists of plain values repr faithfully too; sets and dicts do
    # not (set order follows the hash seed, dict order the insertion order).
    if (kind is tuple or kind is list) and depth < 2:
        return all(_is_plain(item, depth + 1) for item in value)
    return False


def _call_text(values: tuple[Any, ...]) -> str | None:
    """The readable '(1,'EUR')' form of plain arguments, or None."""
    for value in values:
        if type(value) not in _PLAIN and not _is_plain(value):
            return None
    text = "(" + ",".join([repr(v) for v in values]) + ")"
    return text if len(text) <= _PLAIN_KEY_MAX else None


class Memoized:
    """The state behind one decorated function: key rules, where it caches, how callers share."""

    def __init__(
        self,
        func: Callable[..., Any],
        length: Any = DEFAULT_TIMEOUT,
        *,
        stale: float = 0,
        background: bool = False,
        early: float | None = None,
        wait: float = DEFAULT_WAIT,
        lock_timeout: float | None = None,
        key: Callable[..., Any] | None = None,
        unless: Callable[[Any], bool] | None = None,
        alias: str | None = None,
    ) -> None:
        root = function_key_root(func)
        _check_number("stale", stale, root, minimum=0)
        _check_number("wait", wait, root, minimum=0, exclusive=True)
        if early is not None:
            _check_number("early", early, root, minimum=0, exclusive=True)
        if lock_timeout is not None:
            _check_number("lock_timeout", lock_timeout, root, minimum=0, exclusive=True)
        self.func = func
        self.length = length
        self.stale = float(stale)
        self.key_func = key
        self.unless = unless
        self.alias = alias
        self.root = root
        self.binder = _Binder(func)
        self.is_async = inspect.iscoroutinefunction(func)
        #: Seconds a lock is held at most: a holder that dies frees it after this.
        self.lock_timeout = float(lock_timeout if lock_timeout is not None else wait)
        policy = Policy(wait=float(wait), background=background, early=early)
        hooks: dict[str, Any] = {
            "on_wait_timeout": functools.partial(_count, root, WAIT_TIMEOUTS),
            "on_refresh_error": functools.partial(_count, root, ERRORS),
        }
        self.flight = SingleFlight(_Source(self), policy, **hooks)
        self.async_flight = AsyncSingleFlight(_AsyncSource(self), policy, **hooks)

    def store(self) -> KeyedCache:
        """The KeyedCache this function caches in (the default one unless `alias`)."""
        if self.alias is None:
            return default_cache()
        return alias_cache(self.alias)

    # -- keys -------------------------------------------------------------

    def key(self, *args: Any, **kwargs: Any) -> str:
        """Return the cache key the call `func(*args, **kwargs)` uses."""
        if self.key_func is not None:
            return self._custom_key(args, kwargs)
        # Bound in signature order with defaults applied, so f(1, 2), f(1, b=2)
        # and f(a=1, b=2) share one entry.
        values = self.binder.values(args, kwargs)
        text = _call_text(values)
        if text is not None:
            return f"{self.root}{KEY_DELIM}{text}"
        # Anything else: a digest of the type-tagged canonical encoding.
        try:
            encoded = canonical_bytes(values)
        except TypeError:
            raise self._unkeyable(values) from None
        return f"{self.root}{KEY_DELIM}{digest(encoded)}"

    def _custom_key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        parts = self.key_func(*args, **kwargs)  # type: ignore[misc]
        if not isinstance(parts, (list, tuple)):
            parts = (parts,)
        try:
            encoded = canonical_bytes(tuple(parts))
        except TypeError as exc:
            raise TypeError(
                f"cache_function cannot key {self.root}: its key= function returned "
                f"a part with no stable cache key. {exc}"
            ) from None
        return f"{self.root}{KEY_DELIM}{digest(encoded)}"

    def _unkeyable(self, values: tuple[Any, ...]) -> TypeError:
        names = self.binder.names if self.binder.simple else self._bound_names(values)
        for name, value in zip(names, values, strict=False):
            try:
                canonical_bytes(value)
            except TypeError as exc:
                return TypeError(
                    f"cache_function cannot key {self.root}: argument {name!r} has no "
                    f"stable cache key. {exc}"
                )
        return TypeError(f"cache_function cannot key {self.root}")  # pragma: no cover

    def _bound_names(self, values: tuple[Any, ...]) -> tuple[str, ...]:
        return tuple(self.binder.signature.parameters)[: len(values)]

    # -- storing ----------------------------------------------------------

    def save(self, cache: KeyedCache, key: str, value: Any, cost: float) -> None:
        """Store a computed value: fresh for `length`, then stale for `stale` more seconds."""
        if self.unless is not None and self.unless(value):
            return
        timeout = cache.adapter.resolve_timeout(self.length)
        keep = cache.adapter.key_to_keep(key)
        if timeout is None:
            cache.set_entry(key, Entry(value, None, None, cost, keep), None)
            return
        if timeout <= 0:
            return  # "expire now": nothing to keep
        now = time.time()
        entry = Entry(value, now + timeout, now + timeout + self.stale, cost, keep)
        cache.set_entry(key, entry, timeout + self.stale)

    # -- calling ----------------------------------------------------------

    def call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Return the cached result of the call; on a miss, compute it once across callers."""
        cache = self.store()
        if not cache.enabled:
            return self._run(args, kwargs)
        key = self.key(*args, **kwargs)
        value, packed = cache.read(key)
        if value is not ABSENT and (packed is None or self.flight.policy.early is None):
            return value
        entry = unpack(packed) if packed is not None else None
        return self.flight.get(key, lambda: self._run(args, kwargs), entry, loaded=True)

    async def acall(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The async twin of `call`, for `async def` functions."""
        cache = self.store()
        if not cache.enabled:
            return await self._arun(args, kwargs)
        key = self.key(*args, **kwargs)
        value, packed = await sync_to_async(cache.read)(key)
        if value is not ABSENT and (packed is None or self.async_flight.policy.early is None):
            return value
        entry = unpack(packed) if packed is not None else None
        return await self.async_flight.get(
            key, lambda: self._arun(args, kwargs), entry, loaded=True
        )

    def _run(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        counters.slots(self.root)[EXECUTIONS] += 1
        return self.func(*args, **kwargs)

    async def _arun(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        counters.slots(self.root)[EXECUTIONS] += 1
        return await self.func(*args, **kwargs)

    def refresh(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Compute the call now, store and return the result."""
        cache = self.store()
        started = time.perf_counter()
        value = self._run(args, kwargs)
        if cache.enabled:
            self.save(cache, self.key(*args, **kwargs), value, time.perf_counter() - started)
        return value

    async def arefresh(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The async twin of `refresh`."""
        cache = self.store()
        started = time.perf_counter()
        value = await self._arun(args, kwargs)
        if cache.enabled:
            await sync_to_async(self.save)(
                cache, self.key(*args, **kwargs), value, time.perf_counter() - started
            )
        return value

    def invalidate(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[str]:
        """Forget the cached result of one call."""
        return self.store().delete(self.key(*args, **kwargs))


def _count(root: str, counter: int) -> None:
    counters.slots(root)[counter] += 1


def _check_number(
    name: str, value: Any, root: str, *, minimum: float, exclusive: bool = False
) -> None:
    bad = (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (value <= minimum if exclusive else value < minimum)
    )
    if bad:
        relation = "greater than" if exclusive else "at least"
        raise ValueError(
            f"cache_function({name}={value!r}) on {root}: {name} must be a number "
            f"{relation} {minimum}."
        )


class _Source:
    """Single flight's view of a KeyedCache, for one memoized function."""

    def __init__(self, memo: Memoized) -> None:
        self.memo = memo

    def load(self, key: str) -> Entry | None:
        return self.memo.store().get_entry(key)

    def save(self, key: str, value: Any, cost: float) -> None:
        self.memo.save(self.memo.store(), key, value, cost)

    def acquire(self, key: str, token: str) -> bool | None:
        return self.memo.store().lock_acquire(key, token, self.memo.lock_timeout)

    def release(self, key: str, token: str) -> None:
        self.memo.store().lock_release(key, token)


class _AsyncSource:
    """The async twin of _Source: backend calls run in a worker thread, as Django's own do.

    Thread-sensitive, as Django's own async cache methods: `caches[alias]` is
    shared by every thread serving one async context, and memcached clients
    are not thread safe, so backend calls must not run in several threads.
    """

    def __init__(self, memo: Memoized) -> None:
        self.sync = _Source(memo)

    async def load(self, key: str) -> Entry | None:
        return await sync_to_async(self.sync.load)(key)

    async def save(self, key: str, value: Any, cost: float) -> None:
        await sync_to_async(self.sync.save)(key, value, cost)

    async def acquire(self, key: str, token: str) -> bool | None:
        return await sync_to_async(self.sync.acquire)(key, token)

    async def release(self, key: str, token: str) -> None:
        await sync_to_async(self.sync.release)(key, token)


class MemoizedFunction:
    """What `cache_function` returns for a plain function: callable, with helpers.

    As a method it binds like a function does, and so do its helpers:
    `product.price.invalidate()` forgets `product.price()`.
    """

    def __init__(self, memo: Memoized) -> None:
        self.memoized = memo
        self.__keyedcache_origin__ = memo.func
        functools.update_wrapper(self, memo.func)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.memoized.call(args, kwargs)

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return self
        return BoundMemoizedFunction(self, instance)

    def __reduce__(self) -> str:
        # Pickled by reference, as functions are (multiprocessing needs it).
        return str(self.__dict__["__qualname__"])

    def key(self, *args: Any, **kwargs: Any) -> str:
        """The cache key the call with these arguments uses."""
        return self.memoized.key(*args, **kwargs)

    def invalidate(self, *args: Any, **kwargs: Any) -> list[str]:
        """Forget the cached result of the call with these arguments."""
        return self.memoized.invalidate(args, kwargs)

    def refresh(self, *args: Any, **kwargs: Any) -> Any:
        """Compute the call now, store the result and return it."""
        return self.memoized.refresh(args, kwargs)


class BoundMemoizedFunction:
    """A memoized method bound to an instance; the helpers pass the instance too."""

    __slots__ = ("function", "instance")

    def __init__(self, function: MemoizedFunction, instance: Any) -> None:
        self.function = function
        self.instance = instance

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function.memoized.call((self.instance, *args), kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.function, name)

    def key(self, *args: Any, **kwargs: Any) -> str:
        """The cache key of this method call."""
        return self.function.memoized.key(self.instance, *args, **kwargs)

    def invalidate(self, *args: Any, **kwargs: Any) -> list[str]:
        """Forget the cached result of this method call."""
        return self.function.memoized.invalidate((self.instance, *args), kwargs)

    def refresh(self, *args: Any, **kwargs: Any) -> Any:
        """Compute this method call now, store and return the result."""
        return self.function.memoized.refresh((self.instance, *args), kwargs)


def _async_wrapper(memo: Memoized) -> Callable[..., Any]:
    func = memo.func

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        return await memo.acall(args, kwargs)

    async def refresh(*args: Any, **kwargs: Any) -> Any:
        """Compute the call now, store the result and return it."""
        return await memo.arefresh(args, kwargs)

    def invalidate(*args: Any, **kwargs: Any) -> list[str]:
        """Forget the cached result of the call with these arguments."""
        return memo.invalidate(args, kwargs)

    wrapper.key = memo.key  # type: ignore[attr-defined]
    wrapper.invalidate = invalidate  # type: ignore[attr-defined]
    wrapper.refresh = refresh  # type: ignore[attr-defined]
    wrapper.memoized = memo  # type: ignore[attr-defined]
    wrapper.__keyedcache_origin__ = func  # type: ignore[attr-defined]
    return wrapper


@overload
def cache_function(length: F) -> F: ...
@overload
def cache_function(
    length: Any = ...,
    *,
    stale: float = ...,
    background: bool = ...,
    early: float | None = ...,
    wait: float = ...,
    lock_timeout: float | None = ...,
    key: Callable[..., Any] | None = ...,
    unless: Callable[[Any], bool] | None = ...,
    alias: str | None = ...,
) -> Callable[[F], F]: ...
def cache_function(
    length: Any = DEFAULT_TIMEOUT,
    *,
    stale: float = 0,
    background: bool = False,
    early: float | None = None,
    wait: float = DEFAULT_WAIT,
    lock_timeout: float | None = None,
    key: Callable[..., Any] | None = None,
    unless: Callable[[Any], bool] | None = None,
    alias: str | None = None,
) -> Any:
    """Memoize a function for `length` seconds (omitted: the alias TIMEOUT; None: forever).

    One caller computes a missing value while the others wait for it, in any
    thread or process sharing the cache (`wait` bounds the wait). With
    `stale`, an expired value is kept `stale` more seconds and served while
    one caller refreshes it (off the caller's path with `background=True`);
    `early` (XFetch beta, 1.0 recommended) refreshes hot values before they
    expire. `key=` returns the key parts from the arguments; `unless=` skips
    storing results it returns True for. Usable bare (`@cache_function`).
    The result exposes `.key()`, `.invalidate()`, `.refresh()`, `__wrapped__`.
    """
    if callable(length):
        return cache_function()(length)

    def decorator(func: F) -> F:
        memo = Memoized(
            func,
            length,
            stale=stale,
            background=background,
            early=early,
            wait=wait,
            lock_timeout=lock_timeout,
            key=key,
            unless=unless,
            alias=alias,
        )
        if memo.is_async:
            return _async_wrapper(memo)  # type: ignore[return-value]
        return MemoizedFunction(memo)  # type: ignore[return-value]

    return decorator


def cache_delete_function(func: Callable[..., Any]) -> list[str]:
    """Forget every cached call of `func` (decorated or not), in every process."""
    memo = getattr(func, "memoized", None)
    cache = memo.store() if isinstance(memo, Memoized) else default_cache()
    return cache.delete(function_key_root(func), children=True)
