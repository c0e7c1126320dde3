"""Shared bench plumbing: Django set-up, private servers on free ports, timing by medians."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def setup_django(
    caches: dict[str, Any], *, databases: dict[str, Any] | None = None, **extra: Any
) -> None:
    """Configure a minimal Django with `caches` (and `databases`: default SQLite in memory)."""
    import django
    from django.conf import settings

    sys.path.insert(0, REPO)
    settings.configure(
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "keyedcache"],
        CACHES=caches,
        DATABASES=databases
        or {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        USE_TZ=True,
        **extra,
    )
    django.setup()


#: The local PostgreSQL server the benches use (trust auth), and Django's settings for it.
PG_SERVER = {"HOST": "127.0.0.1", "PORT": 5432, "USER": "postgres", "PASSWORD": ""}


def postgres_settings(name: str) -> dict[str, Any]:
    """Django DATABASES settings for database `name` on the local PostgreSQL server."""
    return {"ENGINE": "django.db.backends.postgresql", "NAME": name, **PG_SERVER}


@contextlib.contextmanager
def postgres_database(prefix: str = "kc_bench") -> Iterator[str | None]:
    """Create a scratch PostgreSQL database; yield its name (None: no driver or no
    server, said on stderr); close Django's connections and drop it at the end."""
    try:
        import psycopg

        admin = psycopg.connect(
            host=PG_SERVER["HOST"],
            port=PG_SERVER["PORT"],
            user=PG_SERVER["USER"],
            dbname="postgres",
            connect_timeout=2,
            autocommit=True,
        )
    except Exception as exc:  # the bench runs without it, or says it cannot
        print(f"(PostgreSQL not used: {type(exc).__name__}: {exc})", file=sys.stderr)
        yield None
        return
    name = f"{prefix}_{os.getpid()}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield name
        finally:
            from django.db import connections

            connections.close_all()
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], deadline_s: float = 10.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)  # readiness poll of a starting server, bounded by the deadline
    raise RuntimeError(f"server on port {port} did not start")


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """Run a private redis-server on a free port; yield its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="kc-bench-redis-")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, proc)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def memcached_server() -> Iterator[str]:
    """Run a private memcached on a free port; yield 'host:port'."""
    binary = shutil.which("memcached")
    if binary is None:
        raise SystemExit("memcached is not installed (apt-get install memcached)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-u", "root", "-m", "256"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, proc)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def per_call_ns(func: Callable[[], Any], calls: int) -> float:
    """Time `calls` calls of `func`; return nanoseconds per call."""
    loop = range(calls)
    start = time.perf_counter_ns()
    for _ in loop:
        func()
    return (time.perf_counter_ns() - start) / calls


def interleaved_medians(
    contenders: dict[str, Callable[[], Any]], calls: int, rounds: int
) -> dict[str, float]:
    """Median ns/call per contender over `rounds`, contenders interleaved within each round.

    Interleaving means a burst of noise on the shared machine hits every
    contender in that round alike, which keeps the ratios honest.
    """
    for func in contenders.values():  # warm up caches, connections, code paths
        per_call_ns(func, max(calls // 10, 100))
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, func in contenders.items():
            samples[name].append(per_call_ns(func, calls))
    return {name: statistics.median(values) for name, values in samples.items()}


def machine() -> str:
    """One line describing this machine and interpreter."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import django

    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"Django {django.get_version()}"
    )


def table(rows: list[list[str]], header: list[str]) -> str:
    """Render a Markdown table."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [line(header), "| " + " | ".join("-" * w for w in widths) + " |"]
    out += [line(r) for r in rows]
    return "\n".join(out)
