"""The registry (keyedcache/registry.py): one KeyedCache per alias, rebuilt when settings change."""

from __future__ import annotations

from typing import Any

from django.test import override_settings

from keyedcache import cache_function, default_cache, keyedcache_configure, registry

LOCMEM = "django.core.cache.backends.locmem.LocMemCache"
TWO = {
    "default": {"BACKEND": LOCMEM, "LOCATION": "registry-a"},
    "other": {"BACKEND": LOCMEM, "LOCATION": "registry-b"},
}


def test_one_keyedcache_per_alias_and_namespace() -> None:
    with override_settings(CACHES=TWO):
        assert registry.get_cache("other") is registry.get_cache("other")
        assert registry.get_cache("other") is not registry.get_cache("default")
        assert registry.get_cache() is default_cache()
        assert registry.get_cache("other", "elsewhere").namespace == "elsewhere"


def test_a_settings_change_builds_new_ones() -> None:
    with override_settings(CACHES=TWO):
        first = default_cache()
        with override_settings(KEYEDCACHE_ALIAS="other"):
            assert default_cache().alias == "other"
        assert default_cache() is not first  # rebuilt after the restore too
        assert default_cache().alias == "default"


def test_configure_rebuilds() -> None:
    with override_settings(CACHES=TWO):
        before = default_cache()
        assert keyedcache_configure() is not before
        assert keyedcache_configure() is default_cache()


def test_the_stats_cache_lives_beside_the_entries() -> None:
    with override_settings(CACHES=TWO, KEYEDCACHE_NAMESPACE="kc"):
        stats = registry.stats_cache()
        assert stats is not None
        assert (stats.alias, stats.namespace) == ("default", "kc-stats")
        assert registry.stats_cache() is stats


def test_memoized_functions_with_an_alias_use_the_registry() -> None:
    @cache_function(60, alias="other")
    def double(value: int) -> int:
        return value * 2

    helpers: Any = double  # .memoized and .key are not in the decorated type (issue 15)
    with override_settings(CACHES=TWO):
        assert helpers.memoized.store() is registry.get_cache("other")
        assert double(2) == 4
        assert registry.get_cache("other").get(helpers.key(2)) == 4
