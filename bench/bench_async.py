"""Async hit cost against the sync one: memoized hits and acache_get, on locmem and Redis."""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.support import machine, redis_server, setup_django, table

TARGET = 1.3

#: A contender runs `n` calls and returns the seconds they took.
Batch = Callable[[int], float]


def sync_batch(call: Callable[[], Any]) -> Batch:
    """`n` calls of `call` in a plain loop."""

    def batch(n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            call()
        return time.perf_counter() - started

    return batch


def async_batch(loop: asyncio.AbstractEventLoop, call: Callable[[], Awaitable[Any]]) -> Batch:
    """`n` awaits of `call()` inside one task of `loop` (the loop's own cost is not counted)."""

    async def run(n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            await call()
        return time.perf_counter() - started

    def batch(n: int) -> float:
        return loop.run_until_complete(run(n))

    return batch


def medians(contenders: dict[str, Batch], calls: int, rounds: int) -> dict[str, float]:
    """Median ns per call of each contender, interleaved within each round."""
    for batch in contenders.values():
        batch(max(calls // 10, 100))
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, batch in contenders.items():
            samples[name].append(batch(calls) * 1e9 / calls)
    return {name: statistics.median(values) for name, values in samples.items()}


def loop_check_cost(calls: int, rounds: int) -> list[list[str]]:
    """cache_get against the same function without its running-loop check, on locmem."""
    import keyedcache
    from keyedcache import api

    # api.cache_get minus its running-loop check, compiled with api's globals.
    source = (
        "def unchecked(*keys, default=NO_VALUE, **pairs):\n"
        "    key = key_from(keys, pairs) if keys else _key_of('cache_get', keys, pairs)\n"
        "    return (_default[0] or default_cache()).get(key, default)\n"
    )
    namespace = dict(vars(api))
    exec(source, namespace)
    unchecked = namespace["unchecked"]
    found = medians(
        {
            "keyedcache.cache_get (with the check)": sync_batch(
                lambda: keyedcache.cache_get("product", 123)
            ),
            "the same without the check": sync_batch(lambda: unchecked("product", 123)),
        },
        calls,
        rounds,
    )
    base = found["the same without the check"]
    return [[name, f"{ns:,.0f}", f"{ns / base:.3f}x"] for name, ns in found.items()]


def main() -> None:
    """Print the async/sync hit cost table with the ratios against the 1.3x target."""
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
        from asgiref.sync import sync_to_async
        from django.core.cache import caches
        from django.test import override_settings

        import keyedcache

        @keyedcache.cache_function(3600)
        def price(product: int) -> dict[str, Any]:
            return {"product": product, "price": "9.99"}

        @keyedcache.cache_function(3600)
        async def aprice(product: int) -> dict[str, Any]:
            return {"product": product, "price": "9.99"}

        loop = asyncio.new_event_loop()
        hopped = sync_to_async(keyedcache.cache_get)
        rows: list[list[str]] = []
        value = {"name": "Widget", "price": "9.99"}
        for alias, calls in (("default", args.calls), ("redis", max(args.calls // 10, 1000))):
            label = "locmem" if alias == "default" else alias
            plain = caches[alias]
            with override_settings(KEYEDCACHE_ALIAS=alias):
                keyedcache.cache_set("product", 123, value=value)
                plain.set("product::123", value)
                price(1)
                loop.run_until_complete(aprice(1))
                found = medians(
                    {
                        "sync memoized hit": sync_batch(lambda: price(1)),
                        "async memoized hit": async_batch(loop, lambda: aprice(1)),
                        "cache_get": sync_batch(lambda: keyedcache.cache_get("product", 123)),
                        "await acache_get": async_batch(
                            loop, lambda: keyedcache.acache_get("product", 123)
                        ),
                        "await sync_to_async(cache_get)": async_batch(
                            loop, lambda: hopped("product", 123)
                        ),
                        "await django cache.aget": async_batch(
                            loop, functools.partial(plain.aget, "product::123")
                        ),
                    },
                    calls,
                    args.rounds,
                )
            pairs = (
                ("async memoized hit", "sync memoized hit"),
                ("await acache_get", "cache_get"),
                ("await sync_to_async(cache_get)", "cache_get"),
                ("await django cache.aget", "cache_get"),
            )
            for name, base in pairs:
                ratio = found[name] / found[base]
                target = name in ("async memoized hit", "await acache_get")
                verdict = ("met" if ratio <= TARGET else "MISSED") if target else "(reference)"
                rows.append(
                    [
                        label,
                        f"{name} vs {base}",
                        f"{found[name]:,.0f}",
                        f"{found[base]:,.0f}",
                        f"{ratio:.2f}x",
                        verdict,
                    ]
                )
        check = loop_check_cost(args.calls, args.rounds)
        loop.close()
        print(f"machine: {machine()}; medians of {args.rounds} interleaved rounds")
        header = ["backend", "call (a hit)", "async ns", "sync ns", "ratio", f"<= {TARGET}x"]
        print(table(rows, header))
        print()
        print("The running-loop check of the sync module functions (locmem hit):")
        print(table(check, ["call", "ns/call", "vs without the check"]))


if __name__ == "__main__":
    main()
