"""ASGI throughput: the demo's cached product page under uvicorn, keyedcache vs Django's aget."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support import _wait_for_port, free_port, machine, redis_server, table

ROOT = Path(__file__).resolve().parent.parent

TARGET = 3.0
#: page -> (keyedcache's URL, the URL of the same page on Django's cache API).
PAGES = {
    "one product (1 cache read)": ("/demo/async/product/1/", "/demo/async/product-django/1/"),
    "five products (5 cache reads)": ("/demo/async/products/", "/demo/async/products-django/"),
}
SIDES = ("keyedcache", "Django")
#: The same response with no cache read at all: what Django's ASGI handler allows.
CEILING = "/demo/async/no-cache/"


def _env(db: str, cache_url: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "test_app"), str(ROOT)])
    env["DJANGO_SETTINGS_MODULE"] = "bench.asgi_settings"
    env["KEYEDCACHE_BENCH_DB"] = db
    env.pop("KEYEDCACHE_DEMO_CACHE", None)
    if cache_url is not None:
        env["KEYEDCACHE_DEMO_CACHE"] = cache_url
    return env


def prepare(db: str) -> None:
    """Create the scratch database and one product."""
    env = _env(db, None)
    manage = [sys.executable, str(ROOT / "test_app" / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True)
    code = (
        "from demo.models import Product; "
        "[Product.objects.update_or_create(pk=pk, defaults="
        "{'name': f'Cup {pk}', 'slug': f'cup-{pk}', 'price': '7.50'}) for pk in range(1, 6)]"
    )
    subprocess.run([*manage, "shell", "-c", code], env=env, check=True)


@contextmanager
def uvicorn(db: str, cache_url: str | None) -> Iterator[int]:
    """One uvicorn worker serving the demo on a free loopback port."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "demo_site.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    server: subprocess.Popen[bytes] = subprocess.Popen(
        command, env=_env(db, cache_url), cwd=ROOT / "test_app"
    )
    try:
        _wait_for_port(port, server)
        yield port
    finally:
        server.terminate()
        server.wait(10)


def wrk(url: str, seconds: int, connections: int) -> tuple[float, float]:
    """(requests per second, p99 latency in ms) of one wrk run against `url`."""
    found = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", found)
    if errors:
        raise RuntimeError(f"{url}: {errors.group(1)} failed responses\n{found}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", found).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"\s99%\s+([\d.]+)(us|ms|s)\b", found).groups()  # type: ignore[union-attr]
    return rps, float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def main() -> None:
    """Print requests/s and p99 of both pages on locmem and Redis, and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10, help="length of one wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs per page")
    parser.add_argument("--connections", type=int, default=100)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench_asgi needs wrk (Debian package `wrk`) as its load generator")

    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory() as scratch, redis_server() as redis_url:
        db = str(Path(scratch) / "bench.sqlite3")
        prepare(db)
        for label, cache_url in (("locmem", None), ("redis", redis_url)):
            with uvicorn(db, cache_url) as port:
                base = f"http://127.0.0.1:{port}"
                urls: dict[Any, str] = {("no cache read (ceiling)", "none"): base + CEILING}
                urls |= {
                    (page, side): base + path
                    for page, paths in PAGES.items()
                    for side, path in zip(SIDES, paths, strict=True)
                }
                for url in urls.values():  # warm: every product is cached by both
                    for _ in range(3):
                        urllib.request.urlopen(url, timeout=10).read()
                samples: dict[Any, list[tuple[float, float]]] = {which: [] for which in urls}
                for _ in range(args.rounds):
                    for which, url in urls.items():
                        samples[which].append(wrk(url, args.seconds, args.connections))
            found = {
                which: (
                    statistics.median(s[0] for s in runs),
                    statistics.median(s[1] for s in runs),
                )
                for which, runs in samples.items()
            }
            rps, p99 = found[("no cache read (ceiling)", "none")]
            rows.append(
                [label, "no cache read (ceiling)", "none", f"{rps:,.0f}", f"{p99:.1f}", "", ""]
            )
            for page in PAGES:
                django_rps = found[(page, "Django")][0]
                for side in SIDES:
                    rps, p99 = found[(page, side)]
                    ratio = rps / django_rps
                    verdict = "" if side == "Django" else ("met" if ratio >= TARGET else "MISSED")
                    row = [label, page, side, f"{rps:,.0f}", f"{p99:.1f}", f"{ratio:.2f}x", verdict]
                    rows.append(row)
    print(
        f"machine: {machine()}; uvicorn, 1 worker; wrk -t2 -c{args.connections} "
        f"-d{args.seconds}s on loopback; medians of {args.rounds} interleaved runs"
    )
    header = ["backend", "page", "cache API", "requests/s", "p99 ms", "vs Django", f">= {TARGET}x"]
    print(table(rows, header))


if __name__ == "__main__":
    main()
