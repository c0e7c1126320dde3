"""Backend adapters: selection, exact delete results, and deletes seen across real processes."""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest
from django.core.cache import caches
from django.test.utils import override_settings

from keyedcache import cache_delete, cache_get, cache_keys, cache_set, default_cache
from keyedcache.backends import adapter_class_for
from keyedcache.backends.stamped import StampedAdapter as GenerationalAdapter
from tests.conftest import BackendConfig
from tests.procs import BoundWorker, run_in_child

MISS = object()

ADAPTER_CLASSES = {
    "locmem": "LocMemAdapter",
    "database": "DatabaseAdapter",
    "redis": "RedisAdapter",
    "django-redis": "DjangoRedisAdapter",
    "django-valkey": "ValkeyAdapter",
    "valkey-cluster": "ValkeyClusterAdapter",
    "memcached": "MemcachedAdapter",
    "filebased": "FileBasedAdapter",
}

# A subtree, its neighbours, and keys that are digested or collapsed in storage.
LONG = "::".join(f"deep{i:02d}-{'w' * 14}" for i in range(12))
SUBTREE = [
    "xp::1",
    "xp::1::a",
    "xp::1::a::b",
    "xp::1::ünï cödé",
    "xp::1::ünï cödé::x",
    f"xp::1::{LONG}",
    f"xp::1::{LONG}::leaf",
]
OUTSIDE = ["xp::2", "xp::2::a", "xp::10::a", "xp", "xp::1a", "other::xp::1"]
ALL_KEYS = SUBTREE + OUTSIDE


def custom_key_func(key: str, key_prefix: str, version: int) -> str:
    """A KEY_FUNCTION other than Django's (valid for memcached too)."""
    return f"kf|{key_prefix}|{version}|{key}"


def read_all(keys: list[str]) -> dict[str, Any]:
    return {key: cache_get(key, default=MISS) for key in keys}


def present(keys: list[str]) -> list[str]:
    return [key for key in keys if cache_get(key, default=MISS) is not MISS]


CHILD_WRITE = "for k in keys: cache_set(k, value='child:' + k)"
CHILD_PRESENT = "[k for k in keys if cache_get(k, default=None) is not None]"


# -- adapter selection -----------------------------------------------------------------


def test_each_backend_gets_its_adapter(backend: BackendConfig) -> None:
    adapter = default_cache().adapter
    assert adapter.name == backend.adapter_name
    assert type(adapter).__name__ == ADAPTER_CLASSES[backend.adapter_name]
    assert adapter_class_for("default") is type(adapter)
    assert adapter.enumerates is backend.enumerates


def test_custom_key_function_falls_back_to_generation_tokens(backend: BackendConfig) -> None:
    config = backend.variant(KEY_FUNCTION="tests.test_backends.custom_key_func")
    with override_settings(CACHES={"default": config}):
        adapter = default_cache().adapter
        assert isinstance(adapter, GenerationalAdapter)
        if backend.enumerates:
            assert adapter.name == "generic"
        else:
            assert adapter.name == backend.adapter_name
        assert caches["default"].make_key("x").startswith("kf|")
        for key in ALL_KEYS:
            cache_set(key, value=key)
        assert read_all(ALL_KEYS) == {key: key for key in ALL_KEYS}
        if backend.name == "locmem":
            stored = caches["default"]._cache
            assert stored and all(made.startswith("kf|") for made in stored)
        cache_delete("xp", 1, children=True)
        assert present(SUBTREE) == []
        assert present(OUTSIDE) == OUTSIDE
        cache_delete()
        assert present(OUTSIDE) == []
        cache_set("xp::1::a", value="again")
        assert cache_get("xp::1::a") == "again"


# -- what deletes return ---------------------------------------------------------------


def test_children_delete_returns_the_deleted_keys(backend: BackendConfig) -> None:
    for key in ALL_KEYS:
        cache_set(key, value=key)
    deleted = cache_delete("xp", 1, children=True)
    # O(1) on every backend: nothing is listed, so only the key itself is reported.
    assert deleted == ["xp::1"]
    assert present(ALL_KEYS) == OUTSIDE
    assert cache_delete("xp", 1, children=True) == []


def test_children_delete_of_an_uncached_root(backend: BackendConfig) -> None:
    for key in SUBTREE[1:]:
        cache_set(key, value=key)
    deleted = cache_delete("xp", 1, children=True)
    assert deleted == []  # the root was not cached; the keys below are not listed
    assert present(SUBTREE) == []


def test_delete_all_returns_every_keyedcache_key(backend: BackendConfig, plain_cache: Any) -> None:
    for key in ALL_KEYS:
        cache_set(key, value=key)
    plain_cache.set("plain", "kept", None)
    deleted = cache_delete()
    assert deleted == []  # O(1) on every backend: nothing is listed
    assert present(ALL_KEYS) == []
    assert plain_cache.get("plain") == "kept"


def test_expired_keys_are_not_reported(backend: BackendConfig) -> None:
    cache_set("xp::1", value=1)
    cache_set("xp::1::gone", value=2, length=0)
    deleted = cache_delete("xp", 1, children=True)
    assert deleted == ["xp::1"]


# -- locmem: the adapter reads the shared dict, not a registry --------------------------


@pytest.mark.backends("locmem")
def test_locmem_adapter_enumerates_the_locmem_dict(
    backend: BackendConfig, plain_cache: Any
) -> None:
    adapter = default_cache().adapter
    for key in ["loc::1", "loc::1::a", "loc::1::ü b", "loc::2"]:
        cache_set(key, value=key)
    # And entries written by another thread, through its own cache object: only a
    # scan of the shared dict can find them.
    worker = threading.Thread(
        target=lambda: [cache_set(f"loc::1::t{i}", value=i) for i in range(3)]
    )
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert cache_keys("loc::*") == sorted(
        ["loc::1", "loc::1::a", "loc::1::ü b", "loc::1::t0", "loc::1::t1", "loc::1::t2", "loc::2"]
    )
    assert cache_delete("loc", 1, children=True) == ["loc::1"]
    # The listing skips the invalidated entries and reclaims their space.
    assert cache_keys("loc::*") == ["loc::2"]
    entries = f":{adapter.namespace}:loc::"
    made = [k for k in plain_cache._cache if entries in k]
    assert made == [plain_cache.make_key(adapter.storage_key("loc::2"))]
    assert cache_get("loc::2") == "loc::2"


# -- across real processes ---------------------------------------------------------------


@pytest.mark.backends(exclude=("locmem",))
def test_child_writes_parent_deletes(backend: BackendConfig, child: BoundWorker) -> None:
    child.run(CHILD_WRITE, keys=ALL_KEYS)
    assert read_all(ALL_KEYS) == {key: f"child:{key}" for key in ALL_KEYS}

    deleted = cache_delete("xp", 1, children=True)
    assert deleted == ["xp::1"]
    assert present(ALL_KEYS) == OUTSIDE
    assert child.run(CHILD_PRESENT, keys=ALL_KEYS) == OUTSIDE

    deleted = cache_delete()
    assert deleted == []
    assert present(ALL_KEYS) == []
    assert child.run(CHILD_PRESENT, keys=ALL_KEYS) == []

    # Both sides write again after the deletes and see each other's writes.
    child.run(CHILD_WRITE, keys=SUBTREE)
    cache_set("xp::2", value="parent")
    assert present(ALL_KEYS) == [*SUBTREE, "xp::2"]
    assert child.run(CHILD_PRESENT, keys=ALL_KEYS) == [*SUBTREE, "xp::2"]


@pytest.mark.backends(exclude=("locmem",))
def test_parent_writes_child_deletes(backend: BackendConfig, child: BoundWorker) -> None:
    for key in ALL_KEYS:
        cache_set(key, value=key)
    assert child.run(CHILD_PRESENT, keys=ALL_KEYS) == ALL_KEYS

    deleted = child.run("cache_delete('xp', 1, children=True)")
    assert deleted == ["xp::1"]
    assert present(ALL_KEYS) == OUTSIDE

    deleted = child.run("cache_delete()")
    assert deleted == []
    assert present(ALL_KEYS) == []

    for key in SUBTREE:
        cache_set(key, value=key)
    assert child.run(CHILD_PRESENT, keys=ALL_KEYS) == SUBTREE


@pytest.mark.backends(exclude=("locmem",))
def test_deletes_in_one_child_are_seen_by_another(backend: BackendConfig, children: Any) -> None:
    first, second = children(2)
    assert first.pid != second.pid
    first.run(CHILD_WRITE, keys=ALL_KEYS)
    assert second.run(CHILD_PRESENT, keys=ALL_KEYS) == ALL_KEYS
    second.run("cache_delete('xp', 1, children=True)")
    assert first.run(CHILD_PRESENT, keys=ALL_KEYS) == OUTSIDE
    assert present(ALL_KEYS) == OUTSIDE


@pytest.mark.backends(exclude=("locmem",))
def test_custom_key_function_across_processes(backend: BackendConfig, child: BoundWorker) -> None:
    caches_setting = {
        "default": backend.variant(KEY_FUNCTION="tests.test_backends.custom_key_func")
    }
    other = BoundWorker(child.worker, backend.env(caches=caches_setting))
    with override_settings(CACHES=caches_setting):
        other.run(CHILD_WRITE, keys=ALL_KEYS)
        assert present(ALL_KEYS) == ALL_KEYS
        cache_delete("xp", 1, children=True)
        assert other.run(CHILD_PRESENT, keys=ALL_KEYS) == OUTSIDE
        other.run("cache_delete()")
        assert present(ALL_KEYS) == []


@pytest.mark.backends(exclude=("locmem",))
def test_fresh_process_configured_from_the_environment(backend: BackendConfig) -> None:
    # A new interpreter that gets the backend only through its environment
    # (tests.settings reads it at import), not through a settings override.
    for key in ALL_KEYS:
        cache_set(key, value=key)
    code = """
seen = [k for k in keys if cache_get(k, default=None) == k]
deleted = cache_delete('xp', 1, children=True)
cache_set('from', 'child', value=os.getpid())
result = {'seen': seen, 'deleted': deleted, 'adapter': cache_store.adapter.name}
"""
    result = run_in_child(backend.env(), code, keys=ALL_KEYS)
    assert result["seen"] == ALL_KEYS
    assert result["adapter"] == backend.adapter_name
    assert result["deleted"] == ["xp::1"]
    assert present(ALL_KEYS) == OUTSIDE
    assert cache_get("from", "child") != os.getpid()
