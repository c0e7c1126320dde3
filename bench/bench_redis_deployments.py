"""Redis deployments: hits on each Redis client library, and cluster invalidation at scale.

Two measurements in one run:

1. hit cost on Django's RedisCache, django-redis, django-valkey and a 3-primary
   Redis Cluster (django-valkey's ClusterValkeyCache): `keyedcache.cache_get`
   and a hit of a `cache_function`-memoized function, each as a ratio to a
   plain `caches[alias].get(...)` of the same backend (medians of interleaved
   rounds);
2. a children delete (and the next read) on the cluster, empty and then
   holding `--keys` unrelated keys (default 1,000,000), as a ratio.

Servers are private, on free ports; the cluster is cluster-enabled
redis-servers joined by `redis-cli --cluster create`.

    python bench/bench_redis_deployments.py
    python bench/bench_redis_deployments.py --keys 100000 --rounds 5   # quicker
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.support import interleaved_medians, machine, redis_server, setup_django, table
from tests.topologies import RedisCluster

HIT_TARGET = 1.05
SCALE_TARGET = 3.0
VALUE = {"name": "Widget", "price": "9.99"}


def caches_for(redis_url: str, cluster_url: str) -> dict[str, Any]:
    """One alias per client library, all on the same redis-server; one on the cluster."""
    location = redis_url.split("://", 1)[1]
    return {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "django": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url},
        "django-redis": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": redis_url},
        "django-valkey": {
            "BACKEND": "django_valkey.cache.ValkeyCache",
            "LOCATION": f"valkey://{location}",
        },
        "valkey-cluster": {
            "BACKEND": "django_valkey.cluster_cache.cache.ClusterValkeyCache",
            "LOCATION": cluster_url,
        },
    }


def hits(aliases: list[str], calls: int, rounds: int) -> list[list[str]]:
    """Rows of the hit table: keyed and memoized hits against a plain get, per alias."""
    from django.core.cache import caches
    from django.test import override_settings

    import keyedcache

    rows = []
    for alias in aliases:
        plain = caches[alias]
        plain.set("product::123", VALUE)
        with override_settings(KEYEDCACHE_ALIAS=alias):
            keyedcache.keyedcache_configure()

            @keyedcache.cache_function(300)
            def product(pk: int) -> dict[str, str]:
                return VALUE

            keyedcache.cache_set("product", 123, value=VALUE)
            assert keyedcache.cache_get("product", 123) == VALUE
            assert product(123) == VALUE and product(123) == VALUE
            adapter = keyedcache.default_cache().adapter.name
            medians = interleaved_medians(
                {
                    "plain": lambda plain=plain: plain.get("product::123"),
                    "keyed": lambda: keyedcache.cache_get("product", 123),
                    "memoized": lambda: product(123),
                },
                calls,
                rounds,
            )
        base = medians["plain"]
        for name, label in (("keyed", "cache_get('product', 123)"), ("memoized", "product(123)")):
            ratio = medians[name] / base
            verdict = "met" if ratio <= HIT_TARGET else "MISSED"
            rows.append(
                [
                    f"{alias} ({adapter})",
                    label,
                    f"{medians[name] / 1000:,.1f}",
                    f"{base / 1000:,.1f}",
                    f"{ratio:.2f}x",
                    verdict,
                ]
            )
    return rows


def fill_cluster(count: int) -> None:
    """Write `count` unrelated keys into the cluster alias (not keyedcache's: plain keys)."""
    from django.core.cache import caches

    client = caches["valkey-cluster"].client.get_client(write=True)
    batch = 20_000
    for start in range(0, count, batch):
        stop = min(start + batch, count)
        client.mset_nonatomic({f"unrelated:{i}": b"x" * 20 for i in range(start, stop)})


def children_delete_seconds(rounds: int) -> float:
    """Median seconds of: write a 10-key subtree, delete it with children, read a key of it."""
    from django.test import override_settings

    import keyedcache

    samples = []
    with override_settings(KEYEDCACHE_ALIAS="valkey-cluster"):
        keyedcache.keyedcache_configure()
        for _ in range(rounds):
            for i in range(10):
                keyedcache.cache_set("shop", "cart", i, value=i)
            start = time.perf_counter()
            keyedcache.cache_delete("shop", "cart", children=True)
            missing = keyedcache.cache_get("shop", "cart", 3, default=None)
            samples.append(time.perf_counter() - start)
            assert missing is None
    return statistics.median(samples)


def main() -> None:
    """Print both tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=3000, help="calls per round and contender")
    parser.add_argument("--keys", type=int, default=1_000_000, help="unrelated keys (scale)")
    args = parser.parse_args()

    with redis_server() as redis_url, tempfile.TemporaryDirectory() as workdir:
        cluster = RedisCluster(Path(workdir), primaries=3)
        try:
            setup_django(caches_for(redis_url, f"valkey://{cluster.nodes[0].location}"))
            aliases = ["django", "django-redis", "django-valkey", "valkey-cluster"]
            print(f"machine: {machine()}; medians of {args.rounds} interleaved rounds")
            print()
            print(
                table(
                    hits(aliases, args.calls, args.rounds),
                    ["alias (adapter)", "a hit of", "µs", "plain get µs", "ratio", "target 1.05x"],
                )
            )
            empty = children_delete_seconds(args.rounds * 5)
            fill_cluster(args.keys)
            full = children_delete_seconds(args.rounds * 5)
            ratio = full / empty
            print()
            rows = [
                ["0", f"{empty * 1000:.2f}", "1.00x", ""],
                [
                    f"{args.keys:,}",
                    f"{full * 1000:.2f}",
                    f"{ratio:.2f}x",
                    "met" if ratio <= SCALE_TARGET else "MISSED",
                ],
            ]
            print(
                table(
                    rows,
                    ["unrelated keys in the cluster", "children delete + read ms", "ratio", ""],
                )
            )
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
