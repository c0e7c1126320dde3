"""The outage guard (keyedcache/guard.py): fallback, count, rate-limited warning, reraise."""

from __future__ import annotations

import logging
import pickle

import pytest

from keyedcache.counters import counters
from keyedcache.exceptions import CacheBackendError
from keyedcache.guard import Guard


def errors_of(prefix: str) -> int:
    return counters.by_prefix().get(prefix, {}).get("errors", 0)


def broken(*args: object) -> object:
    raise ConnectionError("backend refused the connection")


def test_a_call_that_works_returns_its_result_and_counts_nothing() -> None:
    guard = Guard("default")
    before = errors_of("guardok")
    assert guard.call("get", "guardok::1", "fallback", lambda a, b: a + b, 1, 2) == 3
    assert errors_of("guardok") == before


def test_a_failing_call_returns_the_fallback_and_counts_one_error() -> None:
    guard = Guard("default")
    before = errors_of("guardfail")
    assert guard.call("get", "guardfail::1", "fallback", broken) == "fallback"
    assert guard.call("set", "guardfail::2", None, broken, "x") is None
    assert errors_of("guardfail") == before + 2


def test_warnings_are_rate_limited_but_every_failure_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="keyedcache")
    guard = Guard("aliasname", warn_every=3600)
    for _ in range(3):
        guard.call("get", "guardlog::1", None, broken)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    debugs = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(warnings) == 1
    assert len(debugs) == 2
    message = warnings[0].getMessage()
    assert "'aliasname'" in message and "guardlog::1" in message and "ConnectionError" in message


def test_strict_counts_then_raises_naming_alias_operation_and_key() -> None:
    guard = Guard("somealias")
    before = errors_of("guardraise")
    with pytest.raises(CacheBackendError) as raised:
        guard.call("delete", "guardraise::1", None, broken, strict=True)
    assert errors_of("guardraise") == before + 1
    error = raised.value
    assert (error.alias, error.operation, error.key) == ("somealias", "delete", "guardraise::1")
    assert isinstance(error.__cause__, ConnectionError)
    assert "somealias" in str(error) and "guardraise::1" in str(error)


def test_on_error_may_raise_instead_of_the_fallback() -> None:
    guard = Guard("default")

    def refuse(exc: BaseException) -> None:
        raise ValueError(f"caller's bug: {exc}")

    before = errors_of("guardbug")
    with pytest.raises(ValueError, match="caller's bug"):
        guard.call("set", "guardbug::1", None, broken, on_error=refuse)
    assert errors_of("guardbug") == before  # not an outage: not counted


def test_not_implemented_is_not_an_outage() -> None:
    guard = Guard("default")

    def cannot() -> None:
        raise NotImplementedError("this backend cannot list keys")

    before = errors_of("guardni")
    with pytest.raises(NotImplementedError):
        guard.call("list keys", "guardni::*", None, cannot)
    assert errors_of("guardni") == before


def test_unpicklable_values_raise_through_the_store_instead_of_being_skipped() -> None:
    from keyedcache import UncacheableValueError, cache_set

    with pytest.raises(UncacheableValueError) as raised:
        cache_set("guardpickle", value=lambda: None)
    assert "guardpickle" in str(raised.value)
    assert isinstance(raised.value.__cause__, (pickle.PicklingError, AttributeError, TypeError))
