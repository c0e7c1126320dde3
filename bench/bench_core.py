"""Hit cost of keyedcache.cache_get against plain Django cache.get, on locmem and Redis."""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.support import interleaved_medians, machine, redis_server, setup_django, table

TARGETS = {"locmem": 1.15, "redis": 1.05}


def main() -> None:
    """Print the per-hit cost table and the ratios against plain Django."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=20000, help="calls per round on locmem")
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
        from django.core.cache import cache, caches
        from django.test import override_settings

        import keyedcache

        rows = []
        value = {"name": "Widget", "price": "9.99"}
        for alias, calls in (("default", args.calls), ("redis", max(args.calls // 10, 1000))):
            label = "locmem" if alias == "default" else alias
            plain = caches[alias]
            plain.set("product::123", value)
            with override_settings(KEYEDCACHE_ALIAS=alias):
                keyedcache.cache_set("product", 123, value=value)
                assert keyedcache.cache_get("product", 123) == value
                contenders = {
                    "keyedcache.cache_get('product', 123)": lambda: keyedcache.cache_get(
                        "product", 123
                    ),
                    "caches[alias].get('product::123')": lambda plain=plain: plain.get(
                        "product::123"
                    ),
                }
                if alias == "default":
                    contenders["django.core.cache.cache.get('product::123')"] = lambda: cache.get(
                        "product::123"
                    )
                medians = interleaved_medians(contenders, calls, args.rounds)
            base = medians["caches[alias].get('product::123')"]
            for name, ns in medians.items():
                ratio = ns / base
                target = TARGETS[label] if name.startswith("keyedcache") else None
                verdict = "" if target is None else ("met" if ratio <= target else "MISSED")
                rows.append(
                    [label, name, f"{ns:,.0f}", f"{ratio:.2f}x", f"{target or ''}", verdict]
                )
        print(f"machine: {machine()}; medians of {args.rounds} interleaved rounds")
        print(table(rows, ["backend", "call (a hit)", "ns/call", "vs plain Django", "target", ""]))


if __name__ == "__main__":
    main()
