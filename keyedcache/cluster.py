"""The whole cluster's figures: every live process record added up (`keyedcache.stats()`)."""

from __future__ import annotations

import time
import warnings
from typing import Any

from keyedcache.cache import KeyedCache
from keyedcache.counters import (
    COUNTER_NAMES,
    MAX_PREFIXES,
    OTHER,
    SERIES_MINUTES,
    SERIES_NAMES,
    counters,
    hit_rate,
)
from keyedcache.registry import default_cache, stats_cache
from keyedcache.reporting import RECORD_FORMAT, RECORD_ROOT, reporter


def _read_records(target: KeyedCache) -> list[dict[str, Any]]:
    """Every live process record in `target` (this process's own included).

    Raises when the records cannot be listed or read: the caller reports it.
    """
    names = [
        key
        for key in target.iter_keys(f"{RECORD_ROOT}::*", strict=True)
        if key.startswith(f"{RECORD_ROOT}::")
    ]
    found: list[dict[str, Any]] = []
    now = time.time()
    for start in range(0, len(names), 500):
        for entry in target.peek_many(names[start : start + 500]).values():
            if entry.fresh_until is not None and entry.fresh_until <= now:
                continue
            record = entry.value
            if isinstance(record, dict) and record.get("format") == RECORD_FORMAT:
                found.append(record)
    return found


def _add_into(total: dict[str, int], more: dict[str, Any]) -> None:
    for name in COUNTER_NAMES:
        total[name] = total.get(name, 0) + int(more.get(name, 0))


def stats(*, flush: bool = False, alias: str | None = None) -> dict[str, Any]:
    """Cache figures of every worker process, of this process, per prefix and per minute.

    `totals` adds up the last record of every process whose record has not
    expired (this one's live figures instead of its record): exact once each
    has flushed. `processes` lists the running ones; `finished` counts those that
    exited (their last record is marked so). `busiest` is the prefixes with the
    most reads (none with zero). With
    `flush=True` this process writes its record first. When the records
    cannot be read (outage, a backend that cannot list keys), the totals are
    this process's and `cluster` is False. Everything returned is plain,
    JSON-able data; times are Unix timestamps. `alias` reads the records kept
    in that cache alias instead of KEYEDCACHE_ALIAS's.
    """
    if flush:
        reporter.flush(blocking=True)
    mine = reporter.record()
    mine["current"] = True
    mine["flushed"] = reporter.flushed
    records = [mine]
    cluster = False
    where: str | None = None
    namespace: str | None = None
    try:
        target = stats_cache(alias)
        if target is not None:
            where, namespace = target.alias, target.namespace
            records += [r for r in _read_records(target) if r.get("id") != mine["id"]]
            cluster = True
    except Exception as exc:
        reporter.failed("read the stats of the other processes", exc)

    totals: dict[str, int] = {}
    prefixes: dict[str, dict[str, int]] = {}
    minutes: dict[int, list[int]] = {}
    for record in records:
        _add_into(totals, record.get("counters", {}))
        for prefix, figures in record.get("prefixes", {}).items():
            _add_into(prefixes.setdefault(prefix, {}), figures)
        for minute, values in record.get("minutes", {}).items():
            bucket = minutes.setdefault(int(minute), [0] * len(SERIES_NAMES))
            for i, value in enumerate(values[: len(SERIES_NAMES)]):
                bucket[i] += int(value)

    now = time.time()
    this_minute = int(now // 60)
    empty = [0] * len(SERIES_NAMES)
    series = [
        {"minute": minute * 60, **dict(zip(SERIES_NAMES, minutes.get(minute, empty), strict=True))}
        for minute in range(this_minute - SERIES_MINUTES + 1, this_minute + 1)
    ]
    table = _prefix_table(prefixes)
    # Records of processes that exited still count in the totals until they
    # expire; the processes are not listed (a `manage.py` run is not a worker).
    finished = [record for record in records if record.get("finished")]
    finished_totals: dict[str, int] = {}
    for record in finished:
        _add_into(finished_totals, record.get("counters", {}))
    processes = sorted(
        (
            {
                "id": record.get("id"),
                "host": record.get("host"),
                "pid": record.get("pid"),
                "started": record.get("started"),
                "flushed": record.get("flushed"),
                "current": bool(record.get("current")),
                **{name: int(record.get("counters", {}).get(name, 0)) for name in COUNTER_NAMES},
            }
            for record in records
            if not record.get("finished")
        ),
        key=lambda p: (str(p["host"]), int(p["pid"] or 0), str(p["id"])),
    )
    return {
        "totals": totals,
        "hit_rate": hit_rate(totals),
        "process": {
            "id": mine["id"],
            "host": mine["host"],
            "pid": mine["pid"],
            "started": mine["started"],
            "flushed": reporter.flushed,
            "counters": mine["counters"],
            "hit_rate": hit_rate(mine["counters"]),
        },
        "processes": processes,
        "process_count": len(processes),
        "finished": {"count": len(finished), "counters": finished_totals},
        "prefixes": table,
        "busiest": [row for row in table if row.get("calls", 0) > 0][:BUSIEST],
        "minutes": series,
        "cluster": cluster,
        "alias": where,
        "namespace": namespace,
        "time": now,
    }


#: Rows of stats()["busiest"]: the prefixes with the most reads.
BUSIEST = 20


def _prefix_table(prefixes: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    """Rows sorted by calls, at most MAX_PREFIXES (the rest added into OTHER)."""
    ranked = sorted(
        (item for item in prefixes.items() if item[0] != OTHER),
        key=lambda item: (-item[1].get("calls", 0), item[0]),
    )
    kept = dict(ranked[: MAX_PREFIXES - 1])
    other: dict[str, int] = {}
    for _prefix, figures in [*ranked[MAX_PREFIXES - 1 :], (OTHER, prefixes.get(OTHER, {}))]:
        _add_into(other, figures)
    if any(other.values()):
        kept[OTHER] = other
    rows: list[dict[str, Any]] = [
        {"prefix": prefix, **figures, "hit_rate": hit_rate(figures)}
        for prefix, figures in kept.items()
    ]
    rows.sort(key=lambda row: (-int(row.get("calls", 0)), str(row["prefix"])))
    return rows


# -- the 1.5 module globals --------------------------------------------------------------

DEPRECATED_GLOBALS = {
    "CACHE_CALLS": "keyedcache.stats()['process']['counters']['calls']",
    "CACHE_HITS": "keyedcache.stats()['process']['counters'] (hits + local_hits)",
    "CACHED_KEYS": "keyedcache.cache_keys()",
}


def deprecated_global(name: str) -> Any:
    """The value of a keyedcache 1.5 module global, with a DeprecationWarning.

    Raises AttributeError for any other name (keyedcache's module __getattr__).
    """
    if name not in DEPRECATED_GLOBALS:
        raise AttributeError(f"module 'keyedcache' has no attribute {name!r}")
    warnings.warn(
        f"keyedcache.{name} is deprecated; use {DEPRECATED_GLOBALS[name]}",
        DeprecationWarning,
        stacklevel=3,
    )
    if name == "CACHED_KEYS":
        try:
            return dict.fromkeys(default_cache().keys(), True)
        except NotImplementedError:
            return {}  # a backend keyedcache cannot list keys of
    figures = counters.snapshot()
    if name == "CACHE_CALLS":
        return figures["calls"]
    return figures["hits"] + figures["local_hits"]
