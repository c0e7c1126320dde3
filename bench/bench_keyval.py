"""A cached KeyVal.get against a plain database read (ORM get + unpickle): SQLite, PostgreSQL."""

from __future__ import annotations

import argparse
import contextlib
import os
import pickle
import sys
import tempfile
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.support import (
    interleaved_medians,
    machine,
    postgres_database,
    postgres_settings,
    redis_server,
    table,
)

#: A cached kv.get on the local-memory cache must be at least this many times faster.
TARGET = 10.0
VALUE = {"enabled": True, "rollout": 25, "groups": ["staff", "beta"], "note": "feature switch"}


def configure(sqlite_path: str, pg_name: str | None, redis_url: str) -> list[str]:
    """Set Django up with the databases and caches of the bench; return the database aliases."""
    import django
    from django.conf import settings

    databases: dict[str, Any] = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": sqlite_path,
            "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL;"},
        }
    }
    if pg_name:
        databases["pg"] = postgres_settings(pg_name)
    settings.configure(
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "keyedcache",
            "keyedcache.contrib.keyval",
        ],
        DATABASES=databases,
        CACHES={
            "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
            "redis": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": redis_url,
            },
        },
        USE_TZ=True,
    )
    django.setup()
    from django.core.management import call_command

    for alias in databases:
        call_command("migrate", database=alias, verbosity=0)
    return list(databases)


def measure(alias: str, calls: int, rounds: int) -> list[list[str]]:
    """Rows of the table for the database `alias`."""
    from django.test.utils import override_settings

    from keyedcache.contrib.keyval import KeyVal
    from keyedcache.contrib.keyval.models import KeyValEntry
    from keyedcache.local import request_cache

    kv = KeyVal("bench", backend=f"db://?using={alias}")
    kv.set("feature", VALUE)
    rows = KeyValEntry.objects.using(alias)

    def plain() -> Any:
        return pickle.loads(rows.get(store="bench", key="feature").value)

    assert plain() == VALUE

    def cached() -> Any:
        return kv.get("feature")

    from django.core.cache import caches

    redis = caches["redis"]
    redis.set("bench-reference", VALUE)
    plain_name = "KeyValEntry.objects.get(...) + unpickle"
    reference = "caches['redis'].get(...), for reference"
    setups: list[tuple[str, Callable[[], Any], float | None]] = [
        ("kv.get, locmem cache", contextlib.nullcontext, TARGET),
        ("kv.get, Redis cache", lambda: override_settings(KEYEDCACHE_ALIAS="redis"), None),
        ("kv.get, request scope", request_cache, None),
    ]
    label = "PostgreSQL" if alias == "pg" else "SQLite"
    result: list[list[str]] = []
    for name, setup, target in setups:
        contenders = {plain_name: plain, name: cached}
        if "Redis" in name:  # one plain round trip: a hit there is two (token and copy)
            contenders[reference] = lambda: redis.get("bench-reference")
        with setup():
            assert cached() == VALUE  # warm: this fills the cache
            medians = interleaved_medians(contenders, calls, rounds)
        if not result:
            base_us = medians[plain_name] / 1000
            result.append([label, plain_name, f"{base_us:,.1f}", "1.0x", "", ""])
        for contender in contenders:
            if contender == plain_name:
                continue
            speedup = medians[plain_name] / medians[contender]
            goal = target if contender == name else None
            verdict = "" if goal is None else ("met" if speedup >= goal else "MISSED")
            result.append(
                [
                    label,
                    contender,
                    f"{medians[contender] / 1000:,.1f}",
                    f"{speedup:,.1f}x",
                    f">= {goal:g}x" if goal else "",
                    verdict,
                ]
            )
    return result


def main() -> None:
    """Print the table: microseconds per read and the speed-up over a plain database read."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=2000, help="calls per contender per round")
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="kc-bench-keyval-") as tmp,
        redis_server() as redis_url,
        postgres_database() as pg_name,
    ):
        aliases = configure(os.path.join(tmp, "bench.sqlite3"), pg_name, redis_url)
        rows = [row for alias in aliases for row in measure(alias, args.calls, args.rounds)]
        print(f"machine: {machine()}; medians of {args.rounds} interleaved rounds")
        print(
            table(
                rows,
                ["database", "read of one key", "µs/read", "vs plain read", "target", ""],
            )
        )


if __name__ == "__main__":
    main()
