"""Redis deployments beyond one server: a replica, Sentinel failover, a cluster losing a primary.

Every fault is real: servers are killed with SIGKILL while threads keep calling
keyedcache, and the tests wait for the topology's own recovery (Sentinel's
promotion, the cluster's failover) by polling the servers' state, never by sleeping.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import caches
from django.test.utils import override_settings

import keyedcache
from keyedcache import cache_delete, cache_function, cache_get, cache_set, default_cache
from keyedcache.counters import counters
from tests.conftest import TEST_TMP, base_child_env, unavailable
from tests.procs import append_line, read_lines, run_in_children
from tests.servers import ServerError
from tests.topologies import (
    RedisCluster,
    ReplicaPair,
    SentinelGroup,
    info,
    redis_client,
    wait_until,
)

pytestmark = [pytest.mark.servers, pytest.mark.timeout(240)]

DEADLINE = 60.0


def _errors() -> int:
    return counters.snapshot()["errors"]


def _topology(build: Callable[[], Any]) -> Any:
    try:
        return build()
    except ServerError as exc:
        unavailable(str(exc))
        raise


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[ReplicaPair]:
    topology = _topology(lambda: ReplicaPair(TEST_TMP / "replica" / tmp_path.name))
    yield topology
    topology.stop()


def _replica_caches(kind: str, pair: ReplicaPair) -> dict[str, Any]:
    primary, replica = pair.primary.url, pair.replica.url
    if kind == "django":
        return {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": [primary, replica],
            "OPTIONS": {"socket_timeout": 2.0},
        }
    return {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": [primary, replica],
        "OPTIONS": {"SOCKET_TIMEOUT": 2.0},
    }


def _synced(pair: ReplicaPair) -> None:
    """Wait until the replica has applied everything the primary has written."""
    redis_client(pair.primary.port).execute_command("WAIT", 1, 5000)
    wait_until(
        "the replica to catch up",
        lambda: (
            info(pair.replica.port, "replication").get("master_repl_offset")
            == info(pair.primary.port, "replication").get("master_repl_offset")
        ),
    )


def _replica_reads(pair: ReplicaPair) -> int:
    stats = redis_client(pair.replica.port).info("commandstats")
    return int(stats.get("cmdstat_mget", {}).get("calls", 0))


@pytest.mark.parametrize("kind", ["django", "django-redis"])
def test_with_a_replica_every_write_lock_and_token_goes_to_the_primary(
    kind: str, pair: ReplicaPair, caplog: pytest.LogCaptureFixture
) -> None:
    # The replica is read-only: any write, token, lock or listing sent to it
    # would fail (READONLY), be counted as an error and logged.
    calls: list[int] = []

    @cache_function(300)
    def square(n: int) -> int:
        calls.append(n)
        return n * n

    with override_settings(CACHES={"default": _replica_caches(kind, pair)}):
        keyedcache.keyedcache_configure()
        errors = _errors()
        reads = _replica_reads(pair)
        with caplog.at_level(logging.WARNING, logger="keyedcache"):
            cache_set("tree", "a", value=1)
            cache_set("tree", "a", "b", value=2)
            assert square(4) == 16  # a fill: lock and basis on the primary
            with keyedcache.cache_lock("tree::lock", timeout=5):
                assert keyedcache.cache_add("tree::added", value="x")
            assert sorted(keyedcache.cache_keys("tree::*")) == [
                "tree::a",
                "tree::a::b",
                "tree::added",
            ]
            _synced(pair)
            assert cache_get("tree", "a") == 1
            assert square(4) == 16
            cache_delete("tree", "a", children=True)
            square.invalidate(4)
            _synced(pair)
            assert cache_get("tree", "a", "b", default="gone") == "gone"
            assert square(4) == 16
        assert calls == [4, 4]
        assert _errors() == errors
        assert not [r for r in caplog.records if r.name == "keyedcache"]
        assert _replica_reads(pair) > reads  # plain value reads were served by the replica
        caches["default"].clear()


def test_a_reader_on_a_lagging_replica_sees_the_old_value_until_it_catches_up(
    pair: ReplicaPair,
) -> None:
    # What docs/backends.md promises: after an invalidation on the primary, a
    # reader served by a replica still sees the value it had, for as long as
    # the replica lags; the moment the replica applies the invalidation, a miss.
    with override_settings(CACHES={"default": _replica_caches("django", pair)}):
        keyedcache.keyedcache_configure()
        cache_set("lag", "x", value="before")
        _synced(pair)
        replica = redis_client(pair.replica.port)
        replica.execute_command("REPLICAOF", "NO", "ONE")  # the link stalls: lag grows
        try:
            cache_delete("lag", children=True)
            assert cache_get("lag", "x", default="gone") == "before"  # the lag window
        finally:
            replica.execute_command("REPLICAOF", "127.0.0.1", str(pair.primary.port))
        wait_until(
            "the replica to resync",
            lambda: info(pair.replica.port, "replication").get("master_link_status") == "up",
        )
        _synced(pair)
        assert cache_get("lag", "x", default="gone") == "gone"
        caches["default"].clear()


# -- Sentinel ----------------------------------------------------------------------------


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelGroup]:
    group = _topology(lambda: SentinelGroup(TEST_TMP / "sentinel" / tmp_path.name))
    yield group
    group.stop()


def _sentinel_caches(group: SentinelGroup) -> dict[str, Any]:
    return {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": f"redis://{group.service}/0",
        "KEY_PREFIX": "sentinel",
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.SentinelClient",
            "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
            "SENTINELS": group.addresses,
            "SOCKET_CONNECT_TIMEOUT": 0.5,
            "SOCKET_TIMEOUT": 0.5,
        },
    }


class Load:
    """Threads calling keyedcache in a loop until stopped; they record any exception raised."""

    def __init__(self, threads: int = 4) -> None:
        self.stop = threading.Event()
        self.raised: list[BaseException] = []
        self.calls = 0
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def _run(self, number: int) -> None:
        @cache_function(60)
        def double(n: int) -> int:
            return 2 * n

        i = 0
        while not self.stop.is_set():
            i += 1
            try:
                cache_set("load", number, i % 50, value=i)
                cache_get("load", number, i % 50, default=None)
                assert double(i % 20) == 2 * (i % 20)
                if i % 25 == 0:
                    cache_delete("load", number, children=True)
            except BaseException as exc:  # anything reaching a caller is a failure
                self.raised.append(exc)
            with self._lock:
                self.calls += 1

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(DEADLINE)


def _serves_again() -> bool:
    cache_set("probe", value=os.getpid())
    return bool(cache_get("probe", default=None) == os.getpid())


@cache_function(300, wait=60)
def after_failover(run_dir: str) -> int:
    """Counts its executions in the run directory (one line each)."""
    append_line(os.path.join(run_dir, "runs"), str(os.getpid()))
    return len(read_lines(os.path.join(run_dir, "runs")))


def _call_after_failover(run_dir: str, threads: int) -> list[int]:
    results: list[int] = []
    barrier = threading.Barrier(threads)

    def one() -> None:
        barrier.wait(DEADLINE)
        results.append(after_failover(run_dir))

    workers = [threading.Thread(target=one) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(DEADLINE)
    return results


def test_sentinel_failover_under_load_keeps_callers_error_free(
    sentinels: SentinelGroup, tmp_path: Path
) -> None:
    config = _sentinel_caches(sentinels)
    with override_settings(CACHES={"default": config}):
        keyedcache.keyedcache_configure()
        assert default_cache().adapter.name == "django-redis"
        old_primary = sentinels.primary_port()
        with Load() as load:
            wait_until("calls before the fault", lambda: load.calls > 50)
            sentinels.pair.primary.process.kill()  # type: ignore[union-attr]  # SIGKILL
            wait_until(
                "Sentinel to promote the replica", lambda: sentinels.primary_port() != old_primary
            )
            wait_until("service on the new primary", _serves_again)
            served = load.calls
            wait_until("calls after the switch", lambda: load.calls > served + 50)
        assert load.raised == []
        assert sentinels.primary_port() == sentinels.pair.replica.port
        # Single flight still holds after the switch, across processes.
        env = {**base_child_env(), "KEYEDCACHE_TEST_CACHES": _json({"default": config})}
        results = run_in_children(env, _call_after_failover, 2, str(tmp_path), 4)
        flat = [r for batch in results for r in batch]
        assert flat == [1] * 8
        assert len(read_lines(str(tmp_path / "runs"))) == 1


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


# -- Cluster -----------------------------------------------------------------------------


@pytest.fixture
def replicated_cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    cluster = _topology(
        lambda: RedisCluster(TEST_TMP / "cluster-ha" / tmp_path.name, primaries=3, replicas=1)
    )
    yield cluster
    cluster.stop()


def test_cluster_failover_under_load_keeps_callers_error_free(
    replicated_cluster: RedisCluster,
) -> None:
    config = {
        "BACKEND": "django_valkey.cluster_cache.cache.ClusterValkeyCache",
        "LOCATION": f"valkey://{replicated_cluster.nodes[0].location}",
        "KEY_PREFIX": "ha",
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
    }
    with override_settings(CACHES={"default": config}):
        keyedcache.keyedcache_configure()
        keys = [f"spread::{i}" for i in range(200)]  # every primary holds some
        keyedcache.cache_set_many(dict.fromkeys(keys, "v"))
        assert keyedcache.cache_get_many(keys) == dict.fromkeys(keys, "v")
        victim = next(
            node
            for node in replicated_cluster.primaries()
            if node is not replicated_cluster.nodes[0]
        )
        with Load() as load:
            wait_until("calls before the fault", lambda: load.calls > 50)
            victim.process.kill()  # type: ignore[union-attr]
            victim.process = None
            wait_until("the cluster to promote a replica", replicated_cluster.healthy)
            wait_until(
                "every slot to take writes again",
                lambda: _all_slots_serve(keys),
            )
            served = load.calls
            wait_until("calls after the failover", lambda: load.calls > served + 50)
        assert load.raised == []
        assert len(replicated_cluster.primaries()) == 3
        assert sorted(keyedcache.cache_keys("spread::*")) == sorted(keys)


def _all_slots_serve(keys: list[str]) -> bool:
    keyedcache.cache_set_many(dict.fromkeys(keys, "again"))
    return bool(keyedcache.cache_get_many(keys) == dict.fromkeys(keys, "again"))
