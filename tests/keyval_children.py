"""Code the keyval tests run in child processes (tests/procs.py workers): writers and readers."""

from __future__ import annotations

import os
from typing import Any

from django.core.cache import caches

from keyedcache.contrib.keyval import KeyVal
from tests.procs import gate_wait

STORE = "concurrency"
PROGRESS_KEY = "keyval-test-progress"


def set_keys(gate: str, url: str, count: int) -> dict[str, Any]:
    """Set `same-<i>` (shared by every child) and `own-<pid>-<i>`; return set()'s answers."""
    kv = KeyVal(STORE, backend=url)
    pid = os.getpid()
    gate_wait(gate)
    same: dict[str, bool] = {}
    own: list[bool] = []
    for i in range(count):
        same[f"same-{i}"] = kv.set(f"same-{i}", (pid, i))
        own.append(kv.set(f"own-{pid}-{i}", (pid, i)))
    return {"pid": pid, "same": same, "own": own}


def pop_keys(gate: str, url: str, count: int) -> list[int]:
    """Pop `pop-0` ... `pop-<count-1>`; return the numbers this child got."""
    kv = KeyVal(STORE, backend=url)
    gate_wait(gate)
    got = []
    for i in range(count):
        if kv.pop_default(f"pop-{i}", None) == i:
            got.append(i)
    return got


def write_counter(gate: str, url: str, count: int) -> int:
    """Set `counter` to 1..count; after each set returns, publish the number in the cache."""
    kv = KeyVal(STORE, backend=url)
    progress = caches["default"]
    gate_wait(gate)
    for i in range(1, count + 1):
        kv.set("counter", i)
        progress.set(PROGRESS_KEY, i, None)
    return count


def read_counter(gate: str, url: str, count: int) -> dict[str, Any]:
    """Read `counter` until it reaches `count`; list reads older than a published write."""
    kv = KeyVal(STORE, backend=url)
    progress = caches["default"]
    gate_wait(gate)
    stale: list[tuple[int, int]] = []
    reads = 0
    while True:
        published = progress.get(PROGRESS_KEY, 0)
        seen = kv.get_default("counter", 0)
        reads += 1
        if seen < published:
            stale.append((published, seen))
        if published >= count and seen == count:
            return {"reads": reads, "stale": stale}
        if reads > 1_000_000:  # pragma: no cover - a guard against a hang, not a timing
            raise AssertionError(f"counter stuck at {seen}, published {published}")


def read(url: str, store: str, key: str) -> Any:
    """Return KeyVal(store).get_default(key) as seen in this process."""
    return KeyVal(store, backend=url).get_default(key)


def write(url: str, store: str, key: str, value: Any) -> bool:
    """KeyVal(store).set(key, value) in this process."""
    return KeyVal(store, backend=url).set(key, value)


def add_keys(gate: str, url: str, store: str, prefix: str, count: int) -> None:
    """Set `<prefix>-0` ... in one store (concurrent writers of one cache:// store)."""
    kv = KeyVal(store, backend=url)
    gate_wait(gate)
    for i in range(count):
        kv.set(f"{prefix}-{i}", i)
