"""keyedcache.contrib.keyval: the KeyVal API on every store URL, read-through, processes, checks."""

from __future__ import annotations

import datetime
import decimal
import pickle
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from django.core.checks import Tags, run_checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connections, transaction
from django.db.models import Count
from django.test.utils import CaptureQueriesContext, override_settings

import keyedcache
from keyedcache.contrib.keyval import (
    MAX_KEY_LENGTH,
    MAX_STORE_LENGTH,
    DisconnectedError,
    Field,
    KeyVal,
    Record,
)
from keyedcache.contrib.keyval.backends import (
    BackendURLError,
    CacheBackend,
    DatabaseBackend,
    LocmemBackend,
    build_backend,
    get_backend,
)
from keyedcache.contrib.keyval.checks import check_keyval_settings
from keyedcache.contrib.keyval.compat import KeyVal as CompatKeyVal
from keyedcache.contrib.keyval.models import KeyValEntry
from keyedcache.local import request_cache
from tests import keyval_children as kids
from tests import settings as test_settings
from tests.conftest import BackendConfig, base_child_env
from tests.procs import Gate, WorkerPool, pool_workers
from tests.servers import Server

HAVE_PG = test_settings.HAVE_POSTGRES
TABLE = KeyValEntry._meta.db_table

# Children and the cache's own processes read what the tests write: commit it.
pytestmark = pytest.mark.django_db(transaction=True)
#: Every test database; for tests that use "pg" as well.
ALL_DATABASES = ["default", "pg"] if HAVE_PG else ["default"]
PG_DB = [pytest.mark.django_db(transaction=True, databases=ALL_DATABASES)] if HAVE_PG else []

STORE_URLS = [
    pytest.param("db://", id="db"),
    pytest.param("db://?using=pg", id="db-pg", marks=PG_DB),
    pytest.param("cache://", id="cache"),
    pytest.param("locmem://", id="locmem"),
]
DB_URLS = [
    pytest.param("db://", id="sqlite"),
    pytest.param("db://?using=pg", id="postgres", marks=PG_DB),
]


def need_db(request: pytest.FixtureRequest, url: str) -> str:
    """Skip (or fail, when servers are required) a PostgreSQL URL without PostgreSQL."""
    if "using=pg" in url:
        request.getfixturevalue("postgres_available")
    return url


@pytest.fixture(params=STORE_URLS)
def url(request: pytest.FixtureRequest, backend: BackendConfig) -> Iterator[str]:
    """KEYEDCACHE_KEYVAL_BACKEND for the test (the cache is the `backend` fixture's)."""
    with override_settings(KEYEDCACHE_KEYVAL_BACKEND=need_db(request, request.param)):
        yield request.param
        if request.param == "locmem://":
            KeyVal.flush_all()


@pytest.fixture
def kv(url: str) -> KeyVal:
    return KeyVal("things")


class TableQueries:
    """Counts the queries on keyval's table made on one database inside the block."""

    def __init__(self, using: str = "default") -> None:
        self.context = CaptureQueriesContext(connections[using])

    def __enter__(self) -> TableQueries:
        self.context.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.context.__exit__(*exc)

    @property
    def count(self) -> int:
        return sum(TABLE in query["sql"] for query in self.context.captured_queries)


class Point:
    """A picklable user class."""

    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)


VALUES = [
    None,
    False,
    0,
    "",
    "text",
    b"\x00bytes",
    3.25,
    decimal.Decimal("1.10"),
    datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.timezone.utc),
    (1, "a"),
    {"nested": [1, {"deep": {2, 3}}]},
    Point(1, 2),
]


# -- the API on every store URL -------------------------------------------------


@pytest.mark.backends("locmem")  # the cache under cache:// and db://; every cache: below
class TestApi:
    def test_set_says_whether_the_key_was_new(self, kv: KeyVal) -> None:
        assert kv.set("a", 1) is True
        assert kv.set("a", 2) is False
        assert kv.get("a") == 2

    @pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
    def test_values_round_trip(self, kv: KeyVal, value: Any) -> None:
        kv.set("v", value)
        assert kv.get("v") == value
        assert type(kv.get("v")) is type(value)

    def test_get_of_a_missing_key_raises_keyerror(self, kv: KeyVal) -> None:
        with pytest.raises(KeyError) as caught:
            kv.get("nope")
        assert caught.value.args == ("nope",)

    def test_get_default(self, kv: KeyVal) -> None:
        assert kv.get_default("nope") is None
        assert kv.get_default("nope", 5) == 5
        kv.set("none", None)
        assert kv.get_default("none", 5) is None

    def test_each_read_returns_a_fresh_copy(self, kv: KeyVal) -> None:
        kv.set("list", [1])
        kv.get("list").append(2)
        with request_cache():
            kv.get("list").append(3)
            assert kv.get("list") == [1]
        assert kv.get("list") == [1]

    def test_pop(self, kv: KeyVal) -> None:
        kv.set("p", {"x": 1})
        assert kv.pop("p") == {"x": 1}
        assert not kv.exists("p")
        with pytest.raises(KeyError):
            kv.pop("p")

    def test_pop_default(self, kv: KeyVal) -> None:
        kv.set("p", 0)
        assert kv.pop_default("p", "gone") == 0
        assert kv.pop_default("p", "gone") == "gone"
        assert kv.pop_default("p") is None

    def test_exists_and_contains(self, kv: KeyVal) -> None:
        assert not kv.exists("e")
        assert "e" not in kv
        kv.set("e", None)
        assert kv.exists("e")
        assert "e" in kv

    def test_delete(self, kv: KeyVal) -> None:
        kv.set("d", 1)
        assert kv.delete("d") is True
        with pytest.raises(KeyError):
            kv.delete("d")
        assert kv.delete("d", ignore_keyerror=True) is False
        kv.set("d", 1)
        assert kv.delete("d", ignore_keyerror=True) is True

    def test_mapping_style(self, kv: KeyVal) -> None:
        kv["m"] = [1]
        assert kv["m"] == [1]
        del kv["m"]
        with pytest.raises(KeyError):
            kv["m"]
        with pytest.raises(KeyError):
            del kv["m"]

    def test_keys_items_len_iter(self, kv: KeyVal) -> None:
        assert kv.keys() == [] and kv.items() == [] and len(kv) == 0
        for key in ("b", "a", "c::d"):
            kv.set(key, key.upper())
        KeyVal("other").set("z", 0)
        assert kv.keys() == ["a", "b", "c::d"]
        assert kv.items() == [("a", "A"), ("b", "B"), ("c::d", "C::D")]
        assert len(kv) == 3
        assert list(kv) == ["a", "b", "c::d"]

    def test_flush_empties_one_store(self, kv: KeyVal) -> None:
        other = KeyVal("other")
        kv.set("a", 1)
        kv.set("b", 2)
        other.set("a", 3)
        assert kv.flush() == 2
        assert kv.keys() == [] and not kv.exists("a")
        assert other.get("a") == 3
        assert kv.flush() == 0

    def test_compat_keyval_flushes_and_returns_none_as_django_keyval_did(self, url: str) -> None:
        old = CompatKeyVal("things")
        old.set("a", 1)
        KeyVal("other").set("a", 2)
        assert old.flush() is None
        assert not KeyVal("things").exists("a") and KeyVal("other").get("a") == 2
        assert isinstance(CompatKeyVal.connect("things"), CompatKeyVal)

    def test_flush_all_empties_every_store(self, kv: KeyVal) -> None:
        kv.set("a", 1)
        KeyVal("other").set("a", 2)
        KeyVal.flush_all()
        assert not kv.exists("a")
        assert not KeyVal("other").exists("a")

    def test_connect_is_the_constructor(self, kv: KeyVal) -> None:
        kv.set("c", 1)
        handle = KeyVal.connect("things")
        assert isinstance(handle, KeyVal) and handle.name == "things"
        assert handle.get("c") == 1

    def test_stores_with_colons_do_not_collide(self, kv: KeyVal) -> None:
        KeyVal("a").set("b::c", "first")
        KeyVal("a::b").set("c", "second")
        KeyVal("a:").set(":b", "third")
        KeyVal("a%3A").set("b", "fourth")
        assert KeyVal("a").get("b::c") == "first"
        assert KeyVal("a::b").get("c") == "second"
        assert KeyVal("a:").get(":b") == "third"
        assert KeyVal("a%3A").get("b") == "fourth"
        KeyVal("a").flush()
        assert KeyVal("a::b").get("c") == "second"

    @pytest.mark.parametrize(
        "key", ["", " ", "a b", "ü€😀", "x" * MAX_KEY_LENGTH, "%", "::", "a\nb", "~!*?[]\\'\""]
    )
    def test_any_key_within_the_limit(self, kv: KeyVal, key: str) -> None:
        assert kv.set(key, key) is True
        assert kv.get(key) == key
        assert kv.keys() == [key]
        assert kv.pop(key) == key

    def test_longest_store_name(self, url: str) -> None:
        store = KeyVal("s" * MAX_STORE_LENGTH)
        store.set("k", 1)
        assert store.get("k") == 1

    def test_longest_names_in_four_byte_characters(self, url: str) -> None:
        # Within the index-entry limits of PostgreSQL (and MySQL) at 4 bytes a character.
        store = KeyVal("😀" * MAX_STORE_LENGTH)
        key = "😀" * MAX_KEY_LENGTH
        assert store.set(key, 1) is True
        assert store.set(key, 2) is False
        assert store.get(key) == 2 and store.keys() == [key]

    def test_over_long_names_raise_valueerror_naming_them(self, kv: KeyVal) -> None:
        with pytest.raises(ValueError, match=r"KeyVal store name 'nnn.*129 characters.*128"):
            KeyVal("n" * (MAX_STORE_LENGTH + 1))
        with pytest.raises(ValueError, match=r"Key of KeyVal store 'things' 'kkk.*513 .*512"):
            kv.set("k" * (MAX_KEY_LENGTH + 1), 1)
        with pytest.raises(ValueError, match="513 characters"):
            kv.get("k" * (MAX_KEY_LENGTH + 1))

    @pytest.mark.parametrize("bad", ["a\x00b", "\ud800"])
    def test_text_databases_cannot_store_is_refused(self, kv: KeyVal, bad: str) -> None:
        with pytest.raises(ValueError, match="KeyVal store"):
            kv.set(bad, 1)
        with pytest.raises(ValueError, match="store name"):
            KeyVal(bad)

    @pytest.mark.parametrize("bad", [1, None, b"k", ("k",)])
    def test_keys_and_names_must_be_strings(self, kv: KeyVal, bad: Any) -> None:
        with pytest.raises(TypeError, match="must be a string"):
            kv.set(bad, 1)
        with pytest.raises(TypeError, match="must be a string"):
            kv.get(bad)
        with pytest.raises(TypeError, match="must be a string"):
            KeyVal(bad)

    def test_unpicklable_value_raises_before_anything_is_written(self, kv: KeyVal) -> None:
        kv.set("kept", "old")
        for key in ("kept", "new"):
            with pytest.raises(
                TypeError, match=rf"store 'things'.*key '{key}'.*Nothing was written"
            ):
                kv.set(key, lambda: None)
        assert kv.get("kept") == "old"
        assert not kv.exists("new")
        assert kv.keys() == ["kept"]

    def test_disconnect(self, kv: KeyVal) -> None:
        kv.set("a", 1)
        kv.disconnect()
        assert "disconnected" in repr(kv)
        calls = [
            lambda: kv.set("a", 2),
            lambda: kv.get("a"),
            lambda: kv.get_default("a"),
            lambda: kv.exists("a"),
            lambda: kv.pop("a"),
            lambda: kv.pop_default("a"),
            lambda: kv.delete("a"),
            kv.flush,
            kv.keys,
            kv.items,
            lambda: len(kv),
            lambda: "a" in kv,
            lambda: kv["a"],
            lambda: list(kv),
        ]
        for call in calls:
            with pytest.raises(DisconnectedError, match=r"KeyVal 'things' was disconnected"):
                call()
        # django_keyval raised NameError there, and code written for it catches that.
        with pytest.raises(NameError):
            kv.get("a")
        assert issubclass(DisconnectedError, RuntimeError)
        assert KeyVal("things").get("a") == 1  # a new handle works
        KeyVal.flush_all()  # and flush_all still does
        assert not KeyVal("things").exists("a")


@pytest.mark.backends()
class TestCacheStoreOnEveryCache:
    """cache:// on each cache backend."""

    @pytest.fixture(autouse=True)
    def _store(self, backend: BackendConfig) -> Iterator[None]:
        with override_settings(KEYEDCACHE_KEYVAL_BACKEND="cache://"):
            yield

    def test_single_keys(self) -> None:
        kv = KeyVal("c")
        assert kv.set("a", [1]) is True
        assert kv.set("a", [2]) is False
        assert kv.get("a") == [2] and kv.exists("a") and kv.get_default("b") is None
        assert kv.pop("a") == [2] and kv.pop_default("a", 0) == 0
        with pytest.raises(KeyError):
            kv.delete("a")

    def test_whole_stores(self) -> None:
        kv, other = KeyVal("c"), KeyVal("c::d")
        for key in ("b", "a"):
            kv.set(key, key)
        other.set("a", 0)
        assert kv.keys() == ["a", "b"] and kv.items() == [("a", "a"), ("b", "b")] and len(kv) == 2
        assert kv.flush() == 2 and len(kv) == 0 and other.get("a") == 0
        KeyVal.flush_all()
        assert len(other) == 0


# -- URLs, settings and system checks ---------------------------------------------


class TestBackendUrls:
    def test_default_is_the_database(self) -> None:
        backend = build_backend("db://")
        assert isinstance(backend, DatabaseBackend) and backend.using == "default"
        assert backend.persistent

    def test_using_picks_the_database(self) -> None:
        backend = build_backend("db://?using=default")
        assert isinstance(backend, DatabaseBackend) and backend.using == "default"

    def test_cache_and_locmem(self) -> None:
        cache = build_backend("cache://default")
        assert isinstance(cache, CacheBackend) and cache.alias == "default"
        assert cache.cache is keyedcache.default_cache()
        assert isinstance(build_backend("cache://"), CacheBackend)
        assert isinstance(build_backend("locmem://"), LocmemBackend)
        assert not cache.persistent

    @pytest.mark.django_db(transaction=True, databases=ALL_DATABASES)
    @pytest.mark.parametrize("url", DB_URLS)
    def test_db_rows_land_in_the_chosen_database(
        self, request: pytest.FixtureRequest, url: str
    ) -> None:
        with override_settings(KEYEDCACHE_KEYVAL_BACKEND=need_db(request, url)):
            KeyVal("where").set("k", 1)
        using = "pg" if "pg" in url else "default"
        others = [alias for alias in connections if alias != using]
        assert KeyValEntry.objects.using(using).filter(store="where").count() == 1
        for other in others:
            assert KeyValEntry.objects.using(other).filter(store="where").count() == 0

    def test_a_cache_alias_other_than_keyedcaches(self, backend: BackendConfig) -> None:
        other = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "kv-other"}
        with override_settings(CACHES={**backend.caches, "other": other}):
            store = KeyVal("s", backend="cache://other")
            store.set("k", 1)
            assert store.get("k") == 1
            assert KeyVal("s", backend="cache://default").get_default("k") is None
            store.flush()

    def test_locmem_stores_live_in_one_process(
        self, backend: BackendConfig, child_pool: WorkerPool
    ) -> None:
        KeyVal("mine", backend="locmem://").set("k", 1)
        try:
            with pool_workers(child_pool, backend.env(), 1) as (worker,):
                assert worker.run(kids.read, "locmem://", "mine", "k") is None
        finally:
            KeyVal.flush_all(backend="locmem://")

    @pytest.mark.parametrize(
        ("setting", "check_id", "words"),
        [
            ("redis://localhost", "keyedcache.E101", "unknown scheme 'redis'"),
            ("db", "keyedcache.E101", "not a store URL"),
            (5, "keyedcache.E101", "not a store URL"),
            ("db://my_table", "keyedcache.E101", "table name ('my_table') cannot be chosen"),
            ("db:///path", "keyedcache.E101", "no path"),
            ("db://?table=x", "keyedcache.E101", "option(s) table"),
            ("db://?using=default&using=default", "keyedcache.E101", "option(s) using"),
            ("db://?using", "keyedcache.E101", "cannot read the options"),
            ("db://?using=nope", "keyedcache.E102", "'nope' is not an alias in settings.DATABASES"),
            ("cache://nope", "keyedcache.E103", "'nope' is not an alias in settings.CACHES"),
            ("cache://default?x=1", "keyedcache.E101", "option(s) x"),
            ("locmem://here", "keyedcache.E101", "takes no location"),
            ("db://#x", "keyedcache.E101", "no path or fragment"),
        ],
    )
    def test_bad_urls_are_system_check_errors(
        self, setting: Any, check_id: str, words: str
    ) -> None:
        with override_settings(KEYEDCACHE_KEYVAL_BACKEND=setting):
            messages = check_keyval_settings()
            assert [m.id for m in messages] == [check_id]
            assert "KEYEDCACHE_KEYVAL_BACKEND" in messages[0].msg
            assert words in messages[0].msg
            assert messages[0].id in [m.id for m in run_checks(tags=[Tags.caches])]
            with pytest.raises(ImproperlyConfigured, match="KEYEDCACHE_KEYVAL_BACKEND"):
                KeyVal("x").get_default("k")

    def test_a_table_name_gets_a_hint(self) -> None:
        with override_settings(KEYEDCACHE_KEYVAL_BACKEND="db://other_table"):
            (message,) = check_keyval_settings()
        assert message.hint is not None and "db://?using=" in message.hint

    def test_a_bad_backend_argument_fails_at_use(self) -> None:
        handle = KeyVal("x", backend="nope://")
        with pytest.raises(BackendURLError, match="unknown scheme 'nope'"):
            handle.get_default("k")

    @pytest.mark.parametrize("setting", ["db://", "db://?using=default", "cache://", "locmem://"])
    def test_good_urls_give_no_messages(self, setting: str) -> None:
        with override_settings(KEYEDCACHE_KEYVAL_BACKEND=setting):
            assert check_keyval_settings() == []

    @pytest.mark.parametrize("timeout", [0, -1, "60", True])
    def test_bad_timeout_is_a_check_error(self, timeout: Any) -> None:
        with override_settings(KEYEDCACHE_KEYVAL_TIMEOUT=timeout):
            assert [m.id for m in check_keyval_settings()] == ["keyedcache.E104"]

    @pytest.mark.parametrize("timeout", [None, 1, 0.5, 86400])
    def test_good_timeouts(self, timeout: Any) -> None:
        with override_settings(KEYEDCACHE_KEYVAL_TIMEOUT=timeout):
            assert check_keyval_settings() == []

    def test_backends_follow_setting_changes(self) -> None:
        assert isinstance(get_backend(), DatabaseBackend)
        with override_settings(KEYEDCACHE_KEYVAL_BACKEND="locmem://"):
            assert isinstance(get_backend(), LocmemBackend)
        assert isinstance(get_backend(), DatabaseBackend)


# -- reading through the cache (db://) ------------------------------------------


def cached_copy(store: str, key: str) -> Any:
    """The (token, pickled value) the cache holds for `key`, if its token is current."""
    backend = get_backend()
    assert isinstance(backend, DatabaseBackend)
    token_key, copy_key = backend.cache_keys(store, key)
    cache = keyedcache.default_cache()
    return cache.get(token_key, None), cache.get(copy_key, None)


@pytest.mark.backends()
class TestReadThrough:
    """db:// on SQLite, its reads cached by each cache backend."""

    def test_a_cached_read_does_not_query_the_database(self, backend: BackendConfig) -> None:
        kv = KeyVal("rt")
        kv.set("k", {"v": 1})
        assert kv.get("k") == {"v": 1}
        with TableQueries() as queries:
            for _ in range(3):
                assert kv.get("k") == {"v": 1}
                assert kv.exists("k") and "k" in kv
        assert queries.count == 0

    def test_misses_are_cached_too(self, backend: BackendConfig) -> None:
        kv = KeyVal("rt")
        assert kv.get_default("absent") is None
        with TableQueries() as queries:
            assert kv.get_default("absent", 1) == 1
            assert not kv.exists("absent")
        assert queries.count == 0

    def test_every_write_replaces_what_readers_see(self, backend: BackendConfig) -> None:
        kv = KeyVal("rt")
        steps: list[tuple[Any, Any]] = [
            (lambda: kv.set("k", 1), 1),
            (lambda: kv.set("k", 2), 2),
            (lambda: kv.delete("k"), None),
            (lambda: kv.set("k", 3), 3),
            (lambda: kv.pop("k"), None),
            (lambda: kv.set("k", 4), 4),
            (kv.flush, None),
            (lambda: kv.set("k", 5), 5),
            (KeyVal.flush_all, None),
            (lambda: kv.__setitem__("k", 6), 6),
            (lambda: kv.__delitem__("k"), None),
        ]
        for write, expected in steps:
            kv.get_default("k")  # the current value is cached before each write
            write()
            assert kv.get_default("k") == expected
            assert kv.get_default("k") == expected  # and again, from the cache

    def test_flush_leaves_other_stores_cached(self, backend: BackendConfig) -> None:
        KeyVal("a").set("k", 1)
        KeyVal("a::b").set("k", 2)
        KeyVal("a").get("k")
        KeyVal("a::b").get("k")
        KeyVal("a").flush()
        with TableQueries() as queries:
            assert KeyVal("a::b").get("k") == 2
        assert queries.count == 0
        assert KeyVal("a").get_default("k") is None

    def test_a_reader_that_fetched_before_a_write_cannot_cache_the_old_value(
        self, backend: BackendConfig
    ) -> None:
        kv = KeyVal("race")
        kv.set("k", "old")
        select = DatabaseBackend._select
        writes: list[bool] = []

        def select_then_someone_writes(self: DatabaseBackend, store: str, key: str) -> Any:
            data = select(self, store, key)
            if not writes:  # the write commits between the reader's query and its caching
                writes.append(KeyVal("race").set("k", "new"))
            return data

        with mock.patch.object(DatabaseBackend, "_select", select_then_someone_writes):
            assert kv.get("k") == "old"  # the read began before the write
        token, copy = cached_copy("race", "k")
        assert copy is not None and pickle.loads(copy[1]) == "old"  # it did cache "old"...
        assert copy[0] != token  # ...under the token the write has replaced
        assert kv.get("k") == "new"
        with TableQueries() as queries:
            assert kv.get("k") == "new"
        assert queries.count == 0

    @pytest.mark.backends("locmem", "redis")
    def test_timeout_setting_bounds_cached_copies(self, backend: BackendConfig) -> None:
        with override_settings(KEYEDCACHE_KEYVAL_TIMEOUT=123):
            KeyVal("ttl").set("k", 1)
            KeyVal("ttl").get("k")
            db = get_backend()
            assert isinstance(db, DatabaseBackend)
            for key in db.cache_keys("ttl", "k"):
                ttl = backend.stored_ttl(key)
                assert ttl is not None and 100 < ttl <= 123

    def test_with_keyedcache_switched_off_reads_go_to_the_database(
        self, backend: BackendConfig
    ) -> None:
        kv = KeyVal("off")
        kv.set("k", 1)
        kv.get("k")
        keyedcache.cache_enable(False)
        kv.set("k", 2)
        with TableQueries() as queries:
            assert kv.get("k") == 2
        assert queries.count == 1


@pytest.mark.backends("locmem")
class TestTransactions:
    def test_a_transaction_reads_its_own_writes_others_see_them_at_commit(
        self, backend: BackendConfig
    ) -> None:
        kv = KeyVal("tx")
        kv.set("k", 1)
        kv.get("k")
        with transaction.atomic():
            kv.set("k", 2)
            assert kv.get("k") == 2
            assert pickle.loads(cached_copy("tx", "k")[1][1]) == 1  # not invalidated yet
            kv.flush()
            assert kv.get_default("k") is None
            kv.set("k", 3)
        assert kv.get("k") == 3

    def test_a_rollback_leaves_the_cached_copy(self, backend: BackendConfig) -> None:
        kv = KeyVal("tx")
        kv.set("k", 1)
        kv.get("k")
        with pytest.raises(ZeroDivisionError), transaction.atomic():
            kv.set("k", 2)
            1 / 0  # noqa: B018
        with TableQueries() as queries:
            assert kv.get("k") == 1
        assert queries.count == 0

    def test_a_rolled_back_savepoint_keeps_later_invalidations(
        self, backend: BackendConfig
    ) -> None:
        kv = KeyVal("tx")
        kv.set("a", 1)
        kv.set("b", 1)
        kv.get("a")
        kv.get("b")
        with transaction.atomic():
            with pytest.raises(ZeroDivisionError), transaction.atomic():
                kv.set("a", 2)
                1 / 0  # noqa: B018
            kv.set("b", 2)
        assert (kv.get("a"), kv.get("b")) == (1, 2)

    def test_a_miss_inside_a_transaction_is_cached_after_commit(
        self, backend: BackendConfig
    ) -> None:
        kv = KeyVal("tx")
        kv.set("k", 1)
        keyedcache.cache_delete()  # a cold cache
        with transaction.atomic():
            assert kv.get("k") == 1
            assert cached_copy("tx", "k") == (None, None)  # not from inside the transaction
        with TableQueries() as queries:
            assert kv.get("k") == 1
        assert queries.count == 0

    @pytest.mark.django_db(transaction=False)
    def test_inside_a_test_transaction_that_never_commits(self, backend: BackendConfig) -> None:
        kv = KeyVal("testcase")
        assert kv.set("k", 1) is True
        assert kv.get("k") == 1
        kv.set("k", 2)
        assert kv.get("k") == 2
        kv.delete("k")
        assert kv.get_default("k") is None


@pytest.mark.backends("locmem", "redis")
def test_request_scope_answers_repeated_reads(backend: BackendConfig) -> None:
    kv = KeyVal("scope")
    kv.set("k", 1)
    with request_cache():
        assert kv.get("k") == 1
        adapter = keyedcache.default_cache().adapter
        with mock.patch.object(adapter, "get", side_effect=AssertionError("went to the cache")):
            with TableQueries() as queries:
                assert kv.get("k") == 1
            assert queries.count == 0
        kv.set("k", 2)  # a write of this scope is seen in it
        assert kv.get("k") == 2


# -- outages -------------------------------------------------------------------------

# Bound for the client to reconnect to a restarted server (a retry loop, not a wait).
RECONNECT_DEADLINE = 30.0


@pytest.mark.backends("redis", "memcached")
def test_cache_outage_sends_reads_to_the_database(
    backend: BackendConfig, restart_servers: list[Server]
) -> None:
    kv = KeyVal("outage")
    kv.set("k", 1)
    kv.get("k")
    for server in backend.servers:
        server.stop()
    with TableQueries() as queries:
        assert kv.get("k") == 1
    assert queries.count == 1  # from the database
    assert kv.set("k", 2) is False
    assert kv.get("k") == 2
    assert kv.set("new", 1) is True
    assert kv.pop("new") == 1
    assert kv.keys() == ["k"]
    for server in backend.servers:
        server.start()
    deadline = time.monotonic() + RECONNECT_DEADLINE
    while True:  # until the cache serves again: a read then costs no query
        assert kv.get("k") == 2
        with TableQueries() as queries:
            assert kv.get("k") == 2
        if queries.count == 0:
            break
        assert time.monotonic() < deadline, "the cache did not serve again"


# -- several processes ---------------------------------------------------------


def run_together(
    workers: list[Any], calls: list[tuple[Any, ...]], timeout: float = 120
) -> list[Any]:
    """Start calls[i] on workers[i], release them together at a gate, return their results."""
    with Gate() as gate:
        pending = [
            w.submit(func, gate.address, *args)
            for w, (func, *args) in zip(workers, calls, strict=True)
        ]
        gate.wait_arrivals(len(workers))
        gate.open()
        return [p.result(timeout) for p in pending]


@pytest.mark.parametrize("db_url", DB_URLS)
def test_concurrent_setters_lose_and_duplicate_nothing(
    request: pytest.FixtureRequest, child_pool: WorkerPool, db_url: str
) -> None:
    need_db(request, db_url)
    count = 100
    with pool_workers(child_pool, base_child_env(), 4) as workers:
        results = run_together(workers, [(kids.set_keys, db_url, count)] * 4)
    pids = {r["pid"] for r in results}
    assert len(pids) == 4
    # Exactly one child saw each shared key as new; every own key was new.
    for i in range(count):
        assert sum(r["same"][f"same-{i}"] for r in results) == 1, i
    assert all(all(r["own"]) for r in results)
    using = "pg" if "pg" in db_url else "default"
    rows = KeyValEntry.objects.using(using).filter(store=kids.STORE)
    assert rows.count() == count + 4 * count
    assert not rows.values("key").annotate(n=Count("id")).filter(n__gt=1).exists()
    with override_settings(KEYEDCACHE_KEYVAL_BACKEND=db_url):
        kv = KeyVal(kids.STORE)
        for pid in pids:
            assert [kv.get(f"own-{pid}-{i}") for i in range(count)] == [
                (pid, i) for i in range(count)
            ]
        for i in range(count):
            writer, number = kv.get(f"same-{i}")
            assert writer in pids and number == i


@pytest.mark.parametrize("db_url", DB_URLS)
def test_concurrent_pops_take_each_key_once(
    request: pytest.FixtureRequest, child_pool: WorkerPool, db_url: str
) -> None:
    need_db(request, db_url)
    count = 100
    with override_settings(KEYEDCACHE_KEYVAL_BACKEND=db_url):
        kv = KeyVal(kids.STORE)
        for i in range(count):
            kv.set(f"pop-{i}", i)
        with pool_workers(child_pool, base_child_env(), 4) as workers:
            results = run_together(workers, [(kids.pop_keys, db_url, count)] * 4)
        taken = Counter(i for got in results for i in got)
        assert sorted(taken) == list(range(count))
        assert set(taken.values()) == {1}
        assert len(kv) == 0


@pytest.mark.backends("redis", "memcached")
def test_reads_never_older_than_a_returned_write_across_processes(
    backend: BackendConfig, child_pool: WorkerPool
) -> None:
    count = 300
    calls = [(kids.write_counter, "db://", count)] + [(kids.read_counter, "db://", count)] * 3
    with pool_workers(child_pool, backend.env(), 4) as workers:
        results = run_together(workers, calls, timeout=240)
    assert results[0] == count
    for reader in results[1:]:
        assert reader["stale"] == []
        assert reader["reads"] >= 1
    assert KeyVal(kids.STORE).get("counter") == count


@pytest.mark.backends("redis", "memcached")
def test_read_your_writes_between_two_processes(backend: BackendConfig, child: Any) -> None:
    kv = KeyVal("ryw")
    for i in range(20):
        kv.set("k", ("parent", i))
        assert child.run(kids.read, "db://", "ryw", "k") == ("parent", i)
        assert kv.get("k") == ("parent", i)  # cached here now
        assert child.run(kids.write, "db://", "ryw", "k", ("child", i)) is False
        assert kv.get("k") == ("child", i)
        assert child.run(kids.read, "db://", "ryw", "k") == ("child", i)


@pytest.mark.backends("redis", "memcached")
def test_cache_store_writers_in_several_processes_lose_nothing(
    backend: BackendConfig, child_pool: WorkerPool
) -> None:
    count = 50
    with pool_workers(child_pool, backend.env(), 4) as workers:
        run_together(
            workers, [(kids.add_keys, "cache://", "shared", f"p{n}", count) for n in range(4)]
        )
    store = KeyVal("shared", backend="cache://")
    assert len(store) == 4 * count
    assert store.get("p3-49") == 49


# -- migrations -------------------------------------------------------------------


@pytest.mark.parametrize("using", ["default", pytest.param("pg", marks=PG_DB)])
def test_migrations_apply_from_zero(request: pytest.FixtureRequest, using: str) -> None:
    if using == "pg":
        request.getfixturevalue("postgres_available")
    connection = connections[using]
    call_command("migrate", "keyedcache_keyval", "zero", database=using, verbosity=0)
    assert TABLE not in connection.introspection.table_names()
    call_command("migrate", "keyedcache_keyval", database=using, verbosity=0)
    assert TABLE in connection.introspection.table_names()
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, TABLE)
    assert any(c["unique"] and c["columns"] == ["store", "key"] for c in constraints.values())
    with override_settings(KEYEDCACHE_KEYVAL_BACKEND=f"db://?using={using}"):
        assert KeyVal("migrated").set("k", 1) is True


@pytest.mark.django_db(transaction=True, databases=ALL_DATABASES)
def test_no_model_change_lacks_a_migration() -> None:
    call_command("makemigrations", "keyedcache_keyval", check=True, dry_run=True, verbosity=0)


# -- records ----------------------------------------------------------------------


class Profile(Record):
    user_id = Field(pk=True)
    theme = Field(default="light")
    tags = Field(default=list)
    prefs = Field(default={"size": 1})


class Team(Record, store="teams"):
    slug = Field(pk=True)
    members = Field(default=())


class AdminProfile(Profile):
    level = Field(default=1)


@pytest.mark.backends("locmem")
@pytest.mark.usefixtures("url")
class TestRecords:
    def test_get_of_an_unknown_pk_is_none(self) -> None:
        assert Profile.get(1) is None

    def test_save_get_delete(self) -> None:
        profile = Profile(user_id=7, theme="dark")
        assert profile.save() is True
        assert Profile.get(7) == profile
        assert Profile.get("7") == profile
        profile.theme = "blue"
        assert profile.save() is False
        found = Profile.get(7)
        assert found is not None and found.theme == "blue" and found.user_id == 7
        assert profile.delete() is True
        assert profile.delete() is False
        assert Profile.get(7) is None

    def test_store_is_named_after_the_class(self) -> None:
        assert Profile.store_name == "tests.test_keyval.Profile"
        assert Team.store_name == "teams"
        Profile(user_id=3).save()
        Team(slug="core").save()
        assert KeyVal("tests.test_keyval.Profile").keys() == ["3"]
        assert Profile.keyval().get("3") == Profile(user_id=3).to_dict()
        assert KeyVal("teams").keys() == ["core"]

    def test_defaults(self) -> None:
        one, two = Profile(user_id=1), Profile(user_id=2)
        one.tags.append("x")
        one.prefs["size"] = 2
        assert two.tags == [] and two.prefs == {"size": 1}
        assert one.theme == "light"

    def test_fields_added_or_removed_later(self) -> None:
        Profile.keyval().set("5", {"user_id": 5, "theme": "dark", "gone": True})
        found = Profile.get(5)
        assert found == Profile(user_id=5, theme="dark")
        assert not hasattr(found, "gone")

    def test_subclasses_inherit_fields(self) -> None:
        assert list(AdminProfile.fields) == ["user_id", "theme", "tags", "prefs", "level"]
        AdminProfile(user_id=1, level=3).save()
        found = AdminProfile.get(1)
        assert found is not None and found.level == 3
        assert Profile.get(1) is None  # a store of its own

    def test_errors(self) -> None:
        with pytest.raises(TypeError, match="no field"):
            Profile(user_id=1, colour="red")
        with pytest.raises(ValueError, match="primary key"):
            Profile().save()
        with pytest.raises(TypeError, match="exactly one Field"):

            class NoKey(Record):
                name = Field()

        with pytest.raises(TypeError, match="it has 2: a, b"):

            class TwoKeys(Record):
                a = Field(pk=True)
                b = Field(pk=True)

    def test_class_attributes_are_the_fields(self) -> None:
        assert isinstance(Profile.theme, Field)
        assert Profile.pk_name == "user_id"
        assert repr(Profile(user_id=1, theme="x")) == (
            "Profile(user_id=1, theme='x', tags=[], prefs={'size': 1})"
        )
        assert Profile(user_id=1).pk == 1
        assert Profile(user_id=1) != Team(slug=1)
