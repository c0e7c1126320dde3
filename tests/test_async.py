"""The async API end to end: acache_*, KeyedCache.a*, async locks and memoization, warnings."""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from unittest import mock

import pytest
from asgiref.sync import SyncToAsync, async_to_sync
from django.db import connections
from django.http import HttpRequest, JsonResponse
from django.test import AsyncClient
from django.test.utils import CaptureQueriesContext, override_settings
from django.urls import path

import keyedcache
from keyedcache import (
    NotCachedError,
    UncacheableValueError,
    acache_add,
    acache_delete,
    acache_delete_pattern,
    acache_expire,
    acache_get,
    acache_get_many,
    acache_keys,
    acache_persist,
    acache_pttl,
    acache_set,
    acache_set_many,
    acache_ttl,
    aiter_keys,
    cache_function,
    cache_get,
    cache_lock,
    cache_set,
    default_cache,
)
from keyedcache.amodels import afind_by_id, afind_by_key, afind_by_slug
from keyedcache.asyncwarn import SyncCallInEventLoopWarning
from keyedcache.contrib.keyval import KeyVal
from keyedcache.local import current_scope
from tests.conftest import BackendConfig
from tests.models import Widget
from tests.procs import BoundWorker, Gate, append_line, gate_wait, read_lines
from tests.test_stampede import CROSS_PROCESS

T = TypeVar("T")

#: Upper bound on any wait in these tests: a guard against a hang, not a synchronisation.
DEADLINE = 30.0
#: Backends whose async adapter runs on the event loop (no thread hop).
NATIVE = ("locmem", "redis", "django-redis", "valkey")


def run(coroutine_function: Callable[[], Awaitable[T]]) -> T:
    """Run an async test body the way Django does: thread-sensitive calls come back here."""

    async def main() -> T:
        return await coroutine_function()

    return async_to_sync(main)()


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every sync_to_async call made while the test runs (the name of what it ran)."""
    seen: list[str] = []
    original = SyncToAsync.__call__

    async def counting(self: SyncToAsync[Any, Any], *args: Any, **kwargs: Any) -> Any:
        seen.append(getattr(self.func, "__qualname__", repr(self.func)))
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(SyncToAsync, "__call__", counting)
    return seen


# -- the module functions on every backend ---------------------------------------------------


def test_acache_set_and_get_agree_with_the_sync_api(backend: BackendConfig) -> None:
    async def body() -> None:
        await acache_set("product", 1, value={"name": "widget"})
        assert await acache_get("product", 1) == {"name": "widget"}
        for falsy in (None, False, 0, ""):
            await acache_set("falsy", repr(falsy), value=falsy)
            assert await acache_get("falsy", repr(falsy)) == falsy
        assert await acache_get("missing", default="fallback") == "fallback"
        with pytest.raises(NotCachedError) as caught:
            await acache_get("missing", 2)
        assert caught.value.key == "missing::2"

    run(body)
    assert cache_get("product", 1) == {"name": "widget"}  # the sync API reads the same entry
    cache_set("product", 2, value="sync")
    assert run(lambda: acache_get("product", 2)) == "sync"


def test_acache_set_rejects_an_unpicklable_value_naming_the_key(backend: BackendConfig) -> None:
    with pytest.raises(UncacheableValueError, match="lock::held"):
        run(lambda: acache_set("lock", "held", value=threading.Lock()))
    assert run(lambda: acache_get("lock", "held", default="absent")) == "absent"


def test_acache_delete_with_children_takes_the_subtree_only(backend: BackendConfig) -> None:
    for key in ("a::b", "a::b::c", "a::bc"):
        cache_set(key, value=key)

    async def body() -> list[str]:
        return await acache_delete("a", "b", children=True)

    assert run(body) == ["a::b"]
    assert cache_get("a::b", default=None) is None
    assert cache_get("a::b::c", default=None) is None
    assert cache_get("a::bc") == "a::bc"


def test_acache_delete_without_keys_deletes_every_entry_and_nothing_else(
    backend: BackendConfig,
) -> None:
    cache_set("mine", value=1)
    backend.cache.set("foreign", "kept")

    run(lambda: acache_delete())

    assert cache_get("mine", default=None) is None
    assert backend.cache.get("foreign") == "kept"


def test_acache_get_many_and_set_many(backend: BackendConfig) -> None:
    async def body() -> dict[str, Any]:
        await acache_set_many({("p", 1): "one", "p::2": "two"}, length=60)
        return await acache_get_many([("p", 1), "p::2", "p::3"])

    assert run(body) == {"p::1": "one", "p::2": "two"}
    assert cache_get("p", 2) == "two"


def test_acache_add_stores_only_when_absent(backend: BackendConfig) -> None:
    async def body() -> tuple[bool, bool, Any]:
        first = await acache_add("once", value="first")
        second = await acache_add("once", value="second")
        return first, second, await acache_get("once")

    assert run(body) == (True, False, "first")


def test_ttl_expire_and_persist(backend: BackendConfig) -> None:
    async def body() -> None:
        await acache_set("t", value=1, length=100)
        assert 0 < (await acache_ttl("t") or 0) <= 100
        assert await acache_expire("t", length=50) is True
        assert 0 < (await acache_pttl("t") or 0) <= 50_000
        assert await acache_persist("t") is True
        assert await acache_ttl("t") is None
        assert await acache_get("t") == 1
        assert await acache_ttl("never-set") == 0
        assert await acache_expire("never-set", length=5) is False

    run(body)


def test_aiter_keys_and_acache_delete_pattern(backend: BackendConfig) -> None:
    for key in ("user::1", "user::2", "item::1"):
        cache_set(key, value=key)

    async def body() -> tuple[list[str], list[str], int, list[str]]:
        listed = sorted([key async for key in aiter_keys("user::*")])
        everything = await acache_keys()
        deleted = await acache_delete_pattern("user::*")
        return listed, everything, deleted, await acache_keys()

    listed, everything, deleted, left = run(body)
    assert listed == ["user::1", "user::2"]
    assert everything == ["item::1", "user::1", "user::2"]
    assert deleted == 2
    assert left == ["item::1"]


def test_outage_reads_miss_and_writes_are_skipped(backend: BackendConfig) -> None:
    runs: list[int] = []

    @cache_function(60)
    async def compute(x: int) -> int:
        runs.append(x)
        return x * 2

    async def body() -> tuple[Any, ...]:
        await acache_set("down", value=1)  # skipped, not raised
        return (
            await acache_get("down", default="missed"),
            await acache_delete("down"),
            await compute(4),
        )

    with backend.down():
        assert run(body) == ("missed", [], 8)
    assert runs == [4]


# -- which path each backend takes ------------------------------------------------------------


def test_native_backends_answer_on_the_event_loop(backend: BackendConfig, hops: list[str]) -> None:
    native = backend.name in NATIVE
    assert default_cache().aadapter.native is native

    @cache_function(60)
    async def doubled(x: int) -> int:
        return x * 2

    async def body() -> None:
        await acache_set("k", value=1)
        assert await acache_get("k") == 1
        assert await doubled(21) == 42  # a miss: computed and stored
        hops.clear()
        assert await acache_get("k") == 1
        assert await doubled(21) == 42  # a hit

    run(body)
    if native:
        assert hops == []
    else:
        assert len(hops) == 2  # one thread hop per call, as Django's own async methods


# -- async locks ---------------------------------------------------------------------------------


def test_async_with_cache_lock_excludes_other_holders(backend: BackendConfig) -> None:
    async def body() -> tuple[bool, bool, bool, bool]:
        async with cache_lock("job", timeout=30) as held:
            other = cache_lock("job", timeout=30, blocking=False)
            taken_meanwhile = await other.aacquire()
            owned = await held.aowned()
            locked = await held.alocked()
        taken_after = await other.aacquire()
        await other.arelease()
        return taken_meanwhile, owned, locked, taken_after

    assert run(body) == (False, True, True, True)
    assert cache_lock("job").locked() is False


@pytest.mark.backends(exclude=("locmem",))
def test_async_lock_times_out_while_another_process_holds_it(
    backend: BackendConfig, child: BoundWorker
) -> None:
    token = child.run("cache_store.lock('shared', timeout=60).acquire() and 'held'")
    assert token == "held"

    async def body() -> bool:
        return await cache_lock("shared", blocking_timeout=0.05).aacquire()

    assert run(body) is False


# -- async memoization -------------------------------------------------------------------------


def test_async_memoized_function_invalidates_and_refreshes(backend: BackendConfig) -> None:
    runs: list[int] = []

    @cache_function(60)
    async def price(x: int) -> int:
        runs.append(x)
        return x + len(runs)

    async def body() -> list[int]:
        first = await price(1)
        hit = await price(1)
        await price.ainvalidate(1)
        again = await price(1)
        refreshed = await price.refresh(1)
        return [first, hit, again, refreshed, await price(1)]

    assert run(body) == [2, 2, 3, 4, 4]
    assert runs == [1, 1, 1]


def test_an_invalidation_during_an_async_computation_wins(backend: BackendConfig) -> None:
    runs: list[int] = []

    async def body() -> tuple[int, int]:
        computing = asyncio.Event()
        release = asyncio.Event()

        @cache_function(60)
        async def report(x: int) -> int:
            runs.append(x)
            if len(runs) == 1:
                computing.set()
                await asyncio.wait_for(release.wait(), DEADLINE)
            return len(runs)

        first = asyncio.ensure_future(report(1))
        await asyncio.wait_for(computing.wait(), DEADLINE)
        await report.ainvalidate(1)  # after the basis was read, before the result is stored
        release.set()
        old = await first
        return old, await report(1)  # the old result was never stored as current

    assert run(body) == (1, 2)
    assert runs == [1, 1]


def test_async_calls_do_nothing_while_keyedcache_is_disabled(backend: BackendConfig) -> None:
    runs: list[int] = []

    @cache_function(60)
    async def compute(x: int) -> int:
        runs.append(x)
        return x

    async def body() -> tuple[Any, ...]:
        await acache_set("off", value=1)
        return (
            await acache_get("off", default="missed"),
            await acache_add("off", value=2),
            await compute(3),
            await compute(3),
        )

    keyedcache.cache_enable(False)
    assert run(body) == ("missed", False, 3, 3)
    keyedcache.cache_enable(True)
    assert runs == [3, 3]
    assert cache_get("off", default="absent") == "absent"


@pytest.mark.backends(*NATIVE)
def test_background_refresh_runs_as_a_task_and_serves_the_stale_value(
    backend: BackendConfig,
) -> None:
    runs: list[int] = []

    @cache_function(60, stale=300, background=True)
    async def versioned() -> int:
        runs.append(len(runs) + 1)
        return len(runs)

    async def body() -> tuple[int, int, bool, int]:
        first = await versioned()
        key = versioned.key()
        entry = default_cache().get_entry(key)
        assert entry is not None
        default_cache().set_entry(key, entry._replace(fresh_until=time.time() - 1), 300)
        served = await versioned()  # stale: served at once, refreshed by a task
        flight = getattr(versioned, "memoized").async_flight  # noqa: B009 - not in the Protocol
        tasks = set(flight._tasks)
        await asyncio.wait_for(asyncio.gather(*tasks), DEADLINE)
        return first, served, bool(tasks), await versioned()

    assert run(body) == (1, 1, True, 2)


# -- single flight: sync and async callers, several processes ------------------------------------

#: The most a computing caller holds its lock waiting for the others to queue up.
HOLD_LIMIT = 10.0


@cache_function(300, wait=60)
async def shared_cold(run_dir: str, callers: int) -> tuple[str, int]:
    """Runs once per run dir: holds until every caller has arrived."""
    append_line(os.path.join(run_dir, "runs"), str(os.getpid()))
    deadline = time.monotonic() + HOLD_LIMIT
    while len(read_lines(os.path.join(run_dir, "arrived"))) < callers:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.002)
    return ("computed", os.getpid())


def call_shared_cold_async(run_dir: str, callers: int, tasks: int, gate: str) -> list[Any]:
    """In a child: wait at the gate, then await `shared_cold` from `tasks` tasks."""
    gate_wait(gate)

    async def main() -> list[Any]:
        async def one() -> Any:
            append_line(os.path.join(run_dir, "arrived"))
            return await shared_cold(run_dir, callers)

        return await asyncio.gather(*[one() for _ in range(tasks)])

    return asyncio.run(main())


def call_shared_cold_sync(run_dir: str, callers: int, threads: int, gate: str) -> list[Any]:
    """Call `shared_cold` from `threads` sync threads (async_to_sync each), after the gate."""
    results: list[Any] = []

    def one() -> None:
        gate_wait(gate)
        append_line(os.path.join(run_dir, "arrived"))
        try:
            results.append(async_to_sync(shared_cold)(run_dir, callers))
        finally:
            connections.close_all()  # this thread's database connections

    started = [threading.Thread(target=one) for _ in range(threads)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join(DEADLINE)
    return results


# Backends whose `add` is atomic across processes (as in test_stampede.py).
@pytest.mark.backends(*CROSS_PROCESS)
def test_sync_and_async_callers_in_three_processes_run_the_body_once(
    backend: BackendConfig, children: Callable[[int], list[BoundWorker]], tmp_path: Path
) -> None:
    run_dir = str(tmp_path)
    workers = children(3)
    tasks, threads = 10, 4
    callers = 2 * tasks + 2 * threads
    with Gate() as gate:
        pending = [
            workers[0].submit(call_shared_cold_async, run_dir, callers, tasks, gate.address),
            workers[1].submit(call_shared_cold_async, run_dir, callers, tasks, gate.address),
            workers[2].submit(call_shared_cold_sync, run_dir, callers, threads, gate.address),
        ]
        local: list[Any] = []
        thread = threading.Thread(
            target=lambda: local.extend(
                call_shared_cold_sync(run_dir, callers, threads, gate.address)
            )
        )
        thread.start()
        gate.wait_arrivals(2 + 2 * threads)
        gate.open()
        results = [r for p in pending for r in p.result(DEADLINE)]
        thread.join(DEADLINE)
    results += local
    assert len(results) == callers
    assert set(results) == {results[0]}  # every caller got the one computed value
    runs = read_lines(os.path.join(run_dir, "runs"))
    assert len(runs) == 1, f"the body ran {len(runs)} times"
    assert results[0] == ("computed", int(runs[0]))


# -- the request scope under ASGI -------------------------------------------------------------


async def scoped_view(request: HttpRequest) -> JsonResponse:
    """Reads a key twice around a write of another process, and writes one key."""
    first = await acache_get("shared", default=None)
    # Another writer, outside this request's scope (a fresh context, another thread).
    await asyncio.to_thread(contextvars.Context().run, _write_shared)
    second = await acache_get("shared", default=None)
    await acache_set("mine", value=request.GET["n"])
    scope = current_scope()
    return JsonResponse(
        {
            "first": first,
            "second": second,
            "mine": await acache_get("mine"),
            "scoped": scope is not None,
        }
    )


def _write_shared() -> None:
    cache_set("shared", value="changed behind the scope")
    connections.close_all()


urlpatterns = [path("scoped/", scoped_view)]


@pytest.mark.backends(*NATIVE, "db-sqlite", "memcached")
@override_settings(
    ROOT_URLCONF=__name__,
    MIDDLEWARE=["keyedcache.middleware.RequestCacheMiddleware"],
)
def test_request_scope_under_asgi_answers_repeated_async_reads(backend: BackendConfig) -> None:
    cache_set("shared", value="original")

    async def one() -> dict[str, Any]:
        return (await AsyncClient().get("/scoped/?n=0")).json()  # type: ignore[no-any-return]

    async def several() -> list[dict[str, Any]]:
        client = AsyncClient()
        responses = await asyncio.gather(*[client.get(f"/scoped/?n={n}") for n in range(1, 5)])
        return [r.json() for r in responses]

    alone = run(one)
    # The key changed in the backend between the two reads; the scope kept its copy.
    assert alone == {"first": "original", "second": "original", "mine": "0", "scoped": True}
    assert cache_get("shared") == "changed behind the scope"
    for n, data in enumerate(run(several), start=1):
        assert data["second"] == data["first"] == "changed behind the scope"
        assert data["mine"] == str(n)  # concurrent requests: each sees its own write
        assert data["scoped"] is True


# -- keyval and the model finders ----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("url", ["db://", "cache://", "locmem://"])
def test_keyval_async_twins(backend: BackendConfig, url: str) -> None:
    async def body() -> list[Any]:
        store = KeyVal("async-things")
        seen: list[Any] = [await store.aset("a", {"x": 1}), await store.aset("a", {"x": 2})]
        await store.aset("b", [1, 2])
        seen += [await store.aget("a"), await store.aget_default("zz", "dflt")]
        seen += [await store.aexists("b"), await store.akeys(), await store.alen()]
        seen += [await store.aitems(), await store.apop("b"), await store.adelete("a")]
        with pytest.raises(KeyError):
            await store.aget("a")
        seen.append(await store.aflush())
        return seen

    with override_settings(KEYEDCACHE_KEYVAL_BACKEND=url):
        seen = run(body)
        assert KeyVal("async-things").keys() == []
        KeyVal.flush_all()
    assert seen == [
        True,
        False,
        {"x": 2},
        "dflt",
        True,
        ["a", "b"],
        2,
        [("a", {"x": 2}), ("b", [1, 2])],
        [1, 2],
        True,
        0,
    ]


@pytest.mark.django_db(transaction=True)
def test_afind_by_id_key_and_slug_read_through_the_cache(backend: BackendConfig) -> None:
    widget = Widget.objects.create(name="first", slug="s-1", key="k-1")

    async def finds() -> list[Any]:
        return [
            await afind_by_id(Widget, "Widget", widget.pk),
            await afind_by_key(Widget, "Widget", "k-1"),
            await afind_by_slug(Widget, "Widget", "s-1"),
        ]

    assert [(w.pk, w.name) for w in run(finds)] == [(widget.pk, "first")] * 3
    with CaptureQueriesContext(connections["default"]) as queries:
        again = run(finds)
    assert [w.pk for w in again] == [widget.pk] * 3
    assert [q["sql"] for q in queries if "tests_widget" in q["sql"]] == []  # from the cache
    widget.name = "renamed"
    widget.save()
    assert [w.name for w in run(finds)] == ["renamed"] * 3  # saves are seen

    async def missing() -> Any:
        with pytest.raises(Widget.DoesNotExist):
            await afind_by_slug(Widget, "Widget", "no-such-slug", raises=True)
        return await afind_by_id(Widget, "Widget", 999_999)

    assert run(missing) is None


# -- the warning for sync calls on an event loop --------------------------------------------------


@pytest.fixture
def caught() -> Iterator[list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as found:
        warnings.simplefilter("always")
        yield found


def _sync_calls_in_a_loop() -> None:
    async def body() -> None:
        for _ in range(3):
            cache_get("x", default=None)  # one call site, three calls
        cache_set("x", value=1)

    asyncio.run(body())


def test_sync_call_on_an_event_loop_warns_once_per_call_site_under_debug(
    caught: list[warnings.WarningMessage],
) -> None:
    with override_settings(DEBUG=True):
        _sync_calls_in_a_loop()
        _sync_calls_in_a_loop()  # the same sites again: no new warning
    found = [w for w in caught if issubclass(w.category, SyncCallInEventLoopWarning)]
    assert [str(w.message).split("(")[0] for w in found] == [
        "keyedcache.cache_get",
        "keyedcache.cache_set",
    ]
    assert all(w.filename == __file__ for w in found)
    assert "acache_get" in str(found[0].message)


def test_sync_call_warning_is_off_in_production_and_follows_its_setting(
    caught: list[warnings.WarningMessage],
) -> None:
    async def body() -> None:
        cache_get("y", default=None)

    asyncio.run(body())  # DEBUG False: silent
    assert not [w for w in caught if issubclass(w.category, SyncCallInEventLoopWarning)]
    with override_settings(KEYEDCACHE_ASYNC_WARNINGS=True):
        asyncio.run(body())
    found = [w for w in caught if issubclass(w.category, SyncCallInEventLoopWarning)]
    assert len(found) == 1


def test_sync_calls_outside_an_event_loop_never_warn(caught: list[warnings.WarningMessage]) -> None:
    with override_settings(DEBUG=True), mock.patch("keyedcache.asyncwarn.warnings.warn") as warn:
        cache_get("z", default=None)
        async_to_sync(keyedcache.acache_get)("z", default=None)
    warn.assert_not_called()
