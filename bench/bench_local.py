"""Cost of a keyedcache hit answered by the first-level scope vs plain locmem and Redis gets."""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.support import interleaved_medians, machine, redis_server, setup_django, table

#: How many times faster than each plain get a scope hit must be.
TARGETS = {"locmem": 10.0, "redis": 100.0}

SCOPE_CACHE_GET = "keyedcache.cache_get('product', 123), in scope"
SCOPE_PREBUILT = "default_cache().get('product::123'), in scope"
LOCMEM = "caches['default'].get('product::123') (locmem)"
REDIS = "caches['redis'].get('product::123') (Redis, loopback)"


def main() -> None:
    """Print the per-hit cost table, the ratios and whether the targets are met."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=20000, help="calls per contender per round")
    args = parser.parse_args()

    with redis_server() as redis_url:
        setup_django(
            {
                "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
                "redis": {
                    "BACKEND": "django.core.cache.backends.redis.RedisCache",
                    "LOCATION": redis_url,
                },
            }
        )
        from django.core.cache import caches

        import keyedcache
        from keyedcache.counters import counters
        from keyedcache.local import request_cache

        value = {"name": "Widget", "price": "9.99"}
        locmem, redis = caches["default"], caches["redis"]
        locmem.set("product::123", value)
        redis.set("product::123", value)
        keyedcache.cache_set("product", 123, value=value)  # keyedcache's alias is locmem
        store = keyedcache.default_cache()
        contenders = {
            SCOPE_CACHE_GET: lambda: keyedcache.cache_get("product", 123),
            SCOPE_PREBUILT: lambda: store.get("product::123"),
            LOCMEM: lambda: locmem.get("product::123"),
            REDIS: lambda: redis.get("product::123"),
        }
        with request_cache():
            # Every keyedcache read below must be a hit answered by the scope.
            assert keyedcache.cache_get("product", 123) == value
            before = counters.snapshot()["local_hits"]
            assert keyedcache.cache_get("product", 123) == value
            assert store.get("product::123") == value
            assert counters.snapshot()["local_hits"] - before == 2
            assert locmem.get("product::123") == value == redis.get("product::123")
            hits_before = counters.snapshot()["hits"]
            medians = interleaved_medians(contenders, args.calls, args.rounds)
            assert counters.snapshot()["hits"] == hits_before, "a read left the scope"

    rows = []
    verdicts = []
    for name, ns in medians.items():
        row = [name, f"{ns:,.0f}"]
        if name in (SCOPE_CACHE_GET, SCOPE_PREBUILT):
            for label, plain in (("locmem", LOCMEM), ("redis", REDIS)):
                ratio = medians[plain] / ns
                ok = ratio >= TARGETS[label]
                row.append(f"{ratio:,.1f}x ({'met' if ok else 'MISSED'})")
                if name == SCOPE_CACHE_GET:
                    verdicts.append(f">= {TARGETS[label]:g}x {label}: {'met' if ok else 'MISSED'}")
        else:
            row += ["", ""]
        rows.append(row)
    print(
        f"machine: {machine()}; medians of {args.rounds} interleaved rounds "
        f"of {args.calls:,} calls each"
    )
    print(
        table(
            rows,
            [
                "call (a hit)",
                "ns/call",
                f"faster than locmem (target {TARGETS['locmem']:g}x)",
                f"faster than Redis (target {TARGETS['redis']:g}x)",
            ],
        )
    )
    print("targets for cache_get in scope: " + "; ".join(verdicts))


if __name__ == "__main__":
    main()
