"""The first-level request cache: scopes, isolation, middleware, start_listening, stats, memory."""

from __future__ import annotations

import asyncio
import collections
import gc
import threading
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any
from unittest import mock

import pytest
from asgiref.sync import iscoroutinefunction, sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpResponse
from django.test import AsyncClient, Client, RequestFactory, override_settings

import keyedcache
import keyedcache.cache
import keyedcache.counters
import keyedcache.local
import keyedcache.memoize
import keyedcache.registry
import keyedcache.reporting
from keyedcache import (
    KeyedCache,
    NotCachedError,
    cache_delete,
    cache_function,
    cache_get,
    cache_set,
    default_cache,
    is_cached,
)
from keyedcache.counters import counters
from keyedcache.entry import NO_VALUE
from keyedcache.local import DEFAULT_SIZE, Scope, current_scope, request_cache
from keyedcache.middleware import RequestCacheMiddleware
from keyedcache.threaded import start_listening, stop_listening
from tests import urls_local

#: Tests whose outcome does not depend on the backend.
LOCMEM = pytest.mark.backends("locmem")
#: Backend-call counts and middleware: also proved against a real Redis server.
REAL = pytest.mark.backends("locmem", "redis")

MIDDLEWARE = "keyedcache.middleware.RequestCacheMiddleware"
DEADLINE = 30.0  # guard on every wait: a hang fails the test instead of blocking it


@pytest.fixture(autouse=True)
def _clean(backend: Any) -> Iterator[None]:
    """Every test starts outside any scope with nothing cached, and leaves no scope behind."""
    assert current_scope() is None
    keyedcache.cache_delete()
    yield
    assert current_scope() is None


class Reads:
    """The logical keys the backend adapter was asked for (a mock wrapping `adapter.get`)."""

    def __init__(self, spy: mock.MagicMock) -> None:
        self.spy = spy

    def counter(self) -> Counter[str]:
        return Counter(call.args[0] for call in list(self.spy.call_args_list))

    def of(self, key: str) -> int:
        return self.counter()[key]

    @property
    def total(self) -> int:
        return len(self.spy.call_args_list)


@contextmanager
def backend_reads() -> Iterator[Reads]:
    """Count the reads that reach the backend, by key."""
    store = default_cache()
    adapter = store.adapter
    # Async reads on native backends go to the async adapter: count those too.
    aadapter = store.aadapter
    real_get, real_aget = adapter.get, aadapter.get
    seen = mock.MagicMock()

    def get(key: str) -> Any:
        seen(key)
        return real_get(key)

    async def aget(key: str) -> Any:
        seen(key)
        return await real_aget(key)

    with (
        mock.patch.object(adapter, "get", get),
        mock.patch.object(aadapter, "get", aget),
        # The store binds its guarded read once: route it through the spy too.
        mock.patch.object(store, "_fetch", store.guard.wrap("get", get, NO_VALUE)),
    ):
        yield Reads(seen)


@pytest.fixture
def scope_only(backend: Any) -> Iterator[None]:
    """Writes of keys starting with "scopeonly" never reach the backend: only a scope has them."""
    adapter = default_cache().adapter
    real_set = adapter.set

    def set_unless_scope_only(key: str, packed: Any, timeout: Any) -> None:
        if not key.startswith("scopeonly"):
            real_set(key, packed, timeout)

    with mock.patch.object(adapter, "set", side_effect=set_unless_scope_only):
        yield


@pytest.fixture
def local_urls() -> Iterator[None]:
    """The views of tests/urls_local.py, behind RequestCacheMiddleware only."""
    with override_settings(ROOT_URLCONF="tests.urls_local", MIDDLEWARE=[MIDDLEWARE]):
        yield
    urls_local.ASYNC_GATE = None
    urls_local.SYNC_GATE = None


def module_state() -> dict[str, int]:
    """Sizes of every module-level container of the modules the scope touches."""
    state: dict[str, int] = {}
    for module in (
        keyedcache.local,
        keyedcache.cache,
        keyedcache.registry,
        keyedcache.memoize,
        keyedcache.counters,
        keyedcache.reporting,
    ):
        for name, obj in vars(module).items():
            if not name.startswith("__") and isinstance(obj, (dict, list, set, collections.deque)):
                state[f"{module.__name__}.{name}"] = len(obj)
    state["counters._live"] = len(counters._live)
    return state


def table_of(scope: Scope) -> dict[str, Any]:
    """The scope's key -> value table of the default KeyedCache."""
    return scope.tables.get(default_cache().scope_id, {})


# -- reads through a scope -----------------------------------------------------------


@REAL
def test_first_read_goes_to_the_backend_later_reads_do_not(backend):
    cache_set("product", 1, value={"name": "widget"})
    with backend_reads() as reads, request_cache():
        for _ in range(5):
            assert cache_get("product", 1) == {"name": "widget"}
        assert default_cache().get("product::1") == {"name": "widget"}
        assert is_cached("product", 1)
    assert reads.counter() == Counter({"product::1": 1})


@REAL
def test_a_miss_costs_one_backend_call_per_scope(backend):
    with backend_reads() as reads:
        with request_cache():
            assert cache_get("nothing", default=None) is None
            assert cache_get("nothing", default="d") == "d"
            with pytest.raises(NotCachedError) as raised:
                cache_get("nothing")
            assert raised.value.key == "nothing"
            assert not is_cached("nothing")
        assert reads.of("nothing") == 1
        with request_cache():
            assert cache_get("nothing", default=None) is None
            assert cache_get("nothing", default=None) is None
        assert reads.of("nothing") == 2


@REAL
def test_read_your_writes_after_set(backend):
    cache_set("product", 1, value="old")
    with backend_reads() as reads, request_cache():
        assert cache_get("missing", default=None) is None  # the miss is remembered...
        cache_set("missing", value="now here")
        assert cache_get("missing") == "now here"  # ...and replaced by the write
        assert cache_get("product", 1) == "old"
        cache_set("product", 1, value="new")
        assert cache_get("product", 1) == "new"
        cache_set("fresh", value=[1, 2])
        assert cache_get("fresh") == [1, 2]
        cache_set("gone", value="x", length=0)  # expires at once: a miss, in scope too
        assert cache_get("gone", default=None) is None
    assert reads.counter() == Counter({"missing": 1, "product::1": 1})
    # and the writes did reach the backend
    assert cache_get("missing") == "now here"
    assert cache_get("product", 1) == "new"


@REAL
def test_read_your_writes_after_delete(backend):
    cache_set("product", 1, value="widget")
    with backend_reads() as reads, request_cache():
        assert cache_get("product", 1) == "widget"
        assert cache_delete("product", 1) == ["product::1"]
        assert cache_get("product", 1, default=None) is None
        assert not is_cached("product", 1)
        with pytest.raises(NotCachedError):
            cache_get("product", 1)
    assert reads.of("product::1") == 1
    assert cache_get("product", 1, default=None) is None


@REAL
def test_children_delete_evicts_the_whole_prefix_not_siblings(backend):
    keys = ["a", "a::b", "a::b::c", "a::b::c::d", "a::bc"]
    for key in keys:
        cache_set(key, value=f"v-{key}")
    with backend_reads() as reads, request_cache() as scope:
        for key in keys:
            assert cache_get(key) == f"v-{key}"
        cache_set("a::b::set-in-scope", value="x")
        assert set(table_of(scope)) == {*keys, "a::b::set-in-scope"}

        cache_delete("a", "b", children=True)

        assert not [k for k in table_of(scope) if k.startswith("a::b::")]
        for key in ("a::b", "a::b::c", "a::b::c::d", "a::b::set-in-scope"):
            assert cache_get(key, default=None) is None, key
        # siblings sharing the text prefix, and the parent, are still answered by the scope
        assert cache_get("a::bc") == "v-a::bc"
        assert cache_get("a") == "v-a"
        assert reads.of("a::bc") == 1
        assert reads.of("a") == 1
    assert cache_get("a::bc") == "v-a::bc"
    assert cache_get("a::b::c", default=None) is None


@REAL
def test_delete_all_clears_the_scope(backend):
    cache_set("x", value=1)
    cache_set("y", value=2)
    with backend_reads() as reads, request_cache() as scope:
        assert (cache_get("x"), cache_get("y")) == (1, 2)
        cache_delete()
        assert table_of(scope) == {}
        assert cache_get("x", default=None) is None
        assert cache_get("y", default=None) is None
        cache_set("z", value=3)
        assert cache_get("z") == 3
    assert reads.counter() == Counter({"x": 2, "y": 2})


@LOCMEM
def test_each_keyed_cache_has_its_own_table_in_a_scope(backend):
    other = KeyedCache("default", namespace="other-namespace")
    with request_cache():
        cache_set("k", value="default namespace")
        assert other.get("k", None) is None
        other.set("k", "other namespace")
        assert cache_get("k") == "default namespace"
        assert other.get("k") == "other namespace"
        other.delete_all()
        assert cache_get("k") == "default namespace"
        assert other.get("k", None) is None


# -- the bound, and the end of a scope --------------------------------------------------


@LOCMEM
def test_the_scope_is_bounded_and_drops_the_oldest(backend):
    for i in range(5):
        cache_set("k", i, value=i)
    with request_cache() as scope:
        assert scope.limit == DEFAULT_SIZE >= 1000
    with (
        override_settings(KEYEDCACHE_REQUEST_CACHE_SIZE=3),
        backend_reads() as reads,
        request_cache() as scope,
    ):
        for i in range(5):
            assert cache_get("k", i) == i
        assert list(table_of(scope)) == ["k::2", "k::3", "k::4"]
        assert cache_get("k", 4) == 4
        assert reads.of("k::4") == 1  # still remembered
        assert cache_get("k", 0) == 0
        assert reads.of("k::0") == 2  # was dropped: read again
        assert len(table_of(scope)) == 3
        for i in range(10):  # writes and deletes respect the bound too
            cache_set("w", i, value=i)
            cache_delete("d", i)
            cache_delete("tree", i, children=True)
        assert len(table_of(scope)) == 3


@LOCMEM
def test_a_scope_of_size_zero_remembers_nothing(backend):
    cache_set("k", value="v")
    with override_settings(KEYEDCACHE_REQUEST_CACHE_SIZE=0):
        with backend_reads() as reads, request_cache() as scope:
            assert [cache_get("k") for _ in range(3)] == ["v"] * 3
            cache_set("w", value=1)
            cache_delete("k", children=True)
            assert cache_get("w") == 1
            assert table_of(scope) == {}
        assert reads.counter() == Counter({"k": 3, "w": 1})


@LOCMEM
@pytest.mark.parametrize("size", [-1, "100", 2.5, True])
def test_a_bad_scope_size_is_refused(backend, size):
    with (
        override_settings(KEYEDCACHE_REQUEST_CACHE_SIZE=size),
        pytest.raises(ValueError, match="KEYEDCACHE_REQUEST_CACHE_SIZE"),
        request_cache(),
    ):
        pass  # pragma: no cover


@REAL
def test_nothing_outlives_the_scope(backend):
    cache_set("product", 1, value="widget")
    before = module_state()
    with backend_reads() as reads:
        with request_cache() as first:
            cache_get("product", 1)
            cache_get("product", 1)
            cache_set("mine", value="x")
        assert current_scope() is None
        assert reads.of("product::1") == 1
        assert cache_get("product", 1) == "widget"  # outside: the backend again
        assert reads.of("product::1") == 2
        with request_cache() as second:
            assert second is not first
            assert table_of(second) == {}
            cache_get("product", 1)
        assert reads.of("product::1") == 3
        with pytest.raises(RuntimeError), request_cache():
            raise RuntimeError("the scope ends with the exception")
        assert current_scope() is None
    assert module_state() == before


@LOCMEM
def test_nested_scopes_share_the_outer(backend):
    cache_set("product", 1, value="widget")

    @request_cache()
    def inner_function() -> Scope | None:
        cache_get("product", 1)
        return current_scope()

    with backend_reads() as reads, request_cache() as outer:
        cache_get("product", 1)
        with request_cache() as inner:
            assert inner is outer
            cache_get("product", 1)
            cache_set("inner", value="written inside")
        assert current_scope() is outer  # the inner exit did not end the outer scope
        assert cache_get("inner") == "written inside"
        assert inner_function() is outer
        assert current_scope() is outer
    assert current_scope() is None
    assert reads.counter() == Counter({"product::1": 1})


@LOCMEM
def test_every_reader_in_a_scope_gets_the_same_object(backend):
    cache_set("product", 1, value={"name": "widget", "tags": ["a"]})

    def reader() -> Any:
        return cache_get("product", 1)

    with request_cache():
        first, second = reader(), reader()
        assert first == {"name": "widget", "tags": ["a"]}
        assert first is second
        assert default_cache().get("product::1") is first
    # outside a scope each read unpickles its own copy
    assert reader() is not reader()


# -- ways to open a scope ---------------------------------------------------------------


@LOCMEM
def test_request_cache_as_a_decorator_on_a_sync_function(backend):
    cache_set("product", 1, value="widget")

    @request_cache()
    def handler(fail: bool = False) -> Scope | None:
        """Docstring kept."""
        for _ in range(3):
            cache_get("product", 1)
        if fail:
            raise LookupError("failed")
        return current_scope()

    assert handler.__name__ == "handler"
    assert handler.__doc__ == "Docstring kept."
    with backend_reads() as reads:
        first, second = handler(), handler()
        assert first is not None and second is not None and first is not second
        assert current_scope() is None
        assert reads.of("product::1") == 2  # once per call: each call has its own scope
        with pytest.raises(LookupError):
            handler(fail=True)
        assert current_scope() is None


@LOCMEM
def test_request_cache_as_a_decorator_on_an_async_function(backend):
    cache_set("product", 1, value="widget")

    @request_cache()
    async def handler() -> tuple[Scope | None, list[Any]]:
        values = [cache_get("product", 1) for _ in range(3)]
        await asyncio.sleep(0)  # a suspension point, so the scope spans an await
        values.append(cache_get("product", 1))
        return current_scope(), values

    assert iscoroutinefunction(handler)
    assert handler.__name__ == "handler"

    async def main() -> list[tuple[Scope | None, list[Any]]]:
        results = [await handler(), await handler()]
        assert current_scope() is None
        return results

    with backend_reads() as reads:
        (scope1, values1), (scope2, values2) = asyncio.run(main())
    assert scope1 is not None and scope2 is not None and scope1 is not scope2
    assert values1 == values2 == ["widget"] * 4
    assert reads.of("product::1") == 2


@LOCMEM
def test_request_cache_decorates_a_function_marked_as_coroutine(backend):
    # sync_to_async() returns an object marked with markcoroutinefunction: the
    # decorator must await it inside the scope, not return it unstarted.
    cache_set("product", 1, value="widget")

    def blocking() -> tuple[Scope | None, int]:
        cache_get("product", 1)
        cache_get("product", 1)
        return current_scope(), threading.get_ident()

    wrapped = request_cache()(sync_to_async(blocking))
    assert iscoroutinefunction(wrapped)
    with backend_reads() as reads:
        scope, _thread = asyncio.run(wrapped())
    assert scope is not None
    assert reads.of("product::1") == 1


@LOCMEM
def test_async_with_request_cache(backend):
    cache_set("product", 1, value="widget")

    async def main() -> Scope:
        async with request_cache() as scope:
            assert current_scope() is scope
            assert cache_get("product", 1) == "widget"
            await asyncio.sleep(0)  # a suspension point inside the scope
            assert cache_get("product", 1) == "widget"
            async with request_cache() as nested:
                assert nested is scope
            assert current_scope() is scope
        assert current_scope() is None
        return scope

    with backend_reads() as reads:
        scope = asyncio.run(main())
    assert scope is not None
    assert reads.of("product::1") == 1


# -- isolation ---------------------------------------------------------------------------


@LOCMEM
def test_a_thread_pool_each_thread_in_its_own_scope(backend, scope_only):
    workers = 16
    written = threading.Barrier(workers, timeout=DEADLINE)
    read = threading.Barrier(workers, timeout=DEADLINE)

    def work(i: int) -> tuple[Any, Any, Any, Scope]:
        with request_cache() as scope:
            first = cache_get("scopeonly", default=None)
            cache_set("scopeonly", value=i)
            cache_set("thread", i, value=f"mine-{i}")
            written.wait()  # every thread has written its values
            then = cache_get("scopeonly", default=None)
            own = cache_get("thread", i)
            read.wait()  # every scope is alive until every thread has read
            return first, then, own, scope

    leftover = threading.Barrier(workers, timeout=DEADLINE)

    def scope_left_in_thread(_: int) -> Scope | None:
        leftover.wait()  # one call on each pool thread
        return current_scope()

    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(work, range(workers)))
        after = list(pool.map(scope_left_in_thread, range(workers)))

    assert [(first, then, own) for first, then, own, _ in results] == [
        (None, i, f"mine-{i}") for i in range(workers)
    ]
    assert len({id(scope) for *_, scope in results}) == workers
    assert after == [None] * workers


@LOCMEM
def test_asyncio_tasks_each_in_its_own_scope(backend, scope_only):
    tasks = 50

    async def main() -> tuple[list[tuple[Any, Any, Any, Scope]], Scope | None]:
        written = asyncio.Barrier(tasks)

        async def task(i: int) -> tuple[Any, Any, Any, Scope]:
            async with request_cache() as scope:
                first = cache_get("scopeonly", default=None)
                cache_set("scopeonly", value=i)
                cache_set("task", i, value=f"mine-{i}")
                await asyncio.wait_for(written.wait(), DEADLINE)
                then = cache_get("scopeonly", default=None)
                own = cache_get("task", i)
                return first, then, own, scope

        results = await asyncio.gather(*(task(i) for i in range(tasks)))
        return list(results), current_scope()

    results, leftover = asyncio.run(main())
    assert [(first, then, own) for first, then, own, _ in results] == [
        (None, i, f"mine-{i}") for i in range(tasks)
    ]
    assert len({id(scope) for *_, scope in results}) == tasks
    assert leftover is None


@LOCMEM
def test_one_request_cache_instance_entered_by_concurrent_tasks_and_threads(backend):
    shared = request_cache()

    async def main() -> list[Scope]:
        a_entered, b_entered = asyncio.Event(), asyncio.Event()

        async def a() -> Scope:
            async with shared as scope:
                a_entered.set()
                await asyncio.wait_for(b_entered.wait(), DEADLINE)
            return scope  # a leaves first, while b is still inside

        async def b() -> Scope:
            await asyncio.wait_for(a_entered.wait(), DEADLINE)
            async with shared as scope:
                b_entered.set()
                await asyncio.sleep(0)  # a suspension point: a exits meanwhile
                assert current_scope() is scope
            return scope

        return list(await asyncio.gather(a(), b()))

    first, second = asyncio.run(main())
    assert first is not second

    inside = threading.Barrier(2, timeout=DEADLINE)
    first_out = threading.Event()

    def thread(i: int) -> bool:
        with shared as scope:
            inside.wait()
            if i == 1:
                assert first_out.wait(DEADLINE)
            same = current_scope() is scope
        if i == 0:
            first_out.set()
        return same

    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(thread, range(2))) == [True, True]


@LOCMEM
def test_tasks_started_inside_a_scope_share_it(backend):
    async def main() -> tuple[Scope, list[Scope | None]]:
        async with request_cache() as scope:
            cache_set("parent", value="p")

            async def child() -> Scope | None:
                async with request_cache() as nested:
                    assert cache_get("parent") == "p"
                    return nested

            return scope, list(await asyncio.gather(child(), child()))

    with backend_reads() as reads:
        scope, children = asyncio.run(main())
    assert children == [scope, scope]
    assert reads.of("parent") == 0


# -- RequestCacheMiddleware ---------------------------------------------------------------


def expected_view_data(n: int) -> dict[str, Any]:
    return {
        "n": str(n),
        "first": None,
        "then": str(n),
        "own": f"mine-{n}",
        "products": ["widget"] * 5,
        "missing": [None] * 3,
        "scope_on": True,
    }


def without_thread(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != "thread"}


@REAL
def test_wsgi_middleware_one_backend_call_per_key_per_request(backend, local_urls, scope_only):
    cache_set("product", 1, value="widget")
    client = Client()
    with backend_reads() as reads:
        for n in range(3):
            before = reads.counter()
            data = client.get("/sync/", {"n": n}).json()
            assert reads.counter() - before == Counter(
                {"product::1": 1, "nothing": 1, "scopeonly": 1}
            )
            assert without_thread(data) == expected_view_data(n)
            assert current_scope() is None
        # the same view without the middleware: every read reaches the backend
        with override_settings(MIDDLEWARE=[]):
            before = reads.counter()
            data = Client().get("/sync/", {"n": 9}).json()  # a new client loads MIDDLEWARE
            assert reads.counter() - before == Counter(
                {"product::1": 5, "nothing": 3, "scopeonly": 2, "req::9": 1}
            )
            assert data["scope_on"] is False


@LOCMEM
def test_wsgi_concurrent_requests_in_threads_are_isolated(backend, local_urls, scope_only):
    cache_set("product", 1, value="widget")
    requests = 16
    urls_local.SYNC_GATE = threading.Barrier(requests, timeout=DEADLINE)

    def fetch(n: int) -> dict[str, Any]:
        return Client().get("/sync/", {"n": n}).json()

    with ThreadPoolExecutor(requests) as pool:
        results = list(pool.map(fetch, range(requests)))
    assert [without_thread(data) for data in results] == [
        expected_view_data(n) for n in range(requests)
    ]
    assert len({data["thread"] for data in results}) == requests


@REAL
@pytest.mark.parametrize("views", ["async", "sync", "mixed"])
def test_asgi_concurrent_requests_are_isolated(backend, local_urls, scope_only, views):
    cache_set("product", 1, value="widget")
    requests = 50
    paths = {
        "async": ["/async/"] * requests,
        "sync": ["/sync/"] * requests,
        "mixed": ["/async/", "/sync/"] * (requests // 2),
    }[views]
    async_requests = paths.count("/async/")

    async def main() -> tuple[int, list[dict[str, Any]], Scope | None]:
        if async_requests:
            # every async view waits here until all of them have written
            urls_local.ASYNC_GATE = asyncio.Barrier(async_requests)
        client = AsyncClient()
        responses = await asyncio.gather(
            *(client.get(path, {"n": n}) for n, path in enumerate(paths))
        )
        return threading.get_ident(), [r.json() for r in responses], current_scope()

    with backend_reads() as reads:
        loop_thread, results, leftover = asyncio.run(main())
    assert leftover is None
    assert [without_thread(data) for data in results] == [
        expected_view_data(n) for n in range(requests)
    ]
    for path, data in zip(paths, results, strict=True):
        # async views run on the event loop; Django runs sync views in a thread
        assert (data["thread"] == loop_thread) is (path == "/async/")
    counted = reads.counter()
    assert counted["product::1"] == requests
    assert counted["nothing"] == requests
    assert counted["scopeonly"] == requests
    assert not [key for key in counted if key.startswith("req::")]


@LOCMEM
def test_middleware_is_sync_and_async_capable(backend):
    assert RequestCacheMiddleware.sync_capable is True
    assert RequestCacheMiddleware.async_capable is True

    async def async_get_response(request: Any) -> HttpResponse:
        return HttpResponse(repr(current_scope() is not None))

    def sync_get_response(request: Any) -> HttpResponse:
        return HttpResponse(repr(current_scope() is not None))

    async_mw = RequestCacheMiddleware(async_get_response)
    sync_mw = RequestCacheMiddleware(sync_get_response)
    assert iscoroutinefunction(async_mw)
    assert not iscoroutinefunction(sync_mw)
    request = RequestFactory().get("/")
    assert sync_mw(request).content == b"True"
    assert asyncio.run(async_mw(request)).content == b"True"
    assert current_scope() is None

    # Under an ASGI stack Django hands it an async get_response: no adapter, no thread hop.
    with override_settings(ROOT_URLCONF="tests.urls_local", MIDDLEWARE=[MIDDLEWARE]):
        chain = ASGIHandler()._middleware_chain
    outermost = chain.__wrapped__  # convert_exception_to_response keeps it here
    assert isinstance(outermost, RequestCacheMiddleware)
    assert outermost.is_async
    assert iscoroutinefunction(outermost)


@LOCMEM
def test_a_view_that_raises_leaves_no_scope(backend, local_urls):
    with pytest.raises(RuntimeError, match="boom"):
        Client().get("/boom/")
    assert current_scope() is None

    async def main() -> Scope | None:
        with pytest.raises(RuntimeError, match="boom"):
            await AsyncClient().get("/boom/")
        return current_scope()

    assert asyncio.run(main()) is None


# -- keyedcache.threaded.start_listening() -------------------------------------------------


@pytest.fixture
def listening() -> Iterator[None]:
    start_listening()
    try:
        yield
    finally:
        stop_listening()


@REAL
def test_start_listening_scopes_every_wsgi_request(backend, listening, scope_only):
    cache_set("product", 1, value="widget")
    client = Client()
    with (
        override_settings(ROOT_URLCONF="tests.urls_local", MIDDLEWARE=[]),
        backend_reads() as reads,
    ):
        for n in range(3):
            before = reads.counter()
            data = client.get("/sync/", {"n": n}).json()
            assert without_thread(data) == expected_view_data(n)  # no scope carried over
            assert reads.counter() - before == Counter(
                {"product::1": 1, "nothing": 1, "scopeonly": 1}
            )
            assert current_scope() is None  # closed at request_finished
        stop_listening()
        before = reads.counter()
        data = client.get("/sync/", {"n": 9}).json()
        assert data["scope_on"] is False
        assert reads.counter()["product::1"] - before["product::1"] == 5


# -- cache_function and the stats -------------------------------------------------------------

RUNS: Counter[str] = Counter()


@cache_function
def lookup(x: int) -> str:
    RUNS["lookup"] += 1
    return f"looked-up-{x}"


@cache_function
async def alookup(x: int) -> str:
    RUNS["alookup"] += 1
    return f"async-{x}"


@REAL
def test_cache_function_reads_through_the_scope(backend):
    RUNS.clear()
    assert lookup(1) == "looked-up-1"  # cached before the scope
    with backend_reads() as reads:
        with request_cache():
            assert lookup(1) == "looked-up-1"
            assert lookup(2) == "looked-up-2"  # computed and stored in the scope
            after_first_calls = reads.counter()
            assert [lookup(1) for _ in range(5)] == ["looked-up-1"] * 5
            assert [lookup(2) for _ in range(5)] == ["looked-up-2"] * 5
            assert reads.counter() == after_first_calls  # repeated calls: no backend read
        assert after_first_calls[lookup.key(1)] == 1
        assert RUNS["lookup"] == 2
        with request_cache():
            lookup.invalidate(1)
            assert lookup(1) == "looked-up-1"  # the invalidation is seen: computed again
            assert RUNS["lookup"] == 3
            before = reads.total
            assert lookup(1) == "looked-up-1"
            assert reads.total == before
        assert RUNS["lookup"] == 3


@REAL
def test_async_cache_function_reads_through_the_scope(backend):
    RUNS.clear()

    async def main() -> tuple[Counter[str], Counter[str]]:
        async with request_cache():
            assert await alookup(1) == "async-1"
            after_first_call = reads.counter()
            for _ in range(5):
                assert await alookup(1) == "async-1"
            return after_first_call, reads.counter()

    with backend_reads() as reads:
        after_first_call, after_repeats = asyncio.run(main())
    assert after_first_call[alookup.key(1)] >= 1
    assert after_repeats == after_first_call
    assert RUNS["alookup"] == 1


@LOCMEM
def test_local_hits_are_counted_apart_from_backend_hits(backend):
    cache_set("product", 1, value="widget")

    def delta(before: dict[str, int]) -> dict[str, int]:
        after = counters.snapshot()
        names = ("calls", "hits", "local_hits", "misses", "local_misses")
        return {name: after[name] - before[name] for name in names}

    before = counters.snapshot()
    with request_cache(), backend_reads() as reads:
        for _ in range(4):
            cache_get("product", 1)
        for _ in range(3):
            cache_get("nothing", default=None)
    # The scope answered the repeats, hits and misses alike: misses are backend misses.
    assert delta(before) == {"calls": 7, "hits": 1, "local_hits": 3, "misses": 1, "local_misses": 2}
    assert reads.of("nothing") == 1

    before = counters.snapshot()
    cache_get("product", 1)
    cache_get("product", 1)
    cache_get("nothing", default=None)
    assert delta(before) == {"calls": 3, "hits": 2, "local_hits": 0, "misses": 1, "local_misses": 0}


@LOCMEM
def test_async_reads_count_scope_misses_as_local_misses(backend):
    async def main() -> None:
        async with request_cache():
            for _ in range(3):
                await keyedcache.acache_get("nothing", default=None)

    before = counters.snapshot()
    asyncio.run(main())
    after = counters.snapshot()
    assert after["misses"] - before["misses"] == 1
    assert after["local_misses"] - before["local_misses"] == 2


# -- no growth -----------------------------------------------------------------------------


KEYEDCACHE_FILES = ("*/keyedcache/local.py", "*/keyedcache/cache.py", "*/keyedcache/api.py")
GROWTH_BOUND = 50_000  # bytes


def view_for_growth(request: Any) -> HttpResponse:
    n = request.n
    for _ in range(3):
        cache_get("product", 1)
    cache_get("nothing", default=None)
    cache_set("req", n % 50, value=n)
    cache_get("req", n % 50)
    cache_delete("tree", n % 7, children=True)
    return HttpResponse()


def requests_for_growth(count: int, start: int) -> Iterator[Any]:
    factory = RequestFactory()
    for n in range(start, start + count):
        request = factory.get("/")
        request.n = n
        yield request


def assert_no_growth(run: Any) -> None:
    """Call run(count, start) for a warm-up, then 10,000 requests; nothing may be left."""
    cache_set("product", 1, value={"name": "widget"})
    run(1000, 0)
    before_state = module_state()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        run(10_000, 1000)
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    filters = [tracemalloc.Filter(True, pattern) for pattern in KEYEDCACHE_FILES]
    growth = after.filter_traces(filters).compare_to(before.filter_traces(filters), "lineno")
    grown = sum(stat.size_diff for stat in growth)
    assert grown < GROWTH_BOUND, [str(stat) for stat in growth[:5]]
    assert module_state() == before_state
    assert current_scope() is None


@LOCMEM
def test_no_growth_after_10000_wsgi_requests(backend):
    middleware = RequestCacheMiddleware(view_for_growth)

    def run(count: int, start: int) -> None:
        for request in requests_for_growth(count, start):
            middleware(request)

    assert_no_growth(run)


@LOCMEM
def test_no_growth_after_10000_asgi_requests(backend):
    async def view(request: Any) -> HttpResponse:
        return view_for_growth(request)

    middleware = RequestCacheMiddleware(view)
    assert middleware.is_async

    def run(count: int, start: int) -> None:
        async def main() -> None:
            for request in requests_for_growth(count, start):
                await middleware(request)

        asyncio.run(main())

    assert_no_growth(run)
