"""Soak: mixed load on Redis for a given time with periodic faults; RSS and latency per interval.

Worker processes run threads of `cache_get` / `cache_set` / memoized calls / children
deletes (1 ms pause between a thread's calls) against a private redis-server. Every
`--every` seconds the server is killed (kill -9) or hung (SIGSTOP), alternately, for
`--outage` seconds. Each worker reports, per interval, its resident memory, the calls
made, exceptions raised, wrong results and the p50/p99 call latency; the table shows
whether memory and latency stay flat.

    .venv/bin/python bench/bench_soak.py 600 [--processes 4] [--threads 8] [--interval 30]
"""

from __future__ import annotations

import argparse
import array
import math
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.bench_chaos import OPTIONS
from bench.support import machine, setup_django, table
from tests.servers import RedisServer, Server, find_binary, start_server


def rss_mib() -> float:
    """This process's resident memory in MiB (Linux /proc)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class LatencyHistogram:
    """Call latencies as counts in fixed log-spaced buckets (5 % wide, 1 µs to 100 s).

    A soak must not measure its own bookkeeping: keeping every latency as a
    Python float (hundreds of thousands per interval, freed at each report)
    fragments the allocator's pools among the long-lived objects of the threads,
    and the process's resident memory then creeps up for reasons that have
    nothing to do with the code under test. The buckets are allocated once.
    """

    STEP = math.log(1.05)
    FLOOR = 1e-6
    SIZE = int(math.log(1e8) / STEP) + 2

    def __init__(self) -> None:
        self.counts = array.array("q", bytes(8 * self.SIZE))
        self.total = 0

    def add(self, seconds: float) -> None:
        """Count one call of `seconds`."""
        index = int(math.log(max(seconds, self.FLOOR) / self.FLOOR) / self.STEP)
        self.counts[min(index, self.SIZE - 1)] += 1
        self.total += 1

    def percentile(self, q: float) -> float:
        """The upper edge of the bucket holding the q-quantile (seconds), or NaN if empty."""
        if not self.total:
            return float("nan")
        wanted = min(int(q * self.total), self.total - 1)
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen > wanted:
                return self.FLOOR * math.exp((index + 1) * self.STEP)
        return float("nan")  # pragma: no cover

    def reset(self) -> None:
        """Forget every count (the buckets stay allocated)."""
        for index in range(self.SIZE):
            self.counts[index] = 0
        self.total = 0


def worker(url: str, threads: int, start: float, until: float, interval: float, out: Any) -> None:
    """Run `threads` callers until `until`; put one report per interval on `out`."""
    import logging

    setup_django(
        {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": url,
                "OPTIONS": OPTIONS["redis"],
            }
        },
        KEYEDCACHE_STATS_FLUSH_INTERVAL=None,
        LOGGING_CONFIG=None,
    )
    logging.disable(logging.CRITICAL)
    import keyedcache

    @keyedcache.cache_function(60)
    def doubled(x: int) -> int:
        return 2 * x

    lock = threading.Lock()
    latencies = LatencyHistogram()
    bucket: dict[str, Any] = {"raised": 0, "wrong": 0}

    def caller(n: int) -> None:
        i = 0
        while time.time() < until:
            i += 1
            key = f"soak::{n % 4}::{i % 500}"
            started = time.perf_counter()
            raised = wrong = 0
            try:
                kind = i % 10
                if kind < 5:
                    got = keyedcache.cache_get(key, default=None)
                    wrong = got is not None and got != ("v", key)
                elif kind < 8:
                    wrong = doubled(i % 400) != 2 * (i % 400)
                elif kind < 9:
                    keyedcache.cache_set(key, value=("v", key), length=60)
                else:
                    keyedcache.cache_delete(f"soak::{n % 4}::{i % 7}", children=True)
            except Exception:
                raised = 1
            elapsed = time.perf_counter() - started
            with lock:
                latencies.add(elapsed)
                bucket["raised"] += raised
                bucket["wrong"] += int(wrong)
            time.sleep(0.001)

    pool = [threading.Thread(target=caller, args=(n,), daemon=True) for n in range(threads)]
    for thread in pool:
        thread.start()
    tick = start + interval
    while tick <= until + 0.001:
        time.sleep(max(tick - time.time(), 0))
        with lock:
            calls = latencies.total
            p50, p99 = latencies.percentile(0.5), latencies.percentile(0.99)
            latencies.reset()
            raised, wrong = bucket["raised"], bucket["wrong"]
            bucket["raised"] = bucket["wrong"] = 0
        out.put(
            {
                "pid": os.getpid(),
                "at": round(tick - start),
                "rss": rss_mib(),
                "calls": calls,
                "raised": raised,
                "wrong": wrong,
                "p50": p50,
                "p99": p99,
            }
        )
        tick += interval
    for thread in pool:
        thread.join(5)


def faults(server: Server, start: float, until: float, every: float, outage: float) -> list[str]:
    """Kill or hang the server every `every` seconds for `outage` seconds; return a log."""
    done: list[str] = []
    n = 0
    while True:
        n += 1
        at = start + n * every
        if at + outage >= until:
            return done
        time.sleep(max(at - time.time(), 0))
        assert server.process is not None
        if n % 2:
            server.process.kill()
            server.process.wait()
            server.process = None
            time.sleep(outage)
            server.start()
            done.append(f"{round(at - start)} s: kill -9, restarted {outage:.0f} s later")
        else:
            os.kill(server.process.pid, signal.SIGSTOP)
            time.sleep(outage)
            os.kill(server.process.pid, signal.SIGCONT)
            done.append(f"{round(at - start)} s: SIGSTOP, SIGCONT {outage:.0f} s later")


def main() -> None:
    """Run the soak and print one row per interval (all workers added up)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("duration", type=float, help="seconds to run (the issue asks 1800)")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--interval", type=float, default=30.0)
    parser.add_argument("--every", type=float, default=60.0, help="seconds between faults")
    parser.add_argument("--outage", type=float, default=10.0, help="seconds a fault lasts")
    args = parser.parse_args()
    binary = find_binary("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed")
    print(f"machine: {machine()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    server = start_server(RedisServer, binary, Path(tempfile.mkdtemp(prefix="kc-soak-")))
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    start = time.time() + 1
    until = start + args.duration
    url = f"redis://127.0.0.1:{server.port}/0"
    procs = [
        ctx.Process(target=worker, args=(url, args.threads, start, until, args.interval, out))
        for _ in range(args.processes)
    ]
    try:
        for proc in procs:
            proc.start()
        log = faults(server, start, until, args.every, args.outage)
        expected = args.processes * int(args.duration // args.interval)
        reports = [out.get(timeout=args.duration + 120) for _ in range(expected)]
        for proc in procs:
            proc.join(30)
    finally:
        if server.process is not None:
            os.kill(server.process.pid, signal.SIGCONT)
        server.stop()
    rows = []
    for at in sorted({r["at"] for r in reports}):
        these = [r for r in reports if r["at"] == at]
        rows.append(
            [
                f"{at}",
                f"{sum(r['calls'] for r in these):,}",
                str(sum(r["raised"] for r in these)),
                str(sum(r["wrong"] for r in these)),
                f"{max(r['p50'] for r in these) * 1000:.3f}",
                f"{max(r['p99'] for r in these) * 1000:.1f}",
                ", ".join(f"{r['rss']:.1f}" for r in sorted(these, key=lambda r: r["pid"])),
            ]
        )
    print(
        f"\n{args.processes} processes x {args.threads} threads for {args.duration:.0f} s; "
        f"a fault every {args.every:.0f} s for {args.outage:.0f} s"
    )
    print(
        table(
            rows,
            ["t (s)", "calls", "raised", "wrong", "p50 ms", "p99 ms", "RSS MiB per process"],
        )
    )
    print("faults:", "; ".join(log))


if __name__ == "__main__":
    main()
