"""The first-level cache: a context-local scope that answers repeated reads without the backend."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction

from keyedcache import conf
from keyedcache.entry import NO_VALUE
from keyedcache.keys import KEY_DELIM

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_SIZE = conf.DEFAULT_REQUEST_CACHE_SIZE


class Scope:
    """What one request (or task) has read and written, per KeyedCache.

    Values are shared by every reader in the scope, so cached values are to be
    treated as read-only.
    """

    __slots__ = ("by_signal", "limit", "outer", "tables")

    def __init__(self, limit: int, outer: Scope | None = None, by_signal: bool = False) -> None:
        self.limit = limit
        self.tables: dict[str, dict[str, Any]] = {}
        #: The scope this one replaced (only for scopes opened by request signals).
        self.outer = outer
        self.by_signal = by_signal

    def table(self, owner: str) -> dict[str, Any]:
        """Return the key -> value table of one KeyedCache (`owner` is its scope id)."""
        table = self.tables.get(owner)
        if table is None:
            table = self.tables[owner] = {}
        return table

    def remember(self, owner: str, key: str, value: Any) -> None:
        """Remember `value` (NO_VALUE: known absent) for `key`, dropping the oldest when full."""
        if self.limit <= 0:
            return  # a size of 0 remembers nothing
        table = self.table(owner)
        if key not in table and len(table) >= self.limit:
            # dicts keep insertion order: the first key is the oldest.
            del table[next(iter(table))]
        table[key] = value

    def forget_subtree(self, owner: str, key: str) -> None:
        """Mark `key` absent and drop every remembered key below it."""
        table = self.table(owner)
        below = key + KEY_DELIM
        for stale in [k for k in table if k.startswith(below)]:
            del table[stale]
        self.remember(owner, key, NO_VALUE)  # through remember(): the bound holds

    def forget_all(self, owner: str) -> None:
        """Drop everything remembered for one KeyedCache."""
        self.tables.pop(owner, None)


_current: ContextVar[Scope | None] = ContextVar("keyedcache_scope", default=None)

#: The _scope() managers request_cache entered in this context, innermost last.
_managers: ContextVar[tuple[Any, ...]] = ContextVar("keyedcache_scope_managers", default=())

#: Bound `get` of the context variable: the store calls it on every read.
current_scope = _current.get


def scope_size() -> int:
    """The most keys one scope remembers per cache (setting KEYEDCACHE_REQUEST_CACHE_SIZE)."""
    return conf.request_cache_size()


@contextmanager
def _scope() -> Iterator[Scope]:
    outer = _current.get()
    if outer is not None:
        yield outer  # nested scopes share the outer one
        return
    token = _current.set(Scope(scope_size()))
    try:
        yield _current.get()  # type: ignore[misc]
    finally:
        _current.reset(token)


class request_cache:
    """Open a first-level cache scope: a context manager and a decorator, sync or async.

    Inside it, the first read of a key goes to the backend and later reads
    of that key are answered from memory; writes and deletes made through
    keyedcache update the scope at once. Nothing outlives the scope.
    """

    # The open managers live in the context, not on the instance, so one
    # instance may be entered by concurrent threads and tasks.

    def __enter__(self) -> Scope:
        manager = _scope()
        scope = manager.__enter__()
        _managers.set((*_managers.get(), manager))
        return scope

    def __exit__(self, *exc: Any) -> None:
        managers = _managers.get()
        _managers.set(managers[:-1])
        managers[-1].__exit__(*exc)

    async def __aenter__(self) -> Scope:
        return self.__enter__()

    async def __aexit__(self, *exc: Any) -> None:
        self.__exit__(*exc)

    def __call__(self, func: F) -> F:
        # asgiref's test also knows callables marked with markcoroutinefunction
        # (sync_to_async results, async-capable middleware).
        if iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with _scope():
                    return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with _scope():
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


def open_scope() -> None:
    """Start a fresh scope in the current context (for request_started receivers).

    Always fresh, even if a scope is open: a request whose request_finished
    never came must not hand its values to the next request in the thread.
    """
    current = _current.get()
    # A scope left by a request that never finished is dropped, not kept as
    # the outer one: otherwise such leftovers would chain up request after request.
    outer = current.outer if current is not None and current.by_signal else current
    _current.set(Scope(scope_size(), outer=outer, by_signal=True))


def close_scope() -> None:
    """End the scope opened by `open_scope`, restoring the one it replaced."""
    scope = _current.get()
    if scope is not None and scope.by_signal:
        _current.set(scope.outer)
