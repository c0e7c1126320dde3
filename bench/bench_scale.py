"""Invalidation and hits as the backend fills up with unrelated keys (0, 100,000, 1,000,000).

On a private Redis (Django's RedisCache), the database cache on a scratch
PostgreSQL database (127.0.0.1:5432, user postgres; created and dropped here)
and a private memcached, each holding N unrelated plain keys (rows), it times:

- children delete: `cache_delete('product', 12, children=True)` of a 4-key subtree
  (`product::12`, `::a`, `::b`, `::c`, written again, untimed, before every delete);
- delete-all: `cache_delete()` (the 4 keys written again before each);
- model save: `instance.save()` of a `CachedObjectMixin` model (its table in an
  in-memory SQLite database), whose post_save handler drops `ScaleWidget::1` and the
  3 keys below it and caches the instance afresh;
- a hit: `keyedcache.cache_get('product', 123)` against `caches[alias].get('plain::123')`.

The unrelated keys are written in bulk, outside keyedcache: Redis MSET batches
through a pipeline, one `INSERT ... SELECT generate_series` into the cache table
(far-future expiry), memcached set_many batches. Sizes are filled in increasing
order, each on top of the last. Every figure is the median over --rounds rounds
in which the operations take turns (interleaved); within a round an operation
repeats until 0.2 s of timed work (at most 50 times) and counts its mean.

    python bench/bench_scale.py                          # 0, 100,000, 1,000,000; all three
    python bench/bench_scale.py --sizes 0,10000          # smoke run, under a minute
    python bench/bench_scale.py --backends redis,postgres --rounds 3
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.support import (
    machine,
    memcached_server,
    per_call_ns,
    postgres_database,
    postgres_settings,
    redis_server,
    setup_django,
    table,
)

BACKENDS = ("redis", "postgres", "memcached")
LABELS = {
    "redis": "Redis (Django RedisCache)",
    "postgres": "database cache on PostgreSQL",
    "memcached": "memcached (PyMemcacheCache)",
}
PG_TABLE = "kc_bench_scale_cache"
#: Timed work per operation and round (seconds), and the most repetitions it takes.
BUDGET = 0.2
MAX_REPS = 50
#: Hit calls per contender and round.
HIT_CALLS = {"redis": 500, "postgres": 300, "memcached": 500}
#: In the order they take turns in a round (hits first: delete-all removes the hit entry).
OPERATIONS = (
    "hit: keyedcache.cache_get",
    "hit: plain Django cache.get",
    "children delete (4-key subtree)",
    "delete-all",
    "model save (CachedObjectMixin)",
)
HIT, PLAIN_HIT, CHILDREN, DELETE_ALL, SAVE = OPERATIONS
#: The order of the printed rows.
SHOWN = (CHILDREN, DELETE_ALL, SAVE, HIT, PLAIN_HIT)


class CacheTableRouter:
    """Puts the cache table in the scratch PostgreSQL database, everything else in SQLite."""

    def _db(self, model: Any) -> str | None:
        return "pg" if model._meta.app_label == "django_cache" else None

    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        return self._db(model)

    def db_for_write(self, model: Any, **hints: Any) -> str | None:
        return self._db(model)

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        if app_label != "django_cache":
            return None
        return db == "pg"


# -- filling with unrelated keys ----------------------------------------------------------------


class Filler:
    """Writes unrelated plain keys [start, stop) straight into the backend, and counts them."""

    def fill(self, start: int, stop: int) -> None:
        raise NotImplementedError

    def count(self) -> int:
        raise NotImplementedError


class RedisFiller(Filler):
    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url)

    def fill(self, start: int, stop: int) -> None:
        # MSETs of 10,000 keys, ten to a pipeline round trip.
        pipe = self.client.pipeline(transaction=False)
        for batch, low in enumerate(range(start, stop, 10_000), 1):
            pipe.mset({f"unrelated:{i:08d}": b"x" for i in range(low, min(low + 10_000, stop))})
            if batch % 10 == 0:
                pipe.execute()
        pipe.execute()

    def count(self) -> int:
        return sum(1 for _ in self.client.scan_iter(match="unrelated:*", count=10_000))


class PostgresFiller(Filler):
    def fill(self, start: int, stop: int) -> None:
        from django.db import connections

        with connections["pg"].cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {PG_TABLE} (cache_key, value, expires) "
                "SELECT 'unrelated:' || lpad(g::text, 8, '0'), 'x', '9999-01-01'::timestamptz "
                "FROM generate_series(%s, %s) AS g",
                [start, stop - 1],
            )
            cursor.execute(f"ANALYZE {PG_TABLE}")  # as autovacuum would, soon after

    def count(self) -> int:
        from django.db import connections

        with connections["pg"].cursor() as cursor:
            cursor.execute(
                f"SELECT count(*) FROM {PG_TABLE} WHERE cache_key LIKE %s", ["unrelated:%"]
            )
            return int(cursor.fetchone()[0])


class MemcachedFiller(Filler):
    def __init__(self, location: str) -> None:
        from pymemcache.client.base import Client

        host, port = location.rsplit(":", 1)
        self.client = Client((host, int(port)), connect_timeout=5, timeout=60)

    def fill(self, start: int, stop: int) -> None:
        for low in range(start, stop, 1000):
            batch = {f"unrelated:{i:08d}": b"x" for i in range(low, min(low + 1000, stop))}
            failed = self.client.set_many(batch, noreply=False)
            assert not failed, f"memcached refused {len(failed)} keys"

    def count(self) -> int:
        stats = self.client.stats()
        if int(stats.get(b"evictions", 0)):
            print("warning: memcached evicted entries; give it more memory", file=sys.stderr)
        return int(stats[b"curr_items"])


# -- one round of the operations ----------------------------------------------------------------


def mean_time(operation: Callable[[], Any], prepare: Callable[[], Any]) -> float:
    """Mean seconds of `operation`, `prepare` run untimed before each, over BUDGET or MAX_REPS."""
    total = 0.0
    reps = 0
    while reps < MAX_REPS and (reps == 0 or total < BUDGET):
        prepare()
        start = time.perf_counter()
        operation()
        total += time.perf_counter() - start
        reps += 1
    return total / reps


def make_widget() -> Any:
    """A saved instance of a CachedObjectMixin model whose table lives in SQLite."""
    from django.db import connection, models

    from keyedcache.models import CachedObjectMixin

    class ScaleWidget(CachedObjectMixin, models.Model):
        name = models.CharField(max_length=100)

        class Meta:
            app_label = "keyedcache"

    with connection.schema_editor() as editor:
        editor.create_model(ScaleWidget)
    return ScaleWidget._default_manager.create(name="widget")


def operations(alias: str, widget: Any) -> dict[str, Callable[[], float]]:
    """The timed operations on `alias`, each returning mean seconds per call for one round."""
    from django.core.cache import caches

    import keyedcache

    plain = caches[alias]
    value = {"name": "Widget", "price": "9.99"}
    subtree = [("product", 12), ("product", 12, "a"), ("product", 12, "b"), ("product", 12, "c")]
    below = ("a", "b", "c")
    saves = iter(range(10**9))

    def write_subtree() -> None:
        for parts in subtree:
            keyedcache.cache_set(*parts, value=value, length=3600)

    def write_widget_subtree() -> None:
        keyedcache.cache_set(widget.cache_key(), value=widget, length=3600)
        for part in below:
            keyedcache.cache_set(widget.cache_key(part), value=value, length=3600)

    def save() -> None:
        widget.name = f"widget {next(saves)}"
        widget.save()

    def hit() -> Any:
        return keyedcache.cache_get("product", 123)

    def plain_hit() -> Any:
        return plain.get("plain::123")

    calls = HIT_CALLS[alias]
    return {
        HIT: lambda: per_call_ns(hit, calls) / 1e9,
        PLAIN_HIT: lambda: per_call_ns(plain_hit, calls) / 1e9,
        CHILDREN: lambda: mean_time(
            lambda: keyedcache.cache_delete("product", 12, children=True), write_subtree
        ),
        DELETE_ALL: lambda: mean_time(keyedcache.cache_delete, write_subtree),
        SAVE: lambda: mean_time(save, write_widget_subtree),
    }


def check(alias: str, widget: Any) -> None:
    """Each operation did its job: entries gone, plain keys kept, the widget cached afresh."""
    from django.core.cache import caches

    import keyedcache

    assert keyedcache.cache_get("product", 12, "a", default=None) is None, alias
    assert keyedcache.cache_get("product", 123, default=None) is None, alias  # delete-all
    assert caches[alias].get("plain::123") is not None, alias  # not keyedcache's: kept
    assert keyedcache.cache_get(widget.cache_key("a"), default=None) is None, alias
    assert keyedcache.cache_get(widget.cache_key()).name == widget.name, alias


def bench_backend(
    alias: str, filler: Filler, widget: Any, sizes: list[int], rounds: int
) -> dict[str, dict[int, float]]:
    """{operation: {size: median seconds per call}} on one alias."""
    from django.core.cache import caches
    from django.test.utils import override_settings

    import keyedcache

    results: dict[str, dict[int, float]] = {name: {} for name in OPERATIONS}
    with override_settings(KEYEDCACHE_ALIAS=alias):
        keyedcache.cache_delete()
        filled = 0
        for size in sizes:
            started = time.perf_counter()
            if size > filled:
                filler.fill(filled, size)
                filled = size
            counted = filler.count()
            assert counted >= size, (alias, size, counted)
            print(
                f"{alias}: {size:,} unrelated keys ({counted:,} counted), "
                f"filled in {time.perf_counter() - started:.1f} s",
                file=sys.stderr,
            )
            ops = operations(alias, widget)
            samples: dict[str, list[float]] = {name: [] for name in OPERATIONS}
            for round_no in range(rounds + 1):  # round 0 warms up and is not counted
                # The hit entries, written again each round (delete-all removes keyedcache's).
                keyedcache.cache_set("product", 123, value={"price": "9.99"}, length=3600)
                caches[alias].set("plain::123", {"price": "9.99"}, 3600)
                assert keyedcache.cache_get("product", 123) == {"price": "9.99"}, alias
                for name, op in ops.items():
                    seconds = op()
                    if round_no:
                        samples[name].append(seconds)
                check(alias, widget)
            for name in OPERATIONS:
                results[name][size] = statistics.median(samples[name])
            assert filler.count() >= size, f"{alias}: a delete touched unrelated keys"
        keyedcache.cache_delete()
    return results


# -- output ---------------------------------------------------------------------------------------


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1000
    if ms < 10:
        return f"{ms:.3f}"
    if ms < 100:
        return f"{ms:.2f}"
    return f"{ms:,.1f}"


def render(results: dict[str, dict[int, float]], sizes: list[int]) -> str:
    first, last = sizes[0], sizes[-1]
    header = [
        "operation (median ms per call)",
        *[f"{size:,} keys" for size in sizes],
        f"{last:,} / {first:,}",
    ]
    rows = []
    for name in SHOWN:
        by_size = results[name]
        rows.append(
            [
                name,
                *[fmt_ms(by_size[size]) for size in sizes],
                f"{by_size[last] / by_size[first]:,.2f}x",
            ]
        )
    hit, plain = results[HIT], results[PLAIN_HIT]
    ratios = [hit[size] / plain[size] for size in sizes]
    rows.append(
        [
            "hit ratio: keyedcache / plain Django",
            *[f"{ratio:.2f}x" for ratio in ratios],
            f"{ratios[-1] / ratios[0]:.2f}x",
        ]
    )
    return table(rows, header)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        default="0,100000,1000000",
        help="unrelated keys per step, comma separated (default 0,100000,1000000)",
    )
    parser.add_argument("--rounds", type=int, default=5, help="counted rounds (default 5)")
    parser.add_argument(
        "--backends",
        default=",".join(BACKENDS),
        help=f"comma separated, of {', '.join(BACKENDS)} (default: all)",
    )
    args = parser.parse_args()
    sizes = sorted({int(size.replace("_", "")) for size in args.sizes.split(",")})
    chosen = [name.strip() for name in args.backends.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(BACKENDS))
    if unknown or not chosen or len(sizes) < 2 or sizes[0] < 0:
        parser.error(
            f"need --backends from {BACKENDS} (unknown: {unknown}) and at least two sizes >= 0"
        )

    with contextlib.ExitStack() as stack:
        caches: dict[str, Any] = {
            "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
        }
        databases: dict[str, Any] = {
            "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
        }
        fillers: dict[str, Callable[[], Filler]] = {}
        if "redis" in chosen:
            url = stack.enter_context(redis_server())
            caches["redis"] = {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": url,
            }
            fillers["redis"] = functools.partial(RedisFiller, url)
        if "memcached" in chosen:
            location = stack.enter_context(memcached_server())
            caches["memcached"] = {
                "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
                "LOCATION": location,
                "OPTIONS": {"connect_timeout": 5, "timeout": 60},
            }
            fillers["memcached"] = functools.partial(MemcachedFiller, location)
        if "postgres" in chosen:
            pg_name = stack.enter_context(postgres_database("kc_bench_scale"))
            if pg_name is None:
                raise SystemExit("PostgreSQL on 127.0.0.1:5432 is not reachable")
            databases["pg"] = postgres_settings(pg_name)
            caches["postgres"] = {
                "BACKEND": "django.core.cache.backends.db.DatabaseCache",
                "LOCATION": PG_TABLE,
                # Django culls on a set once the table holds more rows than this.
                "OPTIONS": {"MAX_ENTRIES": 10 * sizes[-1] + 10_000},
            }
            fillers["postgres"] = PostgresFiller
        setup_django(
            caches,
            databases=databases,
            DATABASE_ROUTERS=[f"{__name__}.CacheTableRouter"],
            # No stats records written behind the bench's back.
            KEYEDCACHE_STATS_FLUSH_INTERVAL=None,
        )
        if "postgres" in chosen:
            from django.core.management import call_command

            call_command("createcachetable", database="pg", verbosity=0)
        widget = make_widget()
        started = time.perf_counter()
        output = [
            f"machine: {machine()}",
            f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
            f"medians of {args.rounds} interleaved rounds",
        ]
        for name in BACKENDS:
            if name not in chosen:
                continue
            results = bench_backend(name, fillers[name](), widget, sizes, args.rounds)
            output += ["", f"### {LABELS[name]}", "", render(results, sizes)]
        output.append(f"\n(total {time.perf_counter() - started:.0f} s)")
        print("\n".join(output))


if __name__ == "__main__":
    main()
