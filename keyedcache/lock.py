"""CacheLock: a lock held by a token in the cache, mutually exclusive across processes."""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import Protocol

from keyedcache.tokens import Backoff, new_token
from keyedcache.validation import seconds

DEFAULT_LOCK_TIMEOUT = 60.0


class LockError(Exception):
    """A lock could not be acquired, or was used by a caller that does not hold it."""


class LockNotOwnedError(LockError):
    """Raised by `release`/`extend` when this lock object does not hold the lock."""


class LockStore(Protocol):
    """The lock primitives a KeyedCache offers (see store.KeyedCache.lock_*)."""

    def lock_acquire(self, key: str, token: str, timeout: float) -> bool | None: ...
    def lock_release(self, key: str, token: str) -> bool: ...
    def lock_extend(self, key: str, token: str, timeout: float) -> bool: ...
    def lock_owner(self, key: str) -> str | None: ...


class AsyncLockStore(Protocol):
    """The async lock primitives of a KeyedCache (`async with`; see acache.py)."""

    async def alock_acquire(self, key: str, token: str, timeout: float) -> bool | None: ...
    async def alock_release(self, key: str, token: str) -> bool: ...
    async def alock_extend(self, key: str, token: str, timeout: float) -> bool: ...
    async def alock_owner(self, key: str) -> str | None: ...


class CacheLock:
    """A named lock in the cache: only the holder's token can release or extend it.

    It expires after `timeout` seconds so a crashed holder cannot block
    others forever. Usable as a context manager (raises LockError when it
    cannot be acquired), and with `async with` in async code (`aacquire`,
    `arelease`, ...: the waits are `asyncio.sleep`, never a blocked loop).
    When the backend does not answer, `acquire` fails at once rather than
    pretend to exclude anyone.
    """

    poll_first = 0.005
    poll_max = 0.1

    def __init__(
        self,
        store: LockStore,
        key: str,
        *,
        timeout: float = DEFAULT_LOCK_TIMEOUT,
        blocking: bool = True,
        blocking_timeout: float | None = None,
    ) -> None:
        where = f"cache_lock({key!r})"
        self.timeout = seconds(timeout, "timeout", where, above_zero=True)
        if blocking_timeout is not None:
            blocking_timeout = seconds(blocking_timeout, "blocking_timeout", where)
        self.store = store
        self.key = key
        self.blocking = blocking
        self.blocking_timeout = blocking_timeout
        self.token: str | None = None

    def __repr__(self) -> str:
        return f"<CacheLock {self.key!r} held={self.token is not None}>"

    def acquire(self, blocking: bool | None = None, blocking_timeout: float | None = None) -> bool:
        """Take the lock; wait for it when blocking (at most `blocking_timeout` seconds)."""
        blocking = self.blocking if blocking is None else blocking
        limit = self.blocking_timeout if blocking_timeout is None else blocking_timeout
        deadline = None if limit is None else time.monotonic() + limit
        backoff = Backoff(self.poll_first, self.poll_max, deadline)
        token = new_token(with_pid=True)
        while True:
            taken = self.store.lock_acquire(self.key, token, self.timeout)
            if taken:
                self.token = token
                return True
            if taken is None or not blocking:
                return False  # None: the backend did not answer
            # Another holder has it: poll again after a bounded, doubling pause.
            if not backoff.sleep():
                return False

    def release(self) -> None:
        """Release the lock; LockNotOwnedError if this object does not hold it (any more)."""
        token, self.token = self.token, None
        if token is None or not self.store.lock_release(self.key, token):
            raise LockNotOwnedError(
                f"cannot release lock {self.key!r}: it is not held by this lock object "
                "(never acquired, already released, or expired and taken by another owner)"
            )

    def extend(self, timeout: float | None = None) -> bool:
        """Make the held lock expire `timeout` seconds from now (default: its own timeout)."""
        if self.token is None:
            raise LockNotOwnedError(f"cannot extend lock {self.key!r}: it is not held")
        return self.store.lock_extend(self.key, self.token, timeout or self.timeout)

    def locked(self) -> bool:
        """Tell whether anybody holds the lock."""
        return self.store.lock_owner(self.key) is not None

    def owned(self) -> bool:
        """Tell whether this lock object holds the lock."""
        return self.token is not None and self.store.lock_owner(self.key) == self.token

    def __enter__(self) -> CacheLock:
        if not self.acquire():
            raise LockError(f"could not acquire lock {self.key!r}")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    # -- async twins: the store's a* primitives, pauses on the event loop ---------------

    def _astore(self) -> AsyncLockStore:
        store = self.store
        if not hasattr(store, "alock_acquire"):
            raise TypeError(f"lock {self.key!r}: its store {store!r} has no async lock primitives")
        return store  # type: ignore[return-value]

    async def aacquire(
        self, blocking: bool | None = None, blocking_timeout: float | None = None
    ) -> bool:
        """The async twin of `acquire`."""
        store = self._astore()
        blocking = self.blocking if blocking is None else blocking
        limit = self.blocking_timeout if blocking_timeout is None else blocking_timeout
        deadline = None if limit is None else time.monotonic() + limit
        backoff = Backoff(self.poll_first, self.poll_max, deadline)
        token = new_token(with_pid=True)
        while True:
            taken = await store.alock_acquire(self.key, token, self.timeout)
            if taken:
                self.token = token
                return True
            if taken is None or not blocking:
                return False
            pause = backoff.next_pause()
            if pause is None:
                return False
            await asyncio.sleep(pause)

    async def arelease(self) -> None:
        """The async twin of `release`."""
        token, self.token = self.token, None
        if token is None or not await self._astore().alock_release(self.key, token):
            raise LockNotOwnedError(
                f"cannot release lock {self.key!r}: it is not held by this lock object "
                "(never acquired, already released, or expired and taken by another owner)"
            )

    async def aextend(self, timeout: float | None = None) -> bool:
        """The async twin of `extend`."""
        if self.token is None:
            raise LockNotOwnedError(f"cannot extend lock {self.key!r}: it is not held")
        return await self._astore().alock_extend(self.key, self.token, timeout or self.timeout)

    async def alocked(self) -> bool:
        """The async twin of `locked`."""
        return await self._astore().alock_owner(self.key) is not None

    async def aowned(self) -> bool:
        """The async twin of `owned`."""
        if self.token is None:
            return False
        return await self._astore().alock_owner(self.key) == self.token

    async def __aenter__(self) -> CacheLock:
        if not await self.aacquire():
            raise LockError(f"could not acquire lock {self.key!r}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.arelease()
