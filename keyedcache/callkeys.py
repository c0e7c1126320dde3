"""The cache key of a memoized call, from the function and its bound arguments (no storage)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from keyedcache.keys import KEY_DELIM, canonical_bytes, digest

# Stored under func::<module>.<qualname>::<arguments>, so a children delete of
# func::<module>.<qualname> forgets every call.
FUNC_ROOT = "func"

# Arguments of these exact types are written into the key as their repr,
# which is readable and tells 1, '1', 1.0 and True apart.
_PLAIN = frozenset({str, int, float, bool, type(None)})
_PLAIN_KEY_MAX = 64


def function_key_root(func: Callable[..., Any]) -> str:
    """Return the key below which every cached call of `func` is stored."""
    func = getattr(func, "__keyedcache_origin__", func)
    return KEY_DELIM.join((FUNC_ROOT, f"{func.__module__}.{func.__qualname__}"))


class Binder:
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


def is_plain(value: Any, depth: int = 0) -> bool:
    kind = type(value)
    if kind in _PLAIN:
        return True
    # Tuples and lists of plain values repr faithfully too; sets and dicts do
    # not (set order follows the hash seed, dict order the insertion order).
    if (kind is tuple or kind is list) and depth < 2:
        return all(is_plain(item, depth + 1) for item in value)
    return False


def call_text(values: tuple[Any, ...]) -> str | None:
    """The readable '(1,'EUR')' form of plain arguments, or None."""
    for value in values:
        if type(value) not in _PLAIN and not is_plain(value):
            return None
    text = "(" + ",".join([repr(v) for v in values]) + ")"
    return text if len(text) <= _PLAIN_KEY_MAX else None


class CallKeys:
    """The cache keys of one memoized function's calls: readable if plain, else a digest."""

    def __init__(
        self, func: Callable[..., Any], root: str, key_func: Callable[..., Any] | None
    ) -> None:
        self.root = root
        self.key_func = key_func
        self.binder = Binder(func)

    def key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """Return the cache key the call `func(*args, **kwargs)` uses."""
        if self.key_func is not None:
            return self._custom_key(args, kwargs)
        # Bound in signature order with defaults applied, so f(1, 2), f(1, b=2)
        # and f(a=1, b=2) share one entry.
        values = self.binder.values(args, kwargs)
        text = call_text(values)
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
