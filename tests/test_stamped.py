"""Stamped entries (backends/stamped.py): O(1) invalidation, reclaiming, decode errors."""

from __future__ import annotations

from typing import Any
from unittest import mock

from keyedcache import cache_delete, cache_get, cache_keys, cache_set, default_cache
from keyedcache.backends import Undecodable
from keyedcache.counters import counters
from tests.conftest import BackendConfig

SUBTREE = ["st::1", "st::1::a", "st::1::a::b", "st::1::c"]


def test_invalidation_never_lists_the_backend(backend: BackendConfig) -> None:
    # O(1) whatever the backend holds: no scan, on any backend, for any invalidation.
    for key in [*SUBTREE, "st::2"]:
        cache_set(key, value=key)
    adapter: Any = default_cache().adapter
    with mock.patch.object(adapter, "scan", side_effect=AssertionError("scanned")) as scan:
        cache_delete("st", 1, children=True)
        cache_delete("st::2")
        cache_delete()
    assert scan.call_count == 0
    assert [cache_get(key, default=None) for key in [*SUBTREE, "st::2"]] == [None] * 5


def test_a_fill_read_before_an_invalidation_is_never_served(backend: BackendConfig) -> None:
    store = default_cache()
    cache_set("st::fill", value="old")
    for invalidate in (
        lambda: cache_delete("st::fill"),
        lambda: cache_delete("st", children=True),
        lambda: cache_delete(),
        lambda: cache_set("st::fill", value="new"),
    ):
        _entry, basis = store.load_for_fill("st::fill")
        invalidate()
        store.fill("st::fill", "computed from old data", basis)
        assert cache_get("st::fill", default=None) != "computed from old data"
        cache_set("st::fill", value="old")


def test_a_fill_with_nothing_in_between_is_stored(backend: BackendConfig) -> None:
    store = default_cache()
    _entry, basis = store.load_for_fill("st::quiet")
    store.fill("st::quiet", "computed", basis)
    assert cache_get("st::quiet") == "computed"


def test_listings_skip_and_reclaim_invalidated_entries(backend: BackendConfig) -> None:
    if not backend.enumerates and backend.name not in ("memcached", "memcached2", "file"):
        return
    for key in [*SUBTREE, "st::2"]:
        cache_set(key, value=key, length=None)
    cache_delete("st", 1, children=True)
    adapter: Any = default_cache().adapter
    stored = [adapter.storage_key(key) for key in SUBTREE[1:]]
    assert any(adapter.raw_get_many(stored).values())  # hidden, not yet reclaimed
    assert cache_keys("st::*") == ["st::2"]
    assert adapter.raw_get_many(stored) == {}  # the listing deleted them


def test_an_entry_that_cannot_be_decoded_is_a_miss_counted_as_a_decode_error(
    backend: BackendConfig,
) -> None:
    cache_set("st::bad", value="fine")
    adapter: Any = default_cache().adapter
    stored = adapter.storage_key("st::bad")
    record = adapter.raw_get_many([stored])[stored]
    # The record's stamp and key stay, its value is bytes no unpickler can read.
    adapter.raw_set_many({stored: (*record[:3], b"\x80\x05not a pickle")}, None)
    before = counters.snapshot()
    assert cache_get("st::bad", default="missed") == "missed"
    after = counters.snapshot()
    assert after["decode_errors"] == before["decode_errors"] + 1
    assert after["errors"] == before["errors"]  # not an outage
    if backend.enumerates:
        assert "st::bad" in cache_keys("st::*")  # listed, so a person can delete it
    # The dashboard's read shows it as undecodable, with the reason.
    shown = default_cache().peek_many(["st::bad"])["st::bad"].value
    assert isinstance(shown, Undecodable)
    assert repr(shown).startswith("<undecodable: ")
    assert cache_delete("st::bad") == []  # nothing readable was there
    cache_set("st::bad", value="again")
    assert cache_get("st::bad") == "again"
