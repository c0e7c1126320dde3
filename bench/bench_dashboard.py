"""Render time of the dashboard with 100,000 keys, on Redis and on the database cache (SQLite).

Fills each cache with 100,000 keyedcache entries in a few branches, logs a
staff user in with Django's test client and times whole requests (middleware,
session, view, template) of:

- the stats page (`/cache/`): cluster stats read from the backend, the health
  probe, the chart;
- the first page of the key browser at the root (`/cache/view/`) and in the
  biggest branch (`/cache/view/?prefix=product`, 60,000 keys directly below it);
- a glob search, and a full count of the root (`?all=1`, every key read) for
  reference: they have no target.

Then a branch of ten 50 MB values (issue 13), on locmem and on Redis: the
branch page must render in under a second and under 100 MB of extra resident
memory (its peak over the memory before the request), because listings read
sizes without unpickling values; the key page of one of them decodes that one
value and shows a bounded preview. `--big-only` runs just this part.

Target: under 300 ms for the stats page and the first page of the key browser.
Each figure is the median over --rounds requests (after one warm-up request),
p90 next to it. Needs redis-server (a private one is started on a free port).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.support import machine, redis_server, table

KEYS = 100_000
TARGET_MS = 300.0
#: (label, path, has a target)
PAGES = [
    ("stats page", "/cache/", True),
    ("key browser, root", "/cache/view/", True),
    ("key browser, branch product", "/cache/view/?prefix=product", True),
    ("search product::12*", "/cache/view/?q=product::12*", False),
    ("root, every key counted", "/cache/view/?all=1", False),
]


def configure(redis_url: str, db_path: str) -> None:
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-not-secret",
        ALLOWED_HOSTS=["*"],
        USE_TZ=True,
        INSTALLED_APPS=[
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "keyedcache",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        # /admin/ and /cache/, as in the tests.
        ROOT_URLCONF="tests.urls_dashboard",
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
        STATIC_URL="/static/",
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": db_path,
                # Filling 100,000 rows one transaction each: no fsync per commit.
                "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;"},
            }
        },
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        CACHES={
            "redis": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": redis_url,
            },
            "locmem": {
                "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                "LOCATION": "bench-dashboard",
                "OPTIONS": {"MAX_ENTRIES": 10 * KEYS},
            },
            "db": {
                "BACKEND": "django.core.cache.backends.db.DatabaseCache",
                "LOCATION": "bench_cache",
                "OPTIONS": {"MAX_ENTRIES": 10 * KEYS},
            },
        },
        KEYEDCACHE_ALIAS="redis",
        # Nothing flushes stats records while we time (each process writes its own).
        KEYEDCACHE_STATS_FLUSH_INTERVAL=None,
    )
    django.setup()


def key_set(count: int) -> list[str]:
    """`count` keys: product::<n> (60%), its reviews, category pages, sessions, memoized calls."""
    keys = [f"product::{i}" for i in range(count * 6 // 10)]
    keys += [f"product::{i}::reviews" for i in range(count // 10)]
    keys += [f"category::{i % 200}::page::{i // 200}" for i in range(count // 10)]
    keys += [f"func::shop.views.price::({i},)" for i in range(count // 20)]
    keys += [f"session::{i:08x}" for i in range(count - len(keys))]
    return keys


def fill(alias: str, keys: list[str]) -> float:
    from keyedcache.registry import get_cache

    store = get_cache(alias)
    start = time.perf_counter()
    for begin in range(0, len(keys), 1000):
        batch = keys[begin : begin + 1000]
        store.set_many({key: {"key": key, "price": len(key)} for key in batch}, 3600)
    return time.perf_counter() - start


def time_requests(get: Callable[[str], Any], path: str, rounds: int) -> list[float]:
    response = get(path)  # warm-up: connections, template loading
    assert response.status_code == 200, (path, response.status_code)
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        response = get(path)
        samples.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200
    return samples


def p90(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


#: The big-values branch: how many values, how big, and the targets.
BIG_VALUES = 10
BIG_MB = 50
BIG_TARGET_MS = 1000.0
BIG_TARGET_MB = 100.0


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure(get: Callable[[str], Any], path: str) -> tuple[float, float]:
    """(milliseconds, MB of peak resident memory above the memory before) of one request.

    The peak (VmHWM) is reset first through /proc/self/clear_refs.
    """
    import gc

    gc.collect()
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    before = _status_kb("VmRSS")
    start = time.perf_counter()
    response = get(path)
    elapsed = (time.perf_counter() - start) * 1000
    assert response.status_code == 200, (path, response.status_code)
    return elapsed, (_status_kb("VmHWM") - before) / 1024


def big_values(get: Callable[[str], Any], rounds: int) -> list[list[str]]:
    """Time and extra memory of the big-values branch and of one big key, per backend."""
    from django.core.cache import caches
    from django.test.utils import override_settings

    import keyedcache
    from keyedcache.registry import get_cache

    rows: list[list[str]] = []
    for alias, label in (("locmem", "locmem"), ("redis", "Redis")):
        store = get_cache(alias)
        blob = os.urandom(BIG_MB << 20)  # incompressible
        for i in range(BIG_VALUES):
            store.set(f"big::{i}", blob, 3600)
        del blob
        with override_settings(KEYEDCACHE_ALIAS=alias):
            keyedcache.keyedcache_configure()
            pages = (
                (f"branch of {BIG_VALUES} x {BIG_MB} MB", "/cache/view/?prefix=big", True),
                (f"key page of one {BIG_MB} MB value", "/cache/view/key/?key=big::3", False),
            )
            for page, path, has_target in pages:
                get(path)  # warm-up
                samples = [measure(get, path) for _ in range(rounds)]
                ms = statistics.median(s[0] for s in samples)
                mb = statistics.median(s[1] for s in samples)
                verdict = ""
                if has_target:
                    met = ms < BIG_TARGET_MS and mb < BIG_TARGET_MB
                    verdict = "met" if met else "MISSED"
                rows.append([label, page, f"{ms:.0f}", f"{mb:.0f}", verdict])
        caches[alias].clear()
    keyedcache.keyedcache_configure()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=KEYS, help=f"keys per cache ({KEYS:,})")
    parser.add_argument("--rounds", type=int, default=15, help="timed requests per page (15)")
    parser.add_argument("--big-only", action="store_true", help="only the big-values branch")
    args = parser.parse_args()

    load = os.getloadavg()[0]  # a busy machine shows in every figure below
    workdir = tempfile.mkdtemp(prefix="kc-bench-dashboard-")
    with redis_server() as url:
        configure(url, os.path.join(workdir, "db.sqlite3"))
        from django.conf import settings
        from django.contrib.auth.models import User
        from django.core.management import call_command
        from django.test import Client
        from django.test.utils import override_settings, setup_test_environment

        import keyedcache

        setup_test_environment()
        call_command("migrate", verbosity=0)
        call_command("createcachetable", verbosity=0)
        user = User.objects.create_user("staff", "staff@example.com", "pw", is_staff=True)
        client = Client()
        client.force_login(user)

        big_rows = big_values(client.get, max(3, args.rounds // 3))
        keys = key_set(args.keys)
        rows: list[list[str]] = []
        for alias, label in (
            () if args.big_only else (("redis", "Redis"), ("db", "database (SQLite)"))
        ):
            seconds = fill(alias, keys)
            print(f"{label}: {len(keys):,} keys stored in {seconds:.1f} s", file=sys.stderr)
            with override_settings(KEYEDCACHE_ALIAS=alias):
                keyedcache.keyedcache_configure()
                assert alias == settings.KEYEDCACHE_ALIAS
                for _ in range(2000):  # some traffic for the stats page
                    keyedcache.cache_get("product", 7, default=None)
                    keyedcache.cache_get("session", "nope", default=None)
                for page, path, has_target in PAGES:
                    samples = time_requests(client.get, path, args.rounds)
                    median = statistics.median(samples)
                    verdict = ("met" if median < TARGET_MS else "MISSED") if has_target else ""
                    rows.append([label, page, f"{median:.0f}", f"{p90(samples):.0f}", verdict])
        keyedcache.keyedcache_configure()

    from keyedcache.dashboard.browser import scan_limit as _scan_limit

    print(machine())
    print(f"load average (1 min) at the start: {load:.1f}, at the end: {os.getloadavg()[0]:.1f}")
    print(
        f"{args.keys:,} keys per cache; key browser reads at most {_scan_limit():,} keys "
        f"per page; median of {args.rounds} requests; target < {TARGET_MS:.0f} ms\n"
    )
    if rows:
        print(table(rows, ["backend", "page", "median ms", "p90 ms", "target"]))
    print(
        f"\nBig values: median of {max(3, args.rounds // 3)} requests; extra MB is the peak "
        f"resident memory during the request above the memory before it; target < "
        f"{BIG_TARGET_MS:.0f} ms and < {BIG_TARGET_MB:.0f} MB for the branch\n"
    )
    print(table(big_rows, ["backend", "page", "median ms", "extra MB", "target"]))


if __name__ == "__main__":
    main()
