"""cache_lock / CacheLock: mutual exclusion across real processes, expiry, ownership.

Mutual exclusion is checked where the backend has an atomic add (Redis,
memcached, the database cache; locmem across threads). Django's file-based
cache has no atomic add, so its locks are not exclusive (docs/operations.md).
"""

from __future__ import annotations

import contextlib
import datetime
import threading
import time
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from django.db import connections

from keyedcache import (
    CacheLock,
    LockError,
    LockNotOwnedError,
    cache_delete,
    cache_delete_pattern,
    cache_get,
    cache_lock,
    cache_set,
    default_cache,
)
from keyedcache.tokens import Backoff
from tests.conftest import BackendConfig
from tests.procs import Gate

#: Backends whose `add` is atomic across processes.
ATOMIC_ACROSS_PROCESSES = (
    "redis",
    "django-redis",
    "valkey",
    "valkey-cluster",
    "memcached",
    "memcached2",
    "db-sqlite",
    "db-postgres",
)
#: Backends that decide expiry with this process's clock (it can be moved ahead).
LOCAL_CLOCK = ("locmem", "file", "db-sqlite", "db-postgres")

INCREMENTS = 25

# Each process takes the lock 25 times and increments a counter kept in the
# cache with a read and a write inside it; a lost update shows in the total.
# Django's DatabaseCache drops a write silently when SQLite is busy, and an
# acquire fails when the backend does not answer: both are retried (and
# reported), neither is a second holder inside the lock.
COUNTER_CODE = """
from tests.procs import gate_wait
lock = cache_lock('counter', 'lock', timeout=30)
lock.poll_max = 0.01  # poll briskly: 100 short critical sections in a row
unanswered = rewrites = 0
gate_wait(gate)
for _ in range(increments):
    while not lock.acquire():
        unanswered += 1
    try:
        value = cache_get('counter', 'value', default=0)
        time.sleep(0.001)  # widen the read-modify-write window
        cache_set('counter', 'value', value=value + 1, length=None)
        for _ in range(50):
            if cache_get('counter', 'value', default=None) == value + 1:
                break
            rewrites += 1
            cache_set('counter', 'value', value=value + 1, length=None)
    finally:
        lock.release()
result = (os.getpid(), unanswered, rewrites)
"""


def lock_record_ttl(backend: BackendConfig, name: str) -> float | None:
    """Seconds the backend keeps the lock record named `name` (None: never expires)."""
    adapter = default_cache().adapter
    with mock.patch.object(backend, "storage_key", adapter.lock_key):
        return backend.stored_ttl(name)


@contextlib.contextmanager
def clock_ahead(monkeypatch: pytest.MonkeyPatch, seconds: float) -> Iterator[None]:
    """Move time.time and Django's timezone.now `seconds` ahead in this process."""
    import django.core.cache.backends.db as db_backend

    import keyedcache.backends.database as db_adapter

    real_time = time.time
    real_now = db_backend.tz_now

    def later() -> datetime.datetime:
        return real_now() + datetime.timedelta(seconds=seconds)

    with monkeypatch.context() as patch:
        patch.setattr(time, "time", lambda: real_time() + seconds)
        patch.setattr(db_backend, "tz_now", later)
        if hasattr(db_adapter, "tz_now"):
            patch.setattr(db_adapter, "tz_now", later)
        yield


def wait_until_expired(lock: CacheLock, deadline: float) -> None:
    """Wait (bounded) until the backend has dropped `lock`'s record."""
    while lock.locked():
        assert time.monotonic() < deadline, f"{lock!r} did not expire"
        time.sleep(0.02)  # poll interval of a bounded wait for a server-side expiry


# -- mutual exclusion --------------------------------------------------------------------------


@pytest.mark.backends(*ATOMIC_ACROSS_PROCESSES)
def test_processes_incrementing_inside_the_lock_lose_nothing(
    backend: BackendConfig, children: Any
) -> None:
    workers = children(4)
    with Gate() as gate:
        pending = [
            w.submit(COUNTER_CODE, gate=gate.address, increments=INCREMENTS) for w in workers
        ]
        gate.wait_arrivals(len(workers))
        gate.open()
        results = [p.result(timeout=120) for p in pending]
    assert len({pid for pid, _, _ in results}) == 4
    total = cache_get("counter", "value")
    assert total == 4 * INCREMENTS, f"(pid, unanswered acquires, rewrites): {results}"
    assert not cache_lock("counter", "lock").locked()


@pytest.mark.backends("locmem")
def test_threads_incrementing_inside_the_lock_lose_nothing(backend: BackendConfig) -> None:
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            lock = cache_lock("counter", "lock", timeout=30)
            lock.poll_max = 0.01
            barrier.wait(timeout=30)
            for _ in range(INCREMENTS):
                with lock:
                    value = cache_get("counter", "value", default=0)
                    time.sleep(0.001)  # widen the read-modify-write window
                    cache_set("counter", "value", value=value + 1, length=None)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    assert cache_get("counter", "value") == 4 * INCREMENTS


@pytest.mark.backends(*ATOMIC_ACROSS_PROCESSES)
def test_a_lock_held_by_another_process(backend: BackendConfig, child: Any) -> None:
    token = child.run(
        "lock = cache_lock('shared', timeout=30); lock.acquire(); result = lock.token"
    )
    assert isinstance(token, str)
    mine = cache_lock("shared", timeout=30)
    assert mine.locked()
    assert not mine.owned()
    assert mine.acquire(blocking=False) is False
    with pytest.raises(LockNotOwnedError):
        mine.release()
    assert child.run("cache_lock('shared').locked()") is True
    released = child.run(
        "lock = cache_lock('shared'); lock.token = token; lock.release(); result = lock.locked()",
        token=token,
    )
    assert released is False
    assert mine.acquire(blocking=False) is True
    assert child.run("cache_lock('shared').acquire(blocking=False)") is False
    mine.release()


@pytest.mark.backends("locmem", "file")
def test_threads_exclude_each_other_on_local_backends(backend: BackendConfig) -> None:
    # Within one process, a second lock object for the same name is refused.
    first = cache_lock("local")
    second = cache_lock("local")
    assert first.acquire(blocking=False)
    assert not second.acquire(blocking=False)
    first.release()
    assert second.acquire(blocking=False)
    second.release()


# -- expiry and takeover -----------------------------------------------------------------------


def test_an_expired_lock_is_taken_over(
    backend: BackendConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Redis expires a lock to the millisecond, the others to the second.
    timeout = 0.2 if backend.is_redis else 1
    first = cache_lock("expiring", timeout=timeout)
    assert first.acquire()
    second = cache_lock("expiring", timeout=30, blocking_timeout=10)
    assert second.acquire(blocking=False) is False
    if backend.name in LOCAL_CLOCK:
        with clock_ahead(monkeypatch, 5):
            assert second.acquire(blocking=False) is True
    else:
        started = time.monotonic()
        assert second.acquire() is True  # waits for the expiry, at most 10 s
        assert time.monotonic() - started < 5
    assert second.owned()
    assert not first.owned()
    # The first holder (its timeout overrun) can neither extend nor release it.
    assert first.extend() is False
    with pytest.raises(LockNotOwnedError):
        first.release()
    assert second.owned()
    assert first.locked()
    second.release()
    assert not second.locked()


def test_a_lock_expires_after_its_timeout(backend: BackendConfig) -> None:
    lock = cache_lock("timed", timeout=7)
    assert lock.acquire()
    ttl = lock_record_ttl(backend, "timed")
    # Whole-second backends keep it up to a second longer (never shorter).
    assert ttl is not None and 5.5 < ttl <= (7 if backend.is_redis else 8)
    lock.release()


@pytest.mark.backends("locmem", *ATOMIC_ACROSS_PROCESSES)
def test_a_lock_excludes_others_for_at_least_its_timeout(backend: BackendConfig) -> None:
    # Whole-second backends used to let a second caller in up to a second early.
    # The holder's lock object is dropped without a release: only expiry frees it.
    timeout = 2.0
    holder = cache_lock("at-least", timeout=timeout)
    assert holder.acquire(blocking=False)
    acquired_by = time.time()  # after the acquire: no later than the true moment
    other = cache_lock("at-least", timeout=timeout)
    backoff = Backoff(0.005, 0.05, time.monotonic() + 20)
    while True:
        tried_at = time.time()  # before the attempt: no later than its success
        if other.acquire(blocking=False):
            break
        assert backoff.sleep(), "the lock was never freed"
    # Both times err on the short side, so this bounds the exclusion from below
    # (a few milliseconds of slack for the two calls themselves).
    assert tried_at - acquired_by >= timeout - 0.05
    other.release()


# -- ownership ---------------------------------------------------------------------------------


def test_release_by_a_non_owner_is_refused(backend: BackendConfig) -> None:
    owner = cache_lock("owned")
    intruder = cache_lock("owned")
    assert owner.acquire()
    with pytest.raises(LockNotOwnedError):
        intruder.release()  # never acquired
    intruder.token = "forged-token"
    with pytest.raises(LockNotOwnedError):
        intruder.release()
    assert intruder.token is None
    assert owner.owned()
    assert owner.locked()
    owner.release()
    assert not owner.locked()
    with pytest.raises(LockNotOwnedError):
        owner.release()  # twice


def test_extend(backend: BackendConfig) -> None:
    # Whole-second backends keep a lock up to a second longer (never shorter).
    extra = 0 if backend.is_redis else 1
    lock = cache_lock("ext", timeout=3)
    assert lock.acquire()
    assert lock.extend(60) is True
    ttl = lock_record_ttl(backend, "ext")
    assert ttl is not None and 58 < ttl <= 60 + extra
    assert lock.extend() is True  # back to its own timeout
    ttl = lock_record_ttl(backend, "ext")
    assert ttl is not None and 1 < ttl <= 3 + extra
    assert lock.owned()
    other = cache_lock("ext")
    with pytest.raises(LockNotOwnedError):
        other.extend(10)
    other.token = "forged-token"
    assert other.extend(10) is False
    ttl = lock_record_ttl(backend, "ext")
    assert ttl is not None and ttl <= 3 + extra
    lock.release()
    with pytest.raises(LockNotOwnedError):
        lock.extend()


def test_locked_and_owned(backend: BackendConfig) -> None:
    first = cache_lock("state", 1)
    second = cache_lock("state::1")  # the same lock: keys build as for cache_get
    assert (first.locked(), first.owned(), second.locked(), second.owned()) == (
        False,
        False,
        False,
        False,
    )
    assert first.acquire()
    assert (first.locked(), first.owned(), second.locked(), second.owned()) == (
        True,
        True,
        True,
        False,
    )
    first.release()
    assert not first.locked()
    assert not first.owned()
    assert "state::1" in repr(first)


def test_locks_are_apart_from_cache_entries(backend: BackendConfig) -> None:
    lock = cache_lock("name")
    assert lock.acquire()
    cache_set("name", value="an entry under the same key")
    assert cache_get("name") == "an entry under the same key"
    cache_delete("name", children=True)
    cache_delete_pattern("*")
    cache_delete()
    assert lock.owned()
    lock.release()


# -- waiting -----------------------------------------------------------------------------------


def test_blocking_timeout(backend: BackendConfig) -> None:
    holder = cache_lock("busy")
    assert holder.acquire()
    waiter = cache_lock("busy", blocking_timeout=0.15)
    started = time.monotonic()
    assert waiter.acquire() is False
    waited = time.monotonic() - started
    assert 0.15 <= waited < 2
    started = time.monotonic()
    assert waiter.acquire(blocking_timeout=0.05) is False
    assert 0.05 <= time.monotonic() - started < 2
    assert not waiter.owned()
    holder.release()
    assert waiter.acquire() is True
    waiter.release()


def test_blocking_acquire_waits_for_the_release(backend: BackendConfig) -> None:
    holder = cache_lock("handover")
    assert holder.acquire()
    timer = threading.Timer(0.1, holder.release)
    timer.start()
    try:
        waiter = cache_lock("handover", blocking_timeout=20)
        assert waiter.acquire() is True
    finally:
        timer.join()
        connections.close_all()
    assert waiter.owned()
    waiter.release()


def test_non_blocking(backend: BackendConfig) -> None:
    holder = cache_lock("nb")
    assert holder.acquire()
    with mock.patch("keyedcache.lock.time.sleep") as sleep:
        assert cache_lock("nb", blocking=False).acquire() is False
        assert cache_lock("nb").acquire(blocking=False) is False
    sleep.assert_not_called()
    holder.release()
    assert cache_lock("nb", blocking=False).acquire() is True


# -- the context manager -----------------------------------------------------------------------


def test_context_manager(backend: BackendConfig) -> None:
    with cache_lock("cm", timeout=30) as lock:
        assert isinstance(lock, CacheLock)
        assert lock.owned()
    assert not lock.locked()
    with pytest.raises(KeyError), cache_lock("cm") as lock:
        raise KeyError("the body failed")
    assert not lock.locked()  # released on the way out


def test_context_manager_raises_when_it_cannot_acquire(backend: BackendConfig) -> None:
    holder = cache_lock("cm")
    assert holder.acquire()
    ran = []
    with (
        pytest.raises(LockError, match="could not acquire lock 'cm'"),
        cache_lock("cm", blocking=False),
    ):
        ran.append(True)
    with pytest.raises(LockError), cache_lock("cm", blocking_timeout=0.05):
        ran.append(True)
    assert ran == []
    assert holder.owned()
    holder.release()


# -- arguments, outages ------------------------------------------------------------------------


@pytest.mark.parametrize("timeout", [0, -1, True, "10", None])
def test_a_bad_timeout_is_refused(backend: BackendConfig, timeout: Any) -> None:
    with pytest.raises(ValueError, match="timeout must be a number > 0"):
        cache_lock("bad", timeout=timeout)


def test_a_lock_needs_a_key(backend: BackendConfig) -> None:
    with pytest.raises(ValueError):
        cache_lock()


# locmem cannot be unreachable.
@pytest.mark.backends(exclude=("locmem",))
def test_no_lock_while_the_backend_is_down(backend: BackendConfig) -> None:
    with backend.down():
        lock = cache_lock("down", blocking_timeout=5)
        started = time.monotonic()
        assert lock.acquire() is False  # at once: it does not pretend to exclude anyone
        assert time.monotonic() - started < 3
        assert not lock.locked()
        with pytest.raises(LockError), cache_lock("down"):
            pass
    with cache_lock("down") as lock:
        assert lock.owned()


# -- Redis: the release is one atomic compare-and-delete ---------------------------------------


@pytest.mark.backends("redis")
def test_redis_release_is_one_compare_and_delete(backend: BackendConfig) -> None:
    adapter: Any = default_cache().adapter
    client_class = type(adapter._client())
    calls: list[str] = []

    def spy(name: str) -> Any:
        real = getattr(client_class, name)

        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return real(self, *args, **kwargs)

        return call

    lock = cache_lock("atomic")
    assert lock.acquire()
    with (
        mock.patch.object(client_class, "eval", spy("eval")),
        mock.patch.object(client_class, "get", spy("get")),
        mock.patch.object(client_class, "delete", spy("delete")),
    ):
        lock.release()
    assert calls == ["eval"]  # no GET then DEL with a window between them
    assert not lock.locked()


@pytest.mark.backends("redis")
def test_redis_release_after_expiry_spares_the_new_owner(backend: BackendConfig) -> None:
    first = cache_lock("atomic", timeout=0.1)
    assert first.acquire()
    wait_until_expired(first, time.monotonic() + 5)
    second = cache_lock("atomic", timeout=30)
    assert second.acquire(blocking=False)
    with pytest.raises(LockNotOwnedError):
        first.release()
    assert second.owned()
    second.release()
