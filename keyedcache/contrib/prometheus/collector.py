"""The Prometheus collector: keyedcache.stats() of the whole cluster as keyedcache_*_total series.

Every scrape reads the process records of every live worker (`keyedcache.stats()`)
and yields one counter family per keyedcache counter, `keyedcache_<counter>_total`,
with an `alias` label (the cache alias the records live in) and a `prefix` label
(the key prefix, as on the dashboard). Every process reports the same cluster
totals: aggregate several scraped processes with `max`, not `sum`.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

from keyedcache import conf
from keyedcache.cluster import stats
from keyedcache.counters import COUNTER_NAMES

log = logging.getLogger("keyedcache")

#: The help text of each counter's family; a counter not listed gets a generic one.
DESCRIPTIONS = {
    "calls": "Reads of keyedcache entries, whatever their outcome",
    "hits": "Reads answered by the backend with a fresh value",
    "misses": "Reads that found no fresh value",
    "local_hits": "Reads answered by the request scope without a backend call",
    "local_misses": "Reads the request scope answered as absent without a backend call",
    "sets": "Values written",
    "deletes": "Deletes (of a key, a subtree, or everything)",
    "errors": "Backend calls that failed and were answered with a miss or skipped",
    "executions": "Runs of memoized functions",
    "waits": "Memoized calls that waited for another caller's computation (single flight)",
    "wait_timeouts": "Single-flight waits that ran out, after which the caller computed itself",
    "decode_errors": "Entries that could not be decoded and were read as misses",
    "breaker_opens": "Times a cache alias's circuit breaker opened",
}
LABELS = ("alias", "prefix")


def client_installed() -> bool:
    """Tell whether prometheus-client can be imported."""
    try:
        importlib.import_module("prometheus_client")
    except ImportError:
        return False
    return True


def _breakers() -> list[Any]:
    """This process's circuit breakers, where keyedcache has them (keyedcache.breaker)."""
    try:
        module = importlib.import_module("keyedcache.breaker")
    except ImportError:
        return []
    every = getattr(module, "all_breakers", None)
    return list(every()) if callable(every) else []


class KeyedCacheCollector:
    """A prometheus_client collector of the cluster-wide figures of one stats alias.

    `alias` picks the cache alias the process records are read from (default:
    KEYEDCACHE_ALIAS, as `keyedcache.stats()`).
    """

    def __init__(self, alias: str | None = None) -> None:
        self.alias = alias

    def describe(self) -> Iterator[Any]:
        """The families this collector yields, without samples (no backend call at registration)."""
        yield from self._families().values()

    def collect(self) -> Iterator[Any]:
        """Read the cluster's figures and yield them; an unreadable state is logged, not raised."""
        families = self._families()
        try:
            figures = stats(alias=self.alias)
            alias = str(figures.get("alias") or self.alias or conf.alias())
            for row in figures["prefixes"]:
                labels = [alias, str(row["prefix"])]
                for name in COUNTER_NAMES:
                    families[name].add_metric(labels, float(row.get(name, 0)))
            families["processes"].add_metric([alias], float(figures["process_count"]))
            families["cluster"].add_metric([alias], 1.0 if figures["cluster"] else 0.0)
            for breaker in _breakers():
                state = getattr(breaker, "state", "closed")
                families["breaker_open"].add_metric(
                    [str(breaker.alias)], 0.0 if state == "closed" else 1.0
                )
        except Exception as exc:  # a scrape must not fail over keyedcache
            log.warning("keyedcache: no metrics collected (%s: %s)", type(exc).__name__, exc)
            families = self._families()
        yield from families.values()

    @staticmethod
    def _families() -> dict[str, Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        families: dict[str, Any] = {
            name: CounterMetricFamily(
                f"keyedcache_{name}",
                DESCRIPTIONS.get(name, f"keyedcache counter {name}") + ", summed over processes",
                labels=LABELS,
            )
            for name in COUNTER_NAMES
        }
        families["processes"] = GaugeMetricFamily(
            "keyedcache_processes",
            "Processes whose records the totals add up (live in the last stats TTL)",
            labels=["alias"],
        )
        families["cluster"] = GaugeMetricFamily(
            "keyedcache_stats_cluster",
            "1 when the totals are the cluster's, 0 when the records could not be read "
            "(then they are this process's)",
            labels=["alias"],
        )
        families["breaker_open"] = GaugeMetricFamily(
            "keyedcache_breaker_open",
            "1 while this process's circuit breaker of the cache alias skips the backend",
            labels=["alias"],
        )
        return families


_lock = threading.Lock()
#: id(registry) -> the collector registered there by `register`.
_registered: dict[int, KeyedCacheCollector] = {}


def register(registry: Any = None, alias: str | None = None) -> KeyedCacheCollector:
    """Register a KeyedCacheCollector on `registry` (default: prometheus_client.REGISTRY) once.

    Calling it again (a second AppConfig.ready, a test re-populating the app
    registry) returns the collector already registered there.
    """
    if registry is None:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    with _lock:
        found = _registered.get(id(registry))
        if found is not None:
            return found
        collector = KeyedCacheCollector(alias)
        registry.register(collector)
        _registered[id(registry)] = collector
        return collector


def unregister(registry: Any = None) -> bool:
    """Remove the collector `register` put on `registry`; say whether there was one."""
    if registry is None:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    with _lock:
        found = _registered.pop(id(registry), None)
        if found is None:
            return False
        registry.unregister(found)
        return True
