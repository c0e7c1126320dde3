"""The stats page: cluster and process counters, busiest prefixes, processes, backend health."""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from keyedcache.breaker import all_breakers
from keyedcache.cache import KeyedCache
from keyedcache.cluster import stats as cluster_stats
from keyedcache.counters import hit_rate
from keyedcache.dashboard.access import staff_member_only
from keyedcache.dashboard.chart import build_chart
from keyedcache.dashboard.context import page_context, url
from keyedcache.dashboard.formatting import ago, duration, number, percent, shown, when
from keyedcache.dashboard.http import allow
from keyedcache.dashboard.secrets import mask_location, mask_options, mask_text, outage_message
from keyedcache.exceptions import CacheNotRespondingError
from keyedcache.registry import default_cache
from keyedcache.reporting import flush_interval

log = logging.getLogger("keyedcache")

#: Rows of the busiest-prefixes table.
BUSIEST_PREFIXES = 15

#: The counters the stats page shows, in order, with their labels.
COUNTERS = (
    ("calls", "Calls"),
    ("hits", "Hits"),
    ("local_hits", "First-level hits"),
    ("misses", "Misses"),
    ("local_misses", "First-level misses (no backend read)"),
    ("sets", "Sets"),
    ("deletes", "Deletes"),
    ("errors", "Errors"),
    ("executions", "Memoized-body executions"),
    ("waits", "Single-flight waits"),
    ("wait_timeouts", "Single-flight wait timeouts"),
    ("decode_errors", "Undecodable entries read"),
    ("breaker_opens", "Circuit-breaker opens"),
)

#: Prefixes stats counts under that are not key prefixes (no branch to open).
_PSEUDO_PREFIX = re.compile(r"^\(.*\)$")
_BAR_WIDTH = 160


def _figures(raw: Any) -> dict[str, int]:
    if not isinstance(raw, dict):
        return {}
    found: dict[str, int] = {}
    for name, value in raw.items():
        try:
            found[str(name)] = int(value)
        except (TypeError, ValueError):
            continue
    return found


def read_stats() -> dict[str, Any]:
    """`keyedcache.stats()` in the shape the stats page uses.

    The only function that knows the shape of `keyedcache.stats()`: every
    field is read with a default, so a change there costs one figure, not the page.
    """
    try:
        raw: dict[str, Any] = cluster_stats()
    except Exception as exc:  # the page must render even when stats cannot be read
        log.warning("keyedcache: the dashboard could not read the stats (%r)", exc)
        raw = {}
    process = raw.get("process")
    if not isinstance(process, dict):
        process = {}
    totals = _figures(raw.get("totals"))
    mine = _figures(process.get("counters"))
    processes = [p for p in raw.get("processes") or [] if isinstance(p, dict)]
    series = []
    for point in raw.get("minutes") or []:
        if isinstance(point, dict) and "minute" in point:
            figures = _figures(point)
            series.append({**figures, "minute": float(point["minute"])})
    prefixes = []
    for row in raw.get("prefixes") or []:
        if isinstance(row, dict) and "prefix" in row:
            figures = _figures(row)
            prefixes.append(
                {**figures, "prefix": str(row["prefix"]), "hit_rate": hit_rate(figures)}
            )
    return {
        "totals": totals,
        "process": mine,
        "flush_interval": flush_interval(),
        "cluster": bool(raw.get("cluster")),
        "process_count": int(raw.get("process_count") or len(processes) or 1),
        "processes": processes,
        "series": series,
        "prefixes": prefixes,
        "time": float(raw.get("time") or time.time()),
    }


def counter_rows(figures: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of the counters table: label, cluster figure, this process's figure."""
    totals, mine = figures["totals"], figures["process"]
    rows = [
        {
            "name": name,
            "label": label,
            "cluster": number(totals.get(name, 0)),
            "process": number(mine.get(name, 0)),
        }
        for name, label in COUNTERS
        if name in totals or name in mine
    ]
    # The hit rate goes right after the reads it is made of (calls, hits, first-level hits).
    rows.insert(
        3,
        {
            "name": "hit_rate",
            "label": "Cache Hit Rate",
            "cluster": percent(hit_rate(totals)),
            "process": percent(hit_rate(mine)),
        },
    )
    return rows


def _quality(rate: float | None) -> str:
    """The colour class of a hit-rate bar."""
    if rate is None:
        return "none"
    return "good" if rate >= 0.8 else "fair" if rate >= 0.5 else "poor"


def prefix_rows(prefixes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The busiest prefixes with their hit-rate bars (widths in SVG units)."""
    rows = []
    busy = [row for row in prefixes if row.get("calls", 0) > 0]  # only written: not busy
    for row in sorted(busy, key=lambda r: -r.get("calls", 0))[:BUSIEST_PREFIXES]:
        rate = row["hit_rate"]
        prefix = row["prefix"]
        rows.append(
            {
                "prefix": shown(prefix),
                "url": url("keyedcache_view", prefix=prefix)
                if not _PSEUDO_PREFIX.match(prefix)
                else None,
                "calls": number(row.get("calls", 0)),
                "hits": number(row.get("hits", 0) + row.get("local_hits", 0)),
                "misses": number(row.get("misses", 0)),
                "errors": number(row.get("errors", 0)),
                "rate": percent(rate),
                "bar": 0 if rate is None else round(_BAR_WIDTH * rate, 1),
                "quality": _quality(rate),
            }
        )
    return rows


def process_rows(processes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of the processes table: host, pid, age, last flush, calls, hit rate, errors."""
    rows = []
    for proc in processes:
        figures = _figures(proc)
        rows.append(
            {
                "host": str(proc.get("host") or "?"),
                "pid": str(proc.get("pid") or "?"),
                "started": ago(proc.get("started")),
                "flushed": ago(proc.get("flushed")),
                "current": bool(proc.get("current")),
                "calls": number(figures.get("calls", 0)),
                "rate": percent(hit_rate(figures)),
                "errors": number(figures.get("errors", 0)),
            }
        )
    return rows


def backend_info(store: KeyedCache) -> dict[str, Any]:
    """What the stats page says about the backend: class, location (masked), health, round trip."""
    config: dict[str, Any] = settings.CACHES.get(store.alias, {})
    started = time.perf_counter()
    error = ""
    breaker = store.guard.breaker
    if breaker.is_open and store.enabled:
        # Truthful without a round trip: a hung backend would hold the page for a timeout.
        answered: bool | None = False
        error = f"circuit breaker {breaker.state} since {clock_time(breaker.since)} UTC"
    else:
        try:
            answered = store.require()
        except CacheNotRespondingError as exc:
            answered = False
            error = outage_message(exc, store.alias)
    round_trip = (time.perf_counter() - started) * 1000
    health = "off" if answered is None else "up" if answered else "down"
    return {
        "alias": store.alias,
        "backend": str(config.get("BACKEND", "")),
        "location": mask_location(config.get("LOCATION", "")),
        "options": mask_options(config.get("OPTIONS", {})),
        "key_prefix": str(config.get("KEY_PREFIX", "")),
        "timeout": duration(config["TIMEOUT"]) if "TIMEOUT" in config else duration(300),
        "adapter": store.adapter_name,
        "enumerates": store.enumerates,
        "namespace": store.namespace,
        "health": health,
        "error": error,
        "round_trip": f"{round_trip:.1f} ms" if round_trip >= 1 else f"{round_trip:.2f} ms",
    }


def clock_time(timestamp: float) -> str:
    """HH:MM:SS (UTC) of a Unix timestamp."""
    return time.strftime("%H:%M:%S", time.gmtime(timestamp))


def breaker_rows() -> list[dict[str, Any]]:
    """Rows of the circuit-breaker table: every alias's breaker in this process."""
    rows = []
    for found in all_breakers():
        snap = found.snapshot()
        rows.append(
            {
                "alias": snap["alias"],
                "state": snap["state"] if snap["enabled"] else "off",
                "since": ago(snap["since"]),
                "opens_last_hour": number(snap["opens_last_hour"]),
                "opens": number(snap["opens"]),
                # The error's type only, today; masked anyway, should it ever carry text.
                "last_error": mask_text(
                    str(snap["last_error"]), settings.CACHES.get(snap["alias"], {})
                ),
                "tuning": (
                    f"opens after {snap['failures']} failures or {snap['timeouts']} timeouts "
                    f"in a row; probes after {duration(snap['cooldown'])}"
                ),
            }
        )
    return rows


@staff_member_only
@never_cache
@allow("GET")
def stats_page(request: HttpRequest) -> HttpResponse:
    """Cache statistics of the whole cluster and of this process, the backend and its health."""
    store = default_cache()
    figures = read_stats()
    totals, mine = figures["totals"], figures["process"]
    context = page_context(
        request,
        "Cache statistics",
        "stats",
        figures=figures,
        counters=counter_rows(figures),
        hit_rate=percent(hit_rate(totals)),
        process_hit_rate=percent(hit_rate(mine)),
        calls=number(totals.get("calls", 0)),
        process_calls=number(mine.get("calls", 0)),
        errors=number(totals.get("errors", 0)),
        process_errors=number(mine.get("errors", 0)),
        chart=build_chart(figures["series"]),
        prefixes=prefix_rows(figures["prefixes"]),
        processes=process_rows(figures["processes"]),
        backend=backend_info(store),
        breakers=breaker_rows(),
        as_of=when(figures["time"]),
    )
    return render(request, "keyedcache/stats.html", context)
