"""Portable operations on every backend: listing, pattern deletes, TTL, expire, add, bulk.

Every test runs on every backend of the `backend` fixture (locmem, SQLite and
PostgreSQL database caches, file-based, one and two memcached servers, Redis).
Expiry is made to happen in the backend's own bookkeeping (`expire_in_backend`),
never by sleeping.
"""

from __future__ import annotations

import contextlib
import datetime
import inspect
import threading
import time
from typing import Any
from unittest import mock

import pytest
from django.core.cache import caches
from django.db import connections
from django.utils import timezone

from keyedcache import (
    KeyedCache,
    UncacheableValueError,
    cache_add,
    cache_delete,
    cache_delete_pattern,
    cache_enable,
    cache_expire,
    cache_expire_at,
    cache_get,
    cache_get_many,
    cache_keys,
    cache_lock,
    cache_persist,
    cache_pttl,
    cache_set,
    cache_set_many,
    cache_ttl,
    default_cache,
    iter_keys,
    request_cache,
)
from keyedcache.backends.stamped import StampedAdapter as GenerationalAdapter
from keyedcache.counters import counters
from keyedcache.entry import make_entry
from tests.conftest import BackendConfig
from tests.procs import BoundWorker
from tests.test_store import clock_ahead

MISS = object()

#: Keys a glob is tried on: siblings, children, look-alikes, other roots.
GLOB_KEYS = [
    "product::1",
    "product::2",
    "product::10",
    "product::a",
    "product::1::detail",
    "productx::1",
    "order::1",
    "order::2::line::1",
]

#: Keys that are stored under a digested or collapsed storage key, or that
#: contain glob metacharacters: each must come back as it was written.
LONG_KEY = "long::" + "x" * 400
DEEP_KEY = "deep::" + "::".join(f"segment{i:02d}" for i in range(40))
UNUSUAL_KEYS = [
    "with space::a b c",
    "naïve::ключ::日本語",
    "ctl::tab\there::new\nline",
    "meta::[x]*?",
    "back\\slash::1",
    LONG_KEY,
    DEEP_KEY,
]


def cached(*keys: Any) -> Any:
    """The value cached under the key, or MISS."""
    return cache_get(*keys, default=MISS)


def write(keys: list[str], length: Any = 300) -> None:
    for key in keys:
        cache_set(key, value=f"v:{key}", length=length)


def expire_in_backend(backend: BackendConfig, key: str) -> None:
    """Make the backend itself consider `key` expired (its own expiry bookkeeping).

    Django's `touch(key, 0)` sets the backend's expiry to the past: locmem,
    the database and file caches keep the record until it is read or culled,
    memcached keeps the item until its LRU crawler reclaims it, Redis drops it.
    """
    assert backend.cache.touch(backend.storage_key(key), 0) is not None
    with pytest.raises(LookupError):
        ttl = backend.stored_ttl(key)
        if ttl is not None and ttl <= 0:
            raise LookupError(key)


# -- what the backend itself holds (to check that nothing was written) -------------------------


def stored_records(keys: list[str]) -> list[str]:
    """The backend records keyedcache would write for `keys` that exist: their
    entries and, on generation-token backends, the tokens guarding them.

    Read with Django's plain cache API, so whatever is stored shows.
    """
    adapter: Any = default_cache().adapter
    candidates = {adapter.storage_key(key) for key in keys}
    if isinstance(adapter, GenerationalAdapter):
        candidates.update(gen for key in keys for gen in adapter.gen_keys(key))
    plain = caches["default"]
    return sorted(c for c in candidates if plain.get(c, MISS) is not MISS)


# -- iter_keys and cache_keys ------------------------------------------------------------------


def test_iter_keys_is_a_lazy_generator(backend: BackendConfig) -> None:
    write(GLOB_KEYS)
    cache = default_cache()
    with mock.patch.object(cache.adapter, "list_keys", wraps=cache.adapter.list_keys) as spy:
        keys = iter_keys("product::*")
        assert inspect.isgenerator(keys)
        assert spy.call_count == 0  # nothing asked of the backend before the first key
        first = next(keys)
        assert spy.call_count == 1
        rest = list(keys)
    assert sorted([first, *rest]) == [k for k in sorted(GLOB_KEYS) if k.startswith("product::")]


def test_adapter_listing_streams(backend: BackendConfig) -> None:
    # The adapter's own listing is a generator too: no backend holds every key in a list.
    write(GLOB_KEYS)
    listing = default_cache().adapter.list_keys("keyedcache:")
    assert inspect.isgenerator(listing)
    assert sorted(listing) == sorted(GLOB_KEYS)


@pytest.mark.backends("db-sqlite", "db-postgres", "redis")
def test_listing_reads_the_backend_in_batches(backend: BackendConfig) -> None:
    # Database cursor fetches and Redis SCAN calls: the first key comes after
    # one batch, not after every key has been read.
    keys = [f"batch::{i:03d}" for i in range(60)]
    write(keys)
    adapter: Any = default_cache().adapter
    calls: list[int] = []
    if backend.is_redis:
        client_class = type(adapter._client())
        real_scan = client_class.scan

        def scan(self: Any, *args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            return real_scan(self, *args, **kwargs)

        patches = [
            mock.patch.object(adapter, "scan_count", 10),
            mock.patch.object(client_class, "scan", scan),
        ]
    else:
        from django.db.backends.utils import CursorWrapper

        # CursorWrapper forwards fetchmany to the driver's cursor by __getattr__.
        assert "fetchmany" not in vars(CursorWrapper)

        def fetchmany(self: Any, *args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            return self.cursor.fetchmany(*args, **kwargs)

        patches = [
            mock.patch.object(adapter, "fetch_size", 10),
            mock.patch.object(CursorWrapper, "fetchmany", fetchmany, create=True),
        ]
    with patches[0], patches[1]:
        listing = iter_keys("batch::*")
        next(listing)
        after_first = len(calls)
        rest = list(listing)
    assert len(rest) == len(keys) - 1
    assert 0 < after_first < len(calls), "the whole listing was read before the first key"


def test_cache_keys_is_sorted_and_complete(backend: BackendConfig) -> None:
    write(list(reversed(GLOB_KEYS)))
    assert cache_keys() == sorted(GLOB_KEYS)
    assert cache_keys("*") == sorted(GLOB_KEYS)
    assert default_cache().keys() == sorted(GLOB_KEYS)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (
            "product::*",
            ["product::1", "product::1::detail", "product::10", "product::2", "product::a"],
        ),
        ("product::?", ["product::1", "product::2", "product::a"]),
        ("product::[12]", ["product::1", "product::2"]),
        ("product::[!12]", ["product::a"]),
        ("product::[0-9]*", ["product::1", "product::1::detail", "product::10", "product::2"]),
        ("product::1*", ["product::1", "product::1::detail", "product::10"]),
        ("*::1", ["order::1", "order::2::line::1", "product::1", "productx::1"]),
        (
            "prod*",
            [
                "product::1",
                "product::1::detail",
                "product::10",
                "product::2",
                "product::a",
                "productx::1",
            ],
        ),
        ("order::*::line::?", ["order::2::line::1"]),
        ("order::1", ["order::1"]),
        ("product", []),
        ("nothing::*", []),
    ],
)
def test_glob_patterns(backend: BackendConfig, pattern: str, expected: list[str]) -> None:
    write(GLOB_KEYS)
    assert cache_keys(pattern) == sorted(expected)
    assert sorted(iter_keys(pattern)) == sorted(expected)


def test_unusual_keys_are_listed_by_their_logical_key(backend: BackendConfig) -> None:
    write(UNUSUAL_KEYS)
    assert cache_keys() == sorted(UNUSUAL_KEYS)
    assert cache_keys("naïve::*") == ["naïve::ключ::日本語"]
    assert cache_keys("with space::*") == ["with space::a b c"]
    assert cache_keys("ctl::*") == ["ctl::tab\there::new\nline"]
    assert cache_keys("meta::*") == ["meta::[x]*?"]
    assert cache_keys("meta::[[]x[]][*][?]") == ["meta::[x]*?"]
    assert cache_keys("back\\slash::*") == ["back\\slash::1"]
    assert cache_keys("long::*") == [LONG_KEY]
    assert cache_keys("deep::segment00::*") == [DEEP_KEY]
    assert cache_keys("deep::*::segment39") == [DEEP_KEY]


def test_expired_entries_are_not_listed(backend: BackendConfig) -> None:
    write(["exp::gone", "exp::kept", "exp::forever"])
    cache_set("exp::forever", value=1, length=None)
    expire_in_backend(backend, "exp::gone")
    assert cache_keys("exp::*") == ["exp::forever", "exp::kept"]
    assert cache_delete_pattern("exp::*") == 2


def test_listing_skips_what_is_not_a_keyedcache_entry(backend: BackendConfig) -> None:
    write(["mine::1"])
    backend.cache.set("mine::2", "plain Django data", None)
    KeyedCache("default", namespace="other").set("mine::3", "another namespace")
    with cache_lock("mine::4"):
        assert cache_keys() == ["mine::1"]


def test_listing_with_two_namespaces_lists_each_key_once(backend: BackendConfig) -> None:
    # The same logical keys in another namespace of the same cache, more of
    # them than one listing batch (500).
    keys = [f"twice::{i:04d}" for i in range(520)]
    other = KeyedCache("default", namespace="other")
    other.set_many({key: "other" for key in keys}, 300)
    cache_set_many({key: "mine" for key in keys[:510]})
    listed = list(iter_keys("twice::*"))
    assert sorted(listed) == keys[:510]
    assert other.keys("twice::*") == keys


@pytest.mark.backends("memcached", "memcached2")
def test_memcached_dump_is_read_to_its_end_before_other_requests(
    backend: BackendConfig,
) -> None:
    # While a crawl waits for its client to read on, memcached can hold locks
    # a get on another connection needs: a get in the middle of a large dump
    # (100,000 keys) never returned. So no request may overlap a dump.
    keys = [f"dump::{i:04d}" for i in range(1200)]
    cache_set_many({key: 1 for key in keys})
    adapter: Any = default_cache().adapter
    events: list[str] = []
    real_dump = adapter._metadump

    def dump(*args: Any) -> Any:
        events.append("dump open")
        try:
            yield from real_dump(*args)
        finally:
            events.append("dump closed")

    django_cache = caches["default"]
    real_get_many = django_cache.get_many

    def get_many(*args: Any, **kwargs: Any) -> Any:
        events.append("get_many")
        return real_get_many(*args, **kwargs)

    with (
        mock.patch.object(adapter, "_metadump", dump),
        mock.patch.object(django_cache, "get_many", get_many),
    ):
        assert cache_keys("dump::*") == keys
    servers = len(backend.servers)
    assert events[: 2 * servers] == ["dump open", "dump closed"] * servers
    assert set(events[2 * servers :]) == {"get_many"}


def test_listings_at_the_same_time(backend: BackendConfig) -> None:
    # memcached runs one crawl at a time per server (BUSY to the others).
    write(GLOB_KEYS)
    listings = race(4, cache_keys)
    assert listings == [sorted(GLOB_KEYS)] * 4


# -- pattern deletes ---------------------------------------------------------------------------


def test_delete_pattern_returns_the_count_and_deletes_nothing_else(
    backend: BackendConfig,
) -> None:
    write(GLOB_KEYS + UNUSUAL_KEYS)
    plain = backend.cache
    plain.set("product::1", "plain Django data", None)
    plain.set("product::3", "plain Django data", None)
    other = KeyedCache("default", namespace="other")
    other.set("product::1", "other namespace")
    lock = cache_lock("product::lock")
    assert lock.acquire()

    assert cache_delete_pattern("product::*") == 5
    assert cache_keys() == sorted(["productx::1", "order::1", "order::2::line::1", *UNUSUAL_KEYS])
    assert cached("product::1") is MISS
    assert cached("productx::1") == "v:productx::1"
    assert plain.get("product::1") == "plain Django data"
    assert plain.get("product::3") == "plain Django data"
    assert other.get("product::1") == "other namespace"
    assert lock.owned()
    lock.release()

    assert cache_delete_pattern("product::*") == 0
    assert cache_delete_pattern("[lmnb]*") == 4
    assert cache_delete_pattern("*") == 6
    assert cache_keys() == []
    assert other.keys() == ["product::1"]


def test_delete_pattern_of_one_exact_key(backend: BackendConfig) -> None:
    write(["exact::1", "exact::10", "exact::1::x"])
    assert cache_delete_pattern("exact::1") == 1
    assert cache_keys() == ["exact::10", "exact::1::x"]


@pytest.mark.backends(exclude=("locmem",))
def test_listing_and_pattern_delete_see_other_processes(
    backend: BackendConfig, children: Any
) -> None:
    first, second = children(2)
    theirs = [f"xproc::child::{i}" for i in range(5)] + ["xproc::ünï cödé::1", LONG_KEY]
    mine = [f"xproc::parent::{i}" for i in range(3)]
    first.run("for k in keys: cache_set(k, value=k)", keys=theirs)
    write(mine)
    everything = sorted(theirs + mine)
    assert cache_keys("xproc::*") == sorted(theirs[:-1] + mine)
    assert cache_keys() == everything
    assert second.run("cache_keys()") == everything

    assert cache_delete_pattern("xproc::child::*") == 5
    assert first.run("cache_keys()") == sorted([*mine, "xproc::ünï cödé::1", LONG_KEY])
    assert second.run("cache_delete_pattern('xproc::parent::[01]')") == 2
    assert cache_keys() == sorted(["xproc::parent::2", "xproc::ünï cödé::1", LONG_KEY])
    assert cached("xproc::parent::0") is MISS
    assert first.run("cache_delete_pattern('*')") == 3
    assert cache_keys() == []


# -- ttl and pttl ------------------------------------------------------------------------------


def test_ttl_of_a_fresh_entry(backend: BackendConfig) -> None:
    cache_set("ttl", 1, value="v", length=100)
    ttl = cache_ttl("ttl", 1)
    pttl = cache_pttl("ttl", 1)
    assert ttl is not None and 99 < ttl <= 100
    assert pttl is not None and 99_000 < pttl <= 100_000
    assert cache_ttl("ttl::1") == ttl
    assert cache_ttl(["ttl", 1]) == ttl


def test_ttl_with_pairs_and_the_default_length(backend: BackendConfig) -> None:
    cache_set("ttl", colour="red", value="v")  # the alias's TIMEOUT: Django's 300
    ttl = cache_ttl("ttl", colour="red")
    assert ttl is not None and 299 < ttl <= 300


def test_ttl_of_an_entry_that_never_expires(backend: BackendConfig) -> None:
    cache_set("forever", value="v", length=None)
    assert cache_ttl("forever") is None
    assert cache_pttl("forever") is None


def test_ttl_of_a_missing_entry_is_zero(backend: BackendConfig) -> None:
    assert cache_ttl("missing") == 0
    assert cache_pttl("missing") == 0
    cache_set("gone", value="v", length=100)
    expire_in_backend(backend, "gone")
    assert cache_ttl("gone") == 0
    assert cache_pttl("gone") == 0


def test_ttl_of_a_short_entry_is_rounded_up(backend: BackendConfig) -> None:
    cache_set("short", value="v", length=1.5)
    assert cache_ttl("short") == 2
    # The entry is fresh for 1.5 s; backends that expire in whole seconds keep
    # it up to 2 s, and Redis and locmem report their own expiry: within a second.
    pttl = cache_pttl("short")
    assert pttl is not None and 1000 < pttl <= 2000


def test_ttl_needs_a_key(backend: BackendConfig) -> None:
    with pytest.raises(ValueError):
        cache_ttl()
    with pytest.raises(ValueError):
        cache_pttl()


# -- expire, expire_at, persist ----------------------------------------------------------------


def test_expire_changes_the_ttl(backend: BackendConfig) -> None:
    cache_set("exp", value={"a": 1}, length=100)
    assert cache_expire("exp", length=30) is True
    ttl = cache_ttl("exp")
    assert ttl is not None and 29 < ttl <= 30
    stored = backend.stored_ttl("exp")  # the backend drops it then, not only the envelope
    assert stored is not None and 28 < stored <= 30
    assert cache_get("exp") == {"a": 1}
    assert cache_expire("exp", length=1000) is True
    ttl = cache_ttl("exp")
    assert ttl is not None and 999 < ttl <= 1000


def test_expire_of_a_missing_key_is_false_and_writes_nothing(
    backend: BackendConfig,
) -> None:
    assert cache_expire("nope", length=30) is False
    assert cache_persist("nope") is False
    assert cache_expire_at("nope", when=timezone.now() + datetime.timedelta(seconds=9)) is False
    assert cached("nope") is MISS
    assert stored_records(["nope"]) == []


def test_expire_with_length_none_persists(backend: BackendConfig) -> None:
    cache_set("exp", value="v", length=100)
    assert cache_expire("exp", length=None) is True
    assert cache_ttl("exp") is None


def test_expire_now_deletes(backend: BackendConfig) -> None:
    cache_set("exp", value="v", length=100)
    assert cache_expire("exp", length=0) is True
    assert cached("exp") is MISS
    assert cache_ttl("exp") == 0
    assert cache_expire("exp", length=0) is False


def test_expire_at(backend: BackendConfig) -> None:
    cache_set("at", 1, value="v", length=None)
    when = timezone.now() + datetime.timedelta(seconds=40)
    assert cache_expire_at("at", 1, when=when) is True
    ttl = cache_ttl("at", 1)
    assert ttl is not None and 39 < ttl <= 40
    assert cache_get("at", 1) == "v"
    assert cache_expire_at("at", 1, when=timezone.now() - datetime.timedelta(seconds=1)) is True
    assert cached("at", 1) is MISS


def test_expire_at_takes_naive_local_times(backend: BackendConfig) -> None:
    cache_set("at", value="v", length=None)
    naive = datetime.datetime.now() + datetime.timedelta(seconds=60)
    assert cache_expire_at("at", when=naive) is True
    ttl = cache_ttl("at")
    assert ttl is not None and 59 < ttl <= 60


def test_persist(backend: BackendConfig) -> None:
    cache_set("keep", value="v", length=100)
    assert cache_persist("keep") is True
    assert cache_ttl("keep") is None
    assert backend.stored_ttl("keep") is None
    assert cache_get("keep") == "v"
    assert cache_persist("keep") is True  # already persistent: it exists, so True


def test_expire_and_persist_move_the_exact_expiry_of_fractional_lengths(
    backend: BackendConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fractional length is kept exactly in the entry (backends round it up to
    # whole seconds): a new expiry must replace it there too.
    cache_set("pinned", "persist", value=1, length=1.5)
    assert cache_persist("pinned", "persist") is True
    cache_set("pinned", "expire", value=2, length=1.5)
    assert cache_expire("pinned", "expire", length=100) is True
    with clock_ahead(monkeypatch, 10):
        assert cache_get("pinned", "persist") == 1
        assert cache_get("pinned", "expire") == 2
    assert cache_ttl("pinned", "persist") is None
    cache_set("pinned", "shorter", value=3, length=100.5)
    assert cache_expire("pinned", "shorter", length=20) is True
    with clock_ahead(monkeypatch, 30):
        assert cached("pinned", "shorter") is MISS


def test_expire_of_an_entry_with_a_stale_window(backend: BackendConfig) -> None:
    # A memoized entry is fresh for 100 s, then kept 50 s more to be served
    # stale: a shorter expiry cuts both.
    store = default_cache()
    store.set_entry("stale::1", make_entry("v", 100, stale=50, key="stale::1"), 150)
    assert store.expire("stale::1", 20) is True
    entry = store.get_entry("stale::1")
    assert entry is not None and entry.value == "v"
    ttl = cache_ttl("stale::1")
    assert ttl is not None and 19 < ttl <= 20
    if not (backend.name == "locmem" or backend.is_redis):  # rewritten: the envelope moved too
        assert entry.fresh_until is not None and entry.stale_until is not None
        assert entry.fresh_until <= entry.stale_until <= time.time() + 20
    assert store.persist("stale::1") is True
    assert cache_ttl("stale::1") is None
    assert cache_get("stale::1") == "v"


def test_expire_and_persist_keep_children_deletes_working(backend: BackendConfig) -> None:
    cache_set("tree::leaf", value="v", length=100)
    cache_persist("tree::leaf")
    cache_expire("tree::leaf", length=50)
    cache_delete("tree", children=True)
    assert cached("tree::leaf") is MISS
    assert cache_ttl("tree::leaf") == 0
    assert cache_expire("tree::leaf", length=50) is False


# -- add ---------------------------------------------------------------------------------------


def test_add_stores_only_when_absent(backend: BackendConfig) -> None:
    assert cache_add("add", 1, value="first", length=100) is True
    assert cache_add("add", 1, value="second", length=100) is False
    assert cache_get("add", 1) == "first"
    ttl = cache_ttl("add", 1)
    assert ttl is not None and 99 < ttl <= 100
    cache_delete("add", 1)
    assert cache_add("add", 1, value="third", length=None) is True
    assert cache_get("add", 1) == "third"
    assert cache_ttl("add", 1) is None


def test_add_over_an_expired_entry(backend: BackendConfig) -> None:
    cache_set("add", value="old", length=100)
    expire_in_backend(backend, "add")
    assert cache_add("add", value="new") is True
    assert cache_get("add") == "new"


def test_add_over_an_entry_dropped_by_a_children_delete(backend: BackendConfig) -> None:
    cache_set("tree::leaf", value="old")
    cache_delete("tree", children=True)
    assert cache_add("tree::leaf", value="new") is True
    assert cache_get("tree::leaf") == "new"
    cache_delete()
    assert cache_add("tree::leaf", value="newer") is True
    assert cache_get("tree::leaf") == "newer"


def test_add_stores_falsy_values(backend: BackendConfig) -> None:
    assert cache_add("falsy", value=None) is True
    assert cache_add("falsy", value="x") is False
    assert cache_get("falsy") is None


def test_add_needs_a_value(backend: BackendConfig) -> None:
    with pytest.raises(TypeError):
        cache_add("novalue")


def test_add_of_an_unpicklable_value_raises(backend: BackendConfig) -> None:
    with pytest.raises(UncacheableValueError) as raised:
        cache_add("bad", value=lambda: None)
    assert raised.value.key == "bad"
    assert cached("bad") is MISS


@pytest.mark.backends(exclude=("file",))  # Django's file cache has no atomic add
def test_add_is_atomic_across_threads(backend: BackendConfig) -> None:
    for attempt in range(3):
        results = race(8, lambda attempt=attempt: cache_add("race", attempt, value=attempt))
        assert results.count(True) == 1, f"attempt {attempt}: {results}"
        assert cache_get("race", attempt) == attempt


def race(count: int, func: Any) -> list[Any]:
    """Start `count` threads at once (a Barrier) on `func`; return what each returned."""
    barrier = threading.Barrier(count)
    results: list[Any] = []
    errors: list[BaseException] = []

    def racer() -> None:
        try:
            barrier.wait(timeout=30)
            results.append(func())
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=racer) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert len(results) == count
    return results


@pytest.mark.backends(exclude=("locmem", "file"))
def test_add_is_atomic_across_processes(backend: BackendConfig, children: Any) -> None:
    from tests.procs import Gate

    workers: list[BoundWorker] = children(3)
    code = """
from tests.procs import gate_wait
gate_wait(gate)
result = [cache_add('xadd', i, value=os.getpid()) for i in range(20)]
"""
    with Gate() as gate:
        pending = [w.submit(code, gate=gate.address) for w in workers]
        gate.wait_arrivals(len(workers))
        gate.open()
        results = [p.result() for p in pending]
    for i in range(20):
        winners = [r[i] for r in results].count(True)
        assert winners == 1, f"key xadd::{i}: {winners} processes stored it"
        assert cache_get("xadd", i) in {w.pid for w in workers}


# -- get_many and set_many ---------------------------------------------------------------------


def test_get_many_returns_only_hits(backend: BackendConfig) -> None:
    cache_set("many", 1, value="one")
    cache_set("many", 2, value=None)
    cache_set("many", 3, value=0)
    cache_set("many::expired", value="x", length=100)
    expire_in_backend(backend, "many::expired")
    found = cache_get_many([("many", 1), "many::2", ["many", 3], "many::4", "many::expired"])
    assert found == {"many::1": "one", "many::2": None, "many::3": 0}
    assert cache_get_many([]) == {}
    assert cache_get_many(["many::1", "many::1", ("many", 1)]) == {"many::1": "one"}


def test_get_many_is_one_backend_call(backend: BackendConfig) -> None:
    keys = [f"one::{i}" for i in range(20)]
    write(keys[::2])
    django_cache = caches["default"]
    mget: Any = contextlib.nullcontext(None)
    if backend.is_redis:
        reader = default_cache().adapter._reader()
        # A cluster's one MGET is split per slot by the client, in one pipeline.
        method = "mget_nonatomic" if backend.name == "valkey-cluster" else "mget"
        mget = mock.patch.object(reader, method, wraps=getattr(reader, method))
    elif backend.name.startswith("db"):
        from django.db import connections, router
        from django.test.utils import CaptureQueriesContext

        database = router.db_for_write(django_cache.cache_model_class)  # type: ignore[attr-defined]
        mget = CaptureQueriesContext(connections[database])
    with (
        mock.patch.object(django_cache, "get_many", wraps=django_cache.get_many) as get_many,
        mock.patch.object(django_cache, "get", wraps=django_cache.get) as get,
        mget as raw_mget,
    ):
        found = cache_get_many(keys)
        assert cache_get_many([]) == {}
    assert found == {key: f"v:{key}" for key in keys[::2]}
    if backend.name == "locmem":
        # Reads the LocMemCache dict itself, under one hold of its lock.
        assert (get_many.call_count, get.call_count) == (0, 0)
    elif backend.is_redis:
        # One MGET on the client itself (entries and their tokens together).
        assert (raw_mget.call_count, get_many.call_count, get.call_count) == (1, 0, 0)
    elif backend.name.startswith("db"):
        # One SELECT ... IN on the cache table (entries and their tokens together).
        selects = [q for q in raw_mget.captured_queries if q["sql"].startswith("SELECT")]
        assert (len(selects), get_many.call_count, get.call_count) == (1, 0, 0)
    else:
        # One get_many: one round trip on Redis, memcached and the database (the
        # file-based cache's get_many reads file by file).
        assert get_many.call_count == 1
        if backend.name != "file":
            assert get.call_count == 0


def test_get_many_rejects_other_key_types(backend: BackendConfig) -> None:
    with pytest.raises(TypeError):
        cache_get_many([1])


def test_set_many_round_trip(backend: BackendConfig) -> None:
    cache_set_many({("bulk", 1): "one", "bulk::2": [2], ("bulk", "x y"): None}, length=100)
    assert cache_get_many(["bulk::1", "bulk::2", "bulk::x y"]) == {
        "bulk::1": "one",
        "bulk::2": [2],
        "bulk::x y": None,
    }
    ttl = cache_ttl("bulk", 2)
    assert ttl is not None and 99 < ttl <= 100
    cache_set_many({"bulk::3": 3}, length=None)
    assert cache_ttl("bulk::3") is None
    cache_set_many({})
    assert cache_keys("bulk::*") == ["bulk::1", "bulk::2", "bulk::3", "bulk::x y"]


def test_set_many_overwrites_and_is_seen_by_children_deletes(backend: BackendConfig) -> None:
    cache_set("sm::1", value="old")
    cache_set_many({"sm::1": "new", "sm::2": "two"})
    assert cache_get("sm::1") == "new"
    cache_delete("sm", children=True)
    assert cache_get_many(["sm::1", "sm::2"]) == {}


def test_set_many_with_an_unpicklable_value_writes_nothing(
    backend: BackendConfig,
) -> None:
    mapping = {("sm", "good"): 1, ("sm", "bad", 2): lambda: None, "sm::after": 3}
    with pytest.raises(UncacheableValueError) as raised:
        cache_set_many(mapping)
    assert raised.value.key == "sm::bad::2"
    assert "sm::bad::2" in str(raised.value)
    assert stored_records(["sm::good", "sm::bad::2", "sm::after"]) == []  # nor any token
    assert cache_get_many(["sm::good", "sm::after"]) == {}
    with pytest.raises(UncacheableValueError):
        cache_set_many({"sm::thread": threading.Lock()})
    assert stored_records(["sm::thread"]) == []
    cache_set_many({"sm::good": 1})  # the helper does see what is written
    assert stored_records(["sm::good"]) != []


# -- inside a first-level request scope ---------------------------------------------------------


def test_operations_keep_a_request_scope_right(backend: BackendConfig) -> None:
    write(["scoped::1", "scoped::2"])
    with request_cache():
        assert cache_get("scoped::1") == "v:scoped::1"  # now remembered by the scope
        assert cache_get_many(["scoped::1", "scoped::2", "scoped::3"]) == {
            "scoped::1": "v:scoped::1",
            "scoped::2": "v:scoped::2",
        }
        cache_set_many({"scoped::4": 4})
        assert cache_get("scoped::4") == 4
        assert cache_add("scoped::5", value=5) is True
        assert cache_get("scoped::5") == 5
        assert cache_expire("scoped::5", length=0) is True
        assert cached("scoped::5") is MISS
        assert cache_delete_pattern("scoped::[124]") == 3
        assert cached("scoped::1") is MISS  # not served from the scope's memory
        assert cache_get_many(["scoped::1", "scoped::2", "scoped::4"]) == {}
        cache_set_many({"scoped::6": 6}, length=0)
        assert cached("scoped::6") is MISS
    assert cache_keys("scoped::*") == []


def test_a_failing_batch_delete_counts_an_error(backend: BackendConfig) -> None:
    write(["fail::1", "fail::2"])
    store = default_cache()
    errors = counters.snapshot()["errors"]
    with mock.patch.object(store.adapter, "delete_many", side_effect=ConnectionError("down")):
        assert cache_delete_pattern("fail::*") == 0
    assert counters.snapshot()["errors"] == errors + 1
    assert cache_keys() == ["fail::1", "fail::2"]


# -- keyedcache off, backend down --------------------------------------------------------------


def test_operations_when_keyedcache_is_disabled(backend: BackendConfig) -> None:
    write(["off::1"])
    cache_enable(False)
    assert cache_keys() == []
    assert list(iter_keys()) == []
    assert cache_delete_pattern("*") == 0
    assert cache_ttl("off::1") == 0
    assert cache_expire("off::1", length=5) is False
    assert cache_add("off::2", value=1) is False
    assert cache_get_many(["off::1"]) == {}
    cache_set_many({"off::3": 3})
    cache_enable(True)
    assert cache_keys() == ["off::1"]
    ttl = cache_ttl("off::1")
    assert ttl is not None and ttl > 200


# locmem cannot be unreachable, and its adapter reads the dict itself.
@pytest.mark.backends(exclude=("locmem",))
def test_operations_when_the_backend_is_down(backend: BackendConfig) -> None:
    write(["down::1"])
    with backend.down():
        assert cache_keys() == []
        assert cache_delete_pattern("*") == 0
        assert cache_ttl("down::1") == 0
        assert cache_pttl("down::1") == 0
        assert cache_expire("down::1", length=5) is False
        assert cache_persist("down::1") is False
        assert cache_add("down::2", value=1) is False
        assert cache_get_many(["down::1"]) == {}
        cache_set_many({"down::3": 3})
    assert cache_keys() == ["down::1"]
