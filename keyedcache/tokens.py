"""Pure: random tokens and the bounded doubling backoff every polling loop uses."""

from __future__ import annotations

import os
import time
from collections.abc import Callable


def new_token(nbytes: int = 8, *, with_pid: bool = False) -> str:
    """A random hex token; with `with_pid`, prefixed by this process's id (for lock owners).

    Random rather than a counter: tokens are compared across processes and
    machines, where no counter could be shared without a round trip.
    """
    token = os.urandom(nbytes).hex()
    return f"{os.getpid()}-{token}" if with_pid else token


class Backoff:
    """Pauses that double from `first` up to `longest`, cut short by a deadline.

    `next_pause()` returns the next pause in seconds, or None once the
    deadline (in `clock()` time, None for no deadline) has passed, so a loop
    reads `pause = backoff.next_pause(); if pause is None: give up`.
    """

    __slots__ = ("clock", "deadline", "longest", "pause")

    def __init__(
        self,
        first: float,
        longest: float,
        deadline: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pause = first
        self.longest = longest
        self.deadline = deadline
        self.clock = clock

    def next_pause(self) -> float | None:
        """The next pause, at most what is left before the deadline; None when none is left."""
        pause = self.pause
        self.pause = min(pause * 2, self.longest)
        if self.deadline is None:
            return pause
        remaining = self.deadline - self.clock()
        if remaining <= 0:
            return None
        return min(pause, remaining)

    def sleep(self, sleep: Callable[[float], None] = time.sleep) -> bool:
        """Sleep the next pause; False (without sleeping) when the deadline has passed."""
        pause = self.next_pause()
        if pause is None:
            return False
        sleep(pause)
        return True
