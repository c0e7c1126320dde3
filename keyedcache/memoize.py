"""cache_function: memoize a function under a key built from its name and bound arguments."""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, ParamSpec, TypedDict, TypeVar, overload

from django.core.cache.backends.base import DEFAULT_TIMEOUT

from keyedcache import signals, validation
from keyedcache.aflight import AsyncSingleFlight
from keyedcache.amemoize import AsyncCacheSource, asave
from keyedcache.cache import KeyedCache
from keyedcache.callkeys import CallKeys, function_key_root
from keyedcache.counters import ERRORS, EXECUTIONS, WAIT_TIMEOUTS, WAITS, counters
from keyedcache.entry import NO_VALUE, Entry, unpack
from keyedcache.flight import Policy, SingleFlight
from keyedcache.memotypes import AsyncCachedFunction, CachedFunction, Decorator
from keyedcache.registry import default_cache, get_cache

if TYPE_CHECKING:
    from typing_extensions import Unpack

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

DEFAULT_WAIT = 30.0


class MemoizeOptions(TypedDict, total=False):
    """The keyword options of `cache_function` (declared once; docs/memoization.md)."""

    #: Seconds an expired value stays stored and servable while one caller refreshes it (0).
    stale: float
    #: Refresh stale values off the caller's path (False).
    background: bool
    #: XFetch beta for probabilistic early refresh; None (the default) turns it off.
    early: float | None
    #: Longest a caller waits for another's computation (DEFAULT_WAIT seconds).
    wait: float
    #: Seconds a computing caller's lock lives at most (default: `wait`).
    lock_timeout: float | None
    #: Returns the key parts from the call's arguments (default: the arguments).
    key: Callable[..., Any] | None
    #: Results it returns True for are not stored.
    unless: Callable[[Any], bool] | None
    #: The cache alias (default: KEYEDCACHE_ALIAS).
    alias: str | None


class Memoized:
    """The state behind one decorated function: key rules, where it caches, how callers share."""

    def __init__(
        self,
        func: Callable[..., Any],
        length: Any = DEFAULT_TIMEOUT,
        **options: Unpack[MemoizeOptions],
    ) -> None:
        root = function_key_root(func)
        unknown = sorted(set(options) - set(MemoizeOptions.__annotations__))
        if unknown:
            raise TypeError(f"cache_function() on {root} got unknown option(s) {unknown}")
        stale = options.get("stale", 0)
        background = options.get("background", False)
        early = options.get("early")
        wait = options.get("wait", DEFAULT_WAIT)
        lock_timeout = options.get("lock_timeout")
        key = options.get("key")
        unless = options.get("unless")
        alias = options.get("alias")
        where = f"cache_function on {root}"
        length = validation.length(length, where)
        stale = validation.seconds(stale, "stale", where)
        wait = validation.seconds(wait, "wait", where, above_zero=True)
        if early is not None:
            early = validation.seconds(early, "early", where, above_zero=True, maximum=None)
        if lock_timeout is not None:
            lock_timeout = validation.seconds(lock_timeout, "lock_timeout", where, above_zero=True)
        if validation.is_number(length) and length > 0 and length + stale > validation.MAX_SECONDS:
            # The backend keeps the entry for length + stale seconds.
            raise ValueError(
                f"{where}: length + stale must be at most {validation.MAX_TEXT}; "
                f"got {length!r} + {stale!r}"
            )
        self.func = func
        self.length = length
        self.stale = stale
        self.key_func = key
        self.unless = unless
        self.alias = alias
        self.root = root
        self.keys = CallKeys(func, root, key)
        self.is_async = inspect.iscoroutinefunction(func)
        #: Seconds a lock is held at most: a holder that dies frees it after this.
        self.lock_timeout = lock_timeout if lock_timeout is not None else wait
        policy = Policy(wait=wait, background=background, early=early)
        hooks: dict[str, Any] = {
            "on_wait_timeout": functools.partial(_count, root, WAIT_TIMEOUTS),
            "on_refresh_error": functools.partial(_count, root, ERRORS),
            "on_wait": self._waited,
        }
        self.flight = SingleFlight(_Source(self), policy, **hooks)
        self.async_flight = AsyncSingleFlight(AsyncCacheSource(self), policy, **hooks)

    def store(self) -> KeyedCache:
        """The KeyedCache this function caches in (the default one unless `alias`)."""
        if self.alias is None:
            return default_cache()
        return get_cache(self.alias)

    # -- keys -------------------------------------------------------------

    def key(self, *args: Any, **kwargs: Any) -> str:
        """Return the cache key the call `func(*args, **kwargs)` uses."""
        return self.keys.key(args, kwargs)

    # -- storing ----------------------------------------------------------

    def save(self, cache: KeyedCache, key: str, value: Any, cost: float, basis: Any = None) -> None:
        """Store a computed value: fresh for `length`, then stale for `stale` more seconds.

        `basis` is what `KeyedCache.load_for_fill` read before the computation:
        if the call was invalidated meanwhile, the stored value is never served.
        """
        planned = self.to_save(cache, key, value, cost)
        if planned is not None:
            cache.fill_entry(key, planned[0], planned[1], basis)

    def to_save(
        self, cache: KeyedCache, key: str, value: Any, cost: float
    ) -> tuple[Entry, float | None] | None:
        """The entry to store for a computed value and its timeout; None: store nothing."""
        if self.unless is not None and self.unless(value):
            return None
        timeout = cache.adapter.resolve_timeout(self.length)
        keep = cache.adapter.key_to_keep(key)
        if timeout is None:
            return Entry(value, None, None, cost, keep), None
        if timeout <= 0:
            return None  # "expire now": nothing to keep
        now = time.time()
        entry = Entry(value, now + timeout, now + timeout + self.stale, cost, keep)
        return entry, timeout + self.stale

    # -- calling ----------------------------------------------------------

    def call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Return the cached result of the call; on a miss, compute it once across callers."""
        cache = self.store()
        if not cache.enabled:
            return self._run(args, kwargs)
        key = self.keys.key(args, kwargs)
        value, packed = cache.read(key)
        if value is not NO_VALUE and (packed is None or self.flight.policy.early is None):
            return value
        entry = unpack(packed) if packed is not None else None
        return self.flight.get(key, lambda: self._run(args, kwargs), entry, loaded=True)

    async def acall(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The async twin of `call`, for `async def` functions."""
        cache = self.store()
        if not cache.enabled:
            return await self._arun(args, kwargs)
        key = self.keys.key(args, kwargs)
        value, packed = await cache.aread(key)
        if value is not NO_VALUE and (packed is None or self.async_flight.policy.early is None):
            return value
        entry = unpack(packed) if packed is not None else None
        return await self.async_flight.get(
            key, lambda: self._arun(args, kwargs), entry, loaded=True
        )

    def _run(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        counters.slots(self.root)[EXECUTIONS] += 1
        if signals.listening[0]:
            return signals.execution(self.func, self.key(*args, **kwargs), self.root, args, kwargs)
        return self.func(*args, **kwargs)

    async def _arun(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        counters.slots(self.root)[EXECUTIONS] += 1
        if signals.listening[0]:
            key = self.key(*args, **kwargs)
            return await signals.aexecution(self.func, key, self.root, args, kwargs)
        return await self.func(*args, **kwargs)

    def _waited(self, key: str, seconds: float, timed_out: bool) -> None:
        """Count a single-flight wait (and send `single_flight_wait` to any listener)."""
        counters.slots(self.root)[WAITS] += 1
        signals.wait(self.func, key, self.root, seconds, timed_out)

    def refresh(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Compute the call now, store and return the result."""
        cache = self.store()
        key = self.keys.key(args, kwargs)
        basis = cache.load_for_fill(key)[1]
        started = time.perf_counter()
        value = self._run(args, kwargs)
        if cache.enabled:
            self.save(cache, key, value, time.perf_counter() - started, basis)
        return value

    async def arefresh(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The async twin of `refresh`."""
        cache = self.store()
        key = self.keys.key(args, kwargs)
        basis = (await cache.aload_for_fill(key))[1]
        started = time.perf_counter()
        value = await self._arun(args, kwargs)
        if cache.enabled:
            await asave(self, cache, key, value, time.perf_counter() - started, basis)
        return value

    def invalidate(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[str]:
        """Forget the cached result of one call."""
        return self.store().delete(self.keys.key(args, kwargs))

    async def ainvalidate(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[str]:
        """The async twin of `invalidate`."""
        return await self.store().adelete(self.keys.key(args, kwargs))


def _count(root: str, counter: int) -> None:
    counters.slots(root)[counter] += 1


class _Source:
    """Single flight's view of a KeyedCache, for one memoized function."""

    def __init__(self, memo: Memoized) -> None:
        self.memo = memo

    def load(self, key: str) -> Entry | None:
        return self.memo.store().get_entry(key)

    def load_basis(self, key: str) -> tuple[Entry | None, Any]:
        return self.memo.store().load_for_fill(key)

    def save(self, key: str, value: Any, cost: float, basis: Any = None) -> None:
        self.memo.save(self.memo.store(), key, value, cost, basis)

    def acquire(self, key: str, token: str) -> bool | None:
        return self.memo.store().lock_acquire(key, token, self.memo.lock_timeout)

    def release(self, key: str, token: str) -> None:
        self.memo.store().lock_release(key, token)


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

    async def ainvalidate(*args: Any, **kwargs: Any) -> list[str]:
        """Forget the cached result of the call with these arguments (awaitable)."""
        return await memo.ainvalidate(args, kwargs)

    wrapper.key = memo.key  # type: ignore[attr-defined]
    wrapper.invalidate = invalidate  # type: ignore[attr-defined]
    wrapper.ainvalidate = ainvalidate  # type: ignore[attr-defined]
    wrapper.refresh = refresh  # type: ignore[attr-defined]
    wrapper.memoized = memo  # type: ignore[attr-defined]
    wrapper.__keyedcache_origin__ = func  # type: ignore[attr-defined]
    return wrapper


@overload
def cache_function(length: Callable[P, Coroutine[Any, Any, T]]) -> AsyncCachedFunction[P, T]: ...
@overload
def cache_function(length: Callable[P, R]) -> CachedFunction[P, R]: ...
@overload
def cache_function(length: float | None = ..., **options: Unpack[MemoizeOptions]) -> Decorator: ...
def cache_function(length: Any = DEFAULT_TIMEOUT, **options: Unpack[MemoizeOptions]) -> Any:
    """Memoize a function for `length` seconds (omitted: the alias TIMEOUT; None: forever).

    One caller computes a missing value while the others wait for it, in any
    thread or process sharing the cache (`wait` bounds the wait). With
    `stale`, an expired value is kept `stale` more seconds and served while
    one caller refreshes it (off the caller's path with `background=True`);
    `early` (XFetch beta, 1.0 recommended) refreshes hot values before they
    expire. `key=` returns the key parts from the arguments; `unless=` skips
    storing results it returns True for. Usable bare (`@cache_function`).
    The result exposes `.key()`, `.invalidate()`, `.refresh()`, `__wrapped__`,
    typed for mypy and pyright (`memotypes.CachedFunction`: the call signature kept).
    """
    if callable(length):
        return cache_function()(length)

    def decorator(func: Callable[..., Any]) -> Any:
        memo = Memoized(func, length, **options)
        if memo.is_async:
            return _async_wrapper(memo)
        return MemoizedFunction(memo)

    return decorator


def cache_delete_function(func: Callable[..., Any]) -> list[str]:
    """Forget every cached call of `func` (decorated or not), in every process."""
    memo = getattr(func, "memoized", None)
    cache = memo.store() if isinstance(memo, Memoized) else default_cache()
    return cache.delete(function_key_root(func), children=True)
