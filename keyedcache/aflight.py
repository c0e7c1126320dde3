"""The asyncio twin of single flight: tasks of one event loop share a future, processes a lock."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from keyedcache.entry import Entry
from keyedcache.flight import (
    AsyncSource,
    Policy,
    _draw,
    _servable,
    _written_since,
    refresh_early,
)
from keyedcache.tokens import Backoff, new_token

log = logging.getLogger("keyedcache")


class AsyncSingleFlight:
    """The asyncio twin of SingleFlight: waiters in one event loop share a future."""

    def __init__(
        self,
        source: AsyncSource,
        policy: Policy,
        *,
        on_wait_timeout: Callable[[], None] = lambda: None,
        on_refresh_error: Callable[[], None] = lambda: None,
        on_wait: Callable[[str, float, bool], None] = lambda key, seconds, timed_out: None,
        clock: Callable[[], float] = time.time,
        draw: Callable[[], float] = _draw,
    ) -> None:
        self.source = source
        self.policy = policy
        self.on_wait_timeout = on_wait_timeout
        self.on_refresh_error = on_refresh_error
        #: Called with (key, seconds, timed_out) after waiting for another's computation.
        self.on_wait = on_wait
        self.clock = clock
        self.draw = draw
        # One table per event loop: futures belong to the loop that made them.
        self._flights: dict[tuple[int, str], asyncio.Future[Any]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    async def get(
        self,
        key: str,
        compute: Callable[[], Awaitable[Any]],
        entry: Entry | None = None,
        *,
        loaded: bool = False,
    ) -> Any:
        """Return the value for `key`, awaiting `compute()` at most once across callers."""
        if entry is None and not loaded:
            entry = await self.source.load(key)
        if entry is not None:
            now = self.clock()
            fresh = entry.is_fresh(now)
            early = self.policy.early
            if fresh and (early is None or not refresh_early(entry, now, early, self.draw())):
                return entry.value
            if entry.stale_until is None or entry.stale_until > now:
                return await self._refresh(key, compute, entry)
        return await self._fill(key, compute)

    async def _refresh(self, key: str, compute: Callable[[], Awaitable[Any]], entry: Entry) -> Any:
        token = new_token(with_pid=True)
        if not await self.source.acquire(key, token):
            return entry.value
        if self.policy.background:
            task = asyncio.ensure_future(self._compute_then_release(key, compute, token, entry))
            # Keep a reference: the loop holds tasks only weakly.
            self._tasks.add(task)
            task.add_done_callback(self._background_done)
            return entry.value
        return await self._compute_then_release(key, compute, token, entry)

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Nobody awaits a background refresh: say it failed here.
            log.warning("keyedcache: a background refresh failed", exc_info=task.exception())
            self.on_refresh_error()

    async def _compute_then_release(
        self, key: str, compute: Callable[[], Awaitable[Any]], token: str, seen: Entry | None
    ) -> Any:
        try:
            latest, basis = await self.source.load_basis(key)
            if _written_since(latest, seen, self.clock()):
                return latest.value  # type: ignore[union-attr]
            return await self._compute_and_save(key, compute, basis)
        finally:
            await self.source.release(key, token)

    async def _compute_and_save(
        self, key: str, compute: Callable[[], Awaitable[Any]], basis: Any = None
    ) -> Any:
        started = time.perf_counter()
        value = await compute()
        await self.source.save(key, value, time.perf_counter() - started, basis)
        return value

    async def _fill(self, key: str, compute: Callable[[], Awaitable[Any]]) -> Any:
        deadline = self.clock() + self.policy.wait
        slot = (id(asyncio.get_running_loop()), key)
        while True:
            future = self._flights.get(slot)
            if future is None:
                future = self._flights[slot] = asyncio.get_running_loop().create_future()
                try:
                    value = await self._fill_across_processes(key, compute, deadline)
                except BaseException:
                    future.set_result((False, None))
                    raise
                else:
                    future.set_result((True, value))
                    return value
                finally:
                    del self._flights[slot]
            waited = time.perf_counter()
            try:
                ok, value = await asyncio.wait_for(
                    asyncio.shield(future), max(deadline - self.clock(), 0)
                )
            except asyncio.TimeoutError:
                self.on_wait(key, time.perf_counter() - waited, True)
                self.on_wait_timeout()
                return await self._compute_and_save(key, compute)
            self.on_wait(key, time.perf_counter() - waited, False)
            if ok:
                return value

    async def _fill_across_processes(
        self, key: str, compute: Callable[[], Awaitable[Any]], deadline: float
    ) -> Any:
        backoff = Backoff(self.policy.poll_first, self.policy.poll_max, deadline, clock=self.clock)
        waited: float | None = None  # when this caller began waiting for another process
        while True:
            token = new_token(with_pid=True)
            acquired = await self.source.acquire(key, token)
            if acquired is None:
                return await compute()
            if acquired:
                if waited is not None:
                    self.on_wait(key, time.perf_counter() - waited, False)
                return await self._compute_then_release(key, compute, token, None)
            waited = time.perf_counter() if waited is None else waited
            pause = backoff.next_pause()
            if pause is None:
                self.on_wait(key, time.perf_counter() - waited, True)
                self.on_wait_timeout()
                return await self._compute_and_save(key, compute)
            await asyncio.sleep(pause)
            entry = await self.source.load(key)
            if _servable(entry, self.clock()):
                self.on_wait(key, time.perf_counter() - waited, False)
                return entry.value  # type: ignore[union-attr]
