"""Settings (keyedcache/conf.py): defaults, validation, and the change notification."""

from __future__ import annotations

import pytest
from django.test import override_settings

from keyedcache import conf


def test_defaults_when_nothing_is_set() -> None:
    with override_settings():
        from django.conf import settings

        for name in ("KEYEDCACHE_ALIAS", "KEYEDCACHE_NAMESPACE", "KEYEDCACHE_STATS_TTL"):
            if hasattr(settings, name):
                delattr(settings, name)
        assert conf.alias() == "default"
        assert conf.namespace() == "keyedcache"
        assert conf.stats_ttl() == conf.DEFAULT_STATS_TTL


@pytest.mark.parametrize("size", [-1, 1.5, "10", True])
def test_a_bad_request_cache_size_names_the_setting(size: object) -> None:
    with (
        override_settings(KEYEDCACHE_REQUEST_CACHE_SIZE=size),
        pytest.raises(ValueError, match="KEYEDCACHE_REQUEST_CACHE_SIZE"),
    ):
        conf.request_cache_size()


@pytest.mark.parametrize(("value", "expected"), [(None, None), (0, None), (False, None), (2, 2.0)])
def test_durations_turn_off_with_none_or_zero(value: object, expected: float | None) -> None:
    with override_settings(KEYEDCACHE_STATS_FLUSH_INTERVAL=value):
        assert conf.stats_flush_interval() == expected


@pytest.mark.parametrize("value", [-1, "5", True])
def test_a_bad_duration_names_the_setting(value: object) -> None:
    with (
        override_settings(KEYEDCACHE_STATS_FLUSH_INTERVAL=value),
        pytest.raises(ValueError, match="KEYEDCACHE_STATS_FLUSH_INTERVAL"),
    ):
        conf.stats_flush_interval()


def test_the_scan_limit_is_at_least_a_page() -> None:
    with override_settings(KEYEDCACHE_DASHBOARD_SCAN_LIMIT=3):
        assert conf.dashboard_scan_limit(50) == 50


def test_listeners_hear_relevant_changes_only() -> None:
    heard: list[str] = []
    conf.on_change(heard.append)
    before = conf.generation()
    with override_settings(KEYEDCACHE_STATS_TTL=5):
        pass
    with override_settings(LANGUAGE_CODE="fr"):
        pass
    assert heard == ["KEYEDCACHE_STATS_TTL", "KEYEDCACHE_STATS_TTL"]  # set, then restored
    assert conf.generation() == before + 2
    conf._listeners.remove(heard.append)
