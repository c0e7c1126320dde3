"""Stats: exact per-process counters, per prefix and per minute; records summed across processes."""

from __future__ import annotations

import asyncio
import gc
import importlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from django.test.utils import override_settings

import keyedcache
from keyedcache import (
    cache_delete,
    cache_function,
    cache_get,
    cache_get_many,
    cache_keys,
    cache_set,
    cache_set_many,
    request_cache,
)
from keyedcache.cluster import _read_records
from keyedcache.counters import (
    COUNTER_NAMES,
    MAX_PREFIXES,
    NO_KEY,
    OTHER,
    SERIES_MINUTES,
    STATS_PREFIX,
    ProcessCounters,
    _flush_due,
    counters,
    key_prefix,
)
from keyedcache.registry import stats_cache
from keyedcache.reporting import flush, reporter
from tests.procs import BoundWorker, pool_workers, process_env

if TYPE_CHECKING:  # children import this module: keep conftest out of them
    from tests.conftest import BackendConfig

#: Backends shared between processes (locmem is one process's memory).
SHARED = ("db-sqlite", "db-postgres", "file", "memcached", "memcached2", "redis")
PREFIX = "statsagg"


@pytest.fixture
def fresh() -> Iterator[None]:
    """This process's counters start from zero (other tests only ever compare deltas).

    No automatic flush either: a failed one would count an error of its own.
    """
    with override_settings(KEYEDCACHE_STATS_FLUSH_INTERVAL=None):
        counters.reset()
        yield


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after.get(name, 0) - before.get(name, 0) for name in COUNTER_NAMES}


def figures(**nonzero: int) -> dict[str, int]:
    return {name: nonzero.get(name, 0) for name in COUNTER_NAMES}


# -- keyedcache.stats is the function; the modules have other names --------------------


@pytest.mark.parametrize(
    "imports",
    [
        "import keyedcache.counters, keyedcache.cluster; import keyedcache",
        "import keyedcache; import keyedcache.cluster, keyedcache.counters",
    ],
)
def test_keyedcache_stats_is_the_function_in_any_import_order(imports: str) -> None:
    code = (
        f"{imports}; import django; django.setup(); import importlib, json, sys; "
        "from keyedcache import stats; "
        "module = importlib.import_module('keyedcache.cluster'); "
        "print(json.dumps([callable(keyedcache.stats), "
        "sorted(keyedcache.stats()) == sorted(module.stats()), "
        "keyedcache.stats is module.stats, stats is module.stats, "
        "'keyedcache.stats' not in sys.modules, "
        "keyedcache.counters.counters is sys.modules['keyedcache.counters'].counters]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=process_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [True] * 6


def test_the_modules_are_importable_by_name() -> None:
    assert importlib.import_module("keyedcache.counters").counters is counters
    assert keyedcache.stats is importlib.import_module("keyedcache.cluster").stats
    assert "stats" in keyedcache.__all__
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("keyedcache.stats")


# -- prefixes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "prefix"),
    [
        ("product::12", "product"),
        ("product::12::price", "product"),
        ("product", "product"),
        ("func::shop.views.price::(1,)", "func::shop.views.price"),
        ("func::shop.views.price", "func::shop.views.price"),
        ("func", "func"),
        ("functions::x", "functions"),
        ("a:b::c", "a:b"),
        ("", ""),
    ],
)
def test_key_prefix(key: str, prefix: str) -> None:
    assert key_prefix(key) == prefix


def test_counts_per_prefix_and_the_cap() -> None:
    mine = ProcessCounters(max_prefixes=3)
    for key in ("a::1", "a::2", "b::1", "c::1", "d::1", "e::9", "d::2"):
        mine.slots(key)[1] += 1  # HITS
    mine.slots(None)[5] += 2  # DELETES, no key: over the cap too
    table = mine.by_prefix()
    assert set(table) == {"a", "b", "c", OTHER}
    assert table["a"]["hits"] == 2 and table["a"]["calls"] == 2
    assert table[OTHER]["hits"] == 3 and table[OTHER]["deletes"] == 2
    assert mine.snapshot()["hits"] == 7
    mine.reset()  # the cap counts afresh
    mine.slots(None)[5] += 1
    assert set(mine.by_prefix()) == {NO_KEY}


def test_store_operations_are_counted_per_prefix(backend: BackendConfig, fresh: None) -> None:
    cache_set("product", 1, value="widget")
    cache_set_many({("product", 2): "gadget", ("order", 1): 7})
    for _ in range(3):
        assert cache_get("product", 1) == "widget"
    assert cache_get("product", 404, default=None) is None
    assert cache_get_many(["product::2", "order::1", "order::2"]) == {
        "product::2": "gadget",
        "order::1": 7,
    }
    with request_cache():
        cache_get("order", 1)
        cache_get("order", 1)  # answered by the scope
    cache_delete("order", 1)
    table = counters.by_prefix()
    assert table["product"] == figures(calls=5, hits=4, misses=1, sets=2)
    assert table["order"] == figures(calls=4, hits=2, misses=1, local_hits=1, sets=1, deletes=1)
    assert counters.snapshot() == figures(
        calls=9, hits=6, misses=2, local_hits=1, sets=3, deletes=1
    )


def test_memoized_functions_count_under_their_own_prefix(
    backend: BackendConfig, fresh: None
) -> None:
    @cache_function(60)
    def price(item: int) -> int:
        return item * 2

    assert [price(1), price(1), price(2)] == [2, 2, 4]
    root = f"func::{__name__}.{price.__qualname__}"
    assert counters.by_prefix()[root] == figures(calls=3, hits=1, misses=2, sets=2, executions=2)


def test_add_counts_by_name() -> None:
    mine = ProcessCounters()
    mine.add("errors", key="product::1")
    mine.add("executions", 3, key="func::m.f::(1,)")
    mine.add("wait_timeouts")
    assert mine.by_prefix() == {
        "product": figures(errors=1),
        "func::m.f": figures(executions=3),
        NO_KEY: figures(wait_timeouts=1),
    }


def test_calls_are_hits_local_hits_and_misses_plus_direct_calls() -> None:
    mine = ProcessCounters()
    mine.slots("x::1")[1] += 2  # hits
    mine.slots("x::1")[3] += 1  # local hits
    mine.slots("x::1")[2] += 1  # misses
    mine.add("calls", 5, key="x::1")  # a call counted without an outcome
    assert mine.snapshot()["calls"] == 9
    assert mine.by_prefix()["x"]["calls"] == 9


# -- exact under threads ----------------------------------------------------------------


def test_counters_are_exact_under_threads_and_threads_that_end_fold_in() -> None:
    mine = ProcessCounters()
    threads, rounds = 8, 5000
    ready = threading.Barrier(threads + 1)
    finish = threading.Event()

    def work(n: int) -> None:
        slots = mine.slots
        for i in range(rounds):
            slots(f"p{i % 3}::{n}::{i % 7}")[1] += 1
            slots(None)[4] += 1
        ready.wait()
        finish.wait()

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    ready.wait()
    expected = {"p0": 0, "p1": 0, "p2": 0}
    for i in range(rounds):
        expected[f"p{i % 3}"] += threads
    alive = mine.snapshot()
    assert alive["hits"] == alive["calls"] == threads * rounds
    assert alive["sets"] == threads * rounds
    assert len(mine._live) == threads
    finish.set()
    for worker in workers:
        worker.join()
    gc.collect()
    assert len(mine._live) == 0  # every thread's lists folded into the retired totals
    assert mine.snapshot() == alive
    table = mine.by_prefix()
    assert {p: table[p]["hits"] for p in expected} == expected
    assert table[NO_KEY]["sets"] == threads * rounds


# -- per minute ---------------------------------------------------------------------------


def test_minute_series() -> None:
    mine = ProcessCounters()
    minute = int(time.time() // 60) * 60
    mine.slots("a::1")[1] += 5  # hits
    mine.checkpoint(now=minute - 30)
    mine.slots("a::1")[2] += 2  # misses
    mine.slots("a::1")[6] += 1  # errors
    mine.checkpoint(now=minute + 10)
    mine.slots("a::1")[3] += 4  # local hits
    mine.checkpoint(now=minute + 50)
    series = mine.minutes()
    previous, current = minute // 60 - 1, minute // 60
    assert series == {previous: [5, 5, 0, 0, 0], current: [6, 0, 2, 4, 1]}


def test_stats_of_one_process(backend: BackendConfig, fresh: None) -> None:
    cache_set("product", 1, value="widget")
    for _ in range(3):
        cache_get("product", 1)
    cache_get("product", 2, default=None)
    with request_cache():
        cache_get("product", 1)
        cache_get("product", 1)
    result = keyedcache.stats()
    json.dumps(result)  # plain data, for the dashboard and `--json`
    mine = result["process"]
    assert mine["counters"] == figures(calls=6, hits=4, misses=1, local_hits=1, sets=1)
    assert mine["hit_rate"] == pytest.approx(5 / 6)
    assert mine["pid"] == os.getpid() and mine["id"].endswith(reporter.token)
    assert result["processes"][0]["current"] is True
    assert len(result["minutes"]) == SERIES_MINUTES
    now_minute = int(time.time() // 60) * 60
    assert result["minutes"][-1]["minute"] in (now_minute, now_minute - 60)
    assert [m["minute"] for m in result["minutes"]] == sorted(
        m["minute"] for m in result["minutes"]
    )
    for name in ("calls", "hits", "misses", "local_hits", "errors"):
        assert sum(m[name] for m in result["minutes"]) == mine["counters"][name]
    rows = {row["prefix"]: row for row in result["prefixes"]}
    assert rows["product"]["calls"] == 6 and rows["product"]["hit_rate"] == pytest.approx(5 / 6)
    assert result["cluster"] is True
    assert result["namespace"] == f"{keyedcache.default_cache().namespace}-stats"


# -- across processes -------------------------------------------------------------------


def child_traffic(index: int) -> dict[str, Any]:
    """In a child process: known traffic from zero, a flush, and the figures it wrote.

    Whether a read hits depends on the backend under concurrent writers (SQLite
    may refuse a write while another process writes, which counts an error and
    a miss), so the parent compares with the figures each child counted.
    """
    counters.reset()
    cache_set(PREFIX, index, value=index)
    for _ in range(10 + index):
        cache_get(PREFIX, index, default=None)
    for j in range(3):
        cache_get(PREFIX, "miss", index, j, default=None)
    cache_delete(PREFIX, "gone", index)
    written = False
    for _attempt in range(10):  # a refused write is no flush: try again, bounded
        written = flush()
        if written:
            break
        time.sleep(0.1)
    own = counters.snapshot()
    return {"id": reporter.key.split("::", 1)[1], "written": written, "counters": own}


@pytest.mark.backends(*SHARED)
def test_totals_are_exact_across_four_processes(
    backend: BackendConfig, children: Any, fresh: None
) -> None:
    workers: list[BoundWorker] = children(4)
    pending = [worker.submit(child_traffic, i) for i, worker in enumerate(workers)]
    done = [p.result() for p in pending]
    assert all(d["written"] for d in done)
    for i, d in enumerate(done):  # what each child did, whatever the backend answered
        own = d["counters"]
        assert (own["calls"], own["sets"], own["deletes"]) == (13 + i, 1, 1)
        assert own["hits"] + own["misses"] == own["calls"]
    cache_get("parent", default=None)  # this process's own, unflushed, figures count too

    result = keyedcache.stats()
    assert result["cluster"] is True
    assert result["process_count"] == 5
    others = [p for p in result["processes"] if not p["current"]]
    assert sorted(p["id"] for p in others) == sorted(d["id"] for d in done)
    assert sorted(p["pid"] for p in others) == sorted(w.pid for w in workers)
    assert all(p["flushed"] is not None and p["flushed"] <= time.time() for p in others)
    expected = {name: sum(d["counters"][name] for d in done) for name in COUNTER_NAMES}
    assert {name: sum(p[name] for p in others) for name in COUNTER_NAMES} == expected
    mine = result["process"]["counters"]
    assert mine == figures(calls=1, misses=1)
    assert result["totals"] == {name: expected[name] + mine[name] for name in COUNTER_NAMES}
    assert result["hit_rate"] == pytest.approx(expected["hits"] / (expected["calls"] + 1))
    rows = {row["prefix"]: row for row in result["prefixes"]}
    assert (rows[PREFIX]["calls"], rows[PREFIX]["sets"], rows[PREFIX]["deletes"]) == (58, 4, 4)
    assert rows[PREFIX]["hits"] + rows[PREFIX]["misses"] == 58
    series_calls = sum(m["calls"] for m in result["minutes"])
    assert series_calls == result["totals"]["calls"]


@pytest.mark.backends("redis", "db-sqlite")
def test_a_process_reflushing_replaces_its_record(
    backend: BackendConfig, children: Any, fresh: None
) -> None:
    (worker,) = children(1)
    first = worker.run(child_traffic, 0)
    second = worker.run(child_traffic, 1)  # the same process, from zero again
    assert first["id"] == second["id"] and first["written"] and second["written"]
    result = keyedcache.stats()
    others = [p for p in result["processes"] if not p["current"]]
    assert len(others) == 1
    assert {name: others[0][name] for name in COUNTER_NAMES} == second["counters"]
    assert second["counters"]["calls"] == 14


@pytest.mark.backends("redis")
def test_stats_flush_true_writes_this_process_first(backend: BackendConfig, child: Any) -> None:
    with override_settings(KEYEDCACHE_STATS_FLUSH_INTERVAL=None):  # no flush but ours
        cache_set("mine", value=1)
        result = child.run("keyedcache.stats()")
        assert reporter.key.split("::", 1)[1] not in [p["id"] for p in result["processes"]]
        keyedcache.stats(flush=True)
    result = child.run("keyedcache.stats()")
    seen = {p["id"]: p for p in result["processes"]}
    mine = seen[reporter.key.split("::", 1)[1]]
    assert mine["pid"] == os.getpid() and mine["current"] is False
    assert mine["sets"] == counters.snapshot()["sets"]


def child_auto_flush(deadline: float) -> dict[str, Any]:
    """In a child: traffic, then cheap reads until the ticker's flush request is served."""
    counters.reset()
    before = reporter.flushed
    cache_set(PREFIX, "auto", value=1)
    cache_get(PREFIX, "auto")
    end = time.monotonic() + deadline
    while reporter.flushed == before and time.monotonic() < end:
        cache_get(PREFIX, "auto")
        time.sleep(0.01)  # give the ticker thread the GIL; bounded by the deadline
    return {"flushed": reporter.flushed != before, "id": reporter.key.split("::", 1)[1]}


@pytest.mark.backends("redis", "memcached")
def test_a_process_flushes_by_itself(backend: BackendConfig, child_pool: Any) -> None:
    env = backend.env(extra_settings={"KEYEDCACHE_STATS_FLUSH_INTERVAL": 0.2})
    with pool_workers(child_pool, env, 1) as (worker,):
        done = worker.run(child_auto_flush, 20.0)
    assert done["flushed"]
    result = keyedcache.stats()
    seen = {p["id"]: p for p in result["processes"]}
    assert seen[done["id"]]["sets"] == 1
    assert seen[done["id"]]["hits"] >= 1


# -- automatic flushes in this process ---------------------------------------------------


@pytest.mark.backends("locmem")
def test_the_ticker_requests_a_flush_and_the_next_count_writes_it(
    backend: BackendConfig, fresh: None
) -> None:
    with override_settings(KEYEDCACHE_STATS_FLUSH_INTERVAL=0.5):
        cache_set("auto", value=1)
        _flush_due[0] = False
        reporter.flushed_total = -1  # unflushed figures (whatever flushed before)
        reporter.last_attempt = time.monotonic() - 10
        assert reporter.tick() is True
        assert _flush_due[0] is True
        before = reporter.flushed
        cache_get("auto")  # the key table was emptied: this count serves the request
        assert _flush_due[0] is False
        assert reporter.flushed != before
    target = stats_cache()
    assert target is not None
    assert reporter.key.split("::", 1)[1] in [r["id"] for r in _read_records(target)]


@pytest.mark.backends("locmem")
def test_a_busy_process_flushes_after_a_few_hundred_operations(
    backend: BackendConfig, fresh: None
) -> None:
    with override_settings(
        KEYEDCACHE_STATS_FLUSH_INTERVAL=3600, KEYEDCACHE_STATS_FLUSH_OPERATIONS=300
    ):
        cache_set("busy", value=1)
        reporter.flushed_calls = counters.snapshot()["calls"]
        reporter.flushed_total = -1
        reporter.last_attempt = time.monotonic() - 2
        for _ in range(299):
            cache_get("busy")
        _flush_due[0] = False
        reporter.tick()
        assert _flush_due[0] is False  # 299 calls: not yet
        cache_get("busy")
        reporter.tick()
        assert _flush_due[0] is True
        cache_get("busy")
        assert _flush_due[0] is False


@pytest.mark.backends("locmem")
def test_no_automatic_flush_when_the_interval_is_none(backend: BackendConfig) -> None:
    with override_settings(KEYEDCACHE_STATS_FLUSH_INTERVAL=None):
        _flush_due[0] = False
        cache_set("off", value=1)
        reporter.last_attempt = time.monotonic() - 3600
        assert reporter.tick() is False
        assert _flush_due[0] is False
        assert flush() is True  # by hand it still works


@pytest.mark.backends("locmem")
def test_an_event_loop_thread_hands_the_flush_to_a_worker_thread(
    backend: BackendConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    flushes: list[tuple[str, bool]] = []
    real_flush = reporter.flush

    def spy(*, blocking: bool = True) -> bool:
        try:
            asyncio.get_running_loop()
            in_loop = True
        except RuntimeError:
            in_loop = False
        flushes.append((threading.current_thread().name, in_loop))
        return real_flush(blocking=blocking)

    monkeypatch.setattr(reporter, "flush", spy)

    async def main() -> None:
        counters.request_flush()
        cache_get("in-the-loop", default=None)  # serves the request: not in this thread

    # Automatic flushing is off in the test settings; this test is about it.
    with override_settings(KEYEDCACHE_STATS_FLUSH_INTERVAL=3600):
        asyncio.run(main())
    deadline = time.monotonic() + 10
    while not flushes and time.monotonic() < deadline:
        time.sleep(0.01)  # waiting for the flush thread, bounded
    assert ("keyedcache-stats-flush", False) in flushes
    assert not any(in_loop for _name, in_loop in flushes)


# -- records live outside the entries ---------------------------------------------------


def test_records_are_not_entries_and_survive_delete_all(backend: BackendConfig) -> None:
    cache_set("entry", 1, value="x")
    assert flush() is True
    assert cache_keys() == ["entry::1"]
    assert cache_keys("proc*") == []
    cache_delete()  # every keyedcache entry
    assert cache_keys() == []
    target = stats_cache()
    assert target is not None
    ids = [r["id"] for r in _read_records(target)]
    assert reporter.key.split("::", 1)[1] in ids


@pytest.mark.backends("locmem", "redis", "memcached", "file", "db-sqlite")
def test_records_expire_after_the_ttl(backend: BackendConfig) -> None:
    target = stats_cache()
    assert target is not None
    cache_set("entry", value=1)
    with override_settings(KEYEDCACHE_STATS_TTL=120):
        assert flush() is True
    ttl = target.ttl(reporter.key)
    assert ttl is not None and 115 <= ttl <= 120
    assert flush() is True  # the default: an hour, refreshed at every flush
    ttl = target.ttl(reporter.key)
    assert ttl is not None and 3590 <= ttl <= 3600


# -- outages -----------------------------------------------------------------------------


@pytest.mark.backends("locmem", "redis", "memcached", "file", "db-sqlite")
def test_an_outage_during_a_flush_is_counted_and_logged_not_raised(
    backend: BackendConfig, caplog: pytest.LogCaptureFixture
) -> None:
    cache_set("before", value=1)
    caplog.set_level(logging.WARNING, logger="keyedcache")
    reporter.guard._last_warning = -1e18

    def stats_errors() -> int:
        return counters.by_prefix().get(STATS_PREFIX, {}).get("errors", 0)

    errors = stats_errors()
    with backend.down():
        assert flush() is False
        assert flush() is False
        assert stats_errors() == errors + 2
        result = keyedcache.stats()  # reading the other records: nothing, or a failure
    assert result["process_count"] == 1 and result["processes"][0]["current"]
    assert result["totals"] == result["process"]["counters"]
    warnings = [
        r for r in caplog.records if r.name == "keyedcache" and "could not" in r.getMessage()
    ]
    assert len(warnings) == 1  # rate-limited
    assert "default" in warnings[0].getMessage()
    assert flush() is True  # back


def test_an_alias_that_cannot_cache_has_no_records(backend: BackendConfig) -> None:
    with override_settings(CACHES={"default": backend.variant(TIMEOUT=0)}):
        assert stats_cache() is None
        assert flush() is False
        result = keyedcache.stats()
    assert result["cluster"] is False and result["alias"] is None
    assert result["totals"] == result["process"]["counters"]


# -- fork -----------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
@pytest.mark.backends("locmem")
def test_a_forked_child_starts_from_zero_with_its_own_record(backend: BackendConfig) -> None:
    cache_set("before-fork", value=1)
    cache_get("before-fork")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            report = {
                "snapshot": counters.snapshot(),
                "key": reporter.key,
                "pid": reporter.pid,
                "ticker": reporter.ticker is None,
            }
            os.write(write, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        report = json.loads(pipe.read())
    os.waitpid(pid, 0)
    assert report["snapshot"] == figures()
    assert report["pid"] == pid and report["key"] != reporter.key
    assert report["ticker"] is True
    assert counters.snapshot()["hits"] >= 1  # the parent keeps its figures


# -- the 1.5 module globals ------------------------------------------------------------------


def test_cache_calls_and_hits_are_this_processs_figures(backend: BackendConfig) -> None:
    cache_set("old", value=1)
    cache_get("old")
    with request_cache():
        cache_get("old")
        cache_get("old")
    now = counters.snapshot()
    with pytest.warns(DeprecationWarning, match="CACHE_CALLS"):
        calls = keyedcache.CACHE_CALLS
    assert calls == now["calls"]
    with pytest.warns(DeprecationWarning, match="CACHE_HITS"):
        hits = keyedcache.CACHE_HITS
    assert hits == now["hits"] + now["local_hits"]


def test_cached_keys_lists_the_keyedcache_keys(backend: BackendConfig) -> None:
    cache_set("old", 1, value=1)
    cache_set("old", 2, value=2)
    with pytest.warns(DeprecationWarning, match="CACHED_KEYS"):
        assert keyedcache.CACHED_KEYS == {"old::1": True, "old::2": True}
    with pytest.warns(DeprecationWarning, match="CACHED_KEYS"):
        from keyedcache import CACHED_KEYS
    assert CACHED_KEYS == {"old::1": True, "old::2": True}


def test_other_missing_names_are_attribute_errors() -> None:
    with pytest.raises(AttributeError, match="NO_SUCH_NAME"):
        keyedcache.NO_SUCH_NAME  # noqa: B018
    assert not hasattr(keyedcache, "CACHE_MISSES")


def test_prefix_table_is_capped() -> None:
    from keyedcache.cluster import _prefix_table

    prefixes = {f"p{i}": figures(calls=i, hits=i) for i in range(MAX_PREFIXES + 10)}
    prefixes[OTHER] = figures(calls=1, misses=1)
    rows = _prefix_table(prefixes)
    assert len(rows) == MAX_PREFIXES
    assert rows[0]["prefix"] == f"p{MAX_PREFIXES + 9}"
    other = next(row for row in rows if row["prefix"] == OTHER)
    assert other["calls"] == sum(range(11)) + 1
    assert sum(row["calls"] for row in rows) == sum(p["calls"] for p in prefixes.values())


# -- noise: finished processes, prefixes nobody reads ------------------------------------

#: A short-lived process (as a `manage.py` run is): some traffic, then it exits.
EXITING = """
import django
django.setup()
from keyedcache import cache_get, cache_set
from keyedcache.reporting import reporter
cache_set("exited", 1, value=1)
cache_get("exited", 1)
print(reporter.key.split("::", 1)[1])
"""


@pytest.mark.backends("redis", "db-sqlite")
def test_a_process_that_exited_counts_but_is_not_listed(
    backend: BackendConfig, child_pool: Any, fresh: None
) -> None:
    from tests.procs import ROOT

    # A flush interval, as in production (the test settings turn automatic flushes off).
    settings = {"KEYEDCACHE_STATS_FLUSH_INTERVAL": 3600}
    env = process_env(
        {**backend.env(extra_settings=settings), "DJANGO_SETTINGS_MODULE": "tests.settings"}
    )
    exited = []
    for argv in (
        ["-c", EXITING],
        ["-c", EXITING],
        ["-m", "django", "keyedcache", "get", "exited::1"],
    ):
        done = subprocess.run(
            [sys.executable, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        exited.append(done.stdout.strip())
    assert exited[2] == "1"  # the command's own output: the value
    with pool_workers(child_pool, backend.env(extra_settings=settings), 1) as (worker,):
        running = worker.run(child_traffic, 0)  # a worker that stays: it flushed, it runs
        result = keyedcache.stats()
    listed = {p["id"] for p in result["processes"]}
    assert running["id"] in listed and not listed & set(exited[:2])
    assert result["process_count"] == 2  # this process and the worker
    finished = result["finished"]
    assert finished["count"] == 3
    assert (finished["counters"]["sets"], finished["counters"]["hits"]) == (2, 3)
    mine = result["process"]["counters"]
    for name in COUNTER_NAMES:  # exact totals: the exited processes' figures still count
        expected = mine[name] + running["counters"][name] + finished["counters"][name]
        assert result["totals"][name] == expected, name


@pytest.mark.backends("locmem")
def test_prefixes_nobody_reads_are_not_the_busiest(backend: BackendConfig, fresh: None) -> None:
    from keyedcache.management.cli import render_stats

    cache_set("written", 1, value=1)
    cache_delete("deleted", 1)
    cache_get("read", 1, default=None)
    result = keyedcache.stats()
    assert {"written", "deleted", "read"} <= {row["prefix"] for row in result["prefixes"]}
    busiest = [row["prefix"] for row in result["busiest"]]
    assert "read" in busiest and "written" not in busiest and "deleted" not in busiest
    text = render_stats(result, "default")
    assert "  read " in text.split("busiest key prefixes:")[1]
    assert "written" not in text and "deleted" not in text
