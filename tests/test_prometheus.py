"""keyedcache.contrib.prometheus: exact cluster totals in generate_latest(), registered once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from django.conf import settings
from django.core import checks
from django.test.utils import override_settings

from keyedcache import cache_delete, cache_function, cache_get, cache_set, conf
from keyedcache.contrib.prometheus import collector
from keyedcache.contrib.prometheus.apps import check_client_installed
from keyedcache.counters import counters
from keyedcache.reporting import flush

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

if TYPE_CHECKING:  # children import this module: keep conftest out of them
    from tests.conftest import BackendConfig

APP = "keyedcache.contrib.prometheus"


@pytest.fixture
def installed() -> Iterator[None]:
    """The app in INSTALLED_APPS (its ready() runs), and no collector left behind after."""
    collector.unregister()
    with override_settings(
        INSTALLED_APPS=[*settings.INSTALLED_APPS, APP], KEYEDCACHE_STATS_FLUSH_INTERVAL=None
    ):
        yield
    collector.unregister()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of an exposition text."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@cache_function(60)
def squared(x: int) -> int:
    return x * x


def child_traffic(index: int) -> dict[str, Any]:
    """In a child process: known traffic on prefix promN from zero, then a flush."""
    counters.reset()
    prefix = f"prom{index}"
    cache_set(prefix, "a", value=1)
    for _ in range(3 + index):
        cache_get(prefix, "a")
    for j in range(2):
        cache_get(prefix, "missing", j, default=None)
    cache_delete(prefix, "a")
    squared.invalidate(index)
    squared(index)
    squared(index)
    written = False
    for _attempt in range(10):  # a write refused by a busy SQLite: try again, bounded
        written = flush()
        if written:
            break
        time.sleep(0.1)
    return {"written": written, "prefixes": counters.by_prefix()}


@pytest.mark.backends("redis", "db-sqlite")
def test_generate_latest_shows_exact_cluster_totals(
    backend: BackendConfig, children: Any, installed: None
) -> None:
    workers = children(2)
    # One after the other: SQLite refuses concurrent writers, and the numbers must be exact.
    done = [worker.run(child_traffic, i) for i, worker in enumerate(workers)]
    assert all(d["written"] for d in done)

    found = samples(prometheus_client.generate_latest().decode())
    alias = conf.alias()

    def value(name: str, prefix: str) -> float:
        return found[(f"keyedcache_{name}_total", (("alias", alias), ("prefix", prefix)))]

    for index in (0, 1):
        prefix = f"prom{index}"
        assert value("calls", prefix) == 3 + index + 2
        assert value("hits", prefix) == 3 + index
        assert value("misses", prefix) == 2
        assert value("local_hits", prefix) == 0
        assert value("sets", prefix) == 1
        assert value("deletes", prefix) == 1
        assert value("errors", prefix) == 0
    # Both children ran squared(): one execution each; reads: one miss, one hit each.
    memo = "func::tests.test_prometheus.squared"
    assert value("executions", memo) == 2
    assert value("hits", memo) == 2 and value("misses", memo) == 2
    assert value("waits", memo) == 0
    assert value("sets", memo) == 2 and value("deletes", memo) == 2
    assert found[("keyedcache_stats_cluster", (("alias", alias),))] == 1.0
    assert found[("keyedcache_processes", (("alias", alias),))] >= 3


def test_repeated_ready_registers_one_collector(installed: None) -> None:
    from django.apps import apps

    first = collector.register()
    apps.get_app_config("keyedcache_prometheus").ready()
    with override_settings(INSTALLED_APPS=list(settings.INSTALLED_APPS)):
        pass  # the app registry is populated again: ready() runs again
    assert collector.register() is first
    ours = [c for c in prometheus_client.REGISTRY._collector_to_names if c is first]
    assert len(ours) == 1
    text = prometheus_client.generate_latest().decode()
    assert text.count("# TYPE keyedcache_calls_total counter") == 1


def test_a_failing_read_is_logged_not_raised(
    installed: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(**kwargs: Any) -> dict[str, Any]:
        raise RuntimeError("stats unavailable")

    monkeypatch.setattr(collector, "stats", broken)
    text = prometheus_client.generate_latest().decode()
    assert "# TYPE keyedcache_hits_total counter" in text
    assert "stats unavailable" in caplog.text


def test_breaker_state_is_exported_when_there_is_one(
    installed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Breaker:
        def __init__(self, alias: str, state: str) -> None:
            self.alias, self.state = alias, state

    breakers = [Breaker("default", "closed"), Breaker("redis", "open")]
    monkeypatch.setattr(collector, "_breakers", lambda: breakers)
    found = samples(prometheus_client.generate_latest().decode())
    assert found[("keyedcache_breaker_open", (("alias", "default"),))] == 0.0
    assert found[("keyedcache_breaker_open", (("alias", "redis"),))] == 1.0


def test_missing_client_is_a_system_check_error(monkeypatch: pytest.MonkeyPatch) -> None:
    assert check_client_installed() == []
    monkeypatch.setattr(collector, "client_installed", lambda: False)
    (error,) = check_client_installed()
    assert isinstance(error, checks.Error) and error.id == "keyedcache.E101"
    assert "prometheus-client" in error.msg
