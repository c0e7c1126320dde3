"""Listing keys and deleting a subtree on Redis, memcached and the database cache.

Writes 100,000 keyedcache entries (90,000 `product::N` and a 10,000-key
subtree `sale::N`) to a private Redis, a private memcached, a SQLite file
database and, when PostgreSQL accepts user `postgres` on 127.0.0.1:5432, a
temporary PostgreSQL database; then times listing every key, deleting the
subtree with `cache_delete('sale', children=True)` and with
`cache_delete_pattern('sale::*')`. django-redis writes the same keys to the
same Redis and does the same in the same run: its `iter_keys('*')` and
`delete_pattern('sale::*')` are the baselines of the ratios. Times are
medians of --rounds runs; peak memory is tracemalloc's peak in one more run
(tracing slows Python down, so it is never timed).

Then `cache_get_many` of 100 keys against 100 `cache_get` calls on each backend.

    python bench/bench_operations.py           # 100,000 keys, 10,000 in the subtree
    python bench/bench_operations.py --quick   # 10,000 keys, 1,000 in the subtree
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.support import (
    interleaved_medians,
    machine,
    memcached_server,
    postgres_database,
    postgres_settings,
    redis_server,
    setup_django,
    table,
)

SQLITE_TABLE = "kc_bench_cache_sqlite"
PG_TABLE = "kc_bench_cache_pg"


class CacheTableRouter:
    """Puts each DatabaseCache table in its database (both share app label django_cache)."""

    def _db(self, model: Any) -> str | None:
        if model._meta.app_label != "django_cache":
            return None
        return "pg" if model._meta.db_table == PG_TABLE else "default"

    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        return self._db(model)

    def db_for_write(self, model: Any, **hints: Any) -> str | None:
        return self._db(model)

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        model = hints.get("model")
        if app_label != "django_cache" or model is None:
            return None
        return self._db(model) == db


@contextlib.contextmanager
def _removed(path: str) -> Iterator[None]:
    try:
        yield
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- measuring ------------------------------------------------------------------------------


def timed(func: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = func()
    return time.perf_counter() - start, result


def peak_bytes(func: Callable[[], Any]) -> int:
    """tracemalloc's peak, above what was allocated before, while `func` runs."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        func()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def measure(
    func: Callable[[], Any], rounds: int, before: Callable[[], Any] | None = None
) -> tuple[float, int, Any]:
    """(median seconds, peak bytes, last result) of `func`, `before` run untimed each time."""
    times = []
    result = None
    for _ in range(rounds):
        if before is not None:
            before()
        seconds, result = timed(func)
        times.append(seconds)
    if before is not None:
        before()
    return statistics.median(times), peak_bytes(func), result


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def mib(size: int) -> str:
    return f"{size / 2**20:,.2f} MiB"


# -- filling the backends ----------------------------------------------------------------------


def fill_keyedcache(keys: list[str]) -> None:
    """Write `keys` through keyedcache (cache_set_many, 1,000 a call)."""
    import keyedcache

    for start in range(0, len(keys), 1000):
        keyedcache.cache_set_many({k: i for i, k in enumerate(keys[start : start + 1000])}, 3600)


# -- the listing and delete bench --------------------------------------------------------------


def bench_backend(
    label: str, alias: str, everything: list[str], subtree: list[str], rounds: int
) -> list[tuple[str, str, int, float, int]]:
    """Rows (backend, operation, keys, seconds, peak bytes) for one keyedcache alias."""
    from django.test.utils import override_settings

    import keyedcache

    rows = []
    with override_settings(KEYEDCACHE_ALIAS=alias):
        # keyedcache writes the database cache's rows itself, one upsert per batch
        # (not Django's per-row COUNT(*)), so one fill serves every backend.
        fill = fill_keyedcache
        keyedcache.cache_delete()
        fill(everything)

        def listing() -> int:
            return sum(1 for _ in keyedcache.iter_keys("*"))

        seconds, peak, count = measure(listing, rounds)
        assert count == len(everything), (label, count)
        rows.append((label, "iter_keys('*')", count, seconds, peak))

        seconds, peak, found = measure(lambda: keyedcache.cache_keys("*"), rounds)
        assert len(found) == len(everything)
        rows.append((label, "cache_keys('*') (sorted list)", len(found), seconds, peak))

        def refill() -> None:
            fill(subtree)

        seconds, peak, _ = measure(
            lambda: keyedcache.cache_delete("sale", children=True), rounds, refill
        )
        assert keyedcache.cache_get(subtree[0], default=None) is None
        rows.append((label, "cache_delete('sale', children=True)", len(subtree), seconds, peak))

        seconds, peak, deleted = measure(
            lambda: keyedcache.cache_delete_pattern("sale::*"), rounds, refill
        )
        assert deleted == len(subtree), (label, deleted)
        rows.append((label, "cache_delete_pattern('sale::*')", deleted, seconds, peak))
        keyedcache.cache_delete()
    return rows


def bench_django_redis(
    everything: list[str], subtree: list[str], rounds: int
) -> list[tuple[str, str, int, float, int]]:
    from django.core.cache import caches

    cache: Any = caches["django_redis"]

    def fill(keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            cache.set_many({k: i for i, k in enumerate(keys[start : start + 1000])}, 3600)

    fill(everything)
    rows = []
    seconds, peak, count = measure(lambda: sum(1 for _ in cache.iter_keys("*")), rounds)
    assert count == len(everything)
    rows.append(("Redis, django-redis", "iter_keys('*')", count, seconds, peak))
    seconds, peak, found = measure(lambda: cache.keys("*"), rounds)
    rows.append(("Redis, django-redis", "keys('*') (list)", len(found), seconds, peak))
    seconds, peak, deleted = measure(
        lambda: cache.delete_pattern("sale::*"), rounds, lambda: fill(subtree)
    )
    assert deleted == len(subtree), deleted
    rows.append(("Redis, django-redis", "delete_pattern('sale::*')", deleted, seconds, peak))
    cache.delete_pattern("*")
    return rows


# -- cache_get_many against single gets --------------------------------------------------------


def bench_get_many(aliases: dict[str, str], rounds: int) -> list[list[str]]:
    from django.test.utils import override_settings

    import keyedcache

    keys = [f"gm::{i}" for i in range(100)]
    rows = []
    for label, alias in aliases.items():
        with override_settings(KEYEDCACHE_ALIAS=alias):
            keyedcache.cache_set_many({k: {"id": i} for i, k in enumerate(keys)}, 3600)
            assert len(keyedcache.cache_get_many(keys)) == 100
            get = keyedcache.cache_get
            calls = 200 if label == "locmem" else 20
            medians = interleaved_medians(
                {
                    "single": lambda get=get: [get(k) for k in keys],
                    "many": lambda: keyedcache.cache_get_many(keys),
                },
                calls,
                rounds,
            )
            keyedcache.cache_delete("gm", children=True)
        single, many = medians["single"], medians["many"]
        rows.append(
            [
                label,
                ms(single / 1e9),
                ms(many / 1e9),
                f"{single / many:.1f}x",
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 keys, 1,000 in the subtree")
    parser.add_argument("--keys", type=int, help="keys in all (default 100,000)")
    parser.add_argument("--subtree", type=int, help="keys in the subtree (default 10,000)")
    parser.add_argument("--rounds", type=int, help="timed runs per figure (default 3)")
    parser.add_argument("--no-postgres", action="store_true", help="skip PostgreSQL")
    args = parser.parse_args()
    total = args.keys or (10_000 if args.quick else 100_000)
    size = args.subtree or total // 10
    rounds = args.rounds or (2 if args.quick else 3)
    subtree = [f"sale::{i:06d}" for i in range(size)]
    everything = [f"product::{i:06d}" for i in range(total - size)] + subtree

    workdir = tempfile.mkdtemp(prefix="kc-bench-ops-")
    sqlite_path = os.path.join(workdir, "bench.sqlite3")
    pg: contextlib.AbstractContextManager[str | None] = (
        contextlib.nullcontext(None) if args.no_postgres else postgres_database()
    )
    with (
        redis_server() as redis_url,
        memcached_server() as memcached_location,
        pg as pg_name,
        _removed(workdir),
    ):
        databases: dict[str, Any] = {
            "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": sqlite_path}
        }
        caches: dict[str, Any] = {
            "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
            "redis": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": redis_url,
                "KEY_PREFIX": "kc",
            },
            "django_redis": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": redis_url,
                "KEY_PREFIX": "dr",
            },
            "memcached": {
                "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
                "LOCATION": memcached_location,
                "OPTIONS": {"connect_timeout": 5, "timeout": 60},
            },
            "sqlite": {
                "BACKEND": "django.core.cache.backends.db.DatabaseCache",
                "LOCATION": SQLITE_TABLE,
                "OPTIONS": {"MAX_ENTRIES": 10 * total},
            },
        }
        if pg_name is not None:
            databases["pg"] = postgres_settings(pg_name)
            caches["postgres"] = {
                "BACKEND": "django.core.cache.backends.db.DatabaseCache",
                "LOCATION": PG_TABLE,
                "OPTIONS": {"MAX_ENTRIES": 10 * total},
            }
        setup_django(
            caches,
            databases=databases,
            DATABASE_ROUTERS=[f"{__name__}.CacheTableRouter"],
            # No stats records written behind the bench's back.
            KEYEDCACHE_STATS_FLUSH_INTERVAL=None,
        )
        from django.core.management import call_command

        call_command("createcachetable", database="default", verbosity=0)
        if pg_name is not None:
            call_command("createcachetable", database="pg", verbosity=0)

        backends = {"Redis": "redis", "memcached": "memcached", "database, SQLite": "sqlite"}
        if pg_name is not None:
            backends["database, PostgreSQL"] = "postgres"
        results = bench_django_redis(everything, subtree, rounds)
        baseline = {
            "listing": results[0][3],
            "delete": results[2][3],
        }
        for label, alias in backends.items():
            print(f"... {label}", file=sys.stderr)
            results += bench_backend(label, alias, everything, subtree, rounds)

        rows = []
        for label, operation, count, seconds, peak in results:
            listing = "keys" in operation
            base = baseline["listing" if listing else "delete"]
            ratio = seconds / base
            shown = f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.3f}x"
            rows.append([label, operation, f"{count:,}", ms(seconds), mib(peak), shown])
        get_many_rows = bench_get_many(
            {"locmem": "default", **{k: v for k, v in backends.items()}}, max(rounds, 3)
        )

    print(f"machine: {machine()}")
    print(
        f"{total:,} keys, {size:,} of them in the subtree `sale`; medians of {rounds} runs; "
        "peak memory: tracemalloc, one more run"
    )
    print(
        "ratio: time / django-redis on the same Redis in this run (listings against its "
        "iter_keys('*'), deletes against its delete_pattern('sale::*'))"
    )
    print()
    print(
        table(
            rows,
            ["backend", "operation", "keys", "time", "peak memory", "vs django-redis"],
        )
    )
    print()
    print("100 keys read: 100 cache_get calls against one cache_get_many (medians)")
    print()
    print(table(get_many_rows, ["backend", "100 cache_get calls", "cache_get_many", "speed-up"]))


if __name__ == "__main__":
    main()
