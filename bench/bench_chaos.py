"""Real faults under load: Redis, memcached and PostgreSQL killed (kill -9) and hung (SIGSTOP).

PostgreSQL is the shared server of the machine, so the database cache reaches it
through a TCP proxy process (bench/tcpproxy.py): the proxy is what gets killed or hung.

Part 1 (the issue's "done when"): one thread loops `cache_get` + a memoized call while
Redis is hung; the cost per iteration once the breaker opened, and how long after
SIGCONT a hit is served again.

Part 2 (the chaos matrix): 4 processes x 8 threads of mixed `cache_get` / `cache_set` /
memoized calls / children deletes (1 ms pause between a thread's calls, like a
worker between requests), per backend and fault: exceptions raised to callers,
wrong results, p50/p99 caller latency during the fault once the process's breaker
had opened, and the time from the server's return until every process
round-trips a set/get again.

    .venv/bin/python bench/bench_chaos.py [--processes 4] [--threads 8] [--fault 10]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.support import (
    free_port,
    machine,
    postgres_database,
    postgres_settings,
    setup_django,
    table,
)
from tests.servers import MemcachedServer, RedisServer, Server, find_binary, start_server

#: The OPTIONS docs/backends.md recommends (one socket timeout of 0.5 s, no hidden retries).
OPTIONS = {
    "redis": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    "memcached": {
        "connect_timeout": 0.5,
        "timeout": 0.5,
        "retry_attempts": 0,
        "retry_timeout": 0,
        "dead_timeout": 0,
    },
}
BACKENDS = {
    "redis": "django.core.cache.backends.redis.RedisCache",
    "memcached": "django.core.cache.backends.memcached.PyMemcacheCache",
    "postgres": "django.core.cache.backends.db.DatabaseCache",
}
#: The cache table of the database cache.
TABLE = "kc_chaos_cache"


class ProxyServer(Server):
    """bench/tcpproxy.py on a fixed port, forwarding to the shared PostgreSQL server."""

    kind = "pgproxy"

    def __init__(self, database: str) -> None:
        super().__init__(sys.executable, free_port(), Path(tempfile.gettempdir()))
        self.database = database

    def start(self) -> None:
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tcpproxy.py")
        self.process = subprocess.Popen(
            [sys.executable, script, str(self.port), "5432"], stdout=subprocess.PIPE
        )
        assert self.process.stdout is not None
        self.process.stdout.readline()  # "ready"

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


def location(kind: str, server: Server) -> str:
    if isinstance(server, ProxyServer):
        return f"{server.database}:{server.port}"
    return f"redis://127.0.0.1:{server.port}/0" if kind == "redis" else server.location


def configure(kind: str, where: str) -> None:
    if kind == "postgres":
        name, port = where.rsplit(":", 1)
        database = {**postgres_settings(name), "PORT": int(port)}
        database["OPTIONS"] = {"connect_timeout": 1}
        setup_django(
            {"default": {"BACKEND": BACKENDS[kind], "LOCATION": TABLE}},
            databases={"default": database},
            KEYEDCACHE_STATS_FLUSH_INTERVAL=None,
            LOGGING_CONFIG=None,
        )
        return
    setup_django(
        {"default": {"BACKEND": BACKENDS[kind], "LOCATION": where, "OPTIONS": OPTIONS[kind]}},
        KEYEDCACHE_STATS_FLUSH_INTERVAL=None,
        LOGGING_CONFIG=None,
    )


def create_table(where: str) -> None:
    """In a child process: create the cache table of the database cache."""
    configure("postgres", where)
    from django.core.management import call_command

    call_command("createcachetable", verbosity=0)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


# -- part 2: one worker process -------------------------------------------------------------


def worker(kind: str, where: str, threads: int, until: float, out: Any) -> None:
    """Run `threads` callers until `until` (Unix time); put the figures on `out`."""
    import logging

    configure(kind, where)
    logging.disable(logging.CRITICAL)  # the outage is expected: keep the bench output clean
    import keyedcache
    from keyedcache.registry import default_cache

    breaker = default_cache().guard.breaker

    @keyedcache.cache_function(60)
    def doubled(x: int) -> int:
        return 2 * x

    lock = threading.Lock()
    figures: dict[str, Any] = {"ops": 0, "raised": 0, "wrong": 0, "first_error": ""}
    samples: list[tuple[float, float, bool]] = []  # (start, seconds, breaker open at start)
    monitor: list[tuple[float, bool]] = []
    pid = os.getpid()

    def caller(n: int) -> None:
        mine: list[tuple[float, float, bool]] = []
        ops = raised = wrong = 0
        first = ""
        i = 0
        while time.time() < until:
            i += 1
            key = f"chaos::{n % 4}::{i % 50}"
            started = time.time()
            was_open = breaker.is_open
            try:
                kind_of_call = i % 10
                if kind_of_call < 5:
                    got = keyedcache.cache_get(key, default=None)
                    wrong += got is not None and got != ("v", key)
                elif kind_of_call < 8:
                    wrong += doubled(i % 40) != 2 * (i % 40)
                elif kind_of_call < 9:
                    keyedcache.cache_set(key, value=("v", key), length=30)
                else:
                    keyedcache.cache_delete(f"chaos::{n % 4}", children=True)
            except Exception as exc:
                raised += 1
                first = first or repr(exc)
            mine.append((started, time.time() - started, was_open))
            ops += 1
            time.sleep(0.001)
        with lock:
            figures["ops"] += ops
            figures["raised"] += raised
            figures["wrong"] += wrong
            figures["first_error"] = figures["first_error"] or first
            samples.extend(mine)

    def watch() -> None:
        n = 0
        while time.time() < until:
            n += 1
            key = f"monitor::{pid}"
            keyedcache.cache_set(key, value=n, length=30)
            monitor.append((time.time(), keyedcache.cache_get(key, default=None) == n))
            time.sleep(0.05)

    pool = [threading.Thread(target=caller, args=(n,)) for n in range(threads)]
    pool.append(threading.Thread(target=watch))
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    out.put({**figures, "samples": samples, "monitor": monitor, "opens": breaker.opens})


def one_fault(
    kind: str, server: Server, fault: str, args: argparse.Namespace, cooldown: float
) -> list[str]:
    """Run the load, inject `fault` (kill9 or sigstop) and report one table row."""
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    start = time.time()
    fault_at = start + args.warmup
    resume_at = fault_at + args.fault
    until = resume_at + cooldown + args.trail
    where = location(kind, server)
    procs = [
        ctx.Process(target=worker, args=(kind, where, args.threads, until, out))
        for _ in range(args.processes)
    ]
    for proc in procs:
        proc.start()
    time.sleep(max(fault_at - time.time(), 0))
    assert server.process is not None
    fault_at = time.time()
    if fault == "kill -9":
        server.process.kill()
        server.process.wait()
        server.process = None
    else:
        os.kill(server.process.pid, signal.SIGSTOP)
    time.sleep(max(resume_at - time.time(), 0))
    if fault == "kill -9":
        server.start()
    else:
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGCONT)
    resume_at = time.time()
    results = [out.get(timeout=until - time.time() + 120) for _ in procs]
    for proc in procs:
        proc.join(30)

    raised = sum(r["raised"] for r in results)
    wrong = sum(r["wrong"] for r in results)
    ops = sum(r["ops"] for r in results)
    during: list[float] = []
    back: list[float] = []
    longest = max(
        (d for r in results for s, d, _o in r["samples"] if fault_at <= s < resume_at), default=0
    )
    for r in results:
        opened = [s for s, _d, was_open in r["samples"] if was_open and fault_at <= s < resume_at]
        if opened:
            first_open = min(opened)
            during += [d for s, d, _o in r["samples"] if first_open <= s < resume_at]
        served = [t for t, ok in r["monitor"] if ok and t >= resume_at]
        back.append(min(served) - resume_at if served else float("inf"))
    return [
        kind,
        fault,
        f"{ops:,}",
        str(raised),
        str(wrong),
        f"{statistics.median(during) * 1000:.3f}" if during else "never opened",
        f"{pct(during, 0.99) * 1000:.3f}" if during else "-",
        f"{longest:.2f}",
        f"{max(back):.1f}",
        (results[0]["first_error"] or "")[:60],
    ]


# -- part 1: the done-when loop -------------------------------------------------------------


def done_when(server: Server, seconds: float, out: Any) -> None:
    """One thread: cache_get + memoized call per iteration, Redis hung for `seconds`."""
    import logging

    configure("redis", location("redis", server))
    logging.disable(logging.CRITICAL)
    import keyedcache
    from keyedcache.registry import default_cache

    breaker = default_cache().guard.breaker

    @keyedcache.cache_function(60)
    def doubled(x: int) -> int:
        return 2 * x

    keyedcache.cache_set("loop", value="hit")
    doubled(1)
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)
    stopped = time.time()
    raised = 0
    timings: list[tuple[bool, float]] = []
    while time.time() - stopped < seconds:
        started = time.perf_counter()
        was_open = breaker.is_open
        try:
            keyedcache.cache_get("loop", default=None)
            doubled(1)
        except Exception:
            raised += 1
        timings.append((was_open, time.perf_counter() - started))
    os.kill(server.process.pid, signal.SIGCONT)
    resumed = time.time()
    while keyedcache.cache_get("loop", default=None) != "hit":
        time.sleep(0.01)
    back = time.time() - resumed
    after_open = [t for was_open, t in timings if was_open]
    before_open = [t for was_open, t in timings if not was_open]
    out.put(
        {
            "iterations": len(timings),
            "before_open": len(before_open),
            "first_cost": sum(before_open),
            "median_ms": statistics.median(after_open) * 1000,
            "p99_ms": pct(after_open, 0.99) * 1000,
            "raised": raised,
            "back": back,
            "cooldown": breaker.cooldown,
        }
    )


def main() -> None:
    """Run part 1 and part 2 and print their tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before the fault")
    parser.add_argument("--fault", type=float, default=10.0, help="seconds the fault lasts")
    parser.add_argument("--trail", type=float, default=6.0, help="seconds after cool-down")
    parser.add_argument("--only", choices=sorted(BACKENDS), default=None)
    args = parser.parse_args()
    from keyedcache import conf

    cooldown = conf.DEFAULT_BREAKER_COOLDOWN
    workdir = Path(tempfile.mkdtemp(prefix="kc-chaos-"))
    ctx = multiprocessing.get_context("fork")
    print(f"machine: {machine()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")

    servers: dict[str, Server] = {}
    for kind, cls in (("redis", RedisServer), ("memcached", MemcachedServer)):
        binary = find_binary(f"{kind}-server" if kind == "redis" else kind)
        if binary and args.only in (None, kind):
            servers[kind] = start_server(cls, binary, workdir)
    with postgres_database("kc_chaos") as database:
        if database is not None and args.only in (None, "postgres"):
            proxy = servers["postgres"] = ProxyServer(database)
            proxy.start()
            maker = ctx.Process(target=create_table, args=(location("postgres", proxy),))
            maker.start()
            maker.join(60)
        run(servers, args, cooldown, ctx)
        # postgres_database() closes Django's connections: this process needs settings for it.
        setup_django({"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}})


def run(servers: dict[str, Server], args: argparse.Namespace, cooldown: float, ctx: Any) -> None:
    """Part 1 on Redis, then part 2 on every server; stop them all at the end."""
    try:
        if "redis" in servers:
            out = ctx.Queue()
            proc = ctx.Process(target=done_when, args=(servers["redis"], args.fault, out))
            proc.start()
            one = out.get(timeout=args.fault + 120)
            proc.join(30)
            print("\nPart 1: Redis hung (SIGSTOP), one thread, cache_get + memoized call per loop")
            print(
                table(
                    [
                        [
                            f"{one['iterations']:,}",
                            f"{one['before_open']} ({one['first_cost']:.2f} s)",
                            f"{one['median_ms']:.3f}",
                            f"{one['p99_ms']:.3f}",
                            str(one["raised"]),
                            f"{one['back']:.1f} s (cool-down {one['cooldown']:.0f} s)",
                        ]
                    ],
                    [
                        "iterations",
                        "before the breaker opened (their time)",
                        "ms/iteration once open (median)",
                        "p99 ms",
                        "raised",
                        "hit again after SIGCONT",
                    ],
                )
            )
        rows = []
        for kind, server in servers.items():
            for fault in ("kill -9", "SIGSTOP"):
                rows.append(one_fault(kind, server, fault, args, cooldown))
                print("  done:", " | ".join(rows[-1]), flush=True)
        print(
            f"\nPart 2: {args.processes} processes x {args.threads} threads, fault for "
            f"{args.fault:.0f} s, breaker cool-down {cooldown:.0f} s"
        )
        print(
            table(
                rows,
                [
                    "backend",
                    "fault",
                    "calls",
                    "raised",
                    "wrong",
                    "p50 ms (open)",
                    "p99 ms (open)",
                    "longest call in the fault (s)",
                    "full service after return (s)",
                    "first exception",
                ],
            )
        )
    finally:
        for server in servers.values():
            if server.process is not None:
                os.kill(server.process.pid, signal.SIGCONT)
            server.stop()


if __name__ == "__main__":
    main()
