"""What type checkers see of decorated functions: signature kept, helpers typed (and they run).

mypy checks this file (pyproject.toml, [tool.mypy] files): `assert_type` fails
the check when a type is not exactly the one named (Any included), and each
`# type: ignore[...]` marks a call that must stay an error (an unused ignore is
one too, with warn_unused_ignores). pytest runs the same calls for real.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

if sys.version_info >= (3, 11):
    from typing import assert_type
else:  # pragma: no cover
    from typing_extensions import assert_type

from keyedcache.memoize import cache_function
from keyedcache.memotypes import AsyncCachedFunction, BoundCachedFunction, CachedFunction

calls: list[str] = []


@cache_function(length=60)
def price(product_id: int, currency: str = "EUR") -> float:
    """A memoized function with options."""
    calls.append(f"price {product_id} {currency}")
    return product_id * 1.5


@cache_function
def label(product_id: int) -> str:
    """A memoized function, decorated bare."""
    calls.append(f"label {product_id}")
    return f"#{product_id}"


@cache_function(60)
async def stock(product_id: int) -> int:
    """A memoized coroutine function."""
    calls.append(f"stock {product_id}")
    return product_id * 10


class Product:
    """A class with a memoized method."""

    def __init__(self, pk: int) -> None:
        self.pk = pk

    @cache_function(60)
    def total(self, quantity: int) -> float:
        """A memoized method."""
        calls.append(f"total {self.pk} {quantity}")
        return self.pk * quantity * 1.0


@pytest.fixture(autouse=True)
def _fresh(backend: object) -> None:
    calls.clear()


@pytest.mark.backends("locmem")
def test_a_decorated_function_keeps_its_signature_and_types_its_helpers() -> None:
    declared: CachedFunction[[int, str], float] = price
    assert declared is price
    assert_type(price(2, "EUR"), float)
    assert_type(price.key(2, "EUR"), str)
    assert_type(price.invalidate(2, currency="EUR"), list[str])
    assert_type(price.refresh(2), float)
    original: Callable[[int, str], float] = price.__wrapped__
    key: str = price.key(2, "EUR")
    price.invalidate(2, "EUR")
    calls.clear()
    assert price(2, "EUR") == 3.0 and price(2, "EUR") == 3.0
    assert calls == ["price 2 EUR"]
    assert key.startswith("func::") and price.invalidate(2, "EUR") == [key]
    assert price.refresh(2, "EUR") == 3.0 and len(calls) == 2
    assert original(2, "EUR") == 3.0
    with pytest.raises(TypeError):
        price("2")  # type: ignore[arg-type]  # the argument types are kept
    with pytest.raises(TypeError):
        price.key(2, "EUR", "extra")  # type: ignore[call-arg]  # so is the arity, helpers too
    wrong: str = price(2)  # type: ignore[assignment]  # and the result type
    assert float(wrong) == 3.0


@pytest.mark.backends("locmem")
def test_a_bare_decorator_types_the_same() -> None:
    declared: CachedFunction[[int], str] = label
    assert declared is label
    assert_type(label.key(7), str)
    assert label(7) == "#7" == label(7) and calls == ["label 7"]
    assert label.invalidate(7) == [label.key(7)]


@pytest.mark.backends("locmem")
def test_an_async_function_returns_awaitables() -> None:
    declared: AsyncCachedFunction[[int], int] = stock
    assert declared is stock
    assert_type(stock.key(3), str)

    async def main() -> tuple[int, int, list[str], int]:
        pending = stock(3)
        _ = assert_type(pending, Coroutine[Any, Any, int])
        first = await pending
        second = await stock(3)
        dropped = await stock.ainvalidate(3)
        assert_type(dropped, list[str])
        refreshing = stock.refresh(3)
        _ = assert_type(refreshing, Coroutine[Any, Any, int])
        return first, second, dropped, await refreshing

    first, second, dropped, refreshed = asyncio.run(main())
    assert (first, second, refreshed) == (30, 30, 30)
    assert calls == ["stock 3", "stock 3"]  # once, then the refresh
    assert dropped == [stock.key(3)]


@pytest.mark.backends("locmem")
def test_a_method_binds_its_instance_and_so_do_its_helpers() -> None:
    product = Product(4)
    bound: BoundCachedFunction[[int], float] = product.total
    assert bound(2) == 8.0
    assert_type(product.total(2), float)
    assert_type(product.total.key(2), str)
    unbound: CachedFunction[[Product, int], float] = Product.total
    assert unbound is Product.total
    assert product.total(2) == 8.0 == product.total(2) and calls == ["total 4 2"]
    assert product.total.key(2) == Product.total.key(product, 2)
    assert product.total.invalidate(2) == [product.total.key(2)]
    assert product.total.refresh(2) == 8.0 and len(calls) == 2
    with pytest.raises(TypeError):
        product.total("2")  # type: ignore[arg-type]  # the instance is bound, the rest typed
