"""Bad numbers (NaN, infinities, absurd sizes, wrong types) are refused, naming what and where."""

from __future__ import annotations

import decimal
import fractions
import math
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.test import override_settings

from keyedcache import (
    cache_add,
    cache_expire,
    cache_function,
    cache_get,
    cache_key,
    cache_keys,
    cache_lock,
    cache_pttl,
    cache_set,
    cache_set_many,
    cache_ttl,
    conf,
    is_cached,
)
from keyedcache.validation import MAX_SECONDS
from tests.conftest import BackendConfig

#: The tests that do not say otherwise run on locmem only.
pytestmark = pytest.mark.backends("locmem")

NAN = math.nan
INF = math.inf
#: Cheap backends for the write checks: one of each storage family with a server only where cheap.
WRITE_BACKENDS = ("locmem", "db-sqlite", "file", "memcached", "redis")

#: Lengths no write accepts, by family (negative numbers are valid: "expire at once").
BAD_LENGTHS = {
    "nan": NAN,
    "inf": INF,
    "-inf": -INF,
    "huge": 1e300,
    "just-over-max": MAX_SECONDS + 1,
    "huge-int": 10**400,
    "huge-negative-int": -(10**400),
    "str": "60",
    "bool": True,
    "false": False,
    "decimal": decimal.Decimal("60"),
    "list": [60],
}
#: Durations that must be a number > 0 (wait, lock_timeout, cache_lock's timeout).
BAD_POSITIVE = {
    "nan": NAN,
    "inf": INF,
    "-inf": -INF,
    "huge": 1e300,
    "just-over-max": MAX_SECONDS + 1,
    "zero": 0,
    "negative": -1,
    "str": "10",
    "bool": True,
    "none-like": [],
}
#: Durations that must be a number >= 0 (stale, blocking_timeout).
BAD_NON_NEGATIVE = {
    "nan": NAN,
    "inf": INF,
    "-inf": -INF,
    "huge": 1e300,
    "just-over-max": MAX_SECONDS + 1,
    "negative": -0.5,
    "str": "10",
    "bool": True,
}


def bad(table: dict[str, Any]) -> pytest.MarkDecorator:
    """Parametrize over `table`'s values, with its names as ids."""
    return pytest.mark.parametrize("value", list(table.values()), ids=list(table))


def raises_naming(*parts: str) -> Any:
    """pytest.raises(ValueError) whose message contains every one of `parts`, in order."""
    return pytest.raises(ValueError, match=".*".join(re.escape(part) for part in parts))


# -- lengths of writes ------------------------------------------------------------------------


@pytest.mark.backends(*WRITE_BACKENDS)
@bad(BAD_LENGTHS)
def test_cache_set_refuses_a_bad_length(backend: BackendConfig, value: Any) -> None:
    with raises_naming("key 'product::12'", "length must be"):
        cache_set("product", 12, value="new", length=value)
    assert not is_cached("product", 12)
    assert cache_keys() == []


@pytest.mark.backends(*WRITE_BACKENDS)
@pytest.mark.parametrize("value", [NAN, INF, 1e300, "60"], ids=["nan", "inf", "huge", "str"])
def test_a_refused_cache_set_leaves_the_old_value(backend: BackendConfig, value: Any) -> None:
    cache_set("product", 12, value="old", length=600)
    with raises_naming("key 'product::12'", "length"):
        cache_set("product", 12, value="new", length=value)
    assert cache_get("product", 12) == "old"
    ttl = cache_ttl("product", 12)
    assert ttl is not None and 590 < ttl <= 600


@pytest.mark.backends(*WRITE_BACKENDS)
@bad(BAD_LENGTHS)
def test_cache_add_refuses_a_bad_length(backend: BackendConfig, value: Any) -> None:
    with raises_naming("key 'product::12::a'", "length must be"):
        cache_add("product", 12, "a", value="new", length=value)
    assert not is_cached("product", 12, "a")
    assert cache_keys() == []


@pytest.mark.backends(*WRITE_BACKENDS)
@bad(BAD_LENGTHS)
def test_cache_set_many_refuses_a_bad_length_and_writes_nothing(
    backend: BackendConfig, value: Any
) -> None:
    mapping = {("product", i): i for i in range(5)}
    with raises_naming("keys 'product::0', 'product::1', 'product::2' and 2 more", "length"):
        cache_set_many(mapping, length=value)
    assert cache_keys() == []


def test_cache_set_many_of_one_key_names_it(backend: BackendConfig) -> None:
    with raises_naming("key 'only'", "length", "nan"):
        cache_set_many({"only": 1}, length=NAN)
    assert not is_cached("only")


@pytest.mark.backends(*WRITE_BACKENDS)
@bad(BAD_LENGTHS)
def test_cache_expire_refuses_a_bad_length(backend: BackendConfig, value: Any) -> None:
    cache_set("product", 12, value="v", length=600)
    with raises_naming("key 'product::12'", "length must be"):
        cache_expire("product", 12, length=value)
    assert cache_get("product", 12) == "v"
    ttl = cache_ttl("product", 12)
    assert ttl is not None and 590 < ttl <= 600


@pytest.mark.backends("locmem", "db-sqlite", "redis")
def test_the_meaning_of_lengths_is_kept(backend: BackendConfig) -> None:
    cache_set("forever", value=1, length=None)
    assert cache_ttl("forever") is None
    cache_set("now", value=1, length=0)
    cache_set("past", value=1, length=-5)
    cache_set("long-ago", value=1, length=-1e300)
    assert not is_cached("now") and not is_cached("past") and not is_cached("long-ago")
    cache_set("longest", value=1, length=MAX_SECONDS)
    longest = cache_ttl("longest")
    assert longest is not None and MAX_SECONDS - 2 <= longest <= MAX_SECONDS
    cache_set("fraction", value=1, length=fractions.Fraction(3, 2))
    pttl = cache_pttl("fraction")
    assert pttl is not None and 1000 < pttl <= 2000
    assert cache_expire("longest", length=MAX_SECONDS) is True
    assert cache_expire("longest", length=-1) is True
    assert not is_cached("longest")


def test_the_keyedcache_method_names_the_key_too(backend: BackendConfig) -> None:
    from keyedcache import default_cache

    store = default_cache()
    with raises_naming("key 'direct::1'", "length", "inf"):
        store.set(cache_key("direct", 1), "v", INF)
    with raises_naming("key 'direct::1'", "length", "nan"):
        store.add(cache_key("direct", 1), "v", NAN)
    assert not store.is_cached("direct::1")


# -- cache_function ---------------------------------------------------------------------------


def decorate(calls: list[int], **options: Any) -> Callable[..., Any]:
    """Decorate a fresh function with `options`; it records its calls in `calls`."""

    def priced(product_id: int) -> int:
        calls.append(product_id)
        return product_id * 2

    return cache_function(**options)(priced)  # type: ignore[no-any-return]


ROOT = "tests.test_validation.decorate.<locals>.priced"


def check_decoration_refused(name: str, value: Any, **extra: Any) -> None:
    calls: list[int] = []
    with raises_naming(f"cache_function on func::{ROOT}", f"{name}"):
        decorate(calls, **{name: value}, **extra)
    assert calls == []
    assert cache_keys() == []


@bad(BAD_LENGTHS)
def test_cache_function_refuses_a_bad_length(backend: BackendConfig, value: Any) -> None:
    check_decoration_refused("length", value)


def test_cache_function_bare_and_positional_forms_check_too(backend: BackendConfig) -> None:
    with raises_naming("cache_function on func::", "length", "inf"):
        cache_function(INF)(len)
    with raises_naming("cache_function on func::", "length", "nan"):
        cache_function(length=NAN)(len)


@bad(BAD_NON_NEGATIVE)
def test_cache_function_refuses_a_bad_stale(backend: BackendConfig, value: Any) -> None:
    check_decoration_refused("stale", value, length=60)


def test_length_and_stale_together_stay_under_the_maximum(backend: BackendConfig) -> None:
    with raises_naming(f"cache_function on func::{ROOT}", "length + stale"):
        decorate([], length=MAX_SECONDS, stale=1)
    decorate([], length=MAX_SECONDS - 10, stale=10)  # the sum is allowed
    decorate([], length=None, stale=MAX_SECONDS)  # never expires: stale does not add up


@bad(BAD_POSITIVE)
def test_cache_function_refuses_a_bad_wait(backend: BackendConfig, value: Any) -> None:
    check_decoration_refused("wait", value, length=60)


@bad(BAD_POSITIVE)
def test_cache_function_refuses_a_bad_lock_timeout(backend: BackendConfig, value: Any) -> None:
    check_decoration_refused("lock_timeout", value, length=60)


@pytest.mark.parametrize(
    "value",
    [NAN, INF, -INF, 10**400, 0, -1, "1.0", True],
    ids=["nan", "inf", "-inf", "huge-int", "zero", "negative", "str", "bool"],
)
def test_cache_function_refuses_a_bad_early(backend: BackendConfig, value: Any) -> None:
    check_decoration_refused("early", value, length=60)


def test_an_async_function_is_checked_at_decoration_too(backend: BackendConfig) -> None:
    async def fetch(x: int) -> int:
        return x

    with raises_naming("cache_function on func::", "fetch", "wait", "nan"):
        cache_function(60, wait=NAN)(fetch)


def test_valid_numbers_keep_single_flight_on(backend: BackendConfig) -> None:
    calls: list[int] = []
    priced = decorate(
        calls,
        length=fractions.Fraction(120),
        stale=0,
        wait=0.5,
        early=1,
        lock_timeout=MAX_SECONDS,
    )
    memo = priced.memoized  # type: ignore[attr-defined]
    assert memo.lock_timeout == float(MAX_SECONDS)
    assert memo.flight.policy.wait == 0.5
    assert memo.flight.policy.early == 1.0
    assert priced(3) == priced(3) == 6
    assert calls == [3]


# -- cache_lock -------------------------------------------------------------------------------


@bad(BAD_POSITIVE)
def test_cache_lock_refuses_a_bad_timeout(backend: BackendConfig, value: Any) -> None:
    with raises_naming("cache_lock('jobs::nightly')", "timeout must be a number > 0"):
        cache_lock("jobs", "nightly", timeout=value)
    # Nothing was taken: another lock of that name is free.
    other = cache_lock("jobs", "nightly", blocking=False)
    assert other.acquire()
    other.release()


@bad(BAD_NON_NEGATIVE)
def test_cache_lock_refuses_a_bad_blocking_timeout(backend: BackendConfig, value: Any) -> None:
    with raises_naming("cache_lock('jobs::nightly')", "blocking_timeout must be a number >= 0"):
        cache_lock("jobs", "nightly", blocking_timeout=value)
    assert not cache_lock("jobs", "nightly").locked()


def test_cache_lock_keeps_its_valid_values(backend: BackendConfig) -> None:
    lock = cache_lock("ok", timeout=MAX_SECONDS, blocking_timeout=0)
    assert lock.timeout == float(MAX_SECONDS) and lock.blocking_timeout == 0.0
    assert cache_lock("ok", blocking_timeout=None).blocking_timeout is None
    with lock:
        assert lock.owned()


# -- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", [NAN, INF, 1e300, MAX_SECONDS + 1], ids=["nan", "inf", "huge", "just-over-max"]
)
def test_a_duration_setting_refuses_non_finite_and_absurd_values(value: float) -> None:
    with (
        override_settings(KEYEDCACHE_STATS_TTL=value),
        raises_naming("KEYEDCACHE_STATS_TTL", "number of seconds"),
    ):
        conf.stats_ttl()
