"""Cost of keyedcache's stats counters on a locmem hit: counting vs not counting.

Every contender is the same `KeyedCache.get` (or `cache_get`) recompiled from its
source through one path, so they differ only in what they count with:

- counting: the shipped counters (per thread, per key prefix);
- counting, twin: the very same again; its ratio is the measurement floor;
- 1.x slots: the per-thread counters keyedcache had before prefixes and flushes
  (one list per thread, `slots()` ignores the key);
- no-op slots: `counters.slots()` returns one throwaway list (the brief's
  "counting disabled": the call and the increment stay);
- no counting: every counting statement removed (`counts = counters.slots(key)`,
  `counts[...] += 1`), the true baseline.

The target: counting costs a locmem hit at most 5% against "no-op slots".
Times are medians of interleaved rounds of the thread's CPU time (`--clock cpu`,
the default): on a shared machine, time spent descheduled is not the code's;
`--clock wall` uses bench.support.interleaved_medians instead.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import itertools
import os
import statistics
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.support import interleaved_medians, machine, setup_django, table

TARGET = 1.05
COLD_KEYS = 100_000

COUNTING = "counting"
TWIN = "counting, twin"
OLD = "1.x slots"
NOOP = "no-op slots"
NONE = "no counting"


class NoopCounters:
    """Stands in for `counters`: every count lands in one list nobody reads."""

    def __init__(self) -> None:
        self.counts = [0] * 16

    def slots(self, key: str | None = None) -> list[int]:
        return self.counts


class PlainSlots:
    """The counters before prefixes: one list per thread, found through a threading.local."""

    def __init__(self) -> None:
        self._local = threading.local()

    def slots(self, key: str | None = None) -> list[int]:
        try:
            return self._local.counts  # type: ignore[no-any-return]
        except AttributeError:
            self._local.counts = counts = [0] * 16
            return counts


def _is_counting(node: ast.stmt) -> bool:
    """Tell whether `node` is a counting statement (`counts = ...`, `counts[...] += n`)."""
    if isinstance(node, ast.Assign):
        return any(isinstance(t, ast.Name) and t.id == "counts" for t in node.targets)
    if isinstance(node, ast.AugAssign):
        target = node.target
        return isinstance(target, ast.Subscript) and "counts" in ast.unparse(target.value)
    return False


class _StripCounting(ast.NodeTransformer):
    def generic_visit(self, node: ast.AST) -> ast.AST:
        super().generic_visit(node)
        for field in ("body", "orelse", "finalbody"):
            body = getattr(node, field, None)
            if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
                kept = [stmt for stmt in body if not _is_counting(stmt)]
                if not kept and field == "body":
                    kept = [ast.Pass()]
                setattr(node, field, kept)
        return node


def recompiled(
    function: Callable[..., Any], *, strip: bool = False, **names: Any
) -> Callable[..., Any]:
    """`function` compiled again from its source, in its module's globals plus `names`.

    With `strip`, every counting statement is removed first.
    """
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    if strip:
        tree = ast.fix_missing_locations(_StripCounting().visit(tree))
        text = ast.unparse(tree)
        assert "counts" not in text and "counters" not in text, text
    namespace = {**vars(sys.modules[function.__module__]), **names}
    exec(compile(tree, f"<{function.__qualname__} recompiled>", "exec"), namespace)
    result: Callable[..., Any] = namespace[function.__name__]
    return result


def cpu_interleaved_medians(
    contenders: dict[str, Callable[[], Any]], calls: int, rounds: int
) -> dict[str, float]:
    """interleaved_medians on the thread's CPU clock: ns/call, median over rounds."""
    loop = range(calls)

    def one(func: Callable[[], Any], n: int) -> float:
        start = time.thread_time_ns()
        for _ in range(n):
            func()
        return (time.thread_time_ns() - start) / n

    for func in contenders.values():
        one(func, max(calls // 10, 100))
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, func in contenders.items():
            samples[name].append(one(func, len(loop)))
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    """Print the per-hit cost table and whether the 5% target is met."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=101)
    parser.add_argument("--calls", type=int, default=2000, help="calls per contender per round")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    args = parser.parse_args()
    medians_of = cpu_interleaved_medians if args.clock == "cpu" else interleaved_medians

    setup_django(
        {
            "default": {
                "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                "OPTIONS": {"MAX_ENTRIES": 2 * COLD_KEYS},
            }
        }
    )
    import keyedcache
    from keyedcache import api as api_module
    from keyedcache.cache import KeyedCache
    from keyedcache.counters import counters
    from keyedcache.local import request_cache

    store = keyedcache.default_cache()

    def variant(*, strip: bool = False, **names: Any) -> KeyedCache:
        get = recompiled(KeyedCache.get, strip=strip, **names)
        cls: type[KeyedCache] = type("Variant", (KeyedCache,), {"get": get})
        return cls(store.alias, namespace=store.namespace)

    caches = {
        COUNTING: variant(),
        TWIN: variant(),
        OLD: variant(counters=PlainSlots()),
        NOOP: variant(counters=NoopCounters()),
        NONE: variant(strip=True),
    }
    value = {"name": "Widget", "price": "9.99"}
    store.set("product::123", value)
    cold_keys = [f"product::{i}" for i in range(COLD_KEYS)]
    store.set_many(dict.fromkeys(cold_keys, value))

    # Every version answers alike, and only the counting ones count.
    before = counters.snapshot()["hits"]
    for cache in caches.values():
        assert cache.get("product::123") == value
        assert cache.get("absent", None) is None
    assert counters.snapshot()["hits"] - before == 2  # counting and its twin

    def hot(cache: KeyedCache) -> Callable[[], Any]:
        return lambda: cache.get("product::123")

    def cold(cache: KeyedCache) -> Callable[[], Any]:
        keys = itertools.cycle(cold_keys)
        return lambda: cache.get(next(keys))

    def public(cache: KeyedCache) -> Callable[[], Any]:
        cache_get = recompiled(api_module.cache_get, _default=[cache])
        return lambda: cache_get("product", 123)

    results: dict[str, dict[str, float]] = {}
    results["locmem hit: KeyedCache.get('product::123')"] = medians_of(
        {name: hot(cache) for name, cache in caches.items()}, args.calls, args.rounds
    )
    results["locmem hit: cache_get('product', 123)"] = medians_of(
        {name: public(caches[name]) for name in (COUNTING, NOOP, NONE)}, args.calls, args.rounds
    )
    results[f"locmem hit: {COLD_KEYS:,} keys in turn"] = medians_of(
        {name: cold(caches[name]) for name in (COUNTING, NOOP, NONE)}, args.calls, args.rounds
    )
    with request_cache():
        for cache in caches.values():
            cache.get("product::123")
        results["first-level scope hit (no backend call)"] = medians_of(
            {name: hot(caches[name]) for name in (COUNTING, NOOP, NONE)}, args.calls, args.rounds
        )

    rows = []
    verdicts = []
    for workload, medians in results.items():
        for name, ns in medians.items():
            against_noop = ns / medians[NOOP]
            cell = f"{against_noop:.3f}"
            if name == COUNTING and workload.startswith("locmem"):
                ok = against_noop <= TARGET
                cell += " (met)" if ok else " (MISSED)"
                verdicts.append(f"{workload}: {against_noop:.3f} {'met' if ok else 'MISSED'}")
            rows.append([workload, name, f"{ns:,.0f}", cell, f"{ns / medians[NONE]:.3f}"])
    print(
        f"machine: {machine()}; medians of {args.rounds} interleaved rounds of "
        f"{args.calls:,} calls each, {args.clock} clock"
    )
    print(
        table(rows, ["workload", "get", "ns/call", "ratio to no-op slots", "ratio to no counting"])
    )
    print(f"target: counting <= {TARGET:.2f}x no-op slots on a locmem hit; " + "; ".join(verdicts))


if __name__ == "__main__":
    main()
