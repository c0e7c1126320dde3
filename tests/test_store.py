"""The store's shared behaviour suite: every test runs on every backend of the `backend` fixture."""

from __future__ import annotations

import contextlib
import datetime
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import caches
from django.test.utils import override_settings

import keyedcache
from keyedcache import (
    CacheNotRespondingError,
    KeyedCache,
    NotCachedError,
    UncacheableValueError,
    cache_delete,
    cache_enable,
    cache_enabled,
    cache_get,
    cache_key,
    cache_require,
    cache_set,
    default_cache,
    is_cached,
)
from keyedcache.backends.base import MAX_KEY_LENGTH
from tests.conftest import BackendConfig

MISS = object()


def cached(*keys: Any, **pairs: Any) -> Any:
    """The value cached under the key, or MISS."""
    return cache_get(*keys, default=MISS, **pairs)


def poll_until(condition: Any, deadline: float, what: str) -> None:
    """Wait until `condition()` is true, at most until `deadline` (time.monotonic)."""
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.02)  # poll interval of a bounded wait, not synchronisation


@contextlib.contextmanager
def clock_ahead(monkeypatch: pytest.MonkeyPatch, seconds: float) -> Iterator[None]:
    """Move the in-process clocks (time.time and Django's timezone.now) `seconds` ahead.

    locmem, file-based and database caches decide expiry in this process with
    these clocks, so their real expiry code runs without waiting.
    """
    import django.core.cache.backends.db as db_backend

    real_time = time.time
    real_now = db_backend.tz_now
    with monkeypatch.context() as patch:
        patch.setattr(time, "time", lambda: real_time() + seconds)
        patch.setattr(
            db_backend, "tz_now", lambda: real_now() + datetime.timedelta(seconds=seconds)
        )
        yield


# -- compat API round trips ------------------------------------------------------------


def test_set_get_round_trip(backend: BackendConfig) -> None:
    cache_set("product", 1, value={"name": "widget", "tags": ["a", "b"]})
    assert cache_get("product", 1) == {"name": "widget", "tags": ["a", "b"]}
    assert is_cached("product", 1)
    assert not is_cached("product", 2)
    # The one-list form and the joined key name the same entry.
    assert cache_get(["product", 1]) == cache_get("product::1")


def test_pairs_are_sorted_and_appended(backend: BackendConfig) -> None:
    cache_set("test", 3, more="yes", value="with pairs")
    assert cache_get("test::3::more::yes") == "with pairs"
    cache_set("p", b=2, a=1, value="sorted")
    assert cache_get("p", "a", 1, "b", 2) == "sorted"
    assert cache_get("p", a=1, b=2) == "sorted"


def test_set_overwrites(backend: BackendConfig) -> None:
    cache_set("over", value=1)
    cache_set("over", value=2, skiplog=True)
    assert cache_get("over") == 2


def test_miss_raises_not_cached_error_with_the_key(backend: BackendConfig) -> None:
    with pytest.raises(NotCachedError) as raised:
        cache_get("nope", 7, colour="red")
    assert raised.value.key == cache_key("nope", 7, colour="red") == "nope::7::colour::red"


def test_miss_returns_default(backend: BackendConfig) -> None:
    assert cache_get("nope", default="fallback") == "fallback"
    assert cache_get("nope", default=None) is None


@pytest.mark.parametrize("value", [None, False, 0, "", 0.0, [], {}], ids=repr)
def test_falsy_values_are_hits(backend: BackendConfig, value: Any) -> None:
    cache_set("falsy", value=value)
    assert cache_get("falsy") == value
    assert type(cache_get("falsy")) is type(value)
    assert cache_get("falsy", default="miss") == value
    assert is_cached("falsy")


def test_cache_get_without_key_raises_value_error(backend: BackendConfig) -> None:
    with pytest.raises(ValueError):
        cache_get()
    with pytest.raises(ValueError):
        cache_set(value=1)
    with pytest.raises(ValueError):
        is_cached()


def test_cache_set_without_value_raises_type_error(backend: BackendConfig) -> None:
    with pytest.raises(TypeError):
        cache_set("novalue")
    assert cached("novalue") is MISS


# -- lengths ---------------------------------------------------------------------------


def test_length_none_never_expires(backend: BackendConfig) -> None:
    cache_set("forever", value="v", length=None)
    entry = default_cache().get_entry("forever")
    assert entry is not None and entry.value == "v"
    assert entry.stale_until is None and entry.fresh_until is None
    assert entry.seconds_left() is None
    assert backend.stored_ttl("forever") is None


def test_explicit_length_is_the_backend_ttl(backend: BackendConfig) -> None:
    cache_set("hour", value="v", length=3600)
    ttl = backend.stored_ttl("hour")
    assert ttl is not None and 3500 < ttl <= 3600
    entry = default_cache().get_entry("hour")
    assert entry is not None and 3500 < (entry.seconds_left() or 0) <= 3600


def test_default_length_is_the_alias_timeout(backend: BackendConfig) -> None:
    with override_settings(CACHES={"default": backend.variant(TIMEOUT=1234)}):
        cache_set("dflt", value="v")
        ttl = backend.stored_ttl("dflt")
        assert ttl is not None and 1134 < ttl <= 1234
    cache_set("dflt2", value="v")  # Django's default TIMEOUT, 300 s
    ttl = backend.stored_ttl("dflt2")
    assert ttl is not None and 200 < ttl <= 300


def test_length_zero_expires_at_once(backend: BackendConfig) -> None:
    cache_set("zero", value="old")
    cache_set("zero", value="new", length=0)
    assert cached("zero") is MISS
    assert not is_cached("zero")
    cache_set("zero2", value="new", length=0)
    assert cached("zero2") is MISS


IN_PROCESS_CLOCK = ("locmem", "file", "db-sqlite", "db-postgres")


def test_short_length_expires(backend: BackendConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    if backend.name in IN_PROCESS_CLOCK:
        # These backends expire on this process's clock: move it instead of waiting.
        # (A few seconds of length: the database cache drops the sub-second part
        # of the expiry time, so a 1 s entry may be gone at once.)
        short = 5
    elif backend.name.startswith("memcached"):
        # memcached's clock ticks in whole seconds: a 1 s item may be gone at the
        # next tick, so it gets 2 s to be visible right after the set.
        short = 2
    else:
        short = 1
    cache_set("short", value="s", length=short)
    cache_set("long", value="l", length=60)
    cache_set("never", value="n", length=None)
    assert cached("short") == "s"
    if backend.name in IN_PROCESS_CLOCK:
        with clock_ahead(monkeypatch, short + 1):
            assert cached("short") is MISS
            assert cached("long") == "l"
            assert cached("never") == "n"
    else:
        # Redis and memcached expire on the server's clock: a bounded wait.
        poll_until(lambda: cached("short") is MISS, time.monotonic() + short + 5, "'short' expired")
    assert cached("short") is MISS
    assert cached("long") == "l"
    assert cached("never") == "n"


# -- deletes ---------------------------------------------------------------------------


def test_delete_returns_the_deleted_key(backend: BackendConfig) -> None:
    cache_set("del", "x", 1, value="v")
    assert cache_delete("del", "x", 1) == ["del::x::1"]
    assert cached("del", "x", 1) is MISS
    assert cache_delete("del", "x", 1) == []


def test_delete_leaves_other_keys(backend: BackendConfig) -> None:
    for key in ("del::x::1", "del::x::1::y", "del::x::10", "del::x"):
        cache_set(key, value=key)
    cache_delete("del::x::1")
    assert cached("del::x::1") is MISS
    assert cached("del::x::1::y") == "del::x::1::y"
    assert cached("del::x::10") == "del::x::10"
    assert cached("del::x") == "del::x"


def test_children_delete_takes_the_subtree_only(backend: BackendConfig) -> None:
    gone = ["del::x::1", "del::x::1::y::1", "del::x::1::y::2", "del::x::1::y::2::z"]
    kept = ["del::x::2", "del::x::2::y::1", "del::x::10::y::1", "del::x", "del", "del::x::1y"]
    for key in gone + kept:
        cache_set(key, value=key)
    cache_delete("del", "x", 1, children=True)
    assert [k for k in gone if cached(k) is not MISS] == []
    assert [k for k in kept if cached(k) != k] == []


def test_children_delete_without_the_key_itself_cached(backend: BackendConfig) -> None:
    cache_set("del::x::1::y::1", value=1)
    cache_set("del::x::2", value=2)
    cache_delete("del", "x", 1, children=True)
    assert cached("del::x::1::y::1") is MISS
    assert cached("del::x::2") == 2


def test_children_delete_stops_at_the_segment_boundary(backend: BackendConfig) -> None:
    for key in ("a::b", "a::b::c", "a::b::c::d", "a::bc", "a::bc::d", "a", "a::b:c", "ab::c"):
        cache_set(key, value=key)
    cache_delete("a::b", children=True)
    assert cached("a::b") is MISS
    assert cached("a::b::c") is MISS
    assert cached("a::b::c::d") is MISS
    for key in ("a::bc", "a::bc::d", "a", "a::b:c", "ab::c"):
        assert cached(key) == key, key


# Characters that mean something in SQL LIKE (% _ and the escape !), in glob
# patterns (* ? [ ] \\) or in keyedcache's own storage keys (~ :); and keys that
# differ only in case (LIKE ignores case on SQLite).
METACHARACTER_KEYS = [
    "p_q",
    "p%q",
    "p!q",
    "p*q",
    "p?q",
    "p[q]",
    "p\\q",
    "p~q",
    "p:q",
    "pXq",
    "pxq",
    "PXQ",
]


@pytest.mark.parametrize("root", METACHARACTER_KEYS)
def test_children_delete_takes_metacharacters_literally(backend: BackendConfig, root: str) -> None:
    for key in METACHARACTER_KEYS:
        cache_set(key, "child", value=key)
        cache_set(key, value=key)
    cache_delete(root, children=True)
    assert cached(root, "child") is MISS
    assert cached(root) is MISS
    for key in METACHARACTER_KEYS:
        if key != root:
            assert cached(key, "child") == key, key
            assert cached(key) == key, key


def test_delete_all_removes_every_keyedcache_entry_and_nothing_else(
    backend: BackendConfig, plain_cache: Any
) -> None:
    keys = ["one", "one::two", "tiefe::ü", "space key::x", "long" + "::segment" * 40]
    for key in keys:
        cache_set(key, value=key)
    cache_set("nolength", value=1, length=None)
    plain_cache.set("plain-key", "survivor", None)
    plain_cache.set("keyedcache", "also a survivor", None)  # the namespace, without its ':'
    cache_delete()
    for key in [*keys, "nolength"]:
        assert cached(key) is MISS, key
    assert plain_cache.get("plain-key") == "survivor"
    assert plain_cache.get("keyedcache") == "also a survivor"
    # The cache still works after a delete-all.
    cache_set("one", value="again")
    assert cache_get("one") == "again"
    assert cached("one::two") is MISS


def test_delete_all_on_an_empty_cache(backend: BackendConfig) -> None:
    assert cache_delete() == []
    cache_set("after", value=1)
    assert cache_get("after") == 1


@pytest.mark.parametrize("root", ["a:", "a b:", "a::b:", "ü:", ":"])
def test_children_delete_below_parts_ending_in_colons(backend: BackendConfig, root: str) -> None:
    # cache_key(root, 'x') is root + '::x': below root, whatever root ends with.
    child = cache_key(root, "x")
    grandchild = cache_key(root, "x", "y")
    sibling = cache_key(root + "z", "x")
    for key in (root, child, grandchild, sibling):
        cache_set(key, value=key)
    cache_delete(root, children=True)
    assert cached(root) is MISS
    assert cached(child) is MISS
    assert cached(grandchild) is MISS
    assert cached(sibling) == sibling


def test_delete_all_takes_memoized_results(backend: BackendConfig) -> None:
    runs: list[int] = []

    @keyedcache.cache_function(300)
    def square(x: int) -> int:
        runs.append(x)
        return x * x

    assert square(3) == square(3) == 9
    assert runs == [3]
    cache_delete()
    assert square(3) == 9
    assert runs == [3, 3]


# -- unusual keys ----------------------------------------------------------------------

UNUSUAL_KEYS = [
    "with space",
    "tab\there",
    "new\nline",
    "ctrl\x00\x01\x7f",
    "ünïcödé",
    "日本語のキー",
    "emoji 🎉",
    "tilde~mark",
    "x" * 300,
    "::".join(f"segment{i}" for i in range(60)),
    "::".join(["ü" * 30] * 12),
    "a b",
    "a.b",
    "a_b",
    "a-b",
    "a\tb",
    "A b",
]


def test_unusual_keys_round_trip_without_warnings(backend: BackendConfig) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for i, key in enumerate(UNUSUAL_KEYS):
            cache_set(key, value=i)
        for i, key in enumerate(UNUSUAL_KEYS):
            assert cache_get(key) == i, key
            assert is_cached(key)
    for key in UNUSUAL_KEYS:
        stored = backend.made_key(key)
        assert len(stored) <= MAX_KEY_LENGTH
        assert all(33 <= ord(c) < 127 for c in stored), stored


def test_similar_keys_stay_distinct(backend: BackendConfig) -> None:
    similar = ["a b", "a.b", "a_b", "a~b", "a\tb", "a  b", "a b ", "a%b", "a", "b"]
    for i, key in enumerate(similar):
        cache_set(key, value=i)
    assert [cache_get(key) for key in similar] == list(range(len(similar)))
    cache_delete("a b")
    assert cached("a b") is MISS
    assert [cache_get(key) for key in similar[1:]] == list(range(1, len(similar)))


def test_children_delete_below_digested_keys(backend: BackendConfig) -> None:
    root = "über menü"
    gone = [root, f"{root}::1", f"{root}::x y", f"{root}::1::ß", f"{root}::{'z' * 100}"]
    kept = ["über menü2::1", "über::1", "über menü ::1", "über_men_::1", "über", "x::über menü"]
    for key in gone + kept:
        cache_set(key, value=key)
    cache_delete(root, children=True)
    assert [k for k in gone if cached(k) is not MISS] == []
    assert [k for k in kept if cached(k) != k] == []


def long_root(segments: int) -> str:
    return "::".join(f"level{i:02d}-{'q' * 12}" for i in range(segments))


@pytest.mark.parametrize(
    "segments",
    [6, 9, 12],
    ids=["root-fits-children-collapse", "root-near-the-limit", "root-collapsed"],
)
def test_children_delete_below_collapsed_keys(backend: BackendConfig, segments: int) -> None:
    root = long_root(segments)
    gone = [
        root,
        f"{root}::child",
        f"{root}::{'c' * 60}",
        f"{root}::{'c' * 60}::{'d' * 60}::{'e' * 60}",
        f"{root}::ü::{'n' * 200}",
    ]
    sibling = root[:-1] + "r"
    kept = [
        sibling,
        f"{sibling}::child",
        f"{sibling}::{'c' * 60}::{'d' * 60}::{'e' * 60}",
        f"{root}x::child",
        long_root(segments - 1),
        f"{long_root(segments - 1)}::{'c' * 200}",
    ]
    for key in gone + kept:
        cache_set(key, value=key)
    assert [k for k in gone + kept if cached(k) != k] == []
    cache_delete(root, children=True)
    assert [k for k in gone if cached(k) is not MISS] == []
    assert [k for k in kept if cached(k) != k] == []


def test_collapsed_keys_are_distinct(backend: BackendConfig) -> None:
    base = long_root(14)
    keys = [f"{base}::{i}" for i in range(5)] + [f"{base}::{'x' * 70}{i}" for i in range(5)]
    for i, key in enumerate(keys):
        cache_set(key, value=i)
    assert [cache_get(key) for key in keys] == list(range(len(keys)))


# -- switching caching off -------------------------------------------------------------


def test_cache_enable_false_turns_caching_off(backend: BackendConfig) -> None:
    cache_set("on", value=1)
    assert cache_enabled()
    cache_enable(False)
    try:
        assert not cache_enabled()
        with pytest.raises(NotCachedError) as raised:
            cache_get("on")
        assert raised.value.key == "on"
        assert cache_get("on", default="d") == "d"
        assert not is_cached("on")
        cache_set("off", value=2)
    finally:
        cache_enable(True)
    assert cache_enabled()
    assert cache_get("on") == 1
    assert cached("off") is MISS


def test_cache_enable_without_argument_enables(backend: BackendConfig) -> None:
    cache_enable(False)
    cache_enable()
    assert cache_enabled()
    cache_set("k", value=1)
    assert cache_get("k") == 1


def test_timeout_zero_disables_caching(backend: BackendConfig) -> None:
    cache_set("before", value=1)
    with override_settings(CACHES={"default": backend.variant(TIMEOUT=0)}):
        assert not cache_enabled()
        cache_set("during", value=2)
        assert cached("during") is MISS
        assert cached("before") is MISS
        with pytest.raises(NotCachedError):
            cache_get("before")
    assert cache_enabled()
    assert cached("during") is MISS  # nothing was written to the backend
    assert cache_get("before") == 1


def test_dummy_cache_disables_caching(backend: BackendConfig) -> None:
    caches_setting = {
        "default": backend.config,
        "dummy": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
    }
    with override_settings(CACHES=caches_setting, KEYEDCACHE_ALIAS="dummy"):
        assert not cache_enabled()
        cache_set("dummy", value=1)
        assert cached("dummy") is MISS
        assert not is_cached("dummy")
        assert cache_delete("dummy") == []
    assert cached("dummy") is MISS


def test_keyedcache_alias_setting_takes_effect(backend: BackendConfig) -> None:
    caches_setting = {
        "default": backend.config,
        "other": backend.variant(KEY_PREFIX=f"{backend.prefix}o"),
    }
    with override_settings(CACHES=caches_setting):
        cache_set("where", value="default")
        with override_settings(KEYEDCACHE_ALIAS="other"):
            assert default_cache().alias == "other"
            assert cached("where") is MISS
            cache_set("where", value="other")
            assert cache_get("where") == "other"
            assert KeyedCache("default").get("where") == "default"
        assert default_cache().alias == "default"
        assert cache_get("where") == "default"
        assert KeyedCache("other").get("where") == "other"
        # A delete-all through one alias leaves the other alone.
        cache_delete()
        assert cached("where") is MISS
        assert KeyedCache("other").get("where") == "other"


# -- health and bad input ----------------------------------------------------------------


def test_cache_require_returns_true(backend: BackendConfig) -> None:
    assert cache_require() is True


def test_cache_require_raises_when_the_backend_is_down(backend: BackendConfig) -> None:
    with backend.down(), pytest.raises(CacheNotRespondingError):
        cache_require()
    assert cache_require() is True


def test_unpicklable_value_raises_and_stores_nothing(backend: BackendConfig) -> None:
    for bad in (threading.Lock(), lambda: 1):
        cache_set("bad", value="old")
        with pytest.raises(UncacheableValueError) as raised:
            cache_set("bad", value=bad)
        assert isinstance(raised.value, TypeError)
        assert raised.value.key == "bad"
        assert "'bad'" in str(raised.value)
        assert cache_get("bad") == "old"

        with pytest.raises(UncacheableValueError) as raised:
            cache_set("fresh", 1, value={"nested": [bad]})
        assert raised.value.key == "fresh::1"
        assert cached("fresh", 1) is MISS


def test_default_cache_is_rebuilt_for_new_settings(backend: BackendConfig) -> None:
    store = default_cache()
    assert store.alias == "default"
    assert store.adapter.name == backend.adapter_name
    assert keyedcache.keyedcache_configure() is default_cache()
    assert caches["default"] is not None
