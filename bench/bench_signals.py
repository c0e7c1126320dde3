"""Cost of keyedcache.signals on the hit path: KeyedCache.get with and without its signal lines.

Contenders run interleaved in one process on locmem, in an order that turns
round every round: `KeyedCache.get` as it is (one flag test per read while nobody
listens), a copy of the same read with the signal lines taken out (the hit path
as it was before the signals), and a second instance of that copy (an A/A
control: its ratio is the noise of the run). Then the same with one receiver
connected, to show what listening costs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.support import machine, per_call_ns, setup_django, table


def rotating_samples(
    contenders: dict[str, Callable[[], Any]], calls: int, rounds: int
) -> dict[str, list[float]]:
    """ns/call of every round per contender; each round starts one contender later."""
    names = list(contenders)
    for func in contenders.values():
        per_call_ns(func, calls)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(per_call_ns(contenders[name], calls))
    return samples


def main() -> None:
    """Print ns per hit and the ratio of each contender to the signal-free copy."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=201)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()

    setup_django({"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}})
    from keyedcache import cache_set, default_cache, signals
    from keyedcache.backends import Undecodable
    from keyedcache.cache import KeyedCache, switch
    from keyedcache.counters import HITS, LOCAL_HITS, MISSES, counters
    from keyedcache.entry import NO_VALUE, UNSEEN, fresh_value
    from keyedcache.exceptions import NotCachedError
    from keyedcache.local import current_scope

    class WithoutSignals(KeyedCache):
        """KeyedCache.get without its signal lines (the hit path before the signals)."""

        def get(self, key: str, default: Any = NO_VALUE) -> Any:
            if self.backend_enabled and switch[0]:
                counts = counters.slots(key)
                scope = current_scope()
                raw = None
                if scope is None:
                    raw = self._fetch(key)
                    value = fresh_value(raw)
                else:
                    table = scope.tables.get(self.scope_id)
                    value = UNSEEN if table is None else table.get(key, UNSEEN)
                    if value is UNSEEN:
                        raw = self._fetch(key)
                        value = fresh_value(raw)
                        scope.remember(self.scope_id, key, value)
                    elif value is not NO_VALUE:
                        counts[LOCAL_HITS] += 1
                        return value
                if value is not NO_VALUE:
                    counts[HITS] += 1
                    return value
                counts[MISSES] += 1
                if type(raw) is Undecodable:
                    self.guard.decode_failed(key, raw.error)
            if default is NO_VALUE:
                raise NotCachedError(key)
            return default

    cache_set("product", 123, value={"name": "Widget", "price": "9.99"})
    store = default_cache()
    plain = WithoutSignals(store.alias, namespace=store.namespace)
    control = WithoutSignals(store.alias, namespace=store.namespace)
    assert plain.get("product::123") == store.get("product::123")
    contenders = {
        "KeyedCache.get (with signal lines)": lambda: store.get("product::123"),
        "the same read without signal lines": lambda: plain.get("product::123"),
        "A/A control: that copy again": lambda: control.get("product::123"),
    }

    def receiver(sender: Any, **named: Any) -> None:
        pass

    rows = []
    for listening in (False, True):
        if listening:
            signals.cache_read.connect(receiver)
        samples = rotating_samples(contenders, args.calls, args.rounds)
        if listening:
            signals.cache_read.disconnect(receiver)
        medians = {name: statistics.median(values) for name, values in samples.items()}
        best = {name: min(values) for name, values in samples.items()}
        base = "the same read without signal lines"
        for name in contenders:
            rows.append(
                [
                    "one receiver" if listening else "nobody listens",
                    name,
                    f"{medians[name]:,.0f}",
                    f"{medians[name] / medians[base]:.3f}x",
                    f"{best[name]:,.0f}",
                    f"{best[name] / best[base]:.3f}x",
                ]
            )
    print(f"machine: {machine()}; {args.rounds} rounds of {args.calls} hits on locmem")
    headers = ["signals", "read", "median ns", "vs without", "best round ns", "vs without"]
    print(table(rows, headers))


if __name__ == "__main__":
    main()
