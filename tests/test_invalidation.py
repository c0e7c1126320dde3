"""Invalidation you can trust (issue 11), through the public API only.

Invariant 9: invalidation wins over in-flight fills. A memoized body, a
`find_by_*` load or a keyval db:// read starts, reads its inputs and is held
at a Gate (tests.procs, a TCP barrier); meanwhile another process (or, for
locmem, another thread) changes the data and invalidates; then the held fill
finishes with a result computed from the old data. Afterwards the old result
must not be served: the next call recomputes or returns the new value.

Invariant 10: an entry that cannot be decoded (its class module is gone, its
bytes are corrupt) is a miss, listing still works, and every delete (the key,
its subtree, delete-all, a pattern) removes it so the key can be used again.

Waits are bounded (a Gate, a thread join, a child result) and fail the test
when reached; nothing sleeps for correctness and nothing is timed. Scale
independence (invariant 8) is measured in bench/, not here.
"""

from __future__ import annotations

import base64
import importlib.util
import os
import pickle
import shutil
import socket
import threading
import urllib.parse
import uuid
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connections

from keyedcache import (
    NotCachedError,
    cache_add,
    cache_delete,
    cache_delete_pattern,
    cache_get,
    cache_key,
    cache_keys,
    cache_set,
    iter_keys,
)
from keyedcache import models as cached_models
from keyedcache.contrib.keyval import KeyVal
from tests import invalidation_children as kids
from tests.conftest import CACHE_TABLE, BackendConfig
from tests.models import Widget
from tests.procs import BoundWorker, Gate

#: Hang guard for gates, joins and child results (never reached when the code works).
DEADLINE = 30.0

#: Backends whose entries every process shares (locmem is per process).
CROSS_PROCESS = (
    "db-sqlite",
    "db-postgres",
    "file",
    "memcached",
    "memcached2",
    "redis",
    "django-redis",
    "valkey",
    "valkey-cluster",
)

#: Every test here runs child processes against real servers: bound the whole test.
pytestmark = pytest.mark.timeout(180)

#: Tests that touch the Widget or keyval tables, read by child processes: committed.
committed_db = pytest.mark.django_db(transaction=True)


@pytest.fixture
def run_dir(tmp_path: Path) -> str:
    """A directory for this test's inputs and execution log (shared with children)."""
    return str(tmp_path)


class HeldThread:
    """Runs `target` on a thread of this process; `.result()` joins it (bounded)."""

    def __init__(self, target: Callable[[], Any]) -> None:
        self.box: dict[str, Any] = {}
        self.thread = threading.Thread(target=self._run, args=(target,), daemon=True)
        self.thread.start()

    def _run(self, target: Callable[[], Any]) -> None:
        try:
            self.box["value"] = target()
        except BaseException as exc:
            self.box["error"] = exc
        finally:
            connections.close_all()  # this thread's database connections

    def result(self) -> Any:
        self.thread.join(DEADLINE)
        assert not self.thread.is_alive(), f"the held call did not finish within {DEADLINE}s"
        if "error" in self.box:
            raise self.box["error"]
        return self.box.get("value")


# -- 1. memoized fills: cache_function, .invalidate, cache_delete_function, subtree, all --------


def assert_new_price_is_served(run_dir: str, item: str) -> None:
    """After the held fill: the next call computes again from the new input, then it is cached."""
    assert kids.priced(run_dir, item) == "99.00", (
        "the value computed from the old data before the invalidation was served: "
        f"executions {kids.executions(run_dir)}"
    )
    runs = kids.executions(run_dir)
    assert len(runs) == 2, f"expected the old fill and one recomputation, got {runs}"
    assert runs[-1].endswith(" 99.00")
    # Caching still works after the race: the recomputed value is a hit.
    assert kids.priced(run_dir, item) == "99.00"
    assert len(kids.executions(run_dir)) == 2


@pytest.mark.backends(*CROSS_PROCESS)
@pytest.mark.parametrize("kind", kids.INVALIDATIONS)
def test_invalidation_here_wins_over_a_fill_in_flight_in_a_child(
    backend: BackendConfig, child: BoundWorker, run_dir: str, kind: str
) -> None:
    kids.set_price(run_dir, "book", "10.00")
    with Gate() as gate:
        pending = child.submit(kids.fill_held, run_dir, "book", gate.address)
        gate.wait_arrivals(1, DEADLINE)  # the child's body read 10.00 and is held
        kids.set_price(run_dir, "book", "99.00")
        kids.invalidate(kind, run_dir, "book")
        gate.open()
        assert pending.result(DEADLINE) in ("10.00", "99.00")
    assert kids.executions(run_dir)[0] == f"{child.pid} 10.00"
    assert_new_price_is_served(run_dir, "book")
    assert child.run(kids.priced, run_dir, "book") == "99.00"  # and the child agrees


@pytest.mark.backends(*CROSS_PROCESS)
@pytest.mark.parametrize("kind", kids.INVALIDATIONS)
def test_invalidation_in_a_child_wins_over_a_fill_in_flight_here(
    backend: BackendConfig, child: BoundWorker, run_dir: str, kind: str
) -> None:
    kids.set_price(run_dir, "book", "10.00")
    with Gate() as gate:
        kids.HOLD[run_dir] = gate.address
        try:
            held = HeldThread(lambda: kids.priced(run_dir, "book"))
            gate.wait_arrivals(1, DEADLINE)  # this process's body read 10.00 and is held
            kids.set_price(run_dir, "book", "99.00")
            child.run(kids.invalidate, kind, run_dir, "book")
            gate.open()
            assert held.result() in ("10.00", "99.00")
        finally:
            kids.HOLD.pop(run_dir, None)
    assert kids.executions(run_dir)[0] == f"{os.getpid()} 10.00"
    assert child.run(kids.priced, run_dir, "book") == "99.00", (
        "the value computed from the old data before the invalidation was served: "
        f"executions {kids.executions(run_dir)}"
    )
    runs = kids.executions(run_dir)
    assert len(runs) == 2, f"expected the old fill and one recomputation, got {runs}"
    assert kids.priced(run_dir, "book") == "99.00"
    assert len(kids.executions(run_dir)) == 2


@pytest.mark.parametrize("kind", kids.INVALIDATIONS)
def test_invalidation_in_another_thread_wins_over_a_fill_in_flight(
    backend: BackendConfig, run_dir: str, kind: str
) -> None:
    # The in-process twin (the only one locmem can have): two threads, one cache.
    kids.set_price(run_dir, "book", "10.00")
    with Gate() as gate:
        kids.HOLD[run_dir] = gate.address
        try:
            held = HeldThread(lambda: kids.priced(run_dir, "book"))
            gate.wait_arrivals(1, DEADLINE)
            kids.set_price(run_dir, "book", "99.00")
            kids.invalidate(kind, run_dir, "book")
            gate.open()
            assert held.result() in ("10.00", "99.00")
        finally:
            kids.HOLD.pop(run_dir, None)
    assert_new_price_is_served(run_dir, "book")


# -- 2. find_by_* racing a save or delete of the row ----------------------------------------

FINDERS = ("find_by_id", "find_by_key", "find_by_slug")
#: What a finder must return (as a name) after the change committed.
AFTER_CHANGE = {"save": "new", "delete": None}


def make_widget(name: str = "old") -> Widget:
    ident = uuid.uuid4().hex[:10]
    widget: Widget = Widget.objects.create(name=name, slug=f"s-{ident}", key=f"k-{ident}")
    return widget


def finder_value(widget: Widget, finder: str) -> Any:
    return {"find_by_id": widget.pk, "find_by_key": widget.key, "find_by_slug": widget.slug}[finder]


def found_name(finder: str, value: Any) -> str | None:
    found = getattr(cached_models, finder)(Widget, "Widget", value)
    return None if found is None else found.name


@committed_db
@pytest.mark.backends(*CROSS_PROCESS)
@pytest.mark.parametrize("change", list(AFTER_CHANGE))
@pytest.mark.parametrize("finder", FINDERS)
def test_a_find_in_a_child_racing_a_change_here_never_caches_the_old_row(
    backend: BackendConfig, child: BoundWorker, finder: str, change: str
) -> None:
    widget = make_widget("old")
    value = finder_value(widget, finder)
    cache_delete("Widget", value)  # the copy cached on create: the finder loads the row
    # find_by_id's entry is the one the mixin refreshes on save and drops on
    # delete; find_by_key/find_by_slug entries are dropped by hand (docs/api.md).
    dropped_by_hand = None if finder == "find_by_id" else value
    with Gate() as gate:
        pending = child.submit(kids.find_held, finder, value, gate.address)
        gate.wait_arrivals(1, DEADLINE)  # the child fetched the old row, not cached yet
        kids.change_widget(widget.pk, change, dropped_by_hand)  # commits here
        gate.open()
        # Its load began before the change (a loader may also choose to load again).
        assert pending.result(DEADLINE) in ("old", AFTER_CHANGE[change])
    expected = AFTER_CHANGE[change]
    assert found_name(finder, value) == expected, (
        f"{finder} served the row loaded before the {change} committed"
    )
    assert child.run(found_name, finder, value) == expected


@committed_db
@pytest.mark.backends(*CROSS_PROCESS)
@pytest.mark.parametrize("change", list(AFTER_CHANGE))
def test_find_by_id_here_racing_a_change_in_a_child_never_caches_the_old_row(
    backend: BackendConfig, child: BoundWorker, change: str
) -> None:
    widget = make_widget("old")
    cache_delete("Widget", widget.pk)
    with Gate() as gate:
        held = HeldThread(lambda: kids.find_held("find_by_id", widget.pk, gate.address))
        gate.wait_arrivals(1, DEADLINE)
        child.run(kids.change_widget, widget.pk, change)
        gate.open()
        assert held.result() in ("old", AFTER_CHANGE[change])
    expected = AFTER_CHANGE[change]
    assert found_name("find_by_id", widget.pk) == expected, (
        f"find_by_id served the row loaded before the {change} committed"
    )
    assert child.run(found_name, "find_by_id", widget.pk) == expected


# -- 3. keyval db:// read-through racing a write -------------------------------------------

KEYVAL_URL = "db://"


@committed_db
@pytest.mark.backends(*CROSS_PROCESS)
@pytest.mark.parametrize("write", list(kids.KEYVAL_WRITES))
def test_a_keyval_read_in_a_child_racing_a_write_here_never_caches_the_old_value(
    backend: BackendConfig, child: BoundWorker, write: str
) -> None:
    store = f"race-{backend.prefix}"
    kv = KeyVal(store, backend=KEYVAL_URL)
    kv.set("k", "old")
    with Gate() as gate:
        pending = child.submit(kids.keyval_read_held, KEYVAL_URL, store, "k", gate.address)
        gate.wait_arrivals(1, DEADLINE)  # the child's SELECT ran, its result is not cached yet
        kids.keyval_write(KEYVAL_URL, store, "k", write)  # commits here
        gate.open()
        assert pending.result(DEADLINE) in ("old", kids.KEYVAL_WRITES[write])
    expected = kids.KEYVAL_WRITES[write]
    assert kv.get_default("k") == expected, f"keyval served the value read before the {write}"
    assert child.run(kids.keyval_read, KEYVAL_URL, store, "k") == expected


@committed_db
@pytest.mark.backends(*CROSS_PROCESS)
def test_a_keyval_read_here_racing_a_write_in_a_child_never_caches_the_old_value(
    backend: BackendConfig, child: BoundWorker
) -> None:
    store = f"race-{backend.prefix}"
    kv = KeyVal(store, backend=KEYVAL_URL)
    kv.set("k", "old")
    with Gate() as gate:
        held = HeldThread(lambda: kids.keyval_read_held(KEYVAL_URL, store, "k", gate.address))
        gate.wait_arrivals(1, DEADLINE)
        child.run(kids.keyval_write, KEYVAL_URL, store, "k", "set")
        gate.open()
        assert held.result() in ("old", "new")
    assert kv.get_default("k") == "new", "keyval served the value read before the set"
    assert child.run(kids.keyval_read, KEYVAL_URL, store, "k") == "new"


# -- 4. undecodable entries ----------------------------------------------------------------

ROOT = "undecodable"
#: A segment keyedcache must digest: spaces, non-ASCII and over 64 characters.
LONG_SEGMENT = "a segment with spaces, non-ASCII (prix réduit: 5 €) and well over sixty-four chars"
#: The undecodable entries: one plain key, one with a digested segment.
BAD_PARTS: list[tuple[str, ...]] = [(ROOT, "plain"), (ROOT, LONG_SEGMENT)]
GOOD_PARTS = (ROOT, "good")  # decodable, in the same subtree
KEPT_PARTS = ("kept", "one")  # decodable, outside it
KINDS = ("class-gone", "corrupt-bytes")
#: Bytes no pickle loader accepts.
CORRUPT = b"\x00corrupt: this is not a pickle"
MISSING = object()


def plant_class_gone(backend: BackendConfig, request: pytest.FixtureRequest, where: Path) -> None:
    """Cache instances of a class whose module is deleted afterwards (a deploy removed it)."""
    module_name = f"kc_gone_{uuid.uuid4().hex}"
    directory = str(where / "gone-modules")
    kids.write_module(directory, module_name)
    try:
        if backend.name == "locmem":  # per process: write it here, then forget the module
            kids.cache_instances_of_gone_class(directory, module_name, BAD_PARTS)
        else:  # another process wrote it, as an old deploy would have
            child: BoundWorker = request.getfixturevalue("child")
            child.run(kids.cache_instances_of_gone_class, directory, module_name, BAD_PARTS)
    finally:
        shutil.rmtree(directory)
        importlib.invalidate_caches()
    assert importlib.util.find_spec(module_name) is None


def plant_corrupt_bytes(backend: BackendConfig) -> None:
    """Cache a marked value under each key, then overwrite its stored bytes (raw client)."""
    for parts in BAD_PARTS:
        marker = f"corrupt-me-{uuid.uuid4().hex}"
        cache_set(*parts, value=marker, length=None)
        assert cache_get(*parts) == marker
        changed = corrupt_raw_entries(backend, marker.encode())
        assert changed == 1, f"found {changed} stored entries holding {marker!r}, wanted 1"


def corrupt_raw_entries(backend: BackendConfig, marker: bytes) -> int:
    """Replace the stored bytes of every entry of this test holding `marker`; return how many."""
    if backend.name == "locmem":
        return _corrupt_locmem(backend, marker)
    if backend.name == "file":
        return _corrupt_files(backend, marker)
    if backend.is_db:
        return _corrupt_rows(backend, marker)
    if backend.is_redis:
        return _corrupt_redis(backend, marker)
    return _corrupt_memcached(backend, marker)


def _corrupt_locmem(backend: BackendConfig, marker: bytes) -> int:
    cache = backend.cache  # LocMemCache keeps pickled bytes per made key
    with cache._lock:
        found = [made for made, data in cache._cache.items() if marker in data]
        for made in found:
            cache._cache[made] = CORRUPT
    return len(found)


def _corrupt_files(backend: BackendConfig, marker: bytes) -> int:
    # FileBasedCache: a pickled expiry, then the zlib-compressed pickled value.
    changed = 0
    for path in Path(backend.caches["default"]["LOCATION"]).rglob("*.djcache"):
        with open(path, "rb") as handle:
            expiry = pickle.load(handle)
            body = handle.read()
        try:
            data = zlib.decompress(body)
        except zlib.error:
            continue
        if marker in data:
            with open(path, "wb") as handle:
                handle.write(pickle.dumps(expiry, pickle.HIGHEST_PROTOCOL) + CORRUPT)
            changed += 1
    return changed


def _corrupt_rows(backend: BackendConfig, marker: bytes) -> int:
    # DatabaseCache: base64 of the pickled value in a text column.
    connection = connections[backend.cache_db]
    quote = connection.ops.quote_name
    table, key_col, value_col = quote(CACHE_TABLE), quote("cache_key"), quote("value")
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {key_col}, {value_col} FROM {table} WHERE {key_col} LIKE %s",
            [f"{backend.prefix}:%"],
        )
        rows = cursor.fetchall()
        found = [made for made, value in rows if marker in base64.b64decode(value)]
        for made in found:
            cursor.execute(
                f"UPDATE {table} SET {value_col} = %s WHERE {key_col} = %s",
                [base64.b64encode(CORRUPT).decode("ascii"), made],
            )
    return len(found)


def _corrupt_redis(backend: BackendConfig, marker: bytes) -> int:
    client = backend.redis_client()
    found = []
    for made in client.scan_iter(match=f"{backend.prefix}:*", count=1000):
        data = client.get(made)
        if data is not None and marker in data:
            found.append(made)
    for made in found:
        client.set(made, CORRUPT)
    return len(found)


class _MemcachedConnection:
    """Just enough of memcached's text and meta protocol to rewrite one item."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buffer = b""

    def close(self) -> None:
        self.sock.close()

    def line(self) -> bytes:
        # Replies end lines with \r\n, metadump key lines with a bare \n.
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("memcached closed the connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.rstrip(b"\r")

    def data(self, size: int) -> bytes:
        while len(self.buffer) < size + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("memcached closed the connection")
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size + 2 :]
        return data

    def stored_keys(self) -> list[str]:
        for command in (b"lru_crawler metadump hash", b"lru_crawler metadump all"):
            for _ in range(200):  # BUSY: another crawl runs; ask again (bounded)
                self.sock.sendall(command + b"\r\n")
                first = self.line()
                if not first.startswith(b"BUSY"):
                    break
                threading.Event().wait(0.01)
            if first.startswith(b"BADCLASS") or first.startswith(b"ERROR"):
                continue
            found: list[str] = []
            line = first
            while line != b"END":
                fields = dict(p.split(b"=", 1) for p in line.split() if b"=" in p)
                found.append(urllib.parse.unquote(fields[b"key"].decode()))
                line = self.line()
            return found
        raise ConnectionError("memcached refused every metadump")

    def get(self, made: str) -> tuple[bytes, int] | None:
        self.sock.sendall(f"mg {made} v f\r\n".encode())
        head = self.line().split()
        if head[0] == b"EN":
            return None
        assert head[0] == b"VA", head
        flags = int(next(w for w in head[2:] if w.startswith(b"f"))[1:])
        return self.data(int(head[1])), flags

    def set(self, made: str, data: bytes, flags: int) -> None:
        self.sock.sendall(f"ms {made} {len(data)} F{flags}\r\n".encode() + data + b"\r\n")
        reply = self.line()
        assert reply == b"HD", reply


def _corrupt_memcached(backend: BackendConfig, marker: bytes) -> int:
    changed = 0
    for server in backend.servers:
        conn = _MemcachedConnection(server.port)
        try:
            for made in conn.stored_keys():
                if not made.startswith(f"{backend.prefix}:"):
                    continue
                found = conn.get(made)
                if found is not None and marker in found[0]:
                    conn.set(made, CORRUPT, found[1])  # same flags: the client unpickles it
                    changed += 1
        finally:
            conn.close()
    return changed


@pytest.fixture
def undecodable(
    request: pytest.FixtureRequest, backend: BackendConfig, tmp_path: Path
) -> Iterator[list[str]]:
    """Plant the undecodable entries of the test's `kind`; yield their keys.

    Also caches the decodable GOOD_PARTS (same subtree) and KEPT_PARTS (outside).
    """
    kind = request.node.callspec.params["kind"]
    cache_set(*GOOD_PARTS, value="good", length=None)
    cache_set(*KEPT_PARTS, value=1, length=None)
    if kind == "class-gone":
        plant_class_gone(backend, request, tmp_path)
    else:
        plant_corrupt_bytes(backend)
    yield [cache_key(*parts) for parts in BAD_PARTS]


def listed(pattern: str = "*") -> tuple[list[str], list[str]]:
    """What cache_keys and iter_keys list (neither may raise)."""
    return cache_keys(pattern), sorted(iter_keys(pattern))


@pytest.mark.parametrize("kind", KINDS)
def test_an_undecodable_entry_is_a_miss_and_listing_still_works(
    backend: BackendConfig, undecodable: list[str], kind: str
) -> None:
    for parts in BAD_PARTS:
        assert cache_get(*parts, default=MISSING) is MISSING
        with pytest.raises(NotCachedError) as miss:
            cache_get(*parts)
        assert miss.value.key == cache_key(*parts)
    good, kept = cache_key(*GOOD_PARTS), cache_key(*KEPT_PARTS)
    for keys in listed():
        assert {good, kept} <= set(keys), f"listing lost the decodable keys: {keys}"
    for keys in listed(f"{ROOT}::*"):
        assert good in keys, f"listing the subtree lost its decodable key: {keys}"
        assert kept not in keys
    assert cache_get(*GOOD_PARTS) == "good"
    assert cache_get(*KEPT_PARTS) == 1


DELETES: dict[str, Callable[[], Any]] = {
    "key": lambda: [cache_delete(*parts) for parts in BAD_PARTS],
    "children": lambda: cache_delete(ROOT, children=True),
    "all": lambda: cache_delete(),
    "pattern": lambda: cache_delete_pattern(f"{ROOT}::*"),
}


@pytest.mark.parametrize("delete", list(DELETES))
@pytest.mark.parametrize("kind", KINDS)
def test_every_delete_removes_an_undecodable_entry(
    backend: BackendConfig, undecodable: list[str], kind: str, delete: str
) -> None:
    good, kept = cache_key(*GOOD_PARTS), cache_key(*KEPT_PARTS)
    DELETES[delete]()  # what it returns for undecodable entries is not part of this test
    # The subtree's decodable key went with the undecodable ones (but for a delete by key).
    survivors = [good] if delete == "key" else []
    for keys in listed():
        assert [k for k in keys if k.startswith(ROOT)] == survivors, (
            f"after the {delete} delete the subtree still lists {keys}"
        )
        assert (kept in keys) == (delete != "all"), f"after the {delete} delete: {keys}"
    assert cache_get(*GOOD_PARTS, default=MISSING) == ("good" if delete == "key" else MISSING)
    assert cache_get(*KEPT_PARTS, default=MISSING) == (MISSING if delete == "all" else 1)
    # The keys are free again: an add stores, a set stores, and both read back.
    plain, digested = BAD_PARTS
    assert cache_get(*plain, default=MISSING) is MISSING
    assert cache_add(*plain, value="fresh plain") is True, "the old entry still holds the key"
    cache_set(*digested, value="fresh digested")
    assert cache_get(*plain) == "fresh plain"
    assert cache_get(*digested) == "fresh digested"
    for keys in listed(f"{ROOT}::*"):
        assert set(keys) == {*undecodable, *survivors}


# -- helpers' own sanity --------------------------------------------------------------------


def test_without_an_invalidation_the_held_fill_is_stored(
    backend: BackendConfig, run_dir: str
) -> None:
    """Without an invalidation the held fill is stored and served: the races are not vacuous."""
    with Gate() as gate:
        kids.HOLD[run_dir] = gate.address
        kids.set_price(run_dir, "pen", "1.00")
        try:
            held = HeldThread(lambda: kids.priced(run_dir, "pen"))
            gate.wait_arrivals(1, DEADLINE)
            kids.set_price(run_dir, "pen", "2.00")  # changed, but nobody invalidates
            gate.open()
            assert held.result() == "1.00"
        finally:
            kids.HOLD.pop(run_dir, None)
    assert kids.priced(run_dir, "pen") == "1.00"  # the fill was stored and is a hit
    assert len(kids.executions(run_dir)) == 1
