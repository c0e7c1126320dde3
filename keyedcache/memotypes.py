"""The static types of what `cache_function` returns: the call signature kept, the helpers typed.

Only for type checkers (mypy, pyright, no plugin): at run time a decorated
function is a `memoize.MemoizedFunction` (or, for `async def`, a coroutine
function with the same helpers). The protocols say what both offer.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, overload

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
R2 = TypeVar("R2")
T_co = TypeVar("T_co", covariant=True)
T2 = TypeVar("T2")
S = TypeVar("S")


class BoundCachedFunction(Protocol[P, R_co]):
    """A memoized method read from an instance: the helpers take the instance too."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co:
        """The cached result of the call (computed once on a miss)."""
        ...

    def key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The cache key this call uses."""
        ...

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> list[str]:
        """Forget the cached result of this call."""
        ...

    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R_co:
        """Compute the call now, store and return the result."""
        ...


class CachedFunction(Protocol[P, R_co]):
    """A function decorated with `cache_function`: its own signature, plus its helpers."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co:
        """The cached result of the call (computed once on a miss)."""
        ...

    def key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The cache key the call with these arguments uses."""
        ...

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> list[str]:
        """Forget the cached result of the call with these arguments."""
        ...

    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R_co:
        """Compute the call now, store and return the result."""
        ...

    @property
    def __wrapped__(self) -> Callable[P, R_co]:
        """The undecorated function."""
        ...

    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None, /) -> CachedFunction[P, R_co]:
        """Read from the class: the function itself."""
        ...

    @overload
    def __get__(
        self: CachedFunction[Concatenate[S, P2], R2],
        instance: S,
        owner: type[Any] | None = None,
        /,
    ) -> BoundCachedFunction[P2, R2]:
        """Read from an instance: a method bound to it, helpers included."""
        ...


class AsyncCachedFunction(CachedFunction[P, Coroutine[Any, Any, T_co]], Protocol[P, T_co]):
    """An `async def` function decorated with `cache_function`: also `await f.ainvalidate()`."""

    async def ainvalidate(self, *args: P.args, **kwargs: P.kwargs) -> list[str]:
        """Forget the cached result of the call with these arguments, without blocking."""
        ...


class Decorator(Protocol):
    """What `cache_function(...)` with options returns: it keeps the function's signature."""

    @overload
    def __call__(
        self, func: Callable[P2, Coroutine[Any, Any, T2]], /
    ) -> AsyncCachedFunction[P2, T2]: ...
    @overload
    def __call__(self, func: Callable[P2, R2], /) -> CachedFunction[P2, R2]: ...
