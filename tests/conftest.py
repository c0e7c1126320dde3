"""Shared fixtures: real Redis/memcached servers, the backend matrix, child processes."""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import os
import pickle
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.conf import settings
from django.core.cache import caches
from django.core.management import call_command
from django.test.utils import override_settings
from django.utils.timezone import now as django_now
from pytest_django.fixtures import validate_django_db

import keyedcache
from tests import settings as test_settings
from tests.procs import PROCESS_ENV_KEYS, BoundWorker, WorkerPool, pool_workers
from tests.servers import (
    MemcachedServer,
    RedisServer,
    Server,
    ServerError,
    find_binary,
    free_port,
    start_server,
)
from tests.topologies import RedisCluster

#: Every backend the behaviour suite runs on, in this order.
BACKENDS = (
    "locmem",
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
#: Backends on a Redis-protocol server (one redis-server, or a cluster of them).
REDIS_FAMILY = frozenset({"redis", "django-redis", "valkey", "valkey-cluster"})
#: Database backends and the database alias their cache table lives in.
DB_BACKENDS = {"db-sqlite": "default", "db-postgres": "pg"}
#: Backends that need a server process (or PostgreSQL).
SERVER_BACKENDS = frozenset({"db-postgres", "memcached", "memcached2", *REDIS_FAMILY})
#: The adapter keyedcache must pick for each backend (with Django's key function).
EXPECTED_ADAPTER = {
    "locmem": "locmem",
    "db-sqlite": "database",
    "db-postgres": "database",
    "file": "filebased",
    "memcached": "memcached",
    "memcached2": "memcached",
    "redis": "redis",
    "django-redis": "django-redis",
    "valkey": "django-valkey",
    "valkey-cluster": "valkey-cluster",
}
#: Backends whose adapter lists keys (exact delete results, native subtree deletes).
ENUMERATING = frozenset({"locmem", "db-sqlite", "db-postgres", *REDIS_FAMILY})

CACHE_TABLE = "keyedcache_test_cache"
TEST_TMP = Path(test_settings.TEST_TMP)
# The pytest process owns the scratch directory; a nested run in a child does not.
_OWNS_TMP = not os.environ.get("KEYEDCACHE_TEST_CHILD")
_counter = itertools.count(1)


def pytest_configure(config: pytest.Config) -> None:
    TEST_TMP.mkdir(parents=True, exist_ok=True)


def pytest_unconfigure(config: pytest.Config) -> None:
    # KEYEDCACHE_TEST_KEEP_TMP=1 keeps server and child logs for a post-mortem.
    if _OWNS_TMP and os.environ.get("KEYEDCACHE_TEST_KEEP_TMP") != "1":
        shutil.rmtree(TEST_TMP, ignore_errors=True)


def unavailable(reason: str) -> None:
    """Skip the test for a missing server, or fail it when KEYEDCACHE_REQUIRE_SERVERS=1."""
    if os.environ.get("KEYEDCACHE_REQUIRE_SERVERS") == "1":
        pytest.fail(f"{reason} (and KEYEDCACHE_REQUIRE_SERVERS=1)", pytrace=False)
    pytest.skip(reason)


# -- the backend matrix ------------------------------------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize `backend` over BACKENDS, or over `@pytest.mark.backends(...)`."""
    if "backend" not in metafunc.fixturenames:
        return
    names: tuple[str, ...] = BACKENDS
    marker = metafunc.definition.get_closest_marker("backends")
    if marker is not None:
        names = tuple(marker.args) or BACKENDS
        excluded = tuple(marker.kwargs.get("exclude", ()))
        unknown = [n for n in (*names, *excluded) if n not in BACKENDS]
        if unknown:
            raise pytest.UsageError(
                f"{metafunc.definition.nodeid}: unknown backend(s) {unknown} in "
                f"@pytest.mark.backends; known: {', '.join(BACKENDS)}"
            )
        names = tuple(n for n in names if n not in excluded)
    metafunc.parametrize("backend", names, indirect=True, ids=names)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark server backends `servers`; give database backends transactional db access."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        name = callspec.params.get("backend") if callspec is not None else None
        if name in SERVER_BACKENDS:
            item.add_marker(pytest.mark.servers)
        if name in DB_BACKENDS:
            item.add_marker(_db_marker(item, name), append=False)


def _db_marker(item: pytest.Item, name: str) -> pytest.MarkDecorator:
    # Child processes read the cache table, so its rows must be committed:
    # transactional access, on the database the cache table lives in (merged with
    # whatever django_db marker the test has).
    databases: set[str] | str = {"default"}
    if name == "db-postgres" and test_settings.HAVE_POSTGRES:
        databases = {"default", "pg"}
    kwargs: dict[str, Any] = {}
    existing = item.get_closest_marker("django_db")
    if existing is not None:
        _tx, reset_sequences, dbs, serialized_rollback, available_apps = validate_django_db(
            existing
        )
        kwargs = {
            "reset_sequences": reset_sequences,
            "serialized_rollback": serialized_rollback,
            "available_apps": available_apps,
        }
        if dbs == "__all__":
            databases = "__all__"
        elif dbs is not None:
            assert isinstance(databases, set)
            databases |= set(dbs)
    return pytest.mark.django_db(
        transaction=True,
        databases=databases if isinstance(databases, str) else sorted(databases),
        **kwargs,
    )


@dataclass
class BackendConfig:
    """The backend a test runs on: what the `backend` fixture yields."""

    name: str
    #: The CACHES setting in effect for the test (alias "default").
    caches: dict[str, dict[str, Any]]
    #: The unique KEY_PREFIX of this test.
    prefix: str
    #: Database alias of the cache table (db variants), else "default".
    cache_db: str = "default"
    #: The server processes behind this backend (memcached, redis), for outage tests.
    servers: list[Server] = field(default_factory=list)

    @property
    def adapter_name(self) -> str:
        """The adapter name keyedcache must pick for this backend."""
        return EXPECTED_ADAPTER[self.name]

    @property
    def enumerates(self) -> bool:
        """True when the adapter lists keys (exact lists of deleted keys)."""
        return self.name in ENUMERATING

    @property
    def is_db(self) -> bool:
        return self.name in DB_BACKENDS

    @property
    def is_redis(self) -> bool:
        """True on every Redis-protocol backend (Django's, django-redis, valkey, cluster)."""
        return self.name in REDIS_FAMILY

    def redis_client(self) -> Any:
        """The raw redis-py/valkey-py client of the primary (a cluster client on the cluster)."""
        return keyedcache.default_cache().adapter._client()  # type: ignore[attr-defined]

    @property
    def config(self) -> dict[str, Any]:
        """A copy of the "default" alias settings."""
        return copy.deepcopy(self.caches["default"])

    @property
    def cache(self) -> Any:
        """Django's cache object for the alias (plain Django API)."""
        return caches["default"]

    def variant(self, **changes: Any) -> dict[str, Any]:
        """A copy of the alias settings with `changes` (e.g. TIMEOUT=0, KEY_PREFIX=...)."""
        config = self.config
        for key, value in changes.items():
            if key == "OPTIONS":
                config["OPTIONS"] = {**config.get("OPTIONS", {}), **value}
            else:
                config[key] = value
        return config

    # -- looking at what the backend itself stored --------------------------------

    def storage_key(self, key: str) -> str:
        """The storage key keyedcache uses for logical `key` (before Django's make_key)."""
        return keyedcache.default_cache().adapter.storage_key(key)

    def made_key(self, key: str) -> str:
        """The key the backend itself stores logical `key` under (after make_key)."""
        return str(self.cache.make_key(self.storage_key(key)))

    def stored_ttl(self, key: str) -> float | None:
        """Seconds the backend keeps `key` (its own bookkeeping); None: never expires.

        Raises LookupError when the backend does not hold the key.
        """
        made = self.made_key(key)
        cache = self.cache
        if self.name == "locmem":
            with cache._lock:
                if made not in cache._cache:
                    raise LookupError(key)
                expires = cache._expire_info.get(made)
            return None if expires is None else expires - time.time()
        if self.name == "file":
            try:
                with open(cache._key_to_file(self.storage_key(key)), "rb") as handle:
                    expires = pickle.load(handle)
            except FileNotFoundError:
                raise LookupError(key) from None
            return None if expires is None else expires - time.time()
        if self.is_db:
            return self._db_ttl(key, made)
        if self.is_redis:
            millis = self.redis_client().pttl(made)
            if millis == -2:
                raise LookupError(key)
            return None if millis == -1 else millis / 1000
        return self._memcached_ttl(key, made)

    def _db_ttl(self, key: str, made: str) -> float | None:
        from django.db import connections, models, router

        cache = self.cache
        connection = connections[router.db_for_read(cache.cache_model_class)]
        quote = connection.ops.quote_name
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {quote('expires')} FROM {quote(cache._table)} "
                f"WHERE {quote('cache_key')} = %s",
                [made],
            )
            row = cursor.fetchone()
        if row is None:
            raise LookupError(key)
        expression = models.Expression(output_field=models.DateTimeField())
        expires = row[0]
        converters = connection.ops.get_db_converters(expression)
        for converter in converters + expression.get_db_converters(connection):
            expires = converter(expires, expression, connection)
        if expires.year == 9999:  # DatabaseCache stores datetime.max for "never"
            return None
        return float((expires - django_now()).total_seconds())

    def _memcached_ttl(self, key: str, made: str) -> float | None:
        # memcached's meta get with the `t` flag returns the remaining TTL (-1: never).
        for server in self.servers:
            with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
                sock.sendall(f"mg {made} t\r\n".encode())
                reply = b""
                while not reply.endswith(b"\r\n"):
                    chunk = sock.recv(256)
                    if not chunk:
                        break
                    reply += chunk
            words = reply.decode().split()
            if words and words[0] == "HD":
                ttl = int(next(w for w in words if w.startswith("t"))[1:])
                return None if ttl == -1 else float(ttl)
        raise LookupError(key)

    @contextlib.contextmanager
    def down(self) -> Iterator[None]:
        """Within this block the backend does not answer (settings point at nothing).

        A dead port for memcached and Redis, a missing table for the database, a
        file where the cache directory should be for the file-based cache; locmem
        cannot be unreachable, so its reads and writes are made to raise instead.
        """
        if self.name == "locmem":
            from django.core.cache.backends.locmem import LocMemCache

            def fail(*args: Any, **kwargs: Any) -> Any:
                raise ConnectionError("locmem made to fail by the test")

            with contextlib.ExitStack() as stack:
                for method in (
                    "get",
                    "get_many",
                    "set",
                    "add",
                    "delete",
                    "delete_many",
                    "has_key",
                    "touch",
                    "incr",
                    "clear",
                ):
                    stack.enter_context(mock.patch.object(LocMemCache, method, fail))
                stack.enter_context(mock.patch.object(LocMemCache, "_has_expired", fail))
                # keyedcache's adapter reads the LocMemCache dict itself and keeps its
                # generation tokens beside it: those calls fail too.
                from keyedcache.backends.locmem import LocMemAdapter

                for method in ("get", "raw_get_many", "raw_set_many", "raw_add", "scan"):
                    stack.enter_context(mock.patch.object(LocMemAdapter, method, fail))
                yield
            return
        if self.is_db:
            config = self.variant(LOCATION="keyedcache_no_such_table")
        elif self.name == "file":
            config = self.variant(LOCATION=str(TEST_TMP / "file-caches" / f"{self.prefix}-down"))
        elif self.name in ("memcached", "memcached2"):
            config = self.variant(LOCATION=f"127.0.0.1:{free_port()}")
        elif self.is_redis:
            scheme = "valkey" if self.name.startswith("valkey") else "redis"
            config = self.variant(LOCATION=f"{scheme}://127.0.0.1:{free_port()}/0")
        else:  # pragma: no cover
            raise ValueError(self.name)
        with override_settings(CACHES={"default": config}):
            if self.name == "file":
                # Django creates the directory when the cache object is built:
                # build it, then put a file in the directory's place.
                caches["default"]
                shutil.rmtree(config["LOCATION"])
                Path(config["LOCATION"]).write_text("not a directory")
            try:
                yield
            finally:
                close_caches()
                if self.name == "file":
                    os.unlink(config["LOCATION"])

    def env(
        self,
        extra_settings: dict[str, Any] | None = None,
        caches: dict[str, dict[str, Any]] | None = None,
    ) -> dict[str, str]:
        """The env vars a child process needs to use this backend and the test databases.

        `caches` replaces the CACHES sent (default: this backend's); `extra_settings`
        (JSON-able) are applied as settings in the child, e.g. {"KEYEDCACHE_ALIAS": "x"}.
        """
        env = base_child_env()
        env["KEYEDCACHE_TEST_CACHES"] = json.dumps(caches if caches is not None else self.caches)
        env["KEYEDCACHE_TEST_CACHE_DB"] = self.cache_db
        if extra_settings:
            env["KEYEDCACHE_TEST_SETTINGS"] = json.dumps(extra_settings)
        return env


def base_child_env() -> dict[str, str]:
    """The env vars every child of this session gets: scratch dir and test databases."""
    env = {
        "KEYEDCACHE_TEST_TMP": str(TEST_TMP),
        "KEYEDCACHE_TEST_DB_NAME": test_settings.TEST_DB_PATH,
        "KEYEDCACHE_TEST_PG": "1" if test_settings.HAVE_POSTGRES else "0",
    }
    if test_settings.HAVE_POSTGRES:
        env["KEYEDCACHE_TEST_PG_NAME"] = test_settings.PG_TEST_NAME
    assert set(env) <= set(PROCESS_ENV_KEYS)
    return env


def _memcached_options() -> dict[str, Any]:
    # pymemcache HashClient: short timeouts; a failing server is dropped at once
    # (retry_attempts 0) and tried again on the next call (dead_timeout 0), so
    # every call either reaches the server or raises, and a restarted server
    # serves again at once. (With retries, HashClient silently skips calls to a
    # server it is waiting to retry.)
    return {
        "connect_timeout": 1.0,
        "timeout": 1.0,
        "retry_attempts": 0,
        "retry_timeout": 0,
        "dead_timeout": 0,
    }


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Iterator[BackendConfig]:
    """Run the test on one cache backend (parametrized; see `@pytest.mark.backends`)."""
    name: str = getattr(request, "param", None) or "locmem"
    prefix = f"t{next(_counter)}{uuid.uuid4().hex[:6]}"
    servers: list[Server] = []
    cache_db = "default"
    config: dict[str, Any]
    if name == "locmem":
        config = {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"keyedcache-{prefix}",
            "OPTIONS": {"MAX_ENTRIES": 100_000},
        }
    elif name in DB_BACKENDS:
        if name == "db-postgres":
            request.getfixturevalue("postgres_available")
        cache_db = DB_BACKENDS[name]
        config = {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": CACHE_TABLE,
            "OPTIONS": {"MAX_ENTRIES": 1_000_000},
        }
    elif name == "file":
        config = {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(TEST_TMP / "file-caches" / prefix),
            "OPTIONS": {"MAX_ENTRIES": 100_000},
        }
    elif name in ("memcached", "memcached2"):
        pair: list[Server] = request.getfixturevalue("memcached_servers")
        servers = pair[:1] if name == "memcached" else list(pair)
        config = {
            "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
            "LOCATION": [s.location for s in servers] if len(servers) > 1 else servers[0].location,
            "OPTIONS": _memcached_options(),
        }
    elif name == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        servers = [server]
        config = {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": server.url,
            "OPTIONS": {"socket_connect_timeout": 1.0, "socket_timeout": 2.0},
        }
    elif name in ("django-redis", "valkey"):
        server = request.getfixturevalue("redis_server")
        servers = [server]
        library = "django_redis.cache.RedisCache"
        if name == "valkey":
            library = "django_valkey.cache.ValkeyCache"
        config = {
            "BACKEND": library,
            "LOCATION": server.url if name == "django-redis" else f"valkey://{server.location}/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1.0, "SOCKET_TIMEOUT": 2.0},
        }
    elif name == "valkey-cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        servers = list(cluster.nodes)
        config = {
            "BACKEND": "django_valkey.cluster_cache.cache.ClusterValkeyCache",
            "LOCATION": f"valkey://{cluster.nodes[0].location}",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1.0, "SOCKET_TIMEOUT": 2.0},
        }
    else:  # pragma: no cover - pytest_generate_tests rejects unknown names
        raise ValueError(name)
    config["KEY_PREFIX"] = prefix
    cfg = BackendConfig(name, {"default": config}, prefix, cache_db, servers)
    with override_settings(CACHES=cfg.caches, KEYEDCACHE_TEST_CACHE_DB=cache_db):
        if cfg.is_db:
            call_command("createcachetable", database=cache_db, verbosity=0)
        keyedcache.keyedcache_configure()
        try:
            yield cfg
        finally:
            _clear_backend(cfg)


def close_caches() -> None:
    """`caches.close_all()`, and disconnect the Redis-family clients it leaves open.

    Django's RedisCache, django-redis and django-valkey keep their connections on
    close() (by design: pools outlive requests). In the tests each override of
    CACHES builds new cache objects, and the main thread's context keeps the old
    ones alive, so without this every test would leave its sockets open.
    """
    for cache in caches.all(initialized_only=True):
        clients: list[Any] = list(getattr(getattr(cache, "client", None), "_clients", None) or [])
        pools = getattr(getattr(cache, "_cache", None), "_pools", None) or {}
        for client in clients:
            if client is None:
                continue
            with contextlib.suppress(Exception):
                if hasattr(client, "nodes_manager"):  # a cluster client: a pool per node
                    for node in list(client.nodes_manager.nodes_cache.values()):
                        node_client = getattr(node, "valkey_connection", None) or getattr(
                            node, "redis_connection", None
                        )
                        if node_client is not None:
                            node_client.connection_pool.disconnect()
                else:
                    client.connection_pool.disconnect()
        for pool in list(pools.values()):
            with contextlib.suppress(Exception):
                pool.disconnect()
    caches.close_all()


def _clear_backend(cfg: BackendConfig) -> None:
    # Each test has its own KEY_PREFIX, so clearing is about memory, not isolation.
    if any(not s.running for s in cfg.servers):
        close_caches()
        return
    with contextlib.suppress(Exception):
        caches["default"].clear()
    close_caches()
    if cfg.name == "locmem":
        from django.core.cache.backends import locmem

        # Django keeps every LOCATION's dict for the life of the process.
        for name in ("_caches", "_expire_info", "_locks"):
            getattr(locmem, name).pop(cfg.caches["default"]["LOCATION"], None)
    elif cfg.name == "file":
        shutil.rmtree(cfg.caches["default"]["LOCATION"], ignore_errors=True)


@pytest.fixture
def plain_cache(backend: BackendConfig) -> Any:
    """Django's cache object for the backend under test (`caches['default']`)."""
    return caches["default"]


@pytest.fixture(autouse=True)
def _keyedcache_enabled() -> Iterator[None]:
    """Every test starts and ends with keyedcache enabled in this process."""
    keyedcache.cache_enable(True)
    yield
    keyedcache.cache_enable(True)


# -- servers -----------------------------------------------------------------------


def _start(cls: type[Server], binary_name: str, count: int) -> list[Server]:
    binary = find_binary(binary_name)
    if binary is None:
        unavailable(f"{binary_name} not installed")
        raise AssertionError  # unreachable: unavailable() raises
    started: list[Server] = []
    try:
        for _ in range(count):
            started.append(start_server(cls, binary, TEST_TMP / "servers"))
    except ServerError as exc:
        for server in started:
            server.stop()
        unavailable(str(exc))
    return started


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server of this session on a free port (`.url`, `.port`, `.stop()`, `.start()`)."""
    (server,) = _start(RedisServer, "redis-server", 1)
    assert isinstance(server, RedisServer)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A 3-primary Redis Cluster of this session (cluster-enabled redis-servers)."""
    for binary in ("redis-server", "redis-cli"):
        if find_binary(binary) is None:
            unavailable(f"{binary} not installed")
    try:
        cluster = RedisCluster(TEST_TMP / "cluster")
    except ServerError as exc:
        unavailable(str(exc))
        raise
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def memcached_servers() -> Iterator[list[Server]]:
    """Two memcached servers of this session (`.location`, `.port`, `.stop()`, `.start()`)."""
    servers = _start(MemcachedServer, "memcached", 2)
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def postgres_available() -> None:
    """Skip (or fail, with KEYEDCACHE_REQUIRE_SERVERS=1) when PostgreSQL is not reachable."""
    if not test_settings.HAVE_POSTGRES or "pg" not in settings.DATABASES:
        unavailable("PostgreSQL not reachable on 127.0.0.1:5432")


@pytest.fixture
def restart_servers(backend: BackendConfig) -> Iterator[list[Server]]:
    """The backend's servers; whatever a test stops is started again afterwards."""
    yield backend.servers
    for server in backend.servers:
        if not server.running:
            server.start()


# -- child processes ----------------------------------------------------------------


@pytest.fixture(scope="session")
def child_pool(django_db_setup: None) -> Iterator[WorkerPool]:
    """Long-lived worker processes of this session (closed before the test databases go)."""
    pool = WorkerPool(base_child_env())
    yield pool
    pool.close()


@pytest.fixture
def child(child_pool: WorkerPool, backend: BackendConfig) -> Iterator[BoundWorker]:
    """A real separate process using the backend under test: `child.run(code_or_func, ...)`."""
    with pool_workers(child_pool, backend.env(), 1) as (worker,):
        yield worker


@pytest.fixture
def children(
    child_pool: WorkerPool, backend: BackendConfig
) -> Iterator[Callable[[int], list[BoundWorker]]]:
    """`children(n)` returns n separate processes using the backend under test."""
    with_stack: list[Any] = []

    def take(count: int) -> list[BoundWorker]:
        manager = pool_workers(child_pool, backend.env(), count)
        with_stack.append(manager)
        return manager.__enter__()

    yield take
    for manager in reversed(with_stack):
        manager.__exit__(None, None, None)
